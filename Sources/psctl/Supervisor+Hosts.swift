import Foundation
import ScenePSCore
#if canImport(Glibc)
import Glibc
#endif

extension Supervisor {
    /// Before anything starts: every host of the hosts file that is reached through a prefix (ssh,
    /// `ip netns exec`, …) answers within `seconds`, can run the executables, read the config and the
    /// data set, and sees this run directory (the same file, not one of the same name: a token written
    /// here is read back there) — the shared filesystem docs/DEPLOY.md asks for. nil when all is well;
    /// else one line per host that failed, naming the host and the file.
    func checkHosts(seconds: Double = 20) -> String? {
        let remote = plan.hosts.usedHosts.filter { !$0.via.isEmpty }
        guard !remote.isEmpty else { return nil }
        let tokenFile = (runDir as NSString).appendingPathComponent(".hosts-check")
        let token = "\(getpid())-\(UInt64.random(in: 1...UInt64.max))"
        do { try Data((token + "\n").utf8).write(to: URL(fileURLWithPath: tokenFile)) } catch {
            return "cannot write \(tokenFile): \(error)"
        }
        defer { try? FileManager.default.removeItem(atPath: tokenFile) }
        let script = """
            for x in ps-server worker coordinator; do [ -x "$1/$x" ] || echo "cannot run $1/$x"; done
            [ -r "$2/manifest.json" ] || echo "cannot read $2/manifest.json (the data set)"
            [ -r "$5" ] || echo "cannot read $5 (the config)"
            if [ -r "$3" ]; then echo "token $(cat "$3")"; else echo "cannot read $3"; fi
            [ -w "$4" ] || echo "cannot write into $4 (the run directory)"
            echo "preflight-done"
            """
        let argv = ["sh", "-c", script, "sceneps-check", bin, dataDir, tokenFile, runDir, configPath]
        let problems = ProblemList()
        let group = DispatchGroup()
        let runDir = runDir
        for h in remote {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                problems.add(Self.check(h, argv, token: token, tokenFile: tokenFile, runDir: runDir, seconds: seconds))
            }
        }
        group.wait()
        let all = problems.all
        return all.isEmpty ? nil : all.sorted().joined(separator: "\n  ")
    }

    /// What is wrong with host `h`, from running the check script there.
    static func check(_ h: HostsFile.Host, _ argv: [String], token: String, tokenFile: String, runDir: String,
                      seconds: Double) -> [String] {
        let (status, output) = runBounded(h.direct(argv), seconds: seconds)
        let how = h.via.joined(separator: " ")
        guard let status else {
            return ["host \(h.name) (\(how)) did not answer within \(Int(seconds)) s: unreachable, or waiting for a password (ssh needs keys: BatchMode)"]
        }
        guard output.contains("preflight-done") else {
            let last = output.split(separator: "\n").last.map(String.init) ?? ""
            return ["host \(h.name) cannot be reached with `\(how)` (exit status \(status)): \(last)"]
        }
        var mine: [String] = []
        for line in output.split(separator: "\n") where line.hasPrefix("cannot ") {
            mine.append("host \(h.name) \(line): it must see \(runDir), the data and the executables at the same paths as this machine (a shared filesystem; docs/DEPLOY.md)")
        }
        if let t = output.split(separator: "\n").first(where: { $0.hasPrefix("token ") }), t.dropFirst(6) != token {
            mine.append("host \(h.name) sees another \(tokenFile) than this machine: \(runDir) is not the same shared directory there (docs/DEPLOY.md)")
        }
        return mine
    }

    /// Runs `command` to its end or for at most `seconds` (then kills it); its exit status (nil when
    /// it was killed for taking too long) and its output.
    static func runBounded(_ command: [String], seconds: Double) -> (Int32?, String) {
        let p = Process()
        if command[0].contains("/") {
            p.executableURL = URL(fileURLWithPath: command[0]); p.arguments = Array(command.dropFirst())
        } else {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env"); p.arguments = command
        }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch { return (127, "cannot start \(command[0]): \(error)") }
        let collected = DataBox()
        let reader = Thread { collected.data = out.fileHandleForReading.readDataToEndOfFile(); collected.done.signal() }
        reader.start()
        let end = Date().addingTimeInterval(seconds)
        while p.isRunning && Date() < end { Thread.sleep(forTimeInterval: 0.05) }
        var timedOut = false
        if p.isRunning { timedOut = true; Glibc.kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        _ = collected.done.wait(timeout: .now() + 2)
        let text = String(decoding: collected.data, as: UTF8.self)
        return (timedOut ? nil : p.terminationStatus, text)
    }
}

/// Problems found by the hosts' check threads.
private final class ProblemList: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []
    func add(_ p: [String]) { lock.lock(); list += p; lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return list }
}

/// The output a reader thread collected.
private final class DataBox: @unchecked Sendable {
    var data = Data()
    let done = DispatchSemaphore(value: 0)
}
