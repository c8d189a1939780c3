import Logging
import ScenePSClient
import ScenePSCore
import ScenePSProtocol
import XCTest
@testable import ScenePSCoordinator

/// The coordinator's logic without sockets: time is a number the test moves.
final class CoordinatorTests: XCTestCase {
    var now = 1000.0
    var persisted: [CoordinatorJournal] = []

    func plan(lead: Double = 0, home: Int = 4, shop: Int = 2) -> LeasePlan {
        LeasePlan(scenes: [
            .init(name: "home", chunks: (0..<home).map { .init(file: "home/\($0).chunk", examples: 100) }),
            .init(name: "shop", chunks: (0..<shop).map { .init(file: "shop/\($0).chunk", examples: 50) }),
        ], servers: ["tcp://127.0.0.1:1", "tcp://127.0.0.1:2"], seed: 7, maxProgressLead: lead)
    }

    func make(_ plan: LeasePlan, journal: CoordinatorJournal? = nil, targets: [String: Int] = [:]) -> Coordinator {
        var j = journal ?? CoordinatorJournal(startedAt: now)
        if journal == nil { j.targets = targets }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let c = Coordinator(plan: plan, settings: MembershipSettings(heartbeatMs: 100, deadAfterSeconds: 3), journal: j,
                            now: now, logger: logger)
        c.persist = { [unowned self] in self.persisted.append($0) }
        return c
    }

    func register(_ c: Coordinator, _ name: String, _ scene: String, incarnation: String = "1") throws -> UInt64 {
        guard case .registerReply(let r) = c.handle(.register(Register(name: name, scene: scene, incarnation: incarnation)), now: now) else {
            throw XCTSkip("registration refused")
        }
        XCTAssertEqual(r.servers.count, 2)
        return r.memberID
    }

    func lease(_ c: Coordinator, _ member: UInt64, done: LeaseReply? = nil) -> LeaseReply {
        var req = LeaseRequest(memberID: member)
        if let done { req.doneLease = done.leaseID; req.doneExamples = done.chunkExamples }
        guard case .leaseReply(let r) = c.handle(.leaseRequest(req), now: now) else {
            XCTFail("no lease reply")
            return LeaseReply(kind: .wait)
        }
        return r
    }

    func errorStatus(_ b: Body) -> Status? { if case .error(let e) = b { return e.status }; return nil }

    /// Two workers of each scene drain the epoch: every chunk exactly once, then the epoch waits for evaluation.
    func testEveryChunkOfAnEpochIsLeasedExactlyOnce() throws {
        let c = make(plan())
        let h0 = try register(c, "home-0", "home"), h1 = try register(c, "home-1", "home")
        let s0 = try register(c, "shop-0", "shop")
        var trained: [String] = []
        var held: [UInt64: LeaseReply] = [:]
        for _ in 0..<20 {
            for m in [h0, h1, s0] {
                let r = lease(c, m, done: held[m])
                held[m] = nil
                if r.kind == .chunk { trained.append(r.chunkFile); held[m] = r }
            }
        }
        XCTAssertEqual(trained.sorted(), (0..<4).map { "home/\($0).chunk" } + (0..<2).map { "shop/\($0).chunk" })
        XCTAssertEqual(c.epochToEvaluate, 1)
        XCTAssertEqual(c.journal.epochs[0].done, 6)
        XCTAssertEqual(c.journal.epochs[0].examples, 500)
        XCTAssertEqual(lease(c, h0).kind, .wait, "nothing is leased while the epoch is evaluated")
    }

    /// A lease request retried while the member holds a lease gets the same lease back.
    func testARetriedLeaseRequestGetsTheSameLease() throws {
        let c = make(plan())
        let m = try register(c, "home-0", "home")
        let a = lease(c, m), b = lease(c, m)
        XCTAssertEqual(a.kind, .chunk)
        XCTAssertEqual(a.leaseID, b.leaseID)
        XCTAssertEqual(c.journal.epochs[0].leased, 1)
    }

    /// A member that goes silent is declared dead; its chunk goes to another worker of the scene.
    func testADeadWorkersLeaseIsReleasedToAnotherWorker() throws {
        let c = make(plan())
        let a = try register(c, "home-0", "home"), b = try register(c, "home-1", "home")
        let la = lease(c, a)
        XCTAssertEqual(la.kind, .chunk)
        _ = c.handle(.memberBeat(MemberBeat(memberID: a, leaseID: la.leaseID, leaseExamples: 40)), now: now)
        // b keeps beating, a does not.
        for _ in 0..<4 {
            now += 1
            _ = c.handle(.memberBeat(MemberBeat(memberID: b)), now: now)
        }
        c.tick(now: now)
        XCTAssertNil(c.journal.members.first { $0.id == a }, "a is declared dead")
        XCTAssertEqual(c.journal.epochs[0].released, 1)
        XCTAssertEqual(c.journal.epochs[0].retrained, 40, "what a had reported of its chunk is trained again")
        var seen: [String] = []
        var held: LeaseReply?
        for _ in 0..<10 {
            let r = lease(c, b, done: held)
            held = r.kind == .chunk ? r : nil
            if let held { seen.append(held.chunkFile) }
        }
        XCTAssertTrue(seen.contains(la.chunkFile), "the dead worker's chunk was leased again")
        XCTAssertEqual(Set(seen).count, 4)
        XCTAssertEqual(errorStatus(c.handle(.leaseRequest(LeaseRequest(memberID: a)), now: now)), .unknownMember)
        XCTAssertEqual(c.journal.died, ["home-0"])
    }

    /// The same name registering with a new incarnation replaces the old one (a restart) and is counted.
    func testARestartedWorkerReplacesItsOldSelfAndIsCounted() throws {
        let c = make(plan())
        let a = try register(c, "home-0", "home", incarnation: "pid1")
        let la = lease(c, a)
        let b = try register(c, "home-0", "home", incarnation: "pid2")
        XCTAssertNotEqual(a, b)
        XCTAssertEqual(c.journal.restarts["home-0"], 1)
        XCTAssertEqual(lease(c, b).chunkFile, la.chunkFile, "the restarted worker gets the chunk its old self held")
        XCTAssertEqual(errorStatus(c.handle(.register(Register(name: "home-0", scene: "home", incarnation: "pid2")), now: now)),
                       .conflict, "the same incarnation twice is a duplicate registration")
    }

    /// Scale down: the worker over the size retires at its next lease request, after reporting its chunk.
    func testScalingDownRetiresAWorkerAfterItsChunk() throws {
        let c = make(plan(), targets: ["home": 2, "shop": 1])
        let a = try register(c, "home-0", "home"), b = try register(c, "home-1", "home")
        let la = lease(c, a), lb = lease(c, b)
        guard case .ack = c.handle(.scale(ScaleRequest(scene: "home", workers: 1)), now: now) else { return XCTFail("scale refused") }
        let r = lease(c, a, done: la)
        XCTAssertEqual(r.kind, .retire)
        XCTAssertTrue(r.doneAccepted, "its chunk counted before it retired")
        XCTAssertEqual(lease(c, b, done: lb).kind, .chunk, "the other worker goes on")
        XCTAssertEqual(c.journal.epochs[0].done, 2)
        XCTAssertEqual(c.journal.epochs[0].released, 0, "a retirement re-leases nothing")
        XCTAssertEqual(c.journal.scaling.last?.workers, 1)
        XCTAssertNil(c.journal.restarts["home-0"])
    }

    /// A scene scaled to zero is reported waiting; the others finish their part and wait for it.
    func testASceneWithoutWorkersIsReportedWaiting() throws {
        let c = make(plan(), targets: ["home": 1, "shop": 0])
        let h = try register(c, "home-0", "home")
        var held: LeaseReply?
        for _ in 0..<6 { let r = lease(c, h, done: held); held = r.kind == .chunk ? r : nil }
        let r = lease(c, h, done: held)
        XCTAssertEqual(r.kind, .wait)
        XCTAssertTrue(r.reason.contains("shop"), r.reason)
        let st = c.status(now: now)
        XCTAssertEqual(st.scenes.first { $0.name == "shop" }?.waiting, true)
        XCTAssertEqual(st.scenes.first { $0.name == "home" }?.waiting, false)
        XCTAssertNil(c.epochToEvaluate)
        _ = c.handle(.scale(ScaleRequest(scene: "shop", workers: 1)), now: now)
        let s = try register(c, "shop-0", "shop")
        var sh: LeaseReply?
        for _ in 0..<4 { let x = lease(c, s, done: sh); sh = x.kind == .chunk ? x : nil }
        XCTAssertEqual(c.epochToEvaluate, 1)
    }

    /// Progress alignment: a scene more than `lead` ahead of the slowest waits.
    func testASceneFarAheadWaitsForTheSlowest() throws {
        let c = make(plan(lead: 0.1))
        let h = try register(c, "home-0", "home"), s = try register(c, "shop-0", "shop")
        let lh = lease(c, h)
        _ = lease(c, s)
        guard case .memberBeatReply(let r) = c.handle(.memberBeat(MemberBeat(memberID: h, leaseID: lh.leaseID, leaseExamples: 100)), now: now)
        else { return XCTFail("no beat reply") }
        XCTAssertEqual(r.sceneProgress, 0.25, accuracy: 1e-9)
        XCTAssertEqual(r.minProgress, 0, accuracy: 1e-9)
        XCTAssertTrue(r.leaseValid)
        XCTAssertEqual(lease(c, h, done: lh).kind, .wait, "home is 25% through, shop 0%")
    }

    /// Bad input: an error reply, nothing changes.
    func testBadRequestsAreRefusedAndChangeNothing() throws {
        let c = make(plan())
        let m = try register(c, "home-0", "home")
        let before = c.journal
        XCTAssertEqual(errorStatus(c.handle(.register(Register(name: "x", scene: "nope", incarnation: "1")), now: now)), .badRequest)
        XCTAssertEqual(errorStatus(c.handle(.memberBeat(MemberBeat(memberID: 999)), now: now)), .unknownMember)
        XCTAssertEqual(errorStatus(c.handle(.leaseRequest(LeaseRequest(memberID: m, doneLease: 12345, doneExamples: 1)), now: now)), nil,
                       "a report of an unknown lease is not counted, but the member still gets an answer")
        XCTAssertEqual(c.journal.epochs[0].done, 0)
        XCTAssertEqual(errorStatus(c.handle(.scale(ScaleRequest(scene: "nope", workers: 1)), now: now)), .badRequest)
        XCTAssertEqual(errorStatus(c.handle(.scale(ScaleRequest(scene: "home", workers: -1)), now: now)), .badRequest)
        XCTAssertEqual(errorStatus(c.handle(.pull(Blocks()), now: now)), .badRequest)
        var after = c.journal
        after.leases = before.leases
        after.nextLeaseID = before.nextLeaseID
        after.epochs = before.epochs
        XCTAssertEqual(after, before)
        let l = lease(c, m)
        XCTAssertEqual(errorStatus(c.handle(.leaseRequest(LeaseRequest(memberID: m, doneLease: l.leaseID, doneExamples: 7)), now: now)),
                       .badRequest, "a report with the wrong example count is refused")
    }

    /// The journal carries everything: a coordinator started from it continues the epoch where it stopped.
    func testACoordinatorRestartedFromItsJournalContinues() throws {
        let c = make(plan())
        let h = try register(c, "home-0", "home")
        let l1 = lease(c, h)
        let l2 = lease(c, h, done: l1)
        XCTAssertEqual(l2.kind, .chunk)
        let journal = persisted.last!
        let data = try JSONEncoder().encode(journal)
        let back = try JSONDecoder().decode(CoordinatorJournal.self, from: data)
        XCTAssertEqual(back, journal)
        now += 10   // the restart took a while: members get a fresh grace period
        let c2 = make(plan(), journal: back)
        try c2.recordStart()
        try c2.recordStart()
        XCTAssertEqual(c2.journal.restarts["coordinator"], 1)
        c2.tick(now: now)
        XCTAssertNotNil(c2.journal.members.first { $0.id == h }, "members are not declared dead by the restart")
        let l3 = lease(c2, h, done: l2)
        XCTAssertTrue(l3.doneAccepted, "the lease granted before the restart is known after it")
        XCTAssertEqual(c2.journal.epochs[0].done, 2)
        XCTAssertNotEqual(l3.chunkFile, l1.chunkFile)
        XCTAssertNotEqual(l3.chunkFile, l2.chunkFile)
    }

    /// Over an in-process link (the transport seam), the typed calls work as over ZeroMQ.
    func testTypedCallsOverTheInProcessLink() throws {
        let c = make(plan())
        let calls = CoordinatorCalls(InProcessCoordinatorLink { [unowned self] in c.handle($0, now: self.now) })
        let r = try calls.register(Register(name: "shop-0", scene: "shop", incarnation: "1"))
        let l = try calls.lease(LeaseRequest(memberID: r.memberID))
        XCTAssertEqual(l.kind, .chunk)
        XCTAssertEqual(l.scene, "shop")
        XCTAssertThrowsError(try calls.beat(MemberBeat(memberID: 42))) { e in
            guard case CoordinatorError.unknownMember = e else { return XCTFail("\(e)") }
        }
        XCTAssertThrowsError(try calls.scale(scene: "home", workers: -2))
        XCTAssertEqual(try calls.status().scenes.map(\.name), ["home", "shop"])
    }

    /// Random requests (valid and not, from members alive, dead and unknown, with time jumping):
    /// every reply is well formed, and no chunk of an epoch is ever counted twice.
    func testRandomRequestsNeverCountAChunkTwice() throws {
        let c = make(plan(lead: 0.05), targets: ["home": 3, "shop": 2])
        var rng = SplitMix64(seed: 99)
        var members: [UInt64] = []
        var held: [UInt64: LeaseReply] = [:]
        var evaluated = 0
        for step in 0..<5000 {
            now += Double(rng.next() % 100) / 1000   // up to 0.1 s per step: a member not heard for 30 steps dies
            switch rng.next() % 10 {
            case 0:
                let scene = ["home", "shop", "*", "nope"][Int(rng.next() % 4)]
                if case .registerReply(let r) = c.handle(.register(Register(name: "w\(rng.next() % 6)", scene: scene,
                                                                            incarnation: "\(step)")), now: now) {
                    members.append(r.memberID)
                }
            case 1:
                _ = c.handle(.scale(ScaleRequest(scene: ["home", "shop", "x"][Int(rng.next() % 3)], workers: Int32(rng.next() % 5) - 1)), now: now)
            case 2:
                _ = c.handle(.leaseRequest(LeaseRequest(memberID: rng.next() % 50, doneLease: rng.next() % 40, doneExamples: rng.next() % 120)), now: now)
            case 3:
                if let m = members.randomElement(using: &rng) { _ = c.handle(.memberBeat(MemberBeat(memberID: m, leaseID: held[m]?.leaseID ?? 0, leaseExamples: rng.next() % 100)), now: now) }
            default:
                guard let m = members.randomElement(using: &rng) else { continue }
                var req = LeaseRequest(memberID: m)
                if let d = held[m] { req.doneLease = d.leaseID; req.doneExamples = d.chunkExamples }
                switch c.handle(.leaseRequest(req), now: now) {
                case .leaseReply(let r): held[m] = r.kind == .chunk ? r : nil
                case .error(let e): XCTAssertEqual(e.status, .unknownMember, e.message); held[m] = nil
                default: XCTFail("a lease request answered with something else")
                }
            }
            for (key, done) in c.journal.done {
                XCTAssertEqual(Set(done).count, done.count, "scene \(key): a chunk counted twice in epoch \(c.epoch)")
            }
            let leased = c.journal.leases.map { "\($0.scene)/\($0.chunk)" }
            XCTAssertEqual(Set(leased).count, leased.count, "a chunk leased twice at once")
            if let e = c.epochToEvaluate {
                XCTAssertTrue(c.epochComplete)
                XCTAssertEqual(c.journal.epochs.last?.examples, 500, "every example of the epoch once")
                try c.epochEvaluated(schedule: c.journal.schedule, stop: e == 3, outcome: "test", now: now)
                evaluated += 1
                held = [:]
            }
        }
        XCTAssertGreaterThanOrEqual(evaluated, 2, "the random workload finished epochs")
    }
}
