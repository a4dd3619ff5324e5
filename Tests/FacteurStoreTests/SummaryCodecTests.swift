// The summary's stored form: round trips, a guard against fields added to the summary types
// but not to the codec, and refusal of corrupt input without crashing.

import FacteurMIME
@testable import FacteurStore
import Foundation
import XCTest

final class SummaryCodecTests: XCTestCase {
    static func sampleSummary() -> MessageSummary {
        let alice = EnvelopeAddress(name: "Alice Ëxample", mailbox: "alice", host: "example.org")
        let group = [EnvelopeAddress(mailbox: "team"), alice, EnvelopeAddress()]
        let envelope = Envelope(date: "Mon, 1 Jan 2026 10:00:00 +0000", subject: "=?utf-8?q?H=C3=A9llo?=", from: [alice],
                                sender: [alice], replyTo: [alice], to: group, cc: [alice], bcc: [alice],
                                inReplyTo: "<parent@example.org>", messageID: "<abc@example.org>")
        let text = BodyPart(parameters: [MIMEParameter(name: "charset", value: "utf-8")], id: "<part1@x>", description: "the text",
                            encoding: "quoted-printable", md5: "Q2hlY2sgSW50ZWdyaXR5IQ==", language: ["fr", "en"],
                            location: "http://example.org/", headerOffset: 500, headerLength: 80, bodyOffset: 580,
                            bodyLength: 4000, lines: 80)
        let inner = BodyPart(type: "message", subtype: "rfc822", headerOffset: 4600, headerLength: 60, bodyOffset: 4660,
                             bodyLength: 300, lines: 9, children: [BodyPart(language: [], bodyLength: 100)],
                             encapsulatedEnvelope: envelope)
        let root = BodyPart(type: "multipart", subtype: "mixed", parameters: [MIMEParameter(name: "boundary", value: "--=_b")],
                            disposition: ContentDisposition(type: "inline", parameters: [MIMEParameter(name: "x", value: "")]),
                            headerOffset: 0, headerLength: 500, bodyOffset: 500, bodyLength: Int.max, lines: -1,
                            children: [text, inner])
        return MessageSummary(envelope: envelope, body: root, defects: ["missing MIME-Version", ""])
    }

    func testRoundTrip() throws {
        let summary = Self.sampleSummary()
        let encoded = SummaryCodec.encode(summary)
        XCTAssertEqual(try SummaryCodec.decode(encoded), summary)
        XCTAssertLessThan(encoded.count, try JSONEncoder().encode(summary).count / 2)
        let empty = MessageSummary(envelope: Envelope(), body: BodyPart())
        XCTAssertEqual(try SummaryCodec.decode(SummaryCodec.encode(empty)), empty)
    }

    /// The codec writes fields by hand: if a summary type gains a stored property, this test
    /// fails until SummaryCodec learns it (and its format version goes up).
    func testCodecCoversEveryStoredProperty() {
        func fields(_ value: Any) -> Int { Mirror(reflecting: value).children.count }
        // A summary keeps its fields in one shared box: count the box's.
        let summary = MessageSummary(envelope: Envelope(), body: BodyPart())
        XCTAssertEqual(fields(summary), 1)
        XCTAssertEqual(Mirror(reflecting: summary).children.first.map { fields($0.value) }, 3)
        XCTAssertEqual(fields(Envelope()), 10)
        XCTAssertEqual(fields(EnvelopeAddress()), 4)
        XCTAssertEqual(fields(MIMEParameter(name: "", value: "")), 2)
        XCTAssertEqual(fields(ContentDisposition(type: "")), 2)
        XCTAssertEqual(fields(BodyPart()), 17)
    }

    func testCorruptInputThrowsAndNeverCrashes() throws {
        let encoded = SummaryCodec.encode(Self.sampleSummary())
        for length in 0 ..< encoded.count {
            XCTAssertThrowsError(try SummaryCodec.decode(Array(encoded.prefix(length))), "truncated at \(length)")
        }
        XCTAssertThrowsError(try SummaryCodec.decode(encoded + [0]), "trailing byte")
        for index in 0 ..< encoded.count {
            for value: UInt8 in [0x00, 0x01, 0x7F, 0x80, 0xFF] {
                var corrupt = encoded
                corrupt[index] = value
                _ = try? SummaryCodec.decode(corrupt)
            }
        }
        // A varint that never ends, and children nested beyond the cap.
        XCTAssertThrowsError(try SummaryCodec.decode([SummaryCodec.formatVersion] + Array(repeating: 0xFF, count: 20)))
        var deep = SummaryCodec.Writer()
        deep.out.append(SummaryCodec.formatVersion)
        deep.envelope(Envelope())
        var part = BodyPart()
        for _ in 0 ..< SummaryCodec.maxDepth + 1 { part = BodyPart(children: [part]) }
        deep.part(part)
        deep.strings([])
        XCTAssertThrowsError(try SummaryCodec.decode(deep.out))
    }
}
