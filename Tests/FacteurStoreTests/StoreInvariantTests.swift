// IMAP invariants of SQLiteMailStore: UIDs strictly increase and are never reused (RFC 9051
// §2.3.1.1), MODSEQ rises on every change (RFC 7162 §3.1), UIDVALIDITY is stable across reopen
// and new for every incarnation of a name; migrations, reopen and the default mailboxes.

@testable import FacteurStore
import Foundation
import XCTest

final class StoreInvariantTests: StoreTestCase {
    func testMigrationsCreateEverythingInAnEmptyDirectory() async throws {
        XCTAssertTrue(FileManager.default.fileExists(atPath: directory + "/facteur.sqlite"))
        var isDirectory: ObjCBool = false
        XCTAssertTrue(FileManager.default.fileExists(atPath: directory + "/blobs", isDirectory: &isDirectory))
        XCTAssertTrue(isDirectory.boolValue)
        for table in [SQLiteMailStore.Table.blob, .message, .mailbox, .account, .alias, .domain, .expunged] {
            let count = try await store.rowCount(table)
            XCTAssertEqual(count, 0, "\(table)")
        }
        // WAL, and a commit is durable when it returns.
        let journal = try await store.writerPragma("journal_mode")
        let synchronous = try await store.writerPragma("synchronous")
        XCTAssertEqual(journal, "wal")
        XCTAssertEqual(synchronous, "2", "synchronous = FULL")
        // Opening again runs no migration twice.
        try reopen()
        let domains = try await store.domains()
        XCTAssertEqual(domains, [])
    }

    func testNewAccountGetsSubscribedSpecialUseMailboxes() async throws {
        let alice = try await account("alice@example.org")
        let mailboxes = try await store.mailboxes(accountID: alice.id)
        XCTAssertEqual(mailboxes.map(\.name), ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"])
        let uses = Dictionary(uniqueKeysWithValues: mailboxes.map { ($0.name, $0.specialUse) })
        XCTAssertEqual(uses["INBOX"], .some(nil))
        XCTAssertEqual(uses["Sent"], .sent)
        XCTAssertEqual(uses["Drafts"], .drafts)
        XCTAssertEqual(uses["Junk"], .junk)
        XCTAssertEqual(uses["Trash"], .trash)
        XCTAssertEqual(uses["Archive"], .archive)
        XCTAssertTrue(mailboxes.allSatisfy(\.subscribed))
        XCTAssertTrue(mailboxes.allSatisfy { $0.uidNext == 1 && $0.messageCount == 0 })
        XCTAssertEqual(Set(mailboxes.map(\.uidValidity)).count, mailboxes.count, "UIDVALIDITY unique per mailbox")
    }

    func testUIDsStrictlyIncreaseAndAreNeverReusedAfterExpunge() async throws {
        let alice = try await account("alice@example.org")
        var uids: [UInt32] = []
        for n in 0 ..< 5 {
            let result = try await deliver(Self.message("m\(n)"), to: [alice])
            uids += [storedUID(result.outcomes.first)].compactMap { $0 }
        }
        XCTAssertEqual(uids, [1, 2, 3, 4, 5])
        let mailbox = try await inbox(alice)
        // Expunge the highest UIDs: a store that derived UIDNEXT from max(uid) would reuse them.
        try await store.expunge(mailboxID: mailbox.id, uids: [4, 5])
        let next = try await deliver(Self.message("after-expunge"), to: [alice])
        XCTAssertEqual(storedUID(next.outcomes.first), 6)
        try reopen()
        let again = try await deliver(Self.message("after-reopen"), to: [alice])
        XCTAssertEqual(storedUID(again.outcomes.first), 7)
        let remaining = try await store.messages(mailboxID: mailbox.id).map(\.uid)
        XCTAssertEqual(remaining, [1, 2, 3, 6, 7])
        let reloaded = try await inbox(alice)
        XCTAssertEqual(reloaded.uidNext, 8)
        XCTAssertEqual(reloaded.messageCount, 5)
    }

    func testModSeqIncreasesOnAppendFlagChangeAndExpunge() async throws {
        let alice = try await account("alice@example.org")
        var mailbox = try await inbox(alice)
        var last = mailbox.highestModSeq

        try await deliver(Self.message("a"), to: [alice])
        try await deliver(Self.message("b"), to: [alice])
        var messages = try await store.messages(mailboxID: mailbox.id)
        XCTAssertGreaterThan(messages[0].modSeq, last)
        XCTAssertGreaterThan(messages[1].modSeq, messages[0].modSeq)
        mailbox = try await inbox(alice)
        XCTAssertEqual(mailbox.highestModSeq, messages[1].modSeq)
        last = mailbox.highestModSeq

        let flagged = try await store.setFlags(mailboxID: mailbox.id, uid: 1, flags: [.seen, .flagged], keywords: ["$Important"])
        XCTAssertGreaterThan(flagged, last)
        let message = try await store.message(mailboxID: mailbox.id, uid: 1)
        XCTAssertEqual(message?.modSeq, flagged)
        XCTAssertEqual(message?.flags, [.seen, .flagged])
        XCTAssertEqual(message?.keywords, ["$Important"])
        mailbox = try await inbox(alice)
        XCTAssertEqual(mailbox.highestModSeq, flagged)

        // Setting the same flags again is still a STORE: a new MODSEQ.
        let again = try await store.setFlags(mailboxID: mailbox.id, uid: 1, flags: [.seen, .flagged], keywords: ["$Important"])
        XCTAssertGreaterThan(again, flagged)

        try await store.expunge(mailboxID: mailbox.id, uids: [2])
        mailbox = try await inbox(alice)
        XCTAssertGreaterThan(mailbox.highestModSeq, again)
        let tombstones = try await store.expunged(mailboxID: mailbox.id, sinceModSeq: again)
        XCTAssertEqual(tombstones, [ExpungedMessage(uid: 2, modSeq: mailbox.highestModSeq)])
        let none = try await store.expunged(mailboxID: mailbox.id, sinceModSeq: mailbox.highestModSeq)
        XCTAssertEqual(none, [])
        messages = try await store.messages(mailboxID: mailbox.id)
        XCTAssertEqual(messages.map(\.uid), [1])

        // Expunging nothing that exists changes nothing.
        try await store.expunge(mailboxID: mailbox.id, uids: [2, 99])
        let unchanged = try await inbox(alice)
        XCTAssertEqual(unchanged.highestModSeq, mailbox.highestModSeq)
    }

    func testUIDValidityIsStableAcrossReopenAndNewForARecreatedName() async throws {
        let alice = try await account("alice@example.org")
        let created = try await store.createMailbox(accountID: alice.id, name: "Projects/2026", specialUse: nil)
        let before = try await store.mailboxes(accountID: alice.id)
        XCTAssertTrue(before.contains { $0.name == "Projects" }, "parent created")
        try reopen()
        let after = try await store.mailboxes(accountID: alice.id)
        XCTAssertEqual(before, after)

        // Same name, new incarnation, within the same second: a different UIDVALIDITY.
        try await store.deleteMailbox(accountID: alice.id, name: "Projects/2026")
        let recreated = try await store.createMailbox(accountID: alice.id, name: "Projects/2026", specialUse: nil)
        XCTAssertNotEqual(recreated.uidValidity, created.uidValidity)
        XCTAssertNotEqual(recreated.id, created.id)

        // Removing and re-adding an account gives its mailboxes new UIDVALIDITY values too.
        let oldInbox = try await inbox(alice)
        try await store.removeAccount(address: "alice@example.org")
        let again = try await account("alice@example.org")
        let newInbox = try await inbox(again)
        XCTAssertNotEqual(oldInbox.uidValidity, newInbox.uidValidity)
    }

    func testReopenAfterCloseKeepsEverything() async throws {
        let alice = try await account("alice@example.org", quota: Quota(bytes: 1_000_000, messages: 100), admin: true)
        try await store.addAlias(source: "info@example.org", targets: ["alice@example.org"])
        let small = Self.message("small")
        let large = Self.message("large", size: StoreLimits.inlineBlobThreshold + 10_000)
        let prefix = Array("Delivered-To: alice@example.org\r\n".utf8)
        try await deliver(small, to: [alice], prefix: prefix)
        try await deliver(large, to: [alice])
        let mailbox = try await inbox(alice)
        try await store.setFlags(mailboxID: mailbox.id, uid: 1, flags: [.answered], keywords: ["work"])
        let messagesBefore = try await store.messages(mailboxID: mailbox.id)
        let accountBefore = try await store.account(id: alice.id)
        let summaryBefore = try await store.summary(messageID: messagesBefore[0].id)

        try reopen()

        let messagesAfter = try await store.messages(mailboxID: mailbox.id)
        XCTAssertEqual(messagesAfter, messagesBefore)
        let accountAfter = try await store.account(id: alice.id)
        XCTAssertEqual(accountAfter, accountBefore)
        XCTAssertEqual(accountAfter?.usage, Usage(bytes: Int64(small.count + prefix.count + large.count), messages: 2))
        let credentials = try await store.credentials(address: "alice@example.org")
        XCTAssertEqual(credentials, Self.credentials)
        let aliases = try await store.aliases(domain: nil)
        XCTAssertEqual(aliases, [AliasRecord(source: "info@example.org", targets: ["alice@example.org"])])
        let first = try await store.messageBytes(messageID: messagesAfter[0].id)
        XCTAssertEqual(first, prefix + small)
        XCTAssertEqual(messagesAfter[0].size, Int64(prefix.count + small.count))
        XCTAssertEqual(messagesAfter[0].prefixLength, prefix.count)
        let second = try await store.messageBytes(messageID: messagesAfter[1].id)
        XCTAssertEqual(second, large)
        let summaryAfter = try await store.summary(messageID: messagesAfter[0].id)
        XCTAssertEqual(summaryAfter, summaryBefore)
        XCTAssertNotNil(summaryAfter)
    }

    func testClosedStoreRefusesDeliveries() async throws {
        let alice = try await account("alice@example.org")
        try store.close()
        do {
            try await deliver(Self.message("late"), to: [alice])
            XCTFail("delivery after close")
        } catch let error as StoreError {
            guard case .writeFailed = error else { return XCTFail("\(error)") }
        }
        store = try SQLiteMailStore(directory: directory)
    }

    func testMailboxNamesAndHierarchy() async throws {
        let alice = try await account("alice@example.org")
        let lower = try await store.mailbox(accountID: alice.id, name: "inbox")
        XCTAssertEqual(lower?.name, "INBOX", "INBOX is case-insensitive")
        for bad in ["", "/a", "a/", "a//b", "a*", "50%", "tab\there"] {
            do {
                try await store.createMailbox(accountID: alice.id, name: bad, specialUse: nil)
                XCTFail("accepted \(bad.debugDescription)")
            } catch StoreError.invalid {}
        }
        do {
            try await store.createMailbox(accountID: alice.id, name: "Sent", specialUse: nil)
            XCTFail("duplicate accepted")
        } catch StoreError.alreadyExists {}
        try await store.createMailbox(accountID: alice.id, name: "a/b/c", specialUse: nil)
        try await store.renameMailbox(accountID: alice.id, from: "a", to: "x/y")
        let names = try await store.mailboxes(accountID: alice.id).map(\.name)
        XCTAssertTrue(names.contains("x/y/b/c") && names.contains("x/y/b") && names.contains("x/y") && names.contains("x"))
        XCTAssertFalse(names.contains { $0 == "a" || $0.hasPrefix("a/") })
        try await store.createMailbox(accountID: alice.id, name: "m/b", specialUse: nil)
        do {
            try await store.renameMailbox(accountID: alice.id, from: "x/y", to: "m")
            XCTFail("rename onto an existing child name")
        } catch StoreError.alreadyExists {}
        try await store.setSubscribed(accountID: alice.id, name: "x/y", true)
        let subscribed = try await store.mailbox(accountID: alice.id, name: "x/y")
        XCTAssertEqual(subscribed?.subscribed, true)
    }

    func testKeywordsAreCheckedAndDeduplicated() async throws {
        let alice = try await account("alice@example.org")
        try await deliver(Self.message("k"), to: [alice])
        let mailbox = try await inbox(alice)
        try await store.setFlags(mailboxID: mailbox.id, uid: 1, flags: [], keywords: ["Work", "work", "$Label1"])
        let message = try await store.message(mailboxID: mailbox.id, uid: 1)
        XCTAssertEqual(message?.keywords, ["Work", "$Label1"])
        for bad in ["two words", "\\Seen", "par(en", ""] {
            do {
                try await store.setFlags(mailboxID: mailbox.id, uid: 1, flags: [], keywords: [bad])
                XCTFail("accepted keyword \(bad.debugDescription)")
            } catch StoreError.invalid {}
        }
        do {
            try await store.setFlags(mailboxID: mailbox.id, uid: 42, flags: [.seen], keywords: [])
            XCTFail("flags on a missing message")
        } catch StoreError.notFound {}
    }
}
