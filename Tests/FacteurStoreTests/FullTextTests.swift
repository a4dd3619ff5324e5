// The full-text index of SQLiteMailStore (SEARCH BODY/TEXT, RFC 9051 §6.4.4): decoding of
// transfer encodings and charsets, what is indexed, substring and case semantics, the backfill
// of migration v5-fulltext, and garbage collection of index rows.

import FacteurMIME
@testable import FacteurStore
import Foundation
import GRDB
import XCTest

final class FullTextTests: StoreTestCase {
    private func crlf(_ text: String) -> [UInt8] {
        Array(text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\n", with: "\r\n").utf8)
    }

    private func stored(_ bytes: [UInt8], _ account: AccountRecord, prefix: String = "") async throws -> UInt32 {
        let result = try await deliver(bytes, to: [account], prefix: Array(prefix.utf8))
        return try XCTUnwrap(storedUID(result.outcomes.first))
    }

    private func body(_ mailbox: MailboxRecord, _ needles: String...) async throws -> Set<UInt32>? {
        try await store.fullTextCandidates(mailboxID: mailbox.id, body: needles, text: [])
    }

    private func text(_ mailbox: MailboxRecord, _ needles: String...) async throws -> Set<UInt32>? {
        try await store.fullTextCandidates(mailboxID: mailbox.id, body: [], text: needles)
    }

    private func count(_ table: String) async throws -> Int {
        try await store.pool.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM \(table)") ?? -1 }
    }

    static let base64UTF8 = """
        From: a@example.net
        Subject: greetings
        MIME-Version: 1.0
        Content-Type: text/plain; charset=utf-8
        Content-Transfer-Encoding: base64

        \(Data("Viele Grüße aus München,\nund bis bald.\n".utf8).base64EncodedString())

        """

    static let quotedPrintableLatin1 = """
        From: b@example.net
        Subject: menu
        MIME-Version: 1.0
        Content-Type: text/plain; charset=ISO-8859-1
        Content-Transfer-Encoding: quoted-printable

        Ce soir: caf=E9 et cr=E8me br=FBl=E9e, puis une tr=
        =E8s longue ligne coup=E9e.

        """

    static let multipart = """
        From: c@example.net
        Subject: holiday photos
        MIME-Version: 1.0
        Content-Type: multipart/mixed; boundary="outer"

        --outer
        Content-Type: multipart/alternative; boundary="inner"

        --inner
        Content-Type: text/plain; charset=us-ascii

        Plain version.
        --inner
        Content-Type: text/html; charset=utf-8
        Content-Transfer-Encoding: quoted-printable

        <html><head><style>.x { color: red }</style></head><body><p>Bonjour&nbsp;<b>le</b> monde &amp; =
        co</p><script>var hidden = 1;</script><!-- invisible comment --></body></html>
        --inner--
        --outer
        Content-Type: application/octet-stream; name="holiday.jpg"
        Content-Disposition: attachment; filename="holiday.jpg"
        Content-Transfer-Encoding: base64

        \(Data("secretword inside a binary attachment".utf8).base64EncodedString())
        --outer
        Content-Type: text/csv; name="list.csv"
        Content-Disposition: attachment; filename="list.csv"

        name,amount
        widgets,42
        --outer
        Content-Type: message/rfc822

        From: forwarded@example.org
        Subject: =?utf-8?q?r=C3=A9union?=

        The forwarded body.
        --outer--

        """

    func testTransferEncodingsAndCharsetsAreDecoded() async throws {
        let alice = try await account("alice@example.org")
        let inbox = try await inbox(alice)
        let one = try await stored(crlf(Self.base64UTF8), alice)
        let two = try await stored(crlf(Self.quotedPrintableLatin1), alice)

        let munich = try await body(inbox, "MÜNCHEN")
        XCTAssertEqual(munich, [one])
        let greetings = try await body(inbox, "grüße aus")
        XCTAssertEqual(greetings, [one], "case-insensitive, across a word boundary")
        let cafe = try await body(inbox, "café")
        XCTAssertEqual(cafe, [two], "ISO-8859-1 é decoded")
        let creme = try await body(inbox, "CREME BRULEE")
        XCTAssertEqual(creme, [two], "diacritics are ignored, as the scan did")
        let softBreak = try await body(inbox, "très longue")
        XCTAssertEqual(softBreak, [two], "quoted-printable soft line break joined")
        let encoded = try await body(inbox, "=E9")
        XCTAssertEqual(encoded, [], "the encoded form is not what is searched")
        let rawBase64 = try await body(inbox, String(Data("Viele".utf8).base64EncodedString().prefix(6)))
        XCTAssertEqual(rawBase64, [])
        let none = try await body(inbox, "zeppelin")
        XCTAssertEqual(none, [])
    }

    func testMultipartIndexesTextPartsAndAttachmentNamesOnly() async throws {
        let alice = try await account("alice@example.org")
        let inbox = try await inbox(alice)
        let uid = try await stored(crlf(Self.multipart), alice)

        for needle in ["plain version", "bonjour le monde & co", "holiday.jpg", "widgets,42", "forwarded body",
                       "réunion", "forwarded@example.org"] {
            let found = try await body(inbox, needle)
            XCTAssertEqual(found, [uid], needle)
        }
        for needle in ["secretword", "color: red", "hidden", "invisible comment", "<p>", "&nbsp;", "holiday photos"] {
            let found = try await body(inbox, needle)
            XCTAssertEqual(found, [], needle)
        }
        // The top-level header is TEXT, not BODY.
        let subject = try await text(inbox, "HOLIDAY PHOTOS")
        XCTAssertEqual(subject, [uid])
    }

    func testSubstringsShortNeedlesAndConjunctions() async throws {
        let alice = try await account("alice@example.org")
        let inbox = try await inbox(alice)
        let one = try await stored(crlf("Subject: a\n\nThe quick brown fox\njumps over the lazy dog.\n"), alice)
        let two = try await stored(crlf("Subject: b\n\nA lazy afternoon, ox carts, \"quoted\" words.\n"), alice)

        let substring = try await body(inbox, "ICK BRO")
        XCTAssertEqual(substring, [one])
        let acrossLines = try await body(inbox, "fox jumps")
        XCTAssertEqual(acrossLines, [one], "a line break counts as a space")
        let both = try await body(inbox, "lazy")
        XCTAssertEqual(both, [one, two])
        let and = try await body(inbox, "lazy", "quick")
        XCTAssertEqual(and, [one])
        let twoLetters = try await body(inbox, "OX")
        XCTAssertEqual(twoLetters, [one, two], "fox and ox: below 3 characters, the stored text is scanned")
        let oneLetter = try await body(inbox, "q")
        XCTAssertEqual(oneLetter, [one, two])
        let quote = try await body(inbox, "\"quoted\"")
        XCTAssertEqual(quote, [two], "FTS5 quoting is escaped")
        let empty = try await body(inbox, "")
        XCTAssertEqual(empty, [one, two], "the empty string is in every message")
        let operators = try await body(inbox, "lazy OR NOT *")
        XCTAssertEqual(operators, [], "needles are literal, never FTS5 syntax")
    }

    func testTextCoversHeadersEncodedWordsAndThePrefix() async throws {
        let alice = try await account("alice@example.org")
        let inbox = try await inbox(alice)
        let uid = try await stored(crlf("From: Zoë <zoe@example.net>\nSubject: =?UTF-8?B?w4l0w6kgw6AgUGFyaXM=?=\n\nbody words\n"), alice,
                                   prefix: "Received: from relay.example.com\r\n\tby mx.example.org\r\n")
        let plain = try await stored(crlf("Subject: other\n\nnothing\n"), alice)

        let encodedWord = try await text(inbox, "été à paris")
        XCTAssertEqual(encodedWord, [uid])
        let address = try await text(inbox, "ZOE@EXAMPLE")
        XCTAssertEqual(address, [uid])
        let prefix = try await text(inbox, "relay.example.com by mx")
        XCTAssertEqual(prefix, [uid], "the per-recipient prefix, unfolded")
        let prefixNotBody = try await body(inbox, "relay.example")
        XCTAssertEqual(prefixNotBody, [])
        let bodyToo = try await text(inbox, "body words")
        XCTAssertEqual(bodyToo, [uid])
        let everywhere = try await text(inbox, "subject")
        XCTAssertEqual(everywhere, [uid, plain])
        // Prefixes that are not plain ASCII take the slow path and are folded too.
        let eightBit = try await stored(crlf("Subject: 8\n\nx\n"), alice, prefix: "X-Note: Zoë Ärger\r\n")
        let encoded = try await stored(crlf("Subject: 9\n\ny\n"), alice, prefix: "X-Note: =?utf-8?q?D=C3=A9j=C3=A0?=\r\n")
        let zoe = try await text(inbox, "ZOE")
        XCTAssertEqual(zoe, [uid, eightBit])
        let arger = try await text(inbox, "zoe arger")
        XCTAssertEqual(arger, [eightBit])
        let deja = try await text(inbox, "deja")
        XCTAssertEqual(deja, [encoded])
        let received = try await text(inbox, "RECEIVED:")
        XCTAssertEqual(received, [uid], "ASCII fast path, case-insensitive")
    }

    func testSharedBlobIsIndexedOnceAndMailboxesStayApart() async throws {
        let alice = try await account("alice@example.org")
        let bob = try await account("bob@example.org")
        let bytes = crlf("Subject: shared\n\nsame words for both\n")
        let result = try await deliver(bytes, to: [alice, bob])
        let aliceInbox = try await inbox(alice)
        let bobInbox = try await inbox(bob)
        let pending = try await count("fulltext")
        XCTAssertEqual(pending, 0, "delivery does not index (the single writer stays fast)")
        try await store.indexPendingFullText()
        let rows = try await count("fulltext")
        XCTAssertEqual(rows, 1)
        let forAlice = try await body(aliceInbox, "same words")
        XCTAssertEqual(forAlice, [try XCTUnwrap(storedUID(result.outcomes[0]))])
        _ = try await stored(crlf("Subject: alice only\n\nsecret of alice\n"), alice)
        let forBob = try await body(bobInbox, "secret of alice")
        XCTAssertEqual(forBob, [], "another mailbox's message never answers")
    }

    func testLargeFileBlobIsIndexed() async throws {
        let alice = try await account("alice@example.org")
        let inbox = try await inbox(alice)
        var text = "Subject: large\n\n"
        while text.utf8.count < StoreLimits.inlineBlobThreshold + 10_000 { text += "filler line of a large message\n" }
        text += "needle at the very end\n"
        let uid = try await stored(crlf(text), alice)
        let isFile = try await store.pool.read { try Bool.fetchOne($0, sql: "SELECT data IS NULL FROM blob") }
        XCTAssertEqual(isFile, true)
        let found = try await body(inbox, "needle at the very end")
        XCTAssertEqual(found, [uid])
    }

    func testAnUnindexedMessageIsIndexedByTheFirstSearch() async throws {
        let alice = try await account("alice@example.org")
        let inbox = try await inbox(alice)
        let uid = try await stored(crlf("Subject: x\n\nwords\n"), alice)
        try await store.indexPendingFullText()
        try await store.pool.write { try $0.execute(sql: "DELETE FROM fulltext_blob") }
        let rows = try await count("fulltext")
        XCTAssertEqual(rows, 0, "the trigger removed the FTS row with its mapping")
        let answer = try await body(inbox, "words")
        XCTAssertEqual(answer, [uid], "indexed on demand, then answered")
        let after = try await count("fulltext")
        XCTAssertEqual(after, 1)
    }

    func testMigrationBackfillsMessagesStoredBeforeIt() async throws {
        let alice = try await account("alice@example.org")
        let small = try await stored(crlf(Self.quotedPrintableLatin1), alice)
        var large = "Subject: large\n\n"
        while large.utf8.count < StoreLimits.inlineBlobThreshold + 1_000 { large += "some large text\n" }
        large += "tail marker\n"
        let big = try await stored(crlf(large), alice)
        // Put the database back as it was before v5-fulltext.
        try await store.pool.write { db in
            try db.execute(sql: """
                DROP TRIGGER fulltext_blob_deleted; DROP TABLE fulltext; DROP TABLE fulltext_blob;
                DELETE FROM grdb_migrations WHERE identifier = 'v5-fulltext';
                """)
        }
        try reopen()
        let inbox = try await inbox(alice)
        let rows = try await count("fulltext")
        XCTAssertEqual(rows, 2)
        let cafe = try await body(inbox, "café")
        XCTAssertEqual(cafe, [small])
        let tail = try await body(inbox, "tail marker")
        XCTAssertEqual(tail, [big])
        // Deliveries after the migration are indexed as usual.
        let later = try await stored(crlf("Subject: later\n\ncafé again\n"), alice)
        let both = try await body(inbox, "cafe")
        XCTAssertEqual(both, [small, later])
    }

    func testRemovingABlobRemovesItsIndexRows() async throws {
        let alice = try await account("alice@example.org")
        let inbox = try await inbox(alice)
        let keep = try await stored(crlf("Subject: keep\n\nkept words\n"), alice)
        let drop = try await stored(crlf("Subject: drop\n\ndropped words\n"), alice)
        try await store.indexPendingFullText()
        let before = try await count("fulltext")
        XCTAssertEqual(before, 2)
        // The expunge removes the unreferenced inline blob, and the trigger its index rows.
        try await store.expunge(mailboxID: inbox.id, uids: [drop])
        let removed = try await store.collectGarbage()
        XCTAssertEqual(removed, 0, "nothing left for the collector")
        let rows = try await count("fulltext")
        let mappings = try await count("fulltext_blob")
        XCTAssertEqual(rows, 1)
        XCTAssertEqual(mappings, 1)
        let words = try await body(inbox, "words")
        XCTAssertEqual(words, [keep])
        let content = try await store.pool.read { try String.fetchAll($0, sql: "SELECT body FROM fulltext") }
        XCTAssertEqual(content, ["kept words "])
    }

    func testHostileStructuresStayBounded() async throws {
        let alice = try await account("alice@example.org")
        let inbox = try await inbox(alice)
        // Nesting beyond MIMELimits.maxNestingDepth: indexed without trouble (the parser keeps
        // the deepest multipart as a leaf, so its text is not reached).
        var nested = "Subject: deep\nContent-Type: multipart/mixed; boundary=\"b0\"\n\n"
        for level in 0 ..< 200 { nested += "--b\(level)\nContent-Type: multipart/mixed; boundary=\"b\(level + 1)\"\n\n" }
        nested += "--b200\nContent-Type: text/plain\n\nnested text\n"
        _ = try await stored(crlf(nested), alice)
        let deep = try await body(inbox, "nested text")
        XCTAssertNotNil(deep)
        // An unknown charset, an unterminated tag, numeric references out of range.
        let html = "Subject: html\nContent-Type: text/html; charset=x-unknown\n\n<b>bold text &#99999999999; &#x110000; &#233;t&eacute; <unterminated\n"
        let uid = try await stored(crlf(html), alice)
        let found = try await body(inbox, "bold text &#99999999999; &#x110000; et&eacute;")
        XCTAssertEqual(found, [uid])
        let cut = try await body(inbox, "unterminated")
        XCTAssertEqual(cut, [], "an unterminated tag swallows the rest, crudely")
        XCTAssertEqual(FullText.stripHTML("a < b & c"), "a < b & c")
        XCTAssertEqual(FullText.prefix("aé", maxBytes: 2), "a", "cut at a scalar boundary")
        XCTAssertEqual(FullText.normalize("  Ça\r\n\tVA  "), " ca va ")
        // The ASCII fast path agrees with the general one on every ASCII octet.
        let ascii = String(decoding: (0 ..< 128).map { UInt8($0) } + Array("Hello  World\r\n\t\u{7F}END".utf8), as: UTF8.self)
        XCTAssertEqual(FullText.normalize(ascii), FullText.normalizeUnicode(ascii))
    }

    /// Not a benchmark: shows what extraction and indexing cost per delivery, for the report.
    func testDeliveryCostWithIndexIsReasonable() async throws {
        let alice = try await account("alice@example.org")
        let store: SQLiteMailStore = self.store
        let start = Date()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0 ..< 500 {
                let bytes = Self.message("cost\(i)", size: 4_000)
                group.addTask {
                    _ = try await store.deliver(Delivery(message: .memory(bytes), recipients: [DeliveryRecipient(accountID: alice.id)]))
                }
            }
            try await group.waitForAll()
        }
        let elapsed = Date().timeIntervalSince(start)
        print("full-text: 500 deliveries of 4 KB with indexing in \(String(format: "%.2f", elapsed)) s")
        XCTAssertLessThan(elapsed, 60)
        let inbox = try await inbox(alice)
        let one = try await body(inbox, "message cost499.")
        XCTAssertEqual(one?.count, 1)
    }
}
