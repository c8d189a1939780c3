import ScenePSCore

/// What `psctl recommend` ranks and for whom: the catalogue of a prepared
/// data set and a user's behaviour history as the trainer builds it.
public enum RecommendationSource {
    /// One catalogue item: its key (`KeyHash.idKey` of the id), id as
    /// written, category key and title ("" when the data set has none).
    public struct Item: Sendable, Equatable {
        public let key: UInt64
        public let id: String
        public let category: UInt64
        public let title: String
    }

    /// The items a recommendation ranks, each once, in file order.
    public struct Items: Sendable {
        public let items: [Item]
        /// Where they were read: the data set's items.csv, or the log.
        public let file: String
        let byKey: [UInt64: Int]

        init(items: [Item], file: String) {
            self.items = items
            self.file = file
            var byKey: [UInt64: Int] = [:]
            for (i, it) in items.enumerated() { byKey[it.key] = i }
            self.byKey = byKey
        }

        /// The item of id `id` (matched as the log's ids are: by key).
        public func item(id: String) -> Item? { byKey[KeyHash.idKey(id)].map { items[$0] } }
        public func item(key: UInt64) -> Item? { byKey[key].map { items[$0] } }
    }

    /// One history token: a clicked item, its category in that row, and the
    /// scene index of the row.
    public struct HistoryEntry: Sendable, Equatable {
        public let item: UInt64
        public let category: UInt64
        public let scene: Int32
        public init(item: UInt64, category: UInt64, scene: Int32) {
            self.item = item; self.category = category; self.scene = scene
        }
    }

    /// A user of the log: `rows` rows in it (every split); `history`: the
    /// positive rows before the test cut, most recent first (all of them,
    /// not only the L_long the model reads).
    public struct UserHistory: Sendable {
        public let rows: Int
        public let history: [HistoryEntry]
    }

    /// The catalogue of the data set in `dataDir` (its items.csv when
    /// preparation was given one, else every item of the log, named by its
    /// id in the log, with the category of its latest row and no title), and,
    /// for `user` (a user id), that user's history. The log
    /// (`manifest.source.log`) is read only when needed: for a user, or for a
    /// data set without items.csv.
    ///
    /// The history is the trainer's (Preparation): the user's rows with
    /// label 1 and a timestamp before the test cut (`split.testCut`: train and
    /// validation rows), in time order with file order on ties, most recent
    /// first: what the model read for the user's test rows.
    public static func load(dataDir: String, manifest: DatasetManifest, user: String?) throws -> (Items, UserHistory?) {
        var log: BehaviourLog?
        if user != nil || manifest.catalogue == nil {
            let path = manifest.source.log
            var bad = BadRowLog(skip: true)   // rows preparation refused (or skipped) are not in the data set either
            do {
                log = try BehaviourLog.read(path: path, scenes: manifest.scenes.map(\.name), bad: &bad,
                                            keepItemIDs: manifest.catalogue == nil)
            } catch let e as ScenePSError {
                let why = user != nil ? "a known user's history" : "the catalogue (the data set has no items.csv)"
                throw ScenePSError(e.code, "\(dataDir)/\(DatasetManifest.fileName): \(why) is read from the log it was prepared from, \(path): \(e.message)")
            }
        }
        let catalogue: Items
        if let c = manifest.catalogue {
            catalogue = try readItems(path: dataDir + "/" + c.file)
        } else {
            let l = log!
            let category = Catalogue.LogItems(l).category
            catalogue = Items(items: l.itemKeys.indices.map {
                Item(key: l.itemKeys[$0], id: l.itemIDs[$0], category: category[$0], title: "")
            }, file: manifest.source.log)
        }
        guard let user, let l = log else { return (catalogue, nil) }
        let key = KeyHash.idKey(user)
        guard let u = l.userKeys.firstIndex(of: key) else { return (catalogue, UserHistory(rows: 0, history: [])) }
        var rows = 0
        var positives: [Int] = []
        for r in 0..<l.count where l.userIndex[r] == Int32(u) {
            rows += 1
            if l.label[r] == 1 && Double(l.timestamp[r]) < manifest.split.testCut { positives.append(r) }
        }
        positives.sort { a, b in l.timestamp[a] < l.timestamp[b] || (l.timestamp[a] == l.timestamp[b] && a < b) }
        let history = positives.reversed().map {
            HistoryEntry(item: l.itemKeys[Int(l.itemIndex[$0])], category: l.categoryKey[$0], scene: l.scene[$0])
        }
        return (catalogue, UserHistory(rows: rows, history: history))
    }

    /// The prepared items.csv (`item_key,item_id,category_key,title,in_log`).
    static func readItems(path: String) throws -> Items {
        let file = try MappedFile(path: path)
        var items: [Item] = []
        try file.withBytes { bytes in
            var csv = CSVScanner(bytes: bytes)
            guard csv.next() else { throw ScenePSError.data("\(path): empty file (expected a header item_key,item_id,category_key,title,in_log)") }
            let header = try CSVHeader(&csv, path: path, required: ["item_key", "item_id", "category_key"], optional: ["title"])
            let (ck, ci, cc, ct) = (header.required[0], header.required[1], header.required[2], header.optional[0])
            while csv.next() {
                let line = csv.lineNumber
                guard !csv.unterminatedQuote, csv.fields.count == header.width else {
                    throw ScenePSError.data("\(path):\(line): \(csv.unterminatedQuote ? "a quoted field is not closed" : "\(csv.fields.count) field(s), the header has \(header.width)")")
                }
                guard let key = UInt64(csv.string(ck)), let category = UInt64(csv.string(cc)) else {
                    throw ScenePSError.data("\(path):\(line): item_key and category_key must be decimal keys")
                }
                items.append(Item(key: key, id: csv.string(ci), category: category, title: ct.map { csv.string($0) } ?? ""))
            }
        }
        guard !items.isEmpty else { throw ScenePSError.data("\(path): no items") }
        return Items(items: items, file: path)
    }
}
