// Byte-stuffing and TOP (RFC 1939 §3, §7), fed whole and split at every byte.

import NIOCore
import XCTest
@testable import FacteurPOP3

final class POP3MultilineEncoderTests: XCTestCase {
    private func encode(_ message: String, top: Int? = nil, splitAt: [Int] = []) -> String {
        var encoder = POP3MultilineEncoder(topLines: top)
        var out = ByteBuffer()
        let bytes = Array(message.utf8)
        var start = 0
        for cut in splitAt + [bytes.count] where cut >= start {
            encoder.encode(Array(bytes[start..<cut]), into: &out)
            start = cut
        }
        encoder.finish(into: &out)
        return String(buffer: out)
    }

    func testLinesBeginningWithADotAreStuffed() {
        XCTAssertEqual(encode(".hidden\r\nplain\r\n..two\r\n.\r\n"), "..hidden\r\nplain\r\n...two\r\n..\r\n.\r\n")
        XCTAssertEqual(encode("a.b\r\n"), "a.b\r\n.\r\n", "a dot inside a line is not stuffed")
    }

    func testUnterminatedLastLineGetsCRLF() {
        XCTAssertEqual(encode("Subject: x\r\n\r\nno newline"), "Subject: x\r\n\r\nno newline\r\n.\r\n")
        XCTAssertEqual(encode(""), ".\r\n")
    }

    func testEverySplitGivesTheSameBytes() {
        let message = "From: a\r\n.Subject: dot\r\n\r\n.line1\r\nline2\r\n..\r\n.\r\nend"
        let whole = encode(message)
        let count = message.utf8.count
        for cut in 0...count { XCTAssertEqual(encode(message, splitAt: [cut]), whole, "cut at \(cut)") }
        XCTAssertEqual(encode(message, splitAt: Array(0...count)), whole, "one byte at a time")
        for top in 0...6 {
            let wholeTop = encode(message, top: top)
            for cut in 0...count { XCTAssertEqual(encode(message, top: top, splitAt: [cut]), wholeTop, "TOP \(top) cut \(cut)") }
        }
    }

    func testTopSendsHeaderBlankLineAndNBodyLines() {
        let message = "A: 1\r\nB: 2\r\n\r\nb1\r\n.b2\r\nb3\r\n"
        XCTAssertEqual(encode(message, top: 0), "A: 1\r\nB: 2\r\n\r\n.\r\n")
        XCTAssertEqual(encode(message, top: 2), "A: 1\r\nB: 2\r\n\r\nb1\r\n..b2\r\n.\r\n")
        XCTAssertEqual(encode(message, top: 10), "A: 1\r\nB: 2\r\n\r\nb1\r\n..b2\r\nb3\r\n.\r\n")
        XCTAssertEqual(encode("A: 1\r\n", top: 0), "A: 1\r\n.\r\n", "no body at all: the whole header")
    }
}
