// The mail that carries a DMARC aggregate report to a `mailto:` rua address (RFC 7489 §7.2.1.1,
// RFC 9990 §5.1): multipart/mixed (RFC 2046 §5.1.3) with a short text/plain part and the gzip-compressed
// XML as an application/gzip attachment (RFC 6713), base64 in 76-character lines (RFC 2045 §6.8), CRLF
// line ends, the RFC's Subject and file-name conventions.

import FacteurMIME
import Foundation

public enum DMARCReportMail {
    /// RFC 7489 §7.2.1.1: `receiver "!" policy-domain "!" begin "!" end [ "!" unique-id ] ".xml.gz"`.
    /// unique-id is a MIME token (RFC 2045 §5.1); characters outside it (and "!", which would make the
    /// name ambiguous) are dropped from the report ID.
    public static func filename(report: DMARCAggregateReport, reporterDomain: String) -> String {
        let range = report.metadata.dateRange
        var name = "\(HeaderText.tokenSafe(reporterDomain))!\(HeaderText.tokenSafe(report.policyPublished.domain))!\(range.begin)!\(range.end)"
        let unique = HeaderText.tokenSafe(report.metadata.reportID)
        if !unique.isEmpty { name += "!" + unique }
        return name + ".xml.gz"
    }

    /// RFC 7489 §7.2.1.1 subject: `Report Domain: <policy domain> Submitter: <receiver> Report-ID: <msg-id>`.
    public static func subject(report: DMARCAggregateReport, reporterDomain: String) -> String {
        "Report Domain: \(HeaderText.headerSafe(report.policyPublished.domain)) Submitter: \(HeaderText.headerSafe(reporterDomain)) "
            + "Report-ID: <\(HeaderText.headerSafe(report.metadata.reportID))>"
    }

    /// The complete message, ready for the outbound queue. `format` picks the XML schema (RFC 7489 by
    /// default: what nearly every report consumer reads today).
    public static func compose(report: DMARCAggregateReport, reporterDomain: String, from: String, to: [String],
                               date: Date, messageID: String,
                               format: DMARCAggregateReport.Format = .rfc7489) -> [UInt8] {
        let file = filename(report: report, reporterDomain: reporterDomain)
        let gz = DMARCReportCompression.gzip(Array(report.xml(format: format).utf8))
        // The boundary cannot occur in base64 or in the ASCII text part: "=" and "_" are outside base64's
        // alphabet, and the text part is built here.
        let boundary = "=_facteur_dmarc_\(DMARCReportCompression.crc32(gz))_\(gz.count)"
        let range = report.metadata.dateRange

        var lines: [String] = []
        lines.append("From: \(HeaderText.headerSafe(from))")
        lines.append("To: \(to.map(HeaderText.headerSafe).joined(separator: ", "))")
        lines.append(contentsOf: HeaderText.fold("Subject: " + subject(report: report, reporterDomain: reporterDomain)))
        let seconds = date.timeIntervalSince1970
        let epoch = seconds.isFinite ? Int64(min(max(seconds, -1e15), 1e15).rounded(.down)) : 0
        lines.append("Date: \(rfc5322Date(epoch))")
        let id = HeaderText.headerSafe(messageID)
        lines.append("Message-ID: " + (id.hasPrefix("<") ? id : "<\(id)>"))
        lines.append("MIME-Version: 1.0")
        lines.append("Content-Type: multipart/mixed; boundary=\"\(boundary)\"")
        lines.append("")
        lines.append("This is a multi-part message in MIME format.")
        lines.append("")
        lines.append("--\(boundary)")
        lines.append("Content-Type: text/plain; charset=us-ascii")
        lines.append("Content-Transfer-Encoding: 7bit")
        lines.append("")
        lines.append("This is a DMARC aggregate report (RFC 7489) for \(HeaderText.asciiSafe(report.policyPublished.domain))")
        lines.append("from \(HeaderText.asciiSafe(reporterDomain)), covering \(rfc5322Date(range.begin)) to \(rfc5322Date(range.end)).")
        lines.append("Report-ID: \(HeaderText.asciiSafe(report.metadata.reportID)); \(report.records.count) records, \(report.messageCount) messages.")
        lines.append("")
        lines.append("--\(boundary)")
        lines.append("Content-Type: application/gzip; name=\"\(file)\"")
        lines.append("Content-Transfer-Encoding: base64")
        lines.append("Content-Disposition: attachment; filename=\"\(file)\"")
        lines.append("")
        let encoded = Data(gz).base64EncodedString()
        var start = encoded.startIndex
        while start < encoded.endIndex {
            let stop = encoded.index(start, offsetBy: 76, limitedBy: encoded.endIndex) ?? encoded.endIndex
            lines.append(String(encoded[start..<stop]))
            start = stop
        }
        lines.append("")
        lines.append("--\(boundary)--")
        lines.append("")
        return Array(lines.joined(separator: "\r\n").utf8)
    }

    /// RFC 5322 §3.3 date-time in UTC: `Fri, 27 Nov 2026 14:00:00 +0000`.
    static func rfc5322Date(_ epochSeconds: Int64) -> String {
        let day: Int64 = 86_400
        var days = epochSeconds / day
        var seconds = epochSeconds % day
        if seconds < 0 { seconds += day; days -= 1 }
        // Civil date from days since 1970-01-01 (Howard Hinnant's days_from_civil inverse).
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        let weekdays = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]  // 1970-01-01 was a Thursday
        let wd = Int(((days % 7) + 7) % 7)
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(weekdays[wd]), \(d) \(months[Int(m - 1)]) \(y) \(two(seconds / 3600)):\(two(seconds % 3600 / 60)):\(two(seconds % 60)) +0000"
    }




}
