#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Bytes from `malloc` with one owner. The buffer frees them when it goes
/// away, unless `handOver()` gave them to a C API that frees them itself
/// with `free` (libzmq's zero-copy send does: `ZMQOutgoingFrame.owned`).
/// Encoded wire messages travel in this type from the codec to the socket,
/// so no module mallocs what another must remember to free.
public final class MallocBuffer: @unchecked Sendable {
    // @unchecked: the bytes are written by one owner before it shares the buffer.
    public let count: Int
    private var base: UnsafeMutableRawPointer?

    /// `count` uninitialised bytes (at least one is allocated, so an empty
    /// buffer still has an address to hand over).
    public init(count: Int) {
        precondition(count >= 0)
        guard let p = malloc(max(count, 1)) else { fatalError("out of memory allocating \(count) bytes") }
        base = p
        self.count = count
    }

    deinit { free(base) }

    /// False once the bytes were handed over.
    public var isOwned: Bool { base != nil }

    /// The bytes, to fill or read while this buffer owns them.
    public var bytes: UnsafeMutableRawBufferPointer {
        precondition(base != nil, "MallocBuffer: bytes read after they were handed over")
        return UnsafeMutableRawBufferPointer(start: base, count: count)
    }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(bytes))
    }

    /// Gives the bytes away (once): the receiver must `free` them.
    public func handOver() -> UnsafeMutableRawBufferPointer {
        let b = bytes
        base = nil
        return b
    }
}
