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

    /// RFC 1939 §3 stated directly, one line at a time: the reference the chunked encoder must match.
    private func reference(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var atLineStart = true
        for byte in bytes {
            if atLineStart, byte == UInt8(ascii: ".") { out.append(byte) }
            out.append(byte)
            atLineStart = byte == UInt8(ascii: "\n")
        }
        if !atLineStart { out += Array("\r\n".utf8) }
        return out + Array(".\r\n".utf8)
    }

    func testRETRMatchesTheReferenceOnRandomMessagesAndSplits() {
        // Dots, CR, LF and letters in every arrangement: runs of dotted lines, a dot as the last
        // byte of a chunk, an LF as the last byte of a chunk, no final newline.
        var generator = SeededGenerator(seed: 7)
        let alphabet = Array(".\r\nab".utf8)
        for round in 0..<500 {
            let length = Int.random(in: 0...300, using: &generator)
            let bytes = (0..<length).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] }
            var cuts = (0..<Int.random(in: 0...6, using: &generator)).map { _ in Int.random(in: 0...length, using: &generator) }
            cuts.sort()
            var encoder = POP3MultilineEncoder()
            var out = ByteBuffer()
            var start = 0
            for cut in cuts + [length] {
                encoder.encode(Array(bytes[start..<cut]), into: &out)
                start = cut
            }
            encoder.finish(into: &out)
            XCTAssertEqual(Array(out.readableBytesView), reference(bytes), "round \(round): \(bytes) cut at \(cuts)")
        }
    }

    func testRETROfALongMessageWithoutDottedLinesIsUnchanged() {
        let message = Array(String(repeating: "0123456789 line of text\r\n", count: 400).utf8)
        var encoder = POP3MultilineEncoder()
        var out = ByteBuffer()
        encoder.encode(message, into: &out)
        encoder.finish(into: &out)
        XCTAssertEqual(Array(out.readableBytesView), message + Array(".\r\n".utf8))
    }
}
