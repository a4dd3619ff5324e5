// `StoreSMTPBackend` forwarding (aliases with external members, SRS, bounces back through SRS)
// and Sent copies of submissions, on a real store with the recording queue.

import FacteurQueue
@testable import FacteurSMTP
import FacteurStore
import Foundation
import Logging
import XCTest

final class StoreBackendForwardingTests: XCTestCase {
    var directory: String!
    var store: SQLiteMailStore!
    var queue: RecordingQueue!
    var backend: StoreSMTPBackend!
    var bob: AccountRecord!
    let srs = SenderRewriting(secret: Array(repeating: 1, count: 32))
    let message = Array("Subject: hi\r\nFrom: alice@example.net\r\n\r\nHello\r\n".utf8)

    override func setUp() async throws {
        directory = NSTemporaryDirectory() + "facteur-fwd-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        store = try SQLiteMailStore(directory: directory)
        try await store.addDomain("example.org")
        bob = try await store.addAccount(address: "bob@example.org",
                                         credentials: StoredCredentials(passwordHash: "$scrypt$x", scramSHA256: nil),
                                         quota: .unlimited, isAdmin: false)
        try await store.addAlias(source: "team@example.org", targets: ["bob@example.org", "carol@partner.test"])
        queue = RecordingQueue(store: store)
        backend = StoreSMTPBackend(store: store, hostname: "mx.example.org", primaryDomain: "example.org",
                                   logger: Logger(label: "test"), queue: queue, senderRewriting: srs)
    }

    override func tearDown() async throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func count(_ mailbox: String, _ account: AccountRecord) async throws -> Int {
        let box = try await store.mailbox(accountID: account.id, name: mailbox)
        return try await store.messages(mailboxID: XCTUnwrap(box).id).count
    }

    func testAliasWithAnExternalMemberIsForwardedWithSRSAndDeliveredLocally() async throws {
        let verdict = await backend.checkRecipient(SMTPMailbox(localPart: "team", domain: "example.org"), declaredSize: nil, account: nil)
        guard case .forwarded(let local, let external) = verdict else { return XCTFail("\(verdict)") }
        XCTAssertEqual(local.map(\.address), ["bob@example.org"])
        XCTAssertEqual(external, ["carol@partner.test"])
        let transaction = SMTPTransaction(
            id: "F1", sender: SMTPMailbox(localPart: "alice", domain: "example.net"),
            recipients: [.init(mailbox: SMTPMailbox(localPart: "team", domain: "example.org"), accounts: local, forwards: external)],
            heloName: "client.example.net", clientAddress: "192.0.2.1", receivedProtocol: "ESMTP", size: message.count)
        let delivered = await backend.deliver(transaction, message: .memory(message))
        XCTAssertEqual(delivered, DeliveryVerdict.stored)
        let inbox = try await count("INBOX", bob)
        XCTAssertEqual(inbox, 1)
        let submission = try XCTUnwrap(queue.submissions.first)
        XCTAssertEqual(submission.recipients.map(\.address), ["carol@partner.test"])
        XCTAssertEqual(submission.recipients.first?.originalRecipient, "rfc822;team@example.org", "RFC 3461 §6.2.1(d)")
        XCTAssertTrue(submission.sender.hasPrefix("SRS0="), submission.sender)
        XCTAssertTrue(submission.sender.hasSuffix("=example.net=alice@example.org"), submission.sender)
        XCTAssertTrue(String(decoding: submission.headerPrefix, as: UTF8.self).hasPrefix("Received: from client.example.net"))

        // The bounce path: our SRS address goes back to alice; a forged one is unknown.
        let srsLocal = String(submission.sender[..<submission.sender.lastIndex(of: "@")!])
        let back = await backend.checkRecipient(SMTPMailbox(localPart: srsLocal, domain: "example.org"), declaredSize: nil, account: nil)
        XCTAssertEqual(back, RecipientVerdict.forwarded([], external: ["alice@example.net"]))
        let forged = await backend.checkRecipient(SMTPMailbox(localPart: "SRS0=ZZZZ=AA=example.net=alice", domain: "example.org"),
                                                  declaredSize: nil, account: nil)
        XCTAssertEqual(forged, RecipientVerdict.unknownUser)
    }

    func testSubmissionsAreCopiedToSentWhenTheAccountAsks() async throws {
        let submission = SMTPTransaction(
            id: "S1", sender: SMTPMailbox(localPart: "bob", domain: "example.org"),
            recipients: [.init(mailbox: SMTPMailbox(localPart: "dave", domain: "example.com"), accounts: [])],
            heloName: "laptop", clientAddress: "192.0.2.9", receivedProtocol: "ESMTPSA", size: message.count,
            authenticatedAccount: "bob@example.org")
        let bobMessage = Array("Subject: hi\r\nFrom: bob@example.org\r\n\r\nHello\r\n".utf8)
        var verdict = await backend.deliver(submission, message: .memory(bobMessage))
        XCTAssertEqual(verdict, .stored)
        var sentCount = try await count("Sent", bob)
        XCTAssertEqual(sentCount, 0, "off by default")
        try await store.setSentCopies(address: "bob@example.org", true)
        verdict = await backend.deliver(submission, message: .memory(bobMessage))
        XCTAssertEqual(verdict, .stored)
        sentCount = try await count("Sent", bob)
        XCTAssertEqual(sentCount, 1)
        let sentBox = try await store.mailbox(accountID: bob.id, name: "Sent")
        let sent = try await store.messages(mailboxID: XCTUnwrap(sentBox).id)
        XCTAssertTrue(sent[0].flags.contains(.seen), "a sent message is not new mail")
        XCTAssertEqual(queue.submissions.count, 2, "and both were sent")
    }
}
