import Foundation
import ScenePSCore

/// A `.safetensors` file (Hugging Face's format), memory-mapped:
///
///     [u64 little-endian N][N bytes of JSON header][tensor data]
///
/// The header maps each tensor name to `{"dtype", "shape", "data_offsets":
/// [begin, end]}`, offsets relative to the first byte after the header;
/// `"__metadata__"` holds string pairs. Everything in the header is checked
/// against the file's real size before any byte of data is reachable, so a
/// truncated or inconsistent file is an error naming the file and the tensor,
/// never a read past the mapping.
public final class SafeTensors: @unchecked Sendable {
    /// One tensor's place in the file (absolute byte offsets).
    public struct Tensor: Sendable, Equatable {
        public let name: String
        public let dtype: String
        public let shape: [Int]
        public let start: Int
        public let end: Int

        public var elementCount: Int { shape.reduce(1, *) }
    }

    public let path: String
    public let tensors: [String: Tensor]
    public let metadata: [String: String]
    /// Bytes of the whole file.
    public var size: Int { file.size }
    let file: MappedFile

    /// Bytes per element of the dtypes the format defines.
    static let dtypeSizes: [String: Int] = [
        "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
        "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
        "I32": 4, "U32": 4, "F32": 4,
        "I64": 8, "U64": 8, "F64": 8,
    ]

    /// Headers larger than this are refused (the format's own limit is 100 MB).
    static let maxHeaderBytes = 100_000_000

    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        let parsed = try file.withBytes { bytes -> (tensors: [String: Tensor], metadata: [String: String]) in
            try SafeTensors.parseHeader(bytes, path: path)
        }
        tensors = parsed.tensors
        metadata = parsed.metadata
    }

    static func parseHeader(_ bytes: UnsafeRawBufferPointer, path: String) throws -> (tensors: [String: Tensor], metadata: [String: String]) {
        guard bytes.count >= 8 else {
            throw ScenePSError.data("\(path): truncated safetensors file (\(bytes.count) bytes, shorter than the 8-byte header length)")
        }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard n <= UInt64(maxHeaderBytes) else {
            throw ScenePSError.data("\(path): safetensors header length \(n) is not plausible (limit \(maxHeaderBytes) bytes)")
        }
        let headerLength = Int(n)
        guard 8 + headerLength <= bytes.count else {
            throw ScenePSError.data("\(path): truncated safetensors file: the header claims \(headerLength) bytes but the file has only \(bytes.count - 8) after the length")
        }
        let dataStart = 8 + headerLength
        let dataBytes = bytes.count - dataStart
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(bytes[8..<dataStart]), options: [])
        } catch {
            throw ScenePSError.data("\(path): safetensors header is not valid JSON (\(error.localizedDescription))")
        }
        guard let object = json as? [String: Any] else {
            throw ScenePSError.data("\(path): safetensors header is not a JSON object")
        }
        var tensors: [String: Tensor] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in object {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else {
                    throw ScenePSError.data("\(path): safetensors __metadata__ is not an object")
                }
                for (k, v) in m {
                    guard let s = v as? String else { throw ScenePSError.data("\(path): safetensors __metadata__.\(k) is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let entry = value as? [String: Any] else {
                throw ScenePSError.data("\(path): tensor \(name): header entry is not an object")
            }
            guard let dtype = entry["dtype"] as? String else {
                throw ScenePSError.data("\(path): tensor \(name): missing or non-string \"dtype\"")
            }
            guard let elementSize = dtypeSizes[dtype] else {
                throw ScenePSError.data("\(path): tensor \(name): unknown dtype \"\(dtype)\"")
            }
            guard let shape = integers(entry["shape"]), shape.allSatisfy({ $0 >= 0 }) else {
                throw ScenePSError.data("\(path): tensor \(name): \"shape\" is not a list of non-negative integers")
            }
            guard let offsets = integers(entry["data_offsets"]), offsets.count == 2, offsets[0] >= 0, offsets[0] <= offsets[1] else {
                throw ScenePSError.data("\(path): tensor \(name): \"data_offsets\" is not [begin, end] with 0 <= begin <= end")
            }
            var count = 1
            for d in shape {
                let (m, o) = count.multipliedReportingOverflow(by: d)
                guard !o else { throw ScenePSError.data("\(path): tensor \(name): shape \(shape) overflows") }
                count = m
            }
            let (expected, o) = count.multipliedReportingOverflow(by: elementSize)
            guard !o, offsets[1] - offsets[0] == expected else {
                throw ScenePSError.data("\(path): tensor \(name): data_offsets \(offsets) span \(offsets[1] - offsets[0]) bytes, but \(dtype) \(shape) needs \(expected)")
            }
            guard offsets[1] <= dataBytes else {
                throw ScenePSError.data("\(path): truncated safetensors file: tensor \(name) ends at data byte \(offsets[1]) but the file holds only \(dataBytes) bytes of data")
            }
            tensors[name] = Tensor(name: name, dtype: dtype, shape: shape, start: dataStart + offsets[0], end: dataStart + offsets[1])
        }
        return (tensors, metadata)
    }

    /// A JSON list of integers (booleans and fractions are not integers).
    private static func integers(_ v: Any?) -> [Int]? {
        guard let list = v as? [Any] else { return nil }
        var out: [Int] = []
        out.reserveCapacity(list.count)
        for x in list {
            if type(of: x) == Bool.self { return nil }
            if let i = x as? Int {
                out.append(i)
            } else if let d = x as? Double, d == d.rounded(), abs(d) < 9.0e15 {
                out.append(Int(d))
            } else {
                return nil
            }
        }
        return out
    }

    /// The tensor `name`, checked to be F32 of exactly `shape`.
    public func float32(_ name: String, shape: [Int]) throws -> Tensor {
        guard let t = tensors[name] else {
            throw ScenePSError.data("\(path): missing tensor \(name)")
        }
        guard t.dtype == "F32" else {
            throw ScenePSError.data("\(path): tensor \(name) has dtype \(t.dtype), expected F32")
        }
        guard t.shape == shape else {
            throw ScenePSError.data("\(path): tensor \(name) has shape \(t.shape), expected \(shape)")
        }
        guard t.start % MemoryLayout<Float>.alignment == 0 else {
            throw ScenePSError.data("\(path): tensor \(name) starts at byte \(t.start), not 4-byte aligned")
        }
        return t
    }

    /// Calls `body` with the whole mapped file.
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try file.withBytes(body)
    }

    /// A copy of an F32 tensor's elements (for small tensors and for weights
    /// that are rearranged, such as the fused QKV projection).
    public func floats(_ t: Tensor) -> [Float] {
        precondition(t.dtype == "F32" && t.end <= size)
        return file.withBytes { bytes in
            [Float](unsafeUninitializedCapacity: t.elementCount) { buf, n in
                UnsafeMutableRawBufferPointer(buf).copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[t.start..<t.end]))
                n = t.elementCount
            }
        }
    }
}
