import Tensor

/// Per-layer key/value rows of past tokens: keys are stored after RoPE, at the positions the
/// forward pass (or an external filler, such as the SAC decoder) gave them.
/// Layout per layer: [capacity, kvHeads * headDim], row i = i-th cached token.
public final class KVCache {
    public let layerCount: Int
    public let kvDim: Int
    public private(set) var capacity: Int
    /// Rows filled in every layer.
    public private(set) var count: Int = 0
    /// Position the next token gets when the caller gives none (one past the last position seen).
    public var nextPosition: Int32 = 0
    private var keyBuffers: [FloatBuffer]
    private var valueBuffers: [FloatBuffer]

    public init(layerCount: Int, kvDim: Int, capacity: Int) {
        self.layerCount = layerCount
        self.kvDim = kvDim
        self.capacity = max(capacity, 1)
        keyBuffers = (0..<layerCount).map { _ in FloatBuffer(count: max(capacity, 1) * kvDim, zeroed: false) }
        valueBuffers = (0..<layerCount).map { _ in FloatBuffer(count: max(capacity, 1) * kvDim, zeroed: false) }
    }

    /// Grows storage (copying filled rows) so that `rows` rows fit.
    public func reserve(_ rows: Int) {
        guard rows > capacity else { return }
        let newCapacity = max(rows, capacity * 2)
        for l in 0..<layerCount {
            let k = FloatBuffer(count: newCapacity * kvDim, zeroed: false)
            let v = FloatBuffer(count: newCapacity * kvDim, zeroed: false)
            k.pointer.update(from: keyBuffers[l].pointer, count: count * kvDim)
            v.pointer.update(from: valueBuffers[l].pointer, count: count * kvDim)
            keyBuffers[l] = k
            valueBuffers[l] = v
        }
        capacity = newCapacity
    }

    /// Keys of a layer: [capacity, kvDim]; rows [0, count) are valid.
    public func keys(layer: Int) -> UnsafeMutablePointer<Float> { keyBuffers[layer].pointer }
    /// Values of a layer: [capacity, kvDim]; rows [0, count) are valid.
    public func values(layer: Int) -> UnsafeMutablePointer<Float> { valueBuffers[layer].pointer }

    /// Appends rows written from outside: `keys[layer]` / `values[layer]` are [rows, kvDim],
    /// keys already rotated for the positions the caller chose.
    public func append(keys: [[Float]], values: [[Float]], rows: Int) {
        precondition(keys.count == layerCount && values.count == layerCount)
        reserve(count + rows)
        for l in 0..<layerCount {
            precondition(keys[l].count == rows * kvDim && values[l].count == rows * kvDim)
            keys[l].withUnsafeBufferPointer { (keyBuffers[l].pointer + count * kvDim).update(from: $0.baseAddress!, count: rows * kvDim) }
            values[l].withUnsafeBufferPointer { (valueBuffers[l].pointer + count * kvDim).update(from: $0.baseAddress!, count: rows * kvDim) }
        }
        count += rows
    }

    /// Marks rows [count, count + rows) as filled after a caller wrote them through keys(layer:)/values(layer:).
    public func commit(rows: Int) {
        precondition(count + rows <= capacity)
        count += rows
    }

    /// Drops rows after `newCount` (e.g. to reuse a shared prefix).
    public func truncate(to newCount: Int) {
        precondition(newCount <= count)
        count = newCount
    }

    public func reset() {
        count = 0
        nextPosition = 0
    }
}
