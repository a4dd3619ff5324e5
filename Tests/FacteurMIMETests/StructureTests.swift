// MessageSummary(parsing:): offsets, lengths and lines of every part (RFC 3501 §7.4.2 BODYSTRUCTURE),
// the RFC 2045/2046 defaults, the envelope, and the limits.

import FacteurMIME
import Foundation
import XCTest

final class StructureTests: XCTestCase {
    static let nested = """
        From: Alice <alice@example.com>\r
        To: Bob <bob@example.net>, team: carol@example.org;\r
        Subject: Nested\r
        Date: Mon, 2 Jan 2006 15:04:05 -0700\r
        Message-ID: <outer@example.com>\r
        MIME-Version: 1.0\r
        Content-Type: multipart/mixed; boundary="outer"\r
        \r
        preamble\r
        --outer\r
        Content-Type: text/plain; charset=utf-8\r
        \r
        Hello\r
        world\r
        --outer\r
        Content-Type: message/rfc822\r
        Content-Disposition: attachment; filename="fwd.eml"\r
        \r
        From: Carol <carol@example.org>\r
        Subject: =?utf-8?Q?Inner_caf=C3=A9?=\r
        Content-Type: multipart/alternative; boundary=inner\r
        \r
        --inner\r
        \r
        plain text\r
        --inner\r
        Content-Type: text/html\r
        Content-Transfer-Encoding: quoted-printable\r
        \r
        <p>hi</p>\r
        --inner--\r
        --outer--\r
        epilogue\r

        """

    /// headerOffset, headerLength, bodyOffset, bodyLength, lines.
    func geometry(_ p: BodyPart) -> [Int] { [p.headerOffset, p.headerLength, p.bodyOffset, p.bodyLength, p.lines] }

    func testNestedMultipartWithMessageInside() throws {
        let bytes = Array(Self.nested.utf8)
        XCTAssertEqual(bytes.count, 687)
        let s = MessageSummary(parsing: bytes)
        XCTAssertEqual(s.defects, [])
        let root = s.body
        XCTAssertEqual(root.mimeType, "multipart/mixed")
        XCTAssertEqual(geometry(root), [0, 244, 244, 443, 25])
        XCTAssertEqual(root.children.count, 2)

        let text = root.children[0]
        XCTAssertEqual(text.mimeType, "text/plain")
        XCTAssertEqual(text.parameters, [MIMEParameter(name: "charset", value: "utf-8")])
        // "Hello\r\nworld": the CRLF before "--outer" belongs to the delimiter (RFC 2046 §5.1.1).
        XCTAssertEqual(geometry(text), [263, 43, 306, 12, 2])
        XCTAssertEqual(Array(bytes[306..<318]), Array("Hello\r\nworld".utf8))

        let message = root.children[1]
        XCTAssertEqual(message.mimeType, "message/rfc822")
        XCTAssertEqual(message.disposition, ContentDisposition(type: "attachment", parameters: [MIMEParameter(name: "filename", value: "fwd.eml")]))
        XCTAssertEqual(geometry(message), [329, 85, 414, 250, 13])
        XCTAssertEqual(message.encapsulatedEnvelope?.subject, "=?utf-8?Q?Inner_caf=C3=A9?=")
        XCTAssertEqual(message.encapsulatedEnvelope?.from, [EnvelopeAddress(name: "Carol", mailbox: "carol", host: "example.org")])
        XCTAssertEqual(message.children.count, 1)

        let inner = message.children[0]
        XCTAssertEqual(inner.mimeType, "multipart/alternative")
        XCTAssertEqual(geometry(inner), [414, 126, 540, 124, 9])
        XCTAssertEqual(inner.children.count, 2)
        // No header at all, just the blank line: text/plain; charset=us-ascii, 7BIT (RFC 2045 §5.2, §6.1).
        XCTAssertEqual(geometry(inner.children[0]), [549, 2, 551, 10, 1])
        XCTAssertEqual(inner.children[0].mimeType, "text/plain")
        XCTAssertEqual(inner.children[0].parameters, [MIMEParameter(name: "charset", value: "us-ascii")])
        XCTAssertEqual(inner.children[0].encoding, "7BIT")
        XCTAssertEqual(geometry(inner.children[1]), [572, 72, 644, 9, 1])
        XCTAssertEqual(inner.children[1].encoding, "quoted-printable")
        // text/html with no parameter at all gets the RFC 2046 §4.1.2 default written out.
        XCTAssertEqual(inner.children[1].parameters, [MIMEParameter(name: "charset", value: "us-ascii")])

        XCTAssertEqual(s.envelope.subject, "Nested")
        XCTAssertEqual(s.envelope.date, "Mon, 2 Jan 2006 15:04:05 -0700")
        XCTAssertEqual(s.envelope.messageID, "<outer@example.com>")
        XCTAssertEqual(s.envelope.from, [EnvelopeAddress(name: "Alice", mailbox: "alice", host: "example.com")])
        // RFC 3501 §7.4.2: absent Sender and Reply-To take the value of From.
        XCTAssertEqual(s.envelope.sender, s.envelope.from)
        XCTAssertEqual(s.envelope.replyTo, s.envelope.from)
        XCTAssertEqual(s.envelope.to, [
            EnvelopeAddress(name: "Bob", mailbox: "bob", host: "example.net"),
            EnvelopeAddress(mailbox: "team"), EnvelopeAddress(mailbox: "carol", host: "example.org"), EnvelopeAddress(),
        ])
        XCTAssertEqual(s.envelope.cc, [])
        XCTAssertNil(s.envelope.inReplyTo)
    }

    func testSameMessageWithBareLineFeeds() {
        let lf = Self.nested.replacingOccurrences(of: "\r\n", with: "\n")
        let s = MessageSummary(parsing: Array(lf.utf8))
        XCTAssertEqual(geometry(s.body), [0, 236, 236, 418, 25])
        XCTAssertEqual(geometry(s.body.children[0]), [253, 41, 294, 11, 2])
        XCTAssertEqual(geometry(s.body.children[1].children[0].children[1]), [546, 69, 615, 9, 1])
        XCTAssertEqual(CorpusTests.shape(s.body), CorpusTests.shape(MessageSummary(parsing: Array(Self.nested.utf8)).body))
    }

    func testCodableRoundTrip() throws {
        let s = MessageSummary(parsing: Array(Self.nested.utf8))
        let back = try JSONDecoder().decode(MessageSummary.self, from: JSONEncoder().encode(s))
        XCTAssertEqual(back, s)
    }

    /// Dovecot's message-parser tests use these inputs (they are in the corpus); our numbers are theirs.
    func testDovecotBoundaryCases() throws {
        // test_message_parser_truncated_mime_headers: headers cut by delimiters lose the line break before them.
        var s = MessageSummary(parsing: try Fixtures.corpusFile("mail-parser/malformed/000.eml"))
        XCTAssertEqual(geometry(s.body), [0, 48, 48, 112, 8])
        XCTAssertEqual(s.body.children.map(geometry), [[55, 0, 55, 0, 0], [62, 24, 86, 0, 0], [94, 24, 118, 0, 0], [127, 23, 150, 0, 0]])
        // test_message_parser_truncated_mime_headers2: the blank line before a delimiter belongs to it.
        s = MessageSummary(parsing: try Fixtures.corpusFile("mail-parser/malformed/001.eml"))
        XCTAssertEqual(geometry(s.body), [0, 46, 46, 86, 8])
        XCTAssertEqual(s.body.children.map(geometry), [[51, 44, 95, 0, 0], [101, 26, 127, 5, 2]])
        // test_message_parser_duplicate_mime_boundary: the innermost multipart owns a reused boundary.
        s = MessageSummary(parsing: try Fixtures.corpusFile("mail-parser/malformed/003.eml"))
        XCTAssertEqual(geometry(s.body), [0, 45, 45, 84, 7])
        XCTAssertEqual(geometry(s.body.children[0]), [49, 45, 94, 35, 4])
        XCTAssertEqual(geometry(s.body.children[0].children[0]), [98, 26, 124, 5, 1])
        // test_message_parser_garbage_suffix_mime_boundary: "--ab" delimits boundary "a".
        s = MessageSummary(parsing: try Fixtures.corpusFile("mail-parser/malformed/004.eml"))
        XCTAssertEqual(geometry(s.body.children[0]), [50, 45, 95, 36, 4])
        XCTAssertEqual(geometry(s.body.children[0].children[0]), [100, 26, 126, 5, 1])
        // test_message_parser_continuing_truncated_mime_boundary.
        s = MessageSummary(parsing: try Fixtures.corpusFile("mail-parser/malformed/007.eml"))
        XCTAssertEqual(geometry(s.body), [0, 45, 45, 112, 9])
        XCTAssertEqual(s.body.children.map(geometry), [[49, 62, 111, 0, 0], [117, 25, 142, 0, 0], [150, 0, 150, 0, 0]])
        XCTAssertEqual(s.body.children[0].children, [])
    }

    func testEmptyAndHeaderOnlyMessages() {
        let empty = MessageSummary(parsing: [UInt8]())
        XCTAssertEqual(geometry(empty.body), [0, 0, 0, 0, 0])
        XCTAssertEqual(empty.body.mimeType, "text/plain")
        XCTAssertEqual(empty.envelope, Envelope())
        let headerOnly = MessageSummary(parsing: Array("Subject: x\r\n".utf8))
        XCTAssertEqual(geometry(headerOnly.body), [0, 12, 12, 0, 0])
        XCTAssertEqual(headerOnly.envelope.subject, "x")
        let unterminated = MessageSummary(parsing: Array("Subject: x\r\n\r\nline one\r\nline two".utf8))
        XCTAssertEqual(geometry(unterminated.body), [0, 14, 14, 18, 2])
    }

    func testContentFields() {
        let text = """
            Content-Type: application/pdf; name="=?utf-8?Q?r=C3=A9sum=C3=A9.pdf?="\r
            Content-Transfer-Encoding: BASE64 (binary data)\r
            Content-ID: <part1@example.com>\r
            Content-Description: A file\r
            Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r
            Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf; size=3\r
            Content-Language: en, fr (French)\r
            Content-Location: http://example.com/a.pdf\r
            \r
            QUJD\r

            """
        let p = MessageSummary(parsing: Array(text.utf8)).body
        XCTAssertEqual(p.mimeType, "application/pdf")
        XCTAssertEqual(p.parameters, [MIMEParameter(name: "name", value: "=?utf-8?Q?r=C3=A9sum=C3=A9.pdf?=")])
        XCTAssertEqual(p.encoding, "BASE64")
        XCTAssertEqual(p.id, "<part1@example.com>")
        XCTAssertEqual(p.description, "A file")
        XCTAssertEqual(p.md5, "Q2hlY2sgSW50ZWdyaXR5IQ==")
        // Kept as written, as IMAP reports them (RFC 9051 §7.5.2); decoded on request.
        XCTAssertEqual(p.disposition, ContentDisposition(type: "attachment", parameters: [
            MIMEParameter(name: "filename*", value: "utf-8''r%C3%A9sum%C3%A9.pdf"), MIMEParameter(name: "size", value: "3")]))
        XCTAssertEqual(p.disposition?.decodedParameter("filename"), "résumé.pdf")
        XCTAssertEqual(p.fileName, "résumé.pdf")
        // RFC 2231 §3 continuations are joined, still encoded, under `name*` (Dovecot's form).
        let continued = MessageSummary(parsing: Array(
            "Content-Type: text/plain; name*1*=t%C3%A9.txt; name*0*=utf-8''%C3%A9; format=flowed\r\n\r\nx\r\n".utf8)).body
        XCTAssertEqual(continued.parameters, [MIMEParameter(name: "name*", value: "utf-8''%C3%A9t%C3%A9.txt"),
                                              MIMEParameter(name: "format", value: "flowed"),
                                              MIMEParameter(name: "charset", value: "us-ascii")])
        XCTAssertEqual(continued.fileName, "été.txt")
        XCTAssertEqual(p.language, ["en", "fr"])
        XCTAssertEqual(p.location, "http://example.com/a.pdf")
        XCTAssertEqual(p.fileName, "résumé.pdf")
        XCTAssertEqual(TransferDecoding.decode(Array(text.utf8)[p.bodyOffset..<(p.bodyOffset + p.bodyLength)], encoding: p.encoding),
                       Array("ABC".utf8))
    }

    func testDefaultsAndBrokenContentType() {
        // RFC 2046 §5.1.5: parts of a digest default to message/rfc822.
        let digest = """
            Content-Type: multipart/digest; boundary=d\r
            \r
            --d\r
            \r
            Subject: one\r
            \r
            first\r
            --d\r
            Content-Type: text/plain\r
            \r
            second\r
            --d--\r

            """
        let s = MessageSummary(parsing: Array(digest.utf8))
        XCTAssertEqual(s.body.children.map(\.mimeType), ["message/rfc822", "text/plain"])
        XCTAssertEqual(s.body.children[0].parameters, [])
        XCTAssertEqual(s.body.children[0].encapsulatedEnvelope?.subject, "one")
        XCTAssertEqual(s.body.children[0].children.first?.mimeType, "text/plain")
        // RFC 2045 §5.2: a Content-Type that cannot be read means text/plain; charset=us-ascii.
        let broken = MessageSummary(parsing: Array("Content-Type: garbage\r\n\r\nx".utf8))
        XCTAssertEqual(broken.body.mimeType, "text/plain")
        XCTAssertEqual(broken.body.parameters, [MIMEParameter(name: "charset", value: "us-ascii")])
        XCTAssertFalse(broken.defects.isEmpty)
        // A multipart without a boundary is kept as such, with no children.
        let noBoundary = MessageSummary(parsing: Array("Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\nhi\r\n".utf8))
        XCTAssertEqual(noBoundary.body.mimeType, "multipart/mixed")
        XCTAssertEqual(noBoundary.body.children, [])
        XCTAssertEqual(noBoundary.body.bodyLength, 11)
        // The first Content-Type wins; an empty Content-Transfer-Encoding means 7BIT.
        let twice = MessageSummary(parsing: Array("Content-Type: text/html\r\nContent-Type: image/png\r\nContent-Transfer-Encoding:\r\n\r\n".utf8))
        XCTAssertEqual(twice.body.mimeType, "text/html")
        XCTAssertEqual(twice.body.encoding, "7BIT")
        // `8 bit` is no mechanism: the field is invalid and the default applies (Dovecot agrees), not "8".
        let spaced = MessageSummary(parsing: Array("Content-Transfer-Encoding: 8 bit\r\n\r\nx\r\n".utf8))
        XCTAssertEqual(spaced.body.encoding, "7BIT")
    }

    /// RFC 6532 §3.7: message/global encapsulates a message as message/rfc822 does; other message/* do not.
    func testMessageGlobalAndOtherMessageTypes() {
        let global = MessageSummary(parsing: Array("Content-Type: Message/Global\r\n\r\nSubject: héllo\r\n\r\nbody\r\n".utf8))
        XCTAssertTrue(global.body.isEncapsulatedMessage)
        XCTAssertEqual(global.body.children.count, 1)
        XCTAssertEqual(global.body.encapsulatedEnvelope?.subject, "héllo")
        XCTAssertEqual(geometry(global.body.children[0]), [32, 19, 51, 6, 1])
        let status = MessageSummary(parsing: Array("Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n".utf8))
        XCTAssertFalse(status.body.isEncapsulatedMessage)
        XCTAssertEqual(status.body.children, [])
        XCTAssertNil(status.body.encapsulatedEnvelope)
    }

    func testEnvelopeFields() {
        let text = """
            Date: Tue, 1 Jul 2003 10:52:37 +0200\r
            Subject: =?utf-8?Q?caf=C3=A9?=\r
             folded\r
            From: "Joe" <joe@example.com>\r
            Sender: Secretary <sec@example.com>\r
            Reply-To: \r
            To: a@example.com\r
            Cc: b@example.com\r
            Bcc: c@example.com\r
            In-Reply-To: <parent@example.com>\r
            Message-ID: <id@example.com>\r
            Subject: second subject is ignored\r
            \r

            """
        let e = MessageSummary(parsing: Array(text.utf8)).envelope
        XCTAssertEqual(e.date, "Tue, 1 Jul 2003 10:52:37 +0200")
        XCTAssertEqual(e.subject, "=?utf-8?Q?caf=C3=A9?= folded")
        XCTAssertEqual(e.from, [EnvelopeAddress(name: "Joe", mailbox: "joe", host: "example.com")])
        XCTAssertEqual(e.sender, [EnvelopeAddress(name: "Secretary", mailbox: "sec", host: "example.com")])
        XCTAssertEqual(e.replyTo, e.from)  // present but empty: From (RFC 3501 §7.4.2)
        XCTAssertEqual(e.to.map(\.mailbox), ["a"])
        XCTAssertEqual(e.cc.map(\.mailbox), ["b"])
        XCTAssertEqual(e.bcc.map(\.mailbox), ["c"])
        XCTAssertEqual(e.inReplyTo, "<parent@example.com>")
        XCTAssertEqual(e.messageID, "<id@example.com>")
        XCTAssertEqual(Envelope(header: MessageHeader(parsing: Array(text.utf8))), e)
    }

    func testBase64MessageRFC822IsParsedAsStoredWithADefect() throws {
        let s = MessageSummary(parsing: try Fixtures.corpusFile("mail-parser/rfc/008.eml"))
        XCTAssertEqual(s.body.children[1].mimeType, "message/rfc822")
        XCTAssertEqual(s.body.children[1].children.count, 1)
        XCTAssertTrue(s.defects.contains { $0.contains("base64") })
    }

    func testNestingDepthIsCapped() {
        var text = ""
        for i in 0..<100 { text += "Content-Type: multipart/mixed; boundary=b\(i)\r\n\r\n--b\(i)\r\n" }
        text += "\r\ninnermost\r\n"
        let s = MessageSummary(parsing: Array(text.utf8))
        var depth = 0
        var p = s.body
        while let c = p.children.first { p = c; depth += 1 }
        XCTAssertEqual(depth, MIMELimits.maxNestingDepth)
        XCTAssertEqual(p.mimeType, "multipart/mixed")
        XCTAssertTrue(s.defects.contains { $0.contains("nested deeper") })

        var messages = ""
        for _ in 0..<100 { messages += "Content-Type: message/rfc822\r\n\r\n" }
        let m = MessageSummary(parsing: Array((messages + "body").utf8))
        depth = 0
        p = m.body
        while let c = p.children.first { p = c; depth += 1 }
        XCTAssertEqual(depth, MIMELimits.maxNestingDepth)
    }

    func testPartCountIsCapped() {
        var text = "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        for _ in 0..<(MIMELimits.maxParts + 100) { text += "--b\r\n\r\nx\r\n" }
        text += "--b--\r\n"
        let s = MessageSummary(parsing: Array(text.utf8))
        XCTAssertEqual(s.body.children.count, MIMELimits.maxParts - 1)  // the root counts as a part
        XCTAssertEqual(s.body.bodyOffset + s.body.bodyLength, text.utf8.count)
        XCTAssertTrue(s.defects.contains { $0.contains("body parts") })
        XCTAssertLessThanOrEqual(s.defects.count, MIMELimits.maxDefects)
    }

    func testSliceOffsetsAreRelativeToTheSlice() {
        let prefix = Array("GARBAGE".utf8)
        let bytes = prefix + Array(Self.nested.utf8)
        let s = MessageSummary(parsing: bytes[prefix.count...])
        XCTAssertEqual(s, MessageSummary(parsing: Array(Self.nested.utf8)))
    }
}
