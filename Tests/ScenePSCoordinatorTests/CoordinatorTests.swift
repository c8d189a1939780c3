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

    func make(_ plan: LeasePlan, journal: CoordinatorJournal? = nil, targets: [String: Int] = [:],
              pools: PoolPolicy = .launcher) -> Coordinator {
        var j = journal ?? CoordinatorJournal(startedAt: now)
        if journal == nil { j.targets = targets }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let c = Coordinator(plan: plan, settings: MembershipSettings(heartbeatMs: 100, deadAfterSeconds: 3), journal: j,
                            now: now, logger: logger, pools: pools)
        c.persist = { [unowned self] in self.persisted.append($0) }
        return c
    }

    func register(_ c: Coordinator, _ name: String, _ scene: String, incarnation: String = "1") throws -> UInt64 {
        let reply = c.handle(.register(Register(name: name, scene: scene, incarnation: incarnation)), now: now)
        guard case .registerReply(let r) = reply else {
            // A refusal is a regression, not a reason to skip: the thrown error fails the test.
            throw ScenePSError(.internalError, "registration of \(name) (scene \(scene)) refused: \(reply)")
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

    /// Members' time reports are cumulative: the latest of each counts (a retried or repeated report
    /// adds nothing), and members that left still count.
    func testWorkerTimesSumEachMembersLatestReport() throws {
        let c = make(plan())
        let h0 = try register(c, "home-0", "home"), s0 = try register(c, "shop-0", "shop")
        func report(_ m: UInt64, _ t: [String: Double]) {
            guard case .leaseReply = c.handle(.leaseRequest(LeaseRequest(memberID: m, times: t)), now: now) else {
                return XCTFail("no lease reply")
            }
        }
        report(h0, ["compute": 1, "wait.pull": 1, "count.steps": 10])
        report(h0, ["compute": 3, "wait.pull": 1, "count.steps": 30, "count.stale_steps": 2])
        report(h0, ["compute": 3, "wait.pull": 1, "count.steps": 30, "count.stale_steps": 2])   // a retry
        report(s0, ["compute": 1, "wait.align": 2, "count.steps": 5])
        report(s0, [:])   // a report without times keeps the last one
        _ = c.handle(.leave(LeaveRequest(memberID: s0, reason: "done")), now: now)
        XCTAssertEqual(c.workerTimes, ["compute": 4, "wait.pull": 1, "wait.align": 2, "count.steps": 35, "count.stale_steps": 2])
    }

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

    /// Scale down, and the worker that would retire dies with its chunk in hand before it asks again: the
    /// chunk is released and trained by the worker that stays, every chunk of the epoch counts once, and the
    /// pool is the new size (nobody is owed a replacement for the dead one).
    func testARetiringWorkerThatDiesWithItsLeaseGivesTheChunkBack() throws {
        let c = make(plan(), targets: ["home": 2, "shop": 1])
        let a = try register(c, "home-0", "home"), b = try register(c, "home-1", "home")
        let la = lease(c, a), lb = lease(c, b)
        XCTAssertEqual([la.kind, lb.kind], [.chunk, .chunk])
        guard case .ack = c.handle(.scale(ScaleRequest(scene: "home", workers: 1)), now: now) else { return XCTFail("scale refused") }
        _ = c.handle(.memberBeat(MemberBeat(memberID: a, leaseID: la.leaseID, leaseExamples: 25)), now: now)
        for _ in 0..<4 {   // a goes silent (killed), b keeps beating
            now += 1
            _ = c.handle(.memberBeat(MemberBeat(memberID: b, leaseID: lb.leaseID)), now: now)
        }
        c.tick(now: now)
        XCTAssertNil(c.journal.members.first { $0.id == a }, "the retiring worker is declared dead")
        XCTAssertEqual(c.journal.epochs[0].released, 1, "its chunk is taken back")
        XCTAssertEqual(c.journal.epochs[0].retrained, 25)
        var seen = [lb.chunkFile]
        var held: LeaseReply? = lb
        for _ in 0..<10 {
            let r = lease(c, b, done: held)
            XCTAssertNotEqual(r.kind, .retire, "the worker that stays is within the new size")
            held = r.kind == .chunk ? r : nil
            if let held { seen.append(held.chunkFile) }
        }
        XCTAssertTrue(seen.contains(la.chunkFile), "the dead worker's chunk is trained by the one that stays")
        XCTAssertEqual(seen.count, Set(seen).count, "no chunk twice by the survivor")
        XCTAssertEqual(c.journal.epochs[0].done, 4, "every chunk of the epoch done once")
        XCTAssertEqual(c.status(now: now).scenes.first { $0.name == "home" }?.liveWorkers, 1)
        XCTAssertEqual(c.journal.died, ["home-0"])
    }

    /// `--pools registered` (a Kubernetes Deployment per scene): whoever registers is the scene's pool. The
    /// config's sizes (here 1 per scene, also from a journal written by a launcher-owned run) retire nobody,
    /// a worker joining mid-epoch leases at once, one leaving gives its chunk back, `psctl scale` is refused
    /// with a pointer to the engine, and every chunk still counts exactly once.
    func testRegisteredPoolsTakeWhoeverRegisters() throws {
        var old = CoordinatorJournal(startedAt: now)
        old.targets = ["home": 1, "shop": 1]
        let c = make(plan(home: 6), journal: old, pools: .registered)
        XCTAssertEqual(c.journal.targets, [:], "a launcher's pool sizes do not hold under registered pools")
        XCTAssertEqual(c.status(now: now).scenes.map(\.target), [-1, -1], "status reports no pool size")
        let h0 = try register(c, "worker-home-abc", "home"), h1 = try register(c, "worker-home-def", "home")
        let s0 = try register(c, "worker-shop-xyz", "shop")
        var held: [UInt64: LeaseReply] = [:]
        var trained: [String] = []
        func round(_ members: [UInt64]) {
            for m in members {
                let r = lease(c, m, done: held[m])
                XCTAssertNotEqual(r.kind, .retire, "nobody is retired under registered pools")
                held[m] = nil
                if r.kind == .chunk { trained.append(r.chunkFile); held[m] = r }
            }
        }
        round([h0, h1, s0])
        XCTAssertEqual(trained.count, 3, "two home workers where the config says one: both lease")
        // kubectl scale --replicas=3: a third pod registers and leases at once.
        let h2 = try register(c, "worker-home-ghi", "home")
        round([h2])
        XCTAssertEqual(trained.count, 4)
        XCTAssertEqual(c.status(now: now).scenes.first { $0.name == "home" }?.liveWorkers, 3)
        // Scaled down: a pod goes away with its chunk in hand (SIGTERM, then gone); its chunk goes back.
        guard case .ack = c.handle(.leave(LeaveRequest(memberID: h2, reason: "pod deleted")), now: now) else {
            return XCTFail("leave refused")
        }
        held[h2] = nil
        guard case .error(let e) = c.handle(.scale(ScaleRequest(scene: "home", workers: 5)), now: now) else {
            return XCTFail("scale accepted under registered pools")
        }
        XCTAssertEqual(e.status, .badRequest)
        XCTAssertTrue(e.message.contains("kubectl scale deployment/worker-home --replicas=5"), e.message)
        XCTAssertEqual(c.journal.scaling, [], "a refused scale records nothing")
        for _ in 0..<20 { round([h0, h1, s0]) }
        XCTAssertEqual(c.epochToEvaluate, 1)
        XCTAssertEqual(c.journal.epochs[0].done, 8)
        XCTAssertEqual(Set(trained).count, 8, "every chunk trained")
        XCTAssertEqual(trained.count, 9, "the departed pod's chunk once more, by another worker")
    }

    /// The same requests under launcher pools: one of two home workers, over the config's size of one, retires.
    func testLauncherPoolsRetireWorkersOverTheSize() throws {
        let c = make(plan(), targets: ["home": 1, "shop": 1])
        let h0 = try register(c, "home-0", "home"), h1 = try register(c, "home-1", "home")
        XCTAssertEqual(Set([lease(c, h0).kind, lease(c, h1).kind]), [.retire, .chunk], "one of the two retires")
        guard case .ack = c.handle(.scale(ScaleRequest(scene: "home", workers: 2)), now: now) else { return XCTFail("scale refused") }
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
    // MARK: global recovery (docs/CHECKPOINTS.md, "Recovery policy")

    /// The journal as a checkpoint's `progress` holds it (JSON round trip, as the service reads it back).
    func progress(_ c: Coordinator) throws -> CoordinatorJournal {
        try JSONDecoder().decode(CoordinatorJournal.self, from: try JSONEncoder().encode(c.journal))
    }

    /// Every epoch's counts stay consistent: every lease ended done, released, or is in flight.
    func assertLeaseBooks(_ c: Coordinator, file: StaticString = #filePath, line: UInt = #line) {
        for e in c.journal.epochs {
            let inFlight = e.epoch == c.journal.epoch ? c.journal.leases.count : 0
            XCTAssertEqual(e.leased, e.done + e.released + inFlight, "epoch \(e.epoch): \(e)", file: file, line: line)
        }
    }

    /// Chunks done after the cut are undone and trained again; leases in flight are released (their late
    /// reports do not count); the epoch then ends with every chunk done once, every example counted once.
    func testARewindUndoesChunksDoneAfterTheCutAndReleasesLeasesInFlight() throws {
        let c = make(plan())
        let h = try register(c, "home-0", "home"), s = try register(c, "shop-0", "shop")
        let h1 = lease(c, h)
        let h2 = lease(c, h, done: h1)
        let s1 = lease(c, s)
        let s2 = lease(c, s, done: s1)   // cut: home 1 done, shop 1 done, two leases in flight
        let cut = try progress(c)
        let h3 = lease(c, h, done: h2)  // home 2 done after the cut
        _ = c.handle(.memberBeat(MemberBeat(memberID: h, leaseID: h3.leaseID, leaseExamples: 30)), now: now)
        XCTAssertEqual(c.chunksDone, 3)
        c.beginRecovery(reason: "server-1 died", now: now)
        XCTAssertNotNil(c.recoveringSince)
        let other = try register(c, "home-1", "home")
        XCTAssertEqual(lease(c, other).kind, .wait, "no chunk is leased while the servers roll back")
        now += 2
        let r = try c.rewind(to: cut, checkpoint: "ckpt-a", path: "/r/ckpt-a/manifest.json", reason: "server-1 died", now: now)
        XCTAssertEqual(r, .init(epochFrom: 1, epochTo: 1, chunksUndone: 1, examplesUndone: 100, leasesReleased: 2))
        XCTAssertNil(c.recoveringSince)
        XCTAssertEqual(c.journal.done, cut.done, "data progress is the checkpoint's")
        XCTAssertTrue(c.journal.leases.isEmpty)
        XCTAssertEqual(c.journal.epochs[0].rewound, 1)
        XCTAssertEqual(c.journal.epochs[0].done, 2)
        XCTAssertEqual(c.journal.epochs[0].retrained, 100 + 30, "the chunk undone and what h had reported of its lease")
        XCTAssertEqual(c.journal.rewinds?.count, 1)
        XCTAssertEqual(persisted.last, c.journal, "the rewind is journaled before it is answered")
        assertLeaseBooks(c)
        // Late reports of released leases are not counted; every chunk left is leased again and done once.
        var held: [UInt64: LeaseReply] = [h: h3, s: s2]
        var trained: [String] = []
        for _ in 0..<20 {
            for m in [h, s, other] {
                let x = lease(c, m, done: held[m])
                held[m] = nil
                if x.kind == .chunk { trained.append(x.chunkFile); held[m] = x }
            }
        }
        XCTAssertEqual(c.epochToEvaluate, 1)
        XCTAssertEqual(Set(trained).count, trained.count, "each chunk left leased once")
        XCTAssertEqual(c.journal.epochs[0].done, 6)
        XCTAssertEqual(c.journal.epochs[0].examples, 500, "every example of the epoch counted once")
        XCTAssertTrue(trained.contains(h2.chunkFile), "the chunk done after the cut is trained again")
        assertLeaseBooks(c)
    }

    /// A cut taken in epoch 1, a server dying in epoch 2: back to epoch 1 at the cut, epoch 2's records dropped.
    func testARewindAcrossAnEpochBoundaryGoesBackToTheCutsEpoch() throws {
        let c = make(plan(home: 2, shop: 1))
        let h = try register(c, "home-0", "home"), s = try register(c, "shop-0", "shop")
        let a = lease(c, h)
        let b = lease(c, h, done: a)
        let cut = try progress(c)     // epoch 1: one home chunk done
        let x = lease(c, s)
        _ = lease(c, s, done: x)
        _ = lease(c, h, done: b)
        XCTAssertEqual(c.epochToEvaluate, 1)
        try c.epochEvaluated(schedule: c.journal.schedule, stop: false, outcome: "", now: now)
        let e2 = lease(c, h)
        _ = lease(c, h, done: e2)
        XCTAssertEqual(c.epoch, 2)
        let r = try c.rewind(to: cut, checkpoint: "ckpt-b", path: "/r/ckpt-b/manifest.json", reason: "test", now: now)
        XCTAssertEqual(r.epochFrom, 2)
        XCTAssertEqual(r.epochTo, 1)
        XCTAssertEqual(r.chunksUndone, 2 + 1, "epoch 1's two chunks after the cut and epoch 2's one")
        XCTAssertEqual(c.epoch, 1)
        XCTAssertEqual(c.phase, .training)
        XCTAssertEqual(c.journal.epochs.map(\.epoch), [1])
        XCTAssertNil(c.journal.epochs[0].finishedAt)
        assertLeaseBooks(c)
        // Epoch 1 finishes again from the cut.
        var held: [UInt64: LeaseReply] = [:]
        for _ in 0..<10 {
            for m in [h, s] {
                let y = lease(c, m, done: held[m])
                held[m] = nil
                if y.kind == .chunk { held[m] = y }
            }
        }
        XCTAssertEqual(c.epochToEvaluate, 1)
        XCTAssertEqual(c.journal.epochs[0].done, 3)
        assertLeaseBooks(c)
    }

    /// Bad input: progress of another data set, of another journal format, or ahead of the job is refused
    /// naming the manifest; nothing changes and the coordinator keeps serving.
    func testARewindToProgressThatDoesNotFitTheJobIsRefusedAndChangesNothing() throws {
        let c = make(plan())
        let h = try register(c, "home-0", "home")
        let a = lease(c, h)
        let before = c.journal
        let path = "/runs/x/checkpoints/ckpt-1/manifest.json"
        // Another data set: a chunk index this one lacks.
        var foreign = CoordinatorJournal(startedAt: now)
        foreign.done = ["0": [9]]
        // Another data set: the same scene indices, another number of chunks per epoch.
        var otherSize = CoordinatorJournal(startedAt: now)
        otherSize.epochs = [.init(epoch: 1, chunks: 40, startedAt: now)]
        var otherFormat = try progress(c)
        otherFormat.version = 99
        var ahead = try progress(c)
        ahead.epoch = 5
        for (bad, expect) in [(foreign, "do not exist in this data set"), (otherSize, "has 40 chunks, this data set 6"),
                              (otherFormat, "journal format 99"), (ahead, "at epoch 5")] {
            XCTAssertThrowsError(try c.rewind(to: bad, checkpoint: "ckpt-1", path: path, reason: "test", now: now)) { e in
                XCTAssertTrue("\(e)".contains(path) && "\(e)".contains(expect), "\(e)")
            }
            XCTAssertEqual(c.journal, before, "nothing changes")
        }
        let next = lease(c, h, done: a)
        XCTAssertTrue(next.doneAccepted, "still serving: the lease is counted")
        XCTAssertEqual(next.kind, .chunk)
    }

    /// A BEGIN without a rewind ends by itself; ABORT ends it at once.
    func testARecoveryWithoutRewindEndsByItself() throws {
        let c = make(plan())
        let h = try register(c, "home-0", "home")
        c.recoveryTimeout = 2
        c.beginRecovery(reason: "test", now: now)
        XCTAssertEqual(lease(c, h).kind, .wait)
        now += 2.5
        _ = c.handle(.memberBeat(MemberBeat(memberID: h)), now: now)
        c.tick(now: now)
        XCTAssertNil(c.recoveringSince)
        XCTAssertEqual(lease(c, h).kind, .chunk)
        c.beginRecovery(reason: "again", now: now)
        c.endRecovery(reason: "no checkpoint")
        XCTAssertNil(c.recoveringSince)
    }

    /// A journal written before rewinds existed (no `rewinds`, no `rewound`) still loads.
    func testAJournalWithoutRewindFieldsStillLoads() throws {
        let c = make(plan())
        _ = try register(c, "home-0", "home")
        var o = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(c.journal)) as! [String: Any]
        o["rewinds"] = nil
        let back = try JSONDecoder().decode(CoordinatorJournal.self, from: try JSONSerialization.data(withJSONObject: o))
        XCTAssertNil(back.rewinds)
        XCTAssertNil(back.epochs[0].rewound)
    }
}
