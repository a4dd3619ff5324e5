// Seeded fuzzing of the DKIM-Signature, DKIM key record and SPF record parsers: random mutations
// of valid inputs must parse or throw, never crash. A failure is replayed from its seed.

import FacteurDNS
import FacteurMailAuth
import FacteurTestSupport
import XCTest

final class ParserFuzzTests: XCTestCase {
    static let alphabet = Array("v=1;a:bhdsl/-+~?%{}_.,rx0123456789 \t\r\nipmxe6ALL".utf8) + [0x00, 0xFF, 0x7F]

    func mutate(_ seed: [UInt8], _ random: inout SeededRandom) -> [UInt8] {
        var bytes = seed
        for _ in 0..<Int.random(in: 1...8, using: &random) {
            switch Int.random(in: 0..<4, using: &random) {
            case 0 where !bytes.isEmpty:
                bytes.remove(at: Int.random(in: 0..<bytes.count, using: &random))
            case 1:
                bytes.insert(Self.alphabet.randomElement(using: &random) ?? 0, at: Int.random(in: 0...bytes.count, using: &random))
            case 2 where !bytes.isEmpty:
                bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
            default:
                // Duplicate a slice: grows repetitive structure (tags, terms, macros).
                if !bytes.isEmpty {
                    let start = Int.random(in: 0..<bytes.count, using: &random)
                    let end = min(bytes.count, start + Int.random(in: 1...16, using: &random))
                    bytes.insert(contentsOf: bytes[start..<end], at: start)
                }
            }
        }
        return bytes
    }

    func testDKIMParsersNeverCrash() {
        let seeds = [
            "v=1; a=rsa-sha256; c=relaxed/simple; d=example.org; s=sel; t=1; x=2; l=10; i=a@example.org; h=from:to; bh=AAAA; b=AAAA",
            "v=DKIM1; k=ed25519; h=sha256; s=email; t=y:s; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
        ].map { Array($0.utf8) }
        var random = SeededRandom(seed: 0xD1C1)
        var parsed = 0
        for _ in 0..<20_000 {
            let input = mutate(seeds.randomElement(using: &random) ?? [], &random)
            if (try? DKIMSignature(parsing: input)) != nil { parsed += 1 }
            if (try? DKIMKeyRecord(parsing: input)) != nil { parsed += 1 }
        }
        XCTAssertGreaterThan(parsed, 0, "mutations never produced a valid input: the fuzzer is not exercising the parser")
    }

    func testSPFParserNeverCrashes() async {
        let seeds = [
            "v=spf1 a mx/24//64 ptr:%{d} ip4:192.0.2.0/24 ip6:2001:db8::/32 exists:%{ir}.%{l1r+-}._spf.%{d} include:_spf.example.com -all",
            "v=spf1 redirect=_spf.%{o} exp=explain.%{d2} ~all foo=%{h}",
        ].map { Array($0.utf8) }
        var random = SeededRandom(seed: 0x5BF1)
        var parsed = 0
        for _ in 0..<20_000 {
            let input = mutate(seeds.randomElement(using: &random) ?? [], &random)
            if (try? SPFRecord(parsing: input)) != nil { parsed += 1 }
        }
        XCTAssertGreaterThan(parsed, 0)
        // Mutated records also evaluate without crashing, against a zone that answers everything.
        random = SeededRandom(seed: 0x5BF2)
        for _ in 0..<300 {
            let record = mutate(seeds.randomElement(using: &random) ?? [], &random)
            var resolver = StaticResolver()
            resolver.add(DNSResourceRecord(name: try! DNSName("example.com"), ttl: 60, data: .txt(TXTRecord(strings: [record]))))
            resolver.add(DNSResourceRecord(name: try! DNSName("example.com"), ttl: 60, data: .a(IPv4Address("192.0.2.1")!)))
            let outcome = await SPFVerifier(resolver: resolver).checkMailFrom(
                ip: .v4(IPv4Address("192.0.2.1")!), mailFrom: "joe@example.com", helo: "mail.example.com")
            XCTAssertTrue(SPFResult.allCases.contains(outcome.result))
        }
    }

    /// Whole-message verification of mutated signed messages: never crashes, and a mutation never
    /// turns the signature into something other than its result or a failure class.
    func testVerifyingMutatedMessagesNeverCrashes() async throws {
        let key = try DKIMTests.ed25519Key(seedBase64: DKIMTests.text("rfc8463/a1-ed25519-private.b64"))
        let signer = DKIMSigner(domain: "example.org", selector: "sel", key: .ed25519(key), clock: { 1_000 })
        let signed = Array(try signer.sign(message: DKIMTests.sample).utf8) + DKIMTests.sample
        var resolver = StaticResolver()
        resolver.add(DNSResourceRecord(name: try DNSName("sel._domainkey.example.org"), ttl: 300,
                                       data: .txt(TXTRecord(text: DKIMSigningKey.ed25519(key).dnsRecord))))
        let verifier = DKIMVerifier(resolver: resolver, clock: { 1_000 })
        var random = SeededRandom(seed: 0xD1C2)
        var passes = 0
        for _ in 0..<500 {
            let mutated = mutate(signed, &random)
            let results = await verifier.verify(message: mutated)
            XCTAssertLessThanOrEqual(results.count, 2)
            passes += results.filter { $0.result == .pass }.count
        }
        // Some mutations land where nothing is signed (relaxed whitespace, unsigned headers) and pass;
        // most must not.
        XCTAssertLessThan(passes, 250)
    }
}
