import Crypto
@testable import FacteurACME
import Foundation
import Logging
import NIOCore
import NIOPosix
import SwiftASN1
import X509
import XCTest

/// A minimal plain-HTTP stand-in for a CA's directory and renewalInfo (RFC 9773 §4.2), since
/// the Debian Pebble (2.4) predates ARI. One request per connection.
final class FakeACMEDirectoryHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let routes: @Sendable (String) -> (status: Int, headers: [String], body: String)
    private var received: [UInt8] = []

    init(routes: @escaping @Sendable (String) -> (status: Int, headers: [String], body: String)) { self.routes = routes }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        received += buffer.readBytes(length: buffer.readableBytes) ?? []
        guard let text = String(bytes: received, encoding: .utf8), text.contains("\r\n\r\n") else { return }
        let path = text.split(separator: " ").dropFirst().first.map(String.init) ?? "/"
        let (status, headers, body) = routes(path)
        let head = (["HTTP/1.1 \(status) X", "Content-Type: application/json", "Content-Length: \(body.utf8.count)",
                     "Connection: close"] + headers).joined(separator: "\r\n")
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(string: head + "\r\n\r\n" + body))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }
}

final class ARITests: XCTestCase {
    func testRenewalDateFallsInTheSuggestedWindow() async throws {
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName { CommonName("mail.example.org") }
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(bytes: [0x01, 0x02, 0x03]), publicKey: .init(key.publicKey),
            notValidBefore: now - 86_400, notValidAfter: now + 89 * 86_400,
            issuer: try DistinguishedName { CommonName("Test CA") }, subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                AuthorityKeyIdentifier(keyIdentifier: [0xAA, 0xBB])
                SubjectAlternativeNames([.dnsName("mail.example.org")])
            }, issuerPrivateKey: .init(key))
        let certID = try XCTUnwrap(ACMEClient.renewalCertID(certificate))
        XCTAssertEqual(certID, "qrs.AQID")
        let formatter = ISO8601DateFormatter()
        let start = now + 10 * 86_400, end = now + 12 * 86_400
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(FakeACMEDirectoryHandler { path in
                        let port = channel.localAddress?.port ?? 0
                        switch path {
                        case "/dir":
                            let base = "http://127.0.0.1:\(port)"
                            return (200, [], #"{"newNonce":"\#(base)/nonce","newAccount":"\#(base)/acct","newOrder":"\#(base)/order","renewalInfo":"\#(base)/ari/"}"#)
                        case "/ari/\(certID)":
                            return (200, ["Retry-After: 7200"],
                                    #"{"suggestedWindow":{"start":"\#(formatter.string(from: start))","end":"\#(formatter.string(from: end))"}}"#)
                        default:
                            return (404, [], "{}")
                        }
                    })
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try XCTUnwrap(channel.localAddress?.port)
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("facteur-ari-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: data) }
        let service = ACMECertificateService(
            configuration: .init(client: .init(directoryURL: "http://127.0.0.1:\(port)/dir"), domains: ["mail.example.org"],
                                 challenge: .http01, accountDirectory: data.path, certificateDirectory: data.path),
            http01: nil, tlsALPN: nil, logger: Logger(label: "ari")) { _ in }
        let due = await service.renewalDate(for: certificate)
        XCTAssertGreaterThanOrEqual(due.timeIntervalSince1970, start.timeIntervalSince1970.rounded(.down))
        XCTAssertLessThanOrEqual(due.timeIntervalSince1970, end.timeIntervalSince1970.rounded(.up))
        // Asked again before Retry-After: the same choice, not a new random one.
        let again = await service.renewalDate(for: certificate)
        XCTAssertEqual(again, due)

        // Without ARI (a certificate whose CA is gone): two thirds of the lifetime.
        var offlineClient = ACMEClientConfiguration(directoryURL: "http://127.0.0.1:1/dir")
        offlineClient.connectTimeout = .milliseconds(300)
        let offline = ACMECertificateService(
            configuration: .init(client: offlineClient, domains: ["mail.example.org"],
                                 challenge: .http01, accountDirectory: data.path, certificateDirectory: data.path),
            http01: nil, tlsALPN: nil, logger: Logger(label: "ari")) { _ in }
        let fallback = await offline.renewalDate(for: certificate)
        XCTAssertEqual(fallback.timeIntervalSince1970, (now + 59 * 86_400).timeIntervalSince1970, accuracy: 2)
        // A certificate lacking a configured name is due at once.
        let wider = ACMECertificateService(
            configuration: .init(client: .init(directoryURL: "http://127.0.0.1:1/dir"), domains: ["mail.example.org", "mta-sts.example.org"],
                                 challenge: .http01, accountDirectory: data.path, certificateDirectory: data.path),
            http01: nil, tlsALPN: nil, logger: Logger(label: "ari")) { _ in }
        let dueNow = await wider.renewalDate(for: certificate)
        XCTAssertEqual(dueNow, .distantPast)
        await service.shutdown(); await offline.shutdown(); await wider.shutdown()
        try await channel.close()
    }
}
