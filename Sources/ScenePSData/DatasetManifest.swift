import Foundation
import ScenePSCore

/// `DIR/manifest.json`, written last by preparation: what the chunks are and
/// how they were made. Paths are relative to DIR.
public struct DatasetManifest: Codable, Sendable {
    public static let fileName = "manifest.json"
    public static let currentFormat = 1

    public var format: Int
    /// History slots per sample (L_long).
    public var lLong: Int
    public var chunkSize: Int
    /// The key function: `KeyHash.idKey` (FNV-1a 64 of the id's UTF-8 text,
    /// then the SplitMix64 finaliser; 0 maps to 1; integers hashed as text).
    public var hash: String
    /// Scenes in index order: `scenes[k].index == k`, the scene index used in
    /// chunks and batches. Sorted by name unless `--scenes` gave the order.
    public var scenes: [SceneManifest]
    public var hasTruth: Bool
    public var split: SplitInfo
    public var rows: Int
    public var users: Int
    public var items: Int
    public var source: SourceInfo
    /// Bad rows skipped (only with --skip-bad-rows), by reason over every file.
    public var skipped: [String: Int]
    public var catalogue: CatalogueInfo?
    /// Bad rows skipped per file and reason, with the first of each (nil in
    /// manifests written before it existed).
    public var badRows: [BadRowGroup]?

    public struct SplitInfo: Codable, Sendable {
        public var testFraction: Double
        public var validFraction: Double
        /// Test rows: timestamp >= testCut (numpy linear quantile at 1 - testFraction).
        public var testCut: Double
        /// Validation rows: non-test rows with timestamp >= validCut; nil when validFraction == 0.
        public var validCut: Double?
        public var minTimestamp: Int64
        public var maxTimestamp: Int64
        /// Training rows are shuffled with this seed before chunking; validation and test keep time order.
        public var trainShuffleSeed: UInt64
    }

    public struct SourceInfo: Codable, Sendable {
        public var log: String
        public var items: String?
        public var truth: String?
    }

    /// The prepared catalogue (`Catalogue`): `item_key,item_id,category_key,title,in_log`.
    public struct CatalogueInfo: Codable, Sendable, Equatable {
        public var file: String
        /// Items written (one per distinct catalogue item).
        public var items: Int
        /// Catalogue items the log never mentions (kept, `in_log` 0).
        public var unseenItems = 0
        /// Items of the log the catalogue does not list.
        public var logItemsNotListed = 0
        /// Further rows of an already listed item with the same category (not written again).
        public var repeatedListings = 0
        /// Items whose catalogue category differs from their latest log row's.
        public var categoryDisagreements = 0
        /// The first few of them, as `file:line: item "id"`.
        public var categoryDisagreementExamples: [String] = []

        public init(file: String, items: Int) {
            self.file = file
            self.items = items
        }

        enum CodingKeys: String, CodingKey {
            case file, items, unseenItems, logItemsNotListed, repeatedListings, categoryDisagreements, categoryDisagreementExamples
        }

        /// Manifests written before the counts existed decode with zeros.
        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            file = try c.decode(String.self, forKey: .file)
            items = try c.decode(Int.self, forKey: .items)
            unseenItems = try c.decodeIfPresent(Int.self, forKey: .unseenItems) ?? 0
            logItemsNotListed = try c.decodeIfPresent(Int.self, forKey: .logItemsNotListed) ?? 0
            repeatedListings = try c.decodeIfPresent(Int.self, forKey: .repeatedListings) ?? 0
            categoryDisagreements = try c.decodeIfPresent(Int.self, forKey: .categoryDisagreements) ?? 0
            categoryDisagreementExamples = try c.decodeIfPresent([String].self, forKey: .categoryDisagreementExamples) ?? []
        }
    }

    public static func load(directory: String) throws -> DatasetManifest {
        let path = directory + "/" + fileName
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ScenePSError.io("\(path): cannot read manifest (\(error.localizedDescription))")
        }
        let m: DatasetManifest
        do {
            m = try JSONDecoder().decode(DatasetManifest.self, from: data)
        } catch {
            throw ScenePSError.data("\(path): not a valid dataset manifest (\(error))")
        }
        guard m.format == currentFormat else {
            throw ScenePSError.data("\(path): manifest format \(m.format), this build reads \(currentFormat)")
        }
        for (k, s) in m.scenes.enumerated() where s.index != k {
            throw ScenePSError.data("\(path): scene \(s.name) has index \(s.index) at position \(k)")
        }
        return m
    }

    public func jsonData() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try enc.encode(self)
    }

    /// Scene by name, if any.
    public func scene(named name: String) -> SceneManifest? {
        scenes.first { $0.name == name }
    }
}

public struct SceneManifest: Codable, Sendable {
    public var name: String
    public var index: Int
    /// `KeyHash.idKey(name)`: the key of this scene in the `scene` and `behaviour_scene` tables.
    public var key: UInt64
    public var train: [ChunkRef]
    public var valid: [ChunkRef]
    public var test: [ChunkRef]
    public var stats: SceneStats?

    public var trainCount: Int { train.reduce(0) { $0 + $1.count } }
    public var validCount: Int { valid.reduce(0) { $0 + $1.count } }
    public var testCount: Int { test.reduce(0) { $0 + $1.count } }
}

public struct ChunkRef: Codable, Sendable, Hashable {
    /// Relative to the dataset directory.
    public var file: String
    public var count: Int
    public init(file: String, count: Int) {
        self.file = file
        self.count = count
    }
}

public struct SceneStats: Codable, Sendable {
    public var rows: Int
    public var users: Int
    public var items: Int
    public var positiveRate: Double
    public var meanHistoryLength: Double
    /// Count of samples per history-length bucket: "0", "1-4", "5-9", "10-19", "20-49", "50" for lLong = 50
    /// (middle buckets end at lLong - 1 or are left out for a small lLong; the last is exactly lLong, i.e. cut).
    public var historyLengths: [String: Int]
    public var coldTestRows: Int
}
