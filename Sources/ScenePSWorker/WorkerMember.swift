import Foundation
import Logging
import ScenePSClient
import ScenePSCore
import ScenePSProtocol

/// A worker as a member of a job: registers with the coordinator, keeps a
/// beat going on a thread of its own, and leases, trains and reports chunks
/// until the coordinator says the job is over or its pool shrank
/// (docs/COORDINATOR.md). A coordinator that forgot it (declared dead while
/// it was stopped, say) gets a new registration; the chunk in hand then
/// counts from whoever it was re-leased to.
public final class WorkerMember {
    public let name: String
    public let scene: String
    let calls: CoordinatorCalls
    let logger: Logger
    let incarnation: String
    private let state = MemberState()
    public private(set) var registration: RegisterReply?
    /// Where this worker's time goes (the trainer adds the step's stages);
    /// every lease request carries it.
    public let times = StepTimes()

    /// `link` carries registration and leases; `beatLink` the background
    /// beats (its own socket: links are single-threaded); `paceLink` the
    /// progress reports between steps (short patience: training goes on
    /// without alignment while the coordinator is away).
    let beatLink: CoordinatorLink
    let paceCalls: CoordinatorCalls

    public init(name: String, scene: String, link: CoordinatorLink, beatLink: CoordinatorLink, paceLink: CoordinatorLink,
                logger: Logger) {
        self.name = name
        self.scene = scene
        calls = CoordinatorCalls(link)
        self.beatLink = beatLink
        paceCalls = CoordinatorCalls(paceLink)
        self.logger = logger
        incarnation = "\(getpid())-\(UInt64(Date().timeIntervalSince1970 * 1e6))"
    }

    /// Registers; returns the servers' endpoints.
    @discardableResult
    public func register() throws -> RegisterReply {
        let r = try calls.register(Register(name: name, scene: scene, incarnation: incarnation + "-\(state.registrations)"))
        state.set(member: r.memberID)
        state.registrations += 1
        registration = r
        logger.info("registered", metadata: ["worker": "\(name)", "member": "\(r.memberID)", "servers": "\(r.servers.count)"])
        return r
    }

    /// Sends a beat every `heartbeatMs` until `stop()`.
    public func startBeating() {
        let every = Double(registration?.heartbeatMs ?? 500) / 1000
        nonisolated(unsafe) let beats = CoordinatorCalls(beatLink)   // used by the beat thread only
        let t = Thread { [state, logger, name] in
            var lastComplaint = Date.distantPast
            while !state.stopped {
                do {
                    _ = try beats.beat(MemberBeat(memberID: state.member))
                } catch {
                    if Date().timeIntervalSince(lastComplaint) > 10 {
                        logger.warning("beat failed", metadata: ["worker": "\(name)", "error": "\(error)"])
                        lastComplaint = Date()
                    }
                }
                Thread.sleep(forTimeInterval: every)
            }
        }
        t.name = "worker-beat"
        t.start()
    }

    public func stop() { state.stopped = true }

    /// Why the lease loop ended.
    public enum End: Equatable { case jobDone(String), retired(String) }

    /// Leases and trains until told to stop. `train` trains one lease; it
    /// gets a `pace` function to call between steps (see `Trainer.train`).
    public func serve(lead: Double,
                      train: (LeaseReply, (Int) throws -> (valid: Bool, waited: Bool)) throws -> ChunkResult?) throws -> End {
        var report = LeaseRequest(memberID: state.member)
        var lastEpoch = 0
        while true {
            report.memberID = state.member
            report.times = times.snapshot
            let lease: LeaseReply
            do {
                lease = try times.time("wait.lease") { try calls.lease(report) }
            } catch CoordinatorError.unknownMember(let why) {
                logger.warning("the coordinator does not know this worker any more; registering again",
                               metadata: ["worker": "\(name)", "why": "\(why)"])
                try register()
                report = LeaseRequest(memberID: state.member)
                continue
            }
            report = LeaseRequest(memberID: state.member)
            switch lease.kind {
            case .jobDone: return .jobDone(lease.reason)
            case .retire: return .retired(lease.reason)
            case .wait:
                times.time("wait.lease") { Thread.sleep(forTimeInterval: Double(max(lease.waitMs, 10)) / 1000) }
                continue
            case .chunk:
                break
            }
            if Int(lease.epoch) != lastEpoch {
                lastEpoch = Int(lease.epoch)
                logger.info("training", metadata: ["worker": "\(name)", "epoch": "\(lease.epoch)", "lr_level": "\(lease.lrLevel)"])
            }
            let pace = { [self] (examples: Int) throws -> (valid: Bool, waited: Bool) in
                self.pace(lease: lease, examples: examples, lead: lead)
            }
            guard let result = try train(lease, pace) else { continue }   // taken back: ask for another
            report = LeaseRequest(memberID: state.member, doneLease: lease.leaseID, doneExamples: UInt64(result.examples),
                                  doneSteps: UInt64(result.steps), doneSeconds: result.seconds, doneLoss: result.loss)
        }
    }

    /// Reports the lease's progress; waits while this scene is more than
    /// `lead` of its epoch ahead of the slowest scene. A coordinator that does
    /// not answer quickly is skipped (no alignment until it is back).
    func pace(lease: LeaseReply, examples: Int, lead: Double) -> (valid: Bool, waited: Bool) {
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { times.add("wait.align", Double(DispatchTime.now().uptimeNanoseconds &- t0) * 1e-9) }
        var waited = false
        let start = Date()
        while true {
            let r: MemberBeatReply
            do {
                r = try paceCalls.beat(MemberBeat(memberID: state.member, leaseID: lease.leaseID, leaseExamples: UInt64(examples)))
            } catch CoordinatorError.unknownMember {
                return (false, waited)   // forgotten: the lease is gone too
            } catch {
                return (true, waited)
            }
            guard r.leaseValid else { return (false, waited) }
            guard lead > 0, r.sceneProgress > r.minProgress + lead else {
                if waited { state.waitedSeconds += Date().timeIntervalSince(start) }
                return (true, waited)
            }
            waited = true
            Thread.sleep(forTimeInterval: 0.02)
        }
    }

    /// Leaves the job (its lease goes back to the queue at once). Best effort.
    public func leave(reason: String) {
        _ = try? calls.leave(memberID: state.member, reason: reason)
    }

    public var waitedSeconds: Double { state.waitedSeconds }
    /// Reads `waitedSeconds` from any thread (the metrics' scrape).
    public var waitedSecondsReader: @Sendable () -> Double { { [state] in state.waitedSeconds } }
}

/// What the beat thread and the lease loop share.
final class MemberState: @unchecked Sendable {
    // @unchecked: every field is behind `lock`.
    private let lock = NSLock()
    private var _member: UInt64 = 0
    private var _stopped = false
    private var _waited = 0.0
    var registrations = 0
    var member: UInt64 { lock.lock(); defer { lock.unlock() }; return _member }
    func set(member: UInt64) { lock.lock(); _member = member; lock.unlock() }
    var stopped: Bool {
        get { lock.lock(); defer { lock.unlock() }; return _stopped }
        set { lock.lock(); _stopped = newValue; lock.unlock() }
    }
    var waitedSeconds: Double {
        get { lock.lock(); defer { lock.unlock() }; return _waited }
        set { lock.lock(); _waited = newValue; lock.unlock() }
    }
}
