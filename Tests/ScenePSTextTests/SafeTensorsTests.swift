import Foundation
import ScenePSCore
import XCTest
@testable import ScenePSText

final class SafeTensorsTests: XCTestCase {
    func testReadsTensorsAndMetadata() throws {
        let dir = try makeTempDirectory(self)
        let path = dir + "/ok.safetensors"
        try writeBytes(path, safetensorsBytes([("w", "F32", [2, 3], floatBytes([1, 2, 3, 4, 5, 6])),
                                               ("ids", "I64", [2], [UInt8](repeating: 0, count: 16))],
                                              metadata: ["format": "pt"]))
        let st = try SafeTensors(path: path)
        XCTAssertEqual(st.metadata, ["format": "pt"])
        let w = try st.float32("w", shape: [2, 3])
        XCTAssertEqual(st.floats(w), [1, 2, 3, 4, 5, 6])
        assertThrows([path, "tensor ids", "dtype I64", "expected F32"]) { try st.float32("ids", shape: [2]) }
        assertThrows([path, "tensor w", "shape [2, 3]", "expected [3, 2]"]) { try st.float32("w", shape: [3, 2]) }
        assertThrows([path, "missing tensor nope"]) { try st.float32("nope", shape: [1]) }
    }

    func testTruncatedFile() throws {
        let dir = try makeTempDirectory(self)
        let good = safetensorsBytes([("w", "F32", [4, 4], floatBytes([Float](repeating: 1, count: 16)))])
        let path = dir + "/cut.safetensors"
        try writeBytes(path, Array(good.dropLast(8)))
        assertThrows([path, "truncated", "tensor w"]) { try SafeTensors(path: path) }
        try writeBytes(path, Array(good.prefix(5)))
        assertThrows([path, "truncated", "8-byte header length"]) { try SafeTensors(path: path) }
        try writeBytes(path, [])
        assertThrows([path, "truncated"]) { try SafeTensors(path: path) }
    }

    func testHeaderLengthBeyondFile() throws {
        let dir = try makeTempDirectory(self)
        let path = dir + "/long.safetensors"
        var bytes = safetensorsBytes([("w", "F32", [1], floatBytes([1]))])
        bytes[0] = 0xFF; bytes[1] = 0x0F   // header length 4095, file far shorter
        try writeBytes(path, bytes)
        assertThrows([path, "header claims 4095 bytes"]) { try SafeTensors(path: path) }
        bytes[7] = 0x7F                      // absurd length
        try writeBytes(path, bytes)
        assertThrows([path, "not plausible"]) { try SafeTensors(path: path) }
    }

    func testBadJSONAndInconsistentEntries() throws {
        let dir = try makeTempDirectory(self)
        let path = dir + "/bad.safetensors"
        func withHeader(_ json: String, data: [UInt8] = []) -> [UInt8] {
            var n = UInt64(json.utf8.count)
            var out: [UInt8] = []
            for _ in 0..<8 { out.append(UInt8(n & 0xFF)); n >>= 8 }
            return out + Array(json.utf8) + data
        }
        try writeBytes(path, withHeader("{\"w\": {\"dtype\": \"F32\", "))
        assertThrows([path, "not valid JSON"]) { try SafeTensors(path: path) }
        try writeBytes(path, withHeader("[1]"))
        assertThrows([path, "not a JSON object"]) { try SafeTensors(path: path) }
        try writeBytes(path, withHeader("{\"w\": {\"dtype\": \"F33\", \"shape\": [1], \"data_offsets\": [0, 4]}}", data: [0, 0, 0, 0]))
        assertThrows([path, "tensor w", "unknown dtype \"F33\""]) { try SafeTensors(path: path) }
        try writeBytes(path, withHeader("{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 4]}}", data: [0, 0, 0, 0]))
        assertThrows([path, "tensor w", "span 4 bytes", "needs 8"]) { try SafeTensors(path: path) }
        try writeBytes(path, withHeader("{\"w\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", data: [0, 0, 0, 0]))
        assertThrows([path, "tensor w", "shape"]) { try SafeTensors(path: path) }
        try writeBytes(path, withHeader("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 0]}}", data: [0, 0, 0, 0]))
        assertThrows([path, "tensor w", "data_offsets"]) { try SafeTensors(path: path) }
    }

    /// A model whose weights file has a tensor of the wrong shape or dtype is
    /// refused with the file and the tensor named.
    func testEncoderRejectsWrongShapeAndDtype() throws {
        let dir = try makeTempDirectory(self)
        let c = BertConfig(hidden: 4, heads: 2, layers: 1, intermediate: 8, layerNormEps: 1e-12, maxPositions: 6, vocabSize: 5, typeVocabSize: 2)
        func tensors(override: (String, String, [Int])? = nil) -> [(String, String, [Int], [UInt8])] {
            var shapes: [(String, [Int])] = [
                ("embeddings.word_embeddings.weight", [5, 4]), ("embeddings.position_embeddings.weight", [6, 4]),
                ("embeddings.token_type_embeddings.weight", [2, 4]), ("embeddings.LayerNorm.weight", [4]), ("embeddings.LayerNorm.bias", [4]),
            ]
            let p = "encoder.layer.0."
            for part in ["query", "key", "value"] { shapes += [(p + "attention.self.\(part).weight", [4, 4]), (p + "attention.self.\(part).bias", [4])] }
            shapes += [(p + "attention.output.dense.weight", [4, 4]), (p + "attention.output.dense.bias", [4]),
                       (p + "attention.output.LayerNorm.weight", [4]), (p + "attention.output.LayerNorm.bias", [4]),
                       (p + "intermediate.dense.weight", [8, 4]), (p + "intermediate.dense.bias", [8]),
                       (p + "output.dense.weight", [4, 8]), (p + "output.dense.bias", [4]),
                       (p + "output.LayerNorm.weight", [4]), (p + "output.LayerNorm.bias", [4])]
            return shapes.map { name, shape in
                var dtype = "F32", s = shape
                if let o = override, o.0 == name { dtype = o.1; s = o.2 }
                let n = s.reduce(1, *)
                return (name, dtype, s, dtype == "F16" ? [UInt8](repeating: 0, count: 2 * n) : floatBytes((0..<n).map { Float($0) * 0.01 }))
            }
        }
        let path = dir + "/model.safetensors"
        try writeBytes(path, safetensorsBytes(tensors()))
        let enc = try BertEncoder(weights: try SafeTensors(path: path), config: c)
        var out = [Float](repeating: 0, count: 4)
        out.withUnsafeMutableBufferPointer { enc.embed([[1, 2, 3]], into: $0.baseAddress!, workspace: .init(config: c, tokens: 8)) }
        XCTAssertFalse(out.contains { $0.isNaN })

        try writeBytes(path, safetensorsBytes(tensors(override: ("encoder.layer.0.intermediate.dense.weight", "F32", [4, 8]))))
        assertThrows([path, "encoder.layer.0.intermediate.dense.weight", "shape [4, 8]", "expected [8, 4]"]) {
            try BertEncoder(weights: try SafeTensors(path: path), config: c)
        }
        try writeBytes(path, safetensorsBytes(tensors(override: ("embeddings.LayerNorm.weight", "F16", [4]))))
        assertThrows([path, "embeddings.LayerNorm.weight", "dtype F16", "expected F32"]) {
            try BertEncoder(weights: try SafeTensors(path: path), config: c)
        }
    }

    func testMissingOrIncompleteModelDirectorySaysHowToFetch() throws {
        let dir = try makeTempDirectory(self)
        assertThrows([dir + "/nowhere", "model directory not found", "tools/fetch-minilm.sh"]) {
            try SentenceEmbeddingModel(directory: dir + "/nowhere")
        }
        try writeBytes(dir + "/config.json", Array("{}".utf8))
        assertThrows([dir, "missing", "model.safetensors", "tools/fetch-minilm.sh"]) {
            try SentenceEmbeddingModel(directory: dir)
        }
    }

    /// A copy of the real model directory with one file broken: each is refused naming that file.
    func testBrokenRealModelFiles() throws {
        let real = TestModel.directory
        _ = try TestModel.load()
        let dir = try makeTempDirectory(self)
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir + "/1_Pooling", withIntermediateDirectories: true)
        for f in ModelFiles.required + ["modules.json"] where f != "model.safetensors" {
            try fm.copyItem(atPath: real + "/" + f, toPath: dir + "/" + f)
        }
        // The weights, truncated by a kilobyte.
        let weights = try Data(contentsOf: URL(fileURLWithPath: real + "/model.safetensors"))
        try weights.dropLast(1024).write(to: URL(fileURLWithPath: dir + "/model.safetensors"))
        assertThrows([dir + "/model.safetensors", "truncated"]) { try SentenceEmbeddingModel(directory: dir) }
        try weights.write(to: URL(fileURLWithPath: dir + "/model.safetensors"))
        XCTAssertNoThrow(try SentenceEmbeddingModel(directory: dir))
        // A tokenizer.json that does not parse.
        try writeBytes(dir + "/tokenizer.json", Array("{\"version\": \"1.0\", \"model\": ".utf8))
        assertThrows([dir + "/tokenizer.json", "does not parse"]) { try SentenceEmbeddingModel(directory: dir) }
    }
}
