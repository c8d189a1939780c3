import ArgumentParser
import Foundation
import Logging
import ScenePSCore
import ScenePSMetrics
import ScenePSServer
import ScenePSTransport
#if canImport(Glibc)
import Glibc
#endif

@main
struct PSServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ps-server",
        abstract: "A ScenePS parameter server: owns one shard of every sparse table and one slice of every dense table, and applies Adam to each push as it arrives.",
        discussion: """
        Prints `ready shard=I endpoint=E` on stdout once bound. Stops gracefully on SIGTERM, \
        SIGINT or a Shutdown message (sockets closed with linger, exit status 0).
        """)

    @Option(name: .long, help: "This server's index among the shards, 0-based.")
    var shardIndex: Int

    @Option(name: .long, help: "Total number of servers (shards) in the cluster.")
    var shardCount: Int

    @Option(name: .long, help: "ZeroMQ endpoint to bind, e.g. tcp://127.0.0.1:7000, or tcp://0.0.0.0:7000 for every interface (tcp://127.0.0.1:* picks a free port; the ready line names it).")
    var bind: String

    @Option(name: .long, help: "The endpoint peers connect to, e.g. tcp://ps-0.ps.default.svc:7000 (default: the bound endpoint, with this host's `hostname -f` name in place of a wildcard host). The ready line names it; the coordinator's --servers lists these.")
    var advertise: String?

    @Option(name: .long, help: "Request handler threads (decode, apply, encode). The frontend socket thread is extra.")
    var threads: Int = 2

    @Option(name: .long, help: "Largest accepted request in MiB; a larger one gets a TOO_LARGE error reply.")
    var maxMessageMb: Int = 64

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    @Option(name: .long, help: "Directory of checkpoints: where `psctl checkpoint` cuts are written (requests may name no other) and where --restore latest|latest-good looks.")
    var checkpointDir: String?

    @Option(name: .long, help: "Keep this server's count of applied pushes in FILE (memory-mapped: it survives a kill -9), so that a supervisor can report how many of them a restore undid. `cluster/local.sh` passes RUN_DIR/servers/server-N.pushes.")
    var pushCounter: String?

    @Option(name: .long, help: "Job key directory (psctl keys --out DIR): accept only CURVE clients listed in its `authorized` file, encrypted with server.key; a worker key may pull and push, only the admin key may shut down, snapshot, checkpoint or restore (docs/SECURITY.md). Without it, plain TCP and every peer is trusted.")
    var keys: String?

    @Option(name: .long, help: "Memory this server may spend on sparse rows, in MiB: a table without --max-rows may hold an equal share of it at twice its bytes per row (the best epoch's copy); a pull or push that would create more rows is refused with TABLE_FULL, naming the table and the cap. Default: half this machine's memory (the launcher divides it among its servers); 0: no cap.")
    var memoryBudgetMb: Int?

    @Option(name: .long, help: "Row caps over the whole table, TABLE=ROWS,... (config tables.NAME.max_rows); each of the --shard-count servers holds at most ROWS/N of them.")
    var maxRows: String?

    @Option(name: .long, help: "Before serving, load this server's shard of a checkpoint: a checkpoint directory, `latest` (the newest complete one under --checkpoint-dir), `latest-good` (the newest that passes every check) or `latest-if-any` (`latest` when --checkpoint-dir holds a complete checkpoint, else start empty: for engines that restart a server with the same arguments, e.g. a Kubernetes StatefulSet). The server count may differ from the checkpoint's (rows are re-sharded).")
    var restore: String?

    @OptionGroup var metrics: MetricsOptions

    func validate() throws {
        guard shardCount >= 1 else { throw ValidationError("--shard-count must be at least 1, got \(shardCount)") }
        guard shardIndex >= 0 && shardIndex < shardCount else {
            throw ValidationError("--shard-index must be in 0..<\(shardCount), got \(shardIndex)")
        }
        guard threads >= 1 && threads <= 64 else { throw ValidationError("--threads must be in 1...64, got \(threads)") }
        guard maxMessageMb >= 1 && maxMessageMb <= 2048 else {
            throw ValidationError("--max-message-mb must be in 1...2048, got \(maxMessageMb)")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical; got '\(logLevel)'")
        }
        guard !bind.isEmpty else { throw ValidationError("--bind must name an endpoint such as tcp://127.0.0.1:7000") }
        if let m = memoryBudgetMb, m < 0 { throw ValidationError("--memory-budget-mb must be 0 (no cap) or more, got \(m)") }
        if let maxRows { do { _ = try RowLimits.parseExplicit(maxRows) } catch { throw ValidationError("\(error)") } }
        if let a = advertise, let why = Endpoint.problemAsAdvertised(a) { throw ValidationError("--advertise: \(why)") }
        if let r = restore, (r == "latest" || r == "latest-good" || r == "latest-if-any"), checkpointDir == nil {
            throw ValidationError("--restore \(r) needs --checkpoint-dir DIR")
        }
    }

    func run() throws {
        MemoryTuning.keepFreedMemory()
        let level = Logger.Level(rawValue: logLevel)!
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        var logger = Logger(label: "ps-server")
        logger[metadataKey: "ps.shard"] = "\(shardIndex)"

        // Block the stop signals in every thread; the main thread takes them with sigtimedwait.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGTERM)
        sigaddset(&signals, SIGINT)
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        let endpointForMetrics: MetricsEndpoint?
        do { endpointForMetrics = try metrics.endpoint(logger: logger) } catch {
            printError("ps-server: error: \(error)")
            throw ExitCode(1)
        }
        var options = PSServerOptions(shardIndex: shardIndex, shardCount: shardCount, bind: bind)
        options.threads = threads
        options.maxMessageBytes = maxMessageMb << 20
        options.checkpointDir = checkpointDir.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        options.pushCounterPath = pushCounter
        let budget: UInt64? = memoryBudgetMb.map { $0 == 0 ? nil : UInt64($0) << 20 } ?? RowLimits.defaultBudgetBytes(serversOnThisMachine: 1)
        options.rowLimits = RowLimits(budgetBytes: budget, explicit: try maxRows.map { try RowLimits.parseExplicit($0) } ?? [:])
        if let keys {
            // Before anything starts: a missing, loose or unparsable key file is named and nothing binds.
            do { options.curve = try CurveKeys.server(dir: keys) } catch {
                printError("ps-server: error: \(error)")
                throw ExitCode(1)
            }
        }
        print("\(RequestHandler.serverVersion) (libzmq \(ZMQLibrary.version)) shard=\(shardIndex)/\(shardCount) bind=\(bind) threads=\(threads) max-message-mb=\(maxMessageMb) log-level=\(logLevel) row-budget-mib=\(budget.map { String($0 >> 20) } ?? "none") max-rows=\(maxRows ?? "auto") curve=\(options.curve == nil ? "off" : "on (\(options.curve!.authorized.count) keys)")")
        let server: PSServer
        let endpoint: String
        do {
            server = try PSServer(options: options, logger: logger)
            if let e = endpointForMetrics {
                let m = ServerMetrics(registry: e.registry)
                server.handler.metrics = m
                m.collect(from: server.handler, on: e.onScrape)
            }
            var restore = self.restore
            if restore == "latest-if-any" {
                // An engine that restarts a server with the same arguments (a Kubernetes StatefulSet): the first
                // start finds no checkpoint and starts empty, a restart restores the latest.
                let dir = options.checkpointDir!
                let complete = FileManager.default.fileExists(atPath: dir) ? try CheckpointDirectory.list(dir).first { $0.manifest != nil } : nil
                restore = complete?.path
                if restore == nil { print("restore: no complete checkpoint in \(dir) yet: starting with empty tables") }
            }
            if let which = restore {
                do {
                    var summary: CheckpointRestore.Summary?
                    _ = try CheckpointRestore.resolve(which, dir: options.checkpointDir, logger: logger) { path in
                        summary = try CheckpointRestore.restore(path: path, into: server)
                    }
                    let s = summary!
                    let mb = Double(s.bytesRead) / 1e6
                    print(String(format: "restored checkpoint=%@ shards_read=%d rows=%d global_step=%llu mb=%.1f seconds=%.3f mb_per_s=%.0f",
                                 s.path, s.filesRead.count, s.rows, s.manifest.global_step, mb, s.seconds, mb / max(s.seconds, 1e-9)))
                    fflush(nil)
                } catch {
                    logger.critical("checkpoint refused", metadata: ["ps.error": "\(error)"])
                    printError("ps-server: error: checkpoint refused: \(error)")
                    throw ExitCode(1)
                }
            }
            endpoint = Endpoint.advertised(bound: try server.start(), advertise: advertise)
        } catch {
            logger.critical("server failed to start", metadata: ["ps.error": "\(error)"])
            throw ExitCode(1)
        }
        endpointForMetrics?.startAnnounced()
        print("ready shard=\(shardIndex) endpoint=\(endpoint) bound=\(server.endpoint)")
        fflush(nil)  // all streams: the launcher waits for this line

        var timeout = timespec(tv_sec: 0, tv_nsec: 200_000_000)
        while !server.isStopping {
            let sig = sigtimedwait(&signals, nil, &timeout)
            if sig == SIGTERM || sig == SIGINT {
                logger.notice("signal received, stopping", metadata: ["ps.signal": "\(sig)"])
                break
            }
        }
        server.stop()
        endpointForMetrics?.stop()
        guard server.wait(timeout: .seconds(10)) else {
            logger.error("threads did not stop within 10 s")
            throw ExitCode(1)
        }
        print(String(format: "stopped shard=%d peak_rss_mib=%.1f cpu_seconds=%.2f", shardIndex, ProcessStats.peakRSSMiB, ProcessStats.cpuSeconds))
        fflush(nil)  // all streams: the launcher waits for this line
    }
}

func printError(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}
