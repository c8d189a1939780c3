import Foundation
import ScenePSCore
import XCTest
@testable import ScenePSText

/// `psctl embed-titles` as a user runs it: the release binary built by
/// tools/test.sh (SCENEPS_BIN, else .build/release), its files, its exit
/// codes and its one-line errors.
final class EmbedTitlesCommandTests: XCTestCase {
    static var psctl: String {
        let bin = ProcessInfo.processInfo.environment["SCENEPS_BIN"] ?? repositoryRoot + "/.build/release"
        return bin + "/psctl"
    }

    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    func run(_ args: [String]) throws -> Run {
        guard FileManager.default.isExecutableFile(atPath: Self.psctl) else {
            throw ScenePSError.io("\(Self.psctl) is missing: run tools/test.sh (it builds the release executables first)")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.psctl)
        p.arguments = args
        let dir = try makeTempDirectory(self, "out")
        let outPath = dir + "/stdout", errPath = dir + "/stderr"
        FileManager.default.createFile(atPath: outPath, contents: nil)
        FileManager.default.createFile(atPath: errPath, contents: nil)
        p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(300)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning { p.terminate(); XCTFail("psctl \(args) did not finish in 300 s") }
        p.waitUntilExit()
        return Run(status: p.terminationStatus,
                   stdout: try String(contentsOfFile: outPath, encoding: .utf8),
                   stderr: try String(contentsOfFile: errPath, encoding: .utf8))
    }

    func testEmbedsCatalogueVerifiesAndRefusesAnother() throws {
        _ = try TestModel.load()
        let fixture = try loadFixture()
        let dir = try makeTempDirectory(self)
        let items = dir + "/items.csv"
        let cases = Array(fixture.cases.prefix(6))
        var csv = "item_id,category_id,title\n"
        for (i, c) in cases.enumerated() { csv += "id-\(i),\(i % 2),\"\(c.title.replacingOccurrences(of: "\"", with: "\"\""))\"\n" }
        try writeBytes(items, Array(csv.utf8))
        let out = dir + "/emb"
        let r = try run(["embed-titles", "--items", items, "--out", out, "--model", TestModel.directory, "--threads", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("wrote 6 embeddings (384-d)"), r.stdout)
        XCTAssertTrue(r.stderr.contains("embed-titles: 6/6 titles"), r.stderr)
        XCTAssertEqual(try String(contentsOfFile: out + "/item_ids.txt", encoding: .utf8),
                       (0..<6).map { "id-\($0)\n" }.joined())
        let npy = try NPY.read(path: out + "/embeddings.npy")
        XCTAssertEqual(npy.rows, 6); XCTAssertEqual(npy.cols, 384)
        for (i, c) in cases.enumerated() {
            XCTAssertGreaterThanOrEqual(cosine(npy.values[(i * 384)..<((i + 1) * 384)], c.embedding), 0.9999, c.title)
        }

        let ok = try run(["embed-titles", "--items", items, "--out", out, "--model", TestModel.directory, "--verify"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertTrue(ok.stdout.contains("up to date"), ok.stdout)

        try writeBytes(items, Array((csv + "id-new,1,one more title\n").utf8))
        let stale = try run(["embed-titles", "--items", items, "--out", out, "--model", TestModel.directory, "--verify"])
        XCTAssertEqual(stale.status, 1)
        XCTAssertTrue(stale.stderr.contains("psctl: error: \(out)/meta.json: embeddings were computed for another catalogue"), stale.stderr)
    }

    func testBadInputIsOneLineErrorAndExitOne() throws {
        _ = try TestModel.load()
        let dir = try makeTempDirectory(self)
        let items = dir + "/items.csv"
        func expectError(_ args: [String], _ parts: [String], file: StaticString = #filePath, line: UInt = #line) throws {
            let r = try run(args)
            XCTAssertEqual(r.status, 1, r.stderr, file: file, line: line)
            XCTAssertTrue(r.stderr.hasPrefix("psctl: error: "), r.stderr, file: file, line: line)
            XCTAssertFalse(r.stderr.contains("Fatal error"), r.stderr, file: file, line: line)
            for p in parts { XCTAssertTrue(r.stderr.contains(p), "\"\(r.stderr)\" lacks \"\(p)\"", file: file, line: line) }
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/emb/embeddings.npy"), file: file, line: line)
        }
        let model = ["--model", TestModel.directory]
        try writeBytes(items, Array("item_id,category_id,title\n".utf8))
        try expectError(["embed-titles", "--items", items, "--out", dir + "/emb"] + model, [items, "empty catalogue"])
        try writeBytes(items, Array("item_id,category_id,title\n1,2,ok\n".utf8) + Array("2,2,bad ".utf8) + [0xFF, 0xFE] + Array("\n".utf8))
        try expectError(["embed-titles", "--items", items, "--out", dir + "/emb"] + model, [items + ":3", "not valid UTF-8"])
        try writeBytes(items, Array("item_id,category_id,title\n1,2,ok\n".utf8))
        try expectError(["embed-titles", "--items", items, "--out", dir + "/emb", "--model", dir + "/no-model"],
                        [dir + "/no-model", "tools/fetch-minilm.sh"])
        try expectError(["embed-titles", "--items", dir + "/missing.csv", "--out", dir + "/emb"] + model, [dir + "/missing.csv", "cannot open"])
    }
}
