import Foundation
import ScenePSCore

/// NumPy's `.npy` format, version 1.0, for 2-D little-endian float32
/// arrays in C order: the magic `\x93NUMPY`, version 1 0, a u16 header
/// length, then a Python-literal header dict padded with spaces and ended
/// by a newline so the data starts at a multiple of 64 bytes.
public enum NPY {
    /// The file bytes of a `rows × cols` float32 array.
    public static func encode(rows: Int, cols: Int, _ values: [Float]) -> Data {
        precondition(values.count == rows * cols, "values do not fill \(rows)×\(cols)")
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(rows), \(cols)), }"
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var data = Data()
        data.reserveCapacity(10 + header.utf8.count + values.count * 4)
        data.append(contentsOf: [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0])
        let n = UInt16(header.utf8.count)
        data.append(contentsOf: [UInt8(n & 0xFF), UInt8(n >> 8)])
        data.append(contentsOf: header.utf8)
        values.withUnsafeBufferPointer { buf in
            // Float32 little-endian on every platform ScenePS builds for.
            data.append(UnsafeBufferPointer(start: UnsafeRawPointer(buf.baseAddress!).assumingMemoryBound(to: UInt8.self), count: buf.count * 4))
        }
        return data
    }

    /// Writes the array to `path` atomically (temporary name, then rename).
    public static func write(path: String, rows: Int, cols: Int, _ values: [Float]) throws {
        try JSONFile.writeAtomically(encode(rows: rows, cols: cols, values), to: path)
    }

    /// Shape of a 2-D `<f4` C-order .npy file, from its header alone.
    public static func shape(path: String) throws -> (rows: Int, cols: Int) {
        let f = try MappedFile(path: path)
        return try f.withBytes { try parseHeader($0, path: path).shape }
    }

    /// A 2-D `<f4` C-order .npy file: its shape and values.
    public static func read(path: String) throws -> (rows: Int, cols: Int, values: [Float]) {
        let f = try MappedFile(path: path)
        return try f.withBytes { bytes in
            let h = try parseHeader(bytes, path: path)
            let count = h.shape.rows * h.shape.cols
            let values = [Float](unsafeUninitializedCapacity: count) { buf, n in
                UnsafeMutableRawBufferPointer(buf).copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[h.dataStart..<(h.dataStart + count * 4)]))
                n = count
            }
            return (h.shape.rows, h.shape.cols, values)
        }
    }

    static func parseHeader(_ bytes: UnsafeRawBufferPointer, path: String) throws -> (shape: (rows: Int, cols: Int), dataStart: Int) {
        guard bytes.count >= 10, Array(bytes[0..<6]) == [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59] else {
            throw ScenePSError.data("\(path): not a .npy file (no \\x93NUMPY magic)")
        }
        guard bytes[6] == 1 && bytes[7] == 0 else {
            throw ScenePSError.data("\(path): .npy version \(bytes[6]).\(bytes[7]), only 1.0 is read")
        }
        let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        guard 10 + headerLength <= bytes.count else { throw ScenePSError.data("\(path): truncated .npy header") }
        let header = String(decoding: bytes[10..<(10 + headerLength)], as: UTF8.self)
        guard header.contains("'descr': '<f4'") else { throw ScenePSError.data("\(path): .npy dtype is not '<f4' (header \(header.trimmingCharacters(in: .whitespacesAndNewlines)))") }
        guard header.contains("'fortran_order': False") else { throw ScenePSError.data("\(path): .npy array is not in C order") }
        guard let open = header.range(of: "'shape': ("), let close = header[open.upperBound...].firstIndex(of: ")") else {
            throw ScenePSError.data("\(path): .npy header has no shape")
        }
        let dims = header[open.upperBound..<close].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard dims.count == 2, let rows = Int(dims[0]), let cols = Int(dims[1]), rows >= 0, cols >= 0 else {
            throw ScenePSError.data("\(path): .npy shape (\(header[open.upperBound..<close])) is not two dimensions")
        }
        let dataStart = 10 + headerLength
        let (bytesNeeded, o) = (rows * cols).multipliedReportingOverflow(by: 4)
        guard !o, bytes.count - dataStart == bytesNeeded else {
            throw ScenePSError.data("\(path): .npy data is \(bytes.count - dataStart) bytes, shape (\(rows), \(cols)) float32 needs \(bytesNeeded)")
        }
        return ((rows, cols), dataStart)
    }
}
