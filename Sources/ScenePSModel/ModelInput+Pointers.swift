/// Raw views of a `ModelInput`'s arrays for the duration of a model call.
struct InputPointers<T: BLASScalar> {
    let targetItem, targetCategory, user, sceneEmbedding, itemBias: UnsafePointer<T>
    let historyItem, historyCategory, historyScene: UnsafePointer<T>
    /// textRows (U, textDim), U = textRowCount; row indices (B) and (B·L), -1 = none.
    let textRows: UnsafePointer<T>
    let textRowCount: Int
    let targetTextRow, historyTextRow: UnsafePointer<Int32>
    let historyLength, scene: UnsafePointer<Int32>
}

extension ModelInput {
    /// Calls `body` with pointers to every array (valid only inside `body`).
    func withPointers<R>(_ body: (InputPointers<T>) -> R) -> R {
        func ptr<E>(_ a: UnsafeBufferPointer<E>) -> UnsafePointer<E> {
            // An empty array may have no storage; its pointer is never dereferenced.
            a.baseAddress ?? UnsafePointer(bitPattern: MemoryLayout<E>.alignment)!
        }
        return targetItem.withUnsafeBufferPointer { ti in
            targetCategory.withUnsafeBufferPointer { tc in
                user.withUnsafeBufferPointer { u in
                    sceneEmbedding.withUnsafeBufferPointer { se in
                        itemBias.withUnsafeBufferPointer { ib in
                            historyItem.withUnsafeBufferPointer { hi in
                                historyCategory.withUnsafeBufferPointer { hc in
                                    historyScene.withUnsafeBufferPointer { hs in
                                      textRows.withUnsafeBufferPointer { tr in
                                       targetTextRow.withUnsafeBufferPointer { ttr in
                                        historyTextRow.withUnsafeBufferPointer { htr in
                                        historyLength.withUnsafeBufferPointer { hl in
                                            scene.withUnsafeBufferPointer { sc in
                                                body(InputPointers(
                                                    targetItem: ptr(ti), targetCategory: ptr(tc),
                                                    user: ptr(u), sceneEmbedding: ptr(se), itemBias: ptr(ib),
                                                    historyItem: ptr(hi), historyCategory: ptr(hc), historyScene: ptr(hs),
                                                    textRows: ptr(tr), textRowCount: textRowCount,
                                                    targetTextRow: ptr(ttr), historyTextRow: ptr(htr),
                                                    historyLength: ptr(hl), scene: ptr(sc)))
                                            }
                                        }
                                        }
                                       }
                                      }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Makes this gradient holder match `input`'s shape (capacity kept when it fits).
    mutating func reshape(like input: ModelInput<T>) {
        if d != input.d || historyWidth != input.historyWidth || textDim != input.textDim {
            d = input.d
            historyWidth = input.historyWidth
            textDim = input.textDim
        }
        resize(batch: input.batch)
        historyLength.withUnsafeMutableBufferPointer { dst in
            input.historyLength.withUnsafeBufferPointer { src in
                if let s = src.baseAddress, let t = dst.baseAddress { t.update(from: s, count: src.count) }
            }
        }
        scene.withUnsafeMutableBufferPointer { dst in
            input.scene.withUnsafeBufferPointer { src in
                if let s = src.baseAddress, let t = dst.baseAddress { t.update(from: s, count: src.count) }
            }
        }
    }
}
