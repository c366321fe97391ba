import CKernels
import Foundation
import Tensor

public enum AttentionMask: Sendable {
    /// Each new token sees the cached rows and the new tokens up to itself.
    case causal
    /// Every new token sees the cached rows and all new tokens (the SAC encoder).
    case bidirectional
}

/// Which rows of the input get a final hidden state / logits.
public enum OutputRows: Sendable, Equatable {
    case none
    case last
    case all
    case rows([Int])
}

public struct ForwardOptions: Sendable {
    /// Position ids of the new tokens; default continues from the cache's nextPosition.
    public var positions: [Int32]?
    public var attention: AttentionMask = .causal
    /// Vectors [hidden] added to the input embeddings of the given input rows, before layer 0.
    public var embeddingAdditions: [(row: Int, vector: [Float])] = []
    /// Vectors [hidden] that replace the input embeddings of the given rows (learned tokens that
    /// have no vocabulary id, such as SAC's [LM]); the row's token id is then ignored.
    public var embeddingReplacements: [(row: Int, vector: [Float])] = []
    public var lora: LoRAWeights?
    public var output: OutputRows = .last
    /// Compute logits for the output rows (otherwise only final-norm hidden states).
    public var computeLogits = true
    /// Rows whose pre-RoPE keys and values are captured from every layer.
    public var captureRows: [Int]?
    /// Single-token steps use int8 activations with integer dot products (llama.cpp's decode
    /// scheme); false keeps fp32 activations (slower, bit-closer to the reference).
    public var integerDecode = Kernels.integerDecode
    /// Blocks of rows multiply in BF16 where the CPU has AVX512_BF16 (`Kernels.bf16Prefill`);
    /// false keeps fp32 sgemm (the reference path of the golden tests).
    public var bf16Prefill = Kernels.bf16Prefill

    public init(positions: [Int32]? = nil, attention: AttentionMask = .causal,
                embeddingAdditions: [(row: Int, vector: [Float])] = [], lora: LoRAWeights? = nil,
                output: OutputRows = .last, computeLogits: Bool = true, captureRows: [Int]? = nil) {
        self.positions = positions
        self.attention = attention
        self.embeddingAdditions = embeddingAdditions
        self.lora = lora
        self.output = output
        self.computeLogits = computeLogits
        self.captureRows = captureRows
    }
}

/// Pre-RoPE keys and values of captured rows for one layer: [rows, kvDim] each.
public struct CapturedKV: Sendable {
    public var keys: [Float]
    public var values: [Float]
}

public struct ForwardResult: Sendable {
    /// Input rows the outputs belong to, in order.
    public var rows: [Int]
    /// [rows.count, vocab] (empty when logits were not asked for).
    public var logits: [Float]
    /// Final-norm hidden states [rows.count, hidden].
    public var hidden: [Float]
    /// Per layer, for ForwardOptions.captureRows.
    public var captured: [CapturedKV]
}

/// A model plus its KV cache and reusable run-state buffers. One session serves one sequence
/// at a time; many sessions can share one LlamaModel.
public final class InferenceSession {
    public let model: LlamaModel
    public let cache: KVCache
    private var scratchRows = 0
    private var x, h, q, attn, gate, up, loraTmp, ropeCos, ropeSin: FloatBuffer
    private var scores: FloatBuffer

    public init(model: LlamaModel, capacity: Int = 1024) {
        self.model = model
        let c = model.config
        cache = KVCache(layerCount: c.layerCount, kvDim: c.kvDim, capacity: capacity)
        x = FloatBuffer(count: 0); h = x; q = x; attn = x; gate = x; up = x; loraTmp = x; ropeCos = x; ropeSin = x; scores = x
    }

    private func ensureScratch(rows: Int, loraRank: Int) {
        let c = model.config
        if rows > scratchRows {
            x = FloatBuffer(count: rows * c.hiddenSize)
            h = FloatBuffer(count: rows * c.hiddenSize)
            q = FloatBuffer(count: rows * c.qDim)
            attn = FloatBuffer(count: rows * c.qDim)
            gate = FloatBuffer(count: rows * c.intermediateSize)
            up = FloatBuffer(count: rows * c.intermediateSize)
            ropeCos = FloatBuffer(count: rows * c.headDim / 2)
            ropeSin = FloatBuffer(count: rows * c.headDim / 2)
            scratchRows = rows
        }
        if loraTmp.count < rows * loraRank { loraTmp = FloatBuffer(count: rows * loraRank) }
    }

    /// Runs the new tokens through the model, appending their K/V to the cache.
    public func forward(_ tokens: [Int32], options: ForwardOptions = ForwardOptions()) throws -> ForwardResult {
        let c = model.config, w = model.weights
        let T = tokens.count
        guard T > 0 else { throw LLMError.invalidInput("forward needs at least one token") }
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= c.vocabSize }) {
            throw LLMError.invalidInput("token id \(bad) is outside the vocabulary (0..<\(c.vocabSize))")
        }
        let positions = options.positions ?? (0..<T).map { cache.nextPosition + Int32($0) }
        guard positions.count == T else { throw LLMError.invalidInput("\(positions.count) positions for \(T) tokens") }
        for add in options.embeddingAdditions + options.embeddingReplacements {
            guard add.row >= 0, add.row < T, add.vector.count == c.hiddenSize else {
                throw LLMError.invalidInput("embedding vector for row \(add.row) with \(add.vector.count) values (need row < \(T), \(c.hiddenSize) values)")
            }
        }
        let outRows: [Int]
        switch options.output {
        case .none: outRows = []
        case .last: outRows = [T - 1]
        case .all: outRows = Array(0..<T)
        case .rows(let r):
            guard r == r.sorted(), Set(r).count == r.count, r.allSatisfy({ $0 >= 0 && $0 < T }) else {
                throw LLMError.invalidInput("output rows must be distinct, ascending and < \(T)")
            }
            outRows = r
        }
        let capture = options.captureRows ?? []
        guard capture.allSatisfy({ $0 >= 0 && $0 < T }) else { throw LLMError.invalidInput("capture rows must be < \(T)") }
        if let lora = options.lora, lora.q.count != c.layerCount || lora.v.count != c.layerCount {
            throw LLMError.invalidInput("LoRA has \(lora.q.count) layers, the model has \(c.layerCount)")
        }

        let P = cache.count
        cache.reserve(P + T)
        ensureScratch(rows: T, loraRank: options.lora?.maxRank ?? 0)
        let H = c.hiddenSize, qd = c.qDim, kvd = c.kvDim, F = c.intermediateSize, hd = c.headDim
        let x = self.x.pointer, h = self.h.pointer, q = self.q.pointer, attn = self.attn.pointer
        let gate = self.gate.pointer, up = self.up.pointer

        // [T, H] input embeddings (+ additions)
        for r in 0..<T { w.embedding.lookup(tokens[r], into: x + r * H) }
        for rep in options.embeddingReplacements {
            rep.vector.withUnsafeBufferPointer { (x + rep.row * H).update(from: $0.baseAddress!, count: H) }
        }
        for add in options.embeddingAdditions {
            add.vector.withUnsafeBufferPointer { v in for i in 0..<H { x[add.row * H + i] += v[i] } }
        }
        model.rope.table(positions: positions, cos: ropeCos.pointer, sin: ropeSin.pointer)

        var captured: [CapturedKV] = []
        let needFinal = !outRows.isEmpty
        var rows = T
        var rowIndex = Array(0..<T)
        for l in 0..<c.layerCount {
            let lw = w.layers[l]
            let isLast = l == c.layerCount - 1
            Kernels.rmsNorm(x, weight: lw.attnNorm.pointer, out: h, rows: T, n: H, eps: c.rmsNormEps)
            let kNew = cache.keys(layer: l) + P * kvd     // [T, kvd]
            let vNew = cache.values(layer: l) + P * kvd   // [T, kvd]
            lw.k.apply(h, rows: T, out: kNew, integerDot: options.integerDecode, bf16: options.bf16Prefill)
            lw.v.apply(h, rows: T, out: vNew, integerDot: options.integerDecode, bf16: options.bf16Prefill)
            if let lora = options.lora, let pv = lora.v[l] { pv.apply(h, rows: T, y: vNew, scale: lora.scale, tmp: loraTmp.pointer) }
            if !capture.isEmpty {
                var kc = [Float](repeating: 0, count: capture.count * kvd), vc = kc
                for (i, r) in capture.enumerated() {
                    for j in 0..<kvd { kc[i * kvd + j] = kNew[r * kvd + j]; vc[i * kvd + j] = vNew[r * kvd + j] }
                }
                captured.append(CapturedKV(keys: kc, values: vc))
            }
            model.rope.apply(kNew, rows: T, ld: kvd, heads: c.kvHeadCount, cos: ropeCos.pointer, sin: ropeSin.pointer)
            if isLast && !needFinal { break }  // the last layer's K/V are all the caller needs

            lw.q.apply(h, rows: T, out: q, integerDot: options.integerDecode, bf16: options.bf16Prefill)
            if let lora = options.lora, let pq = lora.q[l] { pq.apply(h, rows: T, y: q, scale: lora.scale, tmp: loraTmp.pointer) }
            model.rope.apply(q, rows: T, ld: qd, heads: c.headCount, cos: ropeCos.pointer, sin: ropeSin.pointer)
            if isLast && outRows.count < T {
                // Only the output rows need the last layer's attention and MLP.
                for (i, r) in outRows.enumerated() where i != r {
                    (x + i * H).update(from: x + r * H, count: H)
                    (q + i * qd).update(from: q + r * qd, count: qd)
                }
                rows = outRows.count
                rowIndex = outRows
            }
            let visible: [Int64] = rowIndex.map { options.attention == .causal ? Int64(P + $0 + 1) : Int64(P + T) }
            attention(layer: l, q: q, rows: rows, visible: visible, out: attn)
            lw.o.apply(attn, rows: rows, out: x, accumulate: true, integerDot: options.integerDecode, bf16: options.bf16Prefill)

            Kernels.rmsNorm(x, weight: lw.ffnNorm.pointer, out: h, rows: rows, n: H, eps: c.rmsNormEps)
            lw.gate.apply(h, rows: rows, out: gate, integerDot: options.integerDecode, bf16: options.bf16Prefill)
            lw.up.apply(h, rows: rows, out: up, integerDot: options.integerDecode, bf16: options.bf16Prefill)
            Kernels.siluMul(gate, up, count: rows * F)
            lw.down.apply(gate, rows: rows, out: x, accumulate: true, integerDot: options.integerDecode, bf16: options.bf16Prefill)
        }
        cache.commit(rows: T)
        cache.nextPosition = positions[T - 1] + 1

        var result = ForwardResult(rows: outRows, logits: [], hidden: [], captured: captured)
        if needFinal {
            let n = outRows.count
            Kernels.rmsNorm(x, weight: w.outputNorm.pointer, out: h, rows: n, n: H, eps: c.rmsNormEps)
            result.hidden = Array(UnsafeBufferPointer(start: h, count: n * H))
            if options.computeLogits {
                var logits = [Float](repeating: 0, count: n * c.vocabSize)
                logits.withUnsafeMutableBufferPointer { w.lmHead.apply(h, rows: n, out: $0.baseAddress!, integerDot: options.integerDecode, bf16: options.bf16Prefill) }
                result.logits = logits
            }
        }
        _ = hd
        return result
    }

    /// out[rows, qDim] = softmax(q K^T / sqrt(d)) V per head, over cache rows [0, visible[r]).
    private func attention(layer l: Int, q: UnsafeMutablePointer<Float>, rows: Int, visible: [Int64], out: UnsafeMutablePointer<Float>) {
        let c = model.config
        let hd = c.headDim, qd = c.qDim, kvd = c.kvDim
        let group = c.headCount / c.kvHeadCount
        let scale = 1 / Float(hd).squareRoot()
        let K = cache.keys(layer: l), V = cache.values(layer: l)
        let maxVisible = Int(visible.max() ?? 0)
        visible.withUnsafeBufferPointer { vis in
            let visPtr = vis.baseAddress!
            if rows <= 16 {
                // Short query blocks (decode, question tokens): one head per worker task.
                Parallel.forRanges(c.headCount) { heads in
                    let s = FloatBuffer(count: maxVisible, zeroed: false)
                    for hh in heads {
                        let g = hh / group
                        akv_attention_head_rows(q + hh * hd, Int64(qd), K + g * hd, V + g * hd, Int64(kvd),
                                                out + hh * hd, Int64(qd), Int64(hd), visPtr, 0, Int64(rows), scale, s.pointer)
                    }
                }
                return
            }
            // Long blocks: sgemm per head over query chunks, heads split over the kernel pool;
            // a causal chunk only reads the keys it can see.
            let chunk = 256
            let perWorker = chunk * maxVisible
            if scores.count < Parallel.workers * perWorker { scores = FloatBuffer(count: Parallel.workers * perWorker, zeroed: false) }
            let scoreBase = UncheckedSendable(scores.pointer)
            let headCount = c.headCount
            Parallel.forRanges(headCount) { heads, slot in
                let sc = scoreBase.value + slot * perWorker  // this thread's own scratch
                for hh in heads {
                    let g = hh / group
                    var c0 = 0
                    while c0 < rows {
                        let n = min(chunk, rows - c0)
                        let width = Int((c0..<c0 + n).map { visPtr[$0] }.max()!)
                        BLAS.gemmTransB(m: n, n: width, k: hd, alpha: scale, a: q + c0 * qd + hh * hd, lda: qd,
                                        b: K + g * hd, ldb: kvd, c: sc, ldc: width)
                        for r in 0..<n { akv_softmax_prefix(sc + r * width, visPtr[c0 + r], Int64(width)) }
                        BLAS.gemm(m: n, n: hd, k: width, a: sc, lda: width, b: V + g * hd, ldb: kvd,
                                  c: out + c0 * qd + hh * hd, ldc: qd)
                        c0 += n
                    }
                }
            }
        }
    }
}

// MARK: batched decode

extension InferenceSession {
    /// Attention of one new row per session (row i of q and out belongs to sessions[i], which sees
    /// its first visible[i] cache rows): every (session, head) pair in one pool dispatch, not one
    /// dispatch of 9 heads per session. Each pair runs the kernel `attention` runs for a single
    /// row, so the values are the same.
    static func attentionOneRowEach(_ sessions: [InferenceSession], layer l: Int, q: UnsafeMutablePointer<Float>,
                                    visible: [Int64], out: UnsafeMutablePointer<Float>) {
        let c = sessions[0].model.config
        let hd = c.headDim, qd = c.qDim, kvd = c.kvDim, heads = c.headCount
        let group = heads / c.kvHeadCount
        let scale = 1 / Float(hd).squareRoot()
        let caches = sessions.map { (keys: $0.cache.keys(layer: l), values: $0.cache.values(layer: l)) }
        let maxVisible = Int(visible.max() ?? 0)
        visible.withUnsafeBufferPointer { vis in
            Parallel.forRanges(sessions.count * heads) { items in
                let scratch = FloatBuffer(count: maxVisible, zeroed: false)
                for item in items {
                    let i = item / heads, hh = item % heads, g = hh / group
                    akv_attention_head_rows(q + i * qd + hh * hd, Int64(qd), caches[i].keys + g * hd, caches[i].values + g * hd, Int64(kvd),
                                            out + i * qd + hh * hd, Int64(qd), Int64(hd), vis.baseAddress! + i, 0, 1, scale, scratch.pointer)
                }
            }
        }
    }
}

extension InferenceSession {
    /// One decode step of several sequences at once (continuous batching): `tokens[i]` is the
    /// next token of `sessions[i]`, at that session's next position. Each weight matrix is read
    /// once for all rows (`Linear.applyIndependentRows`); attention runs per session against its
    /// own cache. Returns each session's logits [vocab]. Row i is bitwise what
    /// `sessions[i].forward([tokens[i]])` returns, so batching never changes a greedy answer.
    public static func step(_ sessions: [InferenceSession], tokens: [Int32]) throws -> [[Float]] {
        guard let first = sessions.first else { return [] }
        guard sessions.count == tokens.count else { throw LLMError.invalidInput("\(sessions.count) sessions for \(tokens.count) tokens") }
        guard Set(sessions.map(ObjectIdentifier.init)).count == sessions.count else {
            throw LLMError.invalidInput("a session appears twice in one batched step")
        }
        if sessions.count == 1 { return [try first.forward(tokens).logits] }
        let model = first.model
        guard sessions.allSatisfy({ $0.model === model }) else { throw LLMError.invalidInput("a batched step needs sessions of one model") }
        let c = model.config, w = model.weights
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= c.vocabSize }) {
            throw LLMError.invalidInput("token id \(bad) is outside the vocabulary (0..<\(c.vocabSize))")
        }
        let B = sessions.count
        let H = c.hiddenSize, qd = c.qDim, kvd = c.kvDim, F = c.intermediateSize, half = c.headDim / 2
        let X = FloatBuffer(count: B * H), Hs = FloatBuffer(count: B * H), Q = FloatBuffer(count: B * qd), A = FloatBuffer(count: B * qd)
        let Kb = FloatBuffer(count: B * kvd), Vb = FloatBuffer(count: B * kvd)
        let G = FloatBuffer(count: B * F), U = FloatBuffer(count: B * F)
        let cos = FloatBuffer(count: B * half), sin = FloatBuffer(count: B * half)
        let x = X.pointer, h = Hs.pointer, q = Q.pointer, attn = A.pointer
        let P = sessions.map { $0.cache.count }
        let positions = sessions.map { $0.cache.nextPosition }
        for (i, s) in sessions.enumerated() { s.cache.reserve(P[i] + 1) }
        for i in 0..<B { w.embedding.lookup(tokens[i], into: x + i * H) }
        model.rope.table(positions: positions, cos: cos.pointer, sin: sin.pointer)

        for l in 0..<c.layerCount {
            let lw = w.layers[l]
            Kernels.rmsNorm(x, weight: lw.attnNorm.pointer, out: h, rows: B, n: H, eps: c.rmsNormEps)
            lw.k.applyIndependentRows(h, rows: B, out: Kb.pointer)
            lw.v.applyIndependentRows(h, rows: B, out: Vb.pointer)
            model.rope.apply(Kb.pointer, rows: B, ld: kvd, heads: c.kvHeadCount, cos: cos.pointer, sin: sin.pointer)
            for (i, s) in sessions.enumerated() {
                (s.cache.keys(layer: l) + P[i] * kvd).update(from: Kb.pointer + i * kvd, count: kvd)
                (s.cache.values(layer: l) + P[i] * kvd).update(from: Vb.pointer + i * kvd, count: kvd)
            }
            lw.q.applyIndependentRows(h, rows: B, out: q)
            model.rope.apply(q, rows: B, ld: qd, heads: c.headCount, cos: cos.pointer, sin: sin.pointer)
            attentionOneRowEach(sessions, layer: l, q: q, visible: P.map { Int64($0 + 1) }, out: attn)
            lw.o.applyIndependentRows(attn, rows: B, out: x, accumulate: true)
            Kernels.rmsNorm(x, weight: lw.ffnNorm.pointer, out: h, rows: B, n: H, eps: c.rmsNormEps)
            lw.gate.applyIndependentRows(h, rows: B, out: G.pointer)
            lw.up.applyIndependentRows(h, rows: B, out: U.pointer)
            Kernels.siluMul(G.pointer, U.pointer, count: B * F)
            lw.down.applyIndependentRows(G.pointer, rows: B, out: x, accumulate: true)
        }
        for (i, s) in sessions.enumerated() {
            s.cache.commit(rows: 1)
            s.cache.nextPosition = positions[i] + 1
        }
        Kernels.rmsNorm(x, weight: w.outputNorm.pointer, out: h, rows: B, n: H, eps: c.rmsNormEps)
        let logits = FloatBuffer(count: B * c.vocabSize, zeroed: false)
        w.lmHead.applyIndependentRows(h, rows: B, out: logits.pointer)
        return (0..<B).map { Array(UnsafeBufferPointer(start: logits.pointer + $0 * c.vocabSize, count: c.vocabSize)) }
    }
}

// MARK: batched prefill

extension InferenceSession {
    /// The first blocks of several sequences in one pass (sequences joining a batch together):
    /// the blocks' rows go through each weight matrix as one matrix (one sgemm for all, which is
    /// far faster per row than a short block alone), attention runs per session against its own
    /// cache and positions. Each block is causal with its last row's logits as the output, as
    /// `forward` gives them by default; `options` may set positions and embedding replacements
    /// (SAC's [LM]), nothing else. Returns each session's logits [vocab], the values its own
    /// `forward(tokens, options:)` returns (a test checks them).
    public static func prefill(_ sessions: [InferenceSession], blocks: [(tokens: [Int32], options: ForwardOptions)]) throws -> [[Float]] {
        guard sessions.count == blocks.count else { throw LLMError.invalidInput("\(sessions.count) sessions for \(blocks.count) blocks") }
        guard Set(sessions.map(ObjectIdentifier.init)).count == sessions.count else {
            throw LLMError.invalidInput("a session appears twice in one batched prefill")
        }
        // One block alone, or a block of one row (a single row takes the decode kernels in `forward`): as `forward` does it.
        if sessions.count == 1 || blocks.contains(where: { $0.tokens.count < 2 }) {
            return try zip(sessions, blocks).map { try $0.forward($1.tokens, options: $1.options).logits }
        }
        // `forward` multiplies a short block with the row kernel, a longer one with sgemm: the
        // short blocks go together through the row kernel and the long ones through sgemm, so each
        // block gets the kernel (and the values) its own forward pass would.
        let short = blocks.map { Linear.isShortBlock(rows: $0.tokens.count) }
        if short.contains(true) && short.contains(false) {
            var logits = [[Float]](repeating: [], count: sessions.count)
            for kind in [true, false] {
                let members = sessions.indices.filter { short[$0] == kind }
                let part = try prefill(members.map { sessions[$0] }, blocks: members.map { blocks[$0] })
                for (i, l) in zip(members, part) { logits[i] = l }
            }
            return logits
        }
        let shortBlock = short[0]
        let model = sessions[0].model
        guard sessions.allSatisfy({ $0.model === model }) else { throw LLMError.invalidInput("a batched prefill needs sessions of one model") }
        let c = model.config, w = model.weights
        let H = c.hiddenSize, qd = c.qDim, kvd = c.kvDim, F = c.intermediateSize, half = c.headDim / 2
        var offsets: [Int] = [], positions: [Int32] = []
        for (s, b) in zip(sessions, blocks) {
            let o = b.options
            guard o.lora == nil, o.captureRows == nil, o.embeddingAdditions.isEmpty, o.attention == .causal, o.output == .last, o.computeLogits else {
                throw LLMError.invalidInput("a batched prefill takes causal blocks with positions and embedding replacements only")
            }
            if let bad = b.tokens.first(where: { $0 < 0 || Int($0) >= c.vocabSize }) {
                throw LLMError.invalidInput("token id \(bad) is outside the vocabulary (0..<\(c.vocabSize))")
            }
            let T = b.tokens.count
            let p = o.positions ?? (0..<T).map { s.cache.nextPosition + Int32($0) }
            guard p.count == T else { throw LLMError.invalidInput("\(p.count) positions for \(T) tokens") }
            for rep in o.embeddingReplacements where rep.row < 0 || rep.row >= T || rep.vector.count != H {
                throw LLMError.invalidInput("embedding vector for row \(rep.row) with \(rep.vector.count) values (need row < \(T), \(H) values)")
            }
            offsets.append(positions.count)
            positions += p
        }
        let S = sessions.count, R = positions.count
        let lengths = blocks.map(\.tokens.count)
        let lastRows = (0..<S).map { offsets[$0] + lengths[$0] - 1 }
        let X = FloatBuffer(count: R * H), Hs = FloatBuffer(count: R * H), Q = FloatBuffer(count: R * qd), A = FloatBuffer(count: R * qd)
        let Kb = FloatBuffer(count: R * kvd), Vb = FloatBuffer(count: R * kvd)
        let G = FloatBuffer(count: R * F), U = FloatBuffer(count: R * F)
        let cos = FloatBuffer(count: R * half), sin = FloatBuffer(count: R * half)
        let x = X.pointer, h = Hs.pointer, q = Q.pointer, attn = A.pointer
        let P = sessions.map { $0.cache.count }
        for (i, s) in sessions.enumerated() { s.cache.reserve(P[i] + lengths[i]) }
        for (i, b) in blocks.enumerated() {
            for (r, t) in b.tokens.enumerated() { w.embedding.lookup(t, into: x + (offsets[i] + r) * H) }
            for rep in b.options.embeddingReplacements {
                rep.vector.withUnsafeBufferPointer { (x + (offsets[i] + rep.row) * H).update(from: $0.baseAddress!, count: H) }
            }
        }
        model.rope.table(positions: positions, cos: cos.pointer, sin: sin.pointer)

        for l in 0..<c.layerCount {
            let lw = w.layers[l]
            let isLast = l == c.layerCount - 1
            Kernels.rmsNorm(x, weight: lw.attnNorm.pointer, out: h, rows: R, n: H, eps: c.rmsNormEps)
            lw.k.apply(h, rows: R, out: Kb.pointer, shortBlock: shortBlock)
            lw.v.apply(h, rows: R, out: Vb.pointer, shortBlock: shortBlock)
            model.rope.apply(Kb.pointer, rows: R, ld: kvd, heads: c.kvHeadCount, cos: cos.pointer, sin: sin.pointer)
            for (i, s) in sessions.enumerated() {
                (s.cache.keys(layer: l) + P[i] * kvd).update(from: Kb.pointer + offsets[i] * kvd, count: lengths[i] * kvd)
                (s.cache.values(layer: l) + P[i] * kvd).update(from: Vb.pointer + offsets[i] * kvd, count: lengths[i] * kvd)
            }
            lw.q.apply(h, rows: R, out: q, shortBlock: shortBlock)
            model.rope.apply(q, rows: R, ld: qd, heads: c.headCount, cos: cos.pointer, sin: sin.pointer)
            var rows = R
            if isLast {
                // Only each block's last row needs the last layer's attention and MLP.
                for (i, r) in lastRows.enumerated() where i != r {
                    (x + i * H).update(from: x + r * H, count: H)
                    (q + i * qd).update(from: q + r * qd, count: qd)
                }
                rows = S
                attentionOneRowEach(sessions, layer: l, q: q, visible: (0..<S).map { Int64(P[$0] + lengths[$0]) }, out: attn)
            } else {
                for (i, s) in sessions.enumerated() {
                    let visible = (0..<lengths[i]).map { Int64(P[i] + $0 + 1) }
                    s.attention(layer: l, q: q + offsets[i] * qd, rows: lengths[i], visible: visible, out: attn + offsets[i] * qd)
                }
            }
            // The last layer's rows are one per block, which `forward` runs through the decode
            // kernels (one row): `applyIndependentRows` gives each exactly that.
            func linear(_ layer: Linear, _ input: UnsafeMutablePointer<Float>, _ out: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
                if isLast { layer.applyIndependentRows(input, rows: rows, out: out, accumulate: accumulate) }
                else { layer.apply(input, rows: rows, out: out, accumulate: accumulate, shortBlock: shortBlock) }
            }
            linear(lw.o, attn, x, accumulate: true)
            Kernels.rmsNorm(x, weight: lw.ffnNorm.pointer, out: h, rows: rows, n: H, eps: c.rmsNormEps)
            linear(lw.gate, h, G.pointer)
            linear(lw.up, h, U.pointer)
            Kernels.siluMul(G.pointer, U.pointer, count: rows * F)
            linear(lw.down, G.pointer, x, accumulate: true)
        }
        for (i, s) in sessions.enumerated() {
            s.cache.commit(rows: lengths[i])
            s.cache.nextPosition = positions[offsets[i] + lengths[i] - 1] + 1
        }
        Kernels.rmsNorm(x, weight: w.outputNorm.pointer, out: h, rows: S, n: H, eps: c.rmsNormEps)
        let logits = FloatBuffer(count: S * c.vocabSize, zeroed: false)
        w.lmHead.applyIndependentRows(h, rows: S, out: logits.pointer)
        return (0..<S).map { Array(UnsafeBufferPointer(start: logits.pointer + $0 * c.vocabSize, count: c.vocabSize)) }
    }
}
