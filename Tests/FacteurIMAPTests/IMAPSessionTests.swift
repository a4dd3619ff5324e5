import FacteurIdentity
@testable import FacteurIMAP
import FacteurStore
import Foundation
import XCTest

/// The session as transcripts: client lines in, server lines out (RFC 9051 §6, §8 examples).
final class IMAPSessionTests: IMAPStoreTestCase {
    func lines(_ text: String) -> [String] { text.components(separatedBy: "\r\n").filter { !$0.isEmpty } }

    func testNotAuthenticatedState() async {
        var c = connect(tls: false)
        XCTAssertTrue(c.session.greeting().starts(with: Array("* OK [CAPABILITY IMAP4rev1 IMAP4rev2 STARTTLS LOGINDISABLED".utf8)))
        let caps = await c.send("a1 CAPABILITY\r\n")
        XCTAssertTrue(caps.contains("LOGINDISABLED"))
        XCTAssertFalse(caps.contains("AUTH=PLAIN"))
        do { let r = await c.send("a2 LOGIN alice@example.org secret\r\n"); XCTAssertEqual(r, "a2 NO [PRIVACYREQUIRED] LOGIN needs TLS (use STARTTLS)\r\n") }
        do { let r = await c.send("a3 SELECT INBOX\r\n"); XCTAssertEqual(r, "a3 BAD SELECT Log in first\r\n") }
        do { let r = await c.send("a4 STARTTLS\r\n"); XCTAssertEqual(r, "a4 OK Begin TLS negotiation now\r\n") }
        do { let r = await c.send("a5 CAPABILITY\r\n"); XCTAssertTrue(r.contains("AUTH=PLAIN")) }
        do { let r = await c.send("a6 LOGIN alice@example.org wrong\r\n"); XCTAssertEqual(r, "a6 NO [AUTHENTICATIONFAILED] Invalid credentials\r\n") }
        let ok = await c.send("a7 LOGIN alice@example.org secret\r\n")
        XCTAssertTrue(ok.hasPrefix("a7 OK [CAPABILITY IMAP4rev1 IMAP4rev2 "), ok)
        XCTAssertEqual(c.session.state, .authenticated)
        do { let r = await c.send("a8 LOGIN alice@example.org secret\r\n"); XCTAssertEqual(r, "a8 BAD LOGIN Already authenticated\r\n") }
        do { let r = await c.send("a9 LOGOUT\r\n"); XCTAssertEqual(r, "* BYE Logging out\r\na9 OK LOGOUT completed\r\n") }
        XCTAssertEqual(c.session.state, .logout)
    }

    func testAuthenticatePlainWithAndWithoutInitialResponse() async {
        var c = connect()
        let ir = Data("\0alice@example.org\0secret".utf8).base64EncodedString()
        do { let r = await c.send("a1 AUTHENTICATE PLAIN \(ir)\r\n"); XCTAssertTrue(r.hasPrefix("a1 OK [CAPABILITY")) }
        var d = connect()
        do { let r = await d.send("b1 AUTHENTICATE PLAIN\r\n"); XCTAssertEqual(r, "+ \r\n") }
        do { let r = await d.send("\(ir)\r\n"); XCTAssertTrue(r.hasPrefix("b1 OK")) }
        var e = connect()
        do { let r = await e.send("c1 AUTHENTICATE PLAIN\r\n"); XCTAssertEqual(r, "+ \r\n") }
        do { let r = await e.send("*\r\n"); XCTAssertEqual(r, "c1 BAD Authentication cancelled\r\n") }
        do { let r = await e.send("c2 AUTHENTICATE CRAM-MD5\r\n"); XCTAssertEqual(r, "c2 NO [CANNOT] Mechanism CRAM-MD5 is not available\r\n") }
    }

    func testSyntaxErrorsAreBadAndTheSessionGoesOn() async {
        var c = await loggedIn()
        do { let r = await c.send("x1 FROB\r\n"); XCTAssertEqual(r, "x1 BAD unknown command FROB\r\n") }
        do { let r = await c.send("x2 FETCH\r\n"); XCTAssertEqual(r, "x2 BAD expected a space\r\n") }
        do { let r = await c.send("x3 NOOP\r\n"); XCTAssertEqual(r, "x3 OK NOOP completed\r\n") }
    }

    func testSelectFetchStoreExpunge() async throws {
        try await deliver(Self.simple, prefix: "Delivered-To: alice@example.org\r\n")
        try await deliver(Self.multipart, flags: [.seen])
        var c = await loggedIn()
        let select = lines(await c.send("s1 SELECT INBOX\r\n"))
        XCTAssertEqual(select.first, "* 2 EXISTS")
        XCTAssertTrue(select.contains("* OK [UNSEEN 1] First unseen"), "\(select)")
        XCTAssertTrue(select.contains { $0.hasPrefix("* OK [UIDVALIDITY ") })
        XCTAssertTrue(select.contains("* OK [UIDNEXT 3] Predicted next UID"))
        XCTAssertEqual(select.last, "s1 OK [READ-WRITE] SELECT completed")

        let fetch = await c.send("f1 FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)\r\n")
        XCTAssertTrue(fetch.contains("* 1 FETCH (UID 1 FLAGS () RFC822.SIZE \(Self.simple.utf8.count + 33) ENVELOPE (\"Tue, 14 Nov 2023 22:13:20 +0000\" \"Hello\" ((\"Bob\" NIL \"bob\" \"example.net\"))"), fetch)
        XCTAssertTrue(fetch.contains("* 2 FETCH (UID 2 FLAGS (\\Seen) RFC822.SIZE"), fetch)
        XCTAssertTrue(fetch.hasSuffix("f1 OK FETCH completed\r\n"))

        // Sections: the header includes the per-recipient prefix; parts index the multipart.
        let header = await c.send("f2 FETCH 1 BODY.PEEK[HEADER.FIELDS (subject delivered-to)]\r\n")
        XCTAssertEqual(header, "* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT DELIVERED-TO)] {51}\r\nDelivered-To: alice@example.org\r\nSubject: Hello\r\n\r\n)\r\nf2 OK FETCH completed\r\n")
        do { let r = await c.send("f3 FETCH 2 (BODY.PEEK[1] BINARY.PEEK[2] BODY.PEEK[2.MIME])\r\n"); XCTAssertEqual(r,
                       "* 2 FETCH (BODY[1] {11}\r\nThe report. BINARY[2] {5}\r\nhello BODY[2.MIME] {77}\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n)\r\nf3 OK FETCH completed\r\n") }
        do { let r = await c.send("f4 FETCH 1 BODY.PEEK[TEXT]<3.5>\r\n"); XCTAssertEqual(r, "* 1 FETCH (BODY[TEXT]<3> {5}\r\nAlice)\r\nf4 OK FETCH completed\r\n") }
        let structure = await c.send("f5 FETCH 2 BODYSTRUCTURE\r\n")
        XCTAssertTrue(structure.hasPrefix("* 2 FETCH (BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 11 1 NIL NIL NIL NIL)(\"application\" \"octet-stream\" NIL NIL NIL \"base64\" 8 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"b1\") NIL NIL NIL))"), structure)

        // BODY[] without PEEK sets \Seen and reports it.
        let seen = await c.send("f6 FETCH 1 BODY[TEXT]\r\n")
        XCTAssertTrue(seen.contains("FLAGS (\\Seen)"), seen)
        do { let r = await c.send("f7 UID FETCH 1 FLAGS\r\n"); XCTAssertEqual(r, "* 1 FETCH (UID 1 FLAGS (\\Seen))\r\nf7 OK UID FETCH completed\r\n") }

        do { let r = await c.send("t1 STORE 1 +FLAGS (\\Deleted $Junk)\r\n"); XCTAssertEqual(r, "* 1 FETCH (FLAGS (\\Deleted \\Seen $Junk))\r\nt1 OK STORE completed\r\n") }
        do { let r = await c.send("t2 UID STORE 2 FLAGS.SILENT (\\Flagged)\r\n"); XCTAssertEqual(r, "t2 OK UID STORE completed\r\n") }
        do { let r = await c.send("t3 FETCH 9 FLAGS\r\n"); XCTAssertEqual(r, "t3 BAD Invalid message sequence number\r\n") }
        do { let r = await c.send("e1 EXPUNGE\r\n"); XCTAssertEqual(r, "* 1 EXPUNGE\r\ne1 OK EXPUNGE completed\r\n") }
        do { let r = await c.send("f8 FETCH * UID\r\n"); XCTAssertEqual(r, "* 1 FETCH (UID 2)\r\nf8 OK FETCH completed\r\n") }
        do { let r = await c.send("c1 CLOSE\r\n"); XCTAssertEqual(r, "c1 OK CLOSE completed\r\n") }
        XCTAssertEqual(c.session.state, .authenticated)
    }

    func testExamineIsReadOnly() async throws {
        try await deliver(Self.simple)
        var c = await loggedIn()
        do { let r = await c.send("a EXAMINE INBOX\r\n"); XCTAssertTrue(r.hasSuffix("a OK [READ-ONLY] EXAMINE completed\r\n")) }
        do { let r = await c.send("b STORE 1 +FLAGS \\Seen\r\n"); XCTAssertEqual(r, "b NO [READ-ONLY] Mailbox is read-only\r\n") }
        let body = await c.send("c FETCH 1 BODY[]\r\n")
        XCTAssertFalse(body.contains("\\Seen"), body)
        do { let r = await c.send("d UNSELECT\r\n"); XCTAssertEqual(r, "d OK UNSELECT completed\r\n") }
    }

    func testMailboxManagementAndList() async throws {
        var c = await loggedIn()
        // A new account has INBOX and the special-use mailboxes (the store makes them, subscribed).
        do { let r = await c.send("a CREATE Projects/2026\r\n"); XCTAssertTrue(r.hasPrefix("a OK [MAILBOXID (M") && r.hasSuffix(")] CREATE completed\r\n"), r) }
        do { let r = await c.send("b CREATE Projects\r\n"); XCTAssertEqual(r, "b NO [ALREADYEXISTS] mailbox Projects already exists\r\n") }
        do { let r = await c.send("c CREATE Important (USE (\\Flagged))\r\n"); XCTAssertTrue(r.hasPrefix("c OK [MAILBOXID (M") && r.hasSuffix(")] CREATE completed\r\n"), r) }
        do { let r = await c.send("c2 CREATE Other (USE (\\Important))\r\n"); XCTAssertEqual(r, "c2 NO [USEATTR] Unsupported special-use attribute\r\n") }
        do { let r = await c.send("d CREATE &ZeVnLIqe-\r\n"); XCTAssertTrue(r.hasPrefix("d OK [MAILBOXID (M") && r.hasSuffix(")] CREATE completed\r\n"), r) }
        let all = lines(await c.send("e LIST \"\" *\r\n"))
        XCTAssertEqual(all.first, "* LIST (\\HasNoChildren) \"/\" INBOX")
        XCTAssertTrue(all.contains("* LIST (\\HasChildren) \"/\" Projects"), "\(all)")
        XCTAssertTrue(all.contains("* LIST (\\HasNoChildren) \"/\" Projects/2026"), "\(all)")
        XCTAssertTrue(all.contains("* LIST (\\HasNoChildren \\Flagged) \"/\" Important"), "\(all)")
        XCTAssertTrue(all.contains("* LIST (\\HasNoChildren \\Sent) \"/\" Sent"), "\(all)")
        XCTAssertTrue(all.contains("* LIST (\\HasNoChildren) \"/\" &ZeVnLIqe-"), "\(all)")
        XCTAssertEqual(all.last, "e OK LIST completed")
        let top = lines(await c.send("f LIST \"\" %\r\n"))
        XCTAssertFalse(top.contains { $0.hasSuffix("Projects/2026") }, "\(top)")
        XCTAssertTrue(top.contains { $0.hasSuffix("Projects") }, "\(top)")
        do { let r = await c.send("f2 LIST Projects %\r\n"); XCTAssertEqual(r, "* LIST (\\HasNoChildren) \"/\" Projects/2026\r\nf2 OK LIST completed\r\n") }
        do { let r = await c.send("g LIST \"\" \"\"\r\n"); XCTAssertEqual(r, "* LIST (\\Noselect) \"/\" \"\"\r\ng OK LIST completed\r\n") }
        do { let r = await c.send("h SUBSCRIBE Projects\r\n"); XCTAssertEqual(r, "h OK SUBSCRIBE completed\r\n") }
        let subscribed = lines(await c.send("i LSUB \"\" P*\r\n"))
        XCTAssertEqual(subscribed, ["* LSUB (\\HasChildren) \"/\" Projects", "i OK LSUB completed"])
        let special = lines(await c.send("j LIST (SPECIAL-USE) \"\" *\r\n"))
        XCTAssertTrue(special.contains("* LIST (\\HasNoChildren \\Flagged) \"/\" Important"), "\(special)")
        XCTAssertFalse(special.contains { $0.hasSuffix("Projects") }, "\(special)")
        do { let r = await c.send("k RENAME Projects Old\r\n"); XCTAssertEqual(r, "k OK RENAME completed\r\n") }
        do { let r = await c.send("l STATUS Old/2026 (MESSAGES UIDNEXT UNSEEN)\r\n"); XCTAssertEqual(r, "* STATUS Old/2026 (MESSAGES 0 UIDNEXT 1 UNSEEN 0)\r\nl OK STATUS completed\r\n") }
        do { let r = await c.send("m DELETE Old/2026\r\n"); XCTAssertEqual(r, "m OK DELETE completed\r\n") }
        do { let r = await c.send("n DELETE INBOX\r\n"); XCTAssertEqual(r, "n NO [CANNOT] INBOX cannot be deleted\r\n") }
        do { let r = await c.send("o SELECT Nowhere\r\n"); XCTAssertEqual(r, "o NO [NONEXISTENT] No such mailbox\r\n") }
        do { let r = await c.send("p ENABLE UTF8=ACCEPT\r\n"); XCTAssertEqual(r, "* ENABLED UTF8=ACCEPT\r\np OK ENABLE completed\r\n") }
        do { let r = await c.send("q LIST \"\" \"日*\"\r\n"); XCTAssertEqual(r, "* LIST (\\HasNoChildren) \"/\" \"日本語\"\r\nq OK LIST completed\r\n") }
    }

    func testAppendCopyMoveWithUIDPlus() async throws {
        var c = await loggedIn()
        _ = await c.send("a CREATE Archive\r\n")
        let message = "Subject: appended\r\n\r\nbody\r\n"
        do { let r = await c.send("b APPEND INBOX (\\Seen) {\(message.utf8.count)}\r\n"); XCTAssertEqual(r, "+ Ready for literal data\r\n") }
        let appended = await c.send("\(message)\r\n")
        XCTAssertTrue(appended.hasPrefix("b OK [APPENDUID "), appended)
        XCTAssertTrue(appended.hasSuffix(" 1] APPEND completed\r\n"), appended)
        do { let r = await c.send("c APPEND INBOX {4+}\r\nx\r\ny {3+}\r\nz\r\n\r\n"); XCTAssertTrue(r.contains(" 2:3] APPEND completed")) }
        do { let r = await c.send("d APPEND Nowhere {1+}\r\nx\r\n"); XCTAssertEqual(r, "d NO [TRYCREATE] No such mailbox\r\n") }
        _ = await c.send("e SELECT INBOX\r\n")
        let copied = await c.send("f COPY 1:2 Archive\r\n")
        XCTAssertTrue(copied.hasPrefix("f OK [COPYUID ") && copied.hasSuffix(" 1:2 1:2] COPY completed\r\n"), copied)
        do { let r = await c.send("g COPY 1 Nowhere\r\n"); XCTAssertEqual(r, "g NO [TRYCREATE] No such mailbox\r\n") }
        let moved = lines(await c.send("h UID MOVE 2:3 Archive\r\n"))
        XCTAssertTrue(moved[0].hasPrefix("* OK [COPYUID ") && moved[0].hasSuffix(" 2:3 3:4] Moved"), "\(moved)")
        XCTAssertEqual(Array(moved.dropFirst()), ["* 3 EXPUNGE", "* 2 EXPUNGE", "h OK UID MOVE completed"])
        do { let r = await c.send("i STATUS Archive (MESSAGES)\r\n"); XCTAssertEqual(r, "* STATUS Archive (MESSAGES 4)\r\ni OK STATUS completed\r\n") }
        do { let r = await c.send("j FETCH 1 (FLAGS BODY.PEEK[])\r\n"); XCTAssertEqual(r, "* 1 FETCH (FLAGS (\\Seen) BODY[] {\(message.utf8.count)}\r\n\(message))\r\nj OK FETCH completed\r\n") }
    }

    func testSearch() async throws {
        try await deliver(Self.simple)
        try await deliver(Self.multipart, flags: [.seen, .flagged])
        var c = await loggedIn()
        _ = await c.send("s SELECT INBOX\r\n")
        do { let r = await c.send("a SEARCH ALL\r\n"); XCTAssertEqual(r, "* SEARCH 1 2\r\na OK SEARCH completed\r\n") }
        do { let r = await c.send("b SEARCH UNSEEN\r\n"); XCTAssertEqual(r, "* SEARCH 1\r\nb OK SEARCH completed\r\n") }
        do { let r = await c.send("c UID SEARCH FROM bob\r\n"); XCTAssertEqual(r, "* SEARCH 1\r\nc OK UID SEARCH completed\r\n") }
        do { let r = await c.send("d SEARCH OR SUBJECT report BODY alice\r\n"); XCTAssertEqual(r, "* SEARCH 1 2\r\nd OK SEARCH completed\r\n") }
        do { let r = await c.send("e SEARCH NOT FLAGGED TEXT \"see you\"\r\n"); XCTAssertEqual(r, "* SEARCH 1\r\ne OK SEARCH completed\r\n") }
        do { let r = await c.send("f SEARCH HEADER Message-ID <1@example.net>\r\n"); XCTAssertEqual(r, "* SEARCH 1\r\nf OK SEARCH completed\r\n") }
        do { let r = await c.send("g SEARCH SENTON 14-Nov-2023 SMALLER 10000\r\n"); XCTAssertEqual(r, "* SEARCH 1\r\ng OK SEARCH completed\r\n") }
        do { let r = await c.send("h SEARCH RETURN (MIN MAX COUNT) ALL\r\n"); XCTAssertEqual(r, "* ESEARCH (TAG \"h\") MIN 1 MAX 2 COUNT 2\r\nh OK SEARCH completed\r\n") }
        do { let r = await c.send("i UID SEARCH RETURN (SAVE) SEEN\r\n"); XCTAssertEqual(r, "i OK UID SEARCH completed\r\n") }
        do { let r = await c.send("j FETCH $ UID\r\n"); XCTAssertEqual(r, "* 2 FETCH (UID 2)\r\nj OK FETCH completed\r\n") }
        do { let r = await c.send("k SEARCH CHARSET KOI8-R ALL\r\n"); XCTAssertEqual(r, "k NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset\r\n") }
    }

    func testOtherSessionsChangesAndIdle() async throws {
        var a = await loggedIn()
        var b = await loggedIn()
        _ = await a.send("a1 SELECT INBOX\r\n")
        _ = await b.send("b1 SELECT INBOX\r\n")
        try await deliver(Self.simple)
        await settle()
        do { let r = await a.send("a2 NOOP\r\n"); XCTAssertEqual(r, "* 1 EXISTS\r\na2 OK NOOP completed\r\n") }
        do { let r = await b.send("b2 NOOP\r\n"); XCTAssertEqual(r, "* 1 EXISTS\r\nb2 OK NOOP completed\r\n") }
        do { let r = await b.send("b2 STORE 1 +FLAGS (\\Flagged)\r\n"); XCTAssertEqual(r, "* 1 FETCH (FLAGS (\\Flagged))\r\nb2 OK STORE completed\r\n") }
        await settle()
        do { let r = await a.send("a3 NOOP\r\n"); XCTAssertEqual(r, "* 1 FETCH (UID 1 FLAGS (\\Flagged))\r\na3 OK NOOP completed\r\n") }
        // IDLE: a delivery is pushed; DONE ends it.
        do { let r = await a.send("a4 IDLE\r\n"); XCTAssertEqual(r, "+ idling\r\n") }
        try await deliver(Self.multipart)
        await settle()
        do { let r = await a.idleUpdate(); XCTAssertEqual(r, "* 2 EXISTS\r\n") }
        do { let r = await a.send("DONE\r\n"); XCTAssertEqual(r, "a4 OK IDLE terminated\r\n") }
        // An expunge by b reaches a at NOOP but not during FETCH (RFC 9051 §7.5.1).
        _ = await b.send("b3 NOOP\r\n")
        _ = await b.send("b4 STORE 1 +FLAGS (\\Deleted)\r\n")
        _ = await b.send("b5 EXPUNGE\r\n")
        await settle()
        let during = await a.send("a5 FETCH 2 UID\r\n")
        XCTAssertFalse(during.contains("EXPUNGE"), during)
        do { let r = await a.send("a6 NOOP\r\n"); XCTAssertEqual(r, "* 1 EXPUNGE\r\na6 OK NOOP completed\r\n") }
        XCTAssertEqual(a.session.selected?.uids, [2])
    }

    func testLiteralTooLargeIsRefused() async {
        var c = await loggedIn()
        do { let r = await c.send("a LOGIN {999999}\r\n"); XCTAssertEqual(r, "a NO [TOOBIG] Literal too large\r\n") }
        do { let r = await c.send("b NOOP\r\n"); XCTAssertEqual(r, "b OK NOOP completed\r\n") }
    }
}
