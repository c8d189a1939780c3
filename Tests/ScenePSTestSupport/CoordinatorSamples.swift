import ScenePSProtocol

/// Shared by the wire tests (round trips, WireCodecTests) and the server fuzz
/// (WireFuzzTests): one valid body of every coordinator message the server side
/// does not own, every field set to a value that is not its default.
public enum CoordinatorSamples {
    public static var bodies: [Body] {
        [
            .register(Register(name: "home-0", scene: "home", incarnation: "123-456")),
            .registerReply(RegisterReply(memberID: 7, servers: ["tcp://a:1", "tcp://b:2"], heartbeatMs: 500, deadAfterMs: 3000)),
            .leaseRequest(LeaseRequest(memberID: 7, doneLease: 9, doneExamples: 2048, doneSteps: 16, doneSeconds: 1.5, doneLoss: 0.5,
                                       times: ["compute": 2.25, "wait.pull": 0.5, "count.steps": 16])),
            .leaseReply({ var l = LeaseReply(kind: .chunk); l.leaseID = 10; l.epoch = 2; l.scene = "home"; l.chunkFile = "home/3.chunk"
                          l.chunkIndex = 3; l.chunkExamples = 2048; l.sceneExamplesBefore = 4096; l.sceneEpochExamples = 10_000
                          l.lrLevel = 1; l.waitMs = 0; l.reason = "r"; l.doneAccepted = true; return l }()),
            .memberBeat(MemberBeat(memberID: 7, leaseID: 10, leaseExamples: 512)),
            .memberBeatReply(MemberBeatReply(sceneProgress: 0.5, minProgress: 0.25, leaseValid: true)),
            .scale(ScaleRequest(scene: "shop", workers: -3)),
            .leave(LeaveRequest(memberID: 7, reason: "bye")),
            .status,
            .statusReply(StatusReply(epoch: 3, phase: "training",
                                     scenes: [SceneStatus(name: "home", target: 2, liveWorkers: 1, chunks: 9, chunksDone: 4, chunksLeased: 1, waiting: false)],
                                     members: [MemberStatus(memberID: 7, name: "home-0", scene: "home", retiring: false, silentSeconds: 0.25, leaseID: 10)],
                                     message: "m")),
        ]
    }
}
