/// Per-sender memory of recently applied push request ids, so a push that a
/// client retries after a timeout is acknowledged but not applied twice.
/// Bounded: the last `perSender` ids of at most `maxSenders` senders.
final class DedupWindow: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private struct Recent {
        var ids: [UInt64: UInt64] = [:]      // request id -> applied rows
        var order: [UInt64] = []             // ring of ids, oldest at `head`
        var head = 0
        var lastUse: UInt64 = 0
    }
    private let lock = Lock()
    private var senders: [String: Recent] = [:]
    private var clock: UInt64 = 0
    let perSender: Int
    let maxSenders: Int

    init(perSender: Int = 1024, maxSenders: Int = 4096) {
        precondition(perSender > 0 && maxSenders > 0)
        self.perSender = perSender
        self.maxSenders = maxSenders
    }

    /// Records `id` for `sender`. Returns the rows of the earlier application
    /// when it was already recorded (a duplicate), nil when it is new.
    func checkAndRecord(sender: String, id: UInt64, rows: UInt64) -> UInt64? {
        lock.withLock {
            clock &+= 1
            if var r = senders[sender] {
                if let prior = r.ids[id] { r.lastUse = clock; senders[sender] = r; return prior }
                senders[sender] = nil   // avoid a copy-on-write of the arrays below
                if r.order.count < perSender {
                    r.order.append(id)
                } else {
                    r.ids[r.order[r.head]] = nil
                    r.order[r.head] = id
                    r.head = (r.head + 1) % perSender
                }
                r.ids[id] = rows
                r.lastUse = clock
                senders[sender] = r
                return nil
            }
            if senders.count >= maxSenders, let oldest = senders.min(by: { $0.value.lastUse < $1.value.lastUse })?.key {
                senders[oldest] = nil
            }
            var r = Recent()
            r.order.append(id)
            r.ids[id] = rows
            r.lastUse = clock
            senders[sender] = r
            return nil
        }
    }

    /// Every sender's remembered ids, oldest first (a checkpoint's copy).
    struct Entry: Equatable {
        var sender: String
        var ids: [(id: UInt64, rows: UInt64)]
        static func == (a: Entry, b: Entry) -> Bool {
            a.sender == b.sender && a.ids.map(\.id) == b.ids.map(\.id) && a.ids.map(\.rows) == b.ids.map(\.rows)
        }
    }

    /// O(1) under the lock (the dictionary is copied on the next write);
    /// flattened outside it.
    func snapshot() -> [Entry] {
        let copy = lock.withLock { senders }
        return copy.map { name, r in
            let ordered = Array(r.order[r.head...]) + Array(r.order[..<r.head])
            return Entry(sender: name, ids: ordered.map { ($0, r.ids[$0] ?? 0) })
        }.sorted { $0.sender < $1.sender }
    }

    /// Adds remembered ids (a restore; several shards' windows merge into one).
    func restore(_ entries: [Entry]) {
        for e in entries { for x in e.ids { _ = checkAndRecord(sender: e.sender, id: x.id, rows: x.rows) } }
    }
}
