// The ValiMail ARC test suite (Fixtures/arc, MIT, see its README): every validation case and every
// sealing case, run through StaticResolver with each scenario's key records; plus two real chains.

import FacteurDNS
import FacteurMIME
import FacteurMailAuth
import Foundation
import XCTest
import Yams

final class ARCSuiteTests: XCTestCase {
    /// Validation cases whose expected result we deliberately do not produce, with the reason.
    static let validationExceptions: [String: String] = [:]
    /// Sealing cases we deliberately do not reproduce, with the reason.
    static let signExceptions: [String: String] = [:]

    static func text(_ path: String) throws -> String {
        try String(contentsOf: SPFSuiteTests.fixture("arc/" + path), encoding: .utf8)
    }

    static func resolver(_ records: [String: Any]) throws -> StaticResolver {
        var resolver = StaticResolver()
        for (owner, value) in records {
            let record = "\(value)".replacingOccurrences(of: "\n", with: "").trimmingCharacters(in: .whitespaces)
            resolver.add(DNSResourceRecord(name: try DNSName(owner), ttl: 300, data: .txt(TXTRecord(text: record))))
        }
        return resolver
    }

    static func message(_ value: Any?) -> [UInt8] {
        DKIMMessage.withCRLF(Array("\(value ?? "")".utf8))
    }

    static let now: Int64 = 1_700_000_000

    func testValidationSuite() async throws {
        var ran = 0, failures: [String] = []
        var counts: [String: Int] = [:]
        for document in try Yams.load_all(yaml: Self.text("arc-draft-validation-tests.yml")) {
            guard let scenario = document as? [String: Any], let tests = scenario["tests"] as? [String: Any] else { continue }
            let resolver = try Self.resolver(scenario["txt-records"] as? [String: Any] ?? [:])
            let verifier = ARCVerifier(resolver: resolver, validateOlderSignatures: true, clock: { Self.now })
            for (id, value) in tests.sorted(by: { $0.key < $1.key }) {
                guard let test = value as? [String: Any] else { continue }
                // cv: "" is the upstream runner's "chain ended by cv=fail": RFC 8617 §5.2 step 2 says fail.
                let raw = "\(test["cv"] ?? "")".trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
                let expected = raw.isEmpty ? ARCResult.fail : ARCResult(rawValue: raw)
                let outcome = await verifier.validate(message: Self.message(test["message"]))
                ran += 1
                counts[outcome.result.rawValue, default: 0] += 1
                if outcome.result != expected && Self.validationExceptions[id] == nil {
                    failures.append("\(id): expected \(raw) got \(outcome.result) (\(outcome.reason))")
                }
                // A pass reports every set, and the AAR payload parses as Authentication-Results.
                if outcome.result == .pass {
                    XCTAssertEqual(outcome.instances.map(\.instance), Array(1...outcome.instances.count), id)
                    XCTAssertTrue(outcome.instances.allSatisfy { $0.parsedResults != nil }, "\(id): AAR did not parse")
                    XCTAssertNotNil(outcome.oldestPassingAMS, id)
                }
            }
        }
        XCTAssertEqual(ran, 171)
        XCTAssertEqual(counts["pass"], 54, "\(counts)")
        XCTAssertTrue(failures.isEmpty, "\(failures.count) failures:\n" + failures.joined(separator: "\n"))
    }

    func testOldestPassOnChainWhoseFirstAMSNoLongerVerifies() async throws {
        // cv_pass_i2_1_ams1_invalid: From was changed after hop 1, so AMS(1) fails while AMS(2) and
        // both seals verify: the chain passes and the oldest passing AMS is 2 (RFC 8617 §5.2 step 5).
        for document in try Yams.load_all(yaml: Self.text("arc-draft-validation-tests.yml")) {
            guard let scenario = document as? [String: Any], let tests = scenario["tests"] as? [String: Any],
                  let test = tests["cv_pass_i2_1_ams1_invalid"] as? [String: Any] else { continue }
            let resolver = try Self.resolver(scenario["txt-records"] as? [String: Any] ?? [:])
            let verifier = ARCVerifier(resolver: resolver, validateOlderSignatures: true, clock: { Self.now })
            let outcome = await verifier.validate(message: Self.message(test["message"]))
            XCTAssertEqual(outcome.result, .pass, outcome.reason)
            XCTAssertEqual(outcome.oldestPassingAMS, 2)
            XCTAssertEqual(outcome.oldestPassProperty, 2)
            let base = tests["cv_pass_i2_1"] as? [String: Any]
            let good = await verifier.validate(message: Self.message(base?["message"]))
            XCTAssertEqual(good.oldestPassingAMS, 1)
            XCTAssertEqual(good.oldestPassProperty, 0)
            return
        }
        XCTFail("case not found")
    }

    // MARK: sealing

    /// Tag list → [name: value] with whitespace removed (the suite's normalization).
    static func tags(_ value: String) -> [String: String] {
        var out: [String: String] = [:]
        for part in value.split(separator: ";") {
            let compact = part.filter { !$0.isWhitespace }
            guard let eq = compact.firstIndex(of: "=") else { continue }
            out[String(compact[..<eq])] = String(compact[compact.index(after: eq)...])
        }
        return out
    }

    static func collapse(_ text: String) -> String {
        var s = text.split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
        while s.hasSuffix(";") { s.removeLast() }
        return s
    }

    /// The value of the field called `name` in a block of fields.
    static func fieldValue(_ name: String, in block: String) -> String? {
        MessageHeader(parsing: Array(block.utf8)).field(named: name)?.value
    }

    func testSignSuite() async throws {
        var ran = 0, failures: [String] = []
        for document in try Yams.load_all(yaml: Self.text("arc-draft-sign-tests.yml")) {
            guard let scenario = document as? [String: Any], let tests = scenario["tests"] as? [String: Any],
                  let pem = scenario["privatekey"] as? String else { continue }
            let resolver = try Self.resolver(scenario["txt-records"] as? [String: Any] ?? [:])
            let key = try DKIMSigningKey(rsaPEM: pem)
            let domain = "\(scenario["domain"] ?? "")", selector = "\(scenario["sel"] ?? "")"
            for (id, value) in tests.sorted(by: { $0.key < $1.key }) {
                guard let test = value as? [String: Any] else { continue }
                ran += 1
                let message = Self.message(test["message"])
                let srvID = "\(test["srv-id"] ?? "")"
                let signed = "\(test["sig-headers"] ?? "")".split(separator: ":").map(String.init)
                let timestamp = Int64("\(test["t"] ?? "")") ?? 0
                let header = MessageHeader(parsing: message)
                let results = ARCSealer.authenticationResults(in: header, authservID: srvID) ?? ""
                // The suite's driver takes cv from the arc= result of our own Authentication-Results.
                let arc = (try? AuthenticationResultsParser.parse("\(srvID); \(results)"))?.results(for: "arc") ?? []
                let cv: ARCResult = arc.count == 1 ? ARCResult(rawValue: arc[0].result) ?? .fail : arc.isEmpty ? .none : .fail
                let sealer = ARCSealer(domain: domain, selector: selector, key: key, signedHeaders: signed)
                let wantAS = "\(test["AS"] ?? "")".trimmingCharacters(in: .whitespacesAndNewlines)
                let produced: String
                do {
                    produced = try sealer.seal(message: message, authenticationResults: results, chainValidation: cv,
                                               authservID: srvID, timestamp: timestamp)
                } catch {
                    if !wantAS.isEmpty { failures.append("\(id): sealing threw \(error)") }
                    continue
                }
                guard !wantAS.isEmpty else {
                    failures.append("\(id): expected no ARC set, got one"); continue
                }
                let gotAS = Self.fieldValue("ARC-Seal", in: produced) ?? ""
                let gotAMS = Self.fieldValue("ARC-Message-Signature", in: produced) ?? ""
                let gotAAR = Self.fieldValue("ARC-Authentication-Results", in: produced) ?? ""
                if Self.tags(gotAS) != Self.tags(wantAS) { failures.append("\(id): AS\n got  \(gotAS)\n want \(wantAS)") }
                if Self.tags(gotAMS) != Self.tags("\(test["AMS"] ?? "")") {
                    failures.append("\(id): AMS\n got  \(gotAMS)\n want \(test["AMS"] ?? "")")
                }
                if Self.collapse(gotAAR) != Self.collapse("\(test["AAR"] ?? "")") {
                    failures.append("\(id): AAR\n got  \(gotAAR)\n want \(test["AAR"] ?? "")")
                }
                // And the sealed message validates: pass, or fail when we sealed a broken chain.
                let outcome = await ARCVerifier(resolver: resolver, clock: { Self.now })
                    .validate(message: Array(produced.utf8) + message)
                XCTAssertEqual(outcome.result, cv == .fail ? .fail : .pass, "\(id): \(outcome.reason)")
            }
        }
        XCTAssertEqual(ran, 17)
        let unexpected = failures.filter { f in !Self.signExceptions.keys.contains { f.hasPrefix($0 + ":") } }
        XCTAssertTrue(unexpected.isEmpty, "\(unexpected.count) failures:\n" + unexpected.joined(separator: "\n"))
    }

    // MARK: real chains

    static func realChain(_ file: String) throws -> (StaticResolver, [UInt8]) {
        let bytes = Array(try text("mail-auth/" + file).utf8)
        guard let split = bytes.indices.first(where: { $0 + 1 < bytes.count && bytes[$0] == 0x0A && bytes[$0 + 1] == 0x0A }) else {
            throw XCTSkip("\(file): no blank line")
        }
        var resolver = StaticResolver()
        try DKIMTests.addKeys(String(decoding: bytes[...split], as: UTF8.self), to: &resolver)
        return (resolver, DKIMMessage.withCRLF(Array(bytes[(split + 2)...])))
    }

    func testRealGoogleChainPasses() async throws {
        let (resolver, message) = try Self.realChain("001.txt")
        let outcome = await ARCVerifier(resolver: resolver, clock: { 1_667_900_000 }).validate(message: message)
        XCTAssertEqual(outcome.result, .pass, outcome.reason)
        XCTAssertEqual(outcome.latest?.sealerDomain, "google.com")
        XCTAssertEqual(outcome.latest?.parsedResults?.authservID, "mx.google.com")
        XCTAssertFalse(outcome.latest?.parsedResults?.results(for: "dkim").isEmpty ?? true)
    }

    func testEd25519ChainPassesOnlyWhenAccepted() async throws {
        let (resolver, message) = try Self.realChain("002.txt")
        let strict = await ARCVerifier(resolver: resolver, clock: { 1_700_000_000 }).validate(message: message)
        XCTAssertEqual(strict.result, .fail, "RFC 8617 defines only rsa-sha256")
        let lenient = await ARCVerifier(resolver: resolver, algorithms: [.rsaSHA256, .ed25519SHA256],
                                        validateOlderSignatures: true, clock: { 1_700_000_000 }).validate(message: message)
        XCTAssertEqual(lenient.result, .pass, lenient.reason)
        XCTAssertEqual(lenient.instances.map(\.sealerDomain), ["scamorza.org", "manchego.org"])
    }
}
