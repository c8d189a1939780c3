/// XXH64 (Yann Collet's xxHash, 64-bit), streaming: the checksum of
/// checkpoint files. Chosen because it runs at memory speed (four independent
/// multiply-rotate lanes over 32-byte stripes), several times faster than the
/// disk it guards, and catches flipped bits, truncation and reordering.
/// Implemented here (no new package); checked against the reference vectors.
public struct XXH64: Sendable {
    static let p1: UInt64 = 0x9E37_79B1_85EB_CA87
    static let p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    static let p3: UInt64 = 0x1656_67B1_9E37_79F9
    static let p4: UInt64 = 0x85EB_CA77_C2B2_AE63
    static let p5: UInt64 = 0x27D4_EB2F_1656_67C5

    private var v1, v2, v3, v4: UInt64
    private let seed: UInt64
    private var total: UInt64 = 0
    /// Bytes of a partial 32-byte stripe, waiting for the next update.
    private var pending = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
    private var pendingCount = 0

    public init(seed: UInt64 = 0) {
        self.seed = seed
        v1 = seed &+ XXH64.p1 &+ XXH64.p2
        v2 = seed &+ XXH64.p2
        v3 = seed
        v4 = seed &- XXH64.p1
    }

    @inline(__always) static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }
    @inline(__always) static func round(_ acc: UInt64, _ input: UInt64) -> UInt64 {
        rotl(acc &+ input &* p2, 31) &* p1
    }
    @inline(__always) static func merge(_ acc: UInt64, _ val: UInt64) -> UInt64 {
        (acc ^ round(0, val)) &* p1 &+ p4
    }

    public mutating func update(_ buf: UnsafeRawBufferPointer) {
        guard var p = buf.baseAddress, buf.count > 0 else { return }
        var n = buf.count
        total &+= UInt64(n)
        if pendingCount > 0 {
            let take = min(32 - pendingCount, n)
            withUnsafeMutableBytes(of: &pending) { $0.baseAddress!.advanced(by: pendingCount).copyMemory(from: p, byteCount: take) }
            pendingCount += take
            p += take
            n -= take
            if pendingCount < 32 { return }
            v1 = XXH64.round(v1, pending.0); v2 = XXH64.round(v2, pending.1)
            v3 = XXH64.round(v3, pending.2); v4 = XXH64.round(v4, pending.3)
            pendingCount = 0
        }
        var a = v1, b = v2, c = v3, d = v4
        while n >= 32 {
            a = XXH64.round(a, p.loadUnaligned(as: UInt64.self).littleEndian)
            b = XXH64.round(b, p.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian)
            c = XXH64.round(c, p.loadUnaligned(fromByteOffset: 16, as: UInt64.self).littleEndian)
            d = XXH64.round(d, p.loadUnaligned(fromByteOffset: 24, as: UInt64.self).littleEndian)
            p += 32
            n -= 32
        }
        v1 = a; v2 = b; v3 = c; v4 = d
        if n > 0 {
            withUnsafeMutableBytes(of: &pending) { $0.baseAddress!.copyMemory(from: p, byteCount: n) }
            pendingCount = n
        }
    }

    public mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    public func finalize() -> UInt64 {
        var h: UInt64
        if total >= 32 {
            h = XXH64.rotl(v1, 1) &+ XXH64.rotl(v2, 7) &+ XXH64.rotl(v3, 12) &+ XXH64.rotl(v4, 18)
            h = XXH64.merge(h, v1); h = XXH64.merge(h, v2); h = XXH64.merge(h, v3); h = XXH64.merge(h, v4)
        } else {
            h = seed &+ XXH64.p5
        }
        h &+= total
        var tail = pending
        let count = pendingCount
        withUnsafeBytes(of: &tail) { raw in
            var i = 0
            while i + 8 <= count {
                h ^= XXH64.round(0, raw.loadUnaligned(fromByteOffset: i, as: UInt64.self).littleEndian)
                h = XXH64.rotl(h, 27) &* XXH64.p1 &+ XXH64.p4
                i += 8
            }
            if i + 4 <= count {
                h ^= UInt64(raw.loadUnaligned(fromByteOffset: i, as: UInt32.self).littleEndian) &* XXH64.p1
                h = XXH64.rotl(h, 23) &* XXH64.p2 &+ XXH64.p3
                i += 4
            }
            while i < count {
                h ^= UInt64(raw[i]) &* XXH64.p5
                h = XXH64.rotl(h, 11) &* XXH64.p1
                i += 1
            }
        }
        h ^= h >> 33; h = h &* XXH64.p2
        h ^= h >> 29; h = h &* XXH64.p3
        h ^= h >> 32
        return h
    }

    public static func hash(_ buf: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        var x = XXH64(seed: seed)
        x.update(buf)
        return x.finalize()
    }

    /// The manifest's spelling: `xxh64:` and 16 hex digits.
    public static func format(_ h: UInt64) -> String {
        let hex = String(h, radix: 16)
        return "xxh64:" + String(repeating: "0", count: 16 - hex.count) + hex
    }
}
