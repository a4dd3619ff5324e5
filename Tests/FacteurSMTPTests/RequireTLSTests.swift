// RFC 8689 on the server side: REQUIRETLS advertised and accepted only under TLS, the flag carried
// in the transaction, and the queue's TLS demand chosen from it and from `TLS-Required: No`.

import FacteurMIME
import FacteurQueue
@testable import FacteurSMTP
import FacteurStore
import Foundation
import Logging
import XCTest

final class RequireTLSTests: XCTestCase {
    private func ehloKeywords(_ session: inout SMTPSession) -> [String] {
        guard case .reply(let reply)? = session.receive(.success(.ehlo("client.example"))).first else {
            XCTFail("no EHLO reply")
            return []
        }
        return Array(reply.lines.dropFirst())
    }

    func testREQUIRETLSIsAdvertisedOnlyUnderTLS() {
        var plain = SMTPSession(configuration: .init(hostname: "mx.example.org"), clientAddress: "192.0.2.1")
        XCTAssertFalse(ehloKeywords(&plain).contains("REQUIRETLS"), "RFC 8689 §4: not before TLS")
        XCTAssertTrue(ehloKeywords(&plain).contains("STARTTLS"))
        _ = plain.tlsEstablished()
        let afterSTARTTLS = ehloKeywords(&plain)
        XCTAssertTrue(afterSTARTTLS.contains("REQUIRETLS"))
        XCTAssertFalse(afterSTARTTLS.contains("STARTTLS"))
        var implicit = SMTPSession(configuration: .init(hostname: "mx.example.org", implicitTLS: true), clientAddress: "192.0.2.1")
        XCTAssertTrue(ehloKeywords(&implicit).contains("REQUIRETLS"))
    }

    func testMailParameterWithoutTLSIsRefused() {
        var d = SessionDriver()
        _ = d.run(d.session.start())
        _ = d.send("EHLO client.example")
        XCTAssertEqual(d.send("MAIL FROM:<alice@example.net> REQUIRETLS"), ["530 5.7.10"])
        // The refusal leaves no transaction behind: a plain MAIL works and carries no flag.
        XCTAssertEqual(d.send("MAIL FROM:<alice@example.net>"), ["250 2.1.0"])
        XCTAssertEqual(d.send("RCPT TO:<bob@example.org>"), ["250 2.1.5"])
        XCTAssertEqual(d.send("DATA"), ["354"])
        XCTAssertEqual(d.dataEnds(ReceivedMessage(size: 10)), ["250 2.0.0"])
        XCTAssertEqual(d.delivered.first?.requireTLS, false)
    }

    func testMailParameterUnderTLSReachesTheTransactionAndIsReset() {
        var d = SessionDriver()
        _ = d.run(d.session.start())
        _ = d.send("EHLO client.example")
        XCTAssertEqual(d.send("STARTTLS"), ["220 2.0.0"])
        _ = d.run(d.session.tlsEstablished())
        _ = d.send("EHLO client.example")
        XCTAssertEqual(d.send("MAIL FROM:<alice@example.net> REQUIRETLS"), ["250 2.1.0"])
        XCTAssertEqual(d.send("RCPT TO:<bob@example.org>"), ["250 2.1.5"])
        XCTAssertEqual(d.send("DATA"), ["354"])
        XCTAssertEqual(d.dataEnds(ReceivedMessage(size: 10)), ["250 2.0.0"])
        XCTAssertEqual(d.delivered.last?.requireTLS, true)
        XCTAssertEqual(d.delivered.last?.receivedProtocol, "ESMTPS")
        // The next transaction starts clean.
        XCTAssertEqual(d.send("MAIL FROM:<alice@example.net>"), ["250 2.1.0"])
        XCTAssertEqual(d.send("RCPT TO:<bob@example.org>"), ["250 2.1.5"])
        XCTAssertEqual(d.send("DATA"), ["354"])
        XCTAssertEqual(d.dataEnds(ReceivedMessage(size: 10)), ["250 2.0.0"])
        XCTAssertEqual(d.delivered.last?.requireTLS, false)
    }

    func testMalformedParameterIsASyntaxError() {
        var d = SessionDriver(configuration: .init(hostname: "mx", maxMessageSize: 1000, implicitTLS: true))
        _ = d.run(d.session.start())
        _ = d.send("EHLO client.example")
        XCTAssertEqual(d.send("MAIL FROM:<a@example.net> REQUIRETLS=YES"), ["501 5.5.4"])
        XCTAssertEqual(d.send("MAIL FROM:<a@example.net> REQUIRETLS REQUIRETLS"), ["501 5.5.4"])
        XCTAssertEqual(d.send("mail from:<a@example.net> requiretls"), ["250 2.1.0"], "keywords are case-insensitive")
    }

    func testSubmissionCarriesTheFlagThroughTheSenderCheck() {
        var d = SessionDriver(configuration: .init(hostname: "mx", maxErrors: 50, implicitTLS: true, mode: .submission))
        _ = d.run(d.session.start())
        _ = d.send("EHLO laptop")
        XCTAssertEqual(d.send("AUTH PLAIN " + Data("\0alice@example.org\0pw".utf8).base64EncodedString()), ["235 2.7.0"])
        XCTAssertEqual(d.send("MAIL FROM:<alice@example.org> REQUIRETLS"), ["250 2.1.0"])
        XCTAssertEqual(d.send("RCPT TO:<dave@example.com>"), ["250 2.1.5"])
        XCTAssertEqual(d.send("DATA"), ["354"])
        XCTAssertEqual(d.dataEnds(ReceivedMessage(size: 10)), ["250 2.0.0"])
        XCTAssertEqual(d.delivered.last?.requireTLS, true)
    }

    // MARK: The queue's demand

    private func transaction(requireTLS: Bool) -> SMTPTransaction {
        var t = SMTPTransaction(id: "T", sender: SMTPMailbox(localPart: "bob", domain: "example.org"),
                                recipients: [.init(mailbox: SMTPMailbox(localPart: "dave", domain: "example.com"), accounts: [])],
                                heloName: "laptop", clientAddress: "192.0.2.9", receivedProtocol: "ESMTPSA", size: 10,
                                authenticatedAccount: "bob@example.org")
        t.requireTLS = requireTLS
        return t
    }

    private func header(_ text: String) -> MessageHeader { MessageHeader(parsing: Array(text.utf8)) }

    func testHeaderDetection() {
        let plain = header("Subject: x\r\n\r\nbody\r\n")
        XCTAssertEqual(StoreSMTPBackend.tlsDemand(transaction(requireTLS: false), header: plain), .standard)
        XCTAssertEqual(StoreSMTPBackend.tlsDemand(transaction(requireTLS: true), header: plain), .requireTLS)
        let no = header("Subject: x\r\nTLS-Required: No\r\n\r\nbody\r\n")
        XCTAssertEqual(StoreSMTPBackend.tlsDemand(transaction(requireTLS: false), header: no), .policyExempt)
        // RFC 8689 §5: with REQUIRETLS on MAIL FROM the header field is ignored.
        XCTAssertEqual(StoreSMTPBackend.tlsDemand(transaction(requireTLS: true), header: no), .requireTLS)
        let folded = header("tls-required:\r\n   nO  \r\n\r\n")
        XCTAssertEqual(StoreSMTPBackend.tlsDemand(transaction(requireTLS: false), header: folded), .policyExempt)
        for other in ["TLS-Required: Yes", "TLS-Required: No, thanks", "TLS-Required:", "X-TLS-Required: No",
                      "TLS-Required: No\r\nTLS-Required: Yes"] {
            XCTAssertEqual(StoreSMTPBackend.tlsDemand(transaction(requireTLS: false), header: header(other + "\r\n\r\n")), .standard, other)
        }
    }

    func testRelayedSubmissionsAreQueuedWithTheirDemand() async throws {
        let directory = NSTemporaryDirectory() + "facteur-requiretls-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try SQLiteMailStore(directory: directory)
        try await store.addDomain("example.org")
        _ = try await store.addAccount(address: "bob@example.org", credentials: StoredCredentials(passwordHash: "$scrypt$x", scramSHA256: nil),
                                       quota: .unlimited, isAdmin: false)
        let queue = RecordingQueue(store: store)
        let backend = StoreSMTPBackend(store: store, hostname: "mx.example.org", primaryDomain: "example.org",
                                       logger: Logger(label: "test"), queue: queue)
        let plain = Array("Subject: hi\r\nFrom: bob@example.org\r\n\r\nHello\r\n".utf8)
        let exempt = Array("Subject: hi\r\nFrom: bob@example.org\r\nTLS-Required: No\r\n\r\nHello\r\n".utf8)
        var verdict = await backend.deliver(transaction(requireTLS: true), message: .memory(plain))
        XCTAssertEqual(verdict, .stored)
        verdict = await backend.deliver(transaction(requireTLS: false), message: .memory(exempt))
        XCTAssertEqual(verdict, .stored)
        verdict = await backend.deliver(transaction(requireTLS: false), message: .memory(plain))
        XCTAssertEqual(verdict, .stored)
        XCTAssertEqual(queue.submissions.map(\.tlsDemand), [.requireTLS, .policyExempt, .standard])
    }
}
