// DMARC aggregate report parsing and extraction against every sample in
// Fixtures/dmarc-reports/index.yaml (parsedmarc and mail-auth corpora: RFC 7489 and RFC 9990 reports,
// gzip, zip, .eml containers, deliberately broken files), plus the limits that keep hostile reports cheap.

@testable import FacteurMailAuth
import Foundation
import XCTest
import Yams

final class DMARCReportParserTests: XCTestCase {
    static func fixtureURL(_ path: String) throws -> URL {
        guard let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            throw XCTSkip("Fixtures bundle missing")
        }
        return url.appendingPathComponent("dmarc-reports").appendingPathComponent(path)
    }

    static func fixture(_ path: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: fixtureURL(path)))
    }

    static func index() throws -> [[String: Any]] {
        let text = try String(contentsOf: fixtureURL("index.yaml"), encoding: .utf8)
        guard let root = try Yams.load(yaml: text) as? [String: Any], let reports = root["reports"] as? [[String: Any]] else {
            XCTFail("index.yaml has no reports list")
            return []
        }
        return reports
    }

    /// Records per .eml container (the index lists attachments only), checked with Python's email,
    /// gzip and zipfile modules when the fixtures were copied.
    static let containerRecords: [String: (records: Int, messages: Int)] = [
        "mail-auth/100.eml": (1, 1), "mail-auth/101.eml": (1, 1), "mail-auth/102.eml": (1, 1),
        "mail-auth/103.eml": (1, 1), "mail-auth/104.eml": (1, 1),
        "parsedmarc/google.com_report_borschow.com_949348866075514174.eml": (1, 1),
        "parsedmarc/mimecast-weird-gzip.eml": (1, 1),
        "parsedmarc/twilight.eml": (1, 1),
    ]

    /// Broken samples that are nevertheless recovered: the ikea report's <feedback> is complete
    /// before libxml2 trips over the stray unclosed <xs:schema> (index.yaml notes parsedmarc recovers too).
    static let recovered: [String: Int] = ["parsedmarc/ikea.com!example.de!1538690400!1538776800.xml": 1]

    func testEverySampleInTheIndex() throws {
        let entries = try Self.index()
        XCTAssertEqual(entries.count, 31)
        var checked = 0
        for entry in entries {
            guard let file = entry["file"] as? String else { XCTFail("entry without file"); continue }
            let bytes = try Self.fixture(file)
            let name = (file as NSString).lastPathComponent
            if entry["container"] as? String == "email" {
                let reports: [DMARCAggregateReport]
                do { reports = try DMARCReportExtractor.reports(fromMessage: bytes) } catch {
                    XCTFail("\(file): \(error)")
                    continue
                }
                XCTAssertEqual(reports.count, 1, file)
                let expected = try XCTUnwrap(Self.containerRecords[file], file)
                XCTAssertEqual(reports.first?.records.count, expected.records, file)
                XCTAssertEqual(reports.first?.messageCount, expected.messages, file)
                // The attachment's name carries the policy domain and period (§7.2.1.1).
                if let attachments = entry["attachments"] as? [[String: Any]],
                   let attached = attachments.first?["filename"] as? String, let report = reports.first {
                    let parts = attached.split(separator: "!")
                    XCTAssertEqual(String(parts[1]), report.policyPublished.domain, file)
                    XCTAssertEqual(Int64(parts[2]), report.metadata.dateRange.begin, file)
                }
                if let json = entry["expected_json"] as? String, let report = reports.first {
                    try compare(report, toJSON: json)
                }
            } else if entry["well_formed"] as? Bool == true {
                let reports: [DMARCAggregateReport]
                do { reports = try DMARCReportExtractor.reports(fromAttachment: bytes, filename: name) } catch {
                    XCTFail("\(file): \(error)")
                    continue
                }
                XCTAssertEqual(reports.count, 1, file)
                XCTAssertEqual(reports.first?.records.count, entry["records"] as? Int, file)
                XCTAssertEqual(reports.first?.namespace, entry["namespace"] as? String, file)
                if let json = entry["expected_json"] as? String, let report = reports.first {
                    try compare(report, toJSON: json)
                }
            } else if let records = Self.recovered[file] {
                let report = try DMARCAggregateReport.parse(xml: bytes)
                XCTAssertEqual(report.records.count, records, file)
            } else {
                XCTAssertThrowsError(try DMARCReportExtractor.reports(fromAttachment: bytes, filename: name), file) { error in
                    guard let error = error as? DMARCReportError else { return XCTFail("\(file): \(error)") }
                    XCTAssertFalse(error.description.isEmpty)
                    switch error {
                    case .malformedXML: break
                    default: XCTFail("\(file): expected malformedXML, got \(error)")
                    }
                }
            }
            checked += 1
        }
        XCTAssertEqual(checked, 31)
    }

    /// Field-by-field comparison with mail-auth's own expected parse (its JSON layout: enum names in
    /// CamelCase, "MailFrom" for mfrom).
    func compare(_ report: DMARCAggregateReport, toJSON path: String) throws {
        let object = try JSONSerialization.jsonObject(with: Data(Self.fixture(path)))
        let json = try XCTUnwrap(object as? [String: Any], path)
        let metadata = try XCTUnwrap(json["report_metadata"] as? [String: Any])
        XCTAssertEqual(report.metadata.orgName, metadata["org_name"] as? String, path)
        XCTAssertEqual(report.metadata.reportID, metadata["report_id"] as? String, path)
        let range = try XCTUnwrap(metadata["date_range"] as? [String: Any])
        XCTAssertEqual(report.metadata.dateRange.begin, (range["begin"] as? NSNumber)?.int64Value, path)
        XCTAssertEqual(report.metadata.dateRange.end, (range["end"] as? NSNumber)?.int64Value, path)
        let policy = try XCTUnwrap(json["policy_published"] as? [String: Any])
        XCTAssertEqual(report.policyPublished.domain, policy["domain"] as? String, path)
        if let p = policy["p"] as? String, p != "Unspecified" {
            XCTAssertEqual(report.policyPublished.p?.rawValue, p.lowercased(), path)
        }
        let records = try XCTUnwrap(json["record"] as? [[String: Any]])
        XCTAssertEqual(report.records.count, records.count, path)
        for (ours, theirs) in zip(report.records, records) {
            let row = try XCTUnwrap(theirs["row"] as? [String: Any])
            XCTAssertEqual(ours.sourceIP, row["source_ip"] as? String, path)
            XCTAssertEqual(ours.count, row["count"] as? Int, path)
            let evaluated = try XCTUnwrap(row["policy_evaluated"] as? [String: Any])
            if let disposition = evaluated["disposition"] as? String, disposition != "Unspecified" {
                XCTAssertEqual(ours.policyEvaluated.disposition?.rawValue, disposition.lowercased(), path)
            }
            if let dkim = evaluated["dkim"] as? String, dkim != "Unspecified" {
                XCTAssertEqual(ours.policyEvaluated.dkim?.rawValue, dkim.lowercased(), path)
            }
            let reasons = evaluated["reason"] as? [[String: Any]] ?? []
            XCTAssertEqual(ours.policyEvaluated.reasons.count, reasons.count, path)
            let ids = try XCTUnwrap(theirs["identifiers"] as? [String: Any])
            XCTAssertEqual(ours.identifiers.headerFrom, ids["header_from"] as? String, path)
            // mail-auth keeps empty elements as ""; we read them as absent.
            func nonEmpty(_ value: Any?) -> String? { (value as? String).flatMap { $0.isEmpty ? nil : $0 } }
            XCTAssertEqual(ours.identifiers.envelopeFrom, nonEmpty(ids["envelope_from"]), path)
            let auth = try XCTUnwrap(theirs["auth_results"] as? [String: Any])
            let dkims = auth["dkim"] as? [[String: Any]] ?? []
            XCTAssertEqual(ours.authResults.dkim.map(\.domain), dkims.compactMap { $0["domain"] as? String }, path)
            XCTAssertEqual(ours.authResults.dkim.map(\.selector), dkims.map { nonEmpty($0["selector"]) }, path)
            let spfs = auth["spf"] as? [[String: Any]] ?? []
            XCTAssertEqual(ours.authResults.spf.map(\.domain), spfs.compactMap { $0["domain"] as? String }, path)
            XCTAssertEqual(ours.authResults.spf.map { $0.result?.rawValue },
                           spfs.map { ($0["result"] as? String).map { $0.lowercased() } }, path)
        }
    }

    func testFastmailReportValues() throws {
        let report = try DMARCAggregateReport.parse(xml: Self.fixture("mail-auth/003.xml"))
        XCTAssertEqual(report.version, "1.0")
        XCTAssertNil(report.namespace)
        XCTAssertEqual(report.metadata.email, "reports@fastmaildmarc.com")
        XCTAssertEqual(report.metadata.extraContactInfo, "https://fastmail.com/")
        XCTAssertEqual(report.policyPublished.pct, 100)
        XCTAssertEqual(report.policyPublished.fo, "0")
        let first = try XCTUnwrap(report.records.first)
        XCTAssertEqual(first.count, 3)
        XCTAssertEqual(first.policyEvaluated.reasons,
                       [.init(type: .trustedForwarder, comment: "Policy ignored due to local white list")])
        XCTAssertEqual(first.authResults.dkim, [.init(domain: "jmap.topicbox.com", selector: "dkim-1", result: .pass, humanResult: "pass")])
        XCTAssertEqual(first.authResults.spf, [.init(domain: "jmap.bounce.topicbox.com", scope: .mfrom, result: .pass)])
        XCTAssertEqual(report.messageCount, report.records.reduce(0) { $0 + $1.count })
    }

    func testDMARCbisSampleReadsNewElements() throws {
        let report = try DMARCAggregateReport.parse(xml: Self.fixture("parsedmarc/rfc9990-sample.xml"))
        XCTAssertEqual(report.namespace, DMARCAggregateReport.dmarcbisNamespace)
        XCTAssertEqual(report.policyPublished.np, DMARCAggregateReport.Policy.none)
        XCTAssertEqual(report.policyPublished.testing, .no)
        XCTAssertEqual(report.policyPublished.discoveryMethod, .treewalk)
        XCTAssertEqual(report.metadata.generator, "Example DMARC Aggregate Reporter v1.2")
        XCTAssertEqual(report.records.first?.policyEvaluated.disposition, .pass)
        XCTAssertEqual(report.records.first?.count, 123)
    }

    func testUpperCasedValuesAreRead() throws {
        let report = try DMARCAggregateReport.parse(xml: Self.fixture("parsedmarc/invalid/report_with_upper_cased_pass.xml"))
        let record = try XCTUnwrap(report.records.first)
        // The sample capitalises its enumerated values ("None", "Pass"): they read as the schema's values.
        XCTAssertEqual(record.policyEvaluated.disposition, DMARCAggregateReport.Disposition.none)
        XCTAssertEqual(record.policyEvaluated.dkim, .pass)
        XCTAssertEqual(record.policyEvaluated.spf, .pass)
        XCTAssertEqual(record.authResults.dkim.first?.result, .pass)
        XCTAssertEqual(record.authResults.spf.first?.result, .pass)
    }

    func testEmptyReasonIsDropped() throws {
        let report = try DMARCAggregateReport.parse(xml: Self.fixture("parsedmarc/empty_reason.xml"))
        XCTAssertEqual(report.records.first?.policyEvaluated.reasons, [])
    }

    func testLenientValues() throws {
        let xml = """
        <?xml version="1.0"?>
        <dmarc:feedback xmlns:dmarc="urn:example">
          <report_metadata><org_name> Org </org_name><email>a@b</email><report_id>r1</report_id>
            <date_range><begin>1538204542.0</begin><end>99999999999999999999999</end></date_range></report_metadata>
          <policy_published><domain>example.com</domain><adkim>RELAXED</adkim><p>Reject</p><pct>250</pct></policy_published>
          <record>
            <row><source_ip> 192.0.2.1 </source_ip><count>-5</count>
              <policy_evaluated><disposition></disposition><dkim>Fail</dkim><spf>PASS</spf>
                <reason><type></type></reason><reason><type>Local_Policy</type><comment>arc=pass</comment></reason>
              </policy_evaluated></row>
            <identifiers><header_from>example.com</header_from></identifiers>
            <auth_results><dkim><domain>example.com</domain><result>hardfail</result></dkim>
              <spf><domain>example.com</domain><scope>MailFrom</scope><result>unknown</result></spf></auth_results>
          </record>
        </dmarc:feedback>
        """
        let report = try DMARCAggregateReport.parse(xml: Array(xml.utf8))
        XCTAssertNil(report.version)
        XCTAssertEqual(report.metadata.orgName, "Org")
        XCTAssertEqual(report.metadata.dateRange.begin, 1_538_204_542)
        XCTAssertEqual(report.metadata.dateRange.end, Int64.max)
        XCTAssertEqual(report.policyPublished.adkim, .relaxed)
        XCTAssertEqual(report.policyPublished.p, .reject)
        XCTAssertEqual(report.policyPublished.pct, 100)
        let record = try XCTUnwrap(report.records.first)
        XCTAssertEqual(record.sourceIP, "192.0.2.1")
        XCTAssertEqual(record.count, 0)
        XCTAssertNil(record.policyEvaluated.disposition)
        XCTAssertEqual(record.policyEvaluated.dkim, .fail)
        XCTAssertEqual(record.policyEvaluated.spf, .pass)
        XCTAssertEqual(record.policyEvaluated.reasons, [.init(type: .localPolicy, comment: "arc=pass")])
        XCTAssertEqual(record.authResults.dkim.first?.result, .fail)
        XCTAssertEqual(record.authResults.spf.first?.scope, .mfrom)
        XCTAssertEqual(record.authResults.spf.first?.result, .temperror)
    }

    // MARK: hostile input

    func testDoctypeIsRefused() {
        let xml = """
        <?xml version="1.0"?>
        <!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
        <feedback><report_metadata><org_name>&lol2;</org_name></report_metadata></feedback>
        """
        XCTAssertThrowsError(try DMARCAggregateReport.parse(xml: Array(xml.utf8))) { error in
            XCTAssertEqual(error as? DMARCReportError, .documentTypeDeclaration)
        }
    }

    func testWrongRootIsNotAReport() {
        XCTAssertThrowsError(try DMARCAggregateReport.parse(xml: Array("<html><body/></html>".utf8))) { error in
            XCTAssertEqual(error as? DMARCReportError, .notAggregateReport(root: "html"))
        }
    }

    func testEmptyAndGarbageInputs() {
        for input in [[], Array("   \n".utf8), [0xFF, 0xFE, 0x00], Array("<feedback><record>".utf8), Array("not xml".utf8)] as [[UInt8]] {
            XCTAssertThrowsError(try DMARCAggregateReport.parse(xml: input), "\(input)")
        }
    }

    func testDeepNestingIsCapped() {
        let depth = 500
        let xml = "<feedback>" + String(repeating: "<a>", count: depth) + String(repeating: "</a>", count: depth) + "</feedback>"
        XCTAssertThrowsError(try DMARCAggregateReport.parse(xml: Array(xml.utf8))) { error in
            XCTAssertEqual(error as? DMARCReportError, .tooDeep(limit: DMARCReportLimits.maxDepth))
        }
    }

    func testLongTextIsCapped() {
        let xml = "<feedback><report_metadata><org_name>" + String(repeating: "x", count: DMARCReportLimits.maxTextBytes + 10)
            + "</org_name></report_metadata></feedback>"
        XCTAssertThrowsError(try DMARCAggregateReport.parse(xml: Array(xml.utf8))) { error in
            XCTAssertEqual(error as? DMARCReportError, .textTooLong(element: "org_name"))
        }
    }

    func testOversizedInputIsRefusedBeforeParsing() {
        let big = [UInt8](repeating: 0x20, count: DMARCReportLimits.maxXMLBytes + 1)
        XCTAssertThrowsError(try DMARCAggregateReport.parse(xml: big)) { error in
            XCTAssertEqual(error as? DMARCReportError, .tooLarge(limit: DMARCReportLimits.maxXMLBytes))
        }
    }

    func testLargeSampleParsesAllRecords() throws {
        let bytes = try Self.fixture("parsedmarc/!large-example.com!1711897200!1711983600.xml")
        let start = Date()
        let report = try DMARCAggregateReport.parse(xml: bytes)
        XCTAssertEqual(report.records.count, 2286)
        XCTAssertLessThan(Date().timeIntervalSince(start), 30, "2286 records should parse in well under 30 s even in debug")
    }

    /// Samples truncated at many points, and with bytes flipped: errors or reports, never a crash.
    /// FACTEUR_FUZZ_ITERATIONS raises the number of mutations per sample (default 200).
    func testMutatedSamplesNeverCrash() throws {
        let iterations = ProcessInfo.processInfo.environment["FACTEUR_FUZZ_ITERATIONS"].flatMap { Int($0) } ?? 200
        var rng = SystemRandomNumberGenerator()
        for path in ["mail-auth/003.xml", "parsedmarc/rfc9990-sample.xml", "mail-auth/001.xml"] {
            let base = try Self.fixture(path)
            for cut in stride(from: 0, to: base.count, by: 97) {
                _ = try? DMARCAggregateReport.parse(xml: Array(base[..<cut]))
            }
            for _ in 0..<iterations {
                var mutated = base
                for _ in 0..<Int.random(in: 1...8, using: &rng) {
                    let i = Int.random(in: 0..<mutated.count, using: &rng)
                    switch Int.random(in: 0..<3, using: &rng) {
                    case 0: mutated[i] = UInt8.random(in: 0...255, using: &rng)
                    case 1: mutated.insert(contentsOf: [0x3C, UInt8.random(in: 0x80...0xFF, using: &rng)], at: i)
                    default: mutated.remove(at: i)
                    }
                }
                _ = try? DMARCAggregateReport.parse(xml: mutated)
            }
        }
    }

    func testEncodings() throws {
        let body = "<feedback><report_metadata><org_name>Société</org_name></report_metadata></feedback>"
        // Declared Latin-1 (windows-1252 in practice), as some reporters send.
        let latin1 = Array("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n".utf8)
            + body.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) }
        XCTAssertEqual(try DMARCAggregateReport.parse(xml: latin1).metadata.orgName, "Société")
        // UTF-16LE with a BOM and a declaration saying so.
        let utf16: [UInt8] = [0xFF, 0xFE] + Array(("<?xml version=\"1.0\" encoding=\"UTF-16\"?>" + body).utf16).flatMap { unit -> [UInt8] in [UInt8(unit & 0xFF), UInt8(unit >> 8)] }
        XCTAssertEqual(try DMARCAggregateReport.parse(xml: utf16).metadata.orgName, "Société")
        // UTF-8 BOM, leading blank line.
        let bom: [UInt8] = [0xEF, 0xBB, 0xBF] + Array(("\n<?xml version=\"1.0\"?>" + body).utf8)
        XCTAssertEqual(try DMARCAggregateReport.parse(xml: bom).metadata.orgName, "Société")
        // Invalid UTF-8 in a tag name (once a crash in FoundationXML) is a clean error.
        let bad = Array("<feedback><org".utf8) + [0xFB] + Array("_name>x</org_name></feedback>".utf8)
        XCTAssertThrowsError(try DMARCAggregateReport.parse(xml: bad)) { error in
            XCTAssertEqual(error as? DMARCReportError, .malformedXML("invalid UTF-8"))
        }
    }
}
