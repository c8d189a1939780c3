import Logging
import ScenePSClient

/// `n` in-process servers on free loopback ports and a client of all of them.
func makeTestCluster(_ n: Int, sender: String = "client-test") throws -> ([TestServer], PSClient) {
    let servers = try (0..<n).map { try TestServer(shardIndex: $0, shardCount: n) }
    var opts = PSClientOptions()
    opts.timeout = .seconds(5)
    opts.retries = 1
    var logger = Logger(label: "test-client")
    logger.logLevel = .critical
    let client = try PSClient(endpoints: servers.map(\.endpoint), sender: sender, options: opts, logger: logger)
    return (servers, client)
}
