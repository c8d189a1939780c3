/// Swift value types of the coordinator's messages (protos/scene_ps.proto,
/// "The coordinator"; semantics in docs/COORDINATOR.md).

/// A process joins the job: `name` is stable across restarts of the same
/// logical process, `incarnation` differs for every process start.
public struct Register: Sendable, Equatable {
    public var name: String
    public var scene: String
    public var incarnation: String
    public init(name: String, scene: String, incarnation: String) {
        self.name = name
        self.scene = scene
        self.incarnation = incarnation
    }
}

public struct RegisterReply: Sendable, Equatable {
    public var memberID: UInt64
    /// Parameter-server endpoints, in shard order.
    public var servers: [String]
    public var heartbeatMs: UInt32
    public var deadAfterMs: UInt32
    public init(memberID: UInt64, servers: [String], heartbeatMs: UInt32, deadAfterMs: UInt32) {
        self.memberID = memberID
        self.servers = servers
        self.heartbeatMs = heartbeatMs
        self.deadAfterMs = deadAfterMs
    }
}

public enum LeaseKind: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    /// Train this chunk, then ask again.
    case chunk = 0
    /// Nothing to lease now: ask again after `waitMs`.
    case wait = 1
    /// The scene's pool shrank: exit 0.
    case retire = 2
    /// Training is over: exit 0.
    case jobDone = 3
    public var description: String {
        switch self { case .chunk: "chunk"; case .wait: "wait"; case .retire: "retire"; case .jobDone: "job_done" }
    }
}

/// Asks for the next chunk, reporting the lease just trained (`doneLease` 0 = none).
public struct LeaseRequest: Sendable, Equatable {
    public var memberID: UInt64
    public var doneLease: UInt64
    public var doneExamples: UInt64
    public var doneSteps: UInt64
    public var doneSeconds: Double
    public var doneLoss: Double
    /// Where the member's time went since it started (cumulative): seconds
    /// per stage, waits as `wait.REASON`, counts as `count.NAME`.
    public var times: [String: Double]
    public init(memberID: UInt64, doneLease: UInt64 = 0, doneExamples: UInt64 = 0, doneSteps: UInt64 = 0,
                doneSeconds: Double = 0, doneLoss: Double = 0, times: [String: Double] = [:]) {
        self.times = times
        self.memberID = memberID
        self.doneLease = doneLease
        self.doneExamples = doneExamples
        self.doneSteps = doneSteps
        self.doneSeconds = doneSeconds
        self.doneLoss = doneLoss
    }
}

public struct LeaseReply: Sendable, Equatable {
    public var kind: LeaseKind
    public var leaseID: UInt64 = 0
    public var epoch: UInt32 = 0
    public var scene: String = ""
    /// Relative to the prepared data set.
    public var chunkFile: String = ""
    public var chunkIndex: UInt32 = 0
    public var chunkExamples: UInt64 = 0
    /// Examples of the scene's epoch in chunks done or leased before this one.
    public var sceneExamplesBefore: UInt64 = 0
    public var sceneEpochExamples: UInt64 = 0
    public var lrLevel: UInt32 = 0
    public var waitMs: UInt32 = 0
    public var reason: String = ""
    /// The request's `doneLease` counted (false: it had been taken back).
    public var doneAccepted: Bool = false
    public init(kind: LeaseKind) { self.kind = kind }
}

/// Liveness (`leaseID` 0) and progress alignment.
public struct MemberBeat: Sendable, Equatable {
    public var memberID: UInt64
    public var leaseID: UInt64
    public var leaseExamples: UInt64
    public init(memberID: UInt64, leaseID: UInt64 = 0, leaseExamples: UInt64 = 0) {
        self.memberID = memberID
        self.leaseID = leaseID
        self.leaseExamples = leaseExamples
    }
}

public struct MemberBeatReply: Sendable, Equatable {
    public var sceneProgress: Double
    public var minProgress: Double
    public var leaseValid: Bool
    public init(sceneProgress: Double, minProgress: Double, leaseValid: Bool) {
        self.sceneProgress = sceneProgress
        self.minProgress = minProgress
        self.leaseValid = leaseValid
    }
}

/// Sets a scene's pool size.
public struct ScaleRequest: Sendable, Equatable {
    public var scene: String
    public var workers: Int32
    public init(scene: String, workers: Int32) {
        self.scene = scene
        self.workers = workers
    }
}

public struct LeaveRequest: Sendable, Equatable {
    public var memberID: UInt64
    public var reason: String
    public init(memberID: UInt64, reason: String) {
        self.memberID = memberID
        self.reason = reason
    }
}

public struct SceneStatus: Sendable, Equatable {
    public var name: String
    /// Pool size asked for; -1 = not set (every registered worker is used).
    public var target: Int32
    public var liveWorkers: UInt32
    public var chunks: UInt32
    public var chunksDone: UInt32
    public var chunksLeased: UInt32
    /// Chunks left but no live worker.
    public var waiting: Bool
    public init(name: String, target: Int32, liveWorkers: UInt32, chunks: UInt32, chunksDone: UInt32,
                chunksLeased: UInt32, waiting: Bool) {
        self.name = name
        self.target = target
        self.liveWorkers = liveWorkers
        self.chunks = chunks
        self.chunksDone = chunksDone
        self.chunksLeased = chunksLeased
        self.waiting = waiting
    }
}

public struct MemberStatus: Sendable, Equatable {
    public var memberID: UInt64
    public var name: String
    public var scene: String
    public var retiring: Bool
    public var silentSeconds: Double
    public var leaseID: UInt64
    public init(memberID: UInt64, name: String, scene: String, retiring: Bool, silentSeconds: Double, leaseID: UInt64) {
        self.memberID = memberID
        self.name = name
        self.scene = scene
        self.retiring = retiring
        self.silentSeconds = silentSeconds
        self.leaseID = leaseID
    }
}

public struct StatusReply: Sendable, Equatable {
    public var epoch: UInt32
    /// training | evaluating | done
    public var phase: String
    public var scenes: [SceneStatus]
    public var members: [MemberStatus]
    public var message: String
    public init(epoch: UInt32, phase: String, scenes: [SceneStatus], members: [MemberStatus], message: String) {
        self.epoch = epoch
        self.phase = phase
        self.scenes = scenes
        self.members = members
        self.message = message
    }
}

/// On-demand checkpoint of a running job (`psctl checkpoint --run-dir`): ticket 0 asks for one now; a
/// later request with the reply's ticket asks how it went.
public struct CoordinatorCheckpointRequest: Sendable, Equatable {
    public var ticket: UInt64
    /// Comma-separated manifest tags (ticket 0 only); `on-demand` is always added.
    public var tags: String
    public init(ticket: UInt64 = 0, tags: String = "") {
        self.ticket = ticket
        self.tags = tags
    }
}

public struct CoordinatorCheckpointReply: Sendable, Equatable {
    public enum State: UInt32, Sendable, CaseIterable {
        case pending = 0, done = 1, failed = 2
    }
    public var state: State
    public var ticket: UInt64
    public var name = ""
    public var path = ""
    public var epoch: UInt32 = 0
    public var chunksDone: UInt64 = 0
    public var pushStallMs = 0.0
    public var bytes: UInt64 = 0
    public var seconds = 0.0
    public var message = ""
    public init(state: State, ticket: UInt64) {
        self.state = state
        self.ticket = ticket
    }
}

/// Global recovery, driven by the supervisor (docs/CHECKPOINTS.md, "Recovery policy").
public struct RecoveryRequest: Sendable, Equatable {
    public enum Action: UInt32, Sendable, CaseIterable {
        /// Stop starting checkpoints and leasing chunks; the reply says whether a checkpoint is still under way.
        case begin = 0
        /// Data progress becomes the checkpoint's; leases in flight are released; leasing resumes.
        case rewind = 1
        /// End a BEGIN without a rewind.
        case abort = 2
    }
    public var action: Action
    /// REWIND: the checkpoint directory every server restored.
    public var checkpoint: String
    public var reason: String
    public init(action: Action, checkpoint: String = "", reason: String = "") {
        self.action = action
        self.checkpoint = checkpoint
        self.reason = reason
    }
}

public struct RecoveryReply: Sendable, Equatable {
    public var checkpointing = false
    public var epochFrom: UInt32 = 0
    public var epochTo: UInt32 = 0
    public var chunksUndone: UInt64 = 0
    public var examplesUndone: UInt64 = 0
    public var leasesReleased: UInt64 = 0
    public var message = ""
    public init() {}
}
