import ScenePSCore

/// A behaviour log parsed into columns (one entry per kept row, file order).
/// No per-row objects: about 37 bytes per row plus the id dictionaries.
struct BehaviourLog {
    var userIndex: [Int32] = []
    var itemIndex: [Int32] = []
    var categoryKey: [UInt64] = []
    var scene: [Int32] = []
    var timestamp: [Int64] = []
    var label: [UInt8] = []
    /// 0-based data row in the file (non-blank lines after the header,
    /// counting skipped bad rows, so truth rows stay aligned).
    var dataRow: [Int64] = []
    var userKeys: [UInt64] = []
    var itemKeys: [UInt64] = []
    var itemByKey: [UInt64: Int32] = [:]
    /// Item ids as written, by item index (only with `keepItemIDs`).
    var itemIDs: [String] = []
    /// Scene names in index order.
    var sceneNames: [String] = []
    /// Number of data rows in the file, including skipped ones.
    var dataRows = 0

    var count: Int { timestamp.count }

    static let columns = ["user_id", "item_id", "category_id", "scene", "timestamp", "label"]

    /// Reads `path`. With `scenes` given, the scene index is the position in
    /// that list and any other scene is bad input; otherwise scenes are those
    /// found, indexed in sorted (UTF-8 byte) order of their names. `keepItemIDs`
    /// also keeps each item's id text (`psctl recommend` names items by it).
    static func read(path: String, scenes listed: [String]?, bad: inout BadRowLog,
                     keepItemIDs: Bool = false) throws -> BehaviourLog {
        let file = try MappedFile(path: path)
        var log = BehaviourLog()
        try file.withBytes { bytes in
            var csv = CSVScanner(bytes: bytes)
            guard csv.next() else {
                throw ScenePSError.data("\(path): empty file (expected a header \(columns.joined(separator: ",")))")
            }
            // Columns by name, in any order; a column the reader does not use is ignored, with a note.
            let header = try CSVHeader(&csv, path: path, required: columns)
            if let note = header.note(path: path) { bad.notes.append(note) }
            let col = header.required
            let width = header.width
            let (cu, ci, cc, cs, ct, cl) = (col[0], col[1], col[2], col[3], col[4], col[5])

            let estimate = max(1024, bytes.count / 40)
            log.userIndex.reserveCapacity(estimate); log.itemIndex.reserveCapacity(estimate)
            log.categoryKey.reserveCapacity(estimate); log.scene.reserveCapacity(estimate)
            log.timestamp.reserveCapacity(estimate); log.label.reserveCapacity(estimate)
            log.dataRow.reserveCapacity(estimate)
            var userByKey: [UInt64: Int32] = [:]
            userByKey.reserveCapacity(estimate / 16)
            log.itemByKey.reserveCapacity(estimate / 16)
            // Scene lookup by key; provisional index in order of appearance when not listed.
            var sceneByKey: [UInt64: Int32] = [:]
            if let listed {
                for (k, name) in listed.enumerated() { sceneByKey[KeyHash.idKey(name)] = Int32(k) }
                log.sceneNames = listed
            }
            var dataRow: Int64 = -1
            while csv.next() {
                dataRow += 1
                let line = csv.lineNumber
                if csv.unterminatedQuote {
                    try bad.report(.unterminatedQuote, file: path, line: line, "a quoted field is not closed")
                    continue
                }
                let n = csv.fields.count
                if n < width {
                    try bad.report(.shortRow, file: path, line: line, "\(n) field(s), the header has \(width)")
                    continue
                }
                if n > width {
                    try bad.report(.extraFields, file: path, line: line, "\(n) fields, the header has \(width)")
                    continue
                }
                if csv.isEmpty(cu) || csv.isEmpty(ci) || csv.isEmpty(cc) || csv.isEmpty(cs) {
                    let which = [(cu, "user_id"), (ci, "item_id"), (cc, "category_id"), (cs, "scene")].first { csv.isEmpty($0.0) }!.1
                    try bad.report(.emptyField, file: path, line: line, "\(which) is empty")
                    continue
                }
                guard let ts = csv.int64(ct) else {
                    try bad.report(.badTimestamp, file: path, line: line, "timestamp \"\(csv.string(ct))\" is not an integer")
                    continue
                }
                guard let y = csv.label(cl) else {
                    try bad.report(.badLabel, file: path, line: line, "label \"\(csv.string(cl))\" is not 0 or 1")
                    continue
                }
                let sceneKey = csv.withField(cs) { KeyHash.idKey(utf8: $0) }
                let s: Int32
                if let known = sceneByKey[sceneKey] {
                    s = known
                } else if listed != nil {
                    try bad.report(.unknownScene, file: path, line: line,
                                   "scene \"\(csv.string(cs))\" is not one of \(listed!.joined(separator: ","))")
                    continue
                } else {
                    s = Int32(log.sceneNames.count)
                    sceneByKey[sceneKey] = s
                    log.sceneNames.append(csv.string(cs))
                }
                let uk = csv.withField(cu) { KeyHash.idKey(utf8: $0) }
                let ik = csv.withField(ci) { KeyHash.idKey(utf8: $0) }
                let ck = csv.withField(cc) { KeyHash.idKey(utf8: $0) }
                let u: Int32
                if let x = userByKey[uk] { u = x } else {
                    u = Int32(log.userKeys.count); userByKey[uk] = u; log.userKeys.append(uk)
                }
                let i: Int32
                if let x = log.itemByKey[ik] { i = x } else {
                    i = Int32(log.itemKeys.count); log.itemByKey[ik] = i; log.itemKeys.append(ik)
                    if keepItemIDs { log.itemIDs.append(csv.string(ci)) }
                }
                log.userIndex.append(u); log.itemIndex.append(i); log.categoryKey.append(ck)
                log.scene.append(s); log.timestamp.append(ts); log.label.append(y)
                log.dataRow.append(dataRow)
            }
            log.dataRows = Int(dataRow + 1)
        }
        guard log.dataRows > 0 else {
            throw ScenePSError.data("\(path): empty file (a header and no data rows)")
        }
        guard log.count > 0 else {
            throw ScenePSError.data("\(path): no usable rows (all \(log.dataRows) data rows were bad)")
        }
        if listed == nil {
            // Index scenes by sorted name, so the order does not depend on the file's row order.
            let order = log.sceneNames.indices.sorted {
                log.sceneNames[$0].utf8.lexicographicallyPrecedes(log.sceneNames[$1].utf8)
            }
            var remap = [Int32](repeating: 0, count: order.count)
            for (newIndex, old) in order.enumerated() { remap[old] = Int32(newIndex) }
            log.sceneNames = order.map { log.sceneNames[$0] }
            for r in 0..<log.scene.count { log.scene[r] = remap[Int(log.scene[r])] }
        }
        return log
    }
}
