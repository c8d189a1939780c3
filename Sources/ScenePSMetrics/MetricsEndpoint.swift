import Foundation
import Logging
import Prometheus
#if canImport(Glibc)
import Glibc
#endif

/// Serves one process's metrics registry in the Prometheus text format over
/// HTTP (`GET /metrics`), on a thread of its own (docs/OBSERVING.md).
///
/// A deliberately small HTTP/1.0 responder: one connection at a time, the
/// request line read with a 2 s timeout, the whole exposition written and the
/// connection closed. A scraper asks once every few seconds; nothing else
/// talks to this port, so a server framework (SwiftNIO, Hummingbird) would add
/// build time (measured in docs/OBSERVING.md) and threads for no gain.
/// The exposition itself is swift-prometheus's (`PrometheusCollectorRegistry`).
public final class MetricsEndpoint: @unchecked Sendable {
    // @unchecked: `collectors` and `stopping` are behind `lock`; the socket is the serving thread's.
    public let registry: PrometheusCollectorRegistry
    public let host: String
    /// The port bound (the one asked for, or the kernel's pick for 0).
    public let port: Int
    private let fd: Int32
    private let logger: Logger
    private let lock = NSLock()
    private var collectors: [@Sendable () -> Void] = []
    private var stopping = false
    private let done = DispatchSemaphore(value: 0)
    private var started = false

    /// Binds `host:port` at once, so that a port in use is an error before the
    /// process starts its real work. `flag` names the option in that error.
    public init(registry: PrometheusCollectorRegistry, host: String = "127.0.0.1", port: Int, flag: String = "--metrics-port",
                logger: Logger) throws {
        guard (0...65535).contains(port) else { throw MetricsError("\(flag) \(port): not a TCP port (0...65535)") }
        self.registry = registry
        self.host = host
        self.logger = logger
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard s >= 0 else { throw MetricsError("\(flag) \(port): socket() failed: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else {
            close(s)
            throw MetricsError("--metrics-host '\(host)': not an IPv4 address (e.g. 127.0.0.1, or 0.0.0.0 for every interface)")
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 {
            let e = errno
            close(s)
            if e == EADDRINUSE {
                throw MetricsError("\(flag) \(port): port \(port) on \(host) is already in use (another job's metrics, or another program: `ss -ltnp 'sport = :\(port)'` names it)")
            }
            throw MetricsError("\(flag) \(port): cannot bind \(host):\(port): \(String(cString: strerror(e)))")
        }
        guard listen(s, 16) == 0 else {
            let e = errno
            close(s)
            throw MetricsError("\(flag) \(port): listen() failed: \(String(cString: strerror(e)))")
        }
        var bound = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
        self.port = Int(UInt16(bigEndian: bound.sin_port))
        fd = s
    }

    /// `http://HOST:PORT/metrics`.
    public var url: String { "http://\(host):\(port)/metrics" }

    /// Runs `body` before each scrape is rendered (gauges read at scrape time:
    /// table sizes, memory, a coordinator's leases). Called on the serving thread.
    public func onScrape(_ body: @escaping @Sendable () -> Void) {
        lock.withLock { collectors.append(body) }
    }

    /// Starts the serving thread.
    public func start() {
        lock.withLock {
            precondition(!started, "start() called twice")
            started = true
        }
        let t = Thread { [self] in serve(); done.signal() }
        t.name = "metrics-http"
        t.start()
    }

    /// Stops serving (bounded: the loop polls every 200 ms) and closes the port.
    public func stop() {
        let wasStarted = lock.withLock { () -> Bool in stopping = true; return started }
        if wasStarted { _ = done.wait(timeout: .now() + 2) }
        close(fd)
    }

    /// The exposition as served (collectors run first).
    public func render() -> [UInt8] {
        for c in lock.withLock({ collectors }) { c() }
        return registry.emitToBuffer()
    }

    private var isStopping: Bool { lock.withLock { stopping } }

    private func serve() {
        while !isStopping {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let n = poll(&p, 1, 200)
            if n < 0 && errno != EINTR {
                logger.error("metrics endpoint: poll failed; no more scrapes", metadata: ["metrics.port": "\(port)", "error": "\(String(cString: strerror(errno)))"])
                return
            }
            guard n > 0 else { continue }
            let c = accept(fd, nil, nil)
            if c < 0 { continue }
            answer(c)
            close(c)
        }
    }

    /// Reads the request head (at most 8 KiB, 2 s) and writes one response.
    private func answer(_ c: Int32) {
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var head = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 2048)
        let end = Array("\r\n\r\n".utf8), endLF = Array("\n\n".utf8)
        while head.count < 8192 {
            let n = buf.withUnsafeMutableBytes { recv(c, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            head.append(contentsOf: buf[0..<n])
            if head.count >= 4 && (Self.contains(head, end) || Self.contains(head, endLF)) { break }
        }
        let line = String(decoding: head.prefix { $0 != UInt8(ascii: "\r") && $0 != UInt8(ascii: "\n") }, as: UTF8.self)
        let parts = line.split(separator: " ")
        let response: [UInt8]
        if parts.count < 2 {
            response = Self.response(400, "Bad Request", "text/plain", Array("a metrics endpoint: GET /metrics\n".utf8))
        } else if parts[0] != "GET" && parts[0] != "HEAD" {
            response = Self.response(405, "Method Not Allowed", "text/plain", Array("only GET /metrics\n".utf8))
        } else {
            let path = parts[1].split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
            switch path {
            case "/metrics":
                let body = render()
                response = Self.response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", parts[0] == "HEAD" ? [] : body,
                                         length: body.count)
            case "/":
                response = Self.response(200, "OK", "text/plain", Array("ScenePS metrics: GET /metrics (Prometheus text format)\n".utf8))
            default:
                response = Self.response(404, "Not Found", "text/plain", Array("no \(path) here: GET /metrics\n".utf8))
            }
        }
        var off = 0
        while off < response.count {
            let n = response.withUnsafeBytes { send(c, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }   // the scraper went away: nothing to do
            off += n
        }
    }

    static func contains(_ hay: [UInt8], _ needle: [UInt8]) -> Bool {
        guard hay.count >= needle.count else { return false }
        for i in 0...(hay.count - needle.count) where hay[i] == needle[0] && Array(hay[i..<(i + needle.count)]) == needle { return true }
        return false
    }

    static func response(_ code: Int, _ reason: String, _ type: String, _ body: [UInt8], length: Int? = nil) -> [UInt8] {
        let head = "HTTP/1.0 \(code) \(reason)\r\nContent-Type: \(type)\r\nContent-Length: \(length ?? body.count)\r\nConnection: close\r\n\r\n"
        return Array(head.utf8) + body
    }
}

/// A metrics endpoint that could not be set up (a port in use, a bad host).
public struct MetricsError: Error, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}
