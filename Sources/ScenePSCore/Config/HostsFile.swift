import Foundation
import Yams

/// Where a job's processes run (`psctl supervise --hosts FILE`, `cluster/local.sh --hosts FILE`;
/// docs/DEPLOY.md): each host's address, how to start a process there, and which hosts run the
/// servers, the coordinator and each scene's workers.
///
/// ```yaml
/// hosts:
///   box1: {address: box1.example.com}               # started with ssh (the default `via`)
///   box2: {address: 10.1.0.7, via: "ssh -p 2222 me@10.1.0.7"}
///   ns-a: {address: 192.168.77.2, via: "ip netns exec ns-a"}   # any command prefix
///   here: {address: 127.0.0.1, via: ""}            # this machine, no prefix
/// servers: [box1, box2]        # server i on servers[i % count]
/// coordinator: box1
/// workers: {default: box2, home: [box1, box2]}     # a scene's workers round-robin over its hosts
/// ```
/// Without a hosts file every process runs here with no prefix: `HostsFile.local`.
public struct HostsFile: Sendable {
    public struct Host: Sendable, Equatable {
        public var name: String
        /// What peers connect to: the host part of every advertised endpoint of a process there.
        public var address: String
        /// The address its processes bind: `address` when it is an IPv4 literal, else 0.0.0.0.
        public var bind: String
        /// The command prefix that starts a process there; empty: this machine, started directly.
        public var via: [String]

        public init(name: String, address: String, bind: String? = nil, via: [String]) {
            self.name = name
            self.address = address
            self.bind = bind ?? (Host.isIPv4(address) ? address : "0.0.0.0")
            self.via = via
        }

        /// Started over ssh: the remote command is one string the remote shell parses.
        public var isSSH: Bool { via.first.map { ($0 as NSString).lastPathComponent == "ssh" } ?? false }

        static func isIPv4(_ s: String) -> Bool {
            let parts = s.split(separator: ".", omittingEmptySubsequences: false)
            return parts.count == 4 && parts.allSatisfy { p in UInt8(p) != nil }
        }

        /// The full command that runs `argv` on this host. With a prefix, `argv` runs under a small
        /// `sh` wrapper that ends it (SIGTERM) when its standard input closes or the wrapper is
        /// signalled: the supervisor stops a remote process by closing that pipe or ending the
        /// local prefix process (for ssh: the connection), and a process never outlives its
        /// supervisor's link to it. The wrapper exits with the process's status.
        public func command(_ argv: [String]) -> [String] {
            guard !via.isEmpty else { return argv }
            let inner = ["sh", "-c", Host.wrapper, "sceneps-child"] + argv
            if isSSH { return via + [inner.map(Host.shellQuoted).joined(separator: " ")] }
            return via + inner
        }

        /// `argv` run once on this host, as it is (no wrapper): for short checks.
        public func direct(_ argv: [String]) -> [String] {
            guard !via.isEmpty else { return argv }
            return isSSH ? via + [argv.map(Host.shellQuoted).joined(separator: " ")] : via + argv
        }

        /// The wrapper `command` puts around a prefixed process.
        static let wrapper = """
            exec 3<&0 0</dev/null
            "$@" & p=$!
            trap 'kill -TERM $p 2>/dev/null' TERM INT HUP
            { while IFS= read -r _ <&3; do :; done; kill -TERM $p 2>/dev/null; } &
            w=$!
            exec 3<&-
            while :; do wait $p; st=$?; kill -0 $p 2>/dev/null || break; done
            kill $w 2>/dev/null
            exit $st
            """

        public static func shellQuoted(_ s: String) -> String {
            if !s.isEmpty && s.allSatisfy({ $0.isLetter || $0.isNumber || "-_./:=,@%+".contains($0) }) { return s }
            return "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
        }
    }

    public var hosts: [String: Host]
    /// Server i runs on `servers[i % servers.count]`.
    public var servers: [String]
    public var coordinator: String
    /// Scene → its workers' hosts (round-robin); `default` for every scene not named.
    public var workers: [String: [String]]
    /// The file it was read from (for errors), or nil for the built-in local placement.
    public var file: String?

    /// Every process on this machine, no prefix, every endpoint on `address`: the local launcher.
    public static func local(address: String = "127.0.0.1") -> HostsFile {
        HostsFile(hosts: ["localhost": Host(name: "localhost", address: address, bind: address, via: [])],
                  servers: ["localhost"], coordinator: "localhost", workers: ["default": ["localhost"]], file: nil)
    }

    public func serverHost(_ i: Int) -> Host { hosts[servers[i % servers.count]]! }
    public var coordinatorHost: Host { hosts[coordinator]! }
    /// The host of scene `scene`'s k-th worker.
    public func workerHost(scene: String, index k: Int) -> Host {
        let list = workers[scene] ?? workers["default"]!
        return hosts[list[k % list.count]]!
    }
    /// Every host some process runs on, by name.
    public var usedHosts: [Host] {
        Set(servers + [coordinator] + workers.values.flatMap { $0 }).sorted().map { hosts[$0]! }
    }

    public static func load(path: String) throws -> HostsFile {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ScenePSError.config("\(path): cannot read the hosts file")
        }
        return try parse(yaml: text, file: path)
    }

    public static func parse(yaml: String, file: String = "<hosts>") throws -> HostsFile {
        let root: Node?
        do { root = try Yams.compose(yaml: yaml) } catch {
            throw ScenePSError.config("\(file): not valid YAML: \(error)")
        }
        guard let root else { throw ScenePSError.config("\(file): empty hosts file (it needs hosts, servers, coordinator and workers)") }
        let r = ConfigReader(file: file, node: root)
        let top = try r.keys(allowed: ["hosts", "servers", "coordinator", "workers"])
        for k in ["hosts", "servers", "coordinator", "workers"] where top[k] == nil {
            throw r.error(k, "missing (a hosts file names hosts, servers, coordinator and workers)")
        }
        var hosts: [String: Host] = [:]
        let hr = r.child("hosts", top["hosts"]!)
        guard let hm = top["hosts"]!.mapping, !hm.isEmpty else { throw r.error("hosts", "expected a mapping of host names to {address, via}", at: top["hosts"]) }
        for (k, v) in hm {
            guard let name = k.string, !name.isEmpty else { throw hr.error("", "host names must be strings", at: k) }
            let one = hr.child(name, v)
            let keys = try one.keys(allowed: ["address", "via", "bind"])
            guard let a = keys["address"] else { throw one.error("address", "missing: the address peers connect to (a name or an IP)", at: v) }
            let address = try one.string("address", a)
            guard !address.isEmpty, !address.contains(where: { $0 == " " || $0 == "/" }), !Endpoint.isWildcard(host: address) else {
                throw one.error("address", "'\(address)' is not an address a peer can connect to", at: a)
            }
            let via: [String]
            if let n = keys["via"] {
                let s = try one.string("via", n)
                via = s == "ssh" ? Self.ssh(address) : s.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            } else {
                via = Self.ssh(address)
            }
            let bind = try keys["bind"].map { try one.string("bind", $0) }
            hosts[name] = Host(name: name, address: address, bind: bind, via: via)
        }
        func hostList(_ key: String, _ n: Node, reader: ConfigReader) throws -> [String] {
            let names: [(String, Node)]
            if let seq = n.sequence {
                names = try seq.map { (try reader.string(key, $0), $0) }
            } else {
                names = [(try reader.string(key, n), n)]
            }
            guard !names.isEmpty else { throw reader.error(key, "expected a host name or a list of them", at: n) }
            for (h, at) in names where hosts[h] == nil {
                throw reader.error(key, "host '\(h)' is not under hosts (known: \(hosts.keys.sorted().joined(separator: ", ")))", at: at)
            }
            return names.map(\.0)
        }
        let servers = try hostList("servers", top["servers"]!, reader: r)
        let coordinator = try hostList("coordinator", top["coordinator"]!, reader: r)
        guard coordinator.count == 1 else { throw r.error("coordinator", "expected one host (one coordinator runs)", at: top["coordinator"]) }
        var workers: [String: [String]] = [:]
        let wn = top["workers"]!
        if let wm = wn.mapping {
            let wr = r.child("workers", wn)
            for (k, v) in wm {
                guard let scene = k.string else { throw wr.error("", "keys must be scene names or default", at: k) }
                workers[scene] = try hostList(scene, v, reader: wr)
            }
        } else {
            workers["default"] = try hostList("workers", wn, reader: r)
        }
        return HostsFile(hosts: hosts, servers: servers, coordinator: coordinator[0], workers: workers, file: file)
    }

    /// `via: ssh`: batch mode (a password prompt would hang the launcher) and a bounded connect.
    static func ssh(_ address: String) -> [String] {
        ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", address]
    }

    /// Checks the placement against the data set's scenes: every scene has worker hosts.
    public func validate(scenes: [String]) throws {
        let where_ = file ?? "<hosts>"
        for s in workers.keys where s != "default" && !scenes.contains(s) {
            throw ScenePSError.config("\(where_): workers.\(s): the data set has no scene '\(s)' (its scenes: \(scenes.joined(separator: ", ")))")
        }
        if workers["default"] == nil, let s = scenes.first(where: { workers[$0] == nil }) {
            throw ScenePSError.config("\(where_): workers: scene '\(s)' has no hosts (name it, or give `default`)")
        }
    }
}
