import Foundation
import ScenePSCore
#if canImport(Glibc)
import Glibc
#endif

/// One child process: its output goes, line by line and prefixed with its
/// name, to our stdout and to its log file.
final class Child: @unchecked Sendable {
    // @unchecked: `status` is behind `lock`; the rest is set once.
    let name: String
    let process = Process()
    var scene = ""
    var memberName = ""
    private let lock = NSLock()
    private var status: Int32?
    private var pumpDone = false

    /// Where it runs (its command has the host's prefix).
    let host: HostsFile.Host
    /// With a prefix: the write end of its standard input, closed to end it (HostsFile.Host.command).
    private var stdinPipe: Pipe?

    init(name: String, command: [String], host: HostsFile.Host, log: String, out: PrefixedOutput) throws {
        self.name = name
        self.host = host
        precondition(!command.isEmpty)
        if command[0].contains("/") {
            process.executableURL = URL(fileURLWithPath: command[0])
            process.arguments = Array(command.dropFirst())
        } else {
            // A prefix such as `ssh` or `ip`: found on PATH.
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = command
        }
        if host.via.isEmpty {
            process.standardInput = FileHandle.nullDevice
        } else {
            let p = Pipe()
            process.standardInput = p
            stdinPipe = p
        }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.terminationHandler = { [weak self] p in
            // A signal shows as 128 + signal, as a shell reports it.
            let st = p.terminationReason == .uncaughtSignal ? 128 + p.terminationStatus : p.terminationStatus
            self?.lock.lock(); self?.status = st; self?.lock.unlock()
        }
        if !FileManager.default.fileExists(atPath: log) { FileManager.default.createFile(atPath: log, contents: nil) }
        let logHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        logHandle.seekToEndOfFile()
        try process.run()
        try? pipe.fileHandleForWriting.close()
        try? stdinPipe?.fileHandleForReading.close()
        let fd = pipe.fileHandleForReading.fileDescriptor
        let prefix = "[\(name)] "
        Thread.detachNewThread { [self] in
            var pending = [UInt8]()
            var buf = [UInt8](repeating: 0, count: 65_536)
            while true {
                let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                logHandle.write(Data(buf[0..<n]))
                pending.append(contentsOf: buf[0..<n])
                if let last = pending.lastIndex(of: 10) {
                    out.lines(prefix: prefix, pending[...last])
                    pending.removeSubrange(...last)
                }
            }
            if !pending.isEmpty { out.lines(prefix: prefix, pending[...] + [10]) }
            try? logHandle.close()
            lock.lock(); pumpDone = true; lock.unlock()
            _ = pipe
        }
    }

    var exitStatus: Int32? { lock.lock(); defer { lock.unlock() }; return status }
    var outputDone: Bool { lock.lock(); defer { lock.unlock() }; return pumpDone }

    /// SIGTERM to the process (with a prefix: to the prefix process, whose wrapper passes it on, and
    /// its standard input closed, which a remote wrapper takes as the same request).
    func terminate() {
        if exitStatus == nil { Glibc.kill(process.processIdentifier, SIGTERM) }
        closeInput()
    }
    /// SIGKILL (with a prefix: of the local prefix process; the remote process is ended by its wrapper
    /// when its standard input closes).
    func kill() {
        if exitStatus == nil { Glibc.kill(process.processIdentifier, SIGKILL) }
        closeInput()
    }
    private func closeInput() {
        lock.lock(); let p = stdinPipe; stdinPipe = nil; lock.unlock()
        try? p?.fileHandleForWriting.close()
    }

    static func describe(_ status: Int32) -> String {
        status > 128 ? "was killed by signal \(status - 128)" : "exited with status \(status)"
    }
}

/// Whole lines to stdout, never interleaved mid-line.
final class PrefixedOutput: @unchecked Sendable {
    private let lock = NSLock()

    func line(_ s: String) { write(Array((s + "\n").utf8)) }

    func lines(prefix: String, _ bytes: ArraySlice<UInt8>) {
        var out = [UInt8]()
        let p = Array(prefix.utf8)
        var start = bytes.startIndex
        while let nl = bytes[start...].firstIndex(of: 10) {
            out += p
            out += bytes[start...nl]
            start = nl + 1
        }
        write(out)
    }

    private func write(_ b: [UInt8]) {
        lock.lock(); defer { lock.unlock() }
        b.withUnsafeBytes { p in
            var off = 0
            while off < p.count {
                let n = Glibc.write(1, p.baseAddress! + off, p.count - off)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                off += n
            }
        }
    }

    /// Waits (bounded) until the children's output is all written.
    func flush(children: [Child]) {
        let end = Date().addingTimeInterval(3)
        while children.contains(where: { !$0.outputDone }) && Date() < end { Thread.sleep(forTimeInterval: 0.02) }
    }
}

/// SIGINT and SIGTERM, noticed by the supervisor's loop.
final class SignalWatch: @unchecked Sendable {
    private let lock = NSLock()
    private var sig: Int32?
    private var signals = 0
    private var sources: [DispatchSourceSignal] = []

    init() {
        for s in [SIGINT, SIGTERM] {
            signal(s, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: s, queue: .global())
            src.setEventHandler { [weak self] in self?.lock.lock(); self?.sig = s; self?.signals += 1; self?.lock.unlock() }
            src.resume()
            sources.append(src)
        }
    }

    var received: Int32? { lock.lock(); defer { lock.unlock() }; return sig }
    /// Signals received so far (a second Ctrl-C stops at once).
    var count: Int { lock.lock(); defer { lock.unlock() }; return signals }
}
