import Foundation
import XCTest

/// Starts the real executables as separate processes, reads their output
/// while they run, bounds every wait and checks every exit code.
enum Harness {
    static var root: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// `cluster/local.sh`, the launcher the integration tests run jobs with.
    static var launcher: String { root.appendingPathComponent("cluster/local.sh").path }

    /// Release binaries built by tools/test.sh (SCENEPS_BIN), else .build/release.
    static var bin: URL {
        if let b = ProcessInfo.processInfo.environment["SCENEPS_BIN"] { return URL(fileURLWithPath: b) }
        return root.appendingPathComponent(".build/release")
    }

    static func requireBinaries() throws {
        for b in ["ps-server", "worker", "coordinator", "psctl"] {
            let p = bin.appendingPathComponent(b).path
            guard FileManager.default.isExecutableFile(atPath: p) else {
                throw NSError(domain: "Harness", code: 1, userInfo: [NSLocalizedDescriptionKey:
                    "\(p) is missing: run tools/test.sh (it builds the release executables first)"])
            }
        }
    }

    /// A loopback port range no other test (or concurrent run) uses: derived
    /// from the process id and a per-test slot. Below 32768, where Linux's
    /// ephemeral ports start: a listening port there can be taken by any
    /// outgoing connection's source port (seen: the coordinator's bind failing
    /// with "Address already in use" after other tests' connections).
    /// 40 slots of 5 ports: 200 ports per process, 63 disjoint process ranges, the highest port
    /// 20_000 + 62 * 200 + 39 * 5 + 4 = 32_599. Each test class has slots of its own (a slot is
    /// reused only within a class, whose tests run one after another): grep 'slot: ' Tests.
    static func basePort(slot: Int) -> Int {
        precondition((0..<40).contains(slot), "40 slots of 5 ports per test process")
        return 20_000 + Int(getpid() % 63) * 200 + slot * 5
    }

    static func tempDir(_ name: String) throws -> URL {
        let u = FileManager.default.temporaryDirectory.appendingPathComponent("sceneps-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
        return u
    }

    final class Running: @unchecked Sendable {
        let process = Process()
        private let lock = NSLock()
        private var buffer = Data()
        private var eof = false

        var output: String { lock.lock(); defer { lock.unlock() }; return String(decoding: buffer, as: UTF8.self) }

        init(_ executable: String, _ args: [String], cwd: URL? = nil, environment: [String: String] = [:]) throws {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = args
            if let cwd { process.currentDirectoryURL = cwd }
            if !environment.isEmpty {
                process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
            }
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            process.standardInput = FileHandle.nullDevice
            try process.run()
            // A thread of its own does blocking reads until EOF: Foundation's
            // readabilityHandler on Linux was seen to lose output written
            // just before a child exits.
            let fd = pipe.fileHandleForReading.fileDescriptor
            let writer = pipe.fileHandleForWriting
            try? writer.close()   // only the children hold the write end now
            Thread.detachNewThread { [self] in
                var chunk = [UInt8](repeating: 0, count: 65_536)
                while true {
                    let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { break }
                    lock.lock(); buffer.append(contentsOf: chunk[0..<n]); lock.unlock()
                }
                lock.lock(); eof = true; lock.unlock()
                _ = pipe   // keep the pipe (and its read end) alive until EOF
            }
        }

        /// Waits (bounded) until every writer of the output pipe is gone, so
        /// that the output is complete after the process exits.
        private func drain(timeout: TimeInterval) {
            let end = Date().addingTimeInterval(timeout)
            while Date() < end {
                lock.lock(); let done = eof; lock.unlock()
                if done { return }
                Thread.sleep(forTimeInterval: 0.02)
            }
        }

        /// Waits until `text` appears in the output; false on timeout or exit.
        func waitFor(_ text: String, timeout: TimeInterval) -> Bool {
            let end = Date().addingTimeInterval(timeout)
            while Date() < end {
                if output.contains(text) { return true }
                if !process.isRunning { return output.contains(text) }
                Thread.sleep(forTimeInterval: 0.1)
            }
            return false
        }

        /// Waits until `text` appears in the output after the first `marker` (an event after another,
        /// e.g. training progress after a checkpoint); false on timeout or exit.
        func waitFor(_ text: String, after marker: String, timeout: TimeInterval) -> Bool {
            let end = Date().addingTimeInterval(timeout)
            func seen() -> Bool {
                let o = output
                guard let m = o.range(of: marker) else { return false }
                return o.range(of: text, range: m.upperBound..<o.endIndex) != nil
            }
            while Date() < end {
                if seen() { return true }
                if !process.isRunning { return seen() }
                Thread.sleep(forTimeInterval: 0.1)
            }
            return false
        }

        /// Waits for exit; kills the process group and returns nil on timeout.
        func waitExit(timeout: TimeInterval) -> Int32? {
            let end = Date().addingTimeInterval(timeout)
            while process.isRunning && Date() < end { Thread.sleep(forTimeInterval: 0.1) }
            if process.isRunning {
                process.terminate()
                Thread.sleep(forTimeInterval: 2)
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
                return nil
            }
            drain(timeout: 10)   // grandchildren (log prefixers) may hold the pipe a moment longer
            return process.terminationStatus
        }
    }

    /// Runs to completion within `timeout`; fails the test on timeout.
    @discardableResult
    static func run(_ executable: String, _ args: [String], timeout: TimeInterval, environment: [String: String] = [:],
                    file: StaticString = #filePath, line: UInt = #line) throws -> (status: Int32, output: String) {
        let r = try Running(executable, args, cwd: root, environment: environment)
        guard let status = r.waitExit(timeout: timeout) else {
            XCTFail("\(executable) \(args.joined(separator: " ")) did not finish within \(Int(timeout)) s; output:\n\(r.output.suffix(4000))",
                    file: file, line: line)
            return (-1, r.output)
        }
        return (status, r.output)
    }

    /// The processes below `root` in the process tree (children, their children, ...), with their command
    /// lines (arguments joined by single spaces), read from /proc. Only what this test started is in it,
    /// unlike a `pkill -f` pattern, which matches any other job's processes on the machine.
    static func descendants(of root: pid_t) -> [(pid: pid_t, command: String)] {
        var parent: [pid_t: pid_t] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(entry),
                  let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            // "pid (comm) state ppid ...": the command name may hold spaces and parentheses.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, let ppid = pid_t(fields[1]) { parent[pid] = ppid }
        }
        var below: Set<pid_t> = [root], grew = true
        while grew {
            grew = false
            for (pid, ppid) in parent where below.contains(ppid) && !below.contains(pid) {
                below.insert(pid)
                grew = true
            }
        }
        below.remove(root)
        return below.sorted().compactMap { pid in
            guard let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"), !raw.isEmpty else { return nil }
            let args = raw.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
            return (pid, args.joined(separator: " ").trimmingCharacters(in: .whitespaces))
        }
    }

    /// Whether `pid` is a live process (a zombie waiting to be reaped is not).
    static func isAlive(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].split(separator: " ").first ?? "X"
        return state != "Z" && state != "X"
    }

    /// Sends `signal` to every process below `root` whose command line matches the regular expression
    /// `pattern`; returns the pids signalled (the caller checks how many it expected).
    @discardableResult
    static func signalDescendants(of root: pid_t, matching pattern: String, signal: Int32) throws -> [pid_t] {
        let re = try NSRegularExpression(pattern: pattern)
        let hits = descendants(of: root).filter { p in
            re.firstMatch(in: p.command, range: NSRange(p.command.startIndex..., in: p.command)) != nil
        }
        for p in hits { kill(p.pid, signal) }
        return hits.map(\.pid)
    }

    static func readJSON(_ url: URL) throws -> [String: Any] {
        let d = try Data(contentsOf: url)
        guard let o = try JSONSerialization.jsonObject(with: d) as? [String: Any] else {
            throw NSError(domain: "Harness", code: 2, userInfo: [NSLocalizedDescriptionKey: "\(url.path) is not a JSON object"])
        }
        return o
    }
}
