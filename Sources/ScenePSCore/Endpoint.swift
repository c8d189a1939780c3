import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// ZeroMQ TCP endpoints as processes on different hosts use them: a process binds one
/// (`tcp://0.0.0.0:7000`, every interface) and advertises another, the address its peers
/// connect to (`tcp://ps-0.ps.default.svc:7000`). docs/DEPLOY.md.
public enum Endpoint {
    /// `tcp://HOST:PORT` → (HOST, PORT); nil for anything else. An IPv6 host keeps its brackets.
    public static func split(_ endpoint: String) -> (host: String, port: String)? {
        guard endpoint.hasPrefix("tcp://") else { return nil }
        let rest = endpoint.dropFirst("tcp://".count)
        guard let colon = rest.lastIndex(of: ":") else { return nil }
        let host = String(rest[..<colon]), port = String(rest[rest.index(after: colon)...])
        guard !host.isEmpty, !port.isEmpty else { return nil }
        return (host, port)
    }

    /// A host that means "every interface" when bound, and nothing a peer can connect to.
    public static func isWildcard(host: String) -> Bool {
        ["*", "0.0.0.0", "::", "[::]", "[*]"].contains(host)
    }

    /// Checks an endpoint a peer is to connect to: `tcp://HOST:PORT`, a real host, a numeric port.
    /// nil when fine; else what is wrong with it, for an error that names the flag.
    public static func problemAsAdvertised(_ endpoint: String) -> String? {
        guard let (host, port) = split(endpoint) else { return "'\(endpoint)' is not tcp://HOST:PORT" }
        if isWildcard(host: host) { return "'\(endpoint)' names every interface (\(host)), not an address a peer can connect to" }
        guard let p = Int(port), (1...65_535).contains(p) else { return "'\(endpoint)' has no port number a peer can connect to" }
        return nil
    }

    /// What this host is called for its peers: the canonical name of `gethostname()` (as `hostname -f`
    /// prints it), or the plain name when the resolver knows no other.
    public static func hostName() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count) == 0 else { return "localhost" }
        let name = String(cString: buf)
        var hints = addrinfo()
        hints.ai_flags = AI_CANONNAME
        var res: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(name, nil, &hints, &res) == 0, let r = res else { return name }
        defer { freeaddrinfo(r) }
        if let c = r.pointee.ai_canonname, let full = String(validatingCString: c), !full.isEmpty { return full }
        return name
    }

    /// The endpoint to advertise: `advertise` when given; else the endpoint actually bound, with this
    /// host's name in place of a wildcard host (`tcp://0.0.0.0:7000` → `tcp://$(hostname -f):7000`).
    public static func advertised(bound: String, advertise: String?) -> String {
        if let advertise { return advertise }
        guard let (host, port) = split(bound), isWildcard(host: host) else { return bound }
        return "tcp://\(hostName()):\(port)"
    }
}
