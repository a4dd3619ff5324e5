// Building reports from evaluation rows (identical rows → one record with a count; one UTC day) and the
// per-source summary behind `facteur dmarc report`.

@testable import FacteurMailAuth
import Foundation
import XCTest

final class DMARCReportBuilderTests: XCTestCase {
    typealias R = DMARCAggregateReport

    let builder = DMARCReportBuilder(orgName: "mx.example.net", email: "dmarc-reports@example.net")
    let policy = DMARCPublishedPolicy(domain: "example.com", p: .reject, sp: .quarantine, pct: 100, fo: "0")

    func row(_ ip: String, from: String = "example.com", dkim: R.AlignedResult = .pass, spf: R.AlignedResult = .pass,
             disposition: R.Disposition = .none) -> DMARCReportRow {
        DMARCReportRow(sourceIP: ip, headerFrom: from, envelopeFrom: from, disposition: disposition,
                       dkimAligned: dkim, spfAligned: spf,
                       dkim: [.init(domain: from, selector: "s1", result: dkim == .pass ? .pass : .fail)],
                       spf: [.init(domain: from, scope: .mfrom, result: spf == .pass ? .pass : .fail)])
    }

    func testUTCDay() {
        XCTAssertEqual(DMARCReportBuilder.utcDay(containing: 1_700_000_000), .init(begin: 1_699_920_000, end: 1_700_006_399))
        XCTAssertEqual(DMARCReportBuilder.utcDay(containing: 1_699_920_000), .init(begin: 1_699_920_000, end: 1_700_006_399))
        XCTAssertEqual(DMARCReportBuilder.utcDay(containing: -1), .init(begin: -86_400, end: -1))
    }

    func testIdenticalRowsBecomeOneRecordWithACount() throws {
        var rows = Array(repeating: row("192.0.2.1"), count: 5)
        rows.append(row("::ffff:192.0.2.1"))                     // same client, IPv4-mapped
        rows.append(row("192.0.2.1", from: "EXAMPLE.com"))      // same domain, other case
        rows.append(row("192.0.2.2", dkim: .fail, spf: .fail, disposition: .reject))
        rows.append(row("192.0.2.1", spf: .fail))               // same IP, different results: own record
        var forwarded = row("198.51.100.9", dkim: .fail, spf: .fail)
        forwarded.policyOverride = .init(type: .forwarded, comment: "known forwarder")
        rows.append(forwarded)

        let day = DMARCReportBuilder.utcDay(containing: 1_700_000_000)
        let report = builder.report(policy: policy, rows: rows, dateRange: day, reportID: "example.com!1699920000")
        XCTAssertEqual(report.records.map(\.sourceIP), ["192.0.2.1", "192.0.2.2", "192.0.2.1", "198.51.100.9"])
        XCTAssertEqual(report.records.map(\.count), [7, 1, 1, 1])
        XCTAssertEqual(report.messageCount, rows.count)
        XCTAssertEqual(report.records[1].policyEvaluated, .init(disposition: .reject, dkim: .fail, spf: .fail))
        XCTAssertEqual(report.records[3].policyEvaluated.reasons, [.init(type: .forwarded, comment: "known forwarder")])
        XCTAssertEqual(report.records[0].identifiers, .init(headerFrom: "example.com", envelopeFrom: "example.com"))
        XCTAssertEqual(report.metadata.dateRange, day)
        XCTAssertEqual(report.metadata.orgName, "mx.example.net")
        XCTAssertEqual(report.policyPublished, policy)

        // What the builder makes is what goes out: it parses back unchanged from the RFC 7489 writer.
        XCTAssertEqual(try R.parse(xml: Array(report.xml(format: .rfc7489).utf8)), { var r = report; r.metadata.generator = nil; return r }())
    }

    func testNoRowsGivesAnEmptyReport() {
        let report = builder.report(policy: policy, rows: [], dateRange: .init(begin: 0, end: 86_399), reportID: "r")
        XCTAssertTrue(report.records.isEmpty)
        XCTAssertEqual(report.messageCount, 0)
    }

    // MARK: summary

    func testSummaryAggregatesPerSource() throws {
        let day = DMARCReportBuilder.utcDay(containing: 1_700_000_000)
        let first = builder.report(policy: policy, rows: Array(repeating: row("192.0.2.1"), count: 3)
            + [row("192.0.2.2", dkim: .fail, spf: .fail, disposition: .reject)], dateRange: day, reportID: "a")
        let second = builder.report(policy: policy, rows: [row("192.0.2.1", from: "mail.example.com", dkim: .fail, disposition: .quarantine),
                                                           row("192.0.2.2", dkim: .fail, spf: .fail, disposition: .reject)],
                                    dateRange: day, reportID: "b")
        let bis = try R.parse(xml: DMARCReportParserTests.fixture("parsedmarc/rfc9990-sample.xml"))
        let summary = DMARCReportSummary(reports: [first, second, bis])

        XCTAssertEqual(summary.reportCount, 3)
        XCTAssertEqual(summary.sources.map(\.sourceIP), ["192.0.2.123", "192.0.2.1", "192.0.2.2"])
        let one = summary.sources[1]
        XCTAssertEqual(one.messages, 4)
        XCTAssertEqual(one.dkimAlignedPass, 3)
        XCTAssertEqual(one.spfAlignedPass, 4)
        XCTAssertEqual(one.dispositions, [.none: 3, .quarantine: 1])
        XCTAssertEqual(one.headerFromDomains, ["example.com", "mail.example.com"])
        XCTAssertEqual(summary.sources[2].dispositions, [.reject: 2])
        XCTAssertEqual(summary.sources[0].messages, 123)
        XCTAssertEqual(summary.sources[0].dispositions, [.pass: 123])

        let table = summary.renderTable()
        let lines = table.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 5)
        XCTAssertTrue(lines[0].hasPrefix("SOURCE IP"))
        XCTAssertEqual(lines[2].split(separator: " ", omittingEmptySubsequences: true),
                       ["192.0.2.1", "4", "3", "4", "3", "1", "0", "example.com,mail.example.com"])
        XCTAssertEqual(lines[4].split(separator: " ", omittingEmptySubsequences: true),
                       ["TOTAL", "129", "126", "4", "126", "1", "2", "3", "reports"])
        // Columns line up: every row has its MESSAGES column ending at the same offset.
        let end = lines[0].range(of: "MESSAGES")!.upperBound.utf16Offset(in: lines[0])
        for line in lines.dropFirst() {
            let index = line.index(line.startIndex, offsetBy: end - 1)
            XCTAssertTrue(line[index].isNumber, "\(line)")
        }
    }
}
