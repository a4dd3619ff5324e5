// RFC 8460: the report JSON (writer and parser), the `_smtp._tls` record, the aggregation of
// session outcomes into a report, and the report mail.

import FacteurDNS
@testable import FacteurQueue
import FacteurStore
import Foundation
import XCTest

final class TLSReportTests: XCTestCase {
    /// Shaped like the example of RFC 8460 §4.4 (values our own).
    let example = """
        {
          "organization-name": "Company-X",
          "date-range": {
            "start-datetime": "2016-04-01T00:00:00Z",
            "end-datetime": "2016-04-01T23:59:59Z"
          },
          "contact-info": "sts-reporting@company-x.example",
          "report-id": "5065427c-23d3-47ca-b6e0-946ea0e8c4be",
          "policies": [{
            "policy": {
              "policy-type": "sts",
              "policy-string": ["version: STSv1", "mode: testing", "mx: *.mail.company-y.example", "max_age: 86400"],
              "policy-domain": "company-y.example",
              "mx-host": ["*.mail.company-y.example"]
            },
            "summary": {
              "total-successful-session-count": 5326,
              "total-failure-session-count": 303
            },
            "failure-details": [{
              "result-type": "certificate-expired",
              "sending-mta-ip": "2001:db8:abcd:0012::1",
              "receiving-mx-hostname": "mx1.mail.company-y.example",
              "failed-session-count": 100
            }, {
              "result-type": "starttls-not-supported",
              "sending-mta-ip": "2001:db8:abcd:0013::1",
              "receiving-mx-hostname": "mx2.mail.company-y.example",
              "receiving-ip": "203.0.113.56",
              "failed-session-count": 200,
              "additional-information": "https://reports.company-x.example/report_info?id=5065427c-23d3#StarttlsNotSupported",
              "some-future-field": {"nested": [1, 2, 3]}
            }, {
              "result-type": "validation-failure",
              "sending-mta-ip": "198.51.100.62",
              "receiving-ip": "203.0.113.58",
              "receiving-mx-hostname": "mx-backup.mail.company-y.example",
              "failed-session-count": 3,
              "failure-reason-code": "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"
            }]
          }]
        }
        """

    func testParsesTheRFCShapedExample() throws {
        let report = try TLSReport.parse(json: Array(example.utf8))
        XCTAssertEqual(report.organizationName, "Company-X")
        XCTAssertEqual(report.dateRange.start, Date(timeIntervalSince1970: 1_459_468_800))
        XCTAssertEqual(report.dateRange.end, Date(timeIntervalSince1970: 1_459_468_800 + 86_399))
        XCTAssertEqual(report.policies.count, 1)
        let result = report.policies[0]
        XCTAssertEqual(result.policy.policyType, .sts)
        XCTAssertEqual(result.policy.policyString.count, 4)
        XCTAssertEqual(result.policy.mxHost, ["*.mail.company-y.example"])
        XCTAssertEqual(result.summary.totalSuccessfulSessionCount, 5326)
        XCTAssertEqual(result.summary.totalFailureSessionCount, 303)
        XCTAssertEqual(result.failureDetails.map(\.failureType), [.certificateExpired, .starttlsNotSupported, .validationFailure])
        XCTAssertEqual(result.failureDetails[1].receivingIP, "203.0.113.56")
        XCTAssertNil(result.failureDetails[0].receivingIP)
        XCTAssertEqual(result.failureDetails[2].failureReasonCode, "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED")
        XCTAssertEqual(report.totals.successful, 5326)
        XCTAssertEqual(report.totals.failed, 303)
    }

    func testWriterUsesTheRFCKeysAndNumbers() throws {
        let report = try TLSReport.parse(json: Array(example.utf8))
        let json = report.json()
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json)) as? [String: Any])
        XCTAssertEqual(Set(object.keys), ["organization-name", "date-range", "contact-info", "report-id", "policies"])
        let range = try XCTUnwrap(object["date-range"] as? [String: String])
        XCTAssertEqual(range, ["start-datetime": "2016-04-01T00:00:00Z", "end-datetime": "2016-04-01T23:59:59Z"])
        let policy = try XCTUnwrap((object["policies"] as? [[String: Any]])?.first)
        XCTAssertEqual(Set(policy.keys), ["policy", "summary", "failure-details"])
        let summary = try XCTUnwrap(policy["summary"] as? [String: Any])
        XCTAssertEqual(summary["total-successful-session-count"] as? Int, 5326)
        let text = String(decoding: json, as: UTF8.self)
        XCTAssertTrue(text.contains("\"total-failure-session-count\":303"), "integers are JSON numbers, not strings")
        XCTAssertTrue(text.contains("\"policy-type\":\"sts\""))
        XCTAssertTrue(text.contains("\"mx-host\":[\"*.mail.company-y.example\"]"))
        XCTAssertFalse(text.contains("some-future-field"))
        XCTAssertFalse(text.contains("\\/"), "slashes unescaped")
        // Round trip.
        XCTAssertEqual(try TLSReport.parse(json: json), report)
    }

    func testParserIsStrictOnTypes() {
        func parse(_ replace: String, with: String) -> TLSReportError? {
            let text = example.replacingOccurrences(of: replace, with: with)
            XCTAssertNotEqual(text, example, "fixture edit did not apply: \(replace)")
            do { _ = try TLSReport.parse(json: Array(text.utf8)); return nil } catch { return error }
        }
        XCTAssertNotNil(parse("\"total-successful-session-count\": 5326", with: "\"total-successful-session-count\": \"5326\""))
        XCTAssertNotNil(parse("\"total-successful-session-count\": 5326", with: "\"total-successful-session-count\": 53.5"))
        XCTAssertNotNil(parse("\"failed-session-count\": 100", with: "\"failed-session-count\": -1"))
        XCTAssertNotNil(parse("\"policy-type\": \"sts\"", with: "\"policy-type\": \"something\""))
        XCTAssertNotNil(parse("\"organization-name\": \"Company-X\",", with: ""))
        XCTAssertNotNil(parse("2016-04-01T23:59:59Z", with: "2016-04-01 23:59"))
        XCTAssertNotNil(parse("2016-04-01T23:59:59Z", with: "2016-03-01T00:00:00Z"), "ends before it starts")
        XCTAssertNotNil(parse("\"mx-host\": [\"*.mail.company-y.example\"]", with: "\"mx-host\": 5"))
        // Tolerated: a single mx-host string, and no failure-details at all.
        XCTAssertNil(parse("\"mx-host\": [\"*.mail.company-y.example\"]", with: "\"mx-host\": \"*.mail.company-y.example\""))
        XCTAssertThrowsError(try TLSReport.parse(json: Array("not json".utf8)))
        XCTAssertThrowsError(try TLSReport.parse(json: Array("[]".utf8)))
    }

    func testLimits() {
        XCTAssertThrowsError(try TLSReport.parse(json: Array(repeating: 0x20, count: TLSReportLimits.maxJSONBytes + 1))) {
            XCTAssertEqual($0 as? TLSReportError, .tooLarge(limit: TLSReportLimits.maxJSONBytes))
        }
        let policy = #"{"policy":{"policy-type":"no-policy-found","policy-domain":"x.example"},"summary":{"total-successful-session-count":1,"total-failure-session-count":0}}"#
        let many = #"{"organization-name":"o","date-range":{"start-datetime":"2016-04-01T00:00:00Z","end-datetime":"2016-04-01T23:59:59Z"},"contact-info":"c","report-id":"r","policies":["#
            + Array(repeating: policy, count: TLSReportLimits.maxPolicies + 1).joined(separator: ",") + "]}"
        XCTAssertThrowsError(try TLSReport.parse(json: Array(many.utf8))) {
            XCTAssertEqual($0 as? TLSReportError, .tooMany("policies", limit: TLSReportLimits.maxPolicies))
        }
        // Deep nesting in an unknown field is refused or ignored, never a crash.
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        let nested = example.replacingOccurrences(of: "{\"nested\": [1, 2, 3]}", with: deep)
        _ = try? TLSReport.parse(json: Array(nested.utf8))
    }

    func testRFC3339() {
        XCTAssertEqual(RFC3339.format(Date(timeIntervalSince1970: 0)), "1970-01-01T00:00:00Z")
        XCTAssertEqual(RFC3339.format(Date(timeIntervalSince1970: 1_798_761_599)), "2026-12-31T23:59:59Z")
        XCTAssertEqual(RFC3339.parse("2016-04-01T02:00:00+02:00"), Date(timeIntervalSince1970: 1_459_468_800))
        XCTAssertEqual(RFC3339.parse("2016-04-01T00:00:00.500Z"), Date(timeIntervalSince1970: 1_459_468_800.5))
        XCTAssertEqual(RFC3339.parse("2016-04-01t00:00:00z"), Date(timeIntervalSince1970: 1_459_468_800))
        for bad in ["2016-04-01", "2016-13-01T00:00:00Z", "2016-04-01T24:00:00Z", "2016-04-01T00:00:00", "2016-04-01T00:00:00+2:00",
                    "2016-04-01T00:00:00.Z", "2016-04-01T00:00:00Zjunk", "99999999999999999999-01-01T00:00:00Z"] {
            XCTAssertNil(RFC3339.parse(bad), bad)
        }
        for seconds in stride(from: -86_400 * 800, to: 86_400 * 30_000, by: 86_400 * 37 + 3_607) {
            let date = Date(timeIntervalSince1970: Double(seconds))
            XCTAssertEqual(RFC3339.parse(RFC3339.format(date)), date)
        }
    }

    // MARK: §3 the DNS record

    func testRecordGrammar() {
        XCTAssertEqual(TLSReportRecord.parse("v=TLSRPTv1; rua=mailto:reports@example.com")?.destinations, [.mailto("reports@example.com")])
        XCTAssertEqual(TLSReportRecord.parse("v=TLSRPTv1;rua=mailto:a@example.com,https://reporting.example.com/v1/tlsrpt;")?.destinations,
                       [.mailto("a@example.com"), .https("https://reporting.example.com/v1/tlsrpt")])
        XCTAssertEqual(TLSReportRecord.parse("v=TLSRPTv1 ; rua = mailto:a@example.com")?.destinations, nil, "no space inside name=value")
        XCTAssertEqual(TLSReportRecord.parse("v=TLSRPTv1; ext_1=value; rua=mailto:a%40b@example.com , ftp://x.example/")?.destinations,
                       [.mailto("a@b@example.com")], "unknown extension kept, unknown scheme dropped, percent-decoded")
        XCTAssertNil(TLSReportRecord.parse("v=TLSRPTv1"), "no rua")
        XCTAssertNil(TLSReportRecord.parse("v=TLSRPTv1; rua=ftp://x.example/"), "no usable rua")
        XCTAssertNil(TLSReportRecord.parse("v=TLSRPTv2; rua=mailto:a@example.com"))
        XCTAssertNil(TLSReportRecord.parse("rua=mailto:a@example.com; v=TLSRPTv1"))
        XCTAssertNil(TLSReportRecord.parse("v=TLSRPTv1; rua=mailto:a@example.com; rua=mailto:b@example.com"))
        XCTAssertNil(TLSReportRecord.parse("v=TLSRPTv1; rua=mailto:a@example.com; bad"))
        XCTAssertNil(TLSReportRecord.parse("v=TLSRPTv1; rua=mailto:a@example.com,"))
        let many = "v=TLSRPTv1; rua=" + (1...20).map { "mailto:r\($0)@example.com" }.joined(separator: ",")
        XCTAssertEqual(TLSReportRecord.parse(many)?.destinations.count, TLSReportRecord.maxDestinations)
    }

    func testRecordSelection() async throws {
        XCTAssertNotNil(TLSReportRecord.select(["v=spf1 -all", "v=TLSRPTv1; rua=mailto:a@example.com"]))
        XCTAssertNil(TLSReportRecord.select(["v=TLSRPTv1; rua=mailto:a@example.com", "v=TLSRPTv1; rua=mailto:b@example.com"]),
                     "§3: more than one record means no reports")
        XCTAssertNil(TLSReportRecord.select([]))
        let resolver = StaticResolver(records: [
            DNSResourceRecord(name: try DNSName("_smtp._tls.example.com"), ttl: 300,
                              data: .txt(TXTRecord(strings: [Array("v=TLSRPTv1; rua=mailto:tls@exa".utf8), Array("mple.com".utf8)]))),
        ])
        let found = await TLSReportRecord.lookup(domain: "example.com", resolver: resolver)
        XCTAssertEqual(found?.destinations, [.mailto("tls@example.com")], "character-strings are concatenated")
        let missing = await TLSReportRecord.lookup(domain: "example.net", resolver: resolver)
        XCTAssertNil(missing)
    }

    // MARK: From outcomes to a report

    func testOutcomesAggregateIntoOneReport() throws {
        let day = 20_000
        let date = Date(timeIntervalSince1970: Double(day) * 86_400 + 3_600)
        let sts = TLSSessionOutcome(recipientDomain: "example.com", policyType: .sts,
                                    policyStrings: ["version: STSv1", "mode: enforce", "mx: mx.example.com", "max_age: 604800"],
                                    policyDomain: "example.com", mxHostPattern: "mx.example.com", receivingMXHostname: "mx.example.com",
                                    receivingIP: "192.0.2.1", sendingMTAIP: "198.51.100.7", date: date)
        var failed = sts
        failed.failure = .certificateExpired
        failed.failureDetail = "certificate expired 2026-11-01"
        let none = TLSSessionOutcome(recipientDomain: "example.com", policyType: .noPolicyFound, policyDomain: "example.com",
                                     receivingMXHostname: "mx.example.com", date: date)
        var counts: [String: (String, String, Int)] = [:]
        for (outcome, times) in [(sts, 5), (failed, 2), (none, 1)] {
            let key = TLSReportBuilder.key(for: outcome)
            counts[key.policy + "|" + key.failure, default: (key.policy, key.failure, 0)].2 += times
        }
        XCTAssertEqual(counts.count, 3)
        let rows = counts.values.map { (policy: $0.0, failure: $0.1, count: $0.2) }
        let report = try XCTUnwrap(TLSReportBuilder.report(day: day, recipientDomain: "example.com", rows: rows,
                                                           organization: "sender.example", contact: "postmaster@sender.example"))
        XCTAssertEqual(RFC3339.format(report.dateRange.start), "2024-10-04T00:00:00Z")
        XCTAssertEqual(RFC3339.format(report.dateRange.end), "2024-10-04T23:59:59Z")
        XCTAssertEqual(report.reportID, "2024-10-04_example.com@sender.example")
        XCTAssertEqual(report.policies.count, 2)
        let stsResult = try XCTUnwrap(report.policies.first { $0.policy.policyType == .sts })
        XCTAssertEqual(stsResult.summary, .init(totalSuccessfulSessionCount: 5, totalFailureSessionCount: 2))
        XCTAssertEqual(stsResult.policy.mxHost, ["mx.example.com"])
        XCTAssertEqual(stsResult.failureDetails.count, 1)
        XCTAssertEqual(stsResult.failureDetails[0].resultType, "certificate-expired")
        XCTAssertEqual(stsResult.failureDetails[0].failedSessionCount, 2)
        XCTAssertEqual(stsResult.failureDetails[0].receivingIP, "192.0.2.1")
        XCTAssertEqual(stsResult.failureDetails[0].sendingMTAIP, "198.51.100.7")
        let noneResult = try XCTUnwrap(report.policies.first { $0.policy.policyType == .noPolicyFound })
        XCTAssertEqual(noneResult.summary, .init(totalSuccessfulSessionCount: 1, totalFailureSessionCount: 0))
        XCTAssertFalse(String(decoding: report.json(), as: UTF8.self).contains("\"policy-string\":[]"))
        XCTAssertNil(TLSReportBuilder.report(day: day, recipientDomain: "x", rows: [("garbage", "", 1)], organization: "o", contact: "c"))
    }

    func testReportMail() throws {
        let report = try TLSReport.parse(json: Array(example.utf8))
        let mail = TLSReportMail.compose(report: report, gzipped: [0x1F, 0x8B, 1, 2, 3], submitter: "sender.example",
                                         policyDomain: "company-y.example", from: "noreply-tlsrpt@sender.example",
                                         to: ["tls@company-y.example"], date: Date(timeIntervalSince1970: 1_459_555_200))
        let text = String(decoding: mail, as: UTF8.self)
        let header = MessageHeaderProbe(text)
        XCTAssertEqual(header["Subject"], "Report Domain: company-y.example Submitter: sender.example Report-ID: <5065427c-23d3-47ca-b6e0-946ea0e8c4be>")
        XCTAssertEqual(header["TLS-Report-Domain"], "company-y.example")
        XCTAssertEqual(header["TLS-Report-Submitter"], "sender.example")
        XCTAssertTrue(header["Content-Type"]?.hasPrefix("multipart/report; report-type=\"tlsrpt\"") == true)
        XCTAssertTrue(text.contains("Content-Type: application/tlsrpt+gzip; name=\"sender.example!company-y.example!1459468800!1459555199.json.gz\""))
        XCTAssertTrue(text.contains("\r\nH4sBAgM=\r\n"), "base64 of the gzip bytes")
        XCTAssertFalse(text.replacingOccurrences(of: "\r\n", with: "").contains("\n"), "CRLF only")
        // Header injection through a hostile report id is not possible.
        var hostile = report
        hostile.reportID = "x\r\nBcc: victim@example.com"
        let injected = String(decoding: TLSReportMail.compose(report: hostile, gzipped: [], submitter: "s", policyDomain: "d", from: "f@s",
                                                              to: ["t@d"], date: Date()), as: UTF8.self)
        XCTAssertFalse(injected.contains("\r\nBcc:"))
    }

    func testUploadRefusesPlainHTTPAndReportsTransportFailures() async {
        do {
            try await TLSReportUpload.post([1, 2, 3], to: "http://127.0.0.1:9/tlsrpt")
            XCTFail("plain http must be refused")
        } catch {
            XCTAssertEqual(error, .notHTTPS)
        }
        do {
            try await TLSReportUpload.post([1, 2, 3], to: "http://127.0.0.1:9/tlsrpt", timeout: .seconds(5), allowHTTP: true)
            XCTFail("nothing listens on the discard port")
        } catch {
            guard case .transport = error else { return XCTFail("\(error)") }
        }
    }
}

/// Unfolded header fields of a message text, by name.
private struct MessageHeaderProbe {
    var fields: [String: String] = [:]
    init(_ text: String) {
        guard let end = text.range(of: "\r\n\r\n") else { return }
        let unfolded = text[..<end.lowerBound].replacingOccurrences(of: "\r\n ", with: " ")
        for line in unfolded.components(separatedBy: "\r\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
    }
    subscript(name: String) -> String? { fields[name] }
}
