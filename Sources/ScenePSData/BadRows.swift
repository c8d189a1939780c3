import ScenePSCore

/// Why a row of an input file was rejected.
///
/// The raw values are the reasons' names in summaries, the dataset manifest
/// and `summary.json`'s `skipped_rows`: add cases, do not rename them.
public enum BadRowReason: String, Sendable, CaseIterable, Codable {
    case shortRow = "short row"
    case extraFields = "too many fields"
    case emptyField = "empty id"
    case unterminatedQuote = "unterminated quote"
    case badTimestamp = "non-numeric timestamp"
    case badLabel = "label not 0/1"
    case unknownScene = "unknown scene"
    case conflictingItem = "catalogue item listed twice with different categories"
    case invalidTitle = "title not valid UTF-8"
    case badTruthRow = "bad truth row"
    case duplicateTruthRow = "truth row given twice"
}

/// Bad rows of one (file, reason): how many, and the first one.
public struct BadRowGroup: Sendable, Codable, Equatable {
    public var file: String
    public var reason: BadRowReason
    public var count: Int
    public var firstLine: Int
    /// What was wrong with the first one.
    public var firstDetail: String

    enum CodingKeys: String, CodingKey {
        case file, reason, count
        case firstLine = "first_line", firstDetail = "first_detail"
    }
}

/// Counts of skipped rows per (file, reason), or the error to throw.
public struct BadRowLog: Sendable {
    public let skip: Bool
    /// In the order first seen.
    public private(set) var groups: [BadRowGroup] = []
    /// What was read but not used, not an error (a header column no reader needs), in the order seen.
    public internal(set) var notes: [String] = []

    public init(skip: Bool) { self.skip = skip }

    public var total: Int { groups.reduce(0) { $0 + $1.count } }

    /// Skipped rows by reason over every file.
    public var counts: [String: Int] {
        groups.reduce(into: [:]) { $0[$1.reason.rawValue, default: 0] += $1.count }
    }

    /// Skipped rows by file, then reason (`summary.json`'s `skipped_rows`).
    public static func countsByFile(_ groups: [BadRowGroup]) -> [String: [String: Int]] {
        groups.reduce(into: [:]) { $0[$1.file, default: [:]][$1.reason.rawValue, default: 0] += $1.count }
    }

    /// Throws (default) or counts (skip mode) a bad row.
    mutating func report(_ reason: BadRowReason, file: String, line: Int, _ detail: String) throws {
        guard skip else {
            throw ScenePSError.data("\(file):\(line): \(reason.rawValue): \(detail) (fix the row, or pass --skip-bad-rows to skip and count such rows)")
        }
        if let k = groups.firstIndex(where: { $0.file == file && $0.reason == reason }) {
            groups[k].count += 1
        } else {
            groups.append(BadRowGroup(file: file, reason: reason, count: 1, firstLine: line, firstDetail: detail))
        }
    }

    /// For people: per file one total, e.g. `skipped 2 bad rows of log.csv:
    /// 1 short row (first at line 402), 1 non-numeric timestamp (first at
    /// line 403)`, then one line per reason with what was wrong with its first row.
    public var summaryLines: [String] {
        var files: [String] = []
        for g in groups where !files.contains(g.file) { files.append(g.file) }
        var lines: [String] = []
        for f in files {
            let gs = groups.filter { $0.file == f }
            let n = gs.reduce(0) { $0 + $1.count }
            lines.append("skipped \(n) bad row\(n == 1 ? "" : "s") of \(f): "
                         + gs.map { "\($0.count) \($0.reason.rawValue) (first at line \($0.firstLine))" }.joined(separator: ", "))
            for g in gs {
                lines.append("  \(g.reason.rawValue): \(g.count); first at line \(g.firstLine): \(g.firstDetail)")
            }
        }
        return notes + lines
    }
}
