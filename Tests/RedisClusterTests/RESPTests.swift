import RedisTestSupport
import XCTest
@testable import RedisCluster

final class HashSlotTests: XCTestCase {
    /// Vectors: CRC16-XMODEM's check value, and slots as Redis's CLUSTER KEYSLOT gives them.
    func testSlotsMatchRedis() {
        XCTAssertEqual(HashSlot.crc16(Array("123456789".utf8)), 0x31C3)
        XCTAssertEqual(HashSlot.slot(of: "foo"), 12182)
        XCTAssertEqual(HashSlot.slot(of: "bar"), 5061)
        XCTAssertEqual(HashSlot.slot(of: "hello"), 866)
        XCTAssertEqual(HashSlot.slot(of: ""), 0)
    }

    /// Hash tags: the first '{' and the first '}' after it, with at least one byte between.
    func testHashTags() {
        let user = HashSlot.slot(of: "user1000")
        XCTAssertEqual(HashSlot.slot(of: "{user1000}.following"), user)
        XCTAssertEqual(HashSlot.slot(of: "{user1000}.followers"), user)
        XCTAssertEqual(HashSlot.slot(of: "foo{user1000}"), user)
        XCTAssertEqual(HashSlot.slot(of: "foo{}{bar}"), Int(HashSlot.crc16(Array("foo{}{bar}".utf8)) % 16384), "an empty tag: the whole key")
        XCTAssertNotEqual(HashSlot.slot(of: "foo{}{bar}"), HashSlot.slot(of: "bar"))
        XCTAssertEqual(HashSlot.slot(of: "foo{{bar}}zap"), HashSlot.slot(of: "{bar"))
        XCTAssertEqual(HashSlot.slot(of: "foo{bar}{zap}"), HashSlot.slot(of: "bar"))
        XCTAssertEqual(HashSlot.slot(of: "foo{bar"), Int(HashSlot.crc16(Array("foo{bar".utf8)) % 16384), "no closing brace: the whole key")
    }
}

final class RESPTests: XCTestCase {
    let decoder = RESPDecoder()

    func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    func testEncodesCommandsAsArraysOfBulkStrings() {
        XCTAssertEqual(RESPEncoder.command(["SET", "k", "v1"]), bytes("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n"))
        var out: [UInt8] = []
        RESPEncoder.command([[0, 13, 10, 255]], into: &out)
        XCTAssertEqual(out, bytes("*1\r\n$4\r\n") + [0, 13, 10, 255] + bytes("\r\n"), "binary-safe")
        // What the encoder writes, the decoder reads back.
        XCTAssertEqual(try decoder.decode(out)?.value, .array([.bulkString([0, 13, 10, 255])]))
    }

    func testDecodesEveryType() throws {
        let reply = bytes("*6\r\n+OK\r\n-MOVED 3999 127.0.0.1:6381\r\n:-42\r\n$5\r\nhe\r\no\r\n$-1\r\n*2\r\n*-1\r\n*0\r\n") + bytes("+next\r\n")
        let r = try XCTUnwrap(try decoder.decode(reply))
        XCTAssertEqual(r.value, .array([.simpleString("OK"), .error("MOVED 3999 127.0.0.1:6381"), .integer(-42),
                                        .bulkString(bytes("he\r\no")), .bulkString(nil), .array([.array(nil), .array([])])]))
        XCTAssertEqual(r.consumed, reply.count - 7, "one value, the next left in the buffer")
        if case .array(let items?) = r.value { XCTAssertEqual(items[1].errorCode, "MOVED") } else { XCTFail() }
    }

    /// Every proper prefix of a reply asks for more bytes and consumes nothing.
    func testPartialRepliesWaitForMore() throws {
        let reply = bytes("*3\r\n$3\r\nabc\r\n:7\r\n*1\r\n+x\r\n")
        for n in 0..<reply.count {
            XCTAssertNil(try decoder.decode(Array(reply.prefix(n))), "prefix of \(n) bytes")
        }
        XCTAssertEqual(try decoder.decode(reply)?.consumed, reply.count)
    }

    /// What a hostile or broken peer may send is refused with a reason, never trusted for an allocation.
    func testHostileRepliesAreRefused() {
        var small = RESPDecoder.Limits()
        small.maxBulkBytes = 1000
        small.maxArrayElements = 10
        small.maxDepth = 3
        small.maxLineBytes = 64
        let d = RESPDecoder(limits: small)
        let cases: [(String, RESPDecoder.Failure)] = [
            ("$1001\r\n", .tooLarge("a bulk string of 1001 bytes (limit 1000)")),
            ("*11\r\n", .tooLarge("an array of 11 elements (limit 10)")),
            ("*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", .tooLarge("arrays nested deeper than 3")),
            ("$-2\r\n", .malformed("bulk length -2")),
            ("*-5\r\n", .malformed("array length -5")),
            (":12a\r\n", .malformed("'12a' is not an integer")),
            (":99999999999999999999999\r\n", .malformed("'99999999999999999999999' is not an integer")),
            ("$3\r\nabcde\r\n", .malformed("bulk string not ended by CRLF")),
            ("+OK\rX", .malformed("CR without LF")),
            ("!3\r\n", .malformed("unknown type byte 0x21")),
            ("+" + String(repeating: "a", count: 100), .tooLarge("a line of more than 64 bytes")),
        ]
        for (text, failure) in cases {
            XCTAssertThrowsError(try d.decode(bytes(text)), text) { XCTAssertEqual($0 as? RESPDecoder.Failure, failure, text) }
        }
        // A huge claimed length that has not arrived does not allocate for it.
        XCTAssertNil(try RESPDecoder().decode(bytes("$60000000\r\nab")))
        XCTAssertNil(try RESPDecoder().decode(bytes("*1000000\r\n:1\r\n")))
    }
}
