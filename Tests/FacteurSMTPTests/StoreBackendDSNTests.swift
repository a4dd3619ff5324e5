import FacteurQueue
@testable import FacteurSMTP
import FacteurStore
import Foundation
import Logging
import XCTest

/// Records what the backend hands to the outbound queue, and queues it in the store for real.
final class RecordingQueue: OutboundQueue, @unchecked Sendable {
    let store: SQLiteMailStore
    private let lock = NSLock()
    private var _submissions: [QueueSubmission] = []
    var submissions: [QueueSubmission] { lock.withLock { _submissions } }
    init(store: SQLiteMailStore) { self.store = store }

    func enqueue(_ submission: QueueSubmission) async throws -> QueuedMessage {
        lock.withLock { _submissions.append(submission) }
        return try await store.enqueue(submission)
    }
}

/// `StoreSMTPBackend` on a real store: DSN parameters reach the queue (RFC 3461), local
/// NOTIFY=SUCCESS gets a "delivered" DSN, and loops are refused (RFC 5321 §6.3).
final class StoreBackendDSNTests: XCTestCase {
    var directory: String!
    var store: SQLiteMailStore!
    var queue: RecordingQueue!
    var backend: StoreSMTPBackend!
    var bob: AccountRecord!

    override func setUp() async throws {
        directory = NSTemporaryDirectory() + "facteur-dsn-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        store = try SQLiteMailStore(directory: directory)
        try await store.addDomain("example.org")
        bob = try await store.addAccount(address: "bob@example.org",
                                         credentials: StoredCredentials(passwordHash: "$scrypt$x", scramSHA256: nil),
                                         quota: .unlimited, isAdmin: false)
        queue = RecordingQueue(store: store)
        backend = StoreSMTPBackend(store: store, hostname: "mx.example.org", primaryDomain: "example.org",
                                   logger: Logger(label: "test"), queue: queue)
    }

    override func tearDown() async throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func transaction(_ recipients: [SMTPTransaction.Recipient], ret: DSNReturn? = nil, envelopeID: String? = nil) -> SMTPTransaction {
        SMTPTransaction(id: "T1", sender: SMTPMailbox(localPart: "alice", domain: "example.net"), recipients: recipients,
                        heloName: "client.example.net", clientAddress: "192.0.2.1", receivedProtocol: "ESMTP", size: 10,
                        ret: ret, envelopeID: envelopeID)
    }

    var local: SMTPTransaction.Recipient {
        .init(mailbox: SMTPMailbox(localPart: "bob", domain: "example.org"),
              accounts: [LocalRecipient(accountID: bob.id, address: "bob@example.org")])
    }

    let message = Array("Subject: hi\r\nFrom: alice@example.net\r\n\r\nHello\r\n".utf8)

    func inboxCount() async throws -> Int {
        let inbox = try await store.mailbox(accountID: bob.id, name: "INBOX")
        return try await store.messages(mailboxID: XCTUnwrap(inbox).id).count
    }

    func testRemoteRecipientsCarryDSNParametersToTheQueue() async throws {
        let remote = SMTPTransaction.Recipient(mailbox: SMTPMailbox(localPart: "carol", domain: "example.com"), accounts: [],
                                               notify: [.failure, .delay], originalRecipient: "rfc822;carol+2Bx@example.com")
        let plain = SMTPTransaction.Recipient(mailbox: SMTPMailbox(localPart: "dave", domain: "example.com"), accounts: [])
        let verdict = await backend.deliver(transaction([remote, plain], ret: .headers, envelopeID: "QQ+2B1"), message: .memory(message))
        XCTAssertEqual(verdict, .stored)
        XCTAssertEqual(queue.submissions.count, 1)
        let submission = try XCTUnwrap(queue.submissions.first)
        XCTAssertEqual(submission.sender, "alice@example.net")
        XCTAssertEqual(submission.envelopeID, "QQ+2B1", "relayed as sent (xtext), RFC 3461 §5.2.1")
        XCTAssertEqual(submission.ret, .headers)
        XCTAssertEqual(submission.recipients, [
            QueueRecipientInput(address: "carol@example.com", originalRecipient: "rfc822;carol+2Bx@example.com", notify: [.failure, .delay]),
            QueueRecipientInput(address: "dave@example.com"),
        ])
    }

    func testLocalNotifySuccessQueuesADeliveredDSN() async throws {
        var recipient = local
        recipient.notify = [.success, .failure]
        recipient.originalRecipient = "rfc822;bob+2Btag@example.org"
        let verdict = await backend.deliver(transaction([recipient], ret: .headers, envelopeID: "env+3D42"), message: .memory(message))
        XCTAssertEqual(verdict, .stored)
        let inboxMessages = try await inboxCount()
        XCTAssertEqual(inboxMessages, 1)
        XCTAssertEqual(queue.submissions.count, 1)
        let dsn = try XCTUnwrap(queue.submissions.first)
        XCTAssertEqual(dsn.sender, "", "DSNs use the null reverse-path (RFC 3461 §6.2)")
        XCTAssertEqual(dsn.recipients.map(\.address), ["alice@example.net"])
        guard case .memory(let bytes) = dsn.message else { return XCTFail("DSN not in memory") }
        let text = String(decoding: bytes, as: UTF8.self)
        XCTAssertTrue(text.contains("Content-Type: multipart/report; report-type=delivery-status"))
        XCTAssertTrue(text.contains("Action: delivered\r\n"))
        XCTAssertTrue(text.contains("Status: 2.0.0\r\n"))
        XCTAssertTrue(text.contains("Final-Recipient: rfc822; bob@example.org\r\n"))
        XCTAssertTrue(text.contains("Original-Recipient: rfc822; bob+tag@example.org\r\n"), "ORCPT is xtext-decoded in the report")
        XCTAssertTrue(text.contains("Original-Envelope-Id: env=42\r\n"))
        XCTAssertTrue(text.contains("Content-Type: text/rfc822-headers"), "RET=HDRS returns headers only")
        XCTAssertFalse(text.contains("Hello"))
    }

    func testNoDSNWithoutNotifySuccessNorForTheNullSender() async throws {
        var verdict = await backend.deliver(transaction([local]), message: .memory(message))
        XCTAssertEqual(verdict, .stored)
        var never = local
        never.notify = .never
        verdict = await backend.deliver(transaction([never]), message: .memory(message))
        XCTAssertEqual(verdict, .stored)
        var success = local
        success.notify = .success
        var bounce = transaction([success])
        bounce.sender = nil
        verdict = await backend.deliver(bounce, message: .memory(message))
        XCTAssertEqual(verdict, .stored)
        XCTAssertTrue(queue.submissions.isEmpty, "no DSN was asked for, or none can be sent to <>")
        let inboxMessages = try await inboxCount()
        XCTAssertEqual(inboxMessages, 3)
    }

    func testAFullLocalMailboxGetsAFailureDSNWhileTheOthersAreDelivered() async throws {
        let carol = try await store.addAccount(address: "carol@example.org",
                                               credentials: StoredCredentials(passwordHash: "$scrypt$x", scramSHA256: nil),
                                               quota: Quota(bytes: 10), isAdmin: false)
        var full = SMTPTransaction.Recipient(mailbox: SMTPMailbox(localPart: "carol", domain: "example.org"),
                                             accounts: [LocalRecipient(accountID: carol.id, address: "carol@example.org")])
        let verdict = await backend.deliver(transaction([local, full]), message: .memory(message))
        XCTAssertEqual(verdict, .stored)
        XCTAssertEqual(queue.submissions.count, 1, "NOTIFY absent: failures are reported (RFC 3461 §4.1)")
        let dsn = try XCTUnwrap(queue.submissions.first)
        XCTAssertEqual(dsn.sender, "")
        guard case .memory(let bytes) = dsn.message else { return XCTFail("DSN not in memory") }
        let text = String(decoding: bytes, as: UTF8.self)
        XCTAssertTrue(text.contains("Final-Recipient: rfc822; carol@example.org\r\nAction: failed\r\nStatus: 5.2.2\r\n"), text)
        XCTAssertFalse(text.contains("bob@example.org"))
        // NOTIFY=NEVER (or SUCCESS alone) asks for no failure report.
        full.notify = .never
        _ = await backend.deliver(transaction([local, full]), message: .memory(message))
        XCTAssertEqual(queue.submissions.count, 1)
    }

    func testAQueueForDSNsDoesNotOpenTheInboundPortToRelaying() async throws {
        // The inbound (port 25) backend needs the queue to send local DSNs; relaying still needs AUTH.
        let outside = await backend.checkRecipient(SMTPMailbox(localPart: "x", domain: "example.com"), declaredSize: nil, account: nil)
        XCTAssertEqual(outside, .relayDenied)
        let submitted = await backend.checkRecipient(SMTPMailbox(localPart: "x", domain: "example.com"), declaredSize: nil,
                                                     account: "bob@example.org")
        XCTAssertEqual(submitted, .accepted([]))
    }

    func testTooManyReceivedFieldsIsALoop() async throws {
        func withReceived(_ count: Int) -> [UInt8] {
            Array((0..<count).map { "Received: from hop\($0).example by x.example; Fri, 27 Nov 2026 10:00:00 +0000\r\n" }.joined().utf8) + message
        }
        let atLimit = await backend.deliver(transaction([local]), message: .memory(withReceived(StoreSMTPBackend.maxReceivedFields)))
        XCTAssertEqual(atLimit, .stored)
        // A spooled file, as for large messages: refused, and the spool file is removed.
        let path = directory + "/spool-loop"
        let looping = withReceived(StoreSMTPBackend.maxReceivedFields + 1)
        FileManager.default.createFile(atPath: path, contents: Data(looping))
        let verdict = await backend.deliver(transaction([local]), message: .file(path: path, size: looping.count))
        guard case .rejected(let reply) = verdict else { return XCTFail("loop accepted: \(verdict)") }
        XCTAssertEqual(reply.code, 554)
        XCTAssertEqual(reply.enhanced, "5.4.6")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
        let inboxMessages = try await inboxCount()
        XCTAssertEqual(inboxMessages, 1)
    }

    func testOurOwnDeliveredToIsALoop() async throws {
        let looped = Array("Delivered-To: <BOB@example.org>\r\n".utf8) + message
        let verdict = await backend.deliver(transaction([local]), message: .memory(looped))
        guard case .rejected(let reply) = verdict else { return XCTFail("loop accepted: \(verdict)") }
        XCTAssertEqual([String(reply.code), reply.enhanced ?? ""], ["554", "5.4.6"])
        // Another recipient's Delivered-To is no loop (a message forwarded from elsewhere).
        let forwarded = Array("Delivered-To: someone@example.net\r\n".utf8) + message
        let accepted = await backend.deliver(transaction([local]), message: .memory(forwarded))
        XCTAssertEqual(accepted, .stored)
        // Delivered-To in the body is not a header field.
        let body = message + Array("Delivered-To: bob@example.org\r\n".utf8)
        let bodyVerdict = await backend.deliver(transaction([local]), message: .memory(body))
        XCTAssertEqual(bodyVerdict, .stored)
    }
}
