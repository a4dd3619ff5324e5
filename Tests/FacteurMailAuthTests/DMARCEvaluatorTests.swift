// DMARCEvaluator with the Public Suffix List strategy, beyond the YAML cases: np= (RFC 9091 §2.7,
// §4.1), pct= sampling and t=y (RFC 7489 §6.6.4, DMARCbis §4.7), the external report destination
// check (RFC 7489 §7.1), malformed and internationalised From domains, and the query budget.

import FacteurDNS
import FacteurMailAuth
import Foundation
import XCTest

final class DMARCEvaluatorTests: XCTestCase {
    static let list = PublicSuffixList(parsing: "com\nnet\norg\nexample\nco.uk\ncn\ncom.cn\n")

    func evaluator(_ zone: DMARCTestZone, log: DMARCQueryLog = DMARCQueryLog(), random: Double = 0.5) -> DMARCEvaluator {
        DMARCEvaluator(resolver: LoggingResolver(inner: zone.resolver, log: log),
                       organizationalDomain: .publicSuffixList(Self.list), random: { random })
    }

    func failing(_ from: String) -> DMARCInput {
        DMARCInput(fromDomain: from, spfResult: .fail, spfDomain: from, dkim: [])
    }

    /// RFC 9091 §2.7: a domain is non-existent when A, AAAA and MX give NXDOMAIN or NODATA; np= then
    /// applies instead of sp= (§4.1).
    func testNonExistentSubdomainPolicy() async {
        var zone = DMARCTestZone()
        zone.txt("_dmarc.example.com", "v=DMARC1; p=none; sp=quarantine; np=reject")
        zone.address("www.example.com")
        zone.txt("txtonly.example.com", "not an address")
        let log = DMARCQueryLog()
        let evaluator = self.evaluator(zone, log: log)

        let missing = await evaluator.evaluate(failing("nope.example.com"))
        XCTAssertEqual(missing.result, .fail)
        XCTAssertEqual(missing.policy, .reject)
        XCTAssertEqual(missing.disposition, .reject)
        XCTAssertTrue(missing.reason.contains("np=reject"), missing.reason)
        XCTAssertEqual(Set(log.all.filter { !$0.hasPrefix("TXT") }),
                       ["A nope.example.com", "AAAA nope.example.com", "MX nope.example.com"])

        let existing = await evaluator.evaluate(failing("www.example.com"))
        XCTAssertEqual(existing.policy, .quarantine)

        let nodata = await evaluator.evaluate(failing("txtonly.example.com"))
        XCTAssertEqual(nodata.policy, .reject, "NODATA for A, AAAA and MX is non-existence under RFC 9091")

        let organizational = await evaluator.evaluate(failing("example.com"))
        XCTAssertEqual(organizational.policy, DMARCPolicy.none, "np= and sp= never apply to the record's own domain")

        // A pass does not need the existence check.
        let before = log.all.count
        let pass = await evaluator.evaluate(DMARCInput(fromDomain: "gone.example.com", spfResult: .pass,
                                                       spfDomain: "example.com", dkim: []))
        XCTAssertEqual(pass.result, .pass)
        XCTAssertEqual(pass.policy, .quarantine)
        XCTAssertFalse(log.all[before...].contains { $0.hasPrefix("A ") })
    }

    func testNonExistenceUnknownOnTemporaryFailure() async {
        var zone = DMARCTestZone()
        zone.txt("_dmarc.example.com", "v=DMARC1; p=reject; sp=quarantine; np=reject")
        zone.fail("flaky.example.com", type: nil)
        let evaluation = await evaluator(zone).evaluate(failing("flaky.example.com"))
        XCTAssertEqual(evaluation.policy, .quarantine, "unknown existence keeps sp=")
        XCTAssertTrue(evaluation.reason.contains("unknown"), evaluation.reason)
    }

    func testNpWithoutSpFallsBackToP() async {
        var zone = DMARCTestZone()
        zone.txt("_dmarc.example.com", "v=DMARC1; p=quarantine")
        let evaluation = await evaluator(zone).evaluate(failing("nope.example.com"))
        XCTAssertEqual(evaluation.policy, .quarantine)
    }

    /// RFC 7489 §6.6.4: a message outside the pct= sample gets the next less strict policy.
    func testPercentageSampling() async {
        var zone = DMARCTestZone()
        zone.txt("_dmarc.example.com", "v=DMARC1; p=reject; pct=50")
        let inSample = await evaluator(zone, random: 0.3).evaluate(failing("example.com"))
        XCTAssertEqual(inSample.disposition, .reject)
        XCTAssertFalse(inSample.sampledOut)
        let outOfSample = await evaluator(zone, random: 0.7).evaluate(failing("example.com"))
        XCTAssertEqual(outOfSample.disposition, .quarantine)
        XCTAssertTrue(outOfSample.sampledOut)
        XCTAssertEqual(outOfSample.policy, .reject)

        var none = DMARCTestZone()
        none.txt("_dmarc.example.com", "v=DMARC1; p=none; pct=10")
        let monitoring = await evaluator(none, random: 0.9).evaluate(failing("example.com"))
        XCTAssertEqual(monitoring.disposition, .none)
        XCTAssertFalse(monitoring.sampledOut)
    }

    /// DMARCbis §4.7 t=y: one level below the requested policy, like pct=0.
    func testTestingFlag() async {
        var zone = DMARCTestZone()
        zone.txt("_dmarc.example.com", "v=DMARC1; p=reject; t=y")
        let evaluation = await evaluator(zone, random: 0.0).evaluate(failing("example.com"))
        XCTAssertEqual(evaluation.disposition, .quarantine)
        XCTAssertTrue(evaluation.sampledOut)
        XCTAssertTrue(evaluation.reason.contains("t=y"))
    }

    func testMalformedFromDomain() async {
        let evaluator = self.evaluator(DMARCTestZone())
        for from in ["", ".", "a..example.com", String(repeating: "x", count: 64) + ".com", "exa mple.com"] {
            let evaluation = await evaluator.evaluate(failing(from))
            XCTAssertEqual(evaluation.result, .permerror, from)
            XCTAssertEqual(evaluation.disposition, .none)
        }
    }

    /// DMARCbis §5.3.1: a U-label From domain is converted to A-labels; DKIM d= compares in A-labels.
    func testInternationalisedFromDomain() async {
        var zone = DMARCTestZone()
        zone.txt("_dmarc.xn--85x722f.com.cn", "v=DMARC1; p=reject")
        let evaluation = await evaluator(zone).evaluate(DMARCInput(
            fromDomain: "食狮.COM.cn", spfResult: .none, spfDomain: "", dkim: [(.pass, "mail.xn--85x722f.com.cn")]))
        XCTAssertEqual(evaluation.result, .pass)
        XCTAssertEqual(evaluation.fromDomain, "xn--85x722f.com.cn")
        XCTAssertEqual(evaluation.policyDomain, "xn--85x722f.com.cn")
    }

    /// A record refused for its size counts as unusable: DMARC is not applied.
    func testOversizedRecord() async {
        var zone = DMARCTestZone()
        zone.txt("_dmarc.example.com", "v=DMARC1; p=reject; rua=" + String(repeating: "x", count: DMARCLimits.maxRecordLength))
        let evaluation = await evaluator(zone).evaluate(failing("example.com"))
        XCTAssertEqual(evaluation.result, .none)
    }

    /// Many passing DKIM signatures: at most `maxDKIMDomains` are considered; duplicates count once.
    func testManyDKIMSignatures() async {
        var zone = DMARCTestZone()
        zone.txt("_dmarc.example.com", "v=DMARC1; p=reject")
        let unrelated = (0..<100).map { (result: DKIMResult.pass, domain: "d\($0).example.net") }
        let late = await evaluator(zone).evaluate(DMARCInput(
            fromDomain: "example.com", spfResult: .none, spfDomain: "", dkim: unrelated + [(.pass, "example.com")]))
        XCTAssertEqual(late.result, .fail, "the aligned signature is past the limit")
        let duplicates = Array(repeating: (result: DKIMResult.pass, domain: "other.example.net"), count: 50)
        let early = await evaluator(zone).evaluate(DMARCInput(
            fromDomain: "example.com", spfResult: .none, spfDomain: "", dkim: duplicates + [(.pass, "MAIL.example.com")]))
        XCTAssertEqual(early.result, .pass)
        XCTAssertEqual(early.alignedDKIMDomain, "mail.example.com")
    }

    /// RFC 7489 §7.1.
    func testExternalDestinationVerification() async {
        var zone = DMARCTestZone()
        zone.txt("example.com._report._dmarc.thirdparty.example.net", "v=DMARC1")
        zone.txt("other.example._report._dmarc.thirdparty.example.net", "v=spf1 -all")
        zone.fail("broken.example._report._dmarc.thirdparty.example.net")
        let log = DMARCQueryLog()
        let evaluator = self.evaluator(zone, log: log)
        var verified = await evaluator.verifyExternalDestination(policyDomain: "example.com", destinationDomain: "reports.example.com")
        XCTAssertTrue(verified, "same Organizational Domain")
        XCTAssertTrue(log.all.isEmpty, "no DNS needed for the same Organizational Domain")
        verified = await evaluator.verifyExternalDestination(policyDomain: "Example.COM", destinationDomain: "thirdparty.example.net")
        XCTAssertTrue(verified)
        verified = await evaluator.verifyExternalDestination(policyDomain: "other.example", destinationDomain: "thirdparty.example.net")
        XCTAssertFalse(verified, "a TXT record that is not v=DMARC1 does not authorise")
        verified = await evaluator.verifyExternalDestination(policyDomain: "nobody.example", destinationDomain: "thirdparty.example.net")
        XCTAssertFalse(verified)
        verified = await evaluator.verifyExternalDestination(policyDomain: "broken.example", destinationDomain: "thirdparty.example.net")
        XCTAssertFalse(verified, "a DNS failure does not authorise")
        let long = (0..<30).map { "label\($0)" }.joined(separator: ".") + ".example"
        verified = await evaluator.verifyExternalDestination(policyDomain: long, destinationDomain: long.replacingOccurrences(of: "label", with: "other"))
        XCTAssertFalse(verified, "a name too long to query does not authorise")
    }
}
