import Foundation
import ScenePSCore
import ScenePSProtocol
import ScenePSServer
import ScenePSWorker

/// The row caps a local job's servers get (docs/SECURITY.md, "Limits"):
/// the config's `tables.NAME.max_rows` where given, else an equal share of
/// each server's memory budget (half this machine's memory over its servers).
/// Printed when the job starts, passed to every `ps-server`.
struct RowCapPlan {
    let budgetBytes: UInt64?
    let explicit: [String: UInt64]
    /// (table, dim, max rows over all servers or nil, bytes a row) for the model's sparse tables.
    let tables: [(name: String, dim: Int, maxRows: UInt64?, bytesPerRow: Int)]
    let servers: Int

    init(config: ClusterConfig, servers: Int) {
        self.servers = servers
        budgetBytes = RowLimits.defaultBudgetBytes(serversOnThisMachine: servers)
        let used = FeatureSchema.tables(for: config.model)
        var explicit: [String: UInt64] = [:]
        for t in used { if let n = config.tables[t.name]?.maxRows { explicit[t.name] = UInt64(n) } }
        self.explicit = explicit
        let limits = RowLimits(budgetBytes: budgetBytes, explicit: explicit)
        tables = used.map { t in
            let dim = t.dim(for: config.model)
            let spec = TableSpec.sparse(id: t.id, name: t.name, dim: UInt32(dim))
            let perServer = limits.perServerCap(spec, shards: servers, sparseTables: used.count)
            return (t.name, dim, explicit[t.name] ?? perServer.map { $0 * UInt64(servers) }, RowLimits.bytesPerRow(dim: dim))
        }
    }

    var serverArguments: [String] {
        ["--memory-budget-mb", "\(budgetBytes.map { $0 >> 20 } ?? 0)"]
            + (explicit.isEmpty ? [] : ["--max-rows", RowLimits.formatExplicit(explicit)])
    }

    var description: [String] {
        let budget = budgetBytes.map { "\($0 >> 20) MiB of rows per server (half this machine's memory over \(servers) server(s))" } ?? "no memory budget (this machine's memory is unknown)"
        let list = tables.map { t in
            "\(t.name) \(t.maxRows.map { Self.rows($0) } ?? "unlimited")\(explicit[t.name] != nil ? " (max_rows)" : "") at \(t.bytesPerRow) B"
        }
        return ["== row caps per table over all servers, \(budget): " + list.joined(separator: ", ")]
    }

    static func rows(_ n: UInt64) -> String {
        n >= 10_000_000 ? String(format: "%.0fM", Double(n) / 1e6) : n >= 10_000 ? String(format: "%.0fK", Double(n) / 1e3) : "\(n)"
    }
}
