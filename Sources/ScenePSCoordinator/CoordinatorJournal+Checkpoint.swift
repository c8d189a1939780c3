import Foundation
import ScenePSCore

/// A checkpoint's `progress` is the coordinator's journal at the cut. It is
/// turned into the manifest's JSON here and read back here, once, typed and
/// version-checked, for every reader (a `--restore-progress` start and a
/// global rewind).
extension CoordinatorJournal {
    /// The journal as the manifest's `progress`.
    public var checkpointProgress: JSONValue {
        get throws { try JSONValue(encoding: self) }
    }

    /// Loads checkpoint `dir`'s manifest and its progress as a journal of
    /// this format. Throws naming the manifest when it is not one (a
    /// checkpoint taken by `psctl checkpoint --servers` without a job holds
    /// the caller's own progress) or of another journal version.
    public static func fromCheckpoint(_ dir: String) throws -> (manifest: CheckpointManifest, journal: CoordinatorJournal) {
        let m = try CheckpointManifest.load(dir: dir)
        let file = (dir as NSString).appendingPathComponent(CheckpointManifest.fileName)
        let journal: CoordinatorJournal
        do { journal = try m.progress.decode(CoordinatorJournal.self) } catch {
            throw ScenePSError(.checkpoint, "\(file): its progress is not a coordinator journal (\(error)); was it taken by psctl checkpoint without a job?")
        }
        guard journal.version == formatVersion else {
            throw ScenePSError(.checkpoint, "\(file): journal format \(journal.version), this coordinator reads \(formatVersion)")
        }
        return (m, journal)
    }
}
