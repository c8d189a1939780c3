#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A server's count of applied pushes, kept in a small memory-mapped file
/// (`ps-server --push-counter FILE`) so that it outlives the process: the
/// stores land in the page cache, which a `kill -9` does not lose, and a
/// supervisor reads the count of a dead server to report how many of its
/// pushes a restore undid (the recovery debt, docs/CHECKPOINTS.md).
///
///     "SPSPUSH\0" | version u32 | shard u32 | shards u32 | 0 u32 | applied u64   (32 bytes, little-endian)
///
/// One writer (the server, under its push gate's lock); readers read a
/// dead server's file, so no torn value is ever seen by them.
public final class PushCounterFile: @unchecked Sendable {
    // @unchecked: the mapping is written by one thread at a time (the caller's lock).
    static let magic: [UInt8] = Array("SPSPUSH\0".utf8)
    static let size = 32
    public let path: String
    private let base: UnsafeMutableRawPointer

    /// Creates (or takes over) `path` for shard `shard` of `shards`, starting at `applied`.
    public init(path: String, shard: Int, shards: Int, applied: UInt64 = 0) throws {
        self.path = path
        let fd = open(path, O_RDWR | O_CREAT, 0o644)
        guard fd >= 0 else { throw ScenePSError.io("\(path): cannot create the push counter (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        guard ftruncate(fd, off_t(PushCounterFile.size)) == 0 else {
            throw ScenePSError.io("\(path): cannot size the push counter (\(String(cString: strerror(errno))))")
        }
        let p = mmap(nil, PushCounterFile.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let p, p != MAP_FAILED else { throw ScenePSError.io("\(path): cannot map the push counter (\(String(cString: strerror(errno))))") }
        base = p
        PushCounterFile.magic.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: 8) }
        base.storeBytes(of: UInt32(1).littleEndian, toByteOffset: 8, as: UInt32.self)
        base.storeBytes(of: UInt32(shard).littleEndian, toByteOffset: 12, as: UInt32.self)
        base.storeBytes(of: UInt32(shards).littleEndian, toByteOffset: 16, as: UInt32.self)
        base.storeBytes(of: UInt32(0), toByteOffset: 20, as: UInt32.self)
        store(applied)
    }

    deinit { munmap(base, PushCounterFile.size) }

    @inline(__always)
    public func store(_ applied: UInt64) {
        base.storeBytes(of: applied.littleEndian, toByteOffset: 24, as: UInt64.self)
    }

    /// The count a (dead) server left in `path`: nil when the file is missing or not a push counter.
    public static func read(_ path: String) -> (shard: Int, shards: Int, applied: UInt64)? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var b = [UInt8](repeating: 0, count: size)
        guard Glibc.read(fd, &b, size) == size, Array(b[0..<8]) == magic else { return nil }
        return b.withUnsafeBytes { r in
            guard UInt32(littleEndian: r.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) == 1 else { return nil }
            return (Int(UInt32(littleEndian: r.loadUnaligned(fromByteOffset: 12, as: UInt32.self))),
                    Int(UInt32(littleEndian: r.loadUnaligned(fromByteOffset: 16, as: UInt32.self))),
                    UInt64(littleEndian: r.loadUnaligned(fromByteOffset: 24, as: UInt64.self)))
        }
    }
}
