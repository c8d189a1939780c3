import Foundation
import Prometheus
import ScenePSCore
#if canImport(Glibc)
import Glibc
#endif

/// The process's own gauges, read at scrape time: resident memory, CPU time,
/// start time, threads (the names Prometheus's own client libraries use).
public enum ProcessMetrics {
    public static func register(on endpoint: MetricsEndpoint) {
        let r = endpoint.registry
        let rss = r.gauge("process_resident_memory_bytes", help: "Resident memory of this process (/proc/self/statm).")
        let peak = r.gauge("process_peak_resident_memory_bytes", help: "Peak resident memory of this process so far (getrusage).")
        let cpu = r.counter("process_cpu_seconds_total", help: "User and system CPU time of this process.")
        let start = r.gauge("process_start_time_seconds", help: "When this process started (Unix time).")
        let threads = r.gauge("process_threads", help: "Threads of this process (/proc/self/status).")
        start.set(Date().timeIntervalSince1970 - ProcessInfo.processInfo.systemUptime + bootRelativeStart())
        let lastCPU = ScrapeDelta()
        endpoint.onScrape {
            if let b = residentBytes() { rss.set(Double(b)) }
            peak.set(ProcessStats.peakRSSMiB * 1_048_576)
            lastCPU.advance(cpu, to: ProcessStats.cpuSeconds)
            if let n = threadCount() { threads.set(Double(n)) }
        }
    }

    /// Resident bytes now: /proc/self/statm's second field, in pages.
    public static func residentBytes() -> Int? {
        guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return nil }
        let f = s.split(separator: " ")
        guard f.count > 1, let pages = Int(f[1]) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    static func threadCount() -> Int? {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in s.split(separator: "\n") where line.hasPrefix("Threads:") {
            return Int(line.dropFirst(8).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }

    /// Seconds after boot this process started (/proc/self/stat field 22), minus the system uptime now.
    static func bootRelativeStart() -> Double {
        guard let s = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let close = s.lastIndex(of: ")") else { return 0 }
        let fields = s[s.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state); starttime is field 22.
        guard fields.count > 19, let ticks = Double(fields[19]) else { return 0 }
        let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
        return ticks / hz
    }
}

/// A counter kept equal to a total read at scrape time (CPU seconds, time spent
/// applying pushes): each scrape adds what the total grew by.
public final class ScrapeDelta: @unchecked Sendable {
    // @unchecked: `last` is behind `lock`.
    private let lock = NSLock()
    private var last = 0.0
    public init() {}
    public func advance(_ counter: Counter, to total: Double) {
        let d = lock.withLock { () -> Double in defer { last = max(last, total) }; return total - last }
        if d > 0 { counter.increment(by: d) }
    }
}
