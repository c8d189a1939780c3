import Foundation
@testable import ScenePSCore
import XCTest

/// The hosts file (docs/DEPLOY.md): placement, the commands it builds, and every bad input an error
/// naming the file, the line and the key.
final class HostsFileTests: XCTestCase {
    let good = """
        hosts:
          a: {address: 192.168.77.3, via: "ip netns exec ns-a"}
          b: {address: box-b.example.com}
          here: {address: 127.0.0.1, via: ""}
        servers: [a, b]
        coordinator: here
        workers: {default: b, home: [a, b]}
        """

    func testPlacementRoundRobinAndBinds() throws {
        let h = try HostsFile.parse(yaml: good, file: "h.yaml")
        XCTAssertEqual((0..<4).map { h.serverHost($0).name }, ["a", "b", "a", "b"])
        XCTAssertEqual(h.coordinatorHost.name, "here")
        XCTAssertEqual((0..<3).map { h.workerHost(scene: "home", index: $0).name }, ["a", "b", "a"])
        XCTAssertEqual(h.workerHost(scene: "shop", index: 5).name, "b", "a scene not named uses default")
        XCTAssertEqual(h.hosts["a"]?.bind, "192.168.77.3", "an IPv4 address binds itself")
        XCTAssertEqual(h.hosts["b"]?.bind, "0.0.0.0", "a name binds every interface")
        XCTAssertEqual(h.hosts["b"]?.via, ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "box-b.example.com"], "ssh by default")
        XCTAssertEqual(h.hosts["here"]?.via, [], "an empty via runs here")
        XCTAssertEqual(h.usedHosts.map(\.name), ["a", "b", "here"])
        XCTAssertNoThrow(try h.validate(scenes: ["home", "shop"]))
        XCTAssertThrowsError(try h.validate(scenes: ["shop"])) { XCTAssertTrue("\($0)".contains("workers.home: the data set has no scene 'home'"), "\($0)") }
    }

    func testCommandsPerPrefix() throws {
        let h = try HostsFile.parse(yaml: good, file: "h.yaml")
        let argv = ["/bin/ps-server", "--bind", "tcp://0.0.0.0:7000", "--name", "it's"]
        XCTAssertEqual(h.hosts["here"]!.command(argv), argv, "no prefix: the program itself, no wrapper")
        let ns = h.hosts["a"]!.command(argv)
        XCTAssertEqual(Array(ns.prefix(5)), ["ip", "netns", "exec", "ns-a", "sh"])
        XCTAssertEqual(Array(ns.suffix(argv.count)), argv, "argv passed as it is after a non-ssh prefix")
        let ssh = h.hosts["b"]!.command(argv)
        XCTAssertEqual(ssh.count, 7, "ssh gets one command string")
        XCTAssertTrue(ssh.last!.hasSuffix("/bin/ps-server --bind tcp://0.0.0.0:7000 --name 'it'\\''s'"), ssh.last!)
        // The remote shell gets back exactly argv: run the quoted string through sh.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "printf '%s\\n' " + argv.map(HostsFile.Host.shellQuoted).joined(separator: " ")]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self), argv.joined(separator: "\n") + "\n")
    }

    /// The wrapper passes the exit status through and ends the process (SIGTERM) when its standard
    /// input closes: run in a shell pipeline whose writer ends after a moment (popen, bounded by it).
    func testWrapperPassesStatusAndStopsOnClosedInput() throws {
        let h = HostsFile.Host(name: "x", address: "127.0.0.1", via: ["env"])
        func shell(_ line: String) -> String {
            guard let f = popen(line, "r") else { return "popen failed" }
            var out = ""
            var buf = [CChar](repeating: 0, count: 256)
            while fgets(&buf, Int32(buf.count), f) != nil { out += String(cString: buf) }
            pclose(f)
            return out.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        func wrapped(_ argv: [String]) -> String { h.command(argv).map(HostsFile.Host.shellQuoted).joined(separator: " ") }
        XCTAssertEqual(shell("sleep 1 | " + wrapped(["/bin/sh", "-c", "exit 3"]) + "; echo $?"), "3", "the status passes through")
        let t0 = Date()
        XCTAssertEqual(shell("sleep 0.3 | " + wrapped(["/bin/sleep", "20"]) + "; echo $?"), "\(128 + SIGTERM)",
                       "closed input: the process gets SIGTERM")
        XCTAssertLessThan(Date().timeIntervalSince(t0), 10, "ended when its input closed, not after 20 s")
    }

    func testBadInputNamesFileLineAndKey() {
        func fails(_ yaml: String, _ expected: String, line: UInt = #line) {
            XCTAssertThrowsError(try HostsFile.parse(yaml: yaml, file: "h.yaml"), line: line) { e in
                XCTAssertTrue("\(e)".contains(expected), "\(e) should contain \(expected)", line: line)
            }
        }
        fails("hosts: {a: {address: x}}\nservers: [a]\ncoordinator: a\n", "h.yaml:1: workers: missing")
        fails("hosts: {a: {address: x}}\nservers: [a, zz]\ncoordinator: a\nworkers: a\n", "h.yaml:2: servers: host 'zz' is not under hosts (known: a)")
        fails("hosts: {a: {adress: x}}\nservers: [a]\ncoordinator: a\nworkers: a\n", "hosts.a.adress: unknown key")
        fails("hosts: {a: {via: ssh}}\nservers: [a]\ncoordinator: a\nworkers: a\n", "hosts.a.address: missing")
        fails("hosts: {a: {address: 0.0.0.0}}\nservers: [a]\ncoordinator: a\nworkers: a\n", "hosts.a.address: '0.0.0.0' is not an address a peer can connect to")
        fails("hosts: {a: {address: x}}\nservers: [a]\ncoordinator: [a, a]\nworkers: a\n", "coordinator: expected one host")
        fails("hosts: {a: {address: x}}\nservers: [a]\ncoordinator: a\nworkers: {home: b}\n", "h.yaml:4: workers.home: host 'b' is not under hosts")
        fails("hosts: [", "h.yaml: not valid YAML")
        XCTAssertThrowsError(try HostsFile.load(path: "/nonexistent/h.yaml")) { XCTAssertTrue("\($0)".contains("/nonexistent/h.yaml: cannot read")) }
    }

    func testEndpointAdvertised() {
        XCTAssertEqual(Endpoint.advertised(bound: "tcp://10.1.2.3:7000", advertise: nil), "tcp://10.1.2.3:7000")
        XCTAssertEqual(Endpoint.advertised(bound: "tcp://0.0.0.0:7000", advertise: "tcp://ps-0.svc:7000"), "tcp://ps-0.svc:7000")
        let auto = Endpoint.advertised(bound: "tcp://0.0.0.0:7000", advertise: nil)
        XCTAssertTrue(auto.hasSuffix(":7000") && !auto.contains("0.0.0.0"), auto)
        XCTAssertEqual(Endpoint.advertised(bound: "tcp://[::]:7001", advertise: nil), "tcp://\(Endpoint.hostName()):7001")
        XCTAssertNil(Endpoint.problemAsAdvertised("tcp://box1:7000"))
        XCTAssertNotNil(Endpoint.problemAsAdvertised("tcp://0.0.0.0:7000"))
        XCTAssertNotNil(Endpoint.problemAsAdvertised("tcp://box1:*"))
        XCTAssertNotNil(Endpoint.problemAsAdvertised("box1:7000"))
    }
}
