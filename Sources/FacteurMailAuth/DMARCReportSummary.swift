// A per-source summary of received DMARC aggregate reports (RFC 7489 §7.2) for `facteur dmarc report`:
// which IPs send mail as the domain, how much of it is DMARC-aligned, and what receivers did with it.

/// Totals per source IP across any number of reports, rendered as a plain text table.
public struct DMARCReportSummary: Sendable, Equatable {
    public struct Source: Sendable, Equatable {
        public var sourceIP: String
        public var messages: Int
        /// Messages whose DMARC-aligned DKIM result was pass.
        public var dkimAlignedPass: Int
        /// Messages whose DMARC-aligned SPF result was pass.
        public var spfAlignedPass: Int
        /// Messages per disposition applied (a disposition missing from the report counts as none).
        public var dispositions: [DMARCAggregateReport.Disposition: Int]
        /// RFC5322.From domains seen from this source, sorted.
        public var headerFromDomains: [String]

        public init(sourceIP: String, messages: Int = 0, dkimAlignedPass: Int = 0, spfAlignedPass: Int = 0,
                    dispositions: [DMARCAggregateReport.Disposition: Int] = [:], headerFromDomains: [String] = []) {
            self.sourceIP = sourceIP
            self.messages = messages
            self.dkimAlignedPass = dkimAlignedPass
            self.spfAlignedPass = spfAlignedPass
            self.dispositions = dispositions
            self.headerFromDomains = headerFromDomains
        }
    }

    /// Sources, most messages first (then by address, for a stable order).
    public var sources: [Source]
    /// How many reports went in.
    public var reportCount: Int

    /// Most header_from domains listed per source (the rest are counted as "+N").
    static let maxDomainsPerSource = 1_000

    public init(reports: [DMARCAggregateReport]) {
        var bySource: [String: Source] = [:]
        var domains: [String: Set<String>] = [:]
        for report in reports {
            for record in report.records {
                let ip = DMARCAggregateReport.sourceIPText(record.sourceIP, .dmarcbis)
                var source = bySource[ip] ?? Source(sourceIP: ip)
                let n = max(0, record.count)
                source.messages = Self.add(source.messages, n)
                if record.policyEvaluated.dkim == .pass { source.dkimAlignedPass = Self.add(source.dkimAlignedPass, n) }
                if record.policyEvaluated.spf == .pass { source.spfAlignedPass = Self.add(source.spfAlignedPass, n) }
                let disposition = record.policyEvaluated.disposition ?? .none
                source.dispositions[disposition] = Self.add(source.dispositions[disposition] ?? 0, n)
                bySource[ip] = source
                let domain = record.identifiers.headerFrom.lowercased()
                if !domain.isEmpty, (domains[ip]?.count ?? 0) < Self.maxDomainsPerSource {
                    domains[ip, default: []].insert(domain)
                }
            }
        }
        sources = bySource.values.map { source in
            var s = source
            s.headerFromDomains = (domains[source.sourceIP] ?? []).sorted()
            return s
        }.sorted { ($0.messages, $1.sourceIP) > ($1.messages, $0.sourceIP) }
        reportCount = reports.count
    }

    private static func add(_ a: Int, _ b: Int) -> Int {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? Int.max : sum
    }

    /// The summary as a text table, columns aligned, one line per source, then a total line.
    public func renderTable() -> String {
        let header = ["SOURCE IP", "MESSAGES", "DKIM PASS", "SPF PASS", "NONE", "QUARANTINE", "REJECT", "HEADER FROM"]
        var rows: [[String]] = [header]
        var total = Source(sourceIP: "TOTAL")
        for s in sources {
            // "pass" (DMARCbis: passed, no action) is shown with none: in both, nothing was done.
            let none = Self.add(s.dispositions[.none] ?? 0, s.dispositions[.pass] ?? 0)
            rows.append([s.sourceIP, String(s.messages), String(s.dkimAlignedPass), String(s.spfAlignedPass),
                         String(none), String(s.dispositions[.quarantine] ?? 0), String(s.dispositions[.reject] ?? 0),
                         s.headerFromDomains.joined(separator: ",")])
            total.messages = Self.add(total.messages, s.messages)
            total.dkimAlignedPass = Self.add(total.dkimAlignedPass, s.dkimAlignedPass)
            total.spfAlignedPass = Self.add(total.spfAlignedPass, s.spfAlignedPass)
            for (k, v) in s.dispositions { total.dispositions[k] = Self.add(total.dispositions[k] ?? 0, v) }
        }
        let totalNone = Self.add(total.dispositions[.none] ?? 0, total.dispositions[.pass] ?? 0)
        rows.append(["TOTAL", String(total.messages), String(total.dkimAlignedPass), String(total.spfAlignedPass),
                     String(totalNone), String(total.dispositions[.quarantine] ?? 0),
                     String(total.dispositions[.reject] ?? 0), "\(reportCount) report\(reportCount == 1 ? "" : "s")"])

        var widths = [Int](repeating: 0, count: header.count)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        var out = ""
        for row in rows {
            var line = ""
            for (i, cell) in row.enumerated() {
                let last = i == row.count - 1
                // Numbers right-aligned, text left-aligned; no padding after the last column.
                let numeric = (1...6).contains(i)
                let pad = String(repeating: " ", count: widths[i] - cell.count)
                line += last ? cell : (numeric ? pad + cell : cell + pad)
                if !last { line += "  " }
            }
            out += line + "\n"
        }
        return out
    }
}
