/// How SAC cuts a context into encoder windows and where their anchors sit in the decoder's
/// positions, in one place. Window i holds tokens [i*W, min((i+1)*W, n)); a token's position is
/// its index + 1 (1-based and global, the way the encoder runs and the KV is stored). Windows
/// laid out one after another for a query (from one document or several) take the slots
/// 0, 1, 2, ... so slot j's anchors sit at j*W + their 1-based offset inside the window: a whole
/// document read back in order gets exactly the positions it was encoded with.
public struct WindowLayout: Sendable, Equatable {
    /// W: tokens per window.
    public let size: Int

    public init(size: Int) {
        precondition(size > 0)
        self.size = size
    }

    /// Consecutive windows of `size` tokens over `count` tokens; the last may be short.
    public func windows(count: Int) -> [Range<Int>] {
        stride(from: 0, to: count, by: size).map { $0..<min($0 + size, count) }
    }

    /// The first token of window `w` of a context of `count` tokens and the window's length;
    /// nil when there is no such window (what a damaged record's claims are checked with).
    public func window(_ w: Int, of count: Int) -> (start: Int, length: Int)? {
        let (start, over) = w.multipliedReportingOverflow(by: size)
        guard w >= 0, !over, start < count else { return nil }
        return (start, min(size, count - start))
    }

    /// The position of the token at 1-based `offset` inside the window placed at `slot`.
    public func position(slot: Int, offset: Int) -> Int32 { Int32(slot * size + offset) }

    /// The context length when the last window placed, at `slot`, has `length` tokens.
    public func contextLength(lastSlot slot: Int, length: Int) -> Int { slot * size + length }
}

extension SACLayout {
    /// The window layout of this layout's window size.
    public var windows: WindowLayout { WindowLayout(size: window) }
}
