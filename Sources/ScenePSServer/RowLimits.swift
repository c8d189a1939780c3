import Foundation
import ScenePSCore
import ScenePSProtocol

/// How many rows each sparse table may hold, so that a stream of unseen keys
/// stops the job with a clear error instead of the machine swapping or the
/// kernel killing a server (docs/SECURITY.md, "Limits").
///
/// `max_rows` is over the whole table (all servers); each of N servers holds
/// at most ⌈max_rows / N⌉ of it. A table without an explicit cap gets an
/// equal share of this server's memory budget: budget / (sparse tables ×
/// 2 × bytes per row) — the 2 because the schedule keeps a full in-memory
/// copy of the best epoch's model (`Snapshot`), and a checkpoint's cut copies
/// rows pushed while it is written.
public struct RowLimits: Sendable, Equatable {
    /// Bytes this server may spend on sparse rows (nil: no cap at all).
    public var budgetBytes: UInt64?
    /// Table name → max_rows over all servers.
    public var explicit: [String: UInt64] = [:]

    public init(budgetBytes: UInt64?, explicit: [String: UInt64] = [:]) {
        self.budgetBytes = budgetBytes
        self.explicit = explicit
    }

    public static let unlimited = RowLimits(budgetBytes: nil)

    /// Memory one row costs a server: the record `[key | step | weights | state]`
    /// (4-byte floats, 12 bytes of key and step) and its index slot (8 bytes
    /// at a load between 0.4 and 0.8: at most 20 bytes). d = 32 with Adam:
    /// 396 + 20 = 416 bytes; `SparseTableTests` measures it.
    public static func bytesPerRow(dim: Int, stateWidth: Int = 2) -> Int {
        (3 + dim * (1 + stateWidth)) * MemoryLayout<Float>.size + 20
    }

    /// The most rows of table `spec` this server (one of `shards`) may hold, when
    /// `sparseTables` sparse tables share the budget; nil: no cap.
    public func perServerCap(_ spec: TableSpec, shards: Int, sparseTables: Int, stateWidth: Int = 2) -> UInt64? {
        let n = UInt64(max(1, shards))
        if let total = explicit[spec.name] { return (total + n - 1) / n }
        guard let budget = budgetBytes else { return nil }
        let share = budget / UInt64(max(1, sparseTables))
        return share / UInt64(2 * RowLimits.bytesPerRow(dim: Int(spec.dim), stateWidth: stateWidth))
    }

    /// This machine's memory (the smaller of /proc/meminfo's MemTotal and a
    /// cgroup v2 memory.max), in bytes; nil when unknown.
    public static func machineMemoryBytes() -> UInt64? {
        var total: UInt64?
        if let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
           let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemTotal:") }),
           let kb = line.split(separator: " ").dropFirst().first.flatMap({ UInt64($0) }) {
            total = kb * 1024
        }
        if let text = try? String(contentsOfFile: "/sys/fs/cgroup/memory.max", encoding: .utf8),
           let limit = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
            total = min(total ?? limit, limit)
        }
        return total
    }

    /// The default budget of one of `servers` servers on this machine: half its memory, shared.
    public static func defaultBudgetBytes(serversOnThisMachine servers: Int) -> UInt64? {
        machineMemoryBytes().map { $0 / 2 / UInt64(max(1, servers)) }
    }

    /// Parses `NAME=ROWS,NAME=ROWS` (`ps-server --max-rows`); throws naming the bad item.
    public static func parseExplicit(_ text: String, flag: String = "--max-rows") throws -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for item in text.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, !parts[0].isEmpty, let n = UInt64(parts[1].trimmingCharacters(in: .whitespaces)), n > 0 else {
                throw ScenePSError.invalidArgument("\(flag): '\(item)' is not TABLE=ROWS with ROWS a positive integer")
            }
            out[parts[0].trimmingCharacters(in: .whitespaces)] = n
        }
        return out
    }

    /// `NAME=ROWS,...` in name order (what the supervisor passes to `ps-server --max-rows`).
    public static func formatExplicit(_ caps: [String: UInt64]) -> String {
        caps.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
    }
}
