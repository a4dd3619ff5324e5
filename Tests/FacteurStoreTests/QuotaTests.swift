// Quotas: the RCPT-time check (452 4.2.2 full, 552 5.2.2 too large) and the delivery-time
// enforcement with its grace margin; usage counters follow appends and expunges.

@testable import FacteurStore
import XCTest

final class QuotaTests: StoreTestCase {
    func testCheckQuota() async throws {
        let alice = try await account("alice@example.org", quota: Quota(bytes: 10_000, messages: 3))
        var check = try await store.checkQuota(accountID: alice.id, incomingSize: 20_000)
        XCTAssertEqual(check, .tooLarge)
        check = try await store.checkQuota(accountID: alice.id, incomingSize: 5_000)
        XCTAssertEqual(check, .ok)
        check = try await store.checkQuota(accountID: alice.id, incomingSize: nil)
        XCTAssertEqual(check, .ok)

        try await deliver(Self.message("a", size: 6_000), to: [alice])
        check = try await store.checkQuota(accountID: alice.id, incomingSize: 5_000)
        XCTAssertEqual(check, .full, "usage + size > quota")
        check = try await store.checkQuota(accountID: alice.id, incomingSize: 3_000)
        XCTAssertEqual(check, .ok)

        try await deliver(Self.message("b", size: 4_000), to: [alice])
        check = try await store.checkQuota(accountID: alice.id, incomingSize: nil)
        XCTAssertEqual(check, .full, "usage already at quota")

        // Message-count limit.
        let bob = try await account("bob@example.org", quota: Quota(messages: 1))
        check = try await store.checkQuota(accountID: bob.id, incomingSize: 100)
        XCTAssertEqual(check, .ok)
        try await deliver(Self.message("c"), to: [bob])
        check = try await store.checkQuota(accountID: bob.id, incomingSize: 100)
        XCTAssertEqual(check, .full)

        do {
            _ = try await store.checkQuota(accountID: 9999, incomingSize: 1)
            XCTFail("unknown account")
        } catch StoreError.notFound {}
    }

    func testDeliveryBeyondGraceIsRefusedForThatRecipientOnly() async throws {
        let alice = try await account("alice@example.org", quota: Quota(bytes: 10_000))
        let bob = try await account("bob@example.org")
        try await deliver(Self.message("first", size: 9_000), to: [alice])

        // 9,000 + 1,500 = 10,500: over quota but within the 10 % grace → stored.
        let grace = Self.message("grace", size: 1_500)
        let within = try await deliver(grace, to: [alice])
        XCTAssertNotNil(storedUID(within.outcomes[0]))

        // 10,500 + 1,000 > 11,000: beyond grace → overQuota for alice, bob still gets it.
        let beyond = try await deliver(Self.message("beyond", size: 1_000), to: [alice, bob])
        XCTAssertEqual(beyond.outcomes[0], .overQuota)
        XCTAssertNotNil(storedUID(beyond.outcomes[1]))
        let aliceAfter = try await store.account(id: alice.id)
        XCTAssertEqual(aliceAfter?.usage.messages, 2)
        let bobInbox = try await inbox(bob)
        XCTAssertEqual(bobInbox.messageCount, 1)

        // Expunge frees room; usage follows.
        let aliceInbox = try await inbox(alice)
        try await store.expunge(mailboxID: aliceInbox.id, uids: [1])
        let freed = try await store.account(id: alice.id)
        XCTAssertEqual(freed?.usage, Usage(bytes: Int64(grace.count), messages: 1))
        let retry = try await deliver(Self.message("beyond", size: 1_000), to: [alice])
        XCTAssertNotNil(storedUID(retry.outcomes[0]))
    }

    func testUsageCountersFollowAppendsAndExpunges() async throws {
        let alice = try await account("alice@example.org")
        let prefix = Array("Delivered-To: alice@example.org\r\n".utf8)
        let a = Self.message("a", size: 3_000)
        let b = Self.message("b", size: 4_000)
        try await deliver(a, to: [alice], prefix: prefix)
        try await deliver(b, to: [alice], mailbox: "Archive")
        var usage = try await store.account(id: alice.id)?.usage
        XCTAssertEqual(usage, Usage(bytes: Int64(a.count + prefix.count + b.count), messages: 2))
        let inbox = try await inbox(alice)
        try await store.expunge(mailboxID: inbox.id, uids: [1])
        usage = try await store.account(id: alice.id)?.usage
        XCTAssertEqual(usage, Usage(bytes: Int64(b.count), messages: 1))
        try await store.deleteMailbox(accountID: alice.id, name: "Archive")
        usage = try await store.account(id: alice.id)?.usage
        XCTAssertEqual(usage, Usage())
    }

    func testSetQuotaAndValidation() async throws {
        try await account("alice@example.org")
        try await store.setQuota(address: "Alice@Example.org", Quota(bytes: 5, messages: 6))
        let alice = try await store.account(address: "alice@example.org")
        XCTAssertEqual(alice?.quota, Quota(bytes: 5, messages: 6))
        do {
            try await store.setQuota(address: "alice@example.org", Quota(bytes: -1))
            XCTFail("negative quota")
        } catch StoreError.invalid {}
        do {
            try await store.setQuota(address: "nobody@example.org", .unlimited)
            XCTFail("unknown account")
        } catch StoreError.notFound {}
    }
}
