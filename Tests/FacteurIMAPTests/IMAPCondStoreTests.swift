// CONDSTORE and QRESYNC (RFC 7162) as transcripts: MODSEQ in FETCH, CHANGEDSINCE,
// UNCHANGEDSINCE with MODIFIED, SEARCH MODSEQ, HIGHESTMODSEQ in SELECT and STATUS, implicit
// enabling, ENABLE QRESYNC, SELECT (QRESYNC ...), UID FETCH (CHANGEDSINCE VANISHED) and VANISHED
// in place of EXPUNGE. Expected MODSEQ values are read from the store, not guessed.

import FacteurIdentity
@testable import FacteurIMAP
import FacteurStore
import Foundation
import XCTest

final class IMAPCondStoreTests: IMAPStoreTestCase {
    func lines(_ c: inout TestConnection, _ text: String) async -> [String] {
        await c.send(text).components(separatedBy: "\r\n").filter { !$0.isEmpty }
    }

    func inbox() async throws -> MailboxRecord {
        let r1 = try await store.mailbox(accountID: account.id, name: "INBOX")
        return try XCTUnwrap(r1)
    }

    func modSeq(_ uid: UInt32) async throws -> UInt64 {
        let r2 = try await store.message(mailboxID: try await inbox().id, uid: uid)
        return try XCTUnwrap(r2).modSeq
    }

    func testCapabilitiesAdvertiseCondStoreAndQResync() async {
        var c = await loggedIn()
        let caps = await lines(&c, "a1 CAPABILITY\r\n")
        XCTAssertTrue(caps[0].contains(" CONDSTORE"), caps[0])
        XCTAssertTrue(caps[0].contains(" QRESYNC"), caps[0])
    }

    func testSelectCondStoreAndFetchModSeq() async throws {
        try await deliver(Self.simple)
        try await deliver(Self.simple)
        var c = await loggedIn()
        let highest = try await inbox().highestModSeq
        let select = await lines(&c, "a1 SELECT INBOX (CONDSTORE)\r\n")
        XCTAssertTrue(select.contains("* OK [HIGHESTMODSEQ \(highest)] Highest"), "\(select)")
        let m1 = try await modSeq(1), m2 = try await modSeq(2)
        let fetch = await lines(&c, "a2 FETCH 1:* (FLAGS MODSEQ)\r\n")
        XCTAssertEqual(fetch, ["* 1 FETCH (FLAGS () MODSEQ (\(m1)))", "* 2 FETCH (FLAGS () MODSEQ (\(m2)))", "a2 OK FETCH completed"])
    }

    func testPlainSelectHasNoHighestModSeqUntilEnabled() async throws {
        try await deliver(Self.simple)
        var c = await loggedIn()
        let select = await lines(&c, "a1 SELECT INBOX\r\n")
        XCTAssertFalse(select.contains { $0.contains("HIGHESTMODSEQ") }, "\(select)")
        // RFC 7162 §3.1: FETCH MODSEQ enables CONDSTORE; the client then learns HIGHESTMODSEQ.
        let highest = try await inbox().highestModSeq
        let fetch = await lines(&c, "a2 FETCH 1 (MODSEQ)\r\n")
        let r3 = try await modSeq(1)
        XCTAssertEqual(fetch, ["* OK [HIGHESTMODSEQ \(highest)] Highest", "* 1 FETCH (MODSEQ (\(try r3)))", "a2 OK FETCH completed"])
        XCTAssertTrue(c.session.condStoreEnabled)
        // Once enabled, STORE's FETCH responses carry UID and MODSEQ (RFC 7162 §3.1).
        let store = await lines(&c, "a3 STORE 1 +FLAGS (\\Flagged)\r\n")
        let r4 = try await modSeq(1)
        XCTAssertEqual(store, ["* 1 FETCH (UID 1 FLAGS (\\Flagged) MODSEQ (\(try r4)))", "a3 OK STORE completed"])
    }

    func testFetchChangedSince() async throws {
        try await deliver(Self.simple)
        try await deliver(Self.simple)
        try await deliver(Self.simple)
        var c = await loggedIn()
        _ = await c.send("a0 ENABLE CONDSTORE\r\na1 SELECT INBOX\r\n")
        let before = try await inbox().highestModSeq
        _ = await c.send("a2 STORE 2 +FLAGS.SILENT (\\Answered)\r\n")
        let m2 = try await modSeq(2)
        XCTAssertGreaterThan(m2, before)
        let fetch = await lines(&c, "a3 FETCH 1:* (FLAGS) (CHANGEDSINCE \(before))\r\n")
        XCTAssertEqual(fetch, ["* 2 FETCH (FLAGS (\\Answered) MODSEQ (\(m2)))", "a3 OK FETCH completed"])
        let uidFetch = await lines(&c, "a4 UID FETCH 1:* (FLAGS) (CHANGEDSINCE \(m2))\r\n")
        XCTAssertEqual(uidFetch, ["a4 OK UID FETCH completed"])
        // CHANGEDSINCE with a malformed value is a syntax error.
        let r5 = await lines(&c, "a5 FETCH 1 (FLAGS) (CHANGEDSINCE x)\r\n").first?.hasPrefix("a5 BAD")
        XCTAssertEqual(r5, true)
    }

    func testFetchThatSetsSeenReportsUIDAndModSeqOnceCondStoreIsOn() async throws {
        try await deliver(Self.simple)
        var c = await loggedIn()
        _ = await c.send("a1 SELECT INBOX (CONDSTORE)\r\n")
        let fetch = await lines(&c, "a2 FETCH 1 (BODY[TEXT])\r\n")
        let m1 = try await modSeq(1)
        XCTAssertEqual(fetch.first, "* 1 FETCH (UID 1 BODY[TEXT] {21}")
        XCTAssertEqual(fetch.dropFirst(3).first, " FLAGS (\\Seen) MODSEQ (\(m1)))")
        XCTAssertEqual(fetch.last, "a2 OK FETCH completed")
    }

    func testStoreUnchangedSinceReportsModified() async throws {
        try await deliver(Self.simple)
        try await deliver(Self.simple)
        var a = await loggedIn()
        var b = await loggedIn()
        _ = await a.send("a1 SELECT INBOX (CONDSTORE)\r\n")
        _ = await b.send("b1 SELECT INBOX\r\n")
        let known = try await inbox().highestModSeq
        // Another client changes message 1 after this client last looked.
        _ = await b.send("b2 STORE 1 +FLAGS (\\Flagged)\r\n")
        await settle()
        let reply = await lines(&a, "a2 STORE 1:2 (UNCHANGEDSINCE \(known)) +FLAGS.SILENT (\\Seen)\r\n")
        let m2 = try await modSeq(2)
        XCTAssertTrue(reply.contains("* 2 FETCH (UID 2 MODSEQ (\(m2)))"), "silent, yet the new MODSEQ is reported: \(reply)")
        XCTAssertEqual(reply.last, "a2 OK [MODIFIED 1] Conditional STORE failed for some")
        let r6 = try await store.message(mailboxID: try await inbox().id, uid: 1)
        let flags1 = try XCTUnwrap(try r6).flags
        XCTAssertFalse(flags1.contains(.seen), "the modified message was left alone")
        let r7 = try await store.message(mailboxID: try await inbox().id, uid: 2)
        XCTAssertTrue(try XCTUnwrap(try r7).flags.contains(.seen))
        // UID STORE reports UIDs; UNCHANGEDSINCE 0 fails for every message (RFC 7162 §3.1.3).
        let uidReply = await lines(&a, "a3 UID STORE 2 (UNCHANGEDSINCE 0) +FLAGS (\\Draft)\r\n")
        XCTAssertEqual(uidReply.last, "a3 OK [MODIFIED 2] Conditional STORE failed for some")
    }

    func testStoreUnchangedSinceEnablesCondStoreImplicitly() async throws {
        try await deliver(Self.simple)
        var c = await loggedIn()
        _ = await c.send("a1 SELECT INBOX\r\n")
        let highest = try await inbox().highestModSeq
        let reply = await lines(&c, "a2 STORE 1 (UNCHANGEDSINCE \(highest)) +FLAGS (\\Seen)\r\n")
        XCTAssertEqual(reply.first, "* OK [HIGHESTMODSEQ \(highest)] Highest")
        let r8 = try await modSeq(1)
        XCTAssertEqual(reply.dropFirst().first, "* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ (\(try r8)))")
        XCTAssertEqual(reply.last, "a2 OK STORE completed")
    }

    func testSearchModSeq() async throws {
        try await deliver(Self.simple)
        try await deliver(Self.simple)
        var c = await loggedIn()
        _ = await c.send("a0 ENABLE CONDSTORE\r\na1 SELECT INBOX\r\n")
        let before = try await inbox().highestModSeq
        _ = await c.send("a2 STORE 2 +FLAGS (\\Flagged)\r\n")
        let m2 = try await modSeq(2)
        let r9 = await lines(&c, "a3 SEARCH MODSEQ \(before + 1)\r\n")
        XCTAssertEqual(r9, ["* SEARCH 2 (MODSEQ \(m2))", "a3 OK SEARCH completed"])
        let r10 = await lines(&c, "a4 UID SEARCH RETURN (ALL) MODSEQ \(before + 1)\r\n")
        XCTAssertEqual(r10,
                       ["* ESEARCH (TAG \"a4\") UID ALL 2 MODSEQ \(m2)", "a4 OK UID SEARCH completed"])
        // No match: no MODSEQ (RFC 7162 §3.1.5).
        let r11 = await lines(&c, "a5 SEARCH MODSEQ \(m2 + 1)\r\n")
        XCTAssertEqual(r11, ["* SEARCH", "a5 OK SEARCH completed"])
        // Without MODSEQ in the criteria the result has none.
        let r12 = await lines(&c, "a6 SEARCH FLAGGED\r\n")
        XCTAssertEqual(r12, ["* SEARCH 2", "a6 OK SEARCH completed"])
    }

    func testStatusHighestModSeq() async throws {
        try await deliver(Self.simple)
        var c = await loggedIn()
        let highest = try await inbox().highestModSeq
        let r13 = await lines(&c, "a1 STATUS INBOX (HIGHESTMODSEQ MESSAGES)\r\n")
        XCTAssertEqual(r13,
                       ["* STATUS INBOX (HIGHESTMODSEQ \(highest) MESSAGES 1)", "a1 OK STATUS completed"])
        XCTAssertTrue(c.session.condStoreEnabled)
    }

    // MARK: QRESYNC

    func testEnableQResyncImpliesCondStore() async {
        var c = await loggedIn()
        let r14 = await lines(&c, "a1 ENABLE QRESYNC\r\n")
        XCTAssertEqual(r14, ["* ENABLED QRESYNC", "a1 OK ENABLE completed"])
        XCTAssertTrue(c.session.qresyncEnabled)
        XCTAssertTrue(c.session.condStoreEnabled)
        let r15 = await lines(&c, "a2 ENABLE QRESYNC\r\n")
        XCTAssertEqual(r15, ["* ENABLED", "a2 OK ENABLE completed"])
    }

    func testSelectQResyncNeedsEnable() async throws {
        try await deliver(Self.simple)
        var c = await loggedIn()
        let uidValidity = try await inbox().uidValidity
        let r16 = await lines(&c, "a1 SELECT INBOX (QRESYNC (\(uidValidity) 1))\r\n")
        XCTAssertEqual(r16,
                       ["a1 BAD QRESYNC parameter without ENABLE QRESYNC"])
        XCTAssertEqual(c.session.state, .authenticated)
    }

    /// Three messages; then, while the client is away, 2 is flagged and 3 expunged.
    func prepareResync() async throws -> (uidValidity: UInt32, known: UInt64, m2: UInt64) {
        try await deliver(Self.simple)
        try await deliver(Self.simple)
        try await deliver(Self.simple)
        let mailbox = try await inbox()
        let known = mailbox.highestModSeq
        let m2 = try await store.setFlags(mailboxID: mailbox.id, uid: 2, flags: [.flagged], keywords: [])
        try await store.expunge(mailboxID: mailbox.id, uids: [3])
        return (mailbox.uidValidity, known, m2)
    }

    func testSelectQResyncReportsVanishedAndChangedFlags() async throws {
        let (uidValidity, known, m2) = try await prepareResync()
        var c = await loggedIn()
        _ = await c.send("a0 ENABLE QRESYNC\r\n")
        let select = await lines(&c, "a1 SELECT INBOX (QRESYNC (\(uidValidity) \(known)))\r\n")
        XCTAssertTrue(select.contains("* 2 EXISTS"), "\(select)")
        let r17 = try await inbox().highestModSeq
        XCTAssertTrue(select.contains("* OK [HIGHESTMODSEQ \(try r17)] Highest"), "\(select)")
        XCTAssertTrue(select.contains("* VANISHED (EARLIER) 3"), "\(select)")
        XCTAssertTrue(select.contains("* 2 FETCH (UID 2 FLAGS (\\Flagged) MODSEQ (\(m2)))"), "\(select)")
        XCTAssertFalse(select.contains { $0.hasPrefix("* 1 FETCH") }, "message 1 did not change: \(select)")
        XCTAssertEqual(select.last, "a1 OK [READ-WRITE] SELECT completed")
        if let vanished = select.firstIndex(of: "* VANISHED (EARLIER) 3"),
           let fetch = select.firstIndex(where: { $0.hasPrefix("* 2 FETCH") }) {
            XCTAssertLessThan(vanished, fetch, "RFC 7162 §3.2.5.1: VANISHED before the FETCHes")
        }

        // Selecting again: CLOSED ends the previous mailbox's responses (§3.2.11).
        let again = await lines(&c, "a2 EXAMINE INBOX (QRESYNC (\(uidValidity) \(try await inbox().highestModSeq)))\r\n")
        XCTAssertEqual(again.first, "* OK [CLOSED] Previous mailbox closed")
        XCTAssertFalse(again.contains { $0.contains("VANISHED") || $0.contains("FETCH") }, "nothing changed since: \(again)")
    }

    func testSelectQResyncHonoursKnownUIDsAndUIDValidity() async throws {
        let (uidValidity, known, _) = try await prepareResync()
        var c = await loggedIn()
        _ = await c.send("a0 ENABLE QRESYNC\r\n")
        let limited = await lines(&c, "a1 SELECT INBOX (QRESYNC (\(uidValidity) \(known) 1:2 (1:2 1:2)))\r\n")
        XCTAssertFalse(limited.contains { $0.contains("VANISHED") }, "3 is not a UID the client knows: \(limited)")
        XCTAssertTrue(limited.contains { $0.hasPrefix("* 2 FETCH (UID 2 ") }, "\(limited)")
        let stale = await lines(&c, "a2 SELECT INBOX (QRESYNC (\(uidValidity &+ 1) \(known)))\r\n")
        XCTAssertFalse(stale.contains { $0.contains("VANISHED") || $0.contains("FETCH") },
                       "a different UIDVALIDITY means a full resync, not a delta: \(stale)")
        XCTAssertEqual(stale.last, "a2 OK [READ-WRITE] SELECT completed")
    }

    func testUIDFetchVanished() async throws {
        let (_, known, m2) = try await prepareResync()
        var c = await loggedIn()
        _ = await c.send("a0 SELECT INBOX\r\n")
        let r18 = await lines(&c, "a1 UID FETCH 1:* (FLAGS) (CHANGEDSINCE \(known) VANISHED)\r\n").first?.hasPrefix("a1 BAD")
        XCTAssertEqual(r18, true,
                       "VANISHED needs ENABLE QRESYNC")
        _ = await c.send("a2 ENABLE QRESYNC\r\n")
        let r19 = await lines(&c, "a3 FETCH 1:* (FLAGS) (CHANGEDSINCE \(known) VANISHED)\r\n").first?.hasPrefix("a3 BAD")
        XCTAssertEqual(r19, true,
                       "VANISHED needs UID FETCH")
        let r20 = await lines(&c, "a4 UID FETCH 1:* (FLAGS) (VANISHED)\r\n").first?.hasPrefix("a4 BAD")
        XCTAssertEqual(r20, true,
                       "VANISHED needs CHANGEDSINCE")
        let r21 = await lines(&c, "a5 UID FETCH 1:* (FLAGS) (CHANGEDSINCE \(known) VANISHED)\r\n")
        XCTAssertEqual(r21,
                       ["* VANISHED (EARLIER) 3", "* 2 FETCH (UID 2 FLAGS (\\Flagged) MODSEQ (\(m2)))", "a5 OK UID FETCH completed"])
        let r22 = await lines(&c, "a6 UID FETCH 1:2 (FLAGS) (CHANGEDSINCE \(known) VANISHED)\r\n")
        XCTAssertEqual(r22,
                       ["* 2 FETCH (UID 2 FLAGS (\\Flagged) MODSEQ (\(m2)))", "a6 OK UID FETCH completed"],
                       "only UIDs inside the requested set")
    }

    func testVanishedReplacesExpungeOnceQResyncIsEnabled() async throws {
        for _ in 0 ..< 5 { try await deliver(Self.simple) }
        var a = await loggedIn()
        var b = await loggedIn()
        _ = await a.send("a0 ENABLE QRESYNC\r\na1 SELECT INBOX\r\n")
        _ = await b.send("b1 SELECT INBOX\r\n")
        let own = await lines(&a, "a2 STORE 1:2,4 +FLAGS.SILENT (\\Deleted)\r\na3 EXPUNGE\r\n")
        XCTAssertEqual(own.filter { $0.hasPrefix("* ") && !$0.contains("FETCH") }, ["* VANISHED 1:2,4"])
        let r1 = try await inbox().highestModSeq
        XCTAssertEqual(own.last, "a3 OK [HIGHESTMODSEQ \(try r1)] EXPUNGE completed")
        XCTAssertEqual(a.session.selected?.uids, [3, 5])
        // The other session (no QRESYNC) still gets EXPUNGE, highest first.
        await settle()
        let other = await lines(&b, "b2 NOOP\r\n")
        XCTAssertEqual(other, ["* 4 EXPUNGE", "* 2 EXPUNGE", "* 1 EXPUNGE", "b2 OK NOOP completed"])
        // And the QRESYNC session sees another session's expunge as VANISHED.
        _ = await b.send("b3 UID STORE 5 +FLAGS.SILENT (\\Deleted)\r\nb4 UID EXPUNGE 5\r\n")
        await settle()
        let seen = await lines(&a, "a4 NOOP\r\n")
        XCTAssertTrue(seen.contains("* VANISHED 5"), "\(seen)")
        XCTAssertFalse(seen.contains { $0.hasSuffix(" EXPUNGE") }, "\(seen)")
    }

    func testQResyncParserForms() {
        let parser = IMAPParser()
        func kind(_ text: String) -> IMAPCommand.Kind? {
            if case .command(let c) = parser.parse(Array(text.utf8)) { return c.kind }
            return nil
        }
        XCTAssertEqual(kind("A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n"),
                       .select(MailboxName("INBOX"), condStore: false, qresync: QResyncParameters(
                           uidValidity: 67890007, modSeq: 20050715194045000,
                           knownUIDs: .ranges([SequenceRange(.number(41)), SequenceRange(.number(43), .number(211)),
                                               SequenceRange(.number(214), .number(541))]))))
        let withMatch = kind("B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))\r\n")
        guard case .select(_, _, let q)? = withMatch, let q else { return XCTFail("not parsed: \(String(describing: withMatch))") }
        XCTAssertEqual(q.uidValidity, 67890007)
        XCTAssertNotNil(q.sequenceMatch)
        XCTAssertEqual(kind("A1 EXAMINE INBOX (QRESYNC (1 2) CONDSTORE)\r\n"),
                       .examine(MailboxName("INBOX"), condStore: true, qresync: QResyncParameters(uidValidity: 1, modSeq: 2)))
        XCTAssertNil(kind("A1 SELECT INBOX (QRESYNC (0 2))\r\n"), "UIDVALIDITY is non-zero")
        XCTAssertNil(kind("A1 SELECT INBOX (QRESYNC (1 0))\r\n"), "mod-sequence-value is non-zero")
        XCTAssertNil(kind("A1 SELECT INBOX (QRESYNC (1))\r\n"))
        XCTAssertNil(kind("A1 SELECT INBOX (QRESYNC (1 2 $))\r\n"))
        XCTAssertNil(kind("A1 SELECT INBOX (QRESYNC (1 2) QRESYNC (1 2))\r\n"))
        XCTAssertNil(kind("A1 SELECT INBOX (FROB)\r\n"))
        XCTAssertEqual(kind("A1 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 5 VANISHED)\r\n"),
                       .fetch(.ranges([SequenceRange(.number(1), .last)]), [.flags],
                              modifiers: FetchModifiers(changedSince: 5, vanished: true), uid: true))
    }

    func testVanishedRangesText() {
        XCTAssertEqual(SequenceSetText.ranges([1, 2, 3, 5, 7, 8, UInt32.max]), "1:3,5,7:8,\(UInt32.max)")
        XCTAssertEqual(SequenceSetText.ranges([]), "")
    }
}

final class UIDRangeSetTests: XCTestCase {
    func testMembershipAfterMerging() {
        let set = UIDRangeSet([SequenceRange(.number(10), .number(5)), SequenceRange(.number(7), .number(12)),
                               SequenceRange(.number(13)), SequenceRange(.number(20), .last), SequenceRange(.number(1))],
                              star: 30)
        let members: [UInt32] = (UInt32(0) ... 40).filter { set.contains($0) }
        let expected: [UInt32] = [1] + Array(UInt32(5) ... 13) + Array(UInt32(20) ... 30)
        XCTAssertEqual(members, expected)
        XCTAssertFalse(UIDRangeSet([], star: 5).contains(1))
        XCTAssertTrue(UIDRangeSet([SequenceRange(.number(UInt32.max))], star: 1).contains(UInt32.max))
    }

    func testManyRangesAgainstALargeMailboxIsFast() {
        var ranges: [SequenceRange] = []
        for i in 0 ..< UInt32(10_000) {
            let first: UInt32 = i * 20 + 1
            ranges.append(SequenceRange(.number(first), .number(first + 9)))
        }
        let set = UIDRangeSet(ranges, star: 300_000)
        let started = ContinuousClock.now
        var count = 0
        for uid in 1 ... UInt32(100_000) where set.contains(uid) { count += 1 }
        XCTAssertEqual(count, 50_000)
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(2))
    }
}
