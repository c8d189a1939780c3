import Foundation
import ScenePSTestSupport
import XCTest
@testable import ScenePSProtocol

/// The encoded bytes of every sample message are pinned: the fixture was
/// written by the codec as it was before it was split per message (one
/// hand-marshalled switch), so a refactor of the codec that changes one byte
/// on the wire fails here, and so does an unintended change of a message's
/// encoding. A deliberate wire change replaces the affected line with the one
/// the failure prints (and bumps `WireProtocol.version` if old peers cannot
/// read it); a new message appends its sample's line.
final class WireGoldenBytesTests: XCTestCase {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/wire-golden.txt")

    /// `kind hex` per sample, in `WireSamples.bodies` order.
    static func encodedLines() -> [String] {
        WireSamples.bodies.enumerated().map { i, body in
            let env = Envelope(requestID: UInt64(i) * 1_000_003 + 1, sender: "peer-\(i)", body: body)
            let hex = WireCodec.encode(env).map { String(format: "%02x", $0) }.joined()
            return "\(body.kindName) \(hex)"
        }
    }

    func testEncodedBytesOfEverySampleAreTheGoldenBytes() throws {
        let text = try String(contentsOf: Self.fixture, encoding: .utf8)
        let golden = text.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") }
        let now = Self.encodedLines()
        XCTAssertEqual(now.count, golden.count, "one golden line per sample in \(Self.fixture.path)")
        for (i, (a, b)) in zip(now, golden).enumerated() {
            XCTAssertEqual(a, b, "sample \(i) (\(a.prefix(while: { $0 != " " }))) encodes differently from the golden bytes; now: \(a)")
        }
    }

    func testEveryBodyKindHasAGoldenSample() {
        let kinds = Set(WireSamples.bodies.map(\.kindName))
        XCTAssertEqual(kinds.count, 29, "every Body case has a sample: \(kinds.sorted())")
    }

    func testGoldenSamplesDecodeBackToThemselves() throws {
        for (i, body) in WireSamples.bodies.enumerated() {
            let env = Envelope(requestID: UInt64(i) + 1, sender: "p", body: body)
            XCTAssertEqual(try WireCodec.decode(WireCodec.encode(env)), env, body.kindName)
            XCTAssertEqual(WireCodec.encodeBuffer(env).withUnsafeBytes { [UInt8]($0) }, WireCodec.encode(env), body.kindName)
        }
    }
}
