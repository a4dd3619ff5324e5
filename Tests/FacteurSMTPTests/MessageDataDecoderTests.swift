@testable import FacteurSMTP
import FacteurStore
import NIOCore
import XCTest

final class MessageDataDecoderTests: XCTestCase {
    /// Decodes `input` fed in pieces of `split` bytes; returns (stored bytes, finished, leftover).
    private func decode(_ input: String, dotStuffed: Bool = true, split: Int = .max, maxSize: Int = 1 << 20,
                        maxLine: Int = 1000) -> (String, Bool, String, MessageDataDecoder) {
        let spool = MessageSpool(maxSize: maxSize, memoryLimit: 1 << 20, directory: NSTemporaryDirectory())
        var decoder = MessageDataDecoder(dotStuffed: dotStuffed, maxLineLength: maxLine)
        let bytes = Array(input.utf8)
        var offset = 0
        var finished = false
        var leftover = ByteBuffer()
        while offset < bytes.count {
            let end = min(bytes.count, offset + split)
            var buffer = ByteBuffer(bytes: bytes[offset..<end])
            if !finished {
                finished = decoder.decode(&buffer, into: spool)
            }
            leftover.writeBuffer(&buffer)
            offset = end
        }
        guard case .memory(let stored)? = spool.finish() else { XCTFail("spool failed"); return ("", finished, "", decoder) }
        return (String(decoding: stored, as: UTF8.self), finished, String(buffer: leftover), decoder)
    }

    func testEndOfDataAndDotUnstuffingAtEverySplit() {
        let input = "Subject: x\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n"
        for split in 1...input.utf8.count {
            let (stored, finished, leftover, _) = decode(input, split: split)
            XCTAssertTrue(finished, "split \(split)")
            XCTAssertEqual(stored, "Subject: x\r\n\r\n.leading dot\r\n", "split \(split)")
            XCTAssertEqual(leftover, "QUIT\r\n", "split \(split)")
        }
    }

    func testEmptyMessage() {
        let (stored, finished, _, _) = decode(".\r\n")
        XCTAssertTrue(finished)
        XCTAssertEqual(stored, "")
    }

    func testSmugglingSequencesNeverEndData() {
        // <LF>.<CR><LF> and <LF>.<LF> and <CR>.<CR><LF> must not end the message.
        for trick in ["a\n.\r\nMAIL FROM:<evil@example>\r\n", "a\n.\nMAIL FROM:<evil@example>\r\n", "a\r.\r\nMAIL FROM:<evil@example>\r\n"] {
            for split in [1, 2, 3, 1000] {
                let (stored, finished, _, _) = decode(trick + "\r\n.\r\n", split: split)
                XCTAssertTrue(finished)
                XCTAssertTrue(stored.contains("MAIL FROM:<evil@example>"), "smuggled command stays inside the message: \(trick.debugDescription)")
                XCTAssertFalse(stored.contains("\n\n") || stored.replacingOccurrences(of: "\r\n", with: "").contains("\n") || stored.replacingOccurrences(of: "\r\n", with: "").contains("\r"),
                               "only CRLF line endings are stored")
            }
        }
    }

    func testBareLineEndingsAreNormalised() {
        let (stored, finished, _, _) = decode("a\nb\rc\r\n\r\n.\r\n")
        XCTAssertTrue(finished)
        XCTAssertEqual(stored, "a\r\nb\r\nc\r\n\r\n")
    }

    func testNULAndLongLinesAreNoted() {
        let (_, _, _, withNUL) = decode("a\u{0}b\r\n.\r\n")
        XCTAssertTrue(withNUL.containsNUL)
        let (_, finished, _, long) = decode(String(repeating: "x", count: 1001) + "\r\n.\r\n", maxLine: 1000)
        XCTAssertTrue(finished)
        XCTAssertTrue(long.lineTooLong)
        let (_, _, _, fine) = decode(String(repeating: "x", count: 1000) + "\r\n.\r\n", maxLine: 1000)
        XCTAssertFalse(fine.lineTooLong)
    }

    func testOversizeIsCountedNotKept() {
        let spool = MessageSpool(maxSize: 10, memoryLimit: 1 << 20, directory: NSTemporaryDirectory())
        var decoder = MessageDataDecoder(dotStuffed: true, maxLineLength: 1000)
        var buffer = ByteBuffer(string: String(repeating: "y", count: 100) + "\r\n.\r\n")
        XCTAssertTrue(decoder.decode(&buffer, into: spool))
        XCTAssertTrue(spool.exceededMaximumSize)
        XCTAssertEqual(spool.size, 102)
        XCTAssertNil(spool.finish())
    }

    func testChunksAreNotDotProcessed() {
        let spool = MessageSpool(maxSize: 1 << 20, memoryLimit: 1 << 20, directory: NSTemporaryDirectory())
        var decoder = MessageDataDecoder(dotStuffed: false, maxLineLength: 1000)
        var buffer = ByteBuffer(string: ".\r\n..x\r\nrest-after-limit")
        XCTAssertFalse(decoder.decode(&buffer, limit: 8, into: spool))
        XCTAssertEqual(String(buffer: buffer), "rest-after-limit")
        var last = ByteBuffer(string: "end\r")
        _ = decoder.decode(&last, into: spool)
        decoder.finishChunks(into: spool)
        guard case .memory(let stored)? = spool.finish() else { return XCTFail("spool failed") }
        XCTAssertEqual(String(decoding: stored, as: UTF8.self), ".\r\n..x\r\nend\r\n")
    }

    func testLargeMessagesSpillToAFileThatIsRemovedWhenDiscarded() throws {
        let directory = NSTemporaryDirectory() + "spooltest-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let spool = MessageSpool(maxSize: 1 << 20, memoryLimit: 100, directory: directory)
        var decoder = MessageDataDecoder(dotStuffed: true, maxLineLength: 1000)
        var buffer = ByteBuffer(string: String(repeating: "line of text\r\n", count: 50))
        _ = decoder.decode(&buffer, into: spool)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory).count, 1)
        spool.discard()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory).count, 0, "nothing left behind")

        let kept = MessageSpool(maxSize: 1 << 20, memoryLimit: 100, directory: directory)
        var again = ByteBuffer(string: String(repeating: "line of text\r\n", count: 50) + ".\r\n")
        var decoder2 = MessageDataDecoder(dotStuffed: true, maxLineLength: 1000)
        XCTAssertTrue(decoder2.decode(&again, into: kept))
        guard case .file(let path, let size)? = kept.finish() else { return XCTFail("expected a spool file") }
        XCTAssertEqual(size, 700)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)).count, 700)
    }
}
