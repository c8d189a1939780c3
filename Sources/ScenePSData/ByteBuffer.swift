/// Owner of a raw byte allocation (freed in deinit).
final class ByteStorage: @unchecked Sendable {
    let base: UnsafeMutablePointer<UInt8>
    let capacity: Int
    init(capacity: Int) {
        base = .allocate(capacity: capacity)
        self.capacity = capacity
    }
    deinit { base.deallocate() }
}

/// A fixed-size output buffer for text written at high rates (the
/// generator): no uniqueness or capacity checks per byte. Callers keep at
/// least `slack` bytes free per record by calling `flushIfNeeded` between
/// records; a record must be shorter than `slack`.
struct ByteBuffer {
    private let storage: ByteStorage
    private let base: UnsafeMutablePointer<UInt8>
    private(set) var count = 0
    let slack: Int

    init(capacity: Int = 4 << 20, slack: Int = 1024) {
        precondition(capacity > slack)
        storage = ByteStorage(capacity: capacity)
        base = storage.base
        self.slack = slack
    }

    @inline(__always)
    mutating func put(_ b: UInt8) {
        base[count] = b
        count += 1
    }

    @inline(__always)
    mutating func put(_ bytes: [UInt8]) {
        precondition(bytes.count < slack)
        bytes.withUnsafeBufferPointer { src in
            (base + count).update(from: src.baseAddress!, count: src.count)
        }
        count += bytes.count
    }

    @inline(__always)
    mutating func putDecimal(_ value: UInt64) {
        var digits = 1
        var v = value
        while v >= 10 { v /= 10; digits += 1 }
        v = value
        var k = count + digits - 1
        while k >= count {
            base[k] = UInt8(truncatingIfNeeded: v % 10) &+ 48
            v /= 10
            k -= 1
        }
        count += digits
    }

    @inline(__always)
    mutating func putDecimal(_ value: Int64) {
        if value < 0 { put(UInt8(ascii: "-")) }
        putDecimal(value.magnitude)
    }

    /// A probability in [0, 1] with six decimals ("0.123456").
    @inline(__always)
    mutating func putProbability(_ p: Double) {
        let micro = UInt64((min(max(p, 0), 1) * 1_000_000).rounded())
        put(UInt8(truncatingIfNeeded: micro / 1_000_000) &+ 48)
        put(UInt8(ascii: "."))
        var frac = micro % 1_000_000
        var k = count + 5
        while k >= count {
            base[k] = UInt8(truncatingIfNeeded: frac % 10) &+ 48
            frac /= 10
            k -= 1
        }
        count += 6
    }

    @inline(__always)
    mutating func flushIfNeeded(to out: OutputFile) throws {
        if count > storage.capacity - slack { try flush(to: out) }
    }

    mutating func flush(to out: OutputFile) throws {
        try out.write(UnsafeRawBufferPointer(start: base, count: count))
        count = 0
    }
}
