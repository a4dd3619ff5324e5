// ARC sealing and validation (RFC 8617): multi-hop round trips, tampering, the sealing rules
// (cv=, i= range, no set after cv=fail), streaming, ed25519, seeded fuzzing of hostile ARC fields,
// and interop with dkimpy (Debian python3-dkim) in both directions.

import FacteurDNS
import FacteurMIME
import FacteurMailAuth
import FacteurTestSupport
import Foundation
import XCTest

final class ARCTests: XCTestCase {
    static let now: Int64 = 1_750_000_000
    /// One RSA key for every test (generation is the slow part); hop 2 uses a second one.
    static let hop1Key: DKIMSigningKey = try! DKIMSigningKey.generateRSA()
    static let hop2Key: DKIMSigningKey = try! DKIMSigningKey.generateRSA()

    static let message = DKIMMessage.withCRLF(Array("""
        From: Alice <alice@example.com>
        To: list@lists.example.org
        Subject: ARC round trip
        Date: Mon, 1 Dec 2025 10:00:00 +0000
        Message-ID: <arc-1@example.com>
        DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=x; h=from; bh=AAAA; b=AAAA

        Hello,   world.
        Second line.

        """.utf8))

    static var resolver: StaticResolver {
        var resolver = StaticResolver()
        for (name, key) in [("hop1._domainkey.lists.example.org", hop1Key), ("hop2._domainkey.relay.example.net", hop2Key)] {
            resolver.add(DNSResourceRecord(name: try! DNSName(name), ttl: 300, data: .txt(TXTRecord(text: key.dnsRecord))))
        }
        return resolver
    }

    static let hop1 = ARCSealer(domain: "lists.example.org", selector: "hop1", key: hop1Key)
    static let hop2 = ARCSealer(domain: "relay.example.net", selector: "hop2", key: hop2Key)

    var verifier: ARCVerifier { ARCVerifier(resolver: Self.resolver, validateOlderSignatures: true, clock: { Self.now }) }

    /// Seals `message` as a hop would: validate first, then seal with the outcome as cv=.
    func relay(_ message: [UInt8], by sealer: ARCSealer, authservID: String) async throws -> [UInt8] {
        let validation = await verifier.validate(message: message)
        let fields = try sealer.seal(message: message, authenticationResults: "spf=pass smtp.mailfrom=alice@example.com;\r\n\tarc=\(validation.result.rawValue)",
                                     chainValidation: validation.result, authservID: authservID, timestamp: Self.now - 60)
        return Array(fields.utf8) + message
    }

    func testTwoHopRoundTrip() async throws {
        let none = await verifier.validate(message: Self.message)
        XCTAssertEqual(none.result, .none)

        let once = try await relay(Self.message, by: Self.hop1, authservID: "mx.lists.example.org")
        let first = await verifier.validate(message: once)
        XCTAssertEqual(first.result, .pass, first.reason)
        XCTAssertEqual(first.instances.count, 1)
        XCTAssertEqual(first.latest?.sealerDomain, "lists.example.org")
        XCTAssertEqual(first.latest?.parsedResults?.authservID, "mx.lists.example.org")
        XCTAssertEqual(first.latest?.parsedResults?.results(for: "arc").first?.result, "none")

        let twice = try await relay(once, by: Self.hop2, authservID: "mx.relay.example.net")
        let second = await verifier.validate(message: twice)
        XCTAssertEqual(second.result, .pass, second.reason)
        XCTAssertEqual(second.instances.map(\.instance), [1, 2])
        XCTAssertEqual(second.instances.map(\.selector), ["hop1", "hop2"])
        XCTAssertEqual(second.oldestPassingAMS, 1)
        // The seal on top says cv=pass, the first one cv=none (RFC 8617 §4.1.3).
        let header = MessageHeader(parsing: twice)
        let seals = header.fields(named: "ARC-Seal").compactMap { try? ARCSeal(parsing: $0.rawValue) }
        XCTAssertEqual(seals.map(\.chainValidation), [.pass, .none])
        XCTAssertEqual(seals.map(\.instance), [2, 1])
        // Folded output: lines within 78 characters, but for the AMS b= kept whole on its own line
        // (still far below RFC 5322's 998).
        let sealed = String(decoding: twice[..<(twice.count - Self.message.count)], as: UTF8.self)
        for line in sealed.components(separatedBy: "\r\n") {
            XCTAssertLessThanOrEqual(line.count, line.hasPrefix("\tb=") ? 998 : 78, line)
        }
        XCTAssertEqual(sealed.components(separatedBy: "\r\n").filter { $0.count > 78 }.count, 2, "one AMS b= per set")
    }

    func testStreamingSessionMatchesWholeMessage() async throws {
        let sealed = try await relay(Self.message, by: Self.hop1, authservID: "mx.lists.example.org")
        let header = MessageHeader(parsing: sealed)
        var session = verifier.session(headerBytes: Array(sealed[..<header.bodyOffset]))
        XCTAssertTrue(session.hasChain)
        for byte in sealed[header.bodyOffset...] { session.update(body: [byte]) }
        let outcome = await session.finish(using: verifier)
        XCTAssertEqual(outcome.result, .pass, outcome.reason)
    }

    func testTamperingFailsTheChain() async throws {
        let twice = try await relay(try await relay(Self.message, by: Self.hop1, authservID: "a.example"), by: Self.hop2,
                                    authservID: "b.example")
        let text = String(decoding: twice, as: UTF8.self)
        let cases: [(String, String, String)] = [
            ("body", "Second line.", "Second line!"),
            ("signed header", "Subject: ARC round trip", "Subject: ARC round trap"),
            ("oldest AAR", "i=1; a.example;", "i=1; evil.example;"),
            ("oldest seal cv", "cv=none", "cv=pass"),
            ("newest seal domain", "d=relay.example.net;", "d=relay.example.com;"),
        ]
        for (what, from, to) in cases {
            guard let range = text.range(of: from) else { XCTFail("\(what): \(from) not found"); continue }
            let tampered = Array(text.replacingCharacters(in: range, with: to).utf8)
            let outcome = await verifier.validate(message: tampered)
            XCTAssertEqual(outcome.result, .fail, "\(what) was accepted")
        }
        // Removing a whole field breaks the structure (RFC 8617 §5.2 step 3).
        let header = MessageHeader(parsing: twice)
        let ams = try XCTUnwrap(header.fields.lastIndex { $0.hasName("ARC-Message-Signature") })
        var bytes = twice
        bytes.removeSubrange(header.fields[ams].range)
        let missing = await verifier.validate(message: bytes)
        XCTAssertEqual(missing.result, .fail)
        XCTAssertTrue(missing.reason.contains("i=1"), missing.reason)
    }

    func testModifiedBodyStillPassesWhenOnlyOlderAMSBreaks() async throws {
        // Hop 2 changes the body after validating, then seals: the chain passes (the seals and the
        // newest AMS verify) and the oldest passing AMS tells where the change happened.
        let once = try await relay(Self.message, by: Self.hop1, authservID: "a.example")
        let changed = Array(String(decoding: once, as: UTF8.self).replacingOccurrences(of: "Second line.", with: "[list footer]").utf8)
        let fields = try Self.hop2.seal(message: changed, authenticationResults: "arc=pass", chainValidation: .pass,
                                        authservID: "b.example", timestamp: Self.now)
        let outcome = await verifier.validate(message: Array(fields.utf8) + changed)
        XCTAssertEqual(outcome.result, .pass, outcome.reason)
        XCTAssertEqual(outcome.oldestPassingAMS, 2)
    }

    func testSealingRules() async throws {
        // cv=none only without a chain; pass or fail only with one.
        XCTAssertThrowsError(try Self.hop1.seal(message: Self.message, authenticationResults: "", chainValidation: .pass,
                                                authservID: "a.example", timestamp: Self.now))
        let once = try await relay(Self.message, by: Self.hop1, authservID: "a.example")
        XCTAssertThrowsError(try Self.hop2.seal(message: once, authenticationResults: "", chainValidation: .none,
                                                authservID: "b.example", timestamp: Self.now))
        // A failed chain is sealed with cv=fail over the new set only, and then it is over (§5.1.2).
        let broken = Array(String(decoding: once, as: UTF8.self).replacingOccurrences(of: "Second line.", with: "Changed.").utf8)
        let validation = await verifier.validate(message: broken)
        XCTAssertEqual(validation.result, .fail)
        let sealedFail = Array(try Self.hop2.seal(message: broken, authenticationResults: "arc=fail", chainValidation: .fail,
                                                  authservID: "b.example", timestamp: Self.now).utf8) + broken
        let failed = await verifier.validate(message: sealedFail)
        XCTAssertEqual(failed.result, .fail)
        XCTAssertTrue(failed.reason.contains("cv=fail"), failed.reason)
        XCTAssertThrowsError(try Self.hop1.seal(message: sealedFail, authenticationResults: "arc=fail", chainValidation: .fail,
                                                authservID: "c.example", timestamp: Self.now)) { error in
            XCTAssertEqual(error as? ARCSealingError, .chainTerminated)
        }
        // A structurally broken chain can only be sealed with cv=fail, numbered after what can be read.
        let garbled = Array(String(decoding: once, as: UTF8.self).replacingOccurrences(of: "cv=none", with: "cv=bogus").utf8)
        XCTAssertThrowsError(try Self.hop2.seal(message: garbled, authenticationResults: "arc=pass", chainValidation: .pass,
                                                authservID: "b.example", timestamp: Self.now))
        let sealedGarbled = try Self.hop2.seal(message: garbled, authenticationResults: "arc=fail", chainValidation: .fail,
                                               authservID: "b.example", timestamp: Self.now)
        XCTAssertTrue(sealedGarbled.contains("cv=fail; d=relay.example.net; i=2;"), sealedGarbled)
        let garbledOutcome = await verifier.validate(message: Array(sealedGarbled.utf8) + garbled)
        XCTAssertEqual(garbledOutcome.result, .fail)
        // An empty result list is written as "none" (RFC 8601 §2.2).
        let fields = try Self.hop1.seal(message: Self.message, authenticationResults: "  ", chainValidation: .none,
                                        authservID: "a.example", timestamp: Self.now)
        XCTAssertTrue(fields.contains("ARC-Authentication-Results: i=1; a.example; none\r\n"), fields)
    }

    func testFiftyInstancesAndNoMore() async throws {
        var message = Self.message
        for _ in 1...ARCLimits.maxInstance {
            message = try await relay(message, by: Self.hop1, authservID: "a.example")
        }
        let outcome = await verifier.validate(message: message)
        XCTAssertEqual(outcome.result, .pass, outcome.reason)
        XCTAssertEqual(outcome.instances.count, 50)
        XCTAssertThrowsError(try Self.hop1.seal(message: message, authenticationResults: "arc=pass", chainValidation: .pass,
                                                authservID: "a.example", timestamp: Self.now)) { error in
            XCTAssertEqual(error as? ARCSealingError, .tooManyInstances)
        }
    }

    func testEd25519SealNeedsTheAlgorithmAccepted() async throws {
        let key = DKIMSigningKey.generateEd25519()
        var resolver = StaticResolver()
        resolver.add(DNSResourceRecord(name: try DNSName("ed._domainkey.example.org"), ttl: 300, data: .txt(TXTRecord(text: key.dnsRecord))))
        let sealer = ARCSealer(domain: "example.org", selector: "ed", key: key)
        let fields = try sealer.seal(message: Self.message, authenticationResults: "spf=pass smtp.mailfrom=a@b.example",
                                     chainValidation: .none, authservID: "example.org", timestamp: Self.now)
        XCTAssertTrue(fields.contains("a=ed25519-sha256"))
        let sealed = Array(fields.utf8) + Self.message
        let strict = await ARCVerifier(resolver: resolver, clock: { Self.now }).validate(message: sealed)
        XCTAssertEqual(strict.result, .fail)
        let lenient = await ARCVerifier(resolver: resolver, algorithms: [.rsaSHA256, .ed25519SHA256], clock: { Self.now })
            .validate(message: sealed)
        XCTAssertEqual(lenient.result, .pass, lenient.reason)
    }

    func testMissingKeyAndDNSFailures() async throws {
        let sealed = try await relay(Self.message, by: Self.hop1, authservID: "a.example")
        let noKeys = await ARCVerifier(resolver: StaticResolver(), clock: { Self.now }).validate(message: sealed)
        XCTAssertEqual(noKeys.result, .fail)
        XCTAssertFalse(noKeys.isTemporaryFailure)
        var flaky = StaticResolver()
        flaky.inject(.timeout, name: try DNSName("hop1._domainkey.lists.example.org"))
        let timedOut = await ARCVerifier(resolver: flaky, clock: { Self.now }).validate(message: sealed)
        XCTAssertEqual(timedOut.result, .fail)
        XCTAssertTrue(timedOut.isTemporaryFailure, timedOut.reason)
    }

    func testMergingOurAuthenticationResults() throws {
        let header = MessageHeader(parsing: Array("""
            Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=a@b.example\r
            Authentication-Results: other.example; dkim=fail\r
            Authentication-Results: MX.example.org; dkim=pass (good; key) header.d=b.example;\r
            \tdmarc=pass header.from=b.example\r
            Authentication-Results: mx.example.org; none\r
            From: a@b.example\r
            \r

            """.utf8))
        XCTAssertEqual(ARCSealer.authenticationResults(in: header, authservID: "mx.example.org"),
                       "spf=pass smtp.mailfrom=a@b.example; dkim=pass (good; key) header.d=b.example; dmarc=pass header.from=b.example")
        XCTAssertNil(ARCSealer.authenticationResults(in: header, authservID: "absent.example"))
    }

    // MARK: hostile input

    func testGarbageARCFieldsNeverCrashAndNeverPass() async throws {
        let names = ["ARC-Seal", "ARC-Message-Signature", "ARC-Authentication-Results"]
        let alphabet = Array("i=1;a=rsa-sha256;b=AAAA;bh=;cv=nonepassfail;d=example.org;s=hop1;h=from:to;c=relaxed/simple;t=5 \t\r\n()\"".utf8)
            + [0x00, 0xFF, 0x80]
        var random = SeededRandom(seed: 0xA2C)
        let verifier = self.verifier
        for _ in 0..<1_500 {
            var head = ""
            for _ in 0..<Int.random(in: 1...9, using: &random) {
                let name = names.randomElement(using: &random) ?? "ARC-Seal"
                let length = Int.random(in: 0...80, using: &random)
                var value = (0..<length).map { _ in alphabet.randomElement(using: &random) ?? 0x20 }
                // Keep the header framing intact most of the time, so the ARC parsers see the bytes.
                value = value.map { $0 == 0x0A || $0 == 0x0D ? 0x20 : $0 }
                head += name + ": " + String(decoding: value, as: UTF8.self) + "\r\n"
            }
            let message = Array(head.utf8) + Self.message
            let outcome = await verifier.validate(message: message)
            XCTAssertEqual(outcome.result, .fail, head)
        }
    }

    func testMutatedChainsNeverCrash() async throws {
        let twice = try await relay(try await relay(Self.message, by: Self.hop1, authservID: "a.example"), by: Self.hop2,
                                    authservID: "b.example")
        let headerEnd = MessageHeader(parsing: twice).bodyOffset
        var random = SeededRandom(seed: 0xBEEF)
        var passed = 0
        let verifier = self.verifier
        for _ in 0..<400 {
            var bytes = twice
            for _ in 0..<Int.random(in: 1...4, using: &random) {
                let at = Int.random(in: 0..<headerEnd, using: &random)
                switch Int.random(in: 0..<3, using: &random) {
                case 0: bytes.remove(at: at)
                case 1: bytes.insert(UInt8.random(in: 0...255, using: &random), at: at)
                default: bytes[at] = Array(";= :\r\n0123456789".utf8).randomElement(using: &random) ?? 0
                }
            }
            let outcome = await verifier.validate(message: bytes)
            if outcome.result == .pass { passed += 1 }
        }
        // A few mutations land in places no signature covers (e.g. an unsigned header); most do not.
        XCTAssertLessThan(passed, 200)
    }

    // MARK: interop with dkimpy

    static let python = "/usr/bin/python3"

    func runPython(_ script: String, _ arguments: [String]) throws -> String {
        guard FileManager.default.isExecutableFile(atPath: Self.python) else { throw XCTSkip("no \(Self.python)") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.python)
        process.arguments = ["-c", script] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: output, as: UTF8.self)
        if text.contains("No module named 'dkim'") { throw XCTSkip("python3-dkim not installed") }
        return text
    }

    func temporaryFile(_ bytes: [UInt8]) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("facteur-arc-\(UUID().uuidString).eml")
        try Data(bytes).write(to: url)
        return url
    }

    static let dnsShim = """
        import dkim, sys
        keys = {}
        for pair in sys.argv[2:]:
            name, value = pair.split('=', 1)
            keys[name.encode()] = value.encode()
        def dnsfunc(name, timeout=5):
            return keys.get(name.rstrip(b'.'))
        """

    func testDkimpyValidatesOurChain() async throws {
        let twice = try await relay(try await relay(Self.message, by: Self.hop1, authservID: "a.example"), by: Self.hop2,
                                    authservID: "b.example")
        let file = try temporaryFile(twice)
        defer { try? FileManager.default.removeItem(at: file) }
        let script = Self.dnsShim + """

            cv, results, reason = dkim.arc_verify(open(sys.argv[1], 'rb').read(), dnsfunc=dnsfunc)
            print(cv.decode() if cv else 'none', reason)
            """
        let output = try runPython(script, [file.path,
                                            "hop1._domainkey.lists.example.org=" + Self.hop1Key.dnsRecord,
                                            "hop2._domainkey.relay.example.net=" + Self.hop2Key.dnsRecord])
        XCTAssertTrue(output.hasPrefix("pass "), output)
    }

    func testWeValidateDkimpysChain() async throws {
        guard case .rsa(let rsa) = Self.hop1Key else { return XCTFail("rsa key expected") }
        let withAR = Array("Authentication-Results: lists.example.org; spf=pass smtp.mailfrom=alice@example.com\r\n".utf8) + Self.message
        let file = try temporaryFile(withAR)
        defer { try? FileManager.default.removeItem(at: file) }
        let keyFile = try temporaryFile(Array(rsa.pemRepresentation.utf8))
        defer { try? FileManager.default.removeItem(at: keyFile) }
        let script = """
            import dkim, sys
            message = open(sys.argv[1], 'rb').read()
            key = open(sys.argv[2], 'rb').read()
            fields = dkim.arc_sign(message, b'hop1', b'lists.example.org', key, b'lists.example.org',
                                   include_headers=[b'from', b'to', b'subject', b'date', b'message-id'], timestamp=1749999000)
            sys.stdout.write(b''.join(fields).decode())
            """
        let output = try runPython(script, [file.path, keyFile.path])
        XCTAssertTrue(output.hasPrefix("ARC-Seal:"), output)
        let sealed = Array(output.utf8) + withAR
        let outcome = await verifier.validate(message: sealed)
        XCTAssertEqual(outcome.result, .pass, outcome.reason + "\n" + output)
        XCTAssertEqual(outcome.latest?.parsedResults?.results(for: "spf").first?.result, "pass")
    }
}
