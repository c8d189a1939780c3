#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A whole file mapped read-only into memory. One owner per mapping; the
/// bytes are only reachable inside `withBytes` (never a returned pointer).
///
/// `@unchecked Sendable`: the mapping is read-only and immutable for the
/// object's lifetime, so concurrent readers are safe.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let size: Int
    private let base: UnsafeMutableRawPointer?

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw ScenePSError.io("\(path): cannot open (\(String(cString: strerror(errno))))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw ScenePSError.io("\(path): cannot stat (\(String(cString: strerror(errno))))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw ScenePSError.io("\(path): not a regular file")
        }
        size = Int(st.st_size)
        if size == 0 {
            base = nil
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw ScenePSError.io("\(path): cannot map (\(String(cString: strerror(errno))))")
        }
        base = p
    }

    deinit {
        if let base { munmap(base, size) }
    }

    /// Calls `body` with the file's bytes (empty for an empty file).
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: base.map { UnsafeRawPointer($0) }, count: size))
    }
}
