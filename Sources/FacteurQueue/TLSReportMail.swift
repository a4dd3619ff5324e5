// How a TLS report travels (RFC 8460 §5): by mail to a `mailto:` rua (§5.3: multipart/report;
// report-type="tlsrpt", the Subject and TLS-Report-* header fields, an application/tlsrpt+gzip
// attachment with the §5.3 file name), or by HTTPS POST to an `https:` rua (§5.4). The caller
// compresses (gzip, RFC 1952) and passes the bytes in.

import AsyncHTTPClient
import FacteurMIME
import Foundation
import NIOCore

public enum TLSReportMail {
    /// §5.3: `sender "!" policy-domain "!" begin-timestamp "!" end-timestamp [ "!" unique-id ] "." extension`,
    /// timestamps in seconds since the epoch, extension "json.gz" for the compressed report.
    public static func filename(report: TLSReport, submitter: String, policyDomain: String) -> String {
        let begin = Int64(report.dateRange.start.timeIntervalSince1970.rounded(.down))
        let end = Int64(report.dateRange.end.timeIntervalSince1970.rounded(.down))
        return "\(HeaderText.tokenSafe(submitter))!\(HeaderText.tokenSafe(policyDomain))!\(begin)!\(end).json.gz"
    }

    /// §5.3: `Report Domain: <policy domain> Submitter: <submitter> Report-ID: <report-id>`.
    public static func subject(report: TLSReport, submitter: String, policyDomain: String) -> String {
        "Report Domain: \(HeaderText.headerSafe(policyDomain)) Submitter: \(HeaderText.headerSafe(submitter)) Report-ID: <\(HeaderText.headerSafe(report.reportID))>"
    }

    /// The whole message (CRLF line ends), ready for the outbound queue.
    public static func compose(report: TLSReport, gzipped: [UInt8], submitter: String, policyDomain: String,
                               from: String, to: [String], date: Date) -> [UInt8] {
        let file = filename(report: report, submitter: submitter, policyDomain: policyDomain)
        // "=" and "_" are outside base64's alphabet, and the text part is ours: the boundary cannot occur.
        let boundary = "=_facteur_tlsrpt_\(gzipped.count)_\(Int64(date.timeIntervalSince1970.rounded(.down)))"
        let totals = report.totals
        var lines: [String] = []
        lines.append("From: \(HeaderText.headerSafe(from))")
        lines.append("To: \(to.map(HeaderText.headerSafe).joined(separator: ", "))")
        lines.append(contentsOf: HeaderText.fold("Subject: " + subject(report: report, submitter: submitter, policyDomain: policyDomain)))
        lines.append("Date: \(DSNBuilder.date(date))")
        lines.append("Message-ID: <\(HeaderText.headerSafe(report.reportID).replacingOccurrences(of: "<", with: "").replacingOccurrences(of: ">", with: ""))>")
        // §5.3: the two header fields that let a receiver sort reports without opening them.
        lines.append("TLS-Report-Domain: \(HeaderText.headerSafe(policyDomain))")
        lines.append("TLS-Report-Submitter: \(HeaderText.headerSafe(submitter))")
        lines.append("MIME-Version: 1.0")
        lines.append("Content-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"\(boundary)\"")
        lines.append("")
        lines.append("This is a multi-part message in MIME format.")
        lines.append("")
        lines.append("--\(boundary)")
        lines.append("Content-Type: text/plain; charset=us-ascii")
        lines.append("Content-Transfer-Encoding: 7bit")
        lines.append("")
        lines.append("This is an SMTP TLS report (RFC 8460) for \(HeaderText.asciiSafe(policyDomain)) from \(HeaderText.asciiSafe(submitter)),")
        lines.append("covering \(RFC3339.format(report.dateRange.start)) to \(RFC3339.format(report.dateRange.end)):")
        lines.append("\(totals.successful) successful and \(totals.failed) failed TLS session(s).")
        lines.append("")
        lines.append("--\(boundary)")
        lines.append("Content-Type: application/tlsrpt+gzip; name=\"\(file)\"")
        lines.append("Content-Transfer-Encoding: base64")
        lines.append("Content-Disposition: attachment; filename=\"\(file)\"")
        lines.append("")
        let encoded = Data(gzipped).base64EncodedString()
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




}

/// RFC 8460 §5.4: POST of the compressed report to an `https:` rua.
public enum TLSReportUpload {
    public enum Failure: Error, Equatable, CustomStringConvertible {
        case notHTTPS
        case status(UInt)
        case transport(String)
        public var description: String {
            switch self {
            case .notHTTPS: "not an https URI"
            case .status(let code): "HTTP status \(code)"
            case .transport(let message): message
            }
        }
    }

    /// Posts `gzipped` with Content-Type application/tlsrpt+gzip; any 2xx is success (§5.4).
    /// `allowHTTP` exists for tests against a plain local server only.
    public static func post(_ gzipped: [UInt8], to url: String, client: HTTPClient = .shared,
                            timeout: TimeAmount = .seconds(30), allowHTTP: Bool = false) async throws(Failure) {
        let lower = url.lowercased()
        guard lower.hasPrefix("https://") || (allowHTTP && lower.hasPrefix("http://")) else { throw .notHTTPS }
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/tlsrpt+gzip")
        request.headers.add(name: "User-Agent", value: "Facteur TLS-RPT")
        request.body = .bytes(ByteBuffer(bytes: gzipped))
        let status: UInt
        do {
            let response = try await client.execute(request, timeout: timeout)
            status = response.status.code
            // The body is not ours to read beyond a little: drain a bounded amount so the connection is reusable.
            _ = try? await response.body.collect(upTo: 64 * 1024)
        } catch {
            throw .transport("\(error)")
        }
        guard (200..<300).contains(status) else { throw .status(status) }
    }
}
