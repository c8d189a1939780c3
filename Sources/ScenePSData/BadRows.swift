import ScenePSCore

/// Why a row of an input file was rejected.
public enum BadRowReason: String, Sendable, CaseIterable, Codable {
    case shortRow = "short row"
    case extraFields = "too many fields"
    case emptyField = "empty id"
    case unterminatedQuote = "unterminated quote"
    case badTimestamp = "non-numeric timestamp"
    case badLabel = "label not 0/1"
    case unknownScene = "unknown scene"
    case unknownItem = "catalogue item not in the log"
    case duplicateItem = "catalogue item listed twice"
    case badTruthRow = "bad truth row"
    case duplicateTruthRow = "truth row given twice"
}

/// Counts of skipped rows per (file, reason), or the error to throw.
public struct BadRowLog: Sendable {
    public let skip: Bool
    public private(set) var counts: [String: Int] = [:]   // "reason" -> count
    public private(set) var details: [(file: String, reason: BadRowReason, count: Int, firstLine: Int)] = []

    public init(skip: Bool) { self.skip = skip }

    public var total: Int { counts.values.reduce(0, +) }

    /// Throws (default) or counts (skip mode) a bad row.
    mutating func report(_ reason: BadRowReason, file: String, line: Int, _ detail: String) throws {
        guard skip else {
            throw ScenePSError.data("\(file):\(line): \(reason.rawValue): \(detail)")
        }
        counts[reason.rawValue, default: 0] += 1
        if let k = details.firstIndex(where: { $0.file == file && $0.reason == reason }) {
            details[k].count += 1
        } else {
            details.append((file, reason, 1, line))
        }
    }

    /// Human-readable lines, one per (file, reason).
    public var summaryLines: [String] {
        details.map { "skipped \($0.count) row(s) of \($0.file): \($0.reason.rawValue) (first at line \($0.firstLine))" }
    }
}
