/// A fixed-size, 64-byte aligned float buffer that owns its memory. Forward passes allocate these
/// once and reuse them, so the hot path never touches Swift arrays' copy-on-write machinery.
/// @unchecked Sendable: model weights are written once at load and only read afterwards; run-state
/// buffers belong to one InferenceSession (not Sendable), so no two threads write one buffer.
public final class FloatBuffer: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int

    public init(count: Int, zeroed: Bool = true) {
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<Float>.stride, alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        if zeroed { pointer.initialize(repeating: 0, count: max(count, 1)) }
    }

    public convenience init(_ values: [Float]) {
        self.init(count: values.count, zeroed: false)
        values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: values.count) }
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }

    public var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }

    public subscript(i: Int) -> Float {
        get { pointer[i] }
        set { pointer[i] = newValue }
    }
}

/// Owned raw bytes with alignment (quantized weight rows kept for the decode kernels).
/// @unchecked Sendable: filled once at load (quantized weight rows), read-only afterwards.
public final class ByteBuffer: @unchecked Sendable {
    public let pointer: UnsafeMutableRawPointer
    public let count: Int

    public init(count: Int) {
        self.count = count
        pointer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 64)
    }

    public convenience init(copying source: UnsafeRawBufferPointer) {
        self.init(count: source.count)
        if let base = source.baseAddress { pointer.copyMemory(from: base, byteCount: source.count) }
    }

    deinit { pointer.deallocate() }
}
