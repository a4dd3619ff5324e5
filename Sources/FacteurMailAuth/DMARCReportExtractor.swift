// Finding DMARC aggregate reports in what arrives at a rua mailbox (RFC 7489 §7.2.1.1: a MIME message
// with the report as an application/gzip attachment; in practice also application/zip,
// application/octet-stream and bare XML): walks the MIME structure with FacteurMIME, undoes the
// transfer encoding (RFC 2045 §6), the compression, and parses each report.

import FacteurMIME

/// Extracts and parses aggregate reports from attachments and whole messages.
public enum DMARCReportExtractor {
    /// Reports in one attachment: raw XML, gzip or zip (recognised by content first, then by the
    /// file name), every `.xml` file of a zip. Throws the first error when nothing could be read.
    public static func reports(fromAttachment bytes: [UInt8], filename: String? = nil) throws(DMARCReportError) -> [DMARCAggregateReport] {
        guard bytes.count <= DMARCReportLimits.maxInputBytes else {
            throw .tooLarge(limit: DMARCReportLimits.maxInputBytes)
        }
        let name = (filename ?? "").lowercased()
        // The content decides first (reporters mislabel: ".xml.gz" that is plain XML, zips named .gz);
        // the file name only when the content says nothing.
        if DMARCReportCompression.isGzip(bytes) {
            return [try DMARCAggregateReport.parse(xml: try DMARCReportCompression.gunzip(bytes))]
        }
        if DMARCReportCompression.isZip(bytes) {
            return try reports(fromZip: bytes)
        }
        if !looksLikeXML(bytes) {
            if name.hasSuffix(".gz") || name.hasSuffix(".gzip") {
                return [try DMARCAggregateReport.parse(xml: try DMARCReportCompression.gunzip(bytes))]
            }
            if name.hasSuffix(".zip") { return try reports(fromZip: bytes) }
        }
        return [try DMARCAggregateReport.parse(xml: bytes)]
    }

    /// Whether the first non-blank byte is "<" or a byte-order mark.
    private static func looksLikeXML(_ bytes: [UInt8]) -> Bool {
        guard let first = bytes.first(where: { $0 != 0x20 && $0 != 0x09 && $0 != 0x0D && $0 != 0x0A }) else { return false }
        return first == UInt8(ascii: "<") || first == 0xEF || first == 0xFE || first == 0xFF || first == 0x00
    }

    /// Every `.xml` file of a zip (every file when none is named .xml); a gzip inside is opened too.
    private static func reports(fromZip bytes: [UInt8]) throws(DMARCReportError) -> [DMARCAggregateReport] {
        let entries = try DMARCReportCompression.unzip(bytes)
        let xmlEntries = entries.filter { $0.name.lowercased().hasSuffix(".xml") }
        var reports: [DMARCAggregateReport] = []
        var firstError: DMARCReportError?
        for entry in (xmlEntries.isEmpty ? entries : xmlEntries) {
            do throws(DMARCReportError) {
                // A zip inside holds a gzip now and then: one more level, no further.
                if DMARCReportCompression.isGzip(entry.bytes) {
                    reports.append(try DMARCAggregateReport.parse(xml: try DMARCReportCompression.gunzip(entry.bytes)))
                } else {
                    reports.append(try DMARCAggregateReport.parse(xml: entry.bytes))
                }
            } catch {
                if firstError == nil { firstError = error }
            }
            if reports.count >= DMARCReportLimits.maxReportsPerMessage { break }
        }
        if reports.isEmpty { throw firstError ?? .noReportFound }
        return reports
    }

    /// Reports attached to one message (RFC 5322 + MIME). Parts are candidates when their media type
    /// or file name says XML, gzip or zip (application/octet-stream with such a name included). Throws
    /// `.noReportFound` when there is no candidate, or the first candidate's error when none parses.
    public static func reports(fromMessage bytes: [UInt8]) throws(DMARCReportError) -> [DMARCAggregateReport] {
        guard bytes.count <= DMARCReportLimits.maxInputBytes else {
            throw .tooLarge(limit: DMARCReportLimits.maxInputBytes)
        }
        let summary = MessageSummary(parsing: bytes)
        var candidates: [BodyPart] = []
        collect(summary.body, into: &candidates)

        var found: [DMARCAggregateReport] = []
        var firstError: DMARCReportError?
        for part in candidates {
            guard part.bodyOffset >= 0, part.bodyLength >= 0, part.bodyOffset <= bytes.count,
                  part.bodyLength <= bytes.count - part.bodyOffset else { continue }
            let encoded = bytes[part.bodyOffset..<(part.bodyOffset + part.bodyLength)]
            let decoded = TransferDecoding.decode(encoded, encoding: part.encoding)
            do throws(DMARCReportError) {
                found += try reports(fromAttachment: decoded, filename: part.fileName)
            } catch {
                if firstError == nil { firstError = error }
            }
            if found.count >= DMARCReportLimits.maxReportsPerMessage {
                return Array(found.prefix(DMARCReportLimits.maxReportsPerMessage))
            }
        }
        if found.isEmpty { throw firstError ?? .noReportFound }
        return found
    }

    /// Leaf parts that may hold a report, depth-first in message order. FacteurMIME already caps the
    /// tree (MIMELimits.maxNestingDepth, maxParts), so this recursion is bounded.
    private static func collect(_ part: BodyPart, into candidates: inout [BodyPart]) {
        if !part.children.isEmpty {
            for child in part.children { collect(child, into: &candidates) }
            return
        }
        if isCandidate(part) { candidates.append(part) }
    }

    private static let reportTypes: Set<String> = [
        "application/gzip", "application/x-gzip", "application/gzip-compressed", "application/x-gzip-compressed",
        "application/zip", "application/x-zip", "application/x-zip-compressed",
        "application/xml", "text/xml",
    ]

    private static func isCandidate(_ part: BodyPart) -> Bool {
        if reportTypes.contains(part.mimeType) { return true }
        guard let name = part.fileName?.lowercased() else { return false }
        return name.hasSuffix(".xml") || name.hasSuffix(".gz") || name.hasSuffix(".zip")
    }
}
