import ArgumentParser
import Foundation
import Logging
import ScenePSClient
import ScenePSCore
import ScenePSServer
import ScenePSTransport

/// Push/pull throughput between one client and N servers on loopback, with
/// the servers doing their real work (lookup or lazy insert, Adam on push).
@main
struct PSBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ps-bench",
        abstract: "Measure ScenePS push and pull throughput on loopback.",
        discussion: """
        Case a: 4096 unique random keys x dim floats per request (requests/s, keys/s, GB/s of values).
        Case b: 1,000,000 unique keys x 1 float per request (ms per push and per pull).
        Each figure is the median of --runs runs. Pushes use the server's real Adam.
        """)

    @Option(help: "Number of servers.") var servers: Int = 1
    @Option(help: "Path of a built ps-server to start as child processes; without it the servers run in this process.")
    var serverBinary: String?
    @Option(help: "Handler threads per server.") var threads: Int = 2
    @Option(help: "Runs per figure (the median is reported).") var runs: Int = 5
    @Option(help: "Seconds per case-a run.") var runSeconds: Double = 1.5
    @Option(help: "Row width for case a.") var dim: Int = 32
    @Option(help: "Keys per case-a request.") var keys: Int = 4096
    @Option(help: "Distinct keys case-a requests draw from (rows created lazily on first touch).")
    var keySpace: Int = 1_000_000
    @Option(help: "Keys per case-b request.") var bigKeys: Int = 1_000_000
    @Option(help: "Which cases: a, b, all, apply, checkpoint, restore or keycheck.") var cases: String = "all"
    @Option(help: "Checkpoint case: rows in the server's table.") var rows: Int = 1_000_000
    @Option(help: "Checkpoint case: checkpoints taken while the pusher runs.") var checkpoints: Int = 3
    @Option(help: "Checkpoint case: directory to write checkpoints to (the disk measured with dd).") var checkpointDir: String = "/tmp/ps-bench-checkpoints"
    @Flag(help: "Checkpoint case: keep the idle checkpoint (for --cases restore).") var keepCheckpoint = false
    @Option(help: "Restore case: the checkpoint directory to restore (from a cold page cache, --runs times).") var restore: String?
    @Option(help: "Cases a and b over CURVE: the job key directory (psctl keys --out DIR); the servers accept its keys, the client uses admin.key.")
    var curveKeys: String?

    func validate() throws {
        guard servers >= 1, threads >= 1, runs >= 1, runSeconds > 0, dim >= 1, keys >= 1, keySpace >= keys, bigKeys >= 1 else {
            throw ValidationError("counts must be positive and --key-space >= --keys")
        }
        guard ["a", "b", "all", "apply", "checkpoint", "restore", "keycheck"].contains(cases) else {
            throw ValidationError("--cases must be a, b, all, apply, checkpoint, restore or keycheck")
        }
        if cases == "restore" && restore == nil { throw ValidationError("--cases restore needs --restore CHECKPOINT_DIR") }
        if let b = serverBinary, !FileManager.default.isExecutableFile(atPath: b) {
            throw ValidationError("--server-binary \(b) is not an executable file")
        }
    }

    func run() throws {
        if cases == "apply" { return applyOnly() }
        if cases == "keycheck" { return keyCheck() }
        if cases == "checkpoint" {
            var logger = Logger(label: "ps-bench")
            logger.logLevel = .warning
            return try CheckpointBench(rows: rows, dim: dim, keys: keys, threads: threads, checkpoints: checkpoints,
                                       dir: checkpointDir, keep: keepCheckpoint, logger: logger).run()
        }
        if cases == "restore", let path = restore {
            var logger = Logger(label: "ps-bench")
            logger.logLevel = .warning
            return try CheckpointBench.restoreOnly(path: path, runs: runs, logger: logger)
        }
        var logger = Logger(label: "ps-bench")
        logger.logLevel = .warning
        let cluster = try BenchCluster(count: servers, threads: threads, binary: serverBinary, keys: curveKeys, logger: logger)
        defer { cluster.stop() }
        var opts = PSClientOptions()
        opts.curve = try curveKeys.map { try CurveKeys.client(dir: $0, role: .admin) }
        opts.timeout = .seconds(30)
        opts.maxMessageBytes = 256 << 20
        let client = try PSClient(endpoints: cluster.endpoints, sender: "ps-bench-\(getpid())", options: opts, logger: logger)
        _ = try client.hello(role: "bench", scene: "")
        let adam = AdamConfig(learningRate: 0.001)
        try client.declare([
            .sparse(id: 1, name: "bench_a", dim: UInt32(dim), initKind: .uniform, initScale: 0.01, seed: 1, adam: adam),
            .sparse(id: 2, name: "bench_b", dim: 1, initKind: .uniform, initScale: 0.01, seed: 2, adam: adam),
        ])
        print("ps-bench: servers=\(servers) (\(serverBinary == nil ? "in-process" : "child processes: \(serverBinary!)")) threads/server=\(threads) curve=\(curveKeys == nil ? "off" : "on") runs=\(runs) cores=\(ProcessInfo.processInfo.activeProcessorCount)")
        if cases != "b" { try caseA(client) }
        if cases != "a" { try caseB(client) }
        try client.shutdownServers(reason: "bench done")
    }

    /// The server's push apply alone (no codec, no transport): case-a pushes
    /// straight into a `SparseTable`, to see what limits the server.
    /// What the client's check that a table's keys are distinct costs
    /// (`KeyHash.firstRepeat`, run on every pull and push): ns per key
    /// and µs per call at request sizes around a worker's.
    func keyCheck() {
        print("ps-bench keycheck: KeyHash.firstRepeat on distinct random keys, median of \(runs) runs")
        print("| keys per call | ns per key | us per call |")
        print("|---:|---:|---:|")
        var rng = SplitMix64(seed: 9)
        for n in [256, 1_024, 4_096, 16_384, 65_536] {
            let keys = (0..<n).map { _ in rng.next() }
            let reps = max(20, 4_000_000 / n)
            var times: [Double] = []
            for _ in 0..<runs {
                let t0 = DispatchTime.now().uptimeNanoseconds
                var found = 0
                for _ in 0..<reps { if KeyHash.firstRepeat(in: keys) != nil { found += 1 } }
                precondition(found == 0)
                times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / Double(reps))
            }
            let ns = times.sorted()[times.count / 2]
            print("| \(n) | \(String(format: "%.2f", ns / Double(n))) | \(String(format: "%.1f", ns / 1000)) |")
        }
    }

    func applyOnly() {
        let dim = self.dim, keys = self.keys, keySpace = self.keySpace   // not the property wrappers in hot loops
        let spec = TableSpec.sparse(id: 1, name: "a", dim: UInt32(dim), initKind: .uniform, initScale: 0.01, seed: 1)
        let table = SparseTable(spec: spec, optimizer: Adam(spec.adam))
        var rng = SplitMix64(seed: 42)
        let space = (0..<keySpace).map { _ in rng.next() }
        let batches: [[UInt64]] = (0..<32).map { _ in
            var set = Set<Int>()
            while set.count < keys { set.insert(Int(rng.next() % UInt64(keySpace))) }
            return set.map { space[$0] }
        }
        let grads: [Float] = (0..<(keys * dim)).map { _ in Float(rng.nextUnit() - 0.5) * 0.01 }
        var out = [Float](repeating: 0, count: keys * dim)
        func pushAll() { for b in batches { b.withUnsafeBufferPointer { k in grads.withUnsafeBufferPointer { table.push(keys: k, gradients: $0.baseAddress!) } } } }
        func pullAll() { for b in batches { b.withUnsafeBufferPointer { k in out.withUnsafeMutableBufferPointer { table.pull(keys: k, into: $0.baseAddress!) } } } }
        pushAll()
        var pushMs: [Double] = [], pullMs: [Double] = [], adamMs: [Double] = []
        var w = [Float](repeating: 0.1, count: keys * dim), st = [Float](repeating: 0, count: 2 * keys * dim)
        let adam = Adam(spec.adam)
        for _ in 0..<runs {
            var t = ContinuousClock.now
            pushAll()
            pushMs.append((ContinuousClock.now - t).seconds * 1000 / Double(batches.count))
            t = ContinuousClock.now
            pullAll()
            pullMs.append((ContinuousClock.now - t).seconds * 1000 / Double(batches.count))
            // Adam alone over contiguous (cache-warm) memory of the same size.
            t = ContinuousClock.now
            for _ in 0..<batches.count {
                w.withUnsafeMutableBufferPointer { wp in st.withUnsafeMutableBufferPointer { sp in grads.withUnsafeBufferPointer { gp in
                    for r in 0..<keys {
                        adam.update(weights: wp.baseAddress! + r * dim, state: sp.baseAddress! + 2 * r * dim,
                                               gradient: gp.baseAddress! + r * dim, count: dim, step: 3)
                    }
                } } }
            }
            adamMs.append((ContinuousClock.now - t).seconds * 1000 / Double(batches.count))
        }
        print(String(format: "apply only (%d rows in table, %d keys x %d): push %.3f ms, pull %.3f ms, Adam arithmetic alone %.3f ms per request",
                     table.memory().rows, keys, dim, median(pushMs), median(pullMs), median(adamMs)))
    }

    func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    func serverTimes(_ client: PSClient) throws -> (handle: Double, apply: Double) {
        let st = try client.stats()
        // Servers run in parallel: report the busiest one.
        return (st.map(\.handleSeconds).max() ?? 0, st.map(\.pushApplySeconds).max() ?? 0)
    }

    func caseA(_ client: PSClient) throws {
        let dim = self.dim, keys = self.keys, keySpace = self.keySpace
        var rng = SplitMix64(seed: 42)
        let space = (0..<keySpace).map { _ in rng.next() }
        let batches: [[UInt64]] = (0..<32).map { _ in
            var set = Set<Int>()
            while set.count < keys { set.insert(Int(rng.next() % UInt64(keySpace))) }
            return set.map { space[$0] }
        }
        let grads: [Float] = (0..<(keys * dim)).map { _ in Float(rng.nextUnit() - 0.5) * 0.01 }
        // Warm up: create rows of every batch.
        for b in batches {
            _ = try client.wait(client.pull([SparsePull(tableID: 1, keys: b)]))
            try client.wait(client.push([SparseGradient(tableID: 1, keys: b, values: grads)]))
        }
        var pullRates: [Double] = [], pushRates: [Double] = []
        var handleShare: [Double] = [], applyShare: [Double] = [], pushMs: [Double] = []
        for _ in 0..<runs {
            var n = 0
            var start = ContinuousClock.now
            var end = start + .milliseconds(Int(runSeconds * 1000))
            while ContinuousClock.now < end {
                _ = try client.wait(client.pull([SparsePull(tableID: 1, keys: batches[n % batches.count])]))
                n += 1
            }
            pullRates.append(Double(n) / (ContinuousClock.now - start).seconds)

            let before = try serverTimes(client)
            n = 0
            start = ContinuousClock.now
            end = start + .milliseconds(Int(runSeconds * 1000))
            while ContinuousClock.now < end {
                try client.wait(client.push([SparseGradient(tableID: 1, keys: batches[n % batches.count], values: grads)]))
                n += 1
            }
            let wall = (ContinuousClock.now - start).seconds
            let after = try serverTimes(client)
            pushRates.append(Double(n) / wall)
            pushMs.append(wall / Double(n) * 1000)
            handleShare.append((after.handle - before.handle) / Double(n) * 1000)
            applyShare.append((after.apply - before.apply) / Double(n) * 1000)
        }
        let bytesPerReq = Double(keys * dim * 4)
        for (name, rates) in [("pull", pullRates), ("push", pushRates)] {
            let r = median(rates)
            print(String(format: "case a %@: %6.0f req/s  %10.0f keys/s  %5.2f GB/s  (%d keys x %d floats; runs: %@)",
                         name, r, r * Double(keys), r * bytesPerReq / 1e9, keys, dim,
                         rates.map { String(format: "%.0f", $0) }.joined(separator: " ")))
        }
        // Where a push's time goes (client codec cost measured locally).
        let codec = codecMillis(keys: batches[0], values: grads)
        print(String(format: "case a push breakdown per request: wall %.3f ms; busiest server handling %.3f ms (decode+validate+apply+encode), of which Adam apply (lookup + optimiser) %.3f ms; client route+encode+decode ~%.3f ms; rest is ZeroMQ transport and waiting",
                     median(pushMs), median(handleShare), median(applyShare), codec))
    }

    /// Client-side cost of one push request: encode and decode of the envelope.
    func codecMillis(keys: [UInt64], values: [Float]) -> Double {
        let env = Envelope(requestID: 1, sender: "x", body: .push(Blocks(sparse: [SparseBlock(tableID: 1, keys: keys, values: values)])))
        let reps = 50
        let start = ContinuousClock.now
        for _ in 0..<reps {
            let b = WireCodec.encode(env)
            _ = try? WireCodec.decode(b)
        }
        // Encode on the client, decode on the server: report the encode half.
        return (ContinuousClock.now - start).seconds / Double(reps) * 1000 / 2
    }

    func caseB(_ client: PSClient) throws {
        let bigKeys = self.bigKeys
        var rng = SplitMix64(seed: 7)
        var set = Set<UInt64>()
        set.reserveCapacity(bigKeys)
        while set.count < bigKeys { set.insert(rng.next()) }
        let big = Array(set)
        let grads: [Float] = (0..<bigKeys).map { _ in Float(rng.nextUnit() - 0.5) * 0.01 }
        // First pull creates the rows (reported separately).
        var t = ContinuousClock.now
        _ = try client.wait(client.pull([SparsePull(tableID: 2, keys: big)]))
        let firstPull = (ContinuousClock.now - t).seconds * 1000
        var pulls: [Double] = [], pushes: [Double] = [], applies: [Double] = []
        for _ in 0..<runs {
            t = ContinuousClock.now
            let r = try client.wait(client.pull([SparsePull(tableID: 2, keys: big)]))
            pulls.append((ContinuousClock.now - t).seconds * 1000)
            precondition(r.sparse[0].count == bigKeys)
            let before = try serverTimes(client)
            t = ContinuousClock.now
            try client.wait(client.push([SparseGradient(tableID: 2, keys: big, values: grads)]))
            pushes.append((ContinuousClock.now - t).seconds * 1000)
            applies.append((try serverTimes(client).apply - before.apply) * 1000)
        }
        print(String(format: "case b: %d keys x 1 float: pull %.1f ms (first, creating rows: %.1f ms), push %.1f ms (Adam apply on busiest server %.1f ms)",
                     bigKeys, median(pulls), firstPull, median(pushes), median(applies)))
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// The servers under test: in-process `PSServer`s or `ps-server` children.
final class BenchCluster {
    private(set) var endpoints: [String] = []
    private var inProcess: [PSServer] = []
    private var children: [Process] = []
    private var outputFiles: [URL] = []

    init(count: Int, threads: Int, binary: String?, keys: String? = nil, logger: Logger) throws {
        for i in 0..<count {
            if let binary {
                let out = FileManager.default.temporaryDirectory.appendingPathComponent("ps-bench-\(getpid())-\(i).out")
                outputFiles.append(out)
                guard FileManager.default.createFile(atPath: out.path, contents: nil) else {
                    throw ScenePSError(.io, "cannot create \(out.path) for ps-server \(i)'s output")
                }
                let p = Process()
                p.executableURL = URL(fileURLWithPath: binary)
                p.arguments = ["--shard-index", "\(i)", "--shard-count", "\(count)", "--bind", "tcp://127.0.0.1:*",
                               "--threads", "\(threads)", "--max-message-mb", "256", "--log-level", "warning"]
                    + (keys.map { ["--keys", $0] } ?? [])
                p.standardOutput = try FileHandle(forWritingTo: out)
                try p.run()
                children.append(p)
                let deadline = Date().addingTimeInterval(15)
                var endpoint: String?
                while endpoint == nil && Date() < deadline && p.isRunning {
                    let text = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
                    if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("ready shard=\(i) ") }),
                       let e = line.split(separator: " ").first(where: { $0.hasPrefix("endpoint=") }) {
                        endpoint = String(e.dropFirst("endpoint=".count))
                    } else {
                        usleep(20_000)
                    }
                }
                guard let endpoint else {
                    stop()
                    throw ScenePSError(.io, "ps-server \(i) (\(binary)) did not print its ready line within 15 s")
                }
                endpoints.append(endpoint)
            } else {
                var o = PSServerOptions(shardIndex: i, shardCount: count, bind: "tcp://127.0.0.1:*")
                o.threads = threads
                o.maxMessageBytes = 256 << 20
                o.curve = try keys.map { try CurveKeys.server(dir: $0) }
                let s = try PSServer(options: o, logger: logger)
                endpoints.append(try s.start())
                inProcess.append(s)
            }
        }
    }

    func stop() {
        for s in inProcess { s.shutdown(timeout: .seconds(5)) }
        inProcess = []
        for p in children {
            let deadline = Date().addingTimeInterval(5)
            while p.isRunning && Date() < deadline { usleep(20_000) }
            if p.isRunning {
                print("ps-bench: ps-server pid \(p.processIdentifier) still running 5 s after Shutdown; sending SIGTERM")
                p.terminate()
            }
            p.waitUntilExit()
            if p.terminationStatus != 0 || p.terminationReason != .exit {
                print("ps-bench: ps-server pid \(p.processIdentifier) exited with status \(p.terminationStatus)")
            }
        }
        children = []
        for f in outputFiles { try? FileManager.default.removeItem(at: f) }
        outputFiles = []
    }
}
