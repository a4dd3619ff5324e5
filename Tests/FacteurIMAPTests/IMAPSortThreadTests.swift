import FacteurIdentity
@testable import FacteurIMAP
import FacteurMIME
import FacteurStore
import Foundation
import Logging
import NIOPosix
import XCTest

/// SORT and THREAD (RFC 5256), SORT=DISPLAY (RFC 5957), ESORT (RFC 5267): base subjects, the
/// collation, both threading algorithms on hand-built mailboxes (missing parents, loops,
/// duplicates, hostile chains), then transcripts against a real store and Python's imaplib.
final class IMAPSortThreadTests: IMAPStoreTestCase {
    // MARK: Base subject (RFC 5256 §2.1)

    func testBaseSubjectExtraction() {
        let cases: [(String, String, Bool)] = [
            ("Hello", "Hello", false),
            ("Re: hello", "hello", true),
            ("RE: [list] Re: hello (fwd)", "hello", true),
            ("re:re:RE:   x", "x", true),
            ("Fwd: Fw: FWD: x  ", "x", true),
            ("Re [blob]: x", "x", true),
            ("[list] hello", "hello", false),
            ("[a][b] x", "x", false),
            ("[list]", "[list]", false),
            ("[fwd: Re: hi]", "hi", true),
            ("Re: [fwd: x] (fwd)", "x", true),
            ("[fwd: [bar] foo]", "foo", true),
            ("Rebecca: hi", "Rebecca: hi", false),
            ("Hello\tworld   again", "Hello world again", false),
            ("=?utf-8?q?Re=3A_caf=C3=A9?=", "café", true),
            ("Re: =?iso-8859-1?q?=E9t=E9?= (fwd) (fwd)", "été", true),
            ("(fwd)", "", true),
            ("", "", false),
            ("  Re:  ", "", true),
        ]
        for (raw, base, reply) in cases {
            let b = BaseSubject(raw)
            XCTAssertEqual(b.text, base, "base subject of \(raw.debugDescription)")
            XCTAssertEqual(b.isReplyOrForward, reply, "reply/forward of \(raw.debugDescription)")
        }
    }

    func testHostileSubjectsEndQuickly() {
        let nested = String(repeating: "[fwd: ", count: 2_000) + "x" + String(repeating: "]", count: 2_000)
        XCTAssertEqual(BaseSubject(nested).text, "x")
        let prefixes = String(repeating: "Re: [a] ", count: 20_000) + "y"
        let start = Date()
        _ = BaseSubject(prefixes)  // cut at IMAPSortLimits.maxSubjectBytes
        _ = BaseSubject(String(repeating: "[", count: 50_000))
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)
    }

    func testCollationIsUnicodeCasemap() {
        XCTAssertEqual(Collation.key("Émile"), Collation.key("émile"))
        XCTAssertEqual(Collation.key("abc"), Array("ABC".utf8))
        XCTAssertEqual(Collation.compare(Collation.key(""), Collation.key("a")), -1)
        XCTAssertEqual(Collation.compare(Collation.key("b"), Collation.key("A")), 1)
        // NFKD after titlecasing: fullwidth "ｆ" compares as "F".
        XCTAssertEqual(Collation.key("ｆile"), Collation.key("FILE"))
    }

    func testAddressSortValues() {
        // A group's start marker (host NIL, RFC 3501 §7.4.2) is not an address: the first member is.
        let group = [EnvelopeAddress(mailbox: "team", host: nil), EnvelopeAddress(name: "=?utf-8?q?J=C3=BCrg?=", mailbox: "jm", host: "x.example"),
                     EnvelopeAddress(mailbox: nil, host: nil)]
        XCTAssertEqual(SortableMessage.mailbox(group), "jm")
        XCTAssertEqual(SortableMessage.display(group), "Jürg")
        // An empty group has no address at all: the empty string, which sorts first.
        let empty = [EnvelopeAddress(mailbox: "undisclosed-recipients", host: nil), EnvelopeAddress(mailbox: nil, host: nil)]
        XCTAssertEqual(SortableMessage.mailbox(empty), "")
        XCTAssertEqual(SortableMessage.display(empty), "")
        // RFC 5957 §3: an empty addr-name falls back to addr-mailbox@addr-host.
        XCTAssertEqual(SortableMessage.display([EnvelopeAddress(name: "", mailbox: "a", host: "b.example")]), "a@b.example")
        XCTAssertEqual(SortableMessage.display(nil), "")
    }

    func testMessageIDNormalisation() {
        XCTAssertEqual(MessageIDs.parse("<\"01KF8JCEOCBS0045PS\"@xxx.yyy.com>"), ["01KF8JCEOCBS0045PS@xxx.yyy.com"])
        XCTAssertEqual(MessageIDs.parse(" <a@b>\r\n <c@d> junk <> <e@f"), ["a@b", "c@d"])
        XCTAssertEqual(MessageIDs.first("<x@y> (Bob's message of Monday)"), "x@y")
        XCTAssertNil(MessageIDs.first("no id here"))
        XCTAssertEqual(MessageIDs.parse("<" + String(repeating: "a", count: 2_000) + ">"), [])
    }

    // MARK: THREAD, pure (RFC 5256 §3)

    /// A message for the threaders: `n` is both the sequence number and what the response shows.
    func message(_ n: Int, date: Double? = nil, subject: String = "", id: String? = nil, references: String? = nil,
                 inReplyTo: String? = nil) -> ThreadMessage {
        let envelope = Envelope(subject: subject)
        var sortable = SortableMessage(msn: n, uid: UInt32(n), internalDate: Date(timeIntervalSince1970: 1_000_000),
                                       size: 0, envelope: envelope)
        sortable.sent = date ?? Double(n)
        return ThreadMessage(sortable: sortable, messageID: id.map { "<\($0)>" }, inReplyTo: inReplyTo, references: references)
    }

    func render(_ messages: [ThreadMessage], _ algorithm: ThreadAlgorithm = .references) -> String {
        let ordered = messages.sorted { $0.sortable.msn < $1.sortable.msn }
        return IMAPThreader.thread(ordered, algorithm: algorithm).render { UInt32(ordered[$0].sortable.msn) }
    }

    func testReferencesRebuildsTheRFCExample() {
        // RFC 5256 §4: * THREAD (2)(3 6 (4 23)(44 7 96))
        let messages = [
            message(2, date: 1, subject: "two", id: "2"),
            message(3, date: 2, subject: "three", id: "3"),
            message(6, date: 3, subject: "Re: three", id: "6", references: "<3>"),
            message(4, date: 4, subject: "Re: three", id: "4", references: "<3> <6>"),
            message(23, date: 5, subject: "Re: three", id: "23", references: "<3> <6> <4>"),
            message(44, date: 6, subject: "Re: three", id: "44", references: "<3> <6>"),
            message(7, date: 7, subject: "Re: three", id: "7", references: "<3> <6> <44>"),
            message(96, date: 8, subject: "Re: three", id: "96", references: "<3> <6> <44> <7>"),
        ]
        XCTAssertEqual(render(messages), "(2)(3 6 (4 23)(44 7 96))")
    }

    func testDummies() {
        // Two replies to a message not in the set: siblings under a dummy (RFC 5256 §4 "((3)(5))").
        XCTAssertEqual(render([message(3, subject: "a", id: "3", references: "<gone>"),
                               message(5, subject: "b", id: "5", references: "<gone>")]), "((3)(5))")
        // A dummy with one child at the top is replaced by the child (step 3).
        XCTAssertEqual(render([message(1, subject: "a", id: "1", references: "<gone>")]), "(1)")
        // A dummy in the middle of a chain disappears; its child moves up (step 3).
        XCTAssertEqual(render([message(1, subject: "a", id: "a"), message(2, subject: "b", id: "c", references: "<a> <b>")]),
                       "(1 2)")
        // In-Reply-To stands in when there is no References field.
        XCTAssertEqual(render([message(1, subject: "a", id: "a"), message(2, subject: "b", id: "b", inReplyTo: "<a> (a's)")]),
                       "(1 2)")
    }

    func testLoopsAndDuplicatesAndSelfReferences() {
        // A refers to B and B to A: the second link would close a loop and is not made.
        XCTAssertEqual(render([message(1, subject: "a", id: "a", references: "<b>"),
                               message(2, subject: "b", id: "b", references: "<a>")]), "(2 1)")
        // A message naming itself.
        XCTAssertEqual(render([message(1, subject: "a", id: "a", references: "<a>")]), "(1)")
        // Duplicate Message-IDs: the first keeps it, so the reply hangs under the first.
        XCTAssertEqual(render([message(1, subject: "a", id: "x"), message(2, subject: "b", id: "x"),
                               message(3, subject: "c", id: "y", references: "<x>")]), "(1 3)(2)")
        // A References chain that loops on itself.
        XCTAssertEqual(render([message(1, subject: "a", id: "a", references: "<b> <c> <b> <a> <c>")]), "(1)")
    }

    func testSubjectGathering() {
        // Step 5: a reply with the same base subject joins the original's thread.
        XCTAssertEqual(render([message(1, subject: "hello", id: "1"), message(2, subject: "Re: hello", id: "2")]), "(1 2)")
        // Two originals with one subject: siblings under a new dummy.
        XCTAssertEqual(render([message(1, subject: "hello", id: "1"), message(2, subject: "HELLO", id: "2")]), "((1)(2))")
        // The table prefers the non-reply even when the reply is older.
        XCTAssertEqual(render([message(1, subject: "Re: hi", id: "1"), message(2, subject: "hi", id: "2")]), "(2 1)")
        // Empty subjects are never gathered.
        XCTAssertEqual(render([message(1, subject: "", id: "1"), message(2, subject: "Re:", id: "2")]), "(1)(2)")
        // A dummy thread collects another thread of its subject.
        XCTAssertEqual(render([message(1, subject: "x", id: "1", references: "<gone>"),
                               message(2, subject: "x", id: "2", references: "<gone>"),
                               message(3, subject: "Re: x", id: "3")]), "((1)(2)(3))")
    }

    func testSiblingsSortBySentDateThenSequence() {
        XCTAssertEqual(render([message(1, date: 50, subject: "p", id: "p"),
                               message(2, date: 70, subject: "c", id: "c2", references: "<p>"),
                               message(3, date: 60, subject: "d", id: "c3", references: "<p>"),
                               message(4, date: 60, subject: "e", id: "c4", references: "<p>"),
                               message(5, date: 10, subject: "q", id: "q")]), "(5)(1 (3)(4)(2))")
    }

    func testOrderedSubject() {
        let messages = [
            message(1, date: 1, subject: "b"), message(2, date: 2, subject: "a"), message(3, date: 3, subject: "Re: b"),
            message(4, date: 4, subject: "A"), message(5, date: 5, subject: "[fwd: b]"), message(6, date: 0.5, subject: "c"),
        ]
        XCTAssertEqual(render(messages, .orderedSubject), "(6)(1 (3)(5))(2 4)")
        XCTAssertEqual(render([], .orderedSubject), "")
    }

    func testHostileChainsStayBounded() {
        let n = 10_000
        let start = Date()
        // A chain 10 000 deep, each message naming its whole ancestry (capped per message).
        var chain: [ThreadMessage] = []
        var refs = ""
        for i in 1 ... n {
            chain.append(message(i, subject: "s\(i)", id: "m\(i)", references: refs.isEmpty ? nil : refs))
            refs += " <m\(i)>"
            if refs.utf8.count > 3_000 { refs = String(refs.suffix(2_000)) }
        }
        let deep = render(chain)
        XCTAssertEqual(deep, "(" + (1 ... n).map(String.init).joined(separator: " ") + ")")
        // The same chain delivered newest first: every parent is a dummy when its child arrives.
        var reversed: [ThreadMessage] = []
        for i in 1 ... n {
            reversed.append(message(i, date: Double(n - i), subject: "s", id: "m\(i)", references: i < n ? "<m\(i + 1)>" : nil))
        }
        XCTAssertEqual(render(reversed), "(" + (1 ... n).reversed().map(String.init).joined(separator: " ") + ")")
        // One message with 10 000 ids in References, all missing (a chain of dummies, pruned away),
        // and a ring: 2 replies to 2000, 3 to 2, …, 2000 to 1999; the last link would close the loop.
        let many = (0 ..< n).map { "<x\($0)>" }.joined(separator: " ")
        var ring = [message(1, subject: "r", id: "big", references: many)]
        for i in 2 ... 2_000 { ring.append(message(i, subject: "r", id: "r\(i)", references: "<r\(i == 2 ? 2_000 : i - 1)>")) }
        XCTAssertEqual(render(ring), "((1)(2000 " + (2 ... 1_999).map(String.init).joined(separator: " ") + "))")
        // ORDEREDSUBJECT over the deep chain.
        XCTAssertEqual(render(chain, .orderedSubject).count, n * 2 + (1 ... n).map { String($0).count }.reduce(0, +))
        XCTAssertLessThan(Date().timeIntervalSince(start), 60, "hostile threading took too long")
    }

    // MARK: Transcripts against the store

    func lines(_ text: String) -> [String] { text.components(separatedBy: "\r\n").filter { !$0.isEmpty } }

    func deliver(_ text: String, arrival: TimeInterval) async throws {
        let result = try await store.deliver(Delivery(message: .memory(Array(text.utf8)), recipients: [
            DeliveryRecipient(accountID: account.id, mailbox: "INBOX", flags: []),
        ], internalDate: Date(timeIntervalSince1970: arrival)))
        guard case .stored = result.outcomes.first else { throw StoreError.invalid("not stored") }
    }

    /// Four messages after an expunged one (so UIDs are sequence numbers + 1).
    func sortMailbox() async throws {
        try await deliver("Subject: gone\r\n\r\nx\r\n", arrival: 1)
        let found = try await store.mailbox(accountID: account.id, name: "INBOX")
        let inbox = try XCTUnwrap(found)
        try await store.expunge(mailboxID: inbox.id, uids: [1])
        func pad(_ n: Int) -> String { String(repeating: "p", count: n) + "\r\n" }
        try await deliver("From: \"Zed\" <alice@b.example>\r\nTo: carol@x.example\r\nSubject: Re: banana\r\n"
            + "Date: Tue, 14 Nov 2023 10:00:00 +0000\r\n\r\n" + pad(400), arrival: 1_000)
        try await deliver("From: bob@a.example\r\nTo: Anna <dave@x.example>\r\nCc: zoe@x.example\r\nSubject: apple\r\n"
            + "Date: Tue, 14 Nov 2023 09:00:00 -0500\r\n\r\n" + pad(100), arrival: 3_000)
        try await deliver("From: =?utf-8?q?=C3=89mile?= <carl@c.example>\r\nTo: bea@x.example\r\nCc: adam@x.example\r\n"
            + "Subject: [list] Banana (fwd)\r\n\r\n" + pad(1_000), arrival: 2_000)
        try await deliver("From: =?utf-8?q?Yann?= <dan@d.example>\r\nSubject: =?utf-8?q?cherry?=\r\n"
            + "Date: Tue, 14 Nov 2023 11:00:00 +0000\r\n\r\n" + pad(2_000), arrival: 500)
    }

    func testSortEachKeyAndReverse() async throws {
        try await sortMailbox()
        var c = await loggedIn()
        do { let r = await c.send("c1 CAPABILITY\r\n")
            for cap in ["SORT", "SORT=DISPLAY", "ESORT", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES"] {
                XCTAssertTrue(r.contains(" \(cap)"), "\(cap) not advertised")
            }
        }
        do { let r = await c.send("n1 SORT (DATE) UTF-8 ALL\r\n"); XCTAssertEqual(r, "n1 BAD SORT Select a mailbox first\r\n") }
        _ = await c.send("s1 SELECT INBOX\r\n")
        let expected: [(String, String)] = [
            ("ARRIVAL", "4 1 3 2"),
            ("DATE", "3 1 4 2"),            // 3 has no Date: its INTERNALDATE (1970) stands in
            ("SUBJECT", "2 1 3 4"),         // apple, banana, Banana (tie: sequence order), cherry
            ("REVERSE SUBJECT", "4 1 3 2"), // REVERSE leaves the sequence tie-breaker ascending
            ("FROM", "1 2 3 4"),
            ("REVERSE FROM", "4 3 2 1"),
            ("TO", "4 3 1 2"),              // no To: the empty string sorts first
            ("CC", "1 4 3 2"),
            ("SIZE", "2 1 3 4"),
            ("REVERSE SIZE", "4 3 1 2"),
            ("DISPLAYFROM", "2 3 4 1"),     // bob@a.example, Émile, Yann, Zed
            ("DISPLAYTO", "4 2 3 1"),       // "", Anna, bea@x.example, carol@x.example
            ("SUBJECT REVERSE ARRIVAL", "2 3 1 4"),
        ]
        for (i, (criteria, order)) in expected.enumerated() {
            let r = lines(await c.send("t\(i) SORT (\(criteria)) UTF-8 ALL\r\n"))
            XCTAssertEqual(r, ["* SORT \(order)", "t\(i) OK SORT completed"], criteria)
        }
        do {
            let r = lines(await c.send("u1 UID SORT (ARRIVAL) us-ascii ALL\r\n"))
            XCTAssertEqual(r, ["* SORT 5 2 4 3", "u1 OK UID SORT completed"])
        }
        do {
            let r = lines(await c.send("u2 SORT (SUBJECT) UTF-8 OR FROM bob FROM dan\r\n"))
            XCTAssertEqual(r, ["* SORT 2 4", "u2 OK SORT completed"])
        }
        do {
            let r = lines(await c.send("u3 SORT (SUBJECT) US-ASCII TEXT \"not in mailbox\"\r\n"))
            XCTAssertEqual(r, ["* SORT", "u3 OK SORT completed"])
        }
        // ESORT (RFC 5267 §3): MIN and MAX in sort order; ALL keeps the order.
        do {
            let r = lines(await c.send("e1 SORT RETURN (MIN MAX COUNT) (DATE) UTF-8 ALL\r\n"))
            XCTAssertEqual(r, ["* ESEARCH (TAG \"e1\") MIN 3 MAX 2 COUNT 4", "e1 OK SORT completed"])
        }
        do {
            let r = lines(await c.send("e2 UID SORT RETURN () (DATE) UTF-8 ALL\r\n"))
            XCTAssertEqual(r, ["* ESEARCH (TAG \"e2\") UID ALL 4,2,5,3", "e2 OK UID SORT completed"])
        }
        do {
            let r = lines(await c.send("e3 SORT RETURN (ALL) (REVERSE ARRIVAL) UTF-8 1:3\r\n"))
            XCTAssertEqual(r, ["* ESEARCH (TAG \"e3\") ALL 2:3,1", "e3 OK SORT completed"])
        }
    }

    func testSortAndThreadErrors() async throws {
        try await sortMailbox()
        var c = await loggedIn()
        _ = await c.send("s1 SELECT INBOX\r\n")
        do { let r = await c.send("b1 SORT (DATE) KOI8-R ALL\r\n"); XCTAssertEqual(r, "b1 NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset\r\n") }
        do { let r = await c.send("b2 THREAD REFERENCES ISO-2022-JP ALL\r\n"); XCTAssertTrue(r.hasPrefix("b2 NO [BADCHARSET"), r) }
        for (i, bad) in ["SORT (FOO) UTF-8 ALL", "SORT DATE UTF-8 ALL", "SORT () UTF-8 ALL", "SORT (DATE) UTF-8",
                         "SORT (REVERSE) UTF-8 ALL", "SORT RETURN (SAVE) (DATE) UTF-8 ALL", "THREAD JWZ UTF-8 ALL",
                         "THREAD REFERENCES UTF-8", "UID THREAD", "SORT (DATE) UTF-8 CHARSET UTF-8 ALL"].enumerated() {
            let r = await c.send("x\(i) \(bad)\r\n")
            XCTAssertTrue(r.hasPrefix("x\(i) BAD "), "\(bad): \(r)")
        }
        let tooMany = Array(repeating: "DATE", count: IMAPSortLimits.maxCriteria + 1).joined(separator: " ")
        do { let r = await c.send("m1 SORT (\(tooMany)) UTF-8 ALL\r\n"); XCTAssertTrue(r.hasPrefix("m1 BAD"), r) }
        do { let r = await c.send("m2 NOOP\r\n"); XCTAssertEqual(r, "m2 OK NOOP completed\r\n") }
    }

    func threadMailbox() async throws {
        try await deliver("Subject: gone\r\n\r\nx\r\n", arrival: 1)
        let found = try await store.mailbox(accountID: account.id, name: "INBOX")
        let inbox = try XCTUnwrap(found)
        try await store.expunge(mailboxID: inbox.id, uids: [1])
        let specs: [(String, String, String)] = [
            ("topic", "<a@x>", ""),
            ("Re: topic", "<b@x>", "In-Reply-To: <a@x>\r\n"),
            ("Re: topic", "<c@x>", "References: <a@x>\r\n <b@x>\r\n"),
            ("other", "<d@x>", "References: <zz@x>\r\n"),
            ("Re: other", "<e@x>", "References: <zz@x>\r\n"),
            ("Re: topic", "<f@x>", ""),
        ]
        for (i, (subject, id, extra)) in specs.enumerated() {
            try await deliver("From: p\(i)@x\r\nSubject: \(subject)\r\nMessage-ID: \(id)\r\n\(extra)"
                + "Date: Tue, 14 Nov 2023 1\(i):00:00 +0000\r\n\r\nbody\r\n", arrival: 100)
        }
    }

    func testThreadTranscripts() async throws {
        try await threadMailbox()
        var c = await loggedIn()
        _ = await c.send("s1 SELECT INBOX\r\n")
        do {
            let r = lines(await c.send("t1 THREAD REFERENCES UTF-8 ALL\r\n"))
            XCTAssertEqual(r, ["* THREAD (1 (2 3)(6))((4)(5))", "t1 OK THREAD completed"])
        }
        do {
            let r = lines(await c.send("t2 UID THREAD REFERENCES UTF-8 ALL\r\n"))
            XCTAssertEqual(r, ["* THREAD (2 (3 4)(7))((5)(6))", "t2 OK UID THREAD completed"])
        }
        do {
            let r = lines(await c.send("t3 THREAD ORDEREDSUBJECT UTF-8 ALL\r\n"))
            XCTAssertEqual(r, ["* THREAD (1 (2)(3)(6))(4 5)", "t3 OK THREAD completed"])
        }
        do {
            // Only part of the mailbox: 2's parent is outside the set, so 2 starts a thread.
            let r = lines(await c.send("t4 THREAD REFERENCES US-ASCII 2:3\r\n"))
            XCTAssertEqual(r, ["* THREAD (2 3)", "t4 OK THREAD completed"])
        }
        do {
            let r = lines(await c.send("t5 THREAD ORDEREDSUBJECT US-ASCII SUBJECT \"nothing\"\r\n"))
            XCTAssertEqual(r, ["* THREAD", "t5 OK THREAD completed"])
        }
    }

    func testLargeMailboxSortsAndThreadsInBoundedTime() async throws {
        // 600 messages, each a reply to the previous one, subjects in reverse order.
        let n = 600
        for i in 1 ... n {
            let refs = i > 1 ? "References: <m\(i - 1)@x>\r\n" : ""
            try await deliver("From: u\(i % 7)@x\r\nSubject: Re: s\(String(format: "%05d", n - i))\r\nMessage-ID: <m\(i)@x>\r\n\(refs)\r\nb\r\n",
                              arrival: Double(i))
        }
        var c = await loggedIn()
        _ = await c.send("s1 SELECT INBOX\r\n")
        let start = Date()
        let sorted = lines(await c.send("a1 SORT (SUBJECT) UTF-8 ALL\r\n"))
        XCTAssertEqual(sorted.first, "* SORT " + (1 ... n).reversed().map(String.init).joined(separator: " "))
        let threaded = lines(await c.send("a2 THREAD REFERENCES UTF-8 ALL\r\n"))
        XCTAssertEqual(threaded.first, "* THREAD (" + (1 ... n).map(String.init).joined(separator: " ") + ")")
        XCTAssertLessThan(Date().timeIntervalSince(start), 60)
    }

    // MARK: End to end with Python's imaplib

    func testImaplibSortAndThread() async throws {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        guard let python = path.split(separator: ":").map({ "\($0)/python3" }).first(where: { FileManager.default.isExecutableFile(atPath: $0) })
        else { throw XCTSkip("python3 not installed") }
        try await threadMailbox()
        let listener = try await IMAPListener.bind(
            configuration: .init(host: "127.0.0.1", port: 0, hostname: "mail.example.org"),
            store: store, authenticator: runner.authenticator, sslContext: nil,
            group: MultiThreadedEventLoopGroup.singleton, logger: Logger(label: "test"))
        let port = try XCTUnwrap(listener.localAddress?.port)
        let script = """
        import imaplib
        m = imaplib.IMAP4("127.0.0.1", \(port))
        m.login("alice@example.org", "secret")
        m.select("INBOX")
        print(m.sort("(REVERSE DATE)", "UTF-8", "ALL")[1][0].decode())
        print(m.uid("SORT", "(SUBJECT)", "UTF-8", "ALL")[1][0].decode())
        print(m.thread("REFERENCES", "UTF-8", "ALL")[1][0].decode())
        print(m.uid("THREAD", "ORDEREDSUBJECT", "UTF-8", "ALL")[1][0].decode())
        m.logout()
        """
        let out = try await run(python, ["-c", script])
        await listener.shutdown(grace: .seconds(1))
        XCTAssertEqual(out.components(separatedBy: "\n").filter { !$0.isEmpty },
                       ["6 5 4 3 2 1", "5 6 2 3 4 7", "(1 (2 3)(6))((4)(5))", "(2 (3)(4)(7))(5 6)"])
    }

    /// Runs a program without blocking the cooperative pool (the server needs it meanwhile).
    func run(_ path: String, _ arguments: [String]) async throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let done: Void = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { _ in continuation.resume() }
            do { try process.run() } catch { continuation.resume(throwing: error) }
        }
        _ = done
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        let text = String(decoding: data, as: UTF8.self)
        XCTAssertEqual(process.terminationStatus, 0, text)
        return text
    }
}
