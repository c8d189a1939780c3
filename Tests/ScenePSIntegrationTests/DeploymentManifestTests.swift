import Foundation
import ScenePSCore
import XCTest

/// cluster/k8s/ checked offline by tools/check-k8s-manifests.py: every manifest against the Kubernetes
/// schemas (PyPI kubernetes-validate, installed once into a venv under ~/.cache/sceneps), every flag a
/// container or probe passes against the built executable's --help, names and ports against each other;
/// the ConfigMap's config through ClusterConfig.load (an unknown key is an error there). No cluster runs.
final class DeploymentManifestTests: XCTestCase {
    var checker: String { Harness.root.appendingPathComponent("tools/check-k8s-manifests.py").path }
    var manifests: URL { Harness.root.appendingPathComponent("cluster/k8s") }

    func check(_ dir: URL, configOut: URL? = nil) throws -> (status: Int32, output: String) {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/env") else { throw XCTSkip("no /usr/bin/env") }
        return try Harness.run("/usr/bin/env", ["python3", checker, "--dir", dir.path, "--bin", Harness.bin.path] +
                               (configOut.map { ["--config-out", $0.path] } ?? []), timeout: 600)
    }

    func testTheManifestsValidateAndUseOnlyWhatTheExecutablesAccept() throws {
        try Harness.requireBinaries()
        let out = try Harness.tempDir("k8s-config")
        defer { try? FileManager.default.removeItem(at: out) }
        let r = try check(manifests, configOut: out)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("ok 12 manifests"), r.output)
        let files = try FileManager.default.contentsOfDirectory(atPath: out.path)
        XCTAssertEqual(files, ["sceneps-config-config.yaml"])
        let cfg = try ClusterConfig.load(path: out.appendingPathComponent(files[0]).path)
        XCTAssertEqual(cfg.servers, 2, "the StatefulSet's replicas (the checker compared them)")
    }

    /// The checker is not a rubber stamp: a renamed flag, a shard count that disagrees with the replicas, a
    /// probe at the wrong port, a field the schema does not know and a Deployment not named after its
    /// scene each fail it, naming the file and the resource.
    func testARenamedFlagOrADisagreeingPortFailsTheCheck() throws {
        try Harness.requireBinaries()
        let dir = try Harness.tempDir("k8s-bad")
        defer { try? FileManager.default.removeItem(at: dir) }
        for f in try FileManager.default.contentsOfDirectory(atPath: manifests.path) {
            var text = try String(contentsOf: manifests.appendingPathComponent(f), encoding: .utf8)
            text = text.replacingOccurrences(of: "--pools=registered", with: "--pool=registered")
                .replacingOccurrences(of: "--shard-count=2", with: "--shard-count=3")
                .replacingOccurrences(of: "--endpoint=tcp://127.0.0.1:7000,", with: "--endpoint=tcp://127.0.0.1:7001,")
                .replacingOccurrences(of: "  podManagementPolicy: Parallel", with: "  podManagementPolicy: Parallel\n  replicaz: 2")
                .replacingOccurrences(of: "name: worker-shop\n", with: "name: worker-shops\n")
            try text.write(to: dir.appendingPathComponent(f), atomically: true, encoding: .utf8)
        }
        let r = try check(dir)
        XCTAssertEqual(r.status, 1, r.output)
        for expected in [
            "coordinator.yaml: Job/coordinator: container coordinator: `coordinator` has no flag --pool",
            "servers.yaml: StatefulSet/ps: container ps-server: --shard-count 3 but replicas 2",
            "probe --endpoint tcp://127.0.0.1:7001 but the ps-server is at tcp://127.0.0.1:7000",
            "servers.yaml: StatefulSet/ps: schema: spec: Additional properties are not allowed ('replicaz' was unexpected)",
            "workers.yaml: Deployment/worker-shops: container worker: a worker of scene shop must be the Deployment worker-shop",
        ] {
            XCTAssertTrue(r.output.contains(expected), "missing: \(expected)\n\(r.output)")
        }
    }
}
