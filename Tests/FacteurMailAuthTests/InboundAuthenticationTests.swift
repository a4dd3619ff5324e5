// The pieces that put the checks on mail in: the streaming digest (body hashed while it arrives),
// iprev, Authentication-Results rendering (read back with the RFC 8601 parser), DMARC in the
// orchestration, and the DKIM key folder with its rotation schedule.

import FacteurDNS
import FacteurMIME
import FacteurMailAuth
import FacteurTestSupport
import Foundation
import XCTest

final class InboundAuthenticationTests: XCTestCase {
    static let message = Array("""
        From: Alice <alice@example.com>\r
        To: bob@example.net\r
        Subject: streaming\r
        Date: Fri, 27 Nov 2026 10:00:00 +0000\r
        Message-ID: <1@example.com>\r
        \r
        Line one.\r
        \r
        Line three, after an empty line.  \r
        \r
        \r

        """.utf8)

    func signedMessage(_ signers: [DKIMSigner]) throws -> [UInt8] {
        Array(try DKIMSigner.sign(message: Self.message, with: signers).utf8) + Self.message
    }

    /// Any way of cutting the message into chunks gives the verdict of the whole message.
    func testDigestFedInRandomChunksVerifiesLikeTheWholeMessage() async throws {
        let key = DKIMSigningKey.generateEd25519()
        let signed = try signedMessage([DKIMSigner(domain: "example.com", selector: "s1", key: key)])
        var resolver = StaticResolver()
        resolver.add(DNSResourceRecord(name: try DNSName("s1._domainkey.example.com"), ttl: 300, data: .txt(TXTRecord(text: key.dnsRecord))))
        let verifier = DKIMVerifier(resolver: resolver)
        var random = SeededRandom(seed: 42)
        for _ in 0..<40 {
            var digest = InboundMessageDigest()
            var offset = 0
            while offset < signed.count {
                let size = Int(random.next() % 7) + 1
                let end = min(signed.count, offset + size)
                signed[offset..<end].withUnsafeBytes { digest.consume($0) }
                offset = end
            }
            var (header, session) = digest.finished()
            XCTAssertEqual(header.count, MessageHeader(parsing: signed).bodyOffset)
            let results = await session.finish(using: verifier)
            XCTAssertEqual(results.map(\.result), [.pass], "\(results)")
        }
        // A changed body byte fails, fed the same way.
        var tampered = signed
        tampered[tampered.count - 8] ^= 0x20
        var digest = InboundMessageDigest()
        tampered.withUnsafeBytes { digest.consume($0) }
        var (_, session) = digest.finished()
        let results = await session.finish(using: verifier)
        XCTAssertEqual(results.map(\.result), [.fail])
    }

    func testDigestOfAMessageWithoutBodyOrWithEmptyHeader() {
        var digest = InboundMessageDigest()
        Array("Subject: no body\r\n".utf8).withUnsafeBytes { digest.consume($0) }
        XCTAssertEqual(digest.finished().headerBytes.count, 18)
        var empty = InboundMessageDigest()
        Array("\r\nbody only\r\n".utf8).withUnsafeBytes { empty.consume($0) }
        XCTAssertEqual(empty.finished().headerBytes, Array("\r\n".utf8))
    }

    func testIPRevPassFailAndPermerror() async throws {
        var resolver = StaticResolver()
        try resolver.add(zone: """
            1.2.0.192.in-addr.arpa. 300 IN PTR mx.example.com.
            mx.example.com. 300 IN A 192.0.2.1
            2.2.0.192.in-addr.arpa. 300 IN PTR liar.example.com.
            liar.example.com. 300 IN A 198.51.100.7
            """)
        let iprev = IPRevVerifier(resolver: resolver)
        let pass = await iprev.check(IPAddress("192.0.2.1")!)
        XCTAssertEqual(pass.result, .pass)
        XCTAssertEqual(pass.name, "mx.example.com")
        let fail = await iprev.check(IPAddress("192.0.2.2")!)
        XCTAssertEqual(fail.result, .fail)
        let none = await iprev.check(IPAddress("192.0.2.3")!)
        XCTAssertEqual(none.result, .permerror)
    }

    func testAuthenticationResultsRenderingReadsBackWithTheParser() throws {
        let field = AuthenticationResultsField.render(authservID: "mx.example.net", clauses: [
            AuthenticationResultsClause(method: "spf", result: "pass", comment: "matched ip4:192.0.2.0/24 (sneaky) \\x",
                                        properties: [("smtp", "mailfrom", "alice@example.com")]),
            AuthenticationResultsClause(method: "dkim", result: "fail", comment: "body hash did not verify",
                                        properties: [("header", "d", "example.com"), ("header", "b", "ab+/cd==")]),
            AuthenticationResultsClause(method: "dmarc", result: "fail", properties: [("header", "from", "we ird;\"x")]),
        ])
        XCTAssertTrue(field.hasPrefix("Authentication-Results: mx.example.net;\r\n\tspf=pass"))
        XCTAssertTrue(field.hasSuffix("\r\n"))
        XCTAssertFalse(field.contains("(sneaky)"), "parentheses from DNS text never reach the comment")
        let value = field.dropFirst("Authentication-Results:".count).dropLast(1)  // "\r\n" is one Character
        let parsed = try XCTUnwrap(AuthenticationResultsParser.parse(String(value)))
        XCTAssertEqual(parsed.authservID, "mx.example.net")
        XCTAssertEqual(parsed.results.map(\.method), ["spf", "dkim", "dmarc"])
        XCTAssertEqual(parsed.results.map(\.result), ["pass", "fail", "fail"])
        XCTAssertEqual(parsed.results[2].properties.first?.value, "we ird;\"x", "a value that is not a token is quoted")
        XCTAssertEqual(AuthenticationResultsField.render(authservID: "mx", clauses: []), "Authentication-Results: mx; none\r\n")
    }

    /// SPF, DKIM and DMARC together, as the SMTP server runs them.
    func testAuthenticatorGivesDMARCPassForAlignedDKIMAndFailForAForgedFrom() async throws {
        let key = DKIMSigningKey.generateEd25519()
        var resolver = StaticResolver()
        try resolver.add(zone: """
            example.com. 300 IN TXT "v=spf1 ip4:192.0.2.1 -all"
            _dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject"
            """)
        resolver.add(DNSResourceRecord(name: try DNSName("s1._domainkey.example.com"), ttl: 300, data: .txt(TXTRecord(text: key.dnsRecord))))
        let authenticator = MessageAuthenticator(resolver: resolver, receivingDomain: "mx.example.net")
        let signed = try signedMessage([DKIMSigner(domain: "example.com", selector: "s1", key: key)])
        var digest = InboundMessageDigest()
        signed.withUnsafeBytes { digest.consume($0) }
        let (header, session) = digest.finished()
        // A forwarder's address: SPF fails for the envelope, DKIM still aligns.
        let forwarded = await authenticator.authenticate(
            SMTPIdentity(clientIP: IPAddress("198.51.100.9")!, helo: "relay.example.org", mailFrom: "alice@example.com"),
            headerBytes: header, dkimSession: session)
        XCTAssertEqual(forwarded.spfMailFrom?.result, .fail)
        XCTAssertEqual(forwarded.dmarc?.result, .pass)
        XCTAssertEqual(forwarded.dmarc?.dkimAligned, true)
        XCTAssertTrue(forwarded.clauses.contains { $0.method == "dmarc" && $0.result == "pass" })

        // The same From: with no signature and the wrong client: DMARC fails with p=reject.
        var plain = InboundMessageDigest()
        Self.message.withUnsafeBytes { plain.consume($0) }
        let (plainHeader, plainSession) = plain.finished()
        let forged = await authenticator.authenticate(
            SMTPIdentity(clientIP: IPAddress("203.0.113.5")!, helo: "evil.example", mailFrom: "x@evil.example"),
            headerBytes: plainHeader, dkimSession: plainSession)
        XCTAssertEqual(forged.dmarc?.result, .fail)
        XCTAssertEqual(forged.dmarc?.disposition, .reject)
        XCTAssertEqual(forged.fromDomain, "example.com")
    }

    func testTwoFromAddressesHaveNoDMARCDomain() {
        let header = MessageHeader(parsing: Array("From: a@example.com, b@example.org\r\n\r\n".utf8))
        let (domain, problem) = MessageAuthenticator.fromDomain(header)
        XCTAssertNil(domain)
        XCTAssertEqual(problem, "several From: addresses")
    }

    // MARK: key folder

    func testKeyringRotationPublishesAheadAndKeepsTheOldKeyPublished() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("facteur-dkim-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let keyring = DKIMKeyring(directory: directory)
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        let first = try keyring.generate(domain: "Example.COM", algorithm: "ed25519", now: start)
        XCTAssertEqual(first.activates, start, "the first key signs at once")
        XCTAssertEqual(try keyring.signers(for: "example.com", now: start).map(\.selector), [first.selector])
        XCTAssertThrowsError(try keyring.generate(domain: "example.com", algorithm: "ed25519", selector: first.selector, now: start))

        let later = start.addingTimeInterval(30 * 86_400)
        let next = try keyring.generate(domain: "example.com", algorithm: "ed25519", selector: "next", activateAfter: 3 * 86_400, now: later)
        XCTAssertEqual(next.activates, later.addingTimeInterval(3 * 86_400))
        // Until then the old key signs and both records are published.
        XCTAssertEqual(try keyring.signers(for: "example.com", now: later).map(\.selector), [first.selector])
        XCTAssertEqual(try keyring.records(for: "example.com", now: later).map(\.state), [.active, .pending])
        // After the switch the new key signs; the old one stays published for the overlap, then expires.
        let switched = later.addingTimeInterval(3 * 86_400 + 1)
        XCTAssertEqual(try keyring.signers(for: "example.com", now: switched).map(\.selector), ["next"])
        XCTAssertEqual(try keyring.records(for: "example.com", now: switched).map(\.state), [.retired, .active])
        let expired = switched.addingTimeInterval(keyring.overlap + 1)
        XCTAssertEqual(try keyring.records(for: "example.com", now: expired).map(\.state), [.expired, .active])

        // An RSA key joins: both algorithms sign, Ed25519 first; parents cover subdomains.
        try keyring.generate(domain: "example.com", algorithm: "rsa", now: switched)
        XCTAssertEqual(try keyring.signers(for: "example.com", now: switched).map(\.key.algorithm), [.ed25519SHA256, .rsaSHA256])
        let cache = DKIMSignerCache(keyring: keyring)
        XCTAssertEqual(cache.signers(forFromDomain: "mail.example.com", now: switched).map(\.domain), ["example.com", "example.com"])
        XCTAssertTrue(cache.signers(forFromDomain: "example.org", now: switched).isEmpty)
        let mode = try FileManager.default.attributesOfItem(atPath: "\(directory)/example.com/next.ed25519")[.posixPermissions] as? Int
        XCTAssertEqual(mode, 0o600, "private keys are readable by the server only")
        XCTAssertThrowsError(try keyring.generate(domain: "../etc", algorithm: "rsa"))
    }

    func testZoneTextSplitsLongValues() {
        let value = String(repeating: "x", count: 400)
        XCTAssertEqual(DKIMKeyring.zoneText(value), "\"\(String(repeating: "x", count: 255))\" \"\(String(repeating: "x", count: 145))\"")
    }
}
