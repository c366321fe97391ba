/// Redis Cluster key slots: CRC16 (XMODEM: polynomial 0x1021, initial value 0, no reflection)
/// of the key, modulo 16384. When the key holds a hash tag, a `{...}` with at least one byte
/// inside (the first `{` and the first `}` after it), only the tag is hashed: keys that share a
/// tag share a slot, so one MULTI/EXEC can touch all of them.
public enum HashSlot {
    public static let count = 16384

    public static func slot<Key: Collection>(of key: Key) -> Int where Key.Element == UInt8 {
        let bytes = Array(key)
        if let open = bytes.firstIndex(of: UInt8(ascii: "{")),
           let close = bytes[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1 {
            return Int(crc16(bytes[(open + 1)..<close]) % UInt16(count))
        }
        return Int(crc16(bytes) % UInt16(count))
    }

    public static func slot(of key: String) -> Int { slot(of: Array(key.utf8)) }

    /// CRC16-XMODEM, table-driven.
    public static func crc16<Bytes: Sequence>(_ bytes: Bytes) -> UInt16 where Bytes.Element == UInt8 {
        var crc: UInt16 = 0
        for b in bytes { crc = (crc << 8) ^ table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ b)] }
        return crc
    }

    private static let table: [UInt16] = (0..<256).map { i in
        var c = UInt16(i) << 8
        for _ in 0..<8 { c = c & 0x8000 != 0 ? (c << 1) ^ 0x1021 : c << 1 }
        return c
    }
}
