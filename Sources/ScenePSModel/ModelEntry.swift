/// The checked entry points both models share: argument checks, sizing of
/// the outputs, the loss. A model supplies its forward pass (logits for a
/// batch) and its backward pass (from the logit gradient `dlogit`, which the
/// loss has filled, to the parameter and input gradients).
struct ModelEntry<T: BLASScalar> {
    let layout: ParameterLayout
    let d: Int
    let maxBatch: Int
    /// Title-vector width the model reads (0: none).
    var textDim = 0

    typealias Forward = (_ p: UnsafePointer<T>, _ inp: InputPointers<T>, _ batch: Int, _ width: Int,
                         _ logits: UnsafeMutablePointer<T>) -> Void
    typealias Backward = (_ p: UnsafePointer<T>, _ grad: UnsafeMutablePointer<T>, _ inp: InputPointers<T>, _ batch: Int,
                          _ width: Int, _ inputGradient: inout ModelInputGradient<T>) -> Void

    func logits(parameters: UnsafeBufferPointer<T>, input: ModelInput<T>, into logits: inout [T], forward: Forward) {
        check(parameters: parameters, input: input)
        Self.resize(&logits, input.batch)
        if input.batch == 0 { return }
        let p = parameters.baseAddress!
        input.withPointers { inp in
            logits.withUnsafeMutableBufferPointer { out in forward(p, inp, input.batch, input.historyWidth, out.baseAddress!) }
        }
    }

    func lossAndGradients(parameters: UnsafeBufferPointer<T>, input: ModelInput<T>, labels: UnsafeBufferPointer<T>,
                          parameterGradient: UnsafeMutableBufferPointer<T>,
                          inputGradient: inout ModelInputGradient<T>, logits: inout [T],
                          dlogit: UnsafeMutablePointer<T>, forward: Forward, backward: Backward) -> T {
        check(parameters: parameters, input: input)
        precondition(labels.count == input.batch, "labels: \(labels.count) for a batch of \(input.batch)")
        precondition(parameterGradient.count == layout.count, "parameter gradient: \(parameterGradient.count), layout: \(layout.count)")
        Self.resize(&logits, input.batch)
        inputGradient.reshape(like: input)
        let n = input.batch, L = input.historyWidth
        if n == 0 { return 0 }
        let p = parameters.baseAddress!, g = parameterGradient.baseAddress!
        return input.withPointers { inp in
            let loss = logits.withUnsafeMutableBufferPointer { out in
                forward(p, inp, n, L, out.baseAddress!)
                return BinaryCrossEntropy.forward(logits: out.baseAddress!, labels: labels.baseAddress!, count: n, dlogits: dlogit)
            }
            backward(p, g, inp, n, L, &inputGradient)
            return loss
        }
    }

    private func check(parameters: UnsafeBufferPointer<T>, input: ModelInput<T>) {
        precondition(parameters.count == layout.count, "parameters: \(parameters.count), layout: \(layout.count)")
        precondition(input.d == d, "input d \(input.d) != model d \(d)")
        precondition(input.textDim == textDim, "input textDim \(input.textDim) != model textDim \(textDim)")
        precondition(input.batch <= maxBatch, "batch \(input.batch) > maxBatch \(maxBatch)")
        precondition(input.isConsistent, "ModelInput arrays do not match batch \(input.batch), width \(input.historyWidth), d \(input.d)")
    }

    private static func resize(_ a: inout [T], _ n: Int) {
        if a.count > n { a.removeLast(a.count - n) } else if a.count < n { a.append(contentsOf: repeatElement(0, count: n - a.count)) }
    }
}
