// Building a DMARC aggregate report from per-message evaluations (RFC 7489 §7.2, RFC 9990 §2.1):
// identical evaluations are one record with a count, for one policy domain and one reporting period
// (a UTC day, §7.2: "reports SHOULD ... cover a full day ... starting at 0000 UTC"). Takes plain rows so
// the reporting library does not depend on the evaluator's types.

/// The DMARC record the evaluations were made against (`policy_published`).
public typealias DMARCPublishedPolicy = DMARCAggregateReport.PolicyPublished

/// One message's DMARC evaluation, as the report needs it.
public struct DMARCReportRow: Sendable, Equatable, Hashable {
    /// The connecting client's address (text; IPv4-mapped IPv6 is reported as IPv4).
    public var sourceIP: String
    /// RFC5322.From domain.
    public var headerFrom: String
    /// RFC5321.MailFrom domain (the HELO domain for a null sender), or nil when unknown.
    public var envelopeFrom: String?
    /// The envelope recipient's domain, when the reporter includes it.
    public var envelopeTo: String?
    /// What was done with the message.
    public var disposition: DMARCAggregateReport.Disposition
    /// DMARC-aligned DKIM and SPF verdicts.
    public var dkimAligned: DMARCAggregateReport.AlignedResult
    public var spfAligned: DMARCAggregateReport.AlignedResult
    /// Every DKIM signature checked: d=, s=, result.
    public var dkim: [DMARCAggregateReport.DKIMAuthResult]
    /// SPF results: domain, scope (mfrom/helo), result.
    public var spf: [DMARCAggregateReport.SPFAuthResult]
    /// Why the disposition differs from the policy, when it does.
    public var policyOverride: DMARCAggregateReport.OverrideReason?

    public init(sourceIP: String, headerFrom: String, envelopeFrom: String?, envelopeTo: String? = nil,
                disposition: DMARCAggregateReport.Disposition, dkimAligned: DMARCAggregateReport.AlignedResult,
                spfAligned: DMARCAggregateReport.AlignedResult, dkim: [DMARCAggregateReport.DKIMAuthResult] = [],
                spf: [DMARCAggregateReport.SPFAuthResult] = [], policyOverride: DMARCAggregateReport.OverrideReason? = nil) {
        self.sourceIP = sourceIP
        self.headerFrom = headerFrom
        self.envelopeFrom = envelopeFrom
        self.envelopeTo = envelopeTo
        self.disposition = disposition
        self.dkimAligned = dkimAligned
        self.spfAligned = spfAligned
        self.dkim = dkim
        self.spf = spf
        self.policyOverride = policyOverride
    }

    /// The row with the forms that must not split a record normalised: domains lower-cased (DNS names
    /// compare case-insensitively, RFC 4343), the address in one text form.
    var normalized: DMARCReportRow {
        var row = self
        row.sourceIP = DMARCAggregateReport.sourceIPText(sourceIP, .dmarcbis)
        row.headerFrom = headerFrom.lowercased()
        row.envelopeFrom = envelopeFrom?.lowercased()
        row.envelopeTo = envelopeTo?.lowercased()
        row.dkim = dkim.map { var d = $0; d.domain = d.domain.lowercased(); return d }
        row.spf = spf.map { var s = $0; s.domain = s.domain.lowercased(); return s }
        return row
    }
}

/// Turns a day's evaluations for one policy domain into an aggregate report.
public struct DMARCReportBuilder: Sendable {
    /// The reporting organisation (`org_name`), e.g. the receiver's domain.
    public var orgName: String
    /// Where the Domain Owner can reach the reporter (`email`).
    public var email: String
    public var extraContactInfo: String?
    /// DMARCbis `generator`.
    public var generator: String?

    public init(orgName: String, email: String, extraContactInfo: String? = nil, generator: String? = "Facteur") {
        self.orgName = orgName
        self.email = email
        self.extraContactInfo = extraContactInfo
        self.generator = generator
    }

    /// The UTC day containing `epochSeconds`: 00:00:00 to 23:59:59 (RFC 7489 §7.2's daily period).
    public static func utcDay(containing epochSeconds: Int64) -> DMARCAggregateReport.DateRange {
        let day: Int64 = 86_400
        // Clamped far beyond any real clock so the arithmetic below cannot overflow.
        let t = min(max(epochSeconds, -(1 << 60)), 1 << 60)
        var begin = (t / day) * day
        if t < 0, t % day != 0 { begin -= day }  // floor for times before 1970
        return .init(begin: begin, end: begin + day - 1)
    }

    /// One report: rows that are identical once normalised become one record whose count is how many
    /// there were; records keep the order their first row came in.
    public func report(policy: DMARCPublishedPolicy, rows: [DMARCReportRow],
                       dateRange: DMARCAggregateReport.DateRange, reportID: String,
                       errors: [String] = []) -> DMARCAggregateReport {
        var index: [DMARCReportRow: Int] = [:]
        var records: [DMARCAggregateReport.Record] = []
        for raw in rows {
            let row = raw.normalized
            if let i = index[row] {
                let (sum, overflow) = records[i].count.addingReportingOverflow(1)
                records[i].count = overflow ? Int.max : sum
                continue
            }
            index[row] = records.count
            records.append(DMARCAggregateReport.Record(
                sourceIP: row.sourceIP, count: 1,
                policyEvaluated: .init(disposition: row.disposition, dkim: row.dkimAligned, spf: row.spfAligned,
                                       reasons: row.policyOverride.map { [$0] } ?? []),
                identifiers: .init(headerFrom: row.headerFrom, envelopeFrom: row.envelopeFrom, envelopeTo: row.envelopeTo),
                authResults: .init(dkim: row.dkim, spf: row.spf)))
        }
        return DMARCAggregateReport(
            version: "1.0", namespace: nil,
            metadata: .init(orgName: orgName, email: email, extraContactInfo: extraContactInfo, reportID: reportID,
                            dateRange: dateRange, errors: errors, generator: generator),
            policyPublished: policy, records: records)
    }
}
