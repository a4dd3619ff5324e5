// The delivery worker end to end on loopback: MX routing through a StaticResolver to Facteur's
// own SMTP server and to scripted servers; greylisting and retry; null MX, NXDOMAIN and SERVFAIL;
// expiry and the delay warning on an injected clock; DSNs (and none for a DSN); local delivery;
// a smarthost route; connection reuse; the long-running service woken by enqueue.

import FacteurDNS
import FacteurIdentity
import FacteurSMTP
import FacteurStore
import Foundation
import XCTest
@testable import FacteurQueue

final class DeliveryServiceTests: XCTestCase {
    var directory = ""
    var store: SQLiteMailStore!
    let clock = TestClock()

    override func setUp() async throws {
        directory = temporaryDirectory("queue-worker")
        store = try SQLiteMailStore(directory: directory + "/store")
    }

    override func tearDown() async throws {
        try? store.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    let message = crlf("From: a@example.net\nTo: b@example.org\nSubject: hello\nMessage-ID: <m1@example.net>\n\nbody\n")

    func resolver(_ zone: String, failures: [(StaticResolverFailure, String)] = []) throws -> StaticResolver {
        var resolver = StaticResolver()
        try resolver.add(zone: zone)
        for (failure, name) in failures { resolver.inject(failure, name: try DNSName(name)) }
        return resolver
    }

    func service(_ resolver: StaticResolver, port: Int, routes: [String: QueueRoute] = [:],
                 times: QueueTimes = QueueTimes()) -> QueueDeliveryService {
        QueueDeliveryService(store: store, resolver: resolver,
                             configuration: QueueConfiguration(hostname: "out.example.net", routes: routes, mxPort: port,
                                                               ipv6Enabled: false, timeouts: .uniform(.seconds(5)), times: times,
                                                               retry: RetrySchedule(first: 300, factor: 2, maximum: 3600)),
                             clock: clock.function)
    }

    func enqueue(_ service: QueueDeliveryService, to recipients: [String], sender: String = "a@example.net") async throws -> QueuedMessage {
        try await service.enqueue(QueueSubmission(sender: sender, recipients: recipients.map { QueueRecipientInput(address: $0) },
                                                  message: .memory(message)))
    }

    let zone = """
        example.org. 300 IN MX 10 mx.example.org.
        example.org. 300 IN MX 20 backup.example.org.
        mx.example.org. 300 IN A 127.0.0.1
        backup.example.org. 300 IN A 127.0.0.1
        """

    func testMXDeliveryAndAFailureDSNThatIsNeverBouncedItself() async throws {
        let backend = RecordingBackend()
        let listener = try await startFacteurSMTP(backend, directory: directory)
        let service = service(try resolver(zone), port: listener.localAddress!.port!)
        let queued = try await enqueue(service, to: ["b@example.org", "nobody@example.org"])
        try await service.runOnce()
        XCTAssertEqual(backend.count, 1)
        XCTAssertEqual(backend.last?.0.recipients.map(\.mailbox.description), ["b@example.org"])
        let value1 = try await store.queuedMessage(id: queued.id)
        XCTAssertNil(value1, "finished and reported: gone")

        // The DSN for nobody@ is queued to the sender with the null reverse-path.
        let queue = try await store.queuedMessages()
        XCTAssertEqual(queue.count, 1)
        let dsn = try XCTUnwrap(queue.first)
        XCTAssertEqual(dsn.sender, "")
        XCTAssertEqual(dsn.recipients.map(\.address), ["a@example.net"])
        let dsnBytes = try await store.queuedMessageBytes(blobID: dsn.blobID)
        let text = String(decoding: dsnBytes, as: UTF8.self)
        XCTAssertTrue(text.contains("Content-Type: multipart/report; report-type=delivery-status;"))
        XCTAssertTrue(text.contains("Final-Recipient: rfc822; nobody@example.org"))
        XCTAssertTrue(text.contains("Action: failed"))
        XCTAssertTrue(text.contains("Status: 5.1.1"))
        XCTAssertTrue(text.contains("Remote-MTA: dns; mx.example.org"))
        XCTAssertTrue(text.contains("Diagnostic-Code: smtp; 550 5.1.1"))
        XCTAssertFalse(text.contains("b@example.org>: failed"))

        // example.net does not exist: the DSN fails, and no DSN of a DSN is made.
        try await service.runOnce()
        let after = try await store.queuedMessages()
        XCTAssertTrue(after.isEmpty, "\(after)")
        await listener.shutdown(grace: .seconds(1))
    }

    func testGreylistingIsRetriedWithBackoff() async throws {
        let attempts = TestCounter()
        let server = try await ScriptedSMTPServer(script: acceptingScript(rcpt: { _ in
            attempts.increment() == 1 ? "451 4.7.1 greylisted, come back later" : "250 2.1.5 ok"
        }))
        let service = service(try resolver(zone), port: server.port)
        let queued = try await enqueue(service, to: ["b@example.org"])
        try await service.runOnce()
        let value10 = try await store.queuedMessage(id: queued.id)
        let shown = try XCTUnwrap(value10)
        XCTAssertEqual(shown.recipients[0].state, .deferred)
        XCTAssertEqual(shown.recipients[0].lastReply, "451 4.7.1 greylisted, come back later")
        XCTAssertEqual(shown.recipients[0].nextAttempt, clock.now.addingTimeInterval(300))
        let value2 = try await service.runOnce()
        XCTAssertEqual(value2, 0, "not due yet")
        clock.advance(301)
        let value3 = try await service.runOnce()
        XCTAssertEqual(value3, 1)
        XCTAssertEqual(server.messages.filter { !$0.isEmpty }.count, 1, "the empty one closed the refused pipelined DATA")
        let value4 = try await store.queuedMessage(id: queued.id)
        XCTAssertNil(value4)
        await server.stop()
    }

    func testConnectionReuseForSeveralMessagesToOneHost() async throws {
        let server = try await ScriptedSMTPServer(script: acceptingScript())
        let service = QueueDeliveryService(store: store, resolver: try resolver(zone),
                                           configuration: QueueConfiguration(hostname: "out.example.net", mxPort: server.port,
                                                                             ipv6Enabled: false, timeouts: .uniform(.seconds(5)),
                                                                             maxConcurrentPerDestination: 1),
                                           clock: clock.function)
        for _ in 0 ..< 3 { _ = try await enqueue(service, to: ["b@example.org"]) }
        try await service.runOnce()
        XCTAssertEqual(server.messages.count, 3)
        XCTAssertEqual(server.commands.filter { $0.hasPrefix("EHLO") }.count, 1, "one session carried the three messages")
        await server.stop()
    }

    func testFallsBackToTheNextMXWhenTheFirstFails() async throws {
        let server = try await ScriptedSMTPServer(script: acceptingScript())
        // The preferred MX has an address nobody listens on.
        let zone = """
            example.org. 300 IN MX 10 dead.example.org.
            example.org. 300 IN MX 20 live.example.org.
            dead.example.org. 300 IN A 127.0.0.9
            live.example.org. 300 IN A 127.0.0.1
            """
        let service = service(try resolver(zone), port: server.port)
        let queued = try await enqueue(service, to: ["b@example.org"])
        try await service.runOnce()
        XCTAssertEqual(server.messages.count, 1)
        let value5 = try await store.queuedMessage(id: queued.id)
        XCTAssertNil(value5)
        await server.stop()
    }

    func testNullMXFailsAndTheBounceReachesALocalSendersInbox() async throws {
        try await store.addDomain("example.net")
        let account = try await store.addAccount(address: "a@example.net",
                                                 credentials: StoredCredentials(passwordHash: "$scrypt$x", scramSHA256: nil),
                                                 quota: .unlimited, isAdmin: false)
        let service = service(try resolver("example.com. 300 IN MX 0 ."), port: 1)
        _ = try await enqueue(service, to: ["x@example.com"])
        try await service.runOnce()   // fails, queues the DSN
        try await service.runOnce()   // delivers the DSN locally
        let value11 = try await store.mailbox(accountID: account.id, name: "INBOX")
        let inbox = try XCTUnwrap(value11)
        let messages = try await store.messages(mailboxID: inbox.id)
        XCTAssertEqual(messages.count, 1)
        let inboxBytes = try await store.messageBytes(messageID: messages[0].id)
        let text = String(decoding: inboxBytes, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("Return-Path: <>\r\n"))
        XCTAssertTrue(text.contains("Status: 5.1.10"))
        XCTAssertTrue(text.contains("null MX"))
        let left = try await store.queuedMessages()
        XCTAssertTrue(left.isEmpty)
    }

    func testDNSFailuresAreTemporaryAndNXDOMAINIsPermanent() async throws {
        let resolver = try resolver("", failures: [(.serverFailure, "broken.example")])
        let service = service(resolver, port: 1)
        let temporary = try await enqueue(service, to: ["x@broken.example"], sender: "")
        let permanent = try await enqueue(service, to: ["x@nowhere.example"], sender: "")
        try await service.runOnce()
        let value12 = try await store.queuedMessage(id: temporary.id)
        let t = try XCTUnwrap(value12)
        XCTAssertEqual(t.recipients[0].state, .deferred)
        XCTAssertTrue(t.recipients[0].lastReply?.hasPrefix("451 4.4.3") == true)
        let value6 = try await store.queuedMessage(id: permanent.id)
        XCTAssertNil(value6, "failed; null sender, so no DSN and gone")
        let queue = try await store.queuedMessages()
        XCTAssertEqual(queue.map(\.id), [temporary.id])
    }

    func testDelayWarningOnceThenExpiry() async throws {
        // MX host that refuses connections: every attempt is a temporary failure.
        let service = service(try resolver(zone, failures: [(.serverFailure, "example.net")]), port: 1,
                              times: QueueTimes(lifetime: 4000, delayWarning: 600))
        let queued = try await enqueue(service, to: ["b@example.org"], sender: "")
        var withSender = QueueSubmission(sender: "a@example.net", recipients: [QueueRecipientInput(address: "b@example.org")],
                                         message: .memory(message), envelopeID: "ENV+2B42")
        // As sent in SMTP: xtext (RFC 3461 §4); the DSN shows it decoded (RFC 3464 §2.3.1).
        withSender.recipients[0].originalRecipient = "rfc822;b+2Btag@example.org"
        let tracked = try await service.enqueue(withSender)
        try await service.runOnce()
        let value13 = try await store.queuedMessage(id: tracked.id)
        let first = try XCTUnwrap(value13)
        XCTAssertEqual(first.recipients[0].state, .deferred)
        XCTAssertTrue(first.recipients[0].lastReply?.contains("connection failed") == true, "\(first.recipients[0].lastReply ?? "")")

        clock.advance(700)
        try await service.runOnce()
        var dsns = try await store.queuedMessages()
        dsns = dsns.filter { $0.sender.isEmpty && $0.id != queued.id }
        XCTAssertEqual(dsns.count, 1, "one delay warning, for the message with a sender")
        let warningBytes = try await store.queuedMessageBytes(blobID: dsns[0].blobID)
        let warning = String(decoding: warningBytes, as: UTF8.self)
        XCTAssertTrue(warning.contains("Action: delayed"))
        XCTAssertTrue(warning.contains("Original-Envelope-Id: ENV+42"), warning)
        XCTAssertTrue(warning.contains("Original-Recipient: rfc822; b+tag@example.org"), warning)
        XCTAssertTrue(warning.contains("Will-Retry-Until:"))
        XCTAssertTrue(warning.contains("Content-Type: text/rfc822-headers"), "a delay report returns headers only")

        clock.advance(700)
        try await service.runOnce()
        dsns = try await store.queuedMessages()
        dsns = dsns.filter { $0.sender.isEmpty && $0.id != queued.id }
        XCTAssertEqual(dsns.count, 1, "never a second warning")

        clock.advance(4000)
        try await service.runOnce()
        let value7 = try await store.queuedMessage(id: tracked.id)
        XCTAssertNil(value7)
        let value8 = try await store.queuedMessage(id: queued.id)
        XCTAssertNil(value8)
        let all = try await store.queuedMessages()
        var texts: [String] = []
        for m in all { texts.append(String(decoding: try await store.queuedMessageBytes(blobID: m.blobID), as: UTF8.self)) }
        let failure = texts.filter { $0.contains("Action: failed") }
        XCTAssertEqual(failure.count, 1, "one expiry DSN, for the message with a sender")
        XCTAssertTrue(failure.first?.contains("Status: 4.4.7") == true)
    }

    func testLocalRecipientsNeverLeaveTheMachine() async throws {
        try await store.addDomain("example.org")
        let account = try await store.addAccount(address: "b@example.org",
                                                 credentials: StoredCredentials(passwordHash: "$scrypt$x", scramSHA256: nil),
                                                 quota: .unlimited, isAdmin: false)
        let service = service(try resolver(""), port: 1)
        _ = try await enqueue(service, to: ["b@example.org", "ghost@example.org"], sender: "")
        try await service.runOnce()
        let value14 = try await store.mailbox(accountID: account.id, name: "INBOX")
        let inbox = try XCTUnwrap(value14)
        let stored = try await store.messages(mailboxID: inbox.id)
        XCTAssertEqual(stored.count, 1)
        let left = try await store.queuedMessages()
        XCTAssertTrue(left.isEmpty, "ghost@ failed, null sender: no DSN")
    }

    func testNotifySuccessIsReportedOnlyWhenTheNextHopCannot() async throws {
        let plain = try await ScriptedSMTPServer(script: acceptingScript())
        let withDSN = try await ScriptedSMTPServer(script: acceptingScript(ehlo: ["PIPELINING", "DSN"]))
        let service = service(try resolver("", failures: [(.serverFailure, "example.net")]), port: 1, routes: [
            "plain.example": .relay(QueueRelay(host: "127.0.0.1", port: plain.port)),
            "dsn.example": .relay(QueueRelay(host: "127.0.0.1", port: withDSN.port)),
        ])
        for domain in ["plain.example", "dsn.example"] {
            _ = try await service.enqueue(QueueSubmission(
                sender: "a@example.net", recipients: [QueueRecipientInput(address: "x@\(domain)", notify: [.success, .failure])],
                message: .memory(message)))
        }
        try await service.runOnce()
        XCTAssertTrue(withDSN.commands.contains("RCPT TO:<x@dsn.example> NOTIFY=SUCCESS,FAILURE"), "passed on to a DSN server")
        XCTAssertTrue(plain.commands.contains("RCPT TO:<x@plain.example>"))
        let queue = try await store.queuedMessages()
        XCTAssertEqual(queue.count, 1, "one report, for the hop without DSN")
        let bytes = try await store.queuedMessageBytes(blobID: queue[0].blobID)
        let text = String(decoding: bytes, as: UTF8.self)
        XCTAssertTrue(text.contains("Final-Recipient: rfc822; x@plain.example"))
        XCTAssertTrue(text.contains("Action: relayed"))
        XCTAssertTrue(text.contains("Status: 2.0.0"))
        await plain.stop()
        await withDSN.stop()
    }

    func testSmarthostWithCredentialsNeverAuthenticatesWithoutTLS() async throws {
        let relay = try await ScriptedSMTPServer(script: acceptingScript(ehlo: ["PIPELINING", "AUTH PLAIN"]))
        let service = service(try resolver(""), port: 1, routes: [
            "partner.example": .relay(QueueRelay(host: "127.0.0.1", port: relay.port, username: "u", password: "secret")),
        ])
        let queued = try await enqueue(service, to: ["x@partner.example"])
        try await service.runOnce()
        XCTAssertFalse(relay.commands.contains { $0.hasPrefix("AUTH") }, "no credentials over plaintext")
        XCTAssertTrue(relay.messages.isEmpty)
        let value = try await store.queuedMessage(id: queued.id)
        let shown = try XCTUnwrap(value)
        XCTAssertEqual(shown.recipients[0].state, .deferred)
        XCTAssertTrue(shown.recipients[0].lastReply?.contains("STARTTLS") == true, shown.recipients[0].lastReply ?? "")
        await relay.stop()
    }

    func testDroppedMidDataIsRetriedNotDelivered() async throws {
        let drops = TestCounter()
        let server = try await ScriptedSMTPServer { event in
            if case .message = event, drops.increment() == 1 { return .close }
            return acceptingScript(ehlo: ["8BITMIME"])(event)
        }
        let service = service(try resolver("example.org. 300 IN MX 10 mx.example.org.\nmx.example.org. 300 IN A 127.0.0.1"),
                              port: server.port)
        let queued = try await enqueue(service, to: ["b@example.org"])
        try await service.runOnce()
        let value = try await store.queuedMessage(id: queued.id)
        let shown = try XCTUnwrap(value)
        XCTAssertEqual(shown.recipients[0].state, .deferred, "no final reply: not delivered, kept")
        clock.advance(301)
        try await service.runOnce()
        let gone = try await store.queuedMessage(id: queued.id)
        XCTAssertNil(gone)
        XCTAssertEqual(server.messages.count, 2)
        await server.stop()
    }

    func testIPv6Delivery() async throws {
        let server: ScriptedSMTPServer
        do {
            server = try await ScriptedSMTPServer(host: "::1", script: acceptingScript())
        } catch {
            throw XCTSkip("no IPv6 loopback: \(error)")
        }
        let v6 = QueueDeliveryService(store: store, resolver: try resolver("v6.example. 300 IN MX 10 mx.v6.example.\nmx.v6.example. 300 IN AAAA ::1"),
                                      configuration: QueueConfiguration(hostname: "out.example.net", mxPort: server.port,
                                                                        ipv6Enabled: true, timeouts: .uniform(.seconds(5))),
                                      clock: clock.function)
        let queued = try await enqueue(v6, to: ["x@v6.example"])
        try await v6.runOnce()
        XCTAssertEqual(server.messages.count, 1)
        let gone = try await store.queuedMessage(id: queued.id)
        XCTAssertNil(gone)
        await server.stop()
    }

    func testSmarthostWithSTARTTLSAndAuthPlain() async throws {
        let hasher = PasswordHasher(parameters: ScryptParameters(logN: 10, r: 8, p: 1))
        let credentials = try Credentials.make(password: "relay secret", hasher: hasher)
        let authenticator = Authenticator(configuration: .init(hasher: hasher), lookup: { name in
            name == "relay@example.net" ? credentials : nil
        })
        let backend = RecordingBackend()
        let listener = try await startFacteurSMTP(backend, directory: directory, tls: true, authenticator: authenticator)
        let service = service(try resolver(""), port: 1, routes: [
            "partner.example": .relay(QueueRelay(host: "127.0.0.1", port: listener.localAddress!.port!,
                                                 username: "relay@example.net", password: "relay secret")),
        ])
        let queued = try await enqueue(service, to: ["x@partner.example"])
        try await service.runOnce()
        XCTAssertEqual(backend.count, 1)
        XCTAssertEqual(backend.last?.0.authenticatedAccount, "relay@example.net")
        let gone = try await store.queuedMessage(id: queued.id)
        XCTAssertNil(gone)
        await listener.shutdown(grace: .seconds(1))
    }

    func testSmarthostRoute() async throws {
        let relay = try await ScriptedSMTPServer(script: acceptingScript())
        let service = service(try resolver(""), port: 1,
                              routes: ["partner.example": .relay(QueueRelay(host: "127.0.0.1", port: relay.port))])
        let queued = try await enqueue(service, to: ["x@partner.example"])
        try await service.runOnce()
        XCTAssertEqual(relay.messages.count, 1)
        XCTAssertTrue(relay.commands.contains("RCPT TO:<x@partner.example>"))
        let value9 = try await store.queuedMessage(id: queued.id)
        XCTAssertNil(value9)
        await relay.stop()
    }

    func testRunningServiceDeliversWhatIsEnqueued() async throws {
        let backend = RecordingBackend()
        let listener = try await startFacteurSMTP(backend, directory: directory)
        let service = QueueDeliveryService(store: store, resolver: try resolver(zone),
                                           configuration: QueueConfiguration(hostname: "out.example.net", mxPort: listener.localAddress!.port!,
                                                                             ipv6Enabled: false, timeouts: .uniform(.seconds(5)),
                                                                             pollInterval: .seconds(30)))
        let task = Task { try await service.run() }
        try await Task.sleep(for: .milliseconds(100))
        _ = try await service.enqueue(QueueSubmission(sender: "a@example.net", recipients: [QueueRecipientInput(address: "b@example.org")],
                                                      message: .memory(message)))
        for _ in 0 ..< 100 where backend.count == 0 { try await Task.sleep(for: .milliseconds(50)) }
        XCTAssertEqual(backend.count, 1, "woken by enqueue, well before the 30 s poll")
        task.cancel()
        _ = try? await task.value
        await listener.shutdown(grace: .seconds(1))
    }
}

final class TestCounter: Sendable {
    private let value = NIOLockedValueBox(0)
    func increment() -> Int { value.withLockedValue { $0 += 1; return $0 } }
}

import NIOConcurrencyHelpers
