@testable import FacteurIMAP
import XCTest

/// The framer: literals and continuation requests (RFC 9051 §4.3, RFC 7888), limits, and input
/// split at every byte.
final class IMAPFramerTests: XCTestCase {
    /// Feeds `input` in pieces; returns the events, answering continuation requests as a server would.
    func events(_ input: [UInt8], split: Int? = nil, limits: IMAPLimits = IMAPLimits()) -> [IMAPCommandFramer.Event] {
        var framer = IMAPCommandFramer(limits: limits)
        var out: [IMAPCommandFramer.Event] = []
        var chunks: [[UInt8]] = []
        if let split { chunks = [Array(input[..<split]), Array(input[split...])] } else { chunks = input.map { [$0] } }
        for chunk in chunks {
            framer.append(chunk)
            while true {
                let e = framer.next()
                if e == .needMoreData { break }
                out.append(e)
            }
        }
        return out
    }

    func testSynchronisingLiteralAsksForContinuation() {
        let input = Array("A1 LOGIN {5}\r\nalice {2}\r\npw\r\nA2 NOOP\r\n".utf8)
        let expected: [IMAPCommandFramer.Event] = [
            .continuationRequest, .continuationRequest,
            .command(Array("A1 LOGIN {5}\r\nalice {2}\r\npw\r\n".utf8)), .command(Array("A2 NOOP\r\n".utf8)),
        ]
        XCTAssertEqual(events(input), expected)
        for cut in 0 ... input.count {
            XCTAssertEqual(events(input, split: cut), expected, "split at \(cut)")
        }
    }

    func testNonSynchronisingLiteralNeedsNoContinuation() {
        XCTAssertEqual(events(Array("A1 LOGIN {5+}\r\nalice pw\r\n".utf8)), [.command(Array("A1 LOGIN {5+}\r\nalice pw\r\n".utf8))])
    }

    func testHugeLiteralIsRefusedBeforeItIsRead() {
        var limits = IMAPLimits()
        limits.maxLiteralSize = 10
        XCTAssertEqual(events(Array("A1 LOGIN {11}\r\nA2 NOOP\r\n".utf8), limits: limits),
                       [.literalTooLarge(tag: "A1", size: 11), .command(Array("A2 NOOP\r\n".utf8))])
        // APPEND may send a message up to maxMessageSize…
        limits.maxMessageSize = 20
        XCTAssertEqual(events(Array("A1 APPEND INBOX {15}\r\n".utf8), limits: limits), [.continuationRequest])
        // …but not more; a digits-only overflow is "too large", not a crash.
        XCTAssertEqual(events(Array("A1 APPEND INBOX {99999999999999999999999}\r\n".utf8), limits: limits),
                       [.literalTooLarge(tag: "A1", size: UInt64.max)])
    }

    func testOversizeNonSynchronisingLiteralIsDiscarded() {
        var limits = IMAPLimits()
        limits.maxLiteralSize = 4
        XCTAssertEqual(events(Array("A1 LOGIN {6+}\r\nabcdef x\r\nA2 NOOP\r\n".utf8), limits: limits),
                       [.literalTooLarge(tag: "A1", size: 6), .command(Array("A2 NOOP\r\n".utf8))])
        limits.maxDiscardedLiteral = 100
        guard case .fatal = events(Array("A1 LOGIN {1000+}\r\n".utf8), limits: limits).first else { return XCTFail() }
    }

    func testLongLineIsRejectedAndSkipped() {
        var limits = IMAPLimits()
        limits.maxLineLength = 50
        let long = "A1 NOOP " + String(repeating: "x", count: 200) + "\r\nA2 NOOP\r\n"
        XCTAssertEqual(events(Array(long.utf8), limits: limits), [.lineTooLong(tag: "A1"), .command(Array("A2 NOOP\r\n".utf8))])
        XCTAssertEqual(events(Array(long.utf8), split: 100, limits: limits), [.lineTooLong(tag: "A1"), .command(Array("A2 NOOP\r\n".utf8))])
    }

    func testRawLinesForAuthenticateAndIdle() {
        var framer = IMAPCommandFramer()
        framer.append(Array("dGVzdA==\r\nDONE\r\nA3 NOOP\r\n".utf8))
        XCTAssertEqual(framer.nextLine(), .line(Array("dGVzdA==".utf8)))
        XCTAssertEqual(framer.nextLine(), .line(Array("DONE".utf8)))
        XCTAssertEqual(framer.next(), .command(Array("A3 NOOP\r\n".utf8)))
        XCTAssertEqual(framer.nextLine(), .needMoreData)
    }

    func testDiscardBufferedDropsPlaintextAfterSTARTTLS() {
        var framer = IMAPCommandFramer()
        framer.append(Array("A1 STARTTLS\r\nA2 LOGIN a b\r\n".utf8))
        XCTAssertEqual(framer.next(), .command(Array("A1 STARTTLS\r\n".utf8)))
        framer.discardBuffered()
        XCTAssertEqual(framer.next(), .needMoreData)
        XCTAssertEqual(framer.bufferedByteCount, 0)
    }

    /// Random bytes, random splits: the framer and parser never crash, and every command the
    /// framer returns stays within the limits.
    func testSeededFuzz() {
        var rng = SplitMix64(seed: 0xFAC7E0)
        var limits = IMAPLimits()
        limits.maxLineLength = 200
        limits.maxLiteralSize = 100
        limits.maxMessageSize = 300
        limits.maxCommandSize = 2000
        let parser = IMAPParser(limits: limits)
        let alphabet = Array("A1 LOGIN FETCH SEARCH APPEND (){}[]<>+~*%$:,.\"\\\r\n0123456789BODY.PEEK HEADER.FIELDS NOT OR UID".utf8)
        for _ in 0 ..< 300 {
            var framer = IMAPCommandFramer(limits: limits)
            let length = Int(rng.next() % 600)
            var input: [UInt8] = []
            for _ in 0 ..< length {
                let r = rng.next()
                input.append(r % 5 == 0 ? UInt8(truncatingIfNeeded: r >> 8) : alphabet[Int((r >> 8) % UInt64(alphabet.count))])
            }
            var offset = 0
            while offset < input.count {
                let n = min(input.count - offset, 1 + Int(rng.next() % 40))
                framer.append(input[offset ..< offset + n])
                offset += n
                loop: while true {
                    switch framer.next() {
                    case .needMoreData, .fatal: break loop
                    case .command(let bytes):
                        XCTAssertLessThanOrEqual(bytes.count, limits.maxCommandSize + limits.maxLineLength + 4)
                        _ = parser.parse(bytes)
                    default: continue
                    }
                }
            }
        }
    }
}

/// A small deterministic generator, so that a fuzz failure can be replayed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
