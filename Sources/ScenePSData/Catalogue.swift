import ScenePSCore

/// The item catalogue (`item_id,category_id,title`; docs/ARCHITECTURE.md §4), read
/// beside a log and rewritten into the prepared data set as `items.csv`:
/// `item_key,item_id,category_key,title,in_log`, keys as decimal UInt64,
/// one row per catalogue item in catalogue order.
///
/// A catalogue normally lists items the log never mentions (new items, the
/// long tail): they are kept (`in_log` 0) with their category and title,
/// counted and reported, never an error. Bad input, an error naming file and
/// line (or skipped and counted with `--skip-bad-rows`): a short or long row,
/// an unclosed quote, an empty item or category id, an item listed again with
/// another category, a title that is not valid UTF-8.
///
/// Two listings of one item with the same category are one item: the first
/// row (and its title) is kept, the repeats are counted. When the catalogue
/// and the log disagree on an item's category, each log row keeps the
/// category it records (the event as it happened; an item may change
/// category over time) and the catalogue row keeps the catalogue's (what
/// items the log never mentions are known by); disagreements are counted.
enum Catalogue {
    static let outputName = "items.csv"
    /// Disagreeing items named in the summary.
    static let examplesNamed = 3

    /// The log's view of its items: key → log item index, and each item's
    /// category in its most recent row (latest timestamp, later file row on ties).
    struct LogItems {
        let byKey: [UInt64: Int32]
        let category: [UInt64]

        init(_ log: BehaviourLog) {
            byKey = log.itemByKey
            var category = [UInt64](repeating: 0, count: log.itemKeys.count)
            var latest = [Int64](repeating: .min, count: log.itemKeys.count)
            for r in 0..<log.count {
                let i = Int(log.itemIndex[r])
                if log.timestamp[r] >= latest[i] { latest[i] = log.timestamp[r]; category[i] = log.categoryKey[r] }
            }
            self.category = category
        }
    }

    static func prepare(path: String, log: BehaviourLog, out: String, bad: inout BadRowLog) throws -> DatasetManifest.CatalogueInfo {
        let items = LogItems(log)
        let file = try MappedFile(path: path)
        let output = try OutputFile(path: out + "/" + outputName)
        output.buffer.appendString("item_key,item_id,category_key,title,in_log\n")
        var info = DatasetManifest.CatalogueInfo(file: outputName, items: 0)
        var listed: [UInt64: (category: UInt64, line: Int)] = [:]
        var seenInLog = [Bool](repeating: false, count: log.itemKeys.count)
        try file.withBytes { bytes in
            var csv = CSVScanner(bytes: bytes)
            guard csv.next() else { throw ScenePSError.data("\(path): empty file (expected a header item_id,category_id,title)") }
            // Columns by name, in any order; a column the reader does not use is ignored, with a note.
            let header = try CSVHeader(&csv, path: path, required: ["item_id", "category_id"], optional: ["title"])
            if let note = header.note(path: path) { bad.notes.append(note) }
            let (ci, cc, ct) = (header.required[0], header.required[1], header.optional[0])
            let width = header.width
            var any = false
            while csv.next() {
                any = true
                let line = csv.lineNumber
                if csv.unterminatedQuote {
                    try bad.report(.unterminatedQuote, file: path, line: line, "a quoted field is not closed"); continue
                }
                if csv.fields.count < width {
                    try bad.report(.shortRow, file: path, line: line, "\(csv.fields.count) field(s), the header has \(width)"); continue
                }
                if csv.fields.count > width {
                    try bad.report(.extraFields, file: path, line: line, "\(csv.fields.count) fields, the header has \(width)"); continue
                }
                if csv.isEmpty(ci) || csv.isEmpty(cc) {
                    try bad.report(.emptyField, file: path, line: line, "\(csv.isEmpty(ci) ? "item_id" : "category_id") is empty"); continue
                }
                let title: String
                if let ct {
                    guard let t = csv.withField(ct, { String(validating: $0, as: UTF8.self) }) else {
                        try bad.report(.invalidTitle, file: path, line: line,
                                       "the title of item \"\(csv.string(ci))\" has bytes that are not UTF-8 (save the file as UTF-8)")
                        continue
                    }
                    title = t
                } else {
                    title = ""
                }
                let ik = csv.withField(ci) { KeyHash.idKey(utf8: $0) }
                let ck = csv.withField(cc) { KeyHash.idKey(utf8: $0) }
                if let first = listed[ik] {
                    if first.category != ck {
                        try bad.report(.conflictingItem, file: path, line: line,
                                       "item \"\(csv.string(ci))\" has category \"\(csv.string(cc))\" here and another one at line \(first.line)")
                    } else {
                        info.repeatedListings += 1
                    }
                    continue
                }
                listed[ik] = (ck, line)
                let inLog: Bool
                if let idx = items.byKey[ik] {
                    inLog = true
                    seenInLog[Int(idx)] = true
                    if items.category[Int(idx)] != ck {
                        info.categoryDisagreements += 1
                        if info.categoryDisagreementExamples.count < examplesNamed {
                            info.categoryDisagreementExamples.append("\(path):\(line): item \"\(csv.string(ci))\"")
                        }
                    }
                } else {
                    inLog = false
                    info.unseenItems += 1
                }
                output.buffer.appendDecimal(ik)
                output.buffer.append(44)
                csv.withField(ci) { appendQuoted($0, to: &output.buffer) }
                output.buffer.append(44)
                output.buffer.appendDecimal(ck)
                output.buffer.append(44)
                appendQuoted(Array(title.utf8), to: &output.buffer)
                output.buffer.append(44)
                output.buffer.append(inLog ? 49 : 48)
                output.buffer.append(10)
                info.items += 1
                try output.flushIfNeeded()
            }
            guard any else { throw ScenePSError.data("\(path): empty file (a header and no rows)") }
        }
        try output.finish()
        info.logItemsNotListed = seenInLog.reduce(0) { $0 + ($1 ? 0 : 1) }
        return info
    }

    /// One CSV field in double quotes, `"` doubled, line breaks as spaces.
    static func appendQuoted<C: Collection>(_ field: C, to buffer: inout [UInt8]) where C.Element == UInt8 {
        buffer.append(34)
        for b in field {
            if b == 34 { buffer.append(34) }
            buffer.append(b == 10 || b == 13 ? 32 : b)
        }
        buffer.append(34)
    }

    /// The summary's lines about the catalogue.
    static func summaryLines(_ c: DatasetManifest.CatalogueInfo, path: String) -> [String] {
        var lines = ["catalogue \(path): \(c.items) items; \(c.unseenItems) catalogue items never occur in the log (kept for cold-start features), "
                     + "\(c.logItemsNotListed) log items are not in the catalogue"]
        if c.repeatedListings > 0 {
            lines.append("  \(c.repeatedListings) repeated listing(s) of an item with the same category: the first row of each item is kept")
        }
        if c.categoryDisagreements > 0 {
            lines.append("  \(c.categoryDisagreements) item(s) whose catalogue category differs from the category of their latest log row "
                         + "(the log's rows keep their own category): " + c.categoryDisagreementExamples.joined(separator: ", ")
                         + (c.categoryDisagreements > c.categoryDisagreementExamples.count ? ", …" : ""))
        }
        return lines
    }
}
