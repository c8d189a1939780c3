import ArgumentParser
import Foundation
import ScenePSCoordinator
import ScenePSCore
import ScenePSTransport

/// `psctl keys --out DIR`: a job's CURVE key set (docs/SECURITY.md).
struct Keys: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a job's CURVE key pairs: the servers', the admin's and the workers' (every file mode 0600).",
        discussion: """
            Writes DIR/server.key and DIR/server.pub (the servers' and the coordinator's pair), DIR/admin.key \
            (supervisor, psctl, the coordinator's own calls to the servers), DIR/worker.key, and DIR/authorized, \
            the accepted client public keys with their roles (`ROLE KEY` lines). Pass --keys DIR to \
            cluster/local.sh (or to each ps-server, coordinator, worker and psctl) to turn CURVE on: traffic is \
            encrypted, a client whose key is not listed cannot connect, and a worker key cannot shut down, \
            snapshot, checkpoint, restore, scale or recover. A host needs only the files of its processes: a \
            worker host worker.key and server.pub; a server host server.key and authorized. Refuses to overwrite \
            existing keys.
            """)

    @Option(help: "Directory to write the keys into (created, mode 0700).") var out: String

    func run() throws {
        try reportingErrors {
            let files = try CurveKeys.generate(into: out)
            for f in files { print(f) }
        }
    }
}

/// `--keys DIR` for psctl commands that talk to a job as its admin.
struct AdminKeysOption: ParsableArguments {
    @Option(help: "Job key directory (psctl keys --out DIR): talk CURVE with its admin.key and server.pub. With --run-dir, the live job's own key directory is used when not given.")
    var keys: String?

    /// The admin's client keys: from --keys, else from the live job of `runDir` (its coordinator names
    /// the directory it was started with), else none (plain TCP).
    func admin(runDir: String? = nil) throws -> CurveClientKeys? {
        if let keys { return try CurveKeys.client(dir: keys, role: .admin) }
        if let runDir, let dir = CoordinatorFiles.keysDir(runDir) { return try CurveKeys.client(dir: dir, role: .admin) }
        return nil
    }
}
