import Foundation
import ScenePSCore
#if canImport(Glibc)
import Glibc
#endif

/// The worker's progress as JSON lines (worker `--progress-file`), for `psctl report`: one
/// `{"event": "start", ...}` line when the process starts (a restart appends to the same file, so the
/// report sees every incarnation), then one `{"event": "progress", ...}` line for every progress log line
/// (every `training.log_every` steps, and at the end). Fields: `time` (Unix seconds), `worker`, `scene`,
/// `pid`; progress lines add `epoch`, `step`, `examples`, `seconds` (since the process started),
/// `examples_per_sec` (`examples / seconds`), `loss` (mean of the last `log_every` steps), `running_auc`
/// (the last 20 000 training predictions). A line is written with one `write(2)` on a descriptor opened
/// with `O_APPEND`, so a crash leaves whole lines (at most the last one cut short, which readers skip).
public final class ProgressFile {
    public let path: String
    let fd: Int32
    let worker: String, scene: String

    public init(path: String, worker: String, scene: String) throws {
        self.path = path
        self.worker = worker
        self.scene = scene
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw ScenePSError.invalidArgument("--progress-file \(path): cannot open it for appending: \(String(cString: strerror(errno)))")
        }
        write(["event": "start"])
    }

    deinit { close(fd) }

    /// One progress line (`Progress.log`'s values).
    func progress(epoch: Int, step: Int, examples: Int, seconds: Double, line: ProgressLine) {
        write(["event": "progress", "epoch": epoch, "step": step, "examples": examples,
               "seconds": seconds, "examples_per_sec": line.rate, "loss": line.loss, "running_auc": line.auc])
    }

    func write(_ fields: [String: Any]) {
        var o = fields
        o["time"] = Date().timeIntervalSince1970
        o["worker"] = worker
        o["scene"] = scene
        o["pid"] = Int(getpid())
        // NaN (no loss yet, one class only) is not JSON: such a value is left out.
        for (k, v) in o { if let d = v as? Double, !d.isFinite { o[k] = nil } }
        guard var d = try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]) else { return }
        d.append(0x0A)
        // Best effort: a full disk must not stop training (the log line has the same values).
        _ = d.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    }
}
