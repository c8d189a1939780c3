import ArgumentParser
import Foundation
import ScenePSCore
#if canImport(Glibc)
import Glibc
#endif

/// `--base-port P` or `--base-port auto`.
enum BasePort: ExpressibleByArgument, Equatable {
    case port(Int)
    case auto

    init?(argument: String) {
        if argument == "auto" { self = .auto; return }
        guard let p = Int(argument), (1024...65_000).contains(p) else { return nil }
        self = .port(p)
    }

    static var defaultValueDescription: String { "the config's base_port, or free ports when it is taken" }
}

/// Which local TCP ports are free, and who holds the others (Linux /proc).
enum Ports {
    /// True when `port` can be bound on `host` now (as libzmq binds: SO_REUSEADDR, so a port
    /// in TIME_WAIT counts as free and one with a listener does not).
    static func isFree(_ port: Int, host: String) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else { return false }
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    /// Who listens on TCP `port`: "pid N (command line)", or a plain description when /proc does not tell.
    static func holder(of port: Int) -> String {
        var inodes = Set<String>()
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            guard let text = try? String(contentsOfFile: table, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let f = line.split(separator: " ", omittingEmptySubsequences: true)
                guard f.count > 9, let hex = f[1].split(separator: ":").last, Int(hex, radix: 16) == port, f[3] == "0A" else { continue }
                inodes.insert(String(f[9]))
            }
        }
        guard !inodes.isEmpty else { return "a socket of another process (not listening: in use by a connection)" }
        let fm = FileManager.default
        for pid in (try? fm.contentsOfDirectory(atPath: "/proc")) ?? [] where Int(pid) != nil {
            for fd in (try? fm.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? [] {
                guard let target = try? fm.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)"),
                      target.hasPrefix("socket:["), inodes.contains(String(target.dropFirst(8).dropLast())) else { continue }
                let cmd = (fm.contents(atPath: "/proc/\(pid)/cmdline") ?? Data())
                    .split(separator: 0).map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ")
                return "pid \(pid) (\(cmd.count > 160 ? String(cmd.prefix(160)) + "…" : cmd))"
            }
        }
        return "another process (its owner is not visible here)"
    }

    /// The first port of `range` that is taken, if any.
    static func firstTaken(_ range: Range<Int>, host: String) -> Int? { range.first { !isFree($0, host: host) } }

    /// `count` consecutive free ports, searched upward from `start` in steps of `count`,
    /// below 32768 (where Linux's ephemeral ports begin: any outgoing connection may take those).
    static func freeRange(count: Int, from start: Int, host: String) -> Int? {
        var p = start
        while p + count <= 32_768 {
            if firstTaken(p..<(p + count), host: host) == nil { return p }
            p += count
        }
        return nil
    }
}

extension ClusterPlan {
    /// Moves the plan's endpoints to ports that are free on `host` now
    /// (servers at base, base+1, ..., the coordinator after them):
    /// - `.port(P)`: P's ports must be free, or it throws at once, naming the port and what holds it;
    /// - `.auto`: the config's base_port if free, else the first free range above it;
    /// - nil: the config's base_port; when one of its ports is taken, as `.auto`, and says so.
    mutating func choosePorts(_ choice: BasePort?, host: String = "127.0.0.1", say: (String) -> Void) throws {
        let count = servers.count + 1
        let base: Int
        if case .port(let p) = choice { base = p } else { base = config.basePort }
        func role(_ port: Int) -> String { port - base < servers.count ? "server \(port - base)'s" : "the coordinator's" }
        if let taken = Ports.firstTaken(base..<(base + count), host: host) {
            let who = Ports.holder(of: taken)
            if case .port = choice {
                throw ScenePSError.config("port \(taken) (\(role(taken)), of --base-port \(base)) on \(host) is taken by \(who): give another --base-port, or --base-port auto")
            }
            guard let free = Ports.freeRange(count: count, from: base + count, host: host) else {
                throw ScenePSError.config("no \(count) consecutive free ports on \(host) from \(base) up to 32767 (port \(taken) is taken by \(who))")
            }
            say("== port \(taken) (\(role(taken))) is taken by \(who): using ports \(free)-\(free + count - 1) instead (--base-port auto)")
            setBasePort(free, host: host)
        } else {
            setBasePort(base, host: host)
        }
    }

    mutating func setBasePort(_ base: Int, host: String) {
        config.basePort = base
        let n = servers.count
        servers = (0..<n).map { "tcp://\(hosts.serverHost($0).address):\(base + $0)" }
        serverBinds = (0..<n).map { "tcp://\(hosts.serverHost($0).bind):\(base + $0)" }
        coordinator = "tcp://\(hosts.coordinatorHost.address):\(base + n)"
        coordinatorBind = "tcp://\(hosts.coordinatorHost.bind):\(base + n)"
    }
}
