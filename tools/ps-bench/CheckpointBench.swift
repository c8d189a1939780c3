import Foundation
import Logging
import ScenePSClient
import ScenePSCore
import ScenePSServer
#if canImport(Glibc)
import Glibc
#endif

/// `ps-bench --cases checkpoint`: push stall, write and restore throughput of
/// checkpoints of one in-process server holding `rows` rows, while a client
/// pushes `keys`-key requests as fast as it can; `dd` on the same disk.
struct CheckpointBench {
    let rows: Int, dim: Int, keys: Int, threads: Int, checkpoints: Int, dir: String
    let keep: Bool
    let logger: Logger

    func run() throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        do {   // the checksum alone, over hot memory
            let n = 256 << 20
            let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: n, alignment: 64)
            defer { buf.deallocate() }
            memset(buf.baseAddress!, 7, n)
            let t = ContinuousClock.now
            let h = XXH64.hash(UnsafeRawBufferPointer(buf))
            let dt = (ContinuousClock.now - t).seconds
            print(String(format: "checksum: XXH64 %.0f MB/s over hot memory (%@)", Double(n) / 1e6 / dt, XXH64.format(h)))
        }
        var o = PSServerOptions(shardIndex: 0, shardCount: 1, bind: "tcp://127.0.0.1:*")
        o.threads = threads
        o.maxMessageBytes = 256 << 20
        o.checkpointDir = dir
        let server = try PSServer(options: o, logger: logger)
        let endpoint = try server.start()
        defer { server.shutdown() }
        var co = PSClientOptions(); co.timeout = .seconds(60); co.maxMessageBytes = 256 << 20
        let spec = TableSpec.sparse(id: 1, name: "ckpt_bench", dim: UInt32(dim), initKind: .uniform, initScale: 0.01, seed: 1)
        let fill = try PSClient(endpoints: [endpoint], sender: "fill", options: co, logger: logger)
        try fill.declare([spec, .dense(id: 2, name: "mlp", size: 100_000)])
        var rng = SplitMix64(seed: 11)
        let space = (0..<rows).map { _ in rng.next() }
        var t = ContinuousClock.now
        var i = 0
        while i < rows {
            let j = min(rows, i + 262_144)
            _ = try fill.wait(fill.pull([SparsePull(tableID: 1, keys: Array(space[i..<j]))]))
            i = j
        }
        print(String(format: "checkpoint bench: %d rows x dim %d (%.0f MB of records), filled in %.1f s; pusher: %d keys/request, server threads %d",
                     rows, dim, Double(rows * (3 + 3 * dim) * 4) / 1e6, (ContinuousClock.now - t).seconds, keys, threads))

        // The pusher: latency of every push, with its start time.
        let stop = BenchFlag()
        let lat = BenchSamples()
        let pusherOptions = co
        let pusher = Thread {
            do {
                let c = try PSClient(endpoints: [endpoint], sender: "pusher", options: pusherOptions, logger: Logger(label: "p"))
                try c.declare([spec, .dense(id: 2, name: "mlp", size: 100_000)])
                var r = SplitMix64(seed: 5)
                let grads = (0..<(keys * dim)).map { _ in Float(r.nextUnit() - 0.5) * 0.01 }
                let dense = [Float](repeating: 0.001, count: 100_000)
                while !stop.isSet {
                    var set = Set<Int>()
                    while set.count < keys { set.insert(Int(r.next() % UInt64(space.count))) }
                    let batch = set.map { space[$0] }
                    let s = ContinuousClock.now
                    try c.wait(c.push([SparseGradient(tableID: 1, keys: batch, values: grads)],
                               dense: [DenseGradient(tableID: 2, values: dense)]))
                    lat.add(start: s, ms: (ContinuousClock.now - s).seconds * 1000)
                }
            } catch { print("pusher failed: \(error)") }
        }
        pusher.start()
        Thread.sleep(forTimeInterval: 1.5)

        let driver = try CheckpointDriver(endpoints: [endpoint], logger: logger)
        var windows: [(ContinuousClock.Instant, ContinuousClock.Instant)] = []
        var results: [CheckpointDriver.Result] = []
        for k in 0..<checkpoints {
            var opt = CheckpointDriver.Options(dir: dir)
            opt.name = "bench-\(rows)-\(k)-\(getpid())"
            let s = ContinuousClock.now
            let r = try driver.checkpoint(opt)
            windows.append((s, ContinuousClock.now))
            results.append(r)
            print(String(format: "  checkpoint %d (training): push stall %.3f ms (server: held pushes' wait + longest row copy), cut %.1f ms, held %llu, rows copied by pushes %@, write %.2f s = %.0f MB/s (%.0f MB)",
                         k, r.pushStallMs, r.cutMs, r.manifest.cut.held_pushes, "\(preserved(r))", r.writeSeconds,
                         Double(r.bytes) / 1e6 / r.writeSeconds, Double(r.bytes) / 1e6))
            Thread.sleep(forTimeInterval: 1.0)
        }
        stop.set()
        while !pusher.isFinished { usleep(10_000) }
        let stalls = results.map(\.pushStallMs).sorted()
        print(String(format: "  push stall over %d checkpoints: median %.3f ms, max %.3f ms; cut (PREPARE sent to COMMIT answered) median %.1f ms",
                     stalls.count, stalls[stalls.count / 2], stalls.last ?? 0, results.map(\.cutMs).sorted()[results.count / 2]))
        // Client view: the slowest push overlapping a checkpoint against the pushes outside.
        let samples = lat.all()
        func overlaps(_ x: (ContinuousClock.Instant, Double)) -> Bool {
            let end = x.0 + .milliseconds(Int(x.1.rounded(.up)))
            return windows.contains { x.0 < $0.1 && end > $0.0 }
        }
        let inside = samples.filter(overlaps).map(\.1).sorted()
        let outside = samples.filter { !overlaps($0) }.map(\.1).sorted()
        func q(_ a: [Double], _ p: Double) -> Double { a.isEmpty ? 0 : a[min(a.count - 1, Int(Double(a.count) * p))] }
        print(String(format: "  client push latency: outside checkpoints median %.2f ms p99 %.2f ms max %.2f ms (%d pushes); during checkpoints median %.2f ms p99 %.2f ms max %.2f ms (%d pushes)",
                     q(outside, 0.5), q(outside, 0.99), outside.last ?? 0, outside.count, q(inside, 0.5), q(inside, 0.99), inside.last ?? 0, inside.count))

        // Idle checkpoint (no pushes): write throughput alone.
        var opt = CheckpointDriver.Options(dir: dir)
        opt.name = "bench-\(rows)-idle-\(getpid())"
        let idle = try driver.checkpoint(opt)
        print(String(format: "  checkpoint (idle): write %.2f s = %.0f MB/s", idle.writeSeconds, Double(idle.bytes) / 1e6 / idle.writeSeconds))

        // Restore in a fresh process, as a restarted `ps-server --restore` does (this one still holds the
        // table it wrote, and its freed memory would flatter or burden the figure).
        fflush(nil)
        let child = Process()
        child.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
        child.arguments = ["--cases", "restore", "--restore", idle.path, "--runs", "1"]
        try child.run()
        child.waitUntilExit()
        guard child.terminationStatus == 0 else { throw ScenePSError(.checkpoint, "the restore process failed (status \(child.terminationStatus))") }
        for r in results + (keep ? [] : [idle]) { try? FileManager.default.removeItem(atPath: r.path) }
        if keep { print("  kept \(idle.path) (ps-bench --cases restore --restore \(idle.path))") }
        try dd(mb: 1024)
    }

    /// Restores checkpoint `path` from a cold page cache into a fresh server, then reads its shard file with dd (cold).
    static func coldRestore(path: String, manifest: CheckpointManifest, logger: Logger) throws {
        for s in manifest.shards { dropCache((path as NSString).appendingPathComponent(s.file)) }
        let fresh = try PSServer(options: PSServerOptions(shardIndex: 0, shardCount: 1, bind: "tcp://127.0.0.1:*"), logger: logger)
        let t = ContinuousClock.now
        let cpu0 = cpuSeconds()
        let sum = try CheckpointRestore.restore(path: path, into: fresh)
        let secs = (ContinuousClock.now - t).seconds
        print(String(format: "  restore CPU time (all threads of the restoring process): %.2f s", cpuSeconds() - cpu0))
        print(String(format: "  restore (cold cache): %d rows, %.0f MB in %.2f s = %.0f MB/s (reader thread: page-in + checksum %.2f s; parser: row checks %.2f s, table inserts %.2f s)",
                     sum.rows, Double(sum.bytesRead) / 1e6, secs, Double(sum.bytesRead) / 1e6 / secs, sum.readSeconds, sum.checkSeconds, sum.loadSeconds))
        // What filling that much fresh memory costs here (a restore builds its table in new memory; dd does not).
        let bytes = Int(sum.bytesRead)
        let fill = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 4096)
        let t1 = ContinuousClock.now
        _ = madvise(fill, bytes & ~4095, 23)   // MADV_POPULATE_WRITE, as the restore's arena
        let fillSecs = (ContinuousClock.now - t1).seconds
        fill.deallocate()
        print(String(format: "  populating %.0f MB of fresh memory (MADV_POPULATE_WRITE): %.2f s = %.0f MB/s", Double(bytes) / 1e6, fillSecs, Double(bytes) / 1e6 / fillSecs))
        // dd over the very same file, cold again.
        let shardPath = (path as NSString).appendingPathComponent(manifest.shards[0].file)
        dropCache(shardPath)
        print("  dd read of the same shard file (cold cache): " + (try runDD(["if=\(shardPath)", "of=/dev/null", "bs=8M"])))
    }

    /// `ps-bench --cases restore`: `runs` cold restores of one single-shard checkpoint.
    static func restoreOnly(path: String, runs: Int, logger: Logger) throws {
        let m = try CheckpointManifest.load(dir: path)
        guard m.shard_count == 1 else { throw ScenePSError(.checkpoint, "\(path): --cases restore takes a single-shard checkpoint (ps-bench --cases checkpoint --keep-checkpoint)") }
        for k in 0..<runs {
            if runs > 1 { print("restore run \(k + 1) of \(runs): \(path)") }
            try coldRestore(path: path, manifest: m, logger: logger)
        }
    }

    func preserved(_ r: CheckpointDriver.Result) -> String { "\(r.preservedRows)" }

    static func cpuSeconds() -> Double {
        var u = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u)
        return Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) / 1e6 + Double(u.ru_stime.tv_sec) + Double(u.ru_stime.tv_usec) / 1e6
    }

    static func dropCache(_ path: String) {
        let fd = open(path, O_RDONLY)
        if fd >= 0 { _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED)); close(fd) }
    }

    /// Sequential write (fdatasync) and read (cache dropped) of the same disk with dd.
    func dd(mb: Int) throws {
        let f = (dir as NSString).appendingPathComponent("dd-\(getpid()).tmp")
        defer { try? FileManager.default.removeItem(atPath: f) }
        print("  dd write: " + (try Self.runDD(["if=/dev/zero", "of=\(f)", "bs=8M", "count=\(mb / 8)", "conv=fdatasync"])))
        Self.dropCache(f)
        print("  dd read (cold cache): " + (try Self.runDD(["if=\(f)", "of=/dev/null", "bs=8M"])))
    }

    static func runDD(_ args: [String]) throws -> String {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/dd")
            p.arguments = args
            let pipe = Pipe()
            p.standardError = pipe
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
            let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            return out.split(separator: "\n").last.map(String.init) ?? out
    }
}

final class BenchFlag: @unchecked Sendable {
    private let l = NSLock(); private var v = false
    var isSet: Bool { l.lock(); defer { l.unlock() }; return v }
    func set() { l.lock(); v = true; l.unlock() }
}

final class BenchSamples: @unchecked Sendable {
    private let l = NSLock(); private var v: [(ContinuousClock.Instant, Double)] = []
    func add(start: ContinuousClock.Instant, ms: Double) { l.lock(); v.append((start, ms)); l.unlock() }
    func all() -> [(ContinuousClock.Instant, Double)] { l.lock(); defer { l.unlock() }; return v }
}
