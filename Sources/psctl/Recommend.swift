import ArgumentParser
import Foundation
import Logging
import ScenePSClient
import ScenePSCore
import ScenePSData
import ScenePSServer
import ScenePSWorker

/// `psctl recommend`: the top-K items of the catalogue for one user in one
/// scene, every item scored exactly by the checkpoint's ranking model.
struct Recommend: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Top-K catalogue items for a user in a scene, scored by a checkpoint's ranking model (no cluster needed).",
        discussion: """
            Loads the checkpoint into one server in this process (as `psctl evaluate --checkpoint` does), scores \
            EVERY item of the data set's catalogue (its items.csv, or every item of the log when it has none) for \
            the user in the scene with the trained model of the scene (its forward pass, batches of 1024 items), \
            and prints the K best: rank, item id, score (the model's click probability) and title.

            The user's history: for a user of the log, the trainer's: their clicks (label 1) before the test cut \
            (the training and validation rows), most recent first, in every scene, as preparation builds a test \
            row's history; it is read from the log the data set was prepared from (its manifest's source.log). \
            --history ITEM,ITEM,... gives the history instead, oldest first (for a user the log does not have, or \
            to ask "what if"): each ITEM is an item id of the catalogue, clicked in --scene, or ITEM@SCENE. A user \
            id the log does not have reads the user table's initial row, as a new user does in training.

            Items already in the user's history (all of it, not only the last model.l_long the model reads) are \
            not recommended; --include-seen ranks them too. Ties keep catalogue order.

            Bad input stops with exit status 2 and names the value: an unknown scene, a user without history and \
            no --history, -k below 1 or above the catalogue's (unseen) items, a checkpoint that does not hold the \
            config's model (another kind or size), --history items the catalogue lacks. Other errors (files, a \
            damaged checkpoint) exit 1.
            """)

    @Option(help: "Run directory of the job (cluster/local.sh's): its job-config.yaml, data/ and checkpoints/.")
    var runDir: String
    @Option(help: "Checkpoint directory, or `latest` (the newest complete one in RUN_DIR/checkpoints) or `latest-good` (the newest that passes every check).")
    var checkpoint: String = "latest"
    @Option(help: "User id, as in the log.") var user: String
    @Option(help: "Scene name: the ranking model of this scene scores the items.") var scene: String
    @Option(name: [.customShort("k"), .long], help: "How many items to print.") var k: Int = 10
    @Option(help: "The user's history instead of the log's, oldest first: comma-separated item ids of the catalogue, each clicked in --scene, or ITEM@SCENE.")
    var history: String?
    @Flag(help: "Rank the items of the user's history too (they are left out by default).") var includeSeen = false
    @Flag(help: "Print JSON (the ranking, the history the model read, the checkpoint) instead of a table.") var json = false
    @Option(help: "Config of the model (default RUN_DIR/job-config.yaml).") var config: String?
    @Option(help: "Prepared data set (default RUN_DIR/data).") var data: String?

    /// Bad input of the command: printed, exit status 2.
    struct BadInput: Error { let message: String }

    func run() throws {
        do {
            try reportingErrors { try recommend() }
        } catch let e as BadInput {
            printError("psctl recommend: error: \(e.message)")
            throw ExitCode(2)
        }
    }

    func recommend() throws {
        let configPath = config ?? (runDir as NSString).appendingPathComponent("job-config.yaml")
        let dataDir = data ?? (runDir as NSString).appendingPathComponent("data")
        guard k >= 1 else { throw BadInput(message: "-k \(k): must be at least 1") }
        let cfg = try ClusterConfig.load(path: configPath)
        let manifest = try DatasetManifest.load(directory: dataDir)
        let names = manifest.scenes.map(\.name).joined(separator: ", ")
        guard let target = manifest.scene(named: scene) else {
            throw BadInput(message: "unknown scene \"\(scene)\": the data set \(dataDir) has \(names)")
        }
        // The history as given: (item id, scene index), oldest first.
        var given: [(id: String, scene: Int)]?
        if let history {
            given = []
            for token in history.split(separator: ",", omittingEmptySubsequences: false) {
                let t = token.trimmingCharacters(in: .whitespaces)
                guard !t.isEmpty else { throw BadInput(message: "--history \"\(history)\": an empty item id") }
                if let at = t.lastIndex(of: "@") {
                    let s = String(t[t.index(after: at)...])
                    guard let sc = manifest.scene(named: s) else {
                        throw BadInput(message: "--history item \"\(t)\": unknown scene \"\(s)\" (the data set has \(names))")
                    }
                    given!.append((String(t[..<at]), sc.index))
                } else {
                    given!.append((t, target.index))
                }
            }
        }
        let (catalogue, logged) = try RecommendationSource.load(dataDir: dataDir, manifest: manifest,
                                                                 user: given == nil ? user : nil)
        let entries: [RecommendationSource.HistoryEntry]
        if let given {
            let missing = given.filter { catalogue.item(id: $0.id) == nil }.map(\.id)
            guard missing.isEmpty else {
                throw BadInput(message: "--history: item(s) not in the catalogue \(catalogue.file): \(missing.map { "\"\($0)\"" }.joined(separator: ", "))")
            }
            entries = given.reversed().map {
                let it = catalogue.item(id: $0.id)!
                return .init(item: it.key, category: it.category, scene: Int32($0.scene))
            }
        } else {
            let h = logged!
            guard h.rows > 0 else {
                throw BadInput(message: "user \"\(user)\" is not in the log \(manifest.source.log): give their history with --history ITEM,ITEM,...")
            }
            guard !h.history.isEmpty else {
                throw BadInput(message: "user \"\(user)\" has no click before the test cut in \(manifest.source.log) (\(h.rows) row(s), none with label 1 in the training and validation rows): give a history with --history ITEM,ITEM,...")
            }
            entries = h.history
        }
        let seen = Set(entries.map(\.item))
        let candidates = includeSeen ? catalogue.items : catalogue.items.filter { !seen.contains($0.key) }
        guard k <= candidates.count else {
            let what = includeSeen || candidates.count == catalogue.items.count
                ? "the catalogue \(catalogue.file) has \(catalogue.items.count) items"
                : "the catalogue \(catalogue.file) has \(candidates.count) items outside the user's history (\(catalogue.items.count) in all; --include-seen ranks them all)"
            throw BadInput(message: "-k \(k) is more than the items to rank: \(what)")
        }

        var logger = Logger(label: "psctl.recommend")
        logger.logLevel = .warning
        let (client, restored) = try CheckpointModel.client(checkpoint, runDir: runDir, sender: "psctl-recommend-\(getpid())", logger: logger)
        let scorer = try ModelScorer(config: cfg, scenes: manifest.scenes, lLong: manifest.lLong, client: client)
        try Self.checkModel(restored, config: cfg, configPath: configPath, parameters: scorer.parameterCount)

        // Every candidate with the same user, scene and history: one batch of up to 1024 items at a time.
        let L = manifest.lLong, n = min(entries.count, L)
        var batch = SampleBatch(lLong: L, capacity: ModelScorer.maxBatch)
        var scores = [Double](repeating: 0, count: candidates.count)
        var start = 0
        while start < candidates.count {
            let end = min(start + ModelScorer.maxBatch, candidates.count)
            batch.removeAll()
            for c in candidates[start..<end] {
                batch.user.append(KeyHash.idKey(user)); batch.item.append(c.key); batch.category.append(c.category)
                batch.scene.append(Int32(target.index)); batch.label.append(0); batch.row.append(-1)
                batch.truth.append(.nan); batch.cold.append(false); batch.histLen.append(Int32(n))
                for j in 0..<L {
                    batch.histItem.append(j < n ? entries[j].item : 0)
                    batch.histCategory.append(j < n ? entries[j].category : 0)
                    batch.histScene.append(j < n ? entries[j].scene : 0)
                }
                batch.count += 1
            }
            let logits = try scorer.logits(batch)
            for (i, z) in logits.enumerated() { scores[start + i] = 1 / (1 + Foundation.exp(-Double(z))) }
            start = end
        }
        let top = scores.indices.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }.prefix(k)

        let readIDs = entries.prefix(n).map { catalogue.item(key: $0.item)?.id ?? "key:\($0.item)" }
        if json {
            let out: [String: Any] = [
                "checkpoint": restored.path, "global_step": restored.manifest.global_step,
                "user": user, "scene": scene, "k": k,
                "history_source": given == nil ? "log" : "--history",
                "history": readIDs, "history_keys": entries.prefix(n).map { String($0.item) },
                "history_length": entries.count, "seen_excluded": includeSeen ? 0 : catalogue.items.count - candidates.count,
                "catalogue": catalogue.file, "items_scored": candidates.count,
                "items": top.enumerated().map { r, i -> [String: Any] in
                    ["rank": r + 1, "id": candidates[i].id, "key": String(candidates[i].key), "title": candidates[i].title,
                     "score": scores[i]]
                },
            ]
            let d = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
            print(String(decoding: d, as: UTF8.self))
            return
        }
        print("checkpoint \(restored.path) (global step \(restored.manifest.global_step)); scene \(scene); user \(user)")
        print("history (\(given == nil ? "the log's clicks before the test cut" : "--history"), most recent first, \(n) of \(entries.count) read by the model): "
              + readIDs.prefix(10).joined(separator: ", ") + (n > 10 ? ", ..." : ""))
        print("scored \(candidates.count) items of \(catalogue.file)\(includeSeen ? "" : " (\(catalogue.items.count - candidates.count) in the history left out)")")
        let idWidth = max(4, top.map { candidates[$0].id.count }.max() ?? 4)
        print("rank  " + "item".padding(toLength: idWidth, withPad: " ", startingAt: 0) + "  score     title")
        for (r, i) in top.enumerated() {
            let c = candidates[i]
            print(String(format: "%4d  ", r + 1) + c.id.padding(toLength: idWidth, withPad: " ", startingAt: 0)
                  + String(format: "  %.6f  ", scores[i]) + c.title)
        }
    }

    /// The checkpoint must hold the config's model: its dense table of the model's size and every sparse
    /// table the model reads, of the model's width.
    static func checkModel(_ s: CheckpointRestore.Summary, config cfg: ClusterConfig, configPath: String, parameters: Int) throws {
        let what = "checkpoint \(s.path) does not hold the \(cfg.model.kind) model of \(configPath)"
        guard let dense = s.manifest.tables.first(where: { $0.kind == "dense" }) else {
            throw BadInput(message: "\(what): it has no dense table (a checkpoint of another model kind)")
        }
        guard dense.dense_size == UInt64(parameters) else {
            throw BadInput(message: "\(what): its dense table has \(dense.dense_size) parameters, the model has \(parameters) (a checkpoint of another model kind or size)")
        }
        for t in FeatureSchema.tables(for: cfg.model) {
            guard let c = s.manifest.tables.first(where: { $0.id == t.id && $0.kind == "sparse" }) else {
                throw BadInput(message: "\(what): it has no table '\(t.name)' (id \(t.id)), which the model reads")
            }
            guard Int(c.dim) == t.dim(for: cfg.model) else {
                throw BadInput(message: "\(what): its table '\(t.name)' has rows of \(c.dim), the model reads \(t.dim(for: cfg.model))")
            }
        }
    }
}
