import Foundation
import XCTest

@testable import ScenePSModel

/// Every layer's hand-written backward pass against central finite
/// differences in Double (eps 1e-6), along random directions per input block.
/// Each layer's scalar objective is vᵀ·output for a fixed random v.
final class LayerGradientTests: XCTestCase {
    private var rnd = TestRandom(seed: 2024)

    func testLinearReLU() {
        let m = 7, k = 5, n = 3
        var f = FlatBuilder()
        let xr = f.add("x", rnd.vector(m * k)), wr = f.add("W", rnd.vector(n * k)), br = f.add("b", rnd.vector(n, -0.3, 0.3))
        let v = rnd.vector(m * n)
        func forward(_ p: [Double]) -> [Double] {
            var y = [Double](repeating: 0, count: m * n)
            y.withUnsafeMutableBufferPointer { yp in
                Linear.forward(Array(p[xr]), rows: m, in: k, out: n, w: Array(p[wr]), b: Array(p[br]), y: yp.baseAddress!)
                ReLU.forward(yp.baseAddress!, count: m * n)
            }
            return y
        }
        gradientCheck("linear+relu", at: f.values, blocks: f.blocks,
                      loss: { p in zip(forward(p), v).reduce(0) { $0 + $1.0 * $1.1 } },
                      gradient: { p in
                          let y = forward(p)
                          var dy = v, dx = [Double](repeating: 0, count: m * k)
                          var dw = [Double](repeating: 0, count: n * k), db = [Double](repeating: 0, count: n)
                          dy.withUnsafeMutableBufferPointer { ReLU.backward($0.baseAddress!, output: y, count: m * n) }
                          dx.withUnsafeMutableBufferPointer { dxp in
                              dw.withUnsafeMutableBufferPointer { dwp in
                                  db.withUnsafeMutableBufferPointer { dbp in
                                      Linear.backward(dy, x: Array(p[xr]), rows: m, in: k, out: n, w: Array(p[wr]),
                                                      dw: dwp.baseAddress!, db: dbp.baseAddress!, dx: dxp.baseAddress!, accumulate: false)
                                  }
                              }
                          }
                          return dx + dw + db
                      })
    }

    func testLinearBackwardAccumulatesWhenAsked() {
        let m = 3, k = 4, n = 2
        let x = rnd.vector(m * k), w = rnd.vector(n * k), dy = rnd.vector(m * n)
        let start = rnd.vector(m * k), dw0 = rnd.vector(n * k)
        var dxAcc = start, dxNew = start, dw = dw0, dwScratch = dw0
        dxAcc.withUnsafeMutableBufferPointer { dxp in
            dw.withUnsafeMutableBufferPointer { dwp in
                Linear.backward(dy, x: x, rows: m, in: k, out: n, w: w, dw: dwp.baseAddress!, db: nil, dx: dxp.baseAddress!, accumulate: true)
            }
        }
        dxNew.withUnsafeMutableBufferPointer { dxp in
            dwScratch.withUnsafeMutableBufferPointer { dwp in
                Linear.backward(dy, x: x, rows: m, in: k, out: n, w: w, dw: dwp.baseAddress!, db: nil, dx: dxp.baseAddress!, accumulate: false)
            }
        }
        // accumulate: start + fresh; dW is always accumulated. Tolerance: each element's round-off bound
        // (its n or m products plus the starting value, in any order the BLAS kernel picks).
        let dxBounds = (0..<(m * k)).map { e -> Double in
            let (r, i) = (e / k, e % k)
            let mag = abs(start[e]) + (0..<n).map { abs(dy[r * n + $0] * w[$0 * k + i]) }.reduce(0, +)
            return 2 * roundOffBound(Double.self, terms: n + 1, magnitude: mag)   // two sums compared: twice
        }
        assertWithin(dxAcc, zip(start, dxNew).map { $0 + $1 }, bounds: dxBounds, "dx accumulates")
        var expectedDW = dw0, dwBounds = [Double](repeating: 0, count: n * k)
        for o in 0..<n {
            for i in 0..<k {
                var mag = abs(dw0[o * k + i])
                for r in 0..<m {
                    expectedDW[o * k + i] += dy[r * n + o] * x[r * k + i]
                    mag += abs(dy[r * n + o] * x[r * k + i])
                }
                dwBounds[o * k + i] = roundOffBound(Double.self, terms: m + 1, magnitude: mag)
            }
        }
        assertWithin(dw, expectedDW, bounds: dwBounds, "dW accumulates")
    }

    func testLayerNorm() {
        let n = 4, c = 6
        var f = FlatBuilder()
        let xr = f.add("x", rnd.vector(n * c, -2, 2)), gr = f.add("gamma", rnd.vector(c, 0.5, 1.5)), br = f.add("beta", rnd.vector(c))
        let v = rnd.vector(n * c)
        func forward(_ p: [Double]) -> (y: [Double], mean: [Double], rstd: [Double]) {
            var y = [Double](repeating: 0, count: n * c), mean = [Double](repeating: 0, count: n), rstd = mean
            y.withUnsafeMutableBufferPointer { yp in
                mean.withUnsafeMutableBufferPointer { mp in
                    rstd.withUnsafeMutableBufferPointer { rp in
                        LayerNorm.forward(Array(p[xr]), rows: n, width: c, gamma: Array(p[gr]), beta: Array(p[br]),
                                          y: yp.baseAddress!, mean: mp.baseAddress!, rstd: rp.baseAddress!)
                    }
                }
            }
            return (y, mean, rstd)
        }
        gradientCheck("layernorm", at: f.values, blocks: f.blocks,
                      loss: { p in zip(forward(p).y, v).reduce(0) { $0 + $1.0 * $1.1 } },
                      gradient: { p in
                          let (_, mean, rstd) = forward(p)
                          var dx = [Double](repeating: 0, count: n * c), dg = [Double](repeating: 0, count: c), db = dg
                          dx.withUnsafeMutableBufferPointer { dxp in
                              dg.withUnsafeMutableBufferPointer { dgp in
                                  db.withUnsafeMutableBufferPointer { dbp in
                                      LayerNorm.backward(v, x: Array(p[xr]), rows: n, width: c, gamma: Array(p[gr]), mean: mean, rstd: rstd,
                                                         dx: dxp.baseAddress!, dgamma: dgp.baseAddress!, dbeta: dbp.baseAddress!)
                                  }
                              }
                          }
                          return dx + dg + db
                      })
    }

    /// Packed-token bookkeeping for the attention tests.
    private func segments(_ counts: [Int]) -> (start: [Int], total: Int) {
        var start: [Int] = [], total = 0
        for c in counts {
            start.append(total)
            total += c
        }
        return (start + [total], total)
    }

    func testTargetAttention() {
        let d = 6, counts = [3, 0, 1, 5], batch = counts.count
        let (start, total) = segments(counts)
        var f = FlatBuilder()
        let qr = f.add("qt", rnd.vector(batch * d)), tr = f.add("tokens", rnd.vector(total * d))
        let v = rnd.vector(batch * d), scale = 1 / Double(d).squareRoot()
        func forward(_ p: [Double], _ a: inout [Double]) -> [Double] {
            var c = [Double](repeating: 0, count: batch * d)
            c.withUnsafeMutableBufferPointer { cp in
                a.withUnsafeMutableBufferPointer { ap in
                    TargetAttention.forward(qt: Array(p[qr]), tokens: Array(p[tr]), width: d, start: start, count: counts, batch: batch,
                                            scale: scale, a: ap.baseAddress!, c: cp.baseAddress!)
                }
            }
            return c
        }
        gradientCheck("target attention", at: f.values, blocks: f.blocks,
                      loss: { p in
                          var a = [Double](repeating: 0, count: total)
                          return zip(forward(p, &a), v).reduce(0) { $0 + $1.0 * $1.1 }
                      },
                      gradient: { p in
                          var a = [Double](repeating: 0, count: total)
                          _ = forward(p, &a)
                          var dq = [Double](repeating: 0, count: batch * d), dt = [Double](repeating: 0, count: total * d)
                          var scratch = [Double](repeating: 0, count: total)
                          dq.withUnsafeMutableBufferPointer { dqp in
                              dt.withUnsafeMutableBufferPointer { dtp in
                                  TargetAttention.backward(dc: v, qt: Array(p[qr]), tokens: Array(p[tr]), width: d, start: start, count: counts,
                                                           batch: batch, scale: scale, a: a, scratch: &scratch,
                                                           dqt: dqp.baseAddress!, dtok: dtp.baseAddress!)
                              }
                          }
                          return dq + dt
                      })
    }

    /// q, k, v as column blocks of one (T, 3d) matrix, as the Transformer block stores them.
    func testMaskedSelfAttention() {
        let d = 6, heads = 2, maxLen = 4, counts = [4, 1, 0, 3], batch = counts.count, ld = 3 * d
        let (start, total) = segments(counts)
        var f = FlatBuilder()
        f.add("qkv", rnd.vector(total * ld))
        let w = rnd.vector(total * d)
        func forward(_ p: [Double], _ att: inout [Double]) -> [Double] {
            var o = [Double](repeating: 0, count: total * d)
            p.withUnsafeBufferPointer { qkv in
                let base = qkv.baseAddress!
                o.withUnsafeMutableBufferPointer { op in
                    att.withUnsafeMutableBufferPointer { ap in
                        MaskedSelfAttention.forward(q: base, k: base + d, v: base + 2 * d, ld: ld, width: d, heads: heads, maxLen: maxLen,
                                                    start: start, count: counts, batch: batch, att: ap.baseAddress!, o: op.baseAddress!)
                    }
                }
            }
            return o
        }
        gradientCheck("masked self-attention", at: f.values, blocks: f.blocks,
                      loss: { p in
                          var att = [Double](repeating: 0, count: total * heads * maxLen)
                          return zip(forward(p, &att), w).reduce(0) { $0 + $1.0 * $1.1 }
                      },
                      gradient: { p in
                          var att = [Double](repeating: 0, count: total * heads * maxLen)
                          _ = forward(p, &att)
                          var dqkv = [Double](repeating: .nan, count: total * ld), scratch = [Double](repeating: 0, count: maxLen)
                          p.withUnsafeBufferPointer { qkv in
                              let base = qkv.baseAddress!
                              dqkv.withUnsafeMutableBufferPointer { gp in
                                  let g = gp.baseAddress!
                                  MaskedSelfAttention.backward(dout: w, q: base, k: base + d, v: base + 2 * d, ld: ld, width: d,
                                                               heads: heads, maxLen: maxLen, start: start, count: counts, batch: batch,
                                                               att: att, scratch: &scratch, dq: g, dk: g + d, dv: g + 2 * d)
                              }
                          }
                          return dqkv
                      })
    }

    func testMaskedMean() {
        let c = 5, counts = [2, 0, 3], batch = counts.count
        let (start, total) = segments(counts)
        let x = rnd.vector(total * c), v = rnd.vector(batch * c)
        func forward(_ p: [Double]) -> [Double] {
            var out = [Double](repeating: 1, count: batch * c)
            out.withUnsafeMutableBufferPointer { MaskedMean.forward(p, width: c, start: start, count: counts, batch: batch, out: $0.baseAddress!) }
            return out
        }
        XCTAssertEqual(Array(forward(x)[c..<(2 * c)]), [Double](repeating: 0, count: c), "no tokens: zero mean")
        gradientCheck("masked mean", at: x, blocks: [Block(name: "x", range: 0..<x.count)],
                      loss: { p in zip(forward(p), v).reduce(0) { $0 + $1.0 * $1.1 } },
                      gradient: { _ in
                          var dx = [Double](repeating: 0, count: total * c)
                          dx.withUnsafeMutableBufferPointer {
                              MaskedMean.backward(v, width: c, start: start, count: counts, batch: batch, dx: $0.baseAddress!)
                          }
                          return dx
                      })
    }

    /// A small config's layout filled with random values (gammas near 1, biases non-zero).
    private func randomParameters(_ layout: ParameterLayout) -> [Double] {
        var p = [Double](repeating: 0, count: layout.count)
        for e in layout.entries {
            for i in 0..<e.count { p[e.offset + i] = e.name.hasSuffix("gamma") ? rnd.uniform(0.6, 1.4) : rnd.uniform(-0.6, 0.6) }
        }
        return p
    }

    private func smallConfig() -> MSIFConfig {
        var c = MSIFConfig()
        c.d = 6; c.lLong = 6; c.lShort = 4; c.heads = 2; c.ffn = 10; c.experts = 3
        c.expertWidths = [8, 5]; c.headWidth = 4; c.scenes = 3
        return c
    }

    private func parameterBlocks(_ layout: ParameterLayout, prefix: String) -> [Block] {
        layout.entries.filter { $0.name.hasPrefix(prefix) }.map { Block(name: $0.name, range: $0.offset..<($0.offset + $0.count)) }
    }

    func testLongInterest() {
        let cfg = smallConfig(), layout = cfg.layout, d = cfg.d
        let counts = [3, 0, 1, 6], batch = counts.count
        let (start, total) = segments(counts)
        let layer = LongInterest<Double>(layout: layout, d: d, maxLen: cfg.lLong, maxBatch: batch)
        var f = FlatBuilder()
        f.values = randomParameters(layout)
        let tr = f.add("t", rnd.vector(batch * d)), er = f.add("es", rnd.vector(batch * d)), kr = f.add("tokens", rnd.vector(total * d))
        let blocks = parameterBlocks(layout, prefix: "attn_long.") + f.blocks
        let v = rnd.vector(batch * d)
        func forward(_ p: [Double]) -> [Double] {
            layer.forward(params: p, target: Array(p[tr]), scene: Array(p[er]), tokens: Array(p[kr]), start: start, count: counts, batch: batch)
            return Array(UnsafeBufferPointer(start: layer.output, count: batch * d))
        }
        gradientCheck("long interest", at: f.values, blocks: blocks,
                      loss: { p in zip(forward(p), v).reduce(0) { $0 + $1.0 * $1.1 } },
                      gradient: { p in
                          _ = forward(p)
                          var g = [Double](repeating: 0, count: p.count)
                          g.withUnsafeMutableBufferPointer { gp in
                              let base = gp.baseAddress!
                              layer.backward(params: p, grads: base, outputGradient: v, target: Array(p[tr]), scene: Array(p[er]),
                                             tokens: Array(p[kr]), start: start, count: counts, batch: batch,
                                             dt: base + tr.lowerBound, des: base + er.lowerBound, dtokens: base + kr.lowerBound)
                          }
                          return g
                      })
    }

    func testTransformerBlock() {
        let cfg = smallConfig(), layout = cfg.layout, d = cfg.d
        let counts = [4, 1, 0, 3], batch = counts.count
        let (start, total) = segments(counts)
        let block = TransformerBlock<Double>(layout: layout, d: d, heads: cfg.heads, ffn: cfg.ffn, maxLen: cfg.lShort, maxBatch: batch)
        var f = FlatBuilder()
        f.values = randomParameters(layout)
        let xr = f.add("tokens", rnd.vector(total * d, -1.5, 1.5))
        let blocks = parameterBlocks(layout, prefix: "short.").filter { $0.name != "short.pos" } + f.blocks
        let v = rnd.vector(batch * d)
        func forward(_ p: [Double]) -> [Double] {
            for i in 0..<(total * d) { block.input[i] = p[xr.lowerBound + i] }
            block.forward(params: p, start: start, count: counts, batch: batch, tokens: total)
            return Array(UnsafeBufferPointer(start: block.output, count: batch * d))
        }
        // b_k shifts every score of a query equally: softmax cancels it, its gradient is zero.
        gradientCheck("transformer block", at: f.values, blocks: blocks, zeroBlocks: ["short.b_k"],
                      loss: { p in zip(forward(p), v).reduce(0) { $0 + $1.0 * $1.1 } },
                      gradient: { p in
                          _ = forward(p)
                          var g = [Double](repeating: 0, count: p.count)
                          g.withUnsafeMutableBufferPointer { gp in
                              block.backward(params: p, grads: gp.baseAddress!, outputGradient: v, start: start, count: counts,
                                             batch: batch, tokens: total)
                              for i in 0..<(total * d) { gp[xr.lowerBound + i] = block.inputGradient[i] }
                          }
                          return g
                      })
    }

    func testFusionGate() {
        let b = 5, d = 4
        var f = FlatBuilder()
        let lr = f.add("long", rnd.vector(b * d)), sr = f.add("short", rnd.vector(b * d))
        let er = f.add("es", rnd.vector(b * d)), tr = f.add("t", rnd.vector(b * d))
        let wr = f.add("W", rnd.vector(d * 4 * d)), br = f.add("b", rnd.vector(d))
        let v = rnd.vector(b * d)
        func forward(_ p: [Double], _ g: inout [Double]) -> [Double] {
            var interest = [Double](repeating: 0, count: b * d)
            interest.withUnsafeMutableBufferPointer { ip in
                g.withUnsafeMutableBufferPointer { gp in
                    FusionGate.forward(long: Array(p[lr]), short: Array(p[sr]), scene: Array(p[er]), target: Array(p[tr]), batch: b, width: d,
                                       w: Array(p[wr]), b: Array(p[br]), g: gp.baseAddress!, interest: ip.baseAddress!)
                }
            }
            return interest
        }
        gradientCheck("fusion gate", at: f.values, blocks: f.blocks,
                      loss: { p in
                          var g = [Double](repeating: 0, count: b * d)
                          return zip(forward(p, &g), v).reduce(0) { $0 + $1.0 * $1.1 }
                      },
                      gradient: { p in
                          var gate = [Double](repeating: 0, count: b * d)
                          _ = forward(p, &gate)
                          var grad = [Double](repeating: 0, count: p.count), scratch = [Double](repeating: 0, count: b * d)
                          grad.withUnsafeMutableBufferPointer { gp in
                              scratch.withUnsafeMutableBufferPointer { sp in
                                  let g0 = gp.baseAddress!
                                  FusionGate.backward(v, long: Array(p[lr]), short: Array(p[sr]), scene: Array(p[er]), target: Array(p[tr]),
                                                      g: gate, batch: b, width: d, w: Array(p[wr]), dw: g0 + wr.lowerBound, db: g0 + br.lowerBound,
                                                      dlong: g0 + lr.lowerBound, dshort: g0 + sr.lowerBound, des: g0 + er.lowerBound,
                                                      dt: g0 + tr.lowerBound, scratch: sp.baseAddress!)
                              }
                          }
                          return grad
                      })
    }

    func testSceneTower() {
        var cfg = smallConfig()
        cfg.d = 4
        let layout = cfg.layout, inW = 5 * cfg.d
        let groupStart = [0, 3, 3, 7], batch = 7   // scene 1 has no rows in this batch
        let tower = SceneTower<Double>(layout: layout, config: cfg, maxBatch: batch)
        var f = FlatBuilder()
        f.values = randomParameters(layout)
        let xr = f.add("x", rnd.vector(batch * inW))
        let towerBlocks = parameterBlocks(layout, prefix: "experts.") + parameterBlocks(layout, prefix: "scene_gate.")
            + parameterBlocks(layout, prefix: "head.") + f.blocks
        let unused = Set(towerBlocks.map(\.name).filter { $0.hasPrefix("scene_gate.1.") || $0.hasPrefix("head.1.") })
        let v = rnd.vector(batch)
        func forward(_ p: [Double]) -> [Double] {
            tower.forward(params: p, input: Array(p[xr]), groupStart: groupStart, batch: batch)
            return Array(UnsafeBufferPointer(start: tower.output, count: batch))
        }
        gradientCheck("scene tower", at: f.values, blocks: towerBlocks, zeroBlocks: unused,
                      loss: { p in zip(forward(p), v).reduce(0) { $0 + $1.0 * $1.1 } },
                      gradient: { p in
                          _ = forward(p)
                          var g = [Double](repeating: 0, count: p.count)
                          g.withUnsafeMutableBufferPointer { gp in
                              tower.backward(params: p, grads: gp.baseAddress!, outputGradient: v, input: Array(p[xr]),
                                             groupStart: groupStart, batch: batch)
                              for i in 0..<(batch * inW) { gp[xr.lowerBound + i] = tower.inputGradient[i] }
                          }
                          return g
                      })
    }

    func testBinaryCrossEntropy() {
        let z = rnd.vector(6, -3, 3), y: [Double] = [1, 0, 1, 1, 0, 0]
        func loss(_ p: [Double]) -> Double { BinaryCrossEntropy.forward(logits: p, labels: y, count: p.count, dlogits: nil) }
        // Against the textbook formula where it is safe.
        var plain = 0.0
        for i in 0..<z.count {
            let s = 1 / (1 + Foundation.exp(-z[i]))
            plain -= y[i] * Foundation.log(s) + (1 - y[i]) * Foundation.log(1 - s)
        }
        XCTAssertEqual(loss(z), plain / 6, accuracy: 1e-12)   // 6 terms of size ≤ 3.05 (|z| ≤ 3): 1e-12 is ~1000× their round-off
        gradientCheck("bce", at: z, blocks: [Block(name: "z", range: 0..<z.count)], loss: loss, gradient: { p in
            var dz = [Double](repeating: 0, count: p.count)
            _ = dz.withUnsafeMutableBufferPointer { BinaryCrossEntropy.forward(logits: p, labels: y, count: p.count, dlogits: $0.baseAddress!) }
            return dz
        })
        // Extreme logits stay finite: loss ≈ |z| for a confident wrong answer, ≈ 0 for a right one.
        let extreme: [Double] = [800, -800, 800, -800]
        var dz = [Double](repeating: 0, count: 4)
        let l = dz.withUnsafeMutableBufferPointer {
            BinaryCrossEntropy.forward(logits: extreme, labels: [0, 1, 1, 0], count: 4, dlogits: $0.baseAddress!)
        }
        XCTAssertEqual(l, 400, accuracy: 1e-9)   // (800 + 800 + 0 + 0) / 4 exactly, up to log1p(e^-800) and round-off of 1600
        XCTAssertEqual(dz, [0.25, -0.25, 0, 0])
        var dzf = [Float](repeating: 0, count: 2)
        let lf = dzf.withUnsafeMutableBufferPointer {
            BinaryCrossEntropy.forward(logits: [Float(100), -100], labels: [Float(0), 0], count: 2, dlogits: $0.baseAddress!)
        }
        XCTAssertEqual(lf, 50, accuracy: 1e-4)   // Float: (100 + 0) / 2, round-off of 100 in Float is ~1e-5
    }
}
