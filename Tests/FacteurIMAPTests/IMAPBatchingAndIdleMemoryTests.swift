// The batched paths of the IMAP commands (STORE in one transaction per batch, EXPUNGE from the
// \Deleted UIDs alone, FETCH bytes and SEARCH summaries a group per query: RFC 9051 §6.4) answer
// exactly as the per-message paths did, and COMPRESS=DEFLATE's inflater (RFC 4978, RFC 1951)
// survives having its zlib state set aside while idle and rebuilt from its window.

@testable import FacteurIMAP
import FacteurStore
import Foundation
import NIOCore
import XCTest

final class IMAPBatchingTests: IMAPStoreTestCase {
    func lines(_ c: inout TestConnection, _ text: String) async -> [String] {
        await c.send(text).components(separatedBy: "\r\n").filter { !$0.isEmpty }
    }

    func message(_ i: Int) -> String {
        "From: Bob <bob@example.net>\r\nTo: alice@example.org\r\nSubject: note \(i)\r\nMessage-ID: <\(i)@example.net>\r\n\r\nBody \(i).\r\n"
    }

    func testStoreOnManyMessagesGivesEachItsOwnModSeqInOrder() async throws {
        for i in 1...5 { try await deliver(message(i)) }
        var c = await loggedIn()
        _ = await c.send("a1 SELECT INBOX (CONDSTORE)\r\n")
        let reply = await lines(&c, "a2 STORE 2:4 +FLAGS (\\Flagged $Work)\r\n")
        XCTAssertEqual(reply.count, 4, "\(reply)")
        XCTAssertEqual(reply.last, "a2 OK STORE completed")
        let found = try await store.mailbox(accountID: account.id, name: "INBOX")
        let inbox = try XCTUnwrap(found)
        var previous: UInt64 = 0
        for (index, uid) in (2...4).enumerated() {
            let stored = try await store.message(mailboxID: inbox.id, uid: UInt32(uid))
            let record = try XCTUnwrap(stored)
            XCTAssertEqual(reply[index], "* \(uid) FETCH (UID \(uid) FLAGS (\\Flagged $Work) MODSEQ (\(record.modSeq)))")
            XCTAssertGreaterThan(record.modSeq, previous)
            previous = record.modSeq
        }
        XCTAssertEqual(inbox.highestModSeq, previous)
        // Unchanged messages keep their MODSEQ: a second identical STORE changes nothing.
        let again = await lines(&c, "a3 STORE 2:4 +FLAGS.SILENT (\\Flagged)\r\n")
        XCTAssertEqual(again, ["a3 OK STORE completed"])
        let after = try await store.mailbox(accountID: account.id, name: "INBOX")
        XCTAssertEqual(after?.highestModSeq, previous)
    }

    func testExpungeRemovesOnlyDeletedAndUIDExpungeOnlyThoseNamed() async throws {
        for i in 1...5 { try await deliver(message(i)) }
        var c = await loggedIn()
        _ = await c.send("a1 SELECT INBOX\r\n")
        _ = await c.send("a2 STORE 1,3,5 +FLAGS.SILENT (\\Deleted)\r\n")
        let uidExpunge = await lines(&c, "a3 UID EXPUNGE 3:5\r\n")
        XCTAssertEqual(uidExpunge, ["* 5 EXPUNGE", "* 3 EXPUNGE", "a3 OK UID EXPUNGE completed"])
        let expunge = await lines(&c, "a4 EXPUNGE\r\n")
        XCTAssertEqual(expunge, ["* 1 EXPUNGE", "a4 OK EXPUNGE completed"])
        let search = await lines(&c, "a5 UID SEARCH ALL\r\n")
        XCTAssertEqual(search.first, "* SEARCH 2 4")
    }

    func testFetchHeadersOfManyMessagesReadInGroupsMatchEachMessage() async throws {
        for i in 1...30 { try await deliver(message(i), prefix: i % 2 == 0 ? "X-Prefix: \(i)\r\n" : "") }
        var c = await loggedIn()
        _ = await c.send("a1 SELECT INBOX\r\n")
        let reply = await c.send("a2 FETCH 1:30 (UID BODY.PEEK[HEADER])\r\n")
        for i in 1...30 {
            let header = (i % 2 == 0 ? "X-Prefix: \(i)\r\n" : "") + message(i).components(separatedBy: "\r\n\r\n")[0] + "\r\n\r\n"
            XCTAssertTrue(reply.contains("* \(i) FETCH (UID \(i) BODY[HEADER] {\(header.utf8.count)}\r\n\(header))\r\n"), "message \(i): \(reply)")
        }
        XCTAssertTrue(reply.hasSuffix("a2 OK FETCH completed\r\n"))
        // Header-only fetches read the header alone; the second time from the cache. Both must
        // give what the whole message gives.
        let again = await c.send("a3 FETCH 1:30 (UID BODY.PEEK[HEADER])\r\n")
        XCTAssertEqual(again.replacingOccurrences(of: "a3 OK", with: "a2 OK"), reply)
        let fields = await c.send("a4 FETCH 2 (BODY.PEEK[HEADER.FIELDS (X-PREFIX SUBJECT)])\r\n")
        XCTAssertTrue(fields.hasPrefix("* 2 FETCH (BODY[HEADER.FIELDS (X-PREFIX SUBJECT)] {"), fields)
        XCTAssertTrue(fields.contains("X-Prefix: 2\r\n"), fields)
        let both = await c.send("a5 FETCH 2 (BODY.PEEK[HEADER] BODY.PEEK[TEXT])\r\n")
        let text = message(2).components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
        XCTAssertTrue(both.contains("BODY[TEXT] {\(text.utf8.count)}\r\n\(text))"), both)
        // A group never takes more than its byte budget, but always at least one message.
        let found = try await store.mailbox(accountID: account.id, name: "INBOX")
        let records = try await store.messages(mailboxID: try XCTUnwrap(found).id)
        var byUID: [UInt32: MessageRecord] = [:]
        for r in records { byUID[r.uid] = r }
        let all = records.enumerated().map { (msn: $0.offset + 1, uid: $0.element.uid) }
        XCTAssertEqual(IMAPCommandRunner.nextBytesGroup(all[...], byUID: byUID, changedSince: nil).count, 30)
        XCTAssertEqual(IMAPCommandRunner.nextBytesGroup(all[29...], byUID: byUID, changedSince: nil).count, 1)
    }

    func testSearchSubjectWithPrefetchedSummaries() async throws {
        for i in 1...12 { try await deliver(message(i)) }
        var c = await loggedIn()
        _ = await c.send("a1 SELECT INBOX\r\n")
        let reply = await lines(&c, "a2 UID SEARCH OR SUBJECT \"note 1\" FROM nobody\r\n")
        XCTAssertEqual(reply.first, "* SEARCH 1 10 11 12")
        XCTAssertTrue(IMAPSearchMatcher.needsSummary(.not(.or(.seen, .subject("x")))))
        // The ASCII fast path agrees with Foundation's case-insensitive search; non-ASCII goes to Foundation.
        XCTAssertTrue(IMAPSearchMatcher.contains("Re: Bench 12", "bench 1"))
        XCTAssertFalse(IMAPSearchMatcher.contains("Re: Bench 12", "bench 13"))
        XCTAssertTrue(IMAPSearchMatcher.contains("x", ""))
        XCTAssertFalse(IMAPSearchMatcher.contains("ab", "abc"))
        XCTAssertNil(IMAPSearchMatcher.asciiContains("Café".utf8, "cafe".utf8))
        XCTAssertTrue(IMAPSearchMatcher.contains("Café crème", "CAFE"))
        XCTAssertFalse(IMAPSearchMatcher.needsSummary(.and([.seen, .uid(.ranges([SequenceRange(.number(1))]))])))
    }
}

final class IMAPInflaterReleaseTests: XCTestCase {
    /// What Python's zlib (compressobj(6, DEFLATED, -15), a sync flush after each chunk, as a
    /// client writes per RFC 4978 §4) makes of `first`, `second` and "DONE\r\n" in one stream.
    static let first = "a1 SELECT \"INBOX/some rather long mailbox name\"\r\n"
    static let second = "a2 SELECT \"INBOX/some rather long mailbox name\"\r\nb IDLE\r\n"
    static let chunks: [[UInt8]] = [
        [74, 52, 84, 8, 118, 245, 113, 117, 14, 81, 80, 242, 244, 115, 242, 143, 208, 47, 206, 207, 77, 85, 40, 74, 44, 201, 72, 45,
         82, 200, 201, 207, 75, 87, 200, 77, 204, 204, 73, 202, 175, 80, 200, 75, 204, 77, 85, 226, 229, 2, 0, 0, 0, 255, 255],
        [74, 52, 34, 81, 67, 146, 130, 167, 139, 143, 43, 47, 23, 0, 0, 0, 255, 255],
        [114, 241, 247, 3, 146, 0, 0, 0, 0, 255, 255],
    ]
    /// "a1 NOOP and some more text to make a block\r\n", a stream of its own.
    static let noop: [UInt8] = [74, 52, 84, 240, 243, 247, 15, 80, 72, 204, 75, 81, 40, 206, 207, 77, 85, 200, 205, 47, 74, 85, 40,
                                73, 173, 40, 81, 40, 201, 87, 200, 77, 204, 78, 85, 72, 84, 72, 202, 201, 79, 206, 230, 229, 2, 0,
                                0, 0, 255, 255]

    func inflate(_ inflater: RawInflater, _ chunk: ByteBuffer) throws -> String {
        var input = chunk
        var text = ""
        while true {
            var output = ByteBufferAllocator().buffer(capacity: 64)
            let progressed = try inflater.inflate(from: &input, to: &output)
            text += output.readString(length: output.readableBytes) ?? ""
            if !progressed || input.readableBytes == 0 && output.writableBytes > 0 { break }
        }
        return text
    }

    func testReleasedInflaterResumesWithBackReferencesIntoItsWindow() throws {
        // The second command repeats the first: the client's deflater refers back to it.
        let first = Self.first, second = Self.second
        let chunks = Self.chunks.map { ByteBuffer(bytes: $0) }
        XCTAssertLessThan(chunks[1].readableBytes, second.utf8.count, "the second chunk uses back-references")
        let inflater = try RawInflater()
        XCTAssertEqual(try inflate(inflater, chunks[0]), first)
        XCTAssertTrue(inflater.release())
        XCTAssertTrue(inflater.isReleased)
        XCTAssertEqual(try inflate(inflater, chunks[1]), second)
        XCTAssertFalse(inflater.isReleased)
        XCTAssertTrue(inflater.release())
        XCTAssertEqual(try inflate(inflater, chunks[2]), "DONE\r\n")
    }

    func testNoReleaseInTheMiddleOfABlock() throws {
        let inflater = try RawInflater()
        var half = ByteBuffer(bytes: Self.noop)
        let head = try XCTUnwrap(half.readSlice(length: half.readableBytes / 2))
        let start = try inflate(inflater, head)
        XCTAssertFalse(inflater.release(), "mid-block: the state must stay")
        XCTAssertEqual(start + (try inflate(inflater, half)), "a1 NOOP and some more text to make a block\r\n")
    }

    func testCorruptInputThrows() throws {
        let inflater = try RawInflater()
        var garbage = ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        var output = ByteBufferAllocator().buffer(capacity: 64)
        XCTAssertThrowsError(try inflater.inflate(from: &garbage, to: &output))
    }
}
