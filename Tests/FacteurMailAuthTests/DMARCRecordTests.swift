// DMARC record parsing: RFC 7489 §6.3 tags and §6.4 ABNF, §6.6.3 step 6, RFC 9091 np=, DMARCbis
// psd= and t=, and the hard limits.

import FacteurMailAuth
import XCTest

final class DMARCRecordTests: XCTestCase {
    func testEveryTag() throws {
        let record = try DMARCRecord(parsing: "v=DMARC1; p=quarantine; sp=reject; np=reject; pct=25; adkim=s; aspf=s; "
            + "rua=mailto:agg@example.com!10m, mailto:other@thirdparty.example.net; ruf=mailto:f%40x@example.com?subject=x; "
            + "fo=1:d:s; rf=afrf; ri=3600; psd=n; t=y")
        XCTAssertEqual(record.policy, .quarantine)
        XCTAssertEqual(record.subdomainPolicy, .reject)
        XCTAssertEqual(record.nonExistentSubdomainPolicy, .reject)
        XCTAssertEqual(record.percentage, 25)
        XCTAssertEqual(record.dkimAlignment, .strict)
        XCTAssertEqual(record.spfAlignment, .strict)
        XCTAssertEqual(record.aggregateReportURIs.map(\.uri), ["mailto:agg@example.com", "mailto:other@thirdparty.example.net"])
        XCTAssertEqual(record.aggregateReportURIs.first?.maxSize, 10 << 20)
        XCTAssertEqual(record.aggregateReportURIs.last?.mailtoDomain, "thirdparty.example.net")
        XCTAssertEqual(record.failureReportURIs.first?.mailtoAddress, "f@x@example.com")
        XCTAssertEqual(record.failureReportURIs.first?.mailtoDomain, "example.com")
        XCTAssertEqual(record.failureReportingOptions, [.anyFail, .dkimFailure, .spfFailure])
        XCTAssertEqual(record.reportFormats, ["afrf"])
        XCTAssertEqual(record.reportInterval, 3600)
        XCTAssertEqual(record.publicSuffixDomain, .no)
        XCTAssertTrue(record.testing)
        XCTAssertTrue(record.isApplicable)
    }

    func testDefaults() throws {
        let record = try DMARCRecord(parsing: "v=DMARC1; p=reject")
        XCTAssertEqual(record.policy, .reject)
        XCTAssertNil(record.subdomainPolicy)
        XCTAssertNil(record.nonExistentSubdomainPolicy)
        XCTAssertEqual(record.percentage, 100)
        XCTAssertEqual(record.dkimAlignment, .relaxed)
        XCTAssertEqual(record.spfAlignment, .relaxed)
        XCTAssertEqual(record.failureReportingOptions, [.allFail])
        XCTAssertEqual(record.reportFormats, ["afrf"])
        XCTAssertEqual(record.reportInterval, 86400)
        XCTAssertEqual(record.publicSuffixDomain, .unknown)
        XCTAssertFalse(record.testing)
        XCTAssertTrue(record.aggregateReportURIs.isEmpty)
    }

    func testVersionTag() {
        // v= must come first, with exactly the value DMARC1 (case-sensitive); the tag name and the
        // WSP around "=" and ";" follow the ABNF.
        for text in ["p=reject; v=DMARC1", "v=dmarc1; p=reject", "v=DMARC2; p=reject", "v=DMARC1x; p=reject",
                     "v=DMARC1 p=reject", "", "v=", "v=spf1 -all", "; v=DMARC1; p=reject"] {
            XCTAssertThrowsError(try DMARCRecord(parsing: text), text) { error in
                XCTAssertEqual(error as? DMARCRecordError, .notDMARC, text)
            }
            XCTAssertFalse(DMARCRecord.isDMARC1(Array(text.utf8)), text)
        }
        for text in ["v=DMARC1; p=reject", "V = DMARC1 ;P=Reject;", "v=DMARC1\t;\tp=reject\t", "v=DMARC1"] {
            XCTAssertTrue(DMARCRecord.isDMARC1(Array(text.utf8)), text)
            XCTAssertNoThrow(try DMARCRecord(parsing: text), text)
        }
    }

    func testPolicyRuleOfRFC7489Step6() throws {
        // No or invalid p=, or invalid sp=/np=: acts as p=none when rua= has a valid URI...
        for text in ["v=DMARC1; rua=mailto:d@example.com", "v=DMARC1; p=block; rua=mailto:d@example.com",
                     "v=DMARC1; p=reject; sp=bogus; rua=mailto:d@example.com",
                     "v=DMARC1; p=reject; np=maybe; rua=bad-uri, mailto:d@example.com"] {
            let record = try DMARCRecord(parsing: text)
            XCTAssertTrue(record.isApplicable, text)
            XCTAssertEqual(record.policy, .none, text)
            XCTAssertNil(record.subdomainPolicy, text)
            XCTAssertNil(record.nonExistentSubdomainPolicy, text)
        }
        // ...and is not applied otherwise.
        for text in ["v=DMARC1", "v=DMARC1; adkim=s", "v=DMARC1; p=block", "v=DMARC1; p=reject; np=x; rua=not a uri"] {
            XCTAssertFalse(try DMARCRecord(parsing: text).isApplicable, text)
        }
    }

    func testMalformedValuesFallBackToDefaults() throws {
        let record = try DMARCRecord(parsing: "v=DMARC1; p=none; pct=101; adkim=x; aspf=; fo=0:2; ri=99999999999; "
            + "psd=maybe; t=perhaps; 9x=1; =3; junk; foo=bar; p=reject")
        XCTAssertEqual(record.policy, .none, "the first p= wins; the duplicate is ignored")
        XCTAssertEqual(record.percentage, 100)
        XCTAssertEqual(record.dkimAlignment, .relaxed)
        XCTAssertEqual(record.spfAlignment, .relaxed)
        XCTAssertEqual(record.failureReportingOptions, [.allFail])
        XCTAssertEqual(record.reportInterval, 86400)
        XCTAssertEqual(record.publicSuffixDomain, .unknown)
        XCTAssertFalse(record.testing)
        XCTAssertFalse(record.notes.isEmpty)
        XCTAssertEqual(try DMARCRecord(parsing: "v=DMARC1; p=reject; pct=0").percentage, 0)
        XCTAssertEqual(try DMARCRecord(parsing: "v=DMARC1; p=reject; pct=99999999999999999999999").percentage, 100)
    }

    func testReportURIs() throws {
        let record = try DMARCRecord(parsing: "v=DMARC1; p=none; rua=mailto:a@example.com!50k ,\thttps://r.example/x!1g, "
            + "mailto:b@example.com!10x, nonsense, :empty, mailto:, 1abc:def, mailto:c@example.com!99999999999999999999t")
        XCTAssertEqual(record.aggregateReportURIs.map(\.uri),
                       ["mailto:a@example.com", "https://r.example/x", "mailto:b@example.com", "mailto:c@example.com"])
        XCTAssertEqual(record.aggregateReportURIs.map(\.maxSize), [50 << 10, 1 << 30, nil, nil])
        XCTAssertEqual(record.aggregateReportURIs.map(\.scheme), ["mailto", "https", "mailto", "mailto"])
        XCTAssertNil(record.aggregateReportURIs[1].mailtoAddress)
        XCTAssertEqual(record.aggregateReportURIs.first?.description, "mailto:a@example.com!51200")
        // At most DMARCLimits.maxReportURIs are kept.
        let many = (0..<50).map { "mailto:r\($0)@example.com" }.joined(separator: ",")
        XCTAssertEqual(try DMARCRecord(parsing: "v=DMARC1; p=none; rua=\(many)").aggregateReportURIs.count,
                       DMARCLimits.maxReportURIs)
    }

    func testLimits() throws {
        let long = "v=DMARC1; p=none; " + String(repeating: "x", count: DMARCLimits.maxRecordLength)
        XCTAssertThrowsError(try DMARCRecord(parsing: long)) { error in
            XCTAssertEqual(error as? DMARCRecordError, .tooLong)
        }
        // Tags past the limit are ignored, not parsed.
        let padding = String(repeating: "x=1; ", count: DMARCLimits.maxTags)
        let record = try DMARCRecord(parsing: "v=DMARC1; \(padding)p=reject; rua=mailto:a@example.com")
        XCTAssertEqual(record.policy, .none)
        XCTAssertFalse(record.isApplicable)
        // Non-ASCII values are malformed tags, not crashes.
        XCTAssertEqual(try DMARCRecord(parsing: "v=DMARC1; p=réject; sp=none").isApplicable, false)
    }
}
