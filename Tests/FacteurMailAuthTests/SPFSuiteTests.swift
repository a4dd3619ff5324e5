// The openspf RFC 7208 test suite (Fixtures/spf, BSD-3-Clause, see its README and LICENSE), run
// through StaticResolver with each scenario's zone data, following the suite's driver rules.

import FacteurDNS
import FacteurMailAuth
import Foundation
import XCTest
import Yams

final class SPFSuiteTests: XCTestCase {
    /// Tests whose expected result we deliberately do not produce, with the reason. Empty: every case passes.
    static let exceptions: [String: String] = [:]

    static func fixture(_ path: String) throws -> URL {
        guard let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            throw XCTSkip("Fixtures missing")
        }
        return url.appendingPathComponent(path)
    }

    /// A name from text without the checks of `DNSName(_:)`: the suite has owner names with spaces and %.
    static func name(_ text: String) throws -> DNSName {
        var bytes = Array(text.utf8)
        if bytes.last == UInt8(ascii: ".") { bytes.removeLast() }
        return try DNSName(labels: bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).map(Array.init))
    }

    static func strings(_ value: Any) -> [[UInt8]] {
        if let list = value as? [Any] { return list.map { Array("\($0)".utf8) } }
        return [Array("\(value)".utf8)]
    }

    static func resolver(zone: [String: Any]) throws -> StaticResolver {
        var resolver = StaticResolver()
        for (owner, entries) in zone {
            guard let name = try? name(owner) else { continue }
            var txt: [[[UInt8]]] = []
            var spf: [[[UInt8]]] = []
            var txtNone = false
            // The suite's driver (pyspf): TIMEOUT makes a query time out unless a record of the type
            // asked for was listed before it.
            var typesBeforeTimeout: Set<String> = []
            for entry in entries as? [Any] ?? [] {
                if let word = entry as? String {
                    if word == "TIMEOUT" {
                        let types: [String: DNSRecordType] = ["TXT": .txt, "A": .a, "AAAA": .aaaa, "MX": .mx, "PTR": .ptr]
                        for (text, type) in types where !typesBeforeTimeout.contains(text) {
                            resolver.inject(.timeout, name: name, type: type)
                        }
                    }
                    continue
                }
                guard let dict = entry as? [String: Any] else { continue }
                for (type, value) in dict {
                    if !(type == "TXT" && (value as? String) == "NONE") { typesBeforeTimeout.insert(type) }
                    switch type {
                    case "TXT":
                        if let v = value as? String, v == "NONE" { txtNone = true } else { txt.append(strings(value)) }
                    case "SPF":
                        spf.append(strings(value))
                    case "A":
                        if let a = IPv4Address("\(value)") { resolver.add(DNSResourceRecord(name: name, ttl: 300, data: .a(a))) }
                    case "AAAA":
                        if let a = IPv6Address("\(value)") { resolver.add(DNSResourceRecord(name: name, ttl: 300, data: .aaaa(a))) }
                    case "PTR":
                        resolver.add(DNSResourceRecord(name: name, ttl: 300, data: .ptr(try Self.name("\(value)"))))
                    case "CNAME":
                        resolver.add(DNSResourceRecord(name: name, ttl: 300, data: .cname(try Self.name("\(value)"))))
                    case "MX":
                        guard let pair = value as? [Any], pair.count == 2, let pref = Int("\(pair[0])") else { continue }
                        let exchange = "\(pair[1])"
                        let target = exchange.isEmpty || exchange == "." ? DNSName.root : try Self.name(exchange)
                        resolver.add(DNSResourceRecord(name: name, ttl: 300,
                                                       data: .mx(MXRecord(preference: UInt16(pref), exchange: target))))
                    default:
                        XCTFail("unknown zone type \(type)")
                    }
                }
            }
            // The suite's driver: SPF-type records are published as TXT when the name has no TXT at all.
            if txt.isEmpty && !txtNone { txt = spf }
            for strings in txt {
                resolver.add(DNSResourceRecord(name: name, ttl: 300, data: .txt(TXTRecord(strings: strings))))
            }
        }
        return resolver
    }

    func testRFC7208Suite() async throws {
        let text = try String(contentsOf: Self.fixture("spf/rfc7208-tests.yml"), encoding: .utf8)
        var ran = 0, failures: [String] = []
        for document in try Yams.load_all(yaml: text) {
            guard let scenario = document as? [String: Any], let tests = scenario["tests"] as? [String: Any] else { continue }
            let resolver = try Self.resolver(zone: scenario["zonedata"] as? [String: Any] ?? [:])
            let verifier = SPFVerifier(resolver: resolver, receivingDomain: "unknown", clock: { 1_400_000_000 })
            for (id, value) in tests.sorted(by: { $0.key < $1.key }) {
                guard let test = value as? [String: Any] else { continue }
                let raw: Any = test["result"] ?? ""
                let expected = (raw as? [Any] ?? [raw]).map { "\($0)" }
                guard let ip = IPAddress("\(test["host"] ?? "")") else {
                    failures.append("\(id): bad host"); continue
                }
                let outcome = await verifier.checkMailFrom(ip: ip, mailFrom: "\(test["mailfrom"] ?? "")",
                                                           helo: "\(test["helo"] ?? "")")
                ran += 1
                var ok = expected.contains(outcome.result.rawValue)
                if ok, let explanation = test["explanation"] as? String, explanation != "DEFAULT",
                   outcome.result == .fail {
                    ok = outcome.explanation == explanation
                }
                if !ok && Self.exceptions[id] == nil {
                    failures.append("\(id): expected \(expected) got \(outcome.result) (\(outcome.reason)) exp=\(outcome.explanation ?? "-")")
                }
            }
        }
        XCTAssertEqual(ran, 203)
        XCTAssertTrue(failures.isEmpty, "\(failures.count) failures:\n" + failures.joined(separator: "\n"))
    }
}
