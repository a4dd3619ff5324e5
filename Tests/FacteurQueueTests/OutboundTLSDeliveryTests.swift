// Outbound TLS policy through the delivery worker, on loopback against Facteur's own SMTP server:
// DANE-EE matching and mismatching (RFC 7672), MTA-STS enforce/testing with WebPKI checks against a
// test CA (RFC 8461), the require-tls and allow-plaintext overrides, REQUIRETLS to an
// unauthenticated destination (RFC 8689 §5), and the TLSSessionOutcome given to the sink.

import Crypto
import FacteurDNS
import FacteurSMTP
import FacteurStore
import Foundation
import NIOConcurrencyHelpers
import SwiftASN1
import X509
import XCTest
@testable import FacteurQueue

/// Keeps every outcome.
final class RecordingTLSSink: TLSReportSink {
    private let box = NIOLockedValueBox<[TLSSessionOutcome]>([])
    func record(_ outcome: TLSSessionOutcome) async { box.withLockedValue { $0.append(outcome) } }
    var outcomes: [TLSSessionOutcome] { box.withLockedValue { $0 } }
}

/// A fixed MTA-STS answer.
struct FixedMTASTS: MTASTSPolicySource {
    var answer: MTASTSLookup
    func lookup(domain: String) async -> MTASTSLookup { answer }
}

final class OutboundTLSDeliveryTests: XCTestCase {
    var directory = ""
    var store: SQLiteMailStore!
    let clock = TestClock()
    let message = crlf("From: a@example.net\nTo: b@example.org\nSubject: tls\nMessage-ID: <tls@example.net>\n\nbody\n")

    override func setUp() async throws {
        directory = temporaryDirectory("outbound-tls")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        store = try SQLiteMailStore(directory: directory + "/store")
    }

    override func tearDown() async throws {
        try? store.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// The receiving server's certificate: from `pki` for mx.example.org, written where
    /// startFacteurSMTP finds it (it only makes a self-signed one when none is there).
    func installCertificate(_ pki: TestPKI) throws -> Certificate {
        let (leaf, key) = try pki.leaf(["mx.example.org"])
        try leaf.serializeAsPEM().pemString.write(toFile: "\(directory)/cert.pem", atomically: true, encoding: .utf8)
        try key.pemRepresentation.write(toFile: "\(directory)/key.pem", atomically: true, encoding: .utf8)
        return leaf
    }

    func service(_ resolver: StaticResolver, port: Int, tls: OutboundTLSConfiguration = .init(), sts: MTASTSLookup = .none,
                 sink: RecordingTLSSink) -> QueueDeliveryService {
        var configuration = QueueConfiguration(hostname: "out.example.net", mxPort: port, ipv6Enabled: false,
                                               timeouts: .uniform(.seconds(5)), retry: RetrySchedule(first: 300, factor: 2, maximum: 3600))
        configuration.tls = tls
        return QueueDeliveryService(store: store, resolver: resolver, configuration: configuration, tlsReportSink: sink,
                                    mtaSTS: FixedMTASTS(answer: sts), clock: clock.function)
    }

    func zone(port: Int, tlsa: String? = nil) -> String {
        var text = "example.org. 300 IN MX 10 mx.example.org.\nmx.example.org. 300 IN A 127.0.0.1"
        if let tlsa { text += "\n_\(port)._tcp.mx.example.org. 300 IN TLSA \(tlsa)" }
        return text
    }

    func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    func enqueue(_ service: QueueDeliveryService, demand: MessageTLSDemand = .standard) async throws -> QueuedMessage {
        try await service.enqueue(QueueSubmission(sender: "a@example.net", recipients: [QueueRecipientInput(address: "b@example.org")],
                                                  message: .memory(message), tlsDemand: demand))
    }

    func testDANEEEMatchDeliversAndMismatchDefers() async throws {
        let leaf = try installCertificate(try TestPKI())
        let backend = RecordingBackend()
        let listener = try await startFacteurSMTP(backend, directory: directory, tls: true)
        let port = try XCTUnwrap(listener.localAddress?.port)
        let digest = hex(Array(SHA256.hash(data: try XCTUnwrap(DANEVerifier.subjectPublicKeyInfo(leaf)))))
        var resolver = StaticResolver(authenticData: true)
        try resolver.add(zone: zone(port: port, tlsa: "3 1 1 \(digest)"))
        let sink = RecordingTLSSink()
        let good = service(resolver, port: port, sink: sink)
        let queued = try await enqueue(good)
        try await good.runOnce()
        XCTAssertEqual(backend.count, 1)
        XCTAssertEqual(backend.last?.0.receivedProtocol.hasSuffix("S"), true, "over TLS")
        let gone = try await store.queuedMessage(id: queued.id)
        XCTAssertNil(gone)
        XCTAssertEqual(sink.outcomes.count, 1)
        XCTAssertEqual(sink.outcomes.first?.policyType, .tlsa)
        XCTAssertNil(sink.outcomes.first?.failure, "\(sink.outcomes)")
        XCTAssertEqual(sink.outcomes.first?.policyDomain, "mx.example.org")
        XCTAssertEqual(sink.outcomes.first?.receivingIP, "127.0.0.1")
        XCTAssertEqual(sink.outcomes.first?.sendingMTAIP, "127.0.0.1")

        var wrong = StaticResolver(authenticData: true)
        try wrong.add(zone: zone(port: port, tlsa: "3 1 1 \(String(repeating: "ab", count: 32))"))
        let badSink = RecordingTLSSink()
        let bad = service(wrong, port: port, sink: badSink)
        let held = try await enqueue(bad)
        try await bad.runOnce()
        XCTAssertEqual(backend.count, 1, "never delivered without a match, not even in plaintext")
        let shown = try await store.queuedMessage(id: held.id)
        let recipient = try XCTUnwrap(shown?.recipients.first)
        XCTAssertEqual(recipient.state, .deferred)
        XCTAssertTrue(recipient.lastReply?.hasPrefix("451 4.7.5") == true, recipient.lastReply ?? "")
        XCTAssertEqual(badSink.outcomes.first?.failure, .validationFailure)
        await listener.shutdown(grace: .seconds(1))
    }

    func testMTASTSEnforceNeedsAWebPKICertificateAndTestingDeliversAnyway() async throws {
        let pki = try TestPKI()
        _ = try installCertificate(pki)
        let backend = RecordingBackend()
        let listener = try await startFacteurSMTP(backend, directory: directory, tls: true)
        let port = try XCTUnwrap(listener.localAddress?.port)
        var resolver = StaticResolver()
        try resolver.add(zone: zone(port: port))
        let roots = "\(directory)/ca.pem"
        try pki.ca.serializeAsPEM().pemString.write(toFile: roots, atomically: true, encoding: .utf8)
        let enforce = MTASTSPolicy(mode: .enforce, mx: ["mx.example.org"], maxAge: 86400)

        // Trusted CA, matching MX: delivered, verified by WebPKI.
        let sink = RecordingTLSSink()
        let trusted = service(resolver, port: port, tls: OutboundTLSConfiguration(trustRootsFile: roots), sts: .policy(enforce), sink: sink)
        _ = try await enqueue(trusted)
        try await trusted.runOnce()
        XCTAssertEqual(backend.count, 1)
        XCTAssertEqual(sink.outcomes.first?.policyType, .sts)
        XCTAssertNil(sink.outcomes.first?.failure)

        // The CA is not trusted: enforce defers…
        let untrustedSink = RecordingTLSSink()
        let untrusted = service(resolver, port: port, sts: .policy(enforce), sink: untrustedSink)
        let held = try await enqueue(untrusted)
        try await untrusted.runOnce()
        XCTAssertEqual(backend.count, 1)
        let shown = try await store.queuedMessage(id: held.id)
        XCTAssertEqual(shown?.recipients.first?.state, .deferred)
        XCTAssertEqual(untrustedSink.outcomes.first?.failure, .certificateNotTrusted)
        try await store.deleteQueued(id: held.id)

        // …and testing delivers, reporting the failure.
        var testing = enforce
        testing.mode = .testing
        let testingSink = RecordingTLSSink()
        let tolerant = service(resolver, port: port, sts: .policy(testing), sink: testingSink)
        _ = try await enqueue(tolerant)
        try await tolerant.runOnce()
        XCTAssertEqual(backend.count, 2)
        XCTAssertEqual(testingSink.outcomes.first?.failure, .certificateNotTrusted)
        await listener.shutdown(grace: .seconds(1))
    }

    func testOverridesRequireTLSAndAllowPlaintext() async throws {
        let plainBackend = RecordingBackend()
        let plain = try await startFacteurSMTP(plainBackend, directory: directory, tls: false)
        let plainPort = try XCTUnwrap(plain.localAddress?.port)
        var resolver = StaticResolver()
        try resolver.add(zone: zone(port: plainPort))
        let sink = RecordingTLSSink()
        let strict = service(resolver, port: plainPort, tls: OutboundTLSConfiguration(overrides: ["example.org": .requireTLS]), sink: sink)
        let held = try await enqueue(strict)
        try await strict.runOnce()
        XCTAssertEqual(plainBackend.count, 0)
        let shown = try await store.queuedMessage(id: held.id)
        XCTAssertEqual(shown?.recipients.first?.state, .deferred)
        XCTAssertTrue(shown?.recipients.first?.lastReply?.contains("STARTTLS") == true, shown?.recipients.first?.lastReply ?? "")
        XCTAssertEqual(sink.outcomes.first?.failure, .starttlsNotSupported)
        await plain.shutdown(grace: .seconds(1))

        let tlsDirectory = directory + "/tls"
        try FileManager.default.createDirectory(atPath: tlsDirectory, withIntermediateDirectories: true)
        let backend = RecordingBackend()
        let listener = try await startFacteurSMTP(backend, directory: tlsDirectory, tls: true)
        let port = try XCTUnwrap(listener.localAddress?.port)
        var other = StaticResolver()
        try other.add(zone: zone(port: port))
        let lax = service(other, port: port, tls: OutboundTLSConfiguration(overrides: ["example.org": .allowPlaintext]), sink: sink)
        try await store.deleteQueued(id: held.id)
        _ = try await enqueue(lax)
        try await lax.runOnce()
        XCTAssertEqual(backend.count, 1)
        XCTAssertEqual(backend.last?.0.receivedProtocol.hasSuffix("S"), false, "STARTTLS not even tried")
        await listener.shutdown(grace: .seconds(1))
    }

    func testREQUIRETLSToAnUnauthenticatedDestinationBouncesWith5730() async throws {
        let backend = RecordingBackend()
        let listener = try await startFacteurSMTP(backend, directory: directory, tls: true)
        let port = try XCTUnwrap(listener.localAddress?.port)
        var resolver = StaticResolver()
        try resolver.add(zone: zone(port: port))
        let service = service(resolver, port: port, sink: RecordingTLSSink())
        let queued = try await enqueue(service, demand: .requireTLS)
        try await service.runOnce()
        XCTAssertEqual(backend.count, 0)
        let gone = try await store.queuedMessage(id: queued.id)
        XCTAssertNil(gone, "failed and reported")
        let queue = try await store.queuedMessages()
        let dsn = try XCTUnwrap(queue.first)
        XCTAssertEqual(dsn.tlsDemand, .standard, "the bounce itself is not REQUIRETLS")
        let text = String(decoding: try await store.queuedMessageBytes(blobID: dsn.blobID), as: UTF8.self)
        XCTAssertTrue(text.contains("Status: 5.7.30"), text)
        await listener.shutdown(grace: .seconds(1))
    }
}
