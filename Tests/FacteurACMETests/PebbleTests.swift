import Crypto
@testable import FacteurACME
import FacteurNet
import FacteurTestSupport
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import X509
import XCTest

/// A test-local TLS server that answers TLS-ALPN-01 (RFC 8737 §3): ALPN "acme-tls/1", and by
/// SNI the challenge certificate the ACME client installed. (The real listeners get the same
/// through FacteurNet's hook.)
final class TestTLSALPNServer: TLSALPNChallengeResponder, @unchecked Sendable {
    private let table = NIOLockedValueBox<[String: NIOSSLContextConfigurationOverride]>([:])
    private(set) var channel: (any Channel)?
    let installs = NIOLockedValueBox(0)

    func install(host: String, certificateChainPEM: String, privateKeyPEM: String) {
        var override = NIOSSLContextConfigurationOverride()
        override.certificateChain = (try? NIOSSLCertificate.fromPEMBytes(Array(certificateChainPEM.utf8)))?.map { .certificate($0) }
        override.privateKey = (try? NIOSSLPrivateKey(bytes: Array(privateKeyPEM.utf8), format: .pem)).map { .privateKey($0) }
        table.withLockedValue { $0[host.lowercased()] = override }
        installs.withLockedValue { $0 += 1 }
    }

    func remove(host: String) { _ = table.withLockedValue { $0.removeValue(forKey: host.lowercased()) } }

    func start(port: Int) async throws {
        // A placeholder default certificate: only SNI-selected challenge certificates matter.
        let (pem, keyPEM) = try TLSALPNChallenge.certificate(host: "default.invalid", keyAuthorization: "none")
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8)).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)))
        configuration.applicationProtocols = [TLSALPNChallenge.alpnProtocol]
        let table = self.table
        configuration.sslContextCallback = { values, promise in
            promise.succeed(table.withLockedValue { $0[values.serverHostname?.lowercased() ?? ""] } ?? .noChanges)
        }
        let context = try NIOSSLContext(configuration: configuration)
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                }
            }
            .bind(host: "127.0.0.1", port: port).get()
    }

    func stop() async { try? await channel?.close() }
}

final class PebbleTests: XCTestCase {
    let zone = "acme.test"
    let names = ["mail.acme.test", "mta-sts.acme.test"]

    private func makeService(pebble: PebbleProcess, data: URL, directoryURL: String? = nil, extraName: String? = nil,
                             responder: TestTLSALPNServer, reloads: NIOLockedValueBox<Int>) -> ACMECertificateService {
        var client = ACMEClientConfiguration(directoryURL: directoryURL ?? pebble.directoryURL, contact: ["mailto:admin@acme.test"],
                                             trustRootsPEMFile: pebble.trustRootsPath)
        client.pollingDeadline = .seconds(60)
        client.requestTimeout = .seconds(5)
        client.connectTimeout = .milliseconds(500)
        var configuration = ACMECertificateConfiguration(
            client: client, domains: names + (extraName.map { [$0] } ?? []), challenge: .tlsALPN01,
            accountDirectory: data.appendingPathComponent("acme").path,
            certificateDirectory: data.appendingPathComponent("tls/acme").path)
        configuration.retryInitial = .milliseconds(200)
        return ACMECertificateService(configuration: configuration, http01: nil, tlsALPN: responder,
                                      logger: Logger(label: "acme-test")) { _ in reloads.withLockedValue { $0 += 1 } }
    }

    func testTLSALPN01IssuanceRenewalKeepsKeyAndUnreachableCAKeepsCertificate() async throws {
        guard let tlsPort = UnboundProcess.freePort(), let httpPort = UnboundProcess.freePort() else { throw XCTSkip("no port") }
        let pebble = try PebbleProcess(zone: zone, names: names, httpPort: httpPort, tlsPort: tlsPort)
        defer { pebble.stop() }
        let responder = TestTLSALPNServer()
        try await responder.start(port: tlsPort)
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("facteur-acme-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: data) }
        let reloads = NIOLockedValueBox(0)
        let service = makeService(pebble: pebble, data: data, responder: responder, reloads: reloads)

        // First issuance.
        let dueWithoutCertificate = await service.renewalDate(for: nil)
        XCTAssertEqual(dueWithoutCertificate, .distantPast)
        do {
            try await service.obtain()
        } catch {
            XCTFail("issuance failed: \(error)\n\(pebble.log.suffix(3000))")
            throw error
        }
        let files = service.configuration.files
        let first = try XCTUnwrap(service.currentCertificate())
        let names = try XCTUnwrap(try first.extensions.subjectAlternativeNames).compactMap { name -> String? in
            if case .dnsName(let dns) = name { return dns } else { return nil }
        }
        XCTAssertEqual(Set(names), Set(self.names))
        XCTAssertEqual(reloads.withLockedValue { $0 }, 1)
        XCTAssertEqual(responder.installs.withLockedValue { $0 }, 2, "one challenge per name")
        let keyAttributes = try FileManager.default.attributesOfItem(atPath: files.keyPath)
        XCTAssertEqual((keyAttributes[.posixPermissions] as? NSNumber)?.intValue, 0o600)
        let accountKey = data.appendingPathComponent("acme/account-key.pem").path
        XCTAssertEqual((try FileManager.default.attributesOfItem(atPath: accountKey)[.posixPermissions] as? NSNumber)?.intValue, 0o600)
        let account = try String(contentsOfFile: data.appendingPathComponent("acme/account.json").path, encoding: .utf8)
        XCTAssertTrue(account.contains(pebble.directoryURL), account)
        // Not due yet: renewal is in the future (ARI window, or two thirds of the lifetime).
        let due = await service.renewalDate(for: first)
        XCTAssertGreaterThan(due, Date())
        XCTAssertLessThan(due, first.notValidAfter)

        // Forced renewal: a new serial, the same key (DANE TLSA 3 1 1 stays valid).
        try await service.obtain(replacing: first)
        let second = try XCTUnwrap(service.currentCertificate())
        XCTAssertNotEqual(second.serialNumber, first.serialNumber)
        XCTAssertEqual(second.publicKey, first.publicKey)
        XCTAssertEqual(reloads.withLockedValue { $0 }, 2)
        await service.shutdown()

        // The CA goes away: the certificate on disk is kept, the service keeps retrying.
        guard let deadPort = UnboundProcess.freePort() else { throw XCTSkip("no port") }
        let before = try Data(contentsOf: URL(fileURLWithPath: files.certificatePath))
        // A name the certificate lacks makes it due at once, so the loop tries (and retries).
        let unreachable = makeService(pebble: pebble, data: data, directoryURL: "https://localhost:\(deadPort)/dir",
                                      extraName: "new.acme.test", responder: responder, reloads: reloads)
        do {
            try await unreachable.obtain()
            XCTFail("an unreachable CA cannot issue")
        } catch {}
        let loop = Task { await unreachable.run() }
        // Backoff 0.2 s, 0.4 s, …: several attempts within a few seconds, none of them fatal.
        let started = ContinuousClock.now
        while await unreachable.consecutiveFailures < 2, ContinuousClock.now - started < .seconds(20) {
            try await Task.sleep(for: .milliseconds(100))
        }
        loop.cancel()
        await loop.value
        let failures = await unreachable.consecutiveFailures
        XCTAssertGreaterThanOrEqual(failures, 2, "the loop retries after a failure")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: files.certificatePath)), before)
        XCTAssertEqual(reloads.withLockedValue { $0 }, 2)
        await responder.stop()
    }
}
