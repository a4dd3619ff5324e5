@testable import FacteurIMAP
import Foundation
import XCTest

/// The parser on RFC 9051's examples (§6) and on malformed input.
final class IMAPParserTests: XCTestCase {
    let parser = IMAPParser()

    func parse(_ text: String) -> IMAPParseResult { parser.parse(Array(text.utf8)) }

    func command(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> IMAPCommand.Kind? {
        guard case .command(let c) = parse(text) else {
            XCTFail("not parsed: \(text.debugDescription) → \(parse(text))", file: file, line: line)
            return nil
        }
        return c.kind
    }

    func testSimpleCommandsFromRFC9051() {
        XCTAssertEqual(parse("abcd CAPABILITY\r\n"), .command(IMAPCommand(tag: "abcd", .capability)))
        XCTAssertEqual(command("a002 NOOP\r\n"), .noop)
        XCTAssertEqual(command("A023 LOGOUT\r\n"), .logout)
        XCTAssertEqual(command("a001 STARTTLS\r\n"), .startTLS)
        XCTAssertEqual(command("A341 CLOSE\r\n"), .close)
        XCTAssertEqual(command("A202 EXPUNGE\r\n"), .expunge)
        XCTAssertEqual(command("a1 unselect\r\n"), .unselect)
        XCTAssertEqual(command("a1 idle\r\n"), .idle)
    }

    func testLoginWithAtomsQuotedAndLiterals() {
        XCTAssertEqual(command("a001 LOGIN SMITH SESAME\r\n"), .login(user: Array("SMITH".utf8), password: Array("SESAME".utf8)))
        XCTAssertEqual(command("a001 LOGIN \"fred\" \"a \\\"b\\\\c\"\r\n"),
                       .login(user: Array("fred".utf8), password: Array("a \"b\\c".utf8)))
        XCTAssertEqual(command("A1 LOGIN {5}\r\nalice {6+}\r\nsec\r\nt\r\n"),
                       .login(user: Array("alice".utf8), password: Array("sec\r\nt".utf8)))
    }

    func testAuthenticateWithInitialResponse() {
        XCTAssertEqual(command("a AUTHENTICATE plain AGZyZWQAcGFzcw==\r\n"),
                       .authenticate(mechanism: "PLAIN", initialResponse: Array("AGZyZWQAcGFzcw==".utf8)))
        XCTAssertEqual(command("a AUTHENTICATE PLAIN =\r\n"), .authenticate(mechanism: "PLAIN", initialResponse: Array("=".utf8)))
        XCTAssertEqual(command("a AUTHENTICATE SCRAM-SHA-256\r\n"), .authenticate(mechanism: "SCRAM-SHA-256", initialResponse: nil))
    }

    func testMailboxCommands() {
        XCTAssertEqual(command("A142 SELECT INBOX\r\n"), .select(MailboxName("INBOX"), condStore: false))
        XCTAssertEqual(command("A142 SELECT INBOX (CONDSTORE)\r\n"), .select(MailboxName("INBOX"), condStore: true))
        XCTAssertEqual(command("A932 EXAMINE blurdybloop\r\n"), .examine(MailboxName("blurdybloop"), condStore: false))
        XCTAssertEqual(command("A003 CREATE owatagusiam/\r\n"), .create(MailboxName("owatagusiam/"), specialUse: []))
        XCTAssertEqual(command("t1 CREATE \"Important Messages\" (USE (\\Important))\r\n"),
                       .create(MailboxName("Important Messages"), specialUse: ["\\Important"]))
        XCTAssertEqual(command("A683 RENAME blurdybloop sarasoop\r\n"),
                       .rename(from: MailboxName("blurdybloop"), to: MailboxName("sarasoop")))
        XCTAssertEqual(command("A002 SUBSCRIBE #news.comp.mail.mime\r\n"), .subscribe(MailboxName("#news.comp.mail.mime")))
        XCTAssertEqual(command("A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n"),
                       .status(MailboxName("blurdybloop"), [.uidNext, .messages]))
        XCTAssertEqual(command("A1 DELETE \"\"\r\n"), .delete(MailboxName("")))
    }

    func testListForms() {
        XCTAssertEqual(command("A101 LIST \"\" \"\"\r\n"), .list(ListCommand(reference: MailboxName(""), patterns: [MailboxName("")])))
        XCTAssertEqual(command("A202 LIST ~/Mail/ %\r\n"),
                       .list(ListCommand(reference: MailboxName("~/Mail/"), patterns: [MailboxName("%")])))
        XCTAssertEqual(command("A02 LIST (SUBSCRIBED) \"\" \"*\" RETURN (CHILDREN STATUS (MESSAGES UNSEEN))\r\n"),
                       .list(ListCommand(reference: MailboxName(""), patterns: [MailboxName("*")], selectionOptions: ["SUBSCRIBED"],
                                         returnOptions: ["CHILDREN", "STATUS"], returnStatus: [.messages, .unseen])))
        XCTAssertEqual(command("A03 LIST \"\" (INBOX Drafts* \"Sent Items\")\r\n"),
                       .list(ListCommand(reference: MailboxName(""),
                                         patterns: [MailboxName("INBOX"), MailboxName("Drafts*"), MailboxName("Sent Items")])))
    }

    func testAppendWithFlagsDateAndLiteral() {
        let message = "Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\nHello\r\n"
        let text = "A003 APPEND saved-messages (\\Seen) \"07-Feb-1994 21:52:25 -0800\" {\(message.utf8.count)}\r\n\(message)\r\n"
        guard case .append(let mailbox, let messages)? = command(text) else { return XCTFail() }
        XCTAssertEqual(mailbox, MailboxName("saved-messages"))
        XCTAssertEqual(messages.count, 1)
        XCTAssertEqual(messages[0].flags, [.seen])
        XCTAssertEqual(messages[0].internalDate, Date(timeIntervalSince1970: 760_686_745))
        XCTAssertEqual(messages[0].bytes, Array(message.utf8))
    }

    func testMultiAppendAndBinaryLiteral() {
        guard case .append(_, let messages)? = command("A1 APPEND INBOX {3+}\r\nabc (\\Draft) ~{3}\r\nx\0y\r\n") else { return XCTFail() }
        XCTAssertEqual(messages.map(\.bytes), [Array("abc".utf8), [UInt8(ascii: "x"), 0, UInt8(ascii: "y")]])
        XCTAssertEqual(messages[1].flags, [.draft])
    }

    func testFetchAttributes() {
        XCTAssertEqual(command("A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n"),
                       .fetch(.ranges([SequenceRange(.number(2), .number(4))]),
                              [.flags, .bodySection(SectionSpec(text: .headerFields(["DATE", "FROM"])), partial: nil, peek: false)],
                              modifiers: FetchModifiers(), uid: false))
        XCTAssertEqual(command("a UID FETCH 1:* (UID BODY.PEEK[1.2.MIME] BODY[]<0.2048> BINARY.SIZE[2] RFC822.SIZE)\r\n"),
                       .fetch(.ranges([SequenceRange(.number(1), .last)]),
                              [.uid, .bodySection(SectionSpec(part: [1, 2], text: .mime), partial: nil, peek: true),
                               .bodySection(SectionSpec(), partial: Partial(offset: 0, length: 2048), peek: false),
                               .binarySize(part: [2]), .rfc822Size],
                              modifiers: FetchModifiers(), uid: true))
        XCTAssertEqual(command("a FETCH 1 FAST\r\n"), .fetch(.single(1), [.flags, .internalDate, .rfc822Size], modifiers: .init(), uid: false))
        XCTAssertEqual(command("a FETCH $ BODY\r\n"), .fetch(.saved, [.bodyStructure(extensible: false)], modifiers: .init(), uid: false))
        XCTAssertEqual(command("a FETCH 1:5 (FLAGS) (CHANGEDSINCE 12345)\r\n"),
                       .fetch(.ranges([SequenceRange(.number(1), .number(5))]), [.flags],
                              modifiers: FetchModifiers(changedSince: 12345), uid: false))
        XCTAssertEqual(command("a FETCH 3 BODY[3.HEADER.FIELDS.NOT (\"X-A\" b)]\r\n"),
                       .fetch(.single(3), [.bodySection(SectionSpec(part: [3], text: .headerFieldsNot(["X-A", "b"])), partial: nil, peek: false)],
                              modifiers: .init(), uid: false))
    }

    func testStoreForms() {
        XCTAssertEqual(command("A003 STORE 2:4 +FLAGS (\\Deleted)\r\n"),
                       .store(.ranges([SequenceRange(.number(2), .number(4))]),
                              StoreAction(mode: .add, silent: false, flags: [.deleted]), unchangedSince: nil, uid: false))
        XCTAssertEqual(command("a UID STORE 7 -FLAGS.SILENT \\Seen $Forwarded\r\n"),
                       .store(.single(7), StoreAction(mode: .remove, silent: true, flags: [.seen, .keyword("$Forwarded")]),
                              unchangedSince: nil, uid: true))
        XCTAssertEqual(command("a STORE 1 (UNCHANGEDSINCE 320162338) FLAGS ()\r\n"),
                       .store(.single(1), StoreAction(mode: .replace, silent: false, flags: []), unchangedSince: 320_162_338, uid: false))
    }

    func testSearchKeys() {
        XCTAssertEqual(command("A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n"),
                       .search(SearchCommand(key: .and([.flagged, .since(IMAPDate(year: 1994, month: 2, day: 1)), .not(.from("Smith"))])),
                               uid: false))
        XCTAssertEqual(command("A283 SEARCH TEXT \"string not in mailbox\"\r\n"),
                       .search(SearchCommand(key: .text("string not in mailbox")), uid: false))
        XCTAssertEqual(command("A284 SEARCH CHARSET UTF-8 TEXT {12}\r\nXXXXXXXXXXXX\r\n"),
                       .search(SearchCommand(charset: "UTF-8", key: .text("XXXXXXXXXXXX")), uid: false))
        XCTAssertEqual(command("A285 UID SEARCH RETURN (MIN COUNT) OR (SEEN 1:3) UID 5,7:*\r\n"),
                       .search(SearchCommand(key: .or(.and([.seen, .sequenceSet(.ranges([SequenceRange(.number(1), .number(3))]))]),
                                                      .uid(.ranges([SequenceRange(.number(5)), SequenceRange(.number(7), .last)]))),
                                             returnOptions: [.min, .count]), uid: true))
        XCTAssertEqual(command("a SEARCH RETURN () HEADER Message-ID <x@y> LARGER 100\r\n"),
                       .search(SearchCommand(key: .and([.header("Message-ID", "<x@y>"), .larger(100)]), returnOptions: []), uid: false))
    }

    func testCopyMoveExpungeEnableID() {
        XCTAssertEqual(command("A003 COPY 2:4 MEETING\r\n"),
                       .copy(.ranges([SequenceRange(.number(2), .number(4))]), MailboxName("MEETING"), uid: false))
        XCTAssertEqual(command("a UID MOVE 42:69 foo\r\n"),
                       .move(.ranges([SequenceRange(.number(42), .number(69))]), MailboxName("foo"), uid: true))
        XCTAssertEqual(command("A003 UID EXPUNGE 3000:3002\r\n"), .uidExpunge(.ranges([SequenceRange(.number(3000), .number(3002))])))
        XCTAssertEqual(command("t2 ENABLE CONDSTORE utf8=accept\r\n"), .enable(["CONDSTORE", "UTF8=ACCEPT"]))
        XCTAssertEqual(command("a023 ID (\"name\" \"sodr\" \"version\" NIL)\r\n"),
                       .id([IDField(key: "name", value: "sodr"), IDField(key: "version", value: nil)]))
        XCTAssertEqual(command("a ID NIL\r\n"), .id(nil))
        XCTAssertEqual(command("A001 NAMESPACE\r\n"), .namespace)
    }

    func testBadInputIsBadNotIncomplete() {
        let bad = [
            "a FROB\r\n", "a SELECT\r\n", "a FETCH 0 FLAGS\r\n", "a FETCH 1 (FLAGS\r\n", "a FETCH 1 BODY[9.FOO]\r\n",
            "a STORE 1 FLAGS (\\Seen\r\n", "a LOGIN \"unterminated\r\n", "a SEARCH NOT\r\n", "a FETCH 99999999999 FLAGS\r\n",
            "a NOOP extra\r\n", "a LOGIN a b c\r\n", "a SEARCH SINCE 1-Foo-2000\r\n", "(bad tag NOOP\r\n", "a ID (\"a\")\r\n",
        ]
        for text in bad {
            guard case .bad = parse(text) else { XCTFail("\(text.debugDescription) → \(parse(text))"); continue }
        }
        XCTAssertEqual(parse("tag7 FROB\r\n"), .bad(tag: "tag7", message: "unknown command FROB"))
        XCTAssertEqual(parse("\r\n"), .bad(tag: nil, message: "invalid tag"))
    }

    func testEveryPrefixIsIncomplete() {
        let commands = [
            "A1 LOGIN {5}\r\nalice \"pw\"\r\n",
            "a UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (From)]<0.100>)\r\n",
            "A285 SEARCH OR (SEEN 1:3) UID 5,7:*\r\n",
            "A003 APPEND x (\\Seen) \" 7-Feb-1994 21:52:25 -0800\" {3}\r\nabc\r\n",
        ]
        for text in commands {
            let bytes = Array(text.utf8)
            guard case .command = parser.parse(bytes) else { XCTFail(text); continue }
            for cut in 0 ..< bytes.count {
                XCTAssertEqual(parser.parse(Array(bytes[..<cut])), .incomplete, "\(text.debugDescription) cut at \(cut)")
            }
        }
    }

    func testNestingDepthIsCapped() {
        let deep = "a SEARCH " + String(repeating: "(", count: 200) + "ALL" + String(repeating: ")", count: 200) + "\r\n"
        guard case .bad(_, let message) = parse(deep) else { return XCTFail() }
        XCTAssertTrue(message.contains("nested"))
        let nots = "a SEARCH " + String(repeating: "NOT ", count: 500) + "ALL\r\n"
        guard case .bad = parse(nots) else { return XCTFail() }
    }
}
