import FacteurMIME
@testable import FacteurIMAP
import XCTest

/// The encoder: quoting, literals, NIL, ENVELOPE, BODYSTRUCTURE (RFC 9051 §7.5.2 examples).
final class IMAPResponseWriterTests: XCTestCase {
    func text(_ build: (inout IMAPResponseWriter) -> Void, utf8: Bool = false) -> String {
        var w = IMAPResponseWriter(utf8Accepted: utf8)
        build(&w)
        return String(decoding: w.bytes, as: UTF8.self)
    }

    func testQuotedLiteralAndNil() {
        XCTAssertEqual(text { $0.string("hello world") }, "\"hello world\"")
        XCTAssertEqual(text { $0.string("a\"b\\c") }, "\"a\\\"b\\\\c\"")
        XCTAssertEqual(text { $0.string("two\r\nlines") }, "{10}\r\ntwo\r\nlines")
        XCTAssertEqual(text { $0.string("café") }, "{5}\r\ncafé")
        XCTAssertEqual(text({ $0.string("café") }, utf8: true), "\"café\"")
        XCTAssertEqual(text { $0.nstring(nil) }, "NIL")
        XCTAssertEqual(text { $0.astring(Array("INBOX".utf8)) }, "INBOX")
        XCTAssertEqual(text { $0.astring(Array("Sent Items".utf8)) }, "\"Sent Items\"")
    }

    func testEnvelopeFromRFC9051Example() {
        let from = EnvelopeAddress(name: "Terry Gray", mailbox: "gray", host: "cac.washington.edu")
        let envelope = Envelope(date: "Wed, 17 Jul 1996 02:23:25 -0700 (PDT)", subject: "IMAP4rev2 WG mtg summary and minutes",
                                from: [from], sender: [from], replyTo: [from],
                                to: [EnvelopeAddress(mailbox: "imap", host: "cac.washington.edu")],
                                cc: [EnvelopeAddress(mailbox: "minutes", host: "CNRI.Reston.VA.US"),
                                     EnvelopeAddress(name: "John Klensin", mailbox: "KLENSIN", host: "MIT.EDU")],
                                messageID: "<B27397-0100000@cac.washington.edu>")
        XCTAssertEqual(text { $0.envelope(envelope) },
                       "(\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \"IMAP4rev2 WG mtg summary and minutes\" "
                       + "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
                       + "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ((NIL NIL \"imap\" \"cac.washington.edu\")) "
                       + "((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")(\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) NIL NIL "
                       + "\"<B27397-0100000@cac.washington.edu>\")")
    }

    func testBodyStructureOfTextAndMultipart() {
        let plain = BodyPart(type: "TEXT", subtype: "PLAIN", parameters: [MIMEParameter(name: "CHARSET", value: "US-ASCII")],
                             encoding: "7BIT", bodyLength: 3028, lines: 92)
        XCTAssertEqual(text { $0.bodyStructure(plain, extensible: false) },
                       "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3028 92)")
        XCTAssertEqual(text { $0.bodyStructure(plain, extensible: true) },
                       "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3028 92 NIL NIL NIL NIL)")
        let attachment = BodyPart(type: "application", subtype: "pdf", encoding: "base64",
                                  disposition: ContentDisposition(type: "attachment", parameters: [MIMEParameter(name: "filename", value: "a.pdf")]),
                                  bodyLength: 100)
        let mixed = BodyPart(type: "multipart", subtype: "mixed", parameters: [MIMEParameter(name: "boundary", value: "x")],
                             children: [plain, attachment])
        XCTAssertEqual(text { $0.bodyStructure(mixed, extensible: true) },
                       "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3028 92 NIL NIL NIL NIL)"
                       + "(\"application\" \"pdf\" NIL NIL NIL \"base64\" 100 NIL (\"attachment\" (\"filename\" \"a.pdf\")) NIL NIL) "
                       + "\"mixed\" (\"boundary\" \"x\") NIL NIL NIL)")
        XCTAssertEqual(text { $0.bodyStructure(BodyPart(type: "multipart", subtype: "mixed"), extensible: false) },
                       "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 0 0) \"mixed\")")
    }

    func testBodyStructureOfEncapsulatedMessage() {
        let inner = BodyPart(bodyLength: 5, lines: 1)
        let rfc822 = BodyPart(type: "message", subtype: "rfc822", bodyLength: 40, lines: 3, children: [inner],
                              encapsulatedEnvelope: Envelope(subject: "inner"))
        XCTAssertEqual(text { $0.bodyStructure(rfc822, extensible: false) },
                       "(\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" 40 (NIL \"inner\" NIL NIL NIL NIL NIL NIL NIL NIL) "
                       + "(\"text\" \"plain\" NIL NIL NIL \"7BIT\" 5 1) 3)")
    }

    func testModifiedUTF7RoundTrip() {
        // RFC 3501 §5.1.3's example.
        XCTAssertEqual(ModifiedUTF7.decode(Array("~peter/mail/&U,BTFw-/&ZeVnLIqe-".utf8)), "~peter/mail/台北/日本語")
        XCTAssertEqual(String(decoding: ModifiedUTF7.encode("~peter/mail/台北/日本語"), as: UTF8.self), "~peter/mail/&U,BTFw-/&ZeVnLIqe-")
        XCTAssertEqual(String(decoding: ModifiedUTF7.encode("Tom & Jerry"), as: UTF8.self), "Tom &- Jerry")
        XCTAssertEqual(ModifiedUTF7.decode(Array("Tom &- Jerry".utf8)), "Tom & Jerry")
        for name in ["Entwürfe", "Élément envoyé", "🎉 party", "a&b", "Корзина"] {
            XCTAssertEqual(ModifiedUTF7.decode(ModifiedUTF7.encode(name)), name)
        }
        XCTAssertNil(ModifiedUTF7.decode(Array("&AGE-".utf8)))   // "a" needlessly encoded
        XCTAssertNil(ModifiedUTF7.decode(Array("&Jjo".utf8)))    // unterminated
        XCTAssertNil(ModifiedUTF7.decode(Array("caf\u{e9}".utf8)))
    }

    func testDateTimeFormat() {
        XCTAssertEqual(IMAPDateFormat.dateTime(Date(timeIntervalSince1970: 760_686_745)), "\" 8-Feb-1994 05:52:25 +0000\"")
    }
}
