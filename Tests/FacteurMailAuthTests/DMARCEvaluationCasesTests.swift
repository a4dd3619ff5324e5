// The 43 RFC 7489 evaluation cases of Fixtures/dmarc/evaluation-cases.yaml (CC0, see its README),
// run with the Public Suffix List strategy, plus the DNS helpers the other DMARC tests share.

import FacteurDNS
import FacteurMailAuth
import Foundation
import XCTest
import Yams

/// Records for a test, built in code (the zone-text reader treats `;` as a comment, and DMARC
/// records are full of them).
struct DMARCTestZone {
    var resolver = StaticResolver()

    static func name(_ text: String) -> DNSName {
        // Test names are valid by construction.
        (try? DNSName(text)) ?? .root
    }

    /// One TXT record per string at `owner`.
    mutating func txt(_ owner: String, _ records: String...) {
        for record in records {
            resolver.add(DNSResourceRecord(name: Self.name(owner), ttl: 300, data: .txt(TXTRecord(text: record))))
        }
    }

    /// An address record, so that `owner` exists.
    mutating func address(_ owner: String) {
        resolver.add(DNSResourceRecord(name: Self.name(owner), ttl: 300, data: .a(IPv4Address("192.0.2.1")!)))
    }

    mutating func fail(_ owner: String, type: DNSRecordType? = .txt) {
        resolver.inject(.serverFailure, name: Self.name(owner), type: type)
    }
}

/// Every question asked, as "TYPE name".
final class DMARCQueryLog: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [String] = []

    func append(_ entry: String) {
        lock.lock()
        entries.append(entry)
        lock.unlock()
    }

    var all: [String] {
        lock.lock()
        defer { lock.unlock() }
        return entries
    }

    /// The `_dmarc` TXT names asked, without the `_dmarc.` prefix.
    var dmarcNames: [String] {
        all.compactMap { entry in
            guard entry.hasPrefix("TXT _dmarc.") else { return nil }
            return String(entry.dropFirst("TXT _dmarc.".count))
        }
    }
}

struct LoggingResolver: DNSResolver {
    let inner: StaticResolver
    let log: DMARCQueryLog

    func query(name: DNSName, type: DNSRecordType) async throws(DNSError) -> DNSAnswer {
        let label: String
        switch type {
        case .txt: label = "TXT"
        case .a: label = "A"
        case .aaaa: label = "AAAA"
        case .mx: label = "MX"
        default: label = "\(type)"
        }
        log.append("\(label) \(name.lowercased)")
        return try await inner.query(name: name, type: type)
    }
}

final class DMARCEvaluationCasesTests: XCTestCase {
    /// Text of a YAML scalar; nil for null or absent.
    static func text(_ value: Any?) -> String? {
        guard let value, !(value is NSNull) else { return nil }
        return "\(value)"
    }

    static func resolver(_ dns: [String: Any]) -> StaticResolver {
        var zone = DMARCTestZone()
        for (owner, value) in dns {
            if let special = value as? String {
                // SERVFAIL is injected; NXDOMAIN is what an unlisted name already gives.
                if special == "SERVFAIL" { zone.fail(owner) }
                continue
            }
            for record in value as? [Any] ?? [] {
                let strings: [[UInt8]]
                if let parts = record as? [Any] {
                    strings = parts.map { Array("\($0)".utf8) }
                } else {
                    strings = [Array("\(record)".utf8)]
                }
                zone.resolver.add(DNSResourceRecord(name: DMARCTestZone.name(owner), ttl: 300,
                                                    data: .txt(TXTRecord(strings: strings))))
            }
        }
        return zone.resolver
    }

    func testRFC7489EvaluationCases() async throws {
        let list = try DMARCFixtures.publicSuffixList()
        let text = try String(contentsOf: DMARCFixtures.url("dmarc/evaluation-cases.yaml"), encoding: .utf8)
        guard let document = try Yams.load(yaml: text) as? [String: Any], let cases = document["cases"] as? [Any] else {
            return XCTFail("evaluation-cases.yaml did not load")
        }
        var ran = 0
        var failures: [String] = []
        for entry in cases {
            guard let test = entry as? [String: Any], let name = test["name"] as? String,
                  let expect = test["expect"] as? [String: Any] else {
                failures.append("malformed case: \(entry)")
                continue
            }
            let evaluator = DMARCEvaluator(resolver: Self.resolver(test["dns"] as? [String: Any] ?? [:]),
                                           organizationalDomain: .publicSuffixList(list), random: { 0.5 })
            let spf = test["spf"] as? [String: Any]
            let dkim = (test["dkim"] as? [Any] ?? []).compactMap { item -> (result: DKIMResult, domain: String)? in
                guard let signature = item as? [String: Any],
                      let result = DKIMResult(rawValue: Self.text(signature["result"]) ?? ""),
                      let domain = Self.text(signature["d"]) else { return nil }
                return (result, domain)
            }
            let input = DMARCInput(fromDomain: Self.text(test["from_domain"]) ?? "",
                                   spfResult: SPFResult(rawValue: Self.text(spf?["result"]) ?? "none") ?? .none,
                                   spfDomain: Self.text(spf?["domain"]) ?? "",
                                   dkim: dkim)
            let evaluation = await evaluator.evaluate(input)
            ran += 1

            var problems: [String] = []
            func check(_ field: String, _ actual: String?) {
                let expected = Self.text(expect[field])
                if expected != actual { problems.append("\(field): expected \(expected ?? "null") got \(actual ?? "null")") }
            }
            check("dmarc", evaluation.result.rawValue)
            check("policy_domain", evaluation.policyDomain)
            check("policy", evaluation.policy?.rawValue)
            check("disposition", evaluation.disposition.rawValue)
            // null alignment means "DMARC does not apply": we report false then.
            for (field, actual) in [("spf_aligned", evaluation.spfAligned), ("dkim_aligned", evaluation.dkimAligned)] {
                let expected = Self.text(expect[field]).map { $0 == "true" } ?? false
                if expected != actual { problems.append("\(field): expected \(expected) got \(actual)") }
            }
            if !problems.isEmpty {
                failures.append("\(name): " + problems.joined(separator: "; ") + " — \(evaluation.reason)")
            }
        }
        XCTAssertEqual(ran, 43)
        XCTAssertTrue(failures.isEmpty, "\(failures.count) failures:\n" + failures.joined(separator: "\n"))
    }
}
