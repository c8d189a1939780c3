import Foundation

/// Writes JSON the way every ScenePS file is written: to a temporary name,
/// synced, then renamed into place, so a reader never sees half a file.
/// Keys are written as the types spell them (no key strategy: it would also
/// rewrite dictionary keys such as scene names).
public enum JSONFile {
    /// `sync: false` skips the fsync: the rename is still atomic for every
    /// reader and survives the writer's death, just not the machine's (the
    /// coordinator's journal, rewritten on every lease, uses that: a fsync
    /// each time capped it at ~70 leases/s).
    public static func write<T: Encodable>(_ value: T, to path: String, sync: Bool = true) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        try writeAtomically(try enc.encode(value), to: path, sync: sync)
    }

    public static func read<T: Decodable>(_ type: T.Type, from path: String) throws -> T {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ScenePSError.io("\(path): cannot read (\(error.localizedDescription))")
        }
        let dec = JSONDecoder()
        dec.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        do { return try dec.decode(T.self, from: data) } catch {
            throw ScenePSError.io("\(path): not a valid \(T.self) file (\(error))")
        }
    }

    public static func writeAtomically(_ data: Data, to path: String, sync: Bool = true) throws {
        let tmp = path + ".tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: tmp, contents: nil) else {
            throw ScenePSError.io("\(tmp): cannot create")
        }
        do {
            let h = try FileHandle(forWritingTo: URL(fileURLWithPath: tmp))
            try h.write(contentsOf: data)
            if sync { try h.synchronize() }
            try h.close()
            if rename(tmp, path) != 0 { throw ScenePSError.io("\(path): rename from \(tmp) failed (errno \(errno))") }
        } catch {
            unlink(tmp)
            throw error
        }
    }
}
