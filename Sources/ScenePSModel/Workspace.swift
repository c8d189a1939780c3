/// One zero-initialised allocation cut into the fixed buffers a layer needs
/// for its largest batch, so that a training step allocates nothing.
///
/// The owner (a layer object) asks for its slices once, at construction, and
/// keeps the `Workspace` alive as long as it uses them. Not thread-safe: the
/// owning model is used by one thread at a time.
final class Workspace<T: Numeric> {
    private let base: UnsafeMutablePointer<T>
    private let capacity: Int
    /// One pointer per requested size, in request order; each slice starts on
    /// a 16-element boundary.
    let slices: [UnsafeMutablePointer<T>]

    init(_ sizes: [Int]) {
        var starts: [Int] = []
        var used = 0
        for n in sizes {
            precondition(n >= 0)
            used = (used + 15) & ~15
            starts.append(used)
            used += n
        }
        capacity = max(used, 1) + 16
        let raw = UnsafeMutableRawPointer.allocate(byteCount: capacity * MemoryLayout<T>.stride, alignment: 64)
        let base = raw.bindMemory(to: T.self, capacity: capacity)
        base.initialize(repeating: 0, count: capacity)
        self.base = base
        slices = starts.map { base + $0 }
    }

    deinit {
        base.deinitialize(count: capacity)
        UnsafeMutableRawPointer(base).deallocate()
    }
}
