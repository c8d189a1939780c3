#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ScenePSCore

/// write(2), named apart from `OutputFile.write`.
private func posixWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int {
    write(fd, p, n)
}

/// Buffered output to a file, written to `path + ".tmp"` and renamed into
/// place by `finish()`, so a reader never sees half a file.
final class OutputFile {
    let path: String
    private let tmpPath: String
    private var fd: Int32
    var buffer: [UInt8] = []
    private let flushThreshold: Int

    init(path: String, bufferBytes: Int = 1 << 20) throws {
        self.path = path
        tmpPath = path + ".tmp"
        flushThreshold = bufferBytes
        fd = open(tmpPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else {
            throw ScenePSError.io("\(path): cannot create (\(String(cString: strerror(errno))))")
        }
        buffer.reserveCapacity(bufferBytes + 4096)
    }

    deinit {
        if fd >= 0 {
            close(fd)
            unlink(tmpPath)
        }
    }

    @inline(__always)
    func flushIfNeeded() throws {
        if buffer.count >= flushThreshold { try flush() }
    }

    func flush() throws {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { try write($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Writes `raw` directly (after flushing what is buffered).
    func write(_ raw: UnsafeRawBufferPointer) throws {
        var off = 0
        while off < raw.count {
            let n = posixWrite(fd, raw.baseAddress! + off, raw.count - off)
            if n < 0 {
                if errno == EINTR { continue }
                throw ScenePSError.io("\(path): write failed (\(String(cString: strerror(errno))))")
            }
            off += n
        }
    }

    /// Writes `local` after what is buffered, then empties it (keeping capacity).
    func drain(_ local: inout [UInt8]) throws {
        try flush()
        swap(&buffer, &local)
        try flush()
        swap(&buffer, &local)
    }

    func finish() throws {
        try flush()
        let rc = close(fd)
        fd = -1
        guard rc == 0 else {
            unlink(tmpPath)
            throw ScenePSError.io("\(path): close failed (\(String(cString: strerror(errno))))")
        }
        guard rename(tmpPath, path) == 0 else {
            unlink(tmpPath)
            throw ScenePSError.io("\(path): rename failed (\(String(cString: strerror(errno))))")
        }
    }
}

enum FileSystem {
    static func makeDirectory(_ path: String) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            current += "/" + part
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw ScenePSError.io("\(current): cannot create directory (\(String(cString: strerror(errno))))")
            }
        }
    }

    static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    static func writeFile(_ path: String, _ bytes: [UInt8]) throws {
        let out = try OutputFile(path: path)
        out.buffer.append(contentsOf: bytes)
        try out.finish()
    }
}

/// Appending decimal numbers to a byte buffer without String formatting.
extension Array where Element == UInt8 {
    @inline(__always)
    mutating func appendDecimal(_ value: Int64) {
        if value < 0 {
            append(UInt8(ascii: "-"))
            appendDecimal(UInt64(value.magnitude))
        } else {
            appendDecimal(UInt64(value))
        }
    }

    @inline(__always)
    mutating func appendDecimal(_ value: Int) {
        appendDecimal(Int64(value))
    }

    @inline(__always)
    mutating func appendDecimal(_ value: UInt64) {
        if value < 10 {
            append(UInt8(truncatingIfNeeded: value) &+ 48)
            return
        }
        var digits = 1
        var p: UInt64 = 10
        while digits < 20 && value >= p {
            digits += 1
            if p > UInt64.max / 10 { break }
            p *= 10
        }
        let start = count
        append(contentsOf: repeatElement(0, count: digits))
        var v = value
        var k = start + digits - 1
        while k >= start {
            self[k] = UInt8(truncatingIfNeeded: v % 10) &+ 48
            v /= 10
            k -= 1
        }
    }

    /// A probability in [0, 1] with six decimals ("0.123456").
    @inline(__always)
    mutating func appendProbability(_ p: Double) {
        let micro = UInt64((Swift.min(Swift.max(p, 0), 1) * 1_000_000).rounded())
        append(UInt8(truncatingIfNeeded: micro / 1_000_000) &+ 48)
        append(UInt8(ascii: "."))
        var frac = micro % 1_000_000
        let start = count
        append(contentsOf: repeatElement(48, count: 6))
        var k = start + 5
        while k >= start {
            self[k] = UInt8(truncatingIfNeeded: frac % 10) &+ 48
            frac /= 10
            k -= 1
        }
    }

    mutating func appendString(_ s: String) {
        append(contentsOf: s.utf8)
    }
}
