/// GPT-2 byte-to-unicode mapping used by byte-level BPE vocabularies.
enum ByteLevel {
    /// byteToScalar[b] is the unicode scalar value that represents byte b in vocabulary strings.
    static let byteToScalar: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var n: UInt32 = 0
        for b in 0..<256 {
            let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
            if printable {
                table[b] = UInt32(b)
            } else {
                table[b] = 256 + n
                n += 1
            }
        }
        return table
    }()

    /// Inverse map: scalar value (< 324) -> byte, or -1.
    static let scalarToByte: [Int16] = {
        var table = [Int16](repeating: -1, count: 324)
        for b in 0..<256 { table[Int(byteToScalar[b])] = Int16(b) }
        return table
    }()

    /// The vocabulary string of the byte sequence.
    static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(Unicode.Scalar(byteToScalar[Int(b)])!) }
        return String(s)
    }

    /// Bytes a vocabulary string stands for, following HF's ByteLevel decoder: if every character
    /// maps back to a byte, those bytes; otherwise the string's own UTF-8 (as for added tokens).
    static func decode(_ token: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(token.unicodeScalars.count)
        for u in token.unicodeScalars {
            let v = Int(u.value)
            guard v < scalarToByte.count, scalarToByte[v] >= 0 else { return Array(token.utf8) }
            out.append(UInt8(scalarToByte[v]))
        }
        return out
    }

    /// Whether every character of the token is a byte-level character.
    static func isByteLevel(_ token: String) -> Bool {
        for u in token.unicodeScalars {
            let v = Int(u.value)
            if v >= scalarToByte.count || scalarToByte[v] < 0 { return false }
        }
        return true
    }
}
