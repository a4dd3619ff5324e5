// The aggregate report writer: RFC 7489 output validates against the Appendix C schema with xmllint,
// DMARCbis output carries the RFC 9990 namespace and elements, both parse back to the same report,
// and hostile text cannot break the document.

@testable import FacteurMailAuth
import Foundation
import XCTest

/// Reports shared by the DMARCReport*Tests files.
enum DMARCReportSamples {
    typealias R = DMARCAggregateReport

    /// A report with every RFC 7489 field set to a value the RFC 7489 writer emits unchanged, so
    /// write → parse is the identity.
    static func rfc7489Complete() -> DMARCAggregateReport {
        R(version: "1.0", namespace: nil,
          metadata: .init(orgName: "mx.example.net", email: "dmarc-reports@example.net", extraContactInfo: "https://example.net/dmarc",
                          reportID: "example.com.1700000000", dateRange: .init(begin: 1_700_000_000, end: 1_700_086_399),
                          errors: ["one <error> & another"]),
          policyPublished: .init(domain: "example.com", adkim: .strict, aspf: .relaxed, p: .quarantine, sp: .reject,
                                 pct: 50, fo: "1"),
          records: [
            R.Record(sourceIP: "192.0.2.10", count: 12,
                     policyEvaluated: .init(disposition: R.Disposition.none, dkim: .pass, spf: .fail),
                     identifiers: .init(headerFrom: "example.com", envelopeFrom: "bounce.example.com", envelopeTo: "example.net"),
                     authResults: .init(dkim: [.init(domain: "example.com", selector: "s2026", result: .pass, humanResult: "good sig")],
                                        spf: [.init(domain: "bounce.example.com", scope: .mfrom, result: .softfail)])),
            R.Record(sourceIP: "2001:db8::25", count: 3,
                     policyEvaluated: .init(disposition: .quarantine, dkim: .fail, spf: .fail,
                                            reasons: [.init(type: .mailingList, comment: "list \"x\""), .init(type: .sampledOut)]),
                     identifiers: .init(headerFrom: "example.com", envelopeFrom: "lists.example.org"),
                     authResults: .init(dkim: [.init(domain: "lists.example.org", selector: "l1", result: .pass),
                                               .init(domain: "example.com", selector: "s2026", result: .fail)],
                                        spf: [.init(domain: "lists.example.org", scope: .mfrom, result: .pass),
                                              .init(domain: "mail.example.org", scope: .helo, result: .pass)])),
          ])
    }

    /// A DMARCbis report using the elements RFC 7489 lacks.
    static func dmarcbisComplete() -> DMARCAggregateReport {
        R(version: "1.0", namespace: R.dmarcbisNamespace,
          metadata: .init(orgName: "mx.example.net", email: "dmarc-reports@example.net", reportID: "bis-1",
                          dateRange: .init(begin: 1_700_000_000, end: 1_700_086_399), errors: [], generator: "Facteur"),
          policyPublished: .init(domain: "example.com", adkim: .relaxed, p: .reject, sp: .quarantine, np: .reject,
                                 testing: .yes, fo: "0", discoveryMethod: .treewalk),
          records: [
            R.Record(sourceIP: "2001:db8::25", count: 7,
                     policyEvaluated: .init(disposition: .pass, dkim: .pass, spf: .pass,
                                            reasons: [.init(type: .policyTestMode, comment: "t=y")]),
                     identifiers: .init(headerFrom: "example.com", envelopeFrom: "example.com"),
                     authResults: .init(dkim: [.init(domain: "example.com", selector: "s1", result: .pass)],
                                        spf: [.init(domain: "example.com", scope: .mfrom, result: .pass, humanResult: "ok")])),
          ])
    }
}

final class DMARCReportXMLTests: XCTestCase {
    static func schemaPath(_ name: String) -> String? {
        Bundle.module.url(forResource: "Fixtures", withExtension: nil)?
            .appendingPathComponent("dmarc-reports/schema/\(name)").path
    }

    /// Runs xmllint against the RFC 7489 schema; skips when xmllint is absent (fails under FACTEUR_REQUIRE_ALL=1).
    func assertValidRFC7489(_ xml: String, file: StaticString = #filePath, line: UInt = #line) throws {
        try assertValid(xml, schema: "rfc7489-rua-no-namespace.xsd", file: file, line: line)
    }

    /// Runs `xmllint --noout --schema` on `xml` with a schema from Fixtures/dmarc-reports/schema.
    func assertValid(_ xml: String, schema name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let xmllint = "/usr/bin/xmllint"
        guard FileManager.default.isExecutableFile(atPath: xmllint) else {
            if ProcessInfo.processInfo.environment["FACTEUR_REQUIRE_ALL"] == "1" {
                XCTFail("xmllint missing: apt-get install -y libxml2-utils", file: file, line: line)
            }
            throw XCTSkip("xmllint not installed (apt-get install -y libxml2-utils); RFC 7489 schema validation not run")
        }
        let schema = try XCTUnwrap(Self.schemaPath(name))
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("dmarc-\(UUID().uuidString).xml")
        try Data(xml.utf8).write(to: path)
        defer { try? FileManager.default.removeItem(at: path) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: xmllint)
        process.arguments = ["--noout", "--schema", schema, path.path]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = Pipe()
        try process.run()
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "xmllint: \(message)\n\(xml)", file: file, line: line)
    }

    func testRFC7489OutputValidatesAgainstAppendixC() throws {
        try assertValidRFC7489(DMARCReportSamples.rfc7489Complete().xml(format: .rfc7489))
    }

    func testRFC7489FillsRequiredElementsAndValidates() throws {
        // Nothing optional set, a DMARCbis-only disposition and reason, an IPv6 source in short form,
        // no SPF result, hostile text: the writer still produces a schema-valid document.
        let report = DMARCAggregateReport(
            version: nil,
            metadata: .init(orgName: "a & b <c>\u{0}\u{7}\r\n", email: "x@y", reportID: "]]>\"'", dateRange: .init(begin: 0, end: 86399)),
            policyPublished: .init(domain: "example.com", testing: .yes),
            records: [.init(sourceIP: "2001:db8::1", count: 1,
                            policyEvaluated: .init(disposition: .pass, dkim: nil, spf: nil, reasons: [.init(type: .policyTestMode)]),
                            identifiers: .init(headerFrom: "example.com"),
                            authResults: .init(dkim: [.init(domain: "example.com", selector: nil, result: nil)])),
                      .init(sourceIP: "::ffff:198.51.100.7", count: 2,
                            policyEvaluated: .init(disposition: .reject, dkim: .fail, spf: .fail),
                            identifiers: .init(headerFrom: "example.com", envelopeFrom: "example.com"),
                            authResults: .init(spf: [.init(domain: "example.com", result: .policy)]))])
        let xml = report.xml(format: .rfc7489)
        try assertValidRFC7489(xml)
        XCTAssertTrue(xml.contains("<source_ip>2001:db8:0:0:0:0:0:1</source_ip>"), xml)
        XCTAssertTrue(xml.contains("<source_ip>198.51.100.7</source_ip>"), xml)
        XCTAssertTrue(xml.contains("<pct>0</pct>"), "t=y is pct=0 in RFC 7489 terms")
        XCTAssertTrue(xml.contains("<sp>none</sp>"))
        XCTAssertTrue(xml.contains("<org_name>a &amp; b &lt;c&gt;\u{FFFD}\u{FFFD}&#13;\n</org_name>"), xml)
        XCTAssertTrue(xml.contains("<report_id>]]&gt;&quot;&apos;</report_id>"))
        XCTAssertTrue(xml.contains("<type>other</type>") && xml.contains("<comment>policy_test_mode</comment>"))
        XCTAssertFalse(xml.contains("<disposition>pass</disposition>"))

        let back = try DMARCAggregateReport.parse(xml: Array(xml.utf8))
        XCTAssertEqual(back.metadata.orgName, "a & b <c>\u{FFFD}\u{FFFD}")  // the trailing CR LF is trimmed
        XCTAssertEqual(back.metadata.reportID, "]]>\"'")
        XCTAssertEqual(back.records[0].authResults.spf, [.init(domain: "example.com", scope: .mfrom, result: DMARCAggregateReport.SPFResult.none)])
    }

    func testRFC7489RoundTrip() throws {
        let report = DMARCReportSamples.rfc7489Complete()
        var expected = report
        // RFC 7489 wants IPv6 uncompressed: the text changes, the address does not.
        expected.records[1].sourceIP = "2001:db8:0:0:0:0:0:25"
        XCTAssertEqual(try DMARCAggregateReport.parse(xml: Array(report.xml(format: .rfc7489).utf8)), expected)
    }

    func testDMARCbisOutput() throws {
        let report = DMARCReportSamples.dmarcbisComplete()
        let xml = report.xml(format: .dmarcbis)
        XCTAssertTrue(xml.hasPrefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feedback xmlns=\"urn:ietf:params:xml:ns:dmarc-2.0\">\n  <version>1.0</version>\n"), xml)
        for element in ["<np>reject</np>", "<testing>y</testing>", "<discovery_method>treewalk</discovery_method>",
                        "<generator>Facteur</generator>", "<disposition>pass</disposition>", "<type>policy_test_mode</type>",
                        "<source_ip>2001:db8::25</source_ip>", "<human_result>ok</human_result>"] {
            XCTAssertTrue(xml.contains(element), "missing \(element)")
        }
        XCTAssertFalse(xml.contains("<pct>"), "DMARCbis has no pct")
        try assertValid(xml, schema: "dmarcbis-structure.xsd")
        // Well-formed for libxml2, and the same report once parsed back.
        XCTAssertEqual(try DMARCAggregateReport.parse(xml: Array(xml.utf8)), report)
    }

    func testDMARCbisMapsRFC7489OnlyValues() throws {
        var report = DMARCReportSamples.rfc7489Complete()
        report.records[1].policyEvaluated.reasons.append(.init(type: .forwarded))
        let xml = report.xml(format: .dmarcbis)
        try assertValid(xml, schema: "dmarcbis-structure.xsd")
        XCTAssertFalse(xml.contains("<pct>"))
        XCTAssertTrue(xml.contains("<testing>n</testing>"), "pct=50 is not testing mode")
        XCTAssertTrue(xml.contains("<type>policy_test_mode</type>"), "sampled_out becomes policy_test_mode")
        XCTAssertTrue(xml.contains("<comment>forwarded</comment>"))
        let back = try DMARCAggregateReport.parse(xml: Array(xml.utf8))
        // One SPF result, the MAIL FROM one; HELO is not reported in DMARCbis.
        XCTAssertEqual(back.records[1].authResults.spf.map(\.domain), ["lists.example.org"])
        XCTAssertEqual(back.records[1].sourceIP, "2001:db8::25")
    }

    func testEscapeFiltersCharactersXMLCannotCarry() {
        XCTAssertEqual(DMARCReportXMLWriter.escape("a\u{1}b\u{FFFE}c\td"), "a\u{FFFD}b\u{FFFD}c\td")
        XCTAssertEqual(DMARCReportXMLWriter.escape("é&ü"), "é&amp;ü")
    }
}
