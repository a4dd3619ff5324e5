// SEARCH BODY and TEXT (RFC 9051 §6.4.4) answered by the store's full-text index: decoded
// bodies, NOT and OR around the keys, the scan when the index cannot answer, and a 10,000-message
// mailbox searched without reading a single blob.

@testable import FacteurIMAP
@testable import FacteurStore
import Foundation
import GRDB
import XCTest

final class IMAPFullTextSearchTests: IMAPStoreTestCase {
    private func selected() async -> TestConnection {
        var c = await loggedIn()
        let reply = await c.send("s SELECT INBOX\r\n")
        XCTAssertTrue(reply.contains("s OK"), reply)
        return c
    }

    /// The reply without continuation requests ("+ Ready…" for literals).
    private func search(_ c: inout TestConnection, _ command: String) async -> String {
        let reply = await c.send(command)
        return reply.split(separator: "\r\n", omittingEmptySubsequences: true)
            .filter { !$0.hasPrefix("+ ") }.map { $0 + "\r\n" }.joined()
    }

    static let base64 = "From: a@example.net\r\nSubject: greetings\r\nMIME-Version: 1.0\r\n"
        + "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + Data("Viele Grüße aus München!\r\n".utf8).base64EncodedString() + "\r\n"
    static let latin1 = "From: b@example.net\r\nSubject: menu\r\nMIME-Version: 1.0\r\n"
        + "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        + "Caf=E9 cr=E8me, see you.\r\n"

    func testBodyAndTextUseDecodedText() async throws {
        try await deliver(Self.simple)                                      // 1
        try await deliver(Self.multipart)                                   // 2
        try await deliver(Self.base64)                                      // 3
        try await deliver(Self.latin1, prefix: "Received: from relay.example.com\r\n")  // 4
        var c = await selected()

        var r = await search(&c, "a SEARCH CHARSET UTF-8 BODY {8}\r\nmünchen\r\n")
        XCTAssertEqual(r, "* SEARCH 3\r\na OK SEARCH completed\r\n")
        r = await search(&c, "b SEARCH BODY CAFE\r\n")
        XCTAssertEqual(r, "* SEARCH 4\r\nb OK SEARCH completed\r\n")
        r = await search(&c, "c SEARCH BODY \"see you\"\r\n")
        XCTAssertEqual(r, "* SEARCH 1 4\r\nc OK SEARCH completed\r\n")
        r = await search(&c, "d SEARCH BODY hello\r\n")
        XCTAssertEqual(r, "* SEARCH\r\nd OK SEARCH completed\r\n", "the base64 attachment's content is not text")
        r = await search(&c, "e SEARCH NOT BODY \"see you\"\r\n")
        XCTAssertEqual(r, "* SEARCH 2 3\r\ne OK SEARCH completed\r\n")
        r = await search(&c, "f SEARCH OR BODY report (NOT TEXT greetings SUBJECT greetings)\r\n")
        XCTAssertEqual(r, "* SEARCH 2\r\nf OK SEARCH completed\r\n")
        r = await search(&c, "g SEARCH TEXT relay.example.com\r\n")
        XCTAssertEqual(r, "* SEARCH 4\r\ng OK SEARCH completed\r\n", "TEXT sees the per-recipient prefix")
        r = await search(&c, "h SEARCH BODY relay.example.com\r\n")
        XCTAssertEqual(r, "* SEARCH\r\nh OK SEARCH completed\r\n")
        r = await search(&c, "i UID SEARCH TEXT BOB BODY alice\r\n")
        XCTAssertEqual(r, "* SEARCH 1\r\ni OK UID SEARCH completed\r\n")
        r = await search(&c, "j SEARCH BODY e NOT BODY ee\r\n")
        XCTAssertEqual(r, "* SEARCH 2 3\r\nj OK SEARCH completed\r\n", "short needles")
    }

    func testAMessageWithoutAnIndexRowIsIndexedByTheSearch() async throws {
        try await deliver(Self.simple)
        try await deliver(Self.multipart)
        try await store.indexPendingFullText()
        // As if the index had lost a message (or it was not indexed yet): the search indexes it first.
        try await store.pool.write { try $0.execute(sql: "DELETE FROM fulltext_blob WHERE rowid = 1") }
        let answer = try await store.fullTextCandidates(mailboxID: 1, body: ["alice"], text: [])
        XCTAssertEqual(answer, [1])
        var c = await selected()
        let r = await search(&c, "a SEARCH OR SUBJECT report BODY alice\r\n")
        XCTAssertEqual(r, "* SEARCH 1 2\r\na OK SEARCH completed\r\n")
    }

    func testTenThousandMessagesAreSearchedWithoutReadingBlobs() async throws {
        let store: SQLiteMailStore = self.store
        let accountID = account.id
        let total = 10_000
        var next = 0
        try await withThrowingTaskGroup(of: Void.self) { group in
            func add(_ i: Int) {
                let text = "From: sender\(i % 97)@example.net\r\nSubject: note \(i)\r\n\r\n"
                    + "This is message number \(i) about topic\(i % 10).\r\nRegards.\r\n"
                // As SMTP delivers: a per-recipient prefix, which TEXT searches too.
                let prefix = Array("Return-Path: <sender\(i % 97)@example.net>\r\nReceived: from relay\(i % 7).example.net\r\n\tby mx.example.org; Fri, 27 Nov 2026 12:00:00 +0000\r\n".utf8)
                group.addTask {
                    _ = try await store.deliver(Delivery(message: .memory(Array(text.utf8)),
                                                         recipients: [DeliveryRecipient(accountID: accountID, headerPrefix: prefix)]))
                }
            }
            while next < 64 { add(next); next += 1 }
            while try await group.next() != nil {
                if next < total { add(next); next += 1 }
            }
        }
        // The background pass indexes them (new mail is not indexed inside the delivery transaction).
        let indexed = try await store.indexPendingFullText(limit: .max)
        XCTAssertEqual(indexed, total)
        // Make every blob unreadable: any search that touched one would now fail.
        try await store.pool.write { try $0.execute(sql: "UPDATE blob SET data = NULL") }
        let records = try await store.messages(mailboxID: 1)
        XCTAssertEqual(records.count, total)
        do {
            _ = try await store.messageBytes(messageID: records[0].id)
            XCTFail("the blob should be unreadable")
        } catch {}

        var c = await selected()
        var start = Date()
        var r = await search(&c, "a SEARCH RETURN (COUNT) BODY \"number 7777 \"\r\n")
        var elapsed = Date().timeIntervalSince(start)
        XCTAssertEqual(r, "* ESEARCH (TAG \"a\") COUNT 1\r\na OK SEARCH completed\r\n")
        XCTAssertLessThan(elapsed, 5, "SEARCH BODY over 10,000 messages")
        print("full-text: SEARCH BODY over \(total) messages in \(String(format: "%.3f", elapsed)) s")

        start = Date()
        r = await search(&c, "b SEARCH RETURN (COUNT) OR BODY TOPIC3. NOT TEXT sender5@\r\n")
        elapsed = Date().timeIntervalSince(start)
        // topic3: 1000 messages; NOT sender5@: all but i % 97 == 5 (104 messages), of which
        // the ones also in topic3 are counted once.
        let expected = (0 ..< total).filter { $0 % 10 == 3 || $0 % 97 != 5 }.count
        XCTAssertEqual(r, "* ESEARCH (TAG \"b\") COUNT \(expected)\r\nb OK SEARCH completed\r\n")
        XCTAssertLessThan(elapsed, 10)
        print("full-text: SEARCH OR BODY NOT TEXT over \(total) messages in \(String(format: "%.3f", elapsed)) s")

        start = Date()
        r = await search(&c, "d SEARCH RETURN (COUNT) TEXT \"relay3.example.net by mx\"\r\n")
        elapsed = Date().timeIntervalSince(start)
        let relay3 = (0 ..< total).filter { $0 % 7 == 3 }.count
        XCTAssertEqual(r, "* ESEARCH (TAG \"d\") COUNT \(relay3)\r\nd OK SEARCH completed\r\n", "the prefix, unfolded")
        XCTAssertLessThan(elapsed, 10)
        print("full-text: SEARCH TEXT (prefixes included) over \(total) messages in \(String(format: "%.3f", elapsed)) s")

        start = Date()
        r = await search(&c, "c SEARCH RETURN (COUNT) BODY s.\r\n")
        elapsed = Date().timeIntervalSince(start)
        XCTAssertEqual(r, "* ESEARCH (TAG \"c\") COUNT \(total)\r\nc OK SEARCH completed\r\n", "2 characters: stored-text scan")
        XCTAssertLessThan(elapsed, 10)
    }
}
