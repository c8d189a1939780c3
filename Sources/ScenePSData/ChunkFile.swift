import ScenePSCore

/// Binary chunk of samples of one scene and one split (format version 1).
///
/// Little-endian, fixed layout, every section 8-byte aligned:
///
/// ```
/// header (64 bytes)
///   0  magic        8 bytes  "SPSCHNK1"
///   8  version      UInt32   1
///   12 lLong        UInt32   history slots per sample in a batch
///   16 count        UInt64   samples
///   24 histEntries  UInt64   packed history entries (H)
///   32 scene        Int32    scene index
///   36 reserved     UInt32   0
///   40 fileSize     UInt64   total bytes, checked on open
///   48 reserved     16 bytes 0
/// sections
///   user[count] item[count] category[count]   UInt64 keys
///   row[count]                                Int64 0-based log row
///   histOffset[count + 1]                     UInt64, sample b's history is
///                                             entries histOffset[b] ..< histOffset[b+1]
///   histItem[H] histCategory[H]               UInt64 keys, most recent first
///   label[count] truth[count]                 Float32 (truth NaN when unknown)
///   histScene[H]                              Int32 scene index
///   cold[count]                               UInt8 0/1
/// ```
///
/// Histories are stored packed (only the valid entries), so a chunk costs
/// about 45 + 20·histLen bytes per sample instead of 45 + 20·lLong.
public enum ChunkFormat {
    public static let magic: UInt64 = 0x314B_4E48_4353_5053   // "SPSCHNK1" little-endian
    public static let version: UInt32 = 1
    public static let headerSize = 64

    struct Layout {
        let count: Int
        let entries: Int
        let user, item, category, row, histOffset, histItem, histCategory, label, truth, histScene, cold: Int
        let fileSize: Int

        init(count: Int, entries: Int) {
            func pad8(_ x: Int) -> Int { (x + 7) & ~7 }
            self.count = count
            self.entries = entries
            var o = ChunkFormat.headerSize
            user = o; o += 8 * count
            item = o; o += 8 * count
            category = o; o += 8 * count
            row = o; o += 8 * count
            histOffset = o; o += 8 * (count + 1)
            histItem = o; o += 8 * entries
            histCategory = o; o += 8 * entries
            label = o; o = pad8(o + 4 * count)
            truth = o; o = pad8(o + 4 * count)
            histScene = o; o = pad8(o + 4 * entries)
            cold = o; o = pad8(o + count)
            fileSize = o
        }
    }
}

/// One sample as the preparation step hands it to `ChunkColumns`.
struct ChunkSample {
    var user: UInt64
    var item: UInt64
    var category: UInt64
    var row: Int64
    var label: Float
    var truth: Float
    var cold: Bool
}

/// The columns of one chunk being built, in file order. Preparation reuses
/// one value across chunks (`reset`), and `write` sends each column to the
/// file as it is, with no intermediate copy.
///
/// Add a sample with `begin`, its behaviours (most recent first, at most
/// lLong) with `addHistory`, then `end`.
struct ChunkColumns {
    var lLong: Int
    var scene: Int32
    var user: [UInt64] = []
    var item: [UInt64] = []
    var category: [UInt64] = []
    var row: [Int64] = []
    var histOffset: [UInt64] = [0]
    var histItem: [UInt64] = []
    var histCategory: [UInt64] = []
    var label: [Float] = []
    var truth: [Float] = []
    var histScene: [Int32] = []
    var cold: [UInt8] = []

    init(lLong: Int, scene: Int32, capacity: Int) {
        self.lLong = lLong
        self.scene = scene
        user.reserveCapacity(capacity); item.reserveCapacity(capacity)
        category.reserveCapacity(capacity); row.reserveCapacity(capacity)
        histOffset.reserveCapacity(capacity + 1)
        label.reserveCapacity(capacity); truth.reserveCapacity(capacity); cold.reserveCapacity(capacity)
    }

    var count: Int { user.count }

    @inline(__always)
    mutating func begin(_ s: ChunkSample) {
        user.append(s.user); item.append(s.item); category.append(s.category); row.append(s.row)
        label.append(s.label); truth.append(s.truth); cold.append(s.cold ? 1 : 0)
    }

    @inline(__always)
    mutating func addHistory(item: UInt64, category: UInt64, scene: Int32) {
        histItem.append(item)
        histCategory.append(category)
        histScene.append(scene)
    }

    /// Adds behaviours given oldest first (as stored per user); they are
    /// written most recent first.
    @inline(__always)
    mutating func addHistory(item: ArraySlice<UInt64>, category: ArraySlice<UInt64>, scene: ArraySlice<Int32>) {
        let n = item.count
        precondition(category.count == n && scene.count == n)
        // (Reversing a slice in place through `array[range].reverse()` copied
        // the whole column each time; plain appends do not.)
        var j = item.endIndex - 1
        while j >= item.startIndex {
            histItem.append(item[j])
            j -= 1
        }
        j = category.endIndex - 1
        while j >= category.startIndex {
            histCategory.append(category[j])
            j -= 1
        }
        j = scene.endIndex - 1
        while j >= scene.startIndex {
            histScene.append(scene[j])
            j -= 1
        }
    }

    @inline(__always)
    mutating func end() {
        histOffset.append(UInt64(histItem.count))
    }

    mutating func reset(scene: Int32) {
        self.scene = scene
        user.removeAll(keepingCapacity: true); item.removeAll(keepingCapacity: true)
        category.removeAll(keepingCapacity: true); row.removeAll(keepingCapacity: true)
        histOffset.removeAll(keepingCapacity: true)
        histOffset.append(0)
        histItem.removeAll(keepingCapacity: true); histCategory.removeAll(keepingCapacity: true)
        label.removeAll(keepingCapacity: true); truth.removeAll(keepingCapacity: true)
        histScene.removeAll(keepingCapacity: true); cold.removeAll(keepingCapacity: true)
    }

    /// Writes the chunk file (via a temporary name and a rename). The
    /// columns go out in the order of `ChunkFormat`, each padded to 8 bytes.
    func write(to path: String) throws {
        let n = user.count
        precondition(item.count == n && category.count == n && row.count == n && label.count == n
                     && truth.count == n && cold.count == n && histOffset.count == n + 1
                     && histCategory.count == histItem.count && histScene.count == histItem.count)
        let layout = ChunkFormat.Layout(count: n, entries: histItem.count)
        let out = try OutputFile(path: path, bufferBytes: 0)
        var header = [UInt8](repeating: 0, count: ChunkFormat.headerSize)
        func put<T: FixedWidthInteger>(_ v: T, _ offset: Int) {
            withUnsafeBytes(of: v.littleEndian) { for (k, b) in $0.enumerated() { header[offset + k] = b } }
        }
        put(ChunkFormat.magic, 0)
        put(ChunkFormat.version, 8)
        put(UInt32(lLong), 12)
        put(UInt64(n), 16)
        put(UInt64(histItem.count), 24)
        put(scene, 32)
        put(UInt64(layout.fileSize), 40)
        var written = 0
        let zeros = [UInt8](repeating: 0, count: 8)
        func column<T>(_ a: [T], at offset: Int) throws {
            precondition(written <= offset && offset - written < 8)
            if offset > written { try zeros.withUnsafeBytes { try out.write(UnsafeRawBufferPointer(rebasing: $0[0..<(offset - written)])) } }
            try a.withUnsafeBytes { try out.write($0) }
            written = offset + a.count * MemoryLayout<T>.stride
        }
        try column(header, at: 0)
        try column(user, at: layout.user)
        try column(item, at: layout.item)
        try column(category, at: layout.category)
        try column(row, at: layout.row)
        try column(histOffset, at: layout.histOffset)
        try column(histItem, at: layout.histItem)
        try column(histCategory, at: layout.histCategory)
        try column(label, at: layout.label)
        try column(truth, at: layout.truth)
        try column(histScene, at: layout.histScene)
        try column(cold, at: layout.cold)
        if layout.fileSize > written {
            try zeros.withUnsafeBytes { try out.write(UnsafeRawBufferPointer(rebasing: $0[0..<(layout.fileSize - written)])) }
        }
        try out.finish()
    }
}

/// A chunk file, memory-mapped read-only and validated on open.
///
/// `@unchecked Sendable`: immutable after init (a read-only mapping).
public final class ChunkFile: @unchecked Sendable {
    public let path: String
    public let count: Int
    public let lLong: Int
    public let scene: Int
    public let historyEntries: Int
    private let file: MappedFile
    private let layout: ChunkFormat.Layout

    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        func bad(_ why: String) -> ScenePSError {
            ScenePSError.data("\(path): not a valid ScenePS chunk: \(why)")
        }
        let size = file.size
        guard size >= ChunkFormat.headerSize else {
            throw bad("\(size) bytes, shorter than the \(ChunkFormat.headerSize)-byte header (truncated?)")
        }
        let header = file.withBytes { raw -> (UInt64, UInt32, UInt32, UInt64, UInt64, Int32, UInt64) in
            (UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
             UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self)),
             UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 12, as: UInt32.self)),
             UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
             UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 24, as: UInt64.self)),
             Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 32, as: Int32.self)),
             UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 40, as: UInt64.self)))
        }
        guard header.0 == ChunkFormat.magic else { throw bad("wrong magic number (foreign file?)") }
        guard header.1 == ChunkFormat.version else {
            throw bad("format version \(header.1), this build reads version \(ChunkFormat.version)")
        }
        guard header.2 <= 1 << 16, header.3 <= UInt64(Int32.max), header.4 <= header.3 * UInt64(header.2) else {
            throw bad("implausible header (lLong \(header.2), count \(header.3), entries \(header.4))")
        }
        let layout = ChunkFormat.Layout(count: Int(header.3), entries: Int(header.4))
        guard header.6 == UInt64(layout.fileSize) else {
            throw bad("header says \(header.6) bytes, counts imply \(layout.fileSize)")
        }
        guard size == layout.fileSize else {
            throw bad("\(size) bytes on disk, expected \(layout.fileSize) (truncated?)")
        }
        lLong = Int(header.2)
        count = Int(header.3)
        historyEntries = Int(header.4)
        scene = Int(header.5)
        self.layout = layout
        // Validate the parts that index memory: offsets monotonic, ≤ lLong apart.
        let problem: String? = file.withBytes { raw in
            let base = UnsafeMutableRawPointer(mutating: raw.baseAddress!)
            let off = (base + layout.histOffset).bindMemory(to: UInt64.self, capacity: layout.count + 1)
            if off[0] != 0 { return "history offsets do not start at 0" }
            for b in 0..<layout.count {
                let a = off[b], e = off[b + 1]
                if e < a || e - a > UInt64(header.2) { return "history of sample \(b) is \(Int64(bitPattern: e &- a)) entries (lLong \(header.2))" }
            }
            if off[layout.count] != UInt64(layout.entries) { return "history offsets end at \(off[layout.count]), expected \(layout.entries)" }
            let label = (base + layout.label).bindMemory(to: Float.self, capacity: layout.count)
            for b in 0..<layout.count where label[b] != 0 && label[b] != 1 {
                return "label of sample \(b) is \(label[b])"
            }
            return nil
        }
        if let problem { throw bad(problem) }
    }

    /// Appends samples `indices` (each in 0..<count) of this chunk to `batch`,
    /// in that order. Histories are cut or padded to `batch.lLong`.
    public func append<C: Collection>(_ indices: C, to batch: inout SampleBatch) where C.Element == Int {
        let L = batch.lLong
        let layout = layout
        let sceneIndex = Int32(scene)
        file.withBytes { raw in
            // The mapping is untyped memory; each section is bound to its element type.
            let base = UnsafeMutableRawPointer(mutating: raw.baseAddress!)
            let n = layout.count, h = layout.entries
            let user = (base + layout.user).bindMemory(to: UInt64.self, capacity: n)
            let item = (base + layout.item).bindMemory(to: UInt64.self, capacity: n)
            let cat = (base + layout.category).bindMemory(to: UInt64.self, capacity: n)
            let row = (base + layout.row).bindMemory(to: Int64.self, capacity: n)
            let off = (base + layout.histOffset).bindMemory(to: UInt64.self, capacity: n + 1)
            let hItem = (base + layout.histItem).bindMemory(to: UInt64.self, capacity: h)
            let hCat = (base + layout.histCategory).bindMemory(to: UInt64.self, capacity: h)
            let label = (base + layout.label).bindMemory(to: Float.self, capacity: n)
            let truth = (base + layout.truth).bindMemory(to: Float.self, capacity: n)
            let hScene = (base + layout.histScene).bindMemory(to: Int32.self, capacity: h)
            let cold = (base + layout.cold).bindMemory(to: UInt8.self, capacity: n)
            for k in indices {
                precondition(k >= 0 && k < layout.count, "sample index \(k) out of 0..<\(layout.count)")
                batch.user.append(user[k]); batch.item.append(item[k]); batch.category.append(cat[k])
                batch.scene.append(sceneIndex); batch.label.append(label[k]); batch.row.append(row[k])
                batch.truth.append(truth[k]); batch.cold.append(cold[k] != 0)
                let a = Int(off[k])
                let n = min(Int(off[k + 1]) - a, L)
                batch.histLen.append(Int32(n))
                batch.histItem.append(contentsOf: UnsafeBufferPointer(start: hItem + a, count: n))
                batch.histCategory.append(contentsOf: UnsafeBufferPointer(start: hCat + a, count: n))
                batch.histScene.append(contentsOf: UnsafeBufferPointer(start: hScene + a, count: n))
                if n < L {
                    batch.histItem.append(contentsOf: repeatElement(0, count: L - n))
                    batch.histCategory.append(contentsOf: repeatElement(0, count: L - n))
                    batch.histScene.append(contentsOf: repeatElement(0, count: L - n))
                }
                batch.count += 1
            }
        }
    }
}
