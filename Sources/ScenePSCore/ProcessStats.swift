#if canImport(Glibc)
import Glibc
import CMalloc
#elseif canImport(Darwin)
import Darwin
#endif

public enum ProcessStats {
    /// CPU time of this process so far (user + system, all threads), in seconds.
    public static var cpuSeconds: Double {
        var u = rusage()
        #if os(Linux)
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u)
        #else
        getrusage(RUSAGE_SELF, &u)
        #endif
        func s(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) * 1e-6 }
        return s(u.ru_utime) + s(u.ru_stime)
    }

    /// Peak resident memory of this process so far, in MiB (getrusage).
    public static var peakRSSMiB: Double {
        var u = rusage()
        #if os(Linux)
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u)
        #else
        getrusage(RUSAGE_SELF, &u)
        #endif
        #if os(Linux)
        return Double(u.ru_maxrss) / 1024        // KiB on Linux
        #else
        return Double(u.ru_maxrss) / 1_048_576   // bytes on macOS
        #endif
    }
}

public enum MemoryTuning {
    /// Keeps freed heap memory in the process instead of returning it to the
    /// kernel. Every step allocates and frees buffers of a few hundred KiB
    /// (the dense parameters and gradient, message frames); with glibc's
    /// defaults those come from fresh mmap/brk pages each time, and the page
    /// faults and zeroing cost 15% of a worker's time at batch 64. The
    /// processes' memory is bounded by their largest working set anyway.
    public static func keepFreedMemory() {
        #if canImport(Glibc)
        _ = mallopt(M_MMAP_THRESHOLD, 32 << 20)   // glibc's maximum; a fixed threshold also stops the dynamic one
        _ = mallopt(M_TRIM_THRESHOLD, 1 << 30)
        #endif
    }
}
