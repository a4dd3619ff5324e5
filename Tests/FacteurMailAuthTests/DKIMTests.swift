// DKIM verification and signing against the vectors in Fixtures/dkim (RFC 6376, RFC 8463, dkimpy,
// real signed messages; see its README), plus round trips and tampering.

import Crypto
import _CryptoExtras
import FacteurDNS
import FacteurMIME
import FacteurMailAuth
import Foundation
import XCTest

final class DKIMTests: XCTestCase {
    static func data(_ path: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: SPFSuiteTests.fixture("dkim/" + path)))
    }

    static func text(_ path: String) throws -> String {
        String(decoding: try data(path), as: UTF8.self)
    }

    /// Adds "<owner> <TXT value>" lines (comments with ; or #).
    static func addKeys(_ text: String, to resolver: inout StaticResolver) throws {
        for line in text.split(separator: "\n") {
            guard let first = line.first, first != ";", first != "#", let space = line.firstIndex(of: " ") else { continue }
            let owner = String(line[..<space])
            let value = String(line[line.index(after: space)...])
            resolver.add(DNSResourceRecord(name: try DNSName(owner), ttl: 300, data: .txt(TXTRecord(text: value))))
        }
    }

    static func verifier(_ resolver: StaticResolver, now: Int64 = 1_667_843_664) -> DKIMVerifier {
        DKIMVerifier(resolver: resolver, clock: { now })
    }

    // MARK: vectors

    func testRFC8463BothSignaturesPass() async throws {
        var resolver = StaticResolver()
        try Self.addKeys(Self.text("rfc8463/dns-records.txt"), to: &resolver)
        let message = DKIMMessage.withCRLF(try Self.data("rfc8463/a3-signed.eml"))
        let results = await Self.verifier(resolver).verify(message: message)
        XCTAssertEqual(results.map(\.result), [.pass, .pass], results.map(\.reason).description)
        XCTAssertEqual(results.compactMap(\.signature?.algorithm), [.ed25519SHA256, .rsaSHA256])
    }

    func testRFC6376ExampleFailsOnItsKnownBodyHashDefect() async throws {
        var resolver = StaticResolver()
        try Self.addKeys(Self.text("rfc6376/dns-records.txt"), to: &resolver)
        let message = DKIMMessage.withCRLF(try Self.data("rfc6376/a2-signed.eml"))
        let results = await Self.verifier(resolver).verify(message: message)
        XCTAssertEqual(results.map(\.result), [.fail])
        XCTAssertEqual(results.first?.reason, "body hash did not verify")
    }

    func testRealMessagesFromMailAuth() async throws {
        let expected: [String: [DKIMResult]] = [
            "001.txt": [.pass, .pass], "002.txt": [.pass], "003.txt": [.pass, .pass],
            "004.txt": [.pass], "005.txt": [.pass], "006.txt": [.pass],
        ]
        for (file, want) in expected.sorted(by: { $0.key < $1.key }) {
            let bytes = try Self.data("mail-auth/" + file)
            // DNS lines, one blank line, then the message.
            guard let split = bytes.indices.first(where: { $0 + 1 < bytes.count && bytes[$0] == 0x0A && bytes[$0 + 1] == 0x0A }) else {
                XCTFail("\(file): no blank line"); continue
            }
            var resolver = StaticResolver()
            try Self.addKeys(String(decoding: bytes[...split], as: UTF8.self), to: &resolver)
            let message = DKIMMessage.withCRLF(Array(bytes[(split + 2)...]))
            let results = await Self.verifier(resolver).verify(message: message)
            XCTAssertEqual(results.map(\.result), want, "\(file): \(results.map(\.reason))")
        }
    }

    /// The dkimpy data: keys per manifest.yaml, the pre-signed messages' expected results.
    static func dkimpyResolver(testKey: String = "test.txt") throws -> StaticResolver {
        var resolver = StaticResolver()
        func add(_ name: String, _ value: String) throws {
            let record = value.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "\n", with: "")
            resolver.add(DNSResourceRecord(name: try DNSName(name), ttl: 300, data: .txt(TXTRecord(text: record))))
        }
        try add("test._domainkey.example.com", try text("dkimpy/" + testKey))
        try add("test._domainkey.football.example.com", try text("dkimpy/test.txt"))
        try add("brisbane._domainkey.football.example.com", "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
        try add("test._domainkey.example.net", "v=DKIM1; k=ed25519; p=yi50DjK5O9pqbFpNHklsv9lqaS0ArSYu02qp1S0DW1Y=")
        try add("sed._domainkey.test.ex", try text("dkimpy/eximtest.dns"))
        try add("20120113._domainkey.gmail.com", "k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA1Kd87/UeJjenpabgbFwh+eBCsSTrqmwIYYvywlbhbqoo2DymndFkbjOVIPIldNs/m40KF+yzMn1skyoxcTUGCQs8g3FgD2Ap3ZB5DekAo5wMmk4wimDO+U8QzI3SD07y2+07wlNWwIt8svnxgdxGkVbbhzY8i+RQ9DpSVpPbF7ykQxtKXkv/ahW3KjViiAH+ghvvIhkx4xYSIc9oSwVmAl5OctMEeWUwg8Istjqz8BZeTWbf41fbNhte7Y+YqZOwq1Sd0DbvYAD9NOZK9vlfuac0598HY+vtSBczUiKERHv1yRbcaQtZFh5wtiRrN04BLUTD21MycBX5jYchHjPY/wIDAQAB")
        return resolver
    }

    func testDkimpyPreSignedMessages() async throws {
        let resolver = try Self.dkimpyResolver()
        // Old signatures: the clock is set after their t= and before any x=.
        let cases: [(String, [DKIMResult])] = [
            ("rfc6376.signed.msg", [.pass, .pass]),
            ("rfc6376.signed.rsa.msg", [.pass]),
            ("rfc6376.signed.no_t.msg", [.fail]),
            ("test2.message", [.pass]),
            ("ed25519test2.msg", [.pass]),
            ("test.message.baddomain", [.permerror]),
        ]
        for (file, want) in cases {
            let message = DKIMMessage.withCRLF(try Self.data("dkimpy/" + file))
            // After every t= of these messages, before no_t's x=100000000000.
            let now: Int64 = 1_600_000_000
            let results = await DKIMVerifier(resolver: resolver, clock: { now }).verify(message: message)
            XCTAssertEqual(results.map(\.result), want, "\(file): \(results.map(\.reason))")
        }
    }

    func testDefectiveKeyRecordsArePermerror() async throws {
        let key = try Self.rsaKey(pem: Self.text("dkimpy/test.private"))
        let message = DKIMMessage.withCRLF(try Self.data("dkimpy/test.message"))
        let signer = DKIMSigner(domain: "example.com", selector: "test", key: .rsa(key), clock: { 1_700_000_000 })
        let signed = Array(try signer.sign(message: message).utf8) + message
        // The good record passes; the defective ones give permerror.
        for (file, want) in [("test.txt", DKIMResult.pass), ("test2.txt", .pass), ("badversion.txt", .permerror),
                             ("badk.txt", .permerror), ("test_bad.txt", .permerror), ("test_tlsrpt.txt", .permerror)] {
            let resolver = try Self.dkimpyResolver(testKey: file)
            let results = await DKIMVerifier(resolver: resolver, clock: { 1_700_000_000 }).verify(message: signed)
            XCTAssertEqual(results.map(\.result), [want], "\(file): \(results.map(\.reason))")
        }
    }

    // MARK: round trips and tampering

    static func rsaKey(pem: String) throws -> _RSA.Signing.PrivateKey {
        try _RSA.Signing.PrivateKey(unsafePEMRepresentation: pem)
    }

    static func ed25519Key(seedBase64: String) throws -> Curve25519.Signing.PrivateKey {
        guard let seed = Data(base64Encoded: seedBase64.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw XCTSkip("bad seed")
        }
        return try Curve25519.Signing.PrivateKey(rawRepresentation: seed)
    }

    static let sample = DKIMMessage.withCRLF(Array("""
        From: Joe SixPack <joe@football.example.com>
        To: Suzie Q <suzie@shopping.example.net>
        Subject: Is dinner ready?
        Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)
        Message-ID: <20030712040037.46341.5F8J@football.example.com>

        Hi.

        We lost the game.  Are you hungry yet?

        Joe.


        """.utf8))

    func roundTrip(_ key: DKIMSigningKey) async throws {
        var resolver = StaticResolver()
        resolver.add(DNSResourceRecord(name: try DNSName("sel._domainkey.example.org"), ttl: 300,
                                       data: .txt(TXTRecord(text: key.dnsRecord))))
        let signer = DKIMSigner(domain: "example.org", selector: "sel", key: key, expiration: 3600, clock: { 1_000_000 })
        let field = try signer.sign(message: Self.sample)
        let signed = Array(field.utf8) + Self.sample
        let verifier = DKIMVerifier(resolver: resolver, clock: { 1_000_100 })
        let good = await verifier.verify(message: signed)
        XCTAssertEqual(good.map(\.result), [.pass], good.map(\.reason).description)

        // Tampered body.
        var body = signed
        if let i = body.lastIndex(of: UInt8(ascii: "J")) { body[i] = UInt8(ascii: "K") }
        let badBody = await verifier.verify(message: body)
        XCTAssertEqual(badBody.map(\.result), [.fail])
        XCTAssertEqual(badBody.first?.reason, "body hash did not verify")

        // Tampered header.
        let header = Array(String(decoding: signed, as: UTF8.self).replacingOccurrences(of: "Is dinner ready?", with: "Is dinner ready!").utf8)
        let badHeader = await verifier.verify(message: header)
        XCTAssertEqual(badHeader.map(\.result), [.fail])
        XCTAssertEqual(badHeader.first?.reason, "signature did not verify")

        // Oversigning: an added second Subject breaks the signature.
        let added = Array("Subject: injected\r\n".utf8) + signed
        let badAdded = await verifier.verify(message: added)
        XCTAssertEqual(badAdded.map(\.result), [.fail])

        // Whitespace changes that relaxed canonicalization tolerates.
        let spaced = Array(String(decoding: signed, as: UTF8.self).replacingOccurrences(of: "We lost the game.", with: "We lost   the game.  ").utf8)
        let relaxed = await verifier.verify(message: spaced)
        XCTAssertEqual(relaxed.map(\.result), [.pass])

        // x= expiry with the clock past it, beyond the skew.
        let late = await DKIMVerifier(resolver: resolver, clock: { 1_000_000 + 3600 + 301 }).verify(message: signed)
        XCTAssertEqual(late.map(\.result), [.fail])
        XCTAssertEqual(late.first?.reason, "signature expired")
        let withinSkew = await DKIMVerifier(resolver: resolver, clock: { 1_000_000 + 3600 + 299 }).verify(message: signed)
        XCTAssertEqual(withinSkew.map(\.result), [.pass])
        // t= in the future is tolerated (senders' clocks drift); x= still applies.
        let early = await DKIMVerifier(resolver: resolver, clock: { 1_000_000 - 7200 }).verify(message: signed)
        XCTAssertEqual(early.map(\.result), [.pass])
    }

    func testRoundTripRSA() async throws {
        try await roundTrip(.rsa(Self.rsaKey(pem: Self.text("rfc8463/a1-rsa-private.pem"))))
    }

    func testRoundTripRSA2048() async throws {
        try await roundTrip(.rsa(Self.rsaKey(pem: Self.text("dkimpy/2048_testkey.key"))))
    }

    func testRoundTripEd25519() async throws {
        try await roundTrip(.ed25519(Self.ed25519Key(seedBase64: Self.text("rfc8463/a1-ed25519-private.b64"))))
    }

    func testKeyRecordFlagsAndRevocation() async throws {
        let key = try Self.ed25519Key(seedBase64: Self.text("rfc8463/a1-ed25519-private.b64"))
        let signer = DKIMSigner(domain: "example.org", selector: "sel", key: .ed25519(key), clock: { 1_000_000 })
        let signed = Array(try signer.sign(message: Self.sample).utf8) + Self.sample
        let p = key.publicKey.rawRepresentation.base64EncodedString()
        let cases: [(String, DKIMResult)] = [
            ("v=DKIM1; k=ed25519; p=", .permerror),                    // revoked
            ("v=DKIM1; k=rsa; p=\(p)", .permerror),                    // wrong key type
            ("v=DKIM1; k=ed25519; h=sha1; p=\(p)", .permerror),        // hash not allowed
            ("v=DKIM1; k=ed25519; h=sha1:sha256; p=\(p)", .pass),
            ("v=DKIM1; k=ed25519; s=tlsrpt; p=\(p)", .permerror),      // not for email
            ("v=DKIM1; k=ed25519; s=email; t=y:s; p=\(p)", .pass),     // i= defaults to @d, so t=s holds
            ("k=ed25519; p=\(p)", .pass),                              // v= optional
            ("k=ed25519; v=DKIM1; p=\(p)", .permerror),                // v= not first
        ]
        for (record, want) in cases {
            var resolver = StaticResolver()
            resolver.add(DNSResourceRecord(name: try DNSName("sel._domainkey.example.org"), ttl: 300, data: .txt(TXTRecord(text: record))))
            let results = await DKIMVerifier(resolver: resolver, clock: { 1_000_000 }).verify(message: signed)
            XCTAssertEqual(results.map(\.result), [want], "\(record): \(results.map(\.reason))")
        }
        // No key at all, and a DNS timeout.
        var resolver = StaticResolver()
        let none = await DKIMVerifier(resolver: resolver, clock: { 1_000_000 }).verify(message: signed)
        XCTAssertEqual(none.map(\.result), [.permerror])
        resolver.inject(.timeout, name: try DNSName("sel._domainkey.example.org"))
        let timeout = await DKIMVerifier(resolver: resolver, clock: { 1_000_000 }).verify(message: signed)
        XCTAssertEqual(timeout.map(\.result), [.temperror])
    }

    func testRSASHA1FailsPerRFC8301() async throws {
        let field = "DKIM-Signature: v=1; a=rsa-sha1; d=example.org; s=sel; h=from; bh=AAAA; b=AAAA\r\n"
        let message = Array(field.utf8) + Self.sample
        let results = await DKIMVerifier(resolver: StaticResolver(), clock: { 0 }).verify(message: message)
        XCTAssertEqual(results.map(\.result), [.fail])
        XCTAssertEqual(results.first?.reason, "rsa-sha1 is not accepted (RFC 8301)")
    }

    func testSigningRefusesMessageWithoutFrom() throws {
        let key = try Self.ed25519Key(seedBase64: Self.text("rfc8463/a1-ed25519-private.b64"))
        let message = DKIMMessage.withCRLF(try Self.data("dkimpy/test_nofrom.message"))
        XCTAssertThrowsError(try DKIMSigner(domain: "example.org", selector: "s", key: .ed25519(key)).sign(message: message)) {
            XCTAssertEqual($0 as? DKIMSigningError, .noFromField)
        }
    }

    func testOversignedHeaderList() throws {
        let key = try Self.ed25519Key(seedBase64: Self.text("rfc8463/a1-ed25519-private.b64"))
        let field = try DKIMSigner(domain: "example.org", selector: "s", key: .ed25519(key), clock: { 5 }).sign(message: Self.sample)
        let value = Array(field.utf8.dropFirst("DKIM-Signature:".utf8.count))
        let signature = try DKIMSignature(parsing: value)
        XCTAssertEqual(signature.signedHeaders.filter { $0 == "from" }.count, 2)
        XCTAssertEqual(signature.signedHeaders.filter { $0 == "subject" }.count, 2)
        XCTAssertEqual(signature.signedHeaders.filter { $0 == "cc" }.count, 1)
        XCTAssertEqual(signature.headerCanonicalization, .relaxed)
        XCTAssertEqual(signature.bodyCanonicalization, .relaxed)
        XCTAssertEqual(signature.timestamp, 5)
        XCTAssertTrue(field.hasSuffix("\r\n"))
        XCTAssertTrue(field.split(separator: "\r\n").allSatisfy { $0.utf8.count <= 78 }, field)
    }

    /// The streaming API: the header first, then the body in small chunks, gives the same results
    /// as the whole message; signing from a streamed body hash gives the same field.
    func testStreamingVerificationAndSigning() async throws {
        var resolver = StaticResolver()
        try Self.addKeys(Self.text("rfc8463/dns-records.txt"), to: &resolver)
        let message = DKIMMessage.withCRLF(try Self.data("rfc8463/a3-signed.eml"))
        let header = MessageHeader(parsing: message)
        var session = DKIMVerificationSession(headerBytes: Array(message[..<header.bodyOffset]))
        XCTAssertTrue(session.hasSignatures)
        var offset = header.bodyOffset
        while offset < message.count {
            let end = min(message.count, offset + 3)
            session.update(body: message[offset..<end])
            offset = end
        }
        let streamed = await session.finish(using: Self.verifier(resolver))
        XCTAssertEqual(streamed.map(\.result), [.pass, .pass])

        let key = try Self.ed25519Key(seedBase64: Self.text("rfc8463/a1-ed25519-private.b64"))
        let signer = DKIMSigner(domain: "example.org", selector: "s", key: .ed25519(key), clock: { 42 })
        let sampleHeader = MessageHeader(parsing: Self.sample)
        var hasher = DKIMSigner.makeBodyHasher()
        for byte in Self.sample[sampleHeader.bodyOffset...] { hasher.update(CollectionOfOne(byte)) }
        let streamedField = try signer.sign(headerBytes: Array(Self.sample[..<sampleHeader.bodyOffset]), bodyHash: hasher.finalize())
        XCTAssertEqual(streamedField, try signer.sign(message: Self.sample))
    }

    /// Generated keys, two signatures at once (ed25519 then rsa), both verified.
    func testGeneratedKeysDoubleSignature() async throws {
        let ed = DKIMSigningKey.generateEd25519()
        let rsa = try DKIMSigningKey.generateRSA()
        var resolver = StaticResolver()
        resolver.add(DNSResourceRecord(name: try DNSName("ed._domainkey.example.org"), ttl: 300, data: .txt(TXTRecord(text: ed.dnsRecord))))
        // A 2048-bit key's record is longer than one 255-octet string: published split (RFC 6376 §3.6.2.2).
        let rsaRecord = Array(rsa.dnsRecord.utf8)
        let strings = stride(from: 0, to: rsaRecord.count, by: 255).map { Array(rsaRecord[$0..<min(rsaRecord.count, $0 + 255)]) }
        resolver.add(DNSResourceRecord(name: try DNSName("rsa._domainkey.example.org"), ttl: 300, data: .txt(TXTRecord(strings: strings))))
        let signers = [DKIMSigner(domain: "example.org", selector: "ed", key: ed),
                       DKIMSigner(domain: "example.org", selector: "rsa", key: rsa)]
        let fields = try DKIMSigner.sign(message: Self.sample, with: signers)
        let results = await DKIMVerifier(resolver: resolver).verify(message: Array(fields.utf8) + Self.sample)
        XCTAssertEqual(results.map(\.result), [.pass, .pass])
        XCTAssertEqual(results.compactMap(\.selector), ["ed", "rsa"])
        // Keys load back from their serialised forms.
        if case .rsa(let key) = rsa {
            let reloaded = try DKIMSigningKey(rsaPEM: key.pemRepresentation)
            XCTAssertEqual(reloaded.dnsRecord, rsa.dnsRecord)
        }
        let seed = try DKIMSigningKey(ed25519SeedBase64: Self.text("rfc8463/a1-ed25519-private.b64"))
        XCTAssertEqual(seed.dnsRecord, "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
    }

    func testUnsignedMessageHasNoResults() async throws {
        let results = await DKIMVerifier(resolver: StaticResolver()).verify(message: Self.sample)
        XCTAssertEqual(results, [])
    }

    /// Not a benchmark (bench/mailauth will be): a guard that body hashing stays linear and cheap.
    func testBodyHashingThroughput() {
        let line = Array("The quick brown fox jumps over the lazy dog, \t again  and again.\r\n".utf8)
        var body: [UInt8] = []
        while body.count < 1_000_000 { body += line }
        let start = ContinuousClock.now
        var hasher = DKIMBodyHasher(canonicalization: .relaxed)
        hasher.update(body)
        _ = hasher.finalize()
        let elapsed = ContinuousClock.now - start
        print("relaxed body hash of 1 MB: \(elapsed)")
        XCTAssertLessThan(elapsed, .seconds(20))
    }

    // MARK: canonicalization

    func hash(_ body: String, _ c: DKIMCanonicalization, limit: Int? = nil, chunk: Int = 1000) -> String {
        var hasher = DKIMBodyHasher(canonicalization: c, limit: limit)
        let bytes = Array(body.utf8)
        var i = 0
        while i < bytes.count {
            hasher.update(bytes[i..<min(bytes.count, i + chunk)])
            i += chunk
        }
        return Data(hasher.finalize()).base64EncodedString()
    }

    func sha(_ s: String) -> String { Data(SHA256.hash(data: Array(s.utf8))).base64EncodedString() }

    func testBodyCanonicalization() {
        // RFC 6376 §3.4.5 example: " C \r\nD \t E\r\n\r\n\r\n".
        let body = " C \r\nD \t E\r\n\r\n\r\n"
        XCTAssertEqual(hash(body, .relaxed), sha(" C\r\nD E\r\n"))
        XCTAssertEqual(hash(body, .simple), sha(" C \r\nD \t E\r\n"))
        // Empty bodies (§3.4.3, §3.4.4 and errata 1384).
        XCTAssertEqual(hash("", .simple), sha("\r\n"))
        XCTAssertEqual(hash("", .relaxed), sha(""))
        XCTAssertEqual(hash("\r\n\r\n", .simple), sha("\r\n"))
        // A body without a final CRLF gets one; a lone CR is content.
        XCTAssertEqual(hash("abc", .simple), sha("abc\r\n"))
        XCTAssertEqual(hash("a\rb\r\n", .relaxed), sha("a\rb\r\n"))
        // l= counts canonical octets.
        XCTAssertEqual(hash("hello world\r\nmore\r\n", .simple, limit: 5), sha("hello"))
        // Chunk boundaries change nothing, even inside CRLF and WSP runs.
        for size in [1, 2, 3, 7] {
            XCTAssertEqual(hash(body, .relaxed, chunk: size), hash(body, .relaxed))
            XCTAssertEqual(hash(body, .simple, chunk: size), hash(body, .simple))
        }
    }

    func testSignatureParserRejectsBadInput() {
        let good = "v=1; a=rsa-sha256; d=example.org; s=sel; h=from:to; bh=AAAA; b=AAAA"
        XCTAssertNoThrow(try DKIMSignature(parsing: Array(good.utf8)))
        for bad in [
            "v=2; a=rsa-sha256; d=example.org; s=sel; h=from; bh=AAAA; b=AAAA",
            "v=1; a=rsa-md5; d=example.org; s=sel; h=from; bh=AAAA; b=AAAA",
            "v=1; a=rsa-sha256; d=example.org; s=sel; h=to; bh=AAAA; b=AAAA",
            "v=1; a=rsa-sha256; d=example.org; s=sel; h=from; bh=AAAA",
            "v=1; a=rsa-sha256; d=example.org; d=example.com; s=sel; h=from; bh=AAAA; b=AAAA",
            "v=1; a=rsa-sha256; d=example.org; s=sel; h=from; bh=AAAA; b=AAAA; i=joe@example.com",
            "v=1; a=rsa-sha256; d=example.org; s=sel; h=from; bh=AAAA; b=AAAA; l=12x",
            "v=1; a=rsa-sha256; d=example.org; s=sel; h=from; bh=AAAA; b=AAAA; t=10; x=5",
            "v=1; a=rsa-sha256; d=bad(domain; s=sel; h=from; bh=AAAA; b=AAAA",
        ] {
            XCTAssertThrowsError(try DKIMSignature(parsing: Array(bad.utf8)), bad)
        }
    }
}
