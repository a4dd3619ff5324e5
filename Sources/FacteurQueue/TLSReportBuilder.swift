// From TLS session outcomes to RFC 8460 §4 reports: each outcome becomes an aggregation key (the
// policy, and for a failure the §4.4 failure-details without the count, both as canonical JSON so
// the store can count them without knowing their shape), and one day's counts for one recipient
// domain become one report.

import Foundation

public enum TLSReportBuilder {
    /// What one outcome is counted under: `policy` and `failure` ("" for a successful session) are
    /// JSON texts of `TLSReport.Policy` and `TLSReport.FailureDetail` (with a zero count).
    public static func key(for outcome: TLSSessionOutcome) -> (policy: String, failure: String) {
        let policy = TLSReport.Policy(
            policyType: outcome.policyType, policyString: Array(outcome.policyStrings.prefix(TLSReportLimits.maxPolicyStrings)),
            policyDomain: outcome.policyDomain.lowercased(),
            mxHost: outcome.mxHostPattern.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } })
        guard let failure = outcome.failure else { return (canonical(policy), "") }
        let detail = TLSReport.FailureDetail(
            resultType: failure.rawValue, sendingMTAIP: outcome.sendingMTAIP, receivingMXHostname: outcome.receivingMXHostname,
            receivingIP: outcome.receivingIP, failedSessionCount: 0,
            additionalInformation: outcome.failureDetail.map { String($0.prefix(512)) })
        return (canonical(policy), canonical(detail))
    }

    /// One report from one day's counts for one recipient domain: rows of (policy JSON, failure
    /// JSON or "", sessions). Rows that do not decode are skipped; nil when nothing is left.
    public static func report(day: Int, recipientDomain: String, rows: [(policy: String, failure: String, count: Int)],
                              organization: String, contact: String) -> TLSReport? {
        var order: [TLSReport.Policy] = []
        var results: [TLSReport.Policy: (ok: Int, failed: Int, details: [TLSReport.FailureDetail])] = [:]
        let decoder = JSONDecoder()
        for row in rows where row.count > 0 {
            guard let policy = try? decoder.decode(TLSReport.Policy.self, from: Data(row.policy.utf8)) else { continue }
            if results[policy] == nil { order.append(policy) }
            var result = results[policy] ?? (0, 0, [])
            if row.failure.isEmpty {
                result.ok = result.ok.addingReportingOverflow(row.count).partialValue
            } else if var detail = try? decoder.decode(TLSReport.FailureDetail.self, from: Data(row.failure.utf8)) {
                detail.failedSessionCount = row.count
                result.failed = result.failed.addingReportingOverflow(row.count).partialValue
                result.details.append(detail)
            }
            results[policy] = result
        }
        guard !order.isEmpty else { return nil }
        let start = Date(timeIntervalSince1970: Double(day) * 86_400)
        let policies = order.map { policy -> TLSReport.PolicyResult in
            let r = results[policy] ?? (0, 0, [])
            return TLSReport.PolicyResult(policy: policy, summary: .init(totalSuccessfulSessionCount: r.ok, totalFailureSessionCount: r.failed),
                                          failureDetails: r.details.sorted { $0.failedSessionCount > $1.failedSessionCount })
        }
        return TLSReport(organizationName: organization,
                         dateRange: .init(start: start, end: start.addingTimeInterval(86_399)),
                         contactInfo: contact, reportID: reportID(day: day, recipientDomain: recipientDomain, organization: organization),
                         policies: policies)
    }

    /// Unique per day, recipient domain and reporter; also the Message-ID's left part.
    public static func reportID(day: Int, recipientDomain: String, organization: String) -> String {
        let date = String(RFC3339.format(Date(timeIntervalSince1970: Double(day) * 86_400)).prefix(10))
        return "\(date)_\(recipientDomain.lowercased())@\(organization.lowercased())"
    }

    static func canonical<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }
}
