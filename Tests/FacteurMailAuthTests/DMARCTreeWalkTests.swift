// The DMARCbis DNS Tree Walk (draft-ietf-dmarc-dmarcbis-41 §4.10): the queries it makes (at most 8,
// long names cut to 7 labels), policy discovery (§4.10.1), the Organizational Domain rules of
// §4.10.2 (psd=n, psd=y, fewest labels), and the worked examples of Appendix B.4.

@testable import FacteurMailAuth
import FacteurDNS
import XCTest

final class DMARCTreeWalkTests: XCTestCase {
    func evaluator(_ zone: DMARCTestZone, log: DMARCQueryLog = DMARCQueryLog()) -> DMARCEvaluator {
        DMARCEvaluator(resolver: LoggingResolver(inner: zone.resolver, log: log), organizationalDomain: .treeWalk,
                       random: { 0.5 })
    }

    func testTargets() {
        XCTAssertEqual(DMARCEvaluator.treeWalkTargets(labelCount: 1), [1])
        XCTAssertEqual(DMARCEvaluator.treeWalkTargets(labelCount: 4), [4, 3, 2, 1])
        XCTAssertEqual(DMARCEvaluator.treeWalkTargets(labelCount: 7), [7, 6, 5, 4, 3, 2, 1])
        XCTAssertEqual(DMARCEvaluator.treeWalkTargets(labelCount: 8), [8, 7, 6, 5, 4, 3, 2, 1])
        XCTAssertEqual(DMARCEvaluator.treeWalkTargets(labelCount: 13), [13, 7, 6, 5, 4, 3, 2, 1])
        for count in 1...127 {
            XCTAssertLessThanOrEqual(DMARCEvaluator.treeWalkTargets(labelCount: count).count, DMARCLimits.maxTreeWalkQueries)
        }
    }

    /// Appendix B.4.1: records at example.com and signing.example.com; both identifiers align.
    func testSimpleOrganizationalAndPolicyExample() async {
        var zone = DMARCTestZone()
        zone.txt("_dmarc.example.com", "v=DMARC1; p=reject")
        zone.txt("_dmarc.signing.example.com", "v=DMARC1; p=none")
        let log = DMARCQueryLog()
        let evaluation = await evaluator(zone, log: log).evaluate(DMARCInput(
            fromDomain: "example.com", spfResult: .pass, spfDomain: "example.com",
            dkim: [(.pass, "signing.example.com")]))
        XCTAssertEqual(evaluation.result, .pass)
        XCTAssertEqual(evaluation.policyDomain, "example.com")
        XCTAssertEqual(evaluation.policy, .reject)
        XCTAssertTrue(evaluation.spfAligned)
        XCTAssertTrue(evaluation.dkimAligned)
        XCTAssertEqual(evaluation.alignedDKIMDomain, "signing.example.com")
        XCTAssertEqual(evaluation.organizationalDomain, "example.com")
        XCTAssertEqual(Set(log.dmarcNames), ["example.com", "com", "signing.example.com"])
        XCTAssertEqual(log.dmarcNames.count, 3, "a name asked by two walks is queried once")
    }

    /// Appendix B.4.2: a 13-label Author Domain: 8 queries, skipping to 7 labels after the first.
    func testDeepTreeWalkExample() async {
        var zone = DMARCTestZone()
        zone.txt("_dmarc.example.com", "v=DMARC1; p=reject; sp=quarantine")
        zone.txt("_dmarc.signing.example.com", "v=DMARC1; p=none")
        zone.address("a.b.c.d.e.f.g.h.i.j.k.example.com")
        let log = DMARCQueryLog()
        let author = "a.b.c.d.e.f.g.h.i.j.k.example.com"
        let evaluation = await evaluator(zone, log: log).evaluate(DMARCInput(
            fromDomain: author, spfResult: .fail, spfDomain: "example.com", dkim: [(.pass, "signing.example.com")]))
        XCTAssertEqual(evaluation.result, .pass)
        XCTAssertEqual(evaluation.policyDomain, "example.com")
        XCTAssertEqual(evaluation.policy, .quarantine, "sp= applies to a subdomain")
        XCTAssertTrue(evaluation.dkimAligned)
        XCTAssertEqual(Array(log.dmarcNames.prefix(8)), [
            author, "g.h.i.j.k.example.com", "h.i.j.k.example.com", "i.j.k.example.com",
            "j.k.example.com", "k.example.com", "example.com", "com",
        ])
        XCTAssertEqual(Set(log.dmarcNames.dropFirst(8)), ["signing.example.com"])
    }

    /// Appendix B.4.3: bank.example publishes psd=y: the Organizational Domains are one label below.
    func testPSDRecordExample() async {
        var zone = DMARCTestZone()
        zone.txt("_dmarc.bank.example", "v=DMARC1; p=reject; psd=y")
        zone.txt("_dmarc.giant.bank.example", "v=DMARC1; p=quarantine")
        let log = DMARCQueryLog()
        let evaluator = self.evaluator(zone, log: log)
        let dkimOnly = await evaluator.evaluate(DMARCInput(
            fromDomain: "giant.bank.example", spfResult: .none, spfDomain: "", dkim: [(.pass, "mail.mega.bank.example")]))
        XCTAssertEqual(dkimOnly.result, .fail, "mega.bank.example is another organisation")
        XCTAssertEqual(dkimOnly.policyDomain, "giant.bank.example")
        XCTAssertEqual(dkimOnly.policy, .quarantine)
        XCTAssertEqual(dkimOnly.disposition, .quarantine)
        XCTAssertFalse(log.dmarcNames.contains("example"), "the walk stops at psd=y")

        let withSPF = await evaluator.evaluate(DMARCInput(
            fromDomain: "giant.bank.example", spfResult: .pass, spfDomain: "mail.giant.bank.example",
            dkim: [(.pass, "mail.mega.bank.example")]))
        XCTAssertEqual(withSPF.result, .pass)
        XCTAssertTrue(withSPF.spfAligned)
        XCTAssertFalse(withSPF.dkimAligned)
        let org = await evaluator.organizationalDomain(of: "mail.mega.bank.example")
        XCTAssertEqual(org, "mega.bank.example")
    }

    /// §4.10.1: no record at the Author Domain or its Organizational Domain: the PSD's record applies,
    /// with sp= for the (existing) subdomain.
    func testPublicSuffixDomainPolicyApplies() async {
        var zone = DMARCTestZone()
        zone.txt("_dmarc.bank.example", "v=DMARC1; p=reject; sp=quarantine; psd=y")
        zone.address("www.small.bank.example")
        let evaluation = await evaluator(zone).evaluate(DMARCInput(
            fromDomain: "www.small.bank.example", spfResult: .pass, spfDomain: "other.example", dkim: []))
        XCTAssertEqual(evaluation.result, .fail)
        XCTAssertEqual(evaluation.policyDomain, "bank.example")
        XCTAssertEqual(evaluation.organizationalDomain, "small.bank.example")
        XCTAssertEqual(evaluation.policy, .quarantine)
        XCTAssertEqual(evaluation.disposition, .quarantine)
    }

    /// §4.10.2 rule 1: psd=n declares an Organizational Domain below the apex; its record applies,
    /// and the apex is another organisation for alignment.
    func testPsdNoDeclaresOrganizationalDomain() async {
        var zone = DMARCTestZone()
        zone.txt("_dmarc.mail.example.com", "v=DMARC1; p=quarantine; psd=n")
        zone.txt("_dmarc.example.com", "v=DMARC1; p=reject")
        zone.address("a.mail.example.com")
        let log = DMARCQueryLog()
        let evaluation = await evaluator(zone, log: log).evaluate(DMARCInput(
            fromDomain: "a.mail.example.com", spfResult: .none, spfDomain: "", dkim: [(.pass, "example.com")]))
        XCTAssertEqual(evaluation.result, .fail)
        XCTAssertEqual(evaluation.policyDomain, "mail.example.com")
        XCTAssertEqual(evaluation.organizationalDomain, "mail.example.com")
        XCTAssertEqual(evaluation.policy, .quarantine)
        XCTAssertEqual(Array(log.dmarcNames.prefix(2)), ["a.mail.example.com", "mail.example.com"],
                       "the author walk stops at psd=n")
        let evaluatorWithoutLog = evaluator(zone)
        let org = await evaluatorWithoutLog.organizationalDomain(of: "x.a.mail.example.com")
        XCTAssertEqual(org, "mail.example.com")
    }

    /// §4.10.2 rule 3: without psd=, the record with the fewest labels wins; an intermediate record is
    /// neither the Organizational Domain nor the policy (unlike a PSL: example.com, not mail.example.com).
    func testFewestLabelsWins() async {
        var zone = DMARCTestZone()
        zone.txt("_dmarc.mail.example.com", "v=DMARC1; p=none")
        zone.txt("_dmarc.example.com", "v=DMARC1; p=reject")
        zone.address("a.mail.example.com")
        let evaluator = self.evaluator(zone)
        let evaluation = await evaluator.evaluate(DMARCInput(
            fromDomain: "a.mail.example.com", spfResult: .pass, spfDomain: "bounce.example.com", dkim: []))
        XCTAssertEqual(evaluation.result, .pass, "bounce.example.com and a.mail.example.com share example.com")
        XCTAssertEqual(evaluation.policyDomain, "example.com")
        XCTAssertEqual(evaluation.policy, .reject)
        let examples: [(String, String)] = [
            ("a.mail.example.com", "example.com"),   // §4.10.2 first example
            ("example.com", "example.com"),
            ("unrelated.example.net", "unrelated.example.net"), // no record: the name itself
        ]
        for (domain, expected) in examples {
            let org = await evaluator.organizationalDomain(of: domain)
            XCTAssertEqual(org, expected, domain)
        }
        // §4.10.2 last example: only _dmarc.com, with psd=y.
        var psdOnly = DMARCTestZone()
        psdOnly.txt("_dmarc.com", "v=DMARC1; p=none; psd=y")
        let org = await self.evaluator(psdOnly).organizationalDomain(of: "a.mail.example.com")
        XCTAssertEqual(org, "example.com")
    }

    /// The Author Domain's own record applies even with psd=y (the name is then its own
    /// Organizational Domain); sp= does not apply to it.
    func testAuthorRecordWithPsdYes() async {
        var zone = DMARCTestZone()
        zone.txt("_dmarc.gov.example", "v=DMARC1; p=reject; sp=none; psd=y")
        let evaluation = await evaluator(zone).evaluate(DMARCInput(
            fromDomain: "gov.example", spfResult: .pass, spfDomain: "agency.gov.example", dkim: []))
        XCTAssertEqual(evaluation.result, .fail, "agency.gov.example is its own organisation")
        XCTAssertEqual(evaluation.policy, .reject)
        XCTAssertEqual(evaluation.organizationalDomain, "gov.example")
    }

    /// The 8-query cap holds however long the name, and with no record anywhere DMARC does not apply.
    func testQueryCapOnLongNames() async {
        let log = DMARCQueryLog()
        let author = (1...40).map { "l\($0)" }.joined(separator: ".") + ".example"
        let evaluation = await evaluator(DMARCTestZone(), log: log).evaluate(DMARCInput(
            fromDomain: author, spfResult: .pass, spfDomain: "x." + author, dkim: [(.pass, "y." + author)]))
        XCTAssertEqual(evaluation.result, .none)
        XCTAssertNil(evaluation.policyDomain)
        XCTAssertEqual(log.dmarcNames.count, DMARCLimits.maxTreeWalkQueries)
        XCTAssertEqual(log.dmarcNames.last, "example")
    }

    /// A record published deeper than the walk reaches is never found (§5.1.8): the walk skips it.
    func testRecordSkippedByShortening() async {
        var zone = DMARCTestZone()
        zone.txt("_dmarc.b.c.d.e.f.g.example.com", "v=DMARC1; p=none; psd=n")
        zone.txt("_dmarc.example.com", "v=DMARC1; p=reject")
        zone.address("mail.a.b.c.d.e.f.g.example.com")
        let evaluation = await evaluator(zone).evaluate(DMARCInput(
            fromDomain: "mail.a.b.c.d.e.f.g.example.com", spfResult: .none, spfDomain: "", dkim: []))
        XCTAssertEqual(evaluation.policyDomain, "example.com")
        XCTAssertEqual(evaluation.policy, .reject)
    }

    /// DMARCbis §4.10 step 2: several records at one name are discarded and the walk goes on (RFC 7489
    /// instead stops; see the YAML case discovery-multiple-dmarc-records for the PSL strategy).
    func testMultipleRecordsAreDiscarded() async {
        var zone = DMARCTestZone()
        zone.txt("_dmarc.sub.example.com", "v=DMARC1; p=none", "v=DMARC1; p=reject")
        zone.txt("_dmarc.example.com", "v=DMARC1; p=quarantine")
        zone.address("sub.example.com")
        let evaluation = await evaluator(zone).evaluate(DMARCInput(
            fromDomain: "sub.example.com", spfResult: .none, spfDomain: "", dkim: []))
        XCTAssertEqual(evaluation.policyDomain, "example.com")
        XCTAssertEqual(evaluation.policy, .quarantine)
    }

    func testTemporaryFailures() async {
        // In policy discovery: temperror.
        var zone = DMARCTestZone()
        zone.fail("_dmarc.example.com")
        let discovery = await evaluator(zone).evaluate(DMARCInput(
            fromDomain: "sub.example.com", spfResult: .pass, spfDomain: "sub.example.com", dkim: []))
        XCTAssertEqual(discovery.result, .temperror)
        XCTAssertEqual(discovery.disposition, .none)

        // In an alignment walk: temperror unless another identifier aligns.
        var alignment = DMARCTestZone()
        alignment.txt("_dmarc.example.com", "v=DMARC1; p=reject")
        alignment.fail("_dmarc.mail.example.com")
        let evaluator = self.evaluator(alignment)
        let unresolved = await evaluator.evaluate(DMARCInput(
            fromDomain: "example.com", spfResult: .fail, spfDomain: "example.com", dkim: [(.pass, "mail.example.com")]))
        XCTAssertEqual(unresolved.result, .temperror)
        XCTAssertEqual(unresolved.policy, .reject)
        XCTAssertEqual(unresolved.disposition, .none)
        let rescued = await evaluator.evaluate(DMARCInput(
            fromDomain: "example.com", spfResult: .pass, spfDomain: "example.com", dkim: [(.pass, "mail.example.com")]))
        XCTAssertEqual(rescued.result, .pass)
        // organizationalDomain(of:) falls back to the name itself.
        let org = await evaluator.organizationalDomain(of: "x.mail.example.com")
        XCTAssertEqual(org, "x.mail.example.com")
    }

    /// Strict alignment and identical names need no walk beyond the policy lookup.
    func testNoWalkWhenNotNeeded() async {
        var zone = DMARCTestZone()
        zone.txt("_dmarc.example.com", "v=DMARC1; p=reject; adkim=s; aspf=s")
        let log = DMARCQueryLog()
        let evaluation = await evaluator(zone, log: log).evaluate(DMARCInput(
            fromDomain: "example.com", spfResult: .pass, spfDomain: "bounce.example.com",
            dkim: [(.pass, "example.com"), (.pass, "mail.example.com")]))
        XCTAssertEqual(evaluation.result, .pass)
        XCTAssertFalse(evaluation.spfAligned)
        XCTAssertTrue(evaluation.dkimAligned)
        XCTAssertEqual(log.dmarcNames, ["example.com"])
    }

    /// RFC 9091 / DMARCbis §4.10.1 np=: with the tree walk, only NXDOMAIN makes a name non-existent
    /// (§3.2.13); a name that owns other records exists.
    func testNonExistentSubdomainPolicy() async {
        var zone = DMARCTestZone()
        zone.txt("_dmarc.example.com", "v=DMARC1; p=none; sp=quarantine; np=reject")
        zone.txt("txtonly.example.com", "some text")
        let evaluator = self.evaluator(zone)
        let missing = await evaluator.evaluate(DMARCInput(fromDomain: "nope.example.com", spfResult: .none, spfDomain: "", dkim: []))
        XCTAssertEqual(missing.policy, .reject)
        XCTAssertEqual(missing.disposition, .reject)
        let nodata = await evaluator.evaluate(DMARCInput(fromDomain: "txtonly.example.com", spfResult: .none, spfDomain: "", dkim: []))
        XCTAssertEqual(nodata.policy, .quarantine, "NODATA is not non-existence under DMARCbis")
    }
}
