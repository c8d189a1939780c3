import ScenePSCore

/// An item catalogue's ids and titles, in file order, read strictly (every
/// problem stops with the file and line): the CSV of `psctl gen-data`'s
/// items.csv, header `item_id,category_id,title` (other columns ignored;
/// ids strings or integers, kept as written), with the log's quoting rules.
///
/// Errors: an empty file or one with no rows, a header without item_id or
/// title, a short or long row, an unclosed quote, an empty or multi-line
/// item id, an id listed twice, a title (or id) that is not valid UTF-8.
public struct TitleCatalogue: Sendable {
    public let path: String
    public let itemIDs: [String]
    public let titles: [String]

    public var count: Int { itemIDs.count }

    public init(path: String) throws {
        self.path = path
        let file = try MappedFile(path: path)
        var ids: [String] = []
        var titles: [String] = []
        try file.withBytes { bytes in
            var csv = CSVScanner(bytes: bytes)
            guard csv.next() else {
                throw ScenePSError.data("\(path): empty catalogue (expected a header item_id,category_id,title and one row per item)")
            }
            let header = (0..<csv.fields.count).map { csv.string($0).trimmingSpaces }
            guard let ci = header.firstIndex(of: "item_id"), let ct = header.firstIndex(of: "title") else {
                throw ScenePSError.data("\(path):1: the header has no item_id or no title column (need item_id,category_id,title)")
            }
            let width = header.count
            var firstLine: [String: Int] = [:]
            while csv.next() {
                let line = csv.lineNumber
                if csv.unterminatedQuote { throw ScenePSError.data("\(path):\(line): a quoted field is not closed") }
                guard csv.fields.count == width else {
                    throw ScenePSError.data("\(path):\(line): \(csv.fields.count) field(s), the header has \(width)")
                }
                guard let id = csv.withField(ci, { String(validating: $0, as: UTF8.self) }) else {
                    throw ScenePSError.data("\(path):\(line): item_id is not valid UTF-8")
                }
                let trimmed = id.trimmingSpaces
                guard !trimmed.isEmpty else { throw ScenePSError.data("\(path):\(line): item_id is empty") }
                guard !trimmed.contains(where: { $0 == "\n" || $0 == "\r" || $0 == "\r\n" }) else {
                    throw ScenePSError.data("\(path):\(line): item_id spans lines")
                }
                if let first = firstLine[trimmed] {
                    throw ScenePSError.data("\(path):\(line): item \"\(trimmed)\" is listed again (first on line \(first))")
                }
                firstLine[trimmed] = line
                guard let title = csv.withField(ct, { String(validating: $0, as: UTF8.self) }) else {
                    throw ScenePSError.data("\(path):\(line): the title of item \"\(trimmed)\" is not valid UTF-8")
                }
                ids.append(trimmed)
                titles.append(title)
            }
            guard !ids.isEmpty else { throw ScenePSError.data("\(path): empty catalogue (a header and no items)") }
        }
        itemIDs = ids
        self.titles = titles
    }
}
