#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum ProcessStats {
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
