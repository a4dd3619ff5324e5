// QUOTA (RFC 9208, read-only) and the ways out of the selected state: CLOSE (silent expunge,
// none when read-only), UNSELECT (no expunge, RFC 3691), a failed SELECT (RFC 9051 §6.3.2).

import FacteurIdentity
@testable import FacteurIMAP
import FacteurStore
import Foundation
import XCTest

final class IMAPQuotaAndCloseTests: IMAPStoreTestCase {
    func lines(_ c: inout TestConnection, _ text: String) async -> [String] {
        await c.send(text).components(separatedBy: "\r\n").filter { !$0.isEmpty }
    }

    func inboxID() async throws -> Int64 {
        guard let inbox = try await store.mailbox(accountID: account.id, name: "INBOX") else { throw StoreError.notFound("INBOX") }
        return inbox.id
    }

    // MARK: QUOTA

    func testQuotaIsAdvertised() async {
        var c = await loggedIn()
        let caps = await lines(&c, "a1 CAPABILITY\r\n")
        for cap in ["QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE"] {
            XCTAssertTrue(caps[0].split(separator: " ").contains(Substring(cap)), "\(cap) in \(caps[0])")
        }
        XCTAssertFalse(caps[0].contains("QUOTASET"), "limits are read-only")
    }

    func testQuotaFromTheAccountsLimitsAndUsage() async throws {
        try await store.setQuota(address: "alice@example.org", Quota(bytes: 10 * 1024 * 1024, messages: 500))
        try await deliver(Self.simple)
        try await deliver(Self.multipart)
        let r1 = try await store.account(address: "alice@example.org")
        let usage = try XCTUnwrap(try r1).usage
        XCTAssertEqual(usage.messages, 2)
        let storage = (usage.bytes + 1023) / 1024
        var c = await loggedIn()
        let r2 = await lines(&c, "a1 GETQUOTAROOT INBOX\r\n")
        XCTAssertEqual(r2,
                       ["* QUOTAROOT INBOX \"\"", "* QUOTA \"\" (STORAGE \(storage) 10240 MESSAGE 2 500)", "a1 OK GETQUOTAROOT completed"])
        let r3 = await lines(&c, "a2 GETQUOTA \"\"\r\n")
        XCTAssertEqual(r3,
                       ["* QUOTA \"\" (STORAGE \(storage) 10240 MESSAGE 2 500)", "a2 OK GETQUOTA completed"])
        // Usage follows deliveries made after login.
        try await deliver(Self.simple)
        let r4 = await lines(&c, "a3 GETQUOTA \"\"\r\n").first?.contains("MESSAGE 3 500")
        XCTAssertEqual(r4, true)
        let r5 = await lines(&c, "a4 GETQUOTA \"other\"\r\n")
        XCTAssertEqual(r5, ["a4 NO [NONEXISTENT] No such quota root"])
        let r6 = await lines(&c, "a5 GETQUOTAROOT Nowhere\r\n")
        XCTAssertEqual(r6, ["a5 NO [NONEXISTENT] No such mailbox"])
        let r7 = await lines(&c, "a6 SETQUOTA \"\" (STORAGE 512)\r\n")
        XCTAssertEqual(r7, ["a6 NO [NOPERM] Quotas are set by the administrator"])
        let r8 = await lines(&c, "a7 SETQUOTA \"\" (STORAGE)\r\n").first?.hasPrefix("a7 BAD")
        XCTAssertEqual(r8, true)
        let r9 = await lines(&c, "a8 GETQUOTA\r\n").first?.hasPrefix("a8 BAD")
        XCTAssertEqual(r9, true)
    }

    func testOnlyTheLimitedResourcesAreListed() async throws {
        try await store.setQuota(address: "alice@example.org", Quota(messages: 10))
        var c = await loggedIn()
        let r10 = await lines(&c, "a1 GETQUOTA \"\"\r\n")
        XCTAssertEqual(r10, ["* QUOTA \"\" (MESSAGE 0 10)", "a1 OK GETQUOTA completed"])
    }

    func testUnlimitedAccountHasNoQuotaRoot() async {
        var c = await loggedIn()
        let r11 = await lines(&c, "a1 GETQUOTAROOT INBOX\r\n")
        XCTAssertEqual(r11, ["* QUOTAROOT INBOX", "a1 OK GETQUOTAROOT completed"])
        let r12 = await lines(&c, "a2 GETQUOTA \"\"\r\n")
        XCTAssertEqual(r12, ["a2 NO [NONEXISTENT] No such quota root"])
    }

    func testQuotaCommandsNeedAuthentication() async {
        var c = connect()
        let r13 = await lines(&c, "a1 GETQUOTAROOT INBOX\r\n")
        XCTAssertEqual(r13, ["a1 BAD GETQUOTAROOT Log in first"])
    }

    func testStatusDeletedStorage() async throws {
        try await deliver(Self.simple)
        try await deliver(Self.simple, flags: [.deleted])
        try await deliver(Self.simple, flags: [.deleted])
        let r14 = try await store.message(mailboxID: try await inboxID(), uid: 2)
        let size = try XCTUnwrap(try r14).size
        var c = await loggedIn()
        let r15 = await lines(&c, "a1 STATUS INBOX (DELETED DELETED-STORAGE)\r\n")
        XCTAssertEqual(r15,
                       ["* STATUS INBOX (DELETED 2 DELETED-STORAGE \((2 * size + 1023) / 1024))", "a1 OK STATUS completed"])
        XCTAssertEqual(IMAPQuota.kibibytes(0), 0)
        XCTAssertEqual(IMAPQuota.kibibytes(1), 1)
        XCTAssertEqual(IMAPQuota.kibibytes(1024), 1)
        XCTAssertEqual(IMAPQuota.kibibytes(1025), 2)
        XCTAssertEqual(IMAPQuota.kibibytes(-5), 0)
    }

    // MARK: CLOSE, UNSELECT

    func testCloseExpungesSilently() async throws {
        try await deliver(Self.simple)
        try await deliver(Self.simple, flags: [.deleted])
        var c = await loggedIn()
        _ = await c.send("a1 SELECT INBOX\r\n")
        let r16 = await lines(&c, "a2 CLOSE\r\n")
        XCTAssertEqual(r16, ["a2 OK CLOSE completed"], "no EXPUNGE responses (RFC 9051 §6.4.1)")
        XCTAssertEqual(c.session.state, .authenticated)
        XCTAssertNil(c.session.selected)
        let r17 = try await store.messages(mailboxID: try await inboxID())
        let remaining = try r17
        XCTAssertEqual(remaining.map(\.uid), [1])
        let r18 = await lines(&c, "a3 FETCH 1 FLAGS\r\n")
        XCTAssertEqual(r18, ["a3 BAD FETCH Select a mailbox first"])
        let r19 = await lines(&c, "a4 CLOSE\r\n")
        XCTAssertEqual(r19, ["a4 BAD CLOSE Select a mailbox first"])
        let r20 = await lines(&c, "a5 UNSELECT\r\n")
        XCTAssertEqual(r20, ["a5 BAD UNSELECT Select a mailbox first"])
    }

    func testCloseAfterExamineDoesNotExpunge() async throws {
        try await deliver(Self.simple, flags: [.deleted])
        var c = await loggedIn()
        _ = await c.send("a1 EXAMINE INBOX\r\n")
        let r21 = await lines(&c, "a2 CLOSE\r\n")
        XCTAssertEqual(r21, ["a2 OK CLOSE completed"])
        let r22 = try await store.messages(mailboxID: try await inboxID())
        let remaining = try r22
        XCTAssertEqual(remaining.count, 1)
    }

    func testUnselectDoesNotExpunge() async throws {
        try await deliver(Self.simple, flags: [.deleted])
        var c = await loggedIn()
        _ = await c.send("a0 ENABLE QRESYNC\r\na1 SELECT INBOX\r\n")
        let r23 = await lines(&c, "a2 UNSELECT\r\n")
        XCTAssertEqual(r23, ["a2 OK UNSELECT completed"])
        XCTAssertEqual(c.session.state, .authenticated)
        let r24 = try await store.messages(mailboxID: try await inboxID())
        let remaining = try r24
        XCTAssertEqual(remaining.count, 1)
        // With QRESYNC on, a silent CLOSE stays silent too (no VANISHED).
        _ = await c.send("a3 SELECT INBOX\r\n")
        let r25 = await lines(&c, "a4 CLOSE\r\n")
        XCTAssertEqual(r25, ["a4 OK CLOSE completed"])
    }

    func testOtherSessionsChangesAreDroppedOnClose() async throws {
        try await deliver(Self.simple)
        var a = await loggedIn()
        var b = await loggedIn()
        _ = await a.send("a1 SELECT INBOX\r\n")
        _ = await b.send("b1 SELECT INBOX\r\nb2 STORE 1 +FLAGS (\\Flagged)\r\n")
        try await deliver(Self.simple)
        await settle()
        let r26 = await lines(&a, "a2 UNSELECT\r\n")
        XCTAssertEqual(r26, ["a2 OK UNSELECT completed"])
        let r27 = await lines(&a, "a3 NOOP\r\n")
        XCTAssertEqual(r27, ["a3 OK NOOP completed"], "nothing from the closed mailbox")
    }

    func testFailedSelectLeavesNoMailboxSelected() async throws {
        var c = await loggedIn()
        _ = await c.send("a1 SELECT INBOX\r\n")
        XCTAssertEqual(c.session.state, .selected)
        let r28 = await lines(&c, "a2 SELECT Nowhere\r\n")
        XCTAssertEqual(r28, ["a2 NO [NONEXISTENT] No such mailbox"])
        XCTAssertEqual(c.session.state, .authenticated)
        let r29 = await lines(&c, "a3 UNSELECT\r\n")
        XCTAssertEqual(r29, ["a3 BAD UNSELECT Select a mailbox first"])
    }
}
