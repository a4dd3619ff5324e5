// Seeded fuzzing of the DMARC record parser, the Public Suffix List lookups and whole evaluations
// over random zones: garbage must parse, be refused, or evaluate — never crash, hang or trap. A
// failure is replayed from its seed.

@testable import FacteurMailAuth
import FacteurDNS
import FacteurTestSupport
import XCTest

final class DMARCFuzzTests: XCTestCase {
    static let alphabet = Array("v=DMARC1;pPsSnNrRqQuUaAtTyYfFoOiI:!@.,%-_ \t0123456789kmgtéx".utf8) + [0x00, 0xFF, 0x7F, 0x0A]

    static let seeds = [
        "v=DMARC1; p=reject; sp=quarantine; np=none; pct=50; adkim=s; aspf=r; rua=mailto:a@example.com!10m,mailto:b@example.net; "
            + "ruf=mailto:f@example.com; fo=1:d:s; rf=afrf; ri=3600; psd=n; t=y",
        "v=DMARC1;p=none;rua=mailto:x%40y@example.org",
        "v=DMARC1; psd=y; p=quarantine",
    ].map { Array($0.utf8) }

    static func mutate(_ seed: [UInt8], _ random: inout SeededRandom) -> [UInt8] {
        var bytes = seed
        for _ in 0..<Int.random(in: 1...10, using: &random) {
            switch Int.random(in: 0..<5, using: &random) {
            case 0 where !bytes.isEmpty:
                bytes.remove(at: Int.random(in: 0..<bytes.count, using: &random))
            case 1:
                bytes.insert(alphabet.randomElement(using: &random) ?? 0, at: Int.random(in: 0...bytes.count, using: &random))
            case 2 where !bytes.isEmpty:
                bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
            case 3 where !bytes.isEmpty:
                let start = Int.random(in: 0..<bytes.count, using: &random)
                let end = min(bytes.count, start + Int.random(in: 1...24, using: &random))
                bytes.insert(contentsOf: bytes[start..<end], at: start)
            default:
                bytes.shuffle(using: &random)
            }
        }
        return bytes
    }

    func testRecordParserNeverCrashes() {
        var random = SeededRandom(seed: 0xD3A5C1)
        var parsed = 0, applicable = 0
        for _ in 0..<30_000 {
            let seed = Self.seeds.randomElement(using: &random) ?? []
            let input = Self.mutate(seed, &random)
            if let record = try? DMARCRecord(parsing: input) {
                parsed += 1
                if record.isApplicable { applicable += 1 }
                XCTAssert((0...100).contains(record.percentage))
                XCTAssertLessThanOrEqual(record.aggregateReportURIs.count, DMARCLimits.maxReportURIs)
            }
        }
        XCTAssertGreaterThan(parsed, 1000, "mutations rarely kept v=DMARC1: the fuzzer is not reaching the tags")
        XCTAssertGreaterThan(applicable, 0)
        // Pure noise, including huge inputs.
        for _ in 0..<2_000 {
            let count = Int.random(in: 0...600, using: &random)
            let noise = (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }
            _ = try? DMARCRecord(parsing: Array("v=DMARC1;".utf8) + noise)
        }
        XCTAssertThrowsError(try DMARCRecord(parsing: Array(repeating: UInt8(ascii: ";"), count: 1 << 20)))
    }

    func testPublicSuffixListNeverCrashes() throws {
        let list = try DMARCFixtures.publicSuffixList()
        var random = SeededRandom(seed: 0x5F1)
        let pieces = ["com", "co", "uk", "ck", "www", "*", "!", "", "xn--", "食狮", "公司", "É", ".", "..", "a-b", "\u{0}", "\u{10FFFF}"]
        for _ in 0..<20_000 {
            let labels = (0..<Int.random(in: 0...12, using: &random)).map { _ in
                (0..<Int.random(in: 1...3, using: &random)).map { _ in pieces.randomElement(using: &random) ?? "" }.joined()
            }
            let domain = labels.joined(separator: ".")
            if let registrable = list.registrableDomain(domain) {
                XCTAssertTrue(domain.lowercased().hasSuffix(registrable) || domain.lowercased().dropLast().hasSuffix(registrable),
                              "\(domain) → \(registrable)")
                XCTAssertNotNil(list.publicSuffix(domain))
            }
            _ = PublicSuffixList.asciiDomain(domain)
        }
        // A list made of noise loads without crashing.
        for _ in 0..<200 {
            let text = (0..<Int.random(in: 0...80, using: &random)).map { _ in pieces.randomElement(using: &random) ?? "" }
                .joined(separator: Bool.random(using: &random) ? "\n" : " ")
            let noisy = PublicSuffixList(parsing: text)
            _ = noisy.registrableDomain("a.b.c.com")
        }
    }

    /// Whole evaluations over random zones with random records at random levels, both strategies.
    func testEvaluationsNeverCrash() async throws {
        let list = try DMARCFixtures.publicSuffixList()
        var random = SeededRandom(seed: 0xE7A1)
        let names = ["example.com", "a.example.com", "b.a.example.com", "com", "bank.example", "x.bank.example",
                     "example.co.uk", "co.uk", "deep.a.b.c.d.e.f.g.h.example.com"]
        for round in 0..<300 {
            var zone = DMARCTestZone()
            for name in names where Bool.random(using: &random) {
                let record = Self.mutate(Self.seeds.randomElement(using: &random) ?? [], &random)
                zone.resolver.add(DNSResourceRecord(name: DMARCTestZone.name("_dmarc." + name), ttl: 300,
                                                    data: .txt(TXTRecord(strings: [Array(record.prefix(255))]))))
                if Int.random(in: 0..<6, using: &random) == 0 { zone.fail("_dmarc." + name) }
                if Bool.random(using: &random) { zone.address(name) }
            }
            let pick = { (random: inout SeededRandom) in names.randomElement(using: &random) ?? "" }
            let input = DMARCInput(fromDomain: pick(&random), spfResult: SPFResult.allCases.randomElement(using: &random) ?? .none,
                                   spfDomain: pick(&random),
                                   dkim: (0..<Int.random(in: 0...3, using: &random)).map { _ in
                                       (result: Bool.random(using: &random) ? .pass : .fail, domain: pick(&random))
                                   })
            let strategy: DMARCOrganizationalDomain = round.isMultiple(of: 2) ? .treeWalk : .publicSuffixList(list)
            let sample = Double.random(in: 0..<1, using: &random)
            let evaluation = await DMARCEvaluator(resolver: zone.resolver, organizationalDomain: strategy,
                                                  random: { sample }).evaluate(input)
            if evaluation.result != .fail {
                XCTAssertEqual(evaluation.disposition, .none, "\(round): only a failure has a disposition")
            }
            if evaluation.result == .pass {
                XCTAssertTrue(evaluation.spfAligned || evaluation.dkimAligned)
            }
        }
    }
}
