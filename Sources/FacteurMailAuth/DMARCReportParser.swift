// DMARC aggregate report XML parser (RFC 7489 Appendix C and RFC 9990 Appendix A), on FoundationXML's
// SAX XMLParser (libxml2). DMARCReportLenient the way receivers of real reports must be: <version> may be missing,
// elements may come in any order or carry a namespace prefix, enumerated values may be empty, padded or
// upper-cased, common aliases are mapped ("hardfail", "unknown", "error"). Bounded: input size, records,
// nesting depth and text length are capped (DMARCReportLimits), and documents with a DTD are refused
// outright, so no entity expansion can amplify a small attachment.

import FacteurMIME
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// Hard limits for reading reports from untrusted mail, in one place.
public enum DMARCReportLimits {
    /// Largest XML document parsed (and largest decompressed attachment). The 2286-record sample is 0.9 MB.
    public static let maxXMLBytes = 32 * 1024 * 1024
    /// Largest compressed attachment or message looked at.
    public static let maxInputBytes = 32 * 1024 * 1024
    /// Most records read from one report.
    public static let maxRecords = 100_000
    /// Deepest element nesting accepted (the schema needs 5).
    public static let maxDepth = 32
    /// Longest text of one element.
    public static let maxTextBytes = 64 * 1024
    /// Most DKIM or SPF results, override reasons or errors kept per element that repeats them.
    public static let maxRepeated = 256
    /// Most entries looked at in one zip archive.
    public static let maxZipEntries = 64
    /// Most reports taken from one message.
    public static let maxReportsPerMessage = 16
}

/// Why a report could not be read.
public enum DMARCReportError: Error, Equatable, CustomStringConvertible {
    /// The input is larger than the named limit (bytes).
    case tooLarge(limit: Int)
    /// The XML is not well-formed (libxml2's message, with line and column).
    case malformedXML(String)
    /// The document is XML but its root is not `<feedback>`.
    case notAggregateReport(root: String)
    /// The document declares a DTD, which a report never needs (entity expansion guard).
    case documentTypeDeclaration
    /// More records than DMARCReportLimits.maxRecords.
    case tooManyRecords(limit: Int)
    /// Nesting deeper than DMARCReportLimits.maxDepth.
    case tooDeep(limit: Int)
    /// One element's text exceeds DMARCReportLimits.maxTextBytes.
    case textTooLong(element: String)
    /// gzip or deflate data is corrupt or truncated.
    case corruptCompressedData(String)
    /// The zip archive is damaged or uses something we do not read.
    case badZip(String)
    /// Nothing in the attachment or message looks like an aggregate report.
    case noReportFound

    public var description: String {
        switch self {
        case .tooLarge(let limit): return "DMARC report larger than \(limit) bytes"
        case .malformedXML(let detail): return "DMARC report is not well-formed XML: \(detail)"
        case .notAggregateReport(let root): return "not a DMARC aggregate report: root element <\(root)>, expected <feedback>"
        case .documentTypeDeclaration: return "DMARC report declares a DTD (<!DOCTYPE>); refused"
        case .tooManyRecords(let limit): return "DMARC report has more than \(limit) records"
        case .tooDeep(let limit): return "DMARC report nests elements deeper than \(limit)"
        case .textTooLong(let element): return "DMARC report element <\(element)> has too much text"
        case .corruptCompressedData(let detail): return "compressed DMARC report is damaged: \(detail)"
        case .badZip(let detail): return "zip archive unreadable: \(detail)"
        case .noReportFound: return "no DMARC aggregate report found"
        }
    }
}

extension DMARCAggregateReport {
    /// Parses one aggregate report document (either format; any encoding libxml2 knows).
    public static func parse(xml input: [UInt8]) throws(DMARCReportError) -> DMARCAggregateReport {
        guard input.count <= DMARCReportLimits.maxXMLBytes else {
            throw .tooLarge(limit: DMARCReportLimits.maxXMLBytes)
        }
        let bytes = try utf8Document(input)
        guard bytes.contains(where: { $0 > 0x20 }) else { throw .malformedXML("document is empty") }
        if containsDoctype(bytes) { throw .documentTypeDeclaration }

        let handler = DMARCReportSAXHandler()
        let parser = XMLParser(data: Data(bytes))
        parser.shouldProcessNamespaces = false
        parser.shouldReportNamespacePrefixes = false
        parser.shouldResolveExternalEntities = false
        parser.delegate = handler
        let ok = parser.parse()
        if let error = handler.failure { throw error }
        // A report whose <feedback> element is complete is kept even when libxml2 stops later, or when
        // it sits inside junk (real reports carry a stray unclosed <xs:schema> around it).
        if handler.feedbackClosed, var report = handler.report() {
            report.namespace = feedbackNamespace(bytes)
            return report
        }
        if !ok {
            let detail = parser.parserError.map { error -> String in
                let ns = error as NSError
                let message = (ns.userInfo[NSLocalizedDescriptionKey] as? String) ?? "\(ns.domain) error \(ns.code)"
                return "\(message) (line \(parser.lineNumber), column \(parser.columnNumber))"
            } ?? "parse failed at line \(parser.lineNumber), column \(parser.columnNumber)"
            throw .malformedXML(detail)
        }
        if !handler.feedbackSeen { throw .notAggregateReport(root: handler.rootName ?? "") }
        throw .malformedXML("document ends before </feedback>")
    }

    /// The document as valid UTF-8 without its XML declaration, which is what libxml2 is then given.
    /// FoundationXML force-unwraps every element name as UTF-8, and libxml2 falls back to Latin-1 on
    /// invalid UTF-8 and passes such names through: a single bad byte in a tag would crash the process.
    /// So the encoding is settled here: a BOM (UTF-8, UTF-16), else the declaration's `encoding`
    /// (XML 1.0 §4.3.3; any charset FacteurMIME decodes), else UTF-8, which must then be valid.
    static func utf8Document(_ input: [UInt8]) throws(DMARCReportError) -> [UInt8] {
        var text: String
        if input.starts(with: [0xEF, 0xBB, 0xBF]) {
            guard let s = String(validating: input.dropFirst(3), as: UTF8.self) else { throw .malformedXML("invalid UTF-8") }
            text = s
        } else if input.starts(with: [0xFF, 0xFE]) || input.starts(with: [0xFE, 0xFF])
                    || input.starts(with: [0x3C, 0x00, 0x3F, 0x00]) || input.starts(with: [0x00, 0x3C, 0x00, 0x3F]) {
            let bigEndian = input[0] == 0xFE || input[0] == 0x00
            let body = input.starts(with: [0xFF, 0xFE]) || input.starts(with: [0xFE, 0xFF]) ? input.dropFirst(2) : input[...]
            guard body.count % 2 == 0 else { throw .malformedXML("odd number of bytes in UTF-16") }
            var units: [UInt16] = []
            units.reserveCapacity(body.count / 2)
            var i = body.startIndex
            while i < body.endIndex {
                let (hi, lo) = bigEndian ? (body[i], body[i + 1]) : (body[i + 1], body[i])
                units.append(UInt16(hi) << 8 | UInt16(lo))
                i += 2
            }
            guard let s = String(validating: units, as: UTF16.self) else { throw .malformedXML("invalid UTF-16") }
            text = s
        } else if let declared = declaredEncoding(input), !["utf-8", "utf8"].contains(declared.lowercased()) {
            guard let s = Charset.decode(input, charset: declared) else {
                throw .malformedXML("unsupported encoding \(declared)")
            }
            text = s
        } else {
            guard let s = String(validating: input, as: UTF8.self) else { throw .malformedXML("invalid UTF-8") }
            text = s
        }
        // Drop leading whitespace and the declaration (XML 1.0 §2.8), so libxml2 reads UTF-8.
        var scalars = Substring(text).unicodeScalars.drop { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
        if String(String.UnicodeScalarView(scalars.prefix(5))) == "<?xml",
           let end = String(scalars).range(of: "?>") {
            let rest = String(scalars)[end.upperBound...]
            scalars = Substring(rest).unicodeScalars[...]
        }
        return Array(String(String.UnicodeScalarView(scalars)).utf8)
    }

    /// The namespace of the first <feedback> start tag: its default namespace, or the one its prefix is
    /// bound to on that tag. Read from the text because FoundationXML on Linux reports every namespace
    /// declaration under the key "xmlns" when namespace processing is off.
    static func feedbackNamespace(_ doc: [UInt8]) -> String? {
        func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0D || b == 0x0A }
        var i = 0
        while i < doc.count {
            guard doc[i] == UInt8(ascii: "<") else { i += 1; continue }
            var j = i + 1
            while j < doc.count, !isSpace(doc[j]), doc[j] != UInt8(ascii: ">"), doc[j] != UInt8(ascii: "/") { j += 1 }
            let name = String(decoding: doc[(i + 1)..<j], as: UTF8.self)
            let parts = name.split(separator: ":", maxSplits: 1)
            guard parts.last == "feedback" else { i = j; continue }
            let key = parts.count == 2 ? "xmlns:" + parts[0] : "xmlns"
            var end = j
            while end < doc.count, doc[end] != UInt8(ascii: ">") { end += 1 }
            return attribute(key, in: String(decoding: doc[j..<end], as: UTF8.self))
        }
        return nil
    }

    /// The value of attribute `key` in the text of a start tag (after its name).
    static func attribute(_ key: String, in tag: String) -> String? {
        var search = tag[...]
        while let found = search.range(of: key) {
            let before = found.lowerBound == tag.startIndex ? " " : tag[tag.index(before: found.lowerBound)]
            var rest = tag[found.upperBound...].drop { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r\n" || $0 == "\r" }
            search = tag[found.upperBound...]
            guard before.isWhitespace, rest.first == "=" else { continue }
            rest = rest.dropFirst().drop { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r\n" || $0 == "\r" }
            guard let quote = rest.first, quote == "\"" || quote == "'" else { return nil }
            rest = rest.dropFirst()
            guard let close = rest.firstIndex(of: quote) else { return nil }
            return String(rest[..<close])
        }
        return nil
    }

    /// The `encoding` pseudo-attribute of an ASCII-compatible XML declaration, if any.
    static func declaredEncoding(_ input: [UInt8]) -> String? {
        let head = String(decoding: input.prefix(256), as: UTF8.self)
        guard let start = head.range(of: "<?xml"), let end = head.range(of: "?>", range: start.upperBound..<head.endIndex),
              let key = head.range(of: "encoding", range: start.upperBound..<end.lowerBound) else { return nil }
        var rest = head[key.upperBound..<end.lowerBound].drop { $0 == " " || $0 == "=" || $0 == "\t" }
        guard let quote = rest.first, quote == "\"" || quote == "'" else { return nil }
        rest = rest.dropFirst()
        guard let close = rest.firstIndex(of: quote) else { return nil }
        let name = String(rest[..<close])
        return name.isEmpty ? nil : name
    }

    /// Whether `<!DOCTYPE` occurs (ASCII case-insensitively) anywhere. UTF-16 documents are not
    /// scanned this way; libxml2's own amplification limits cover them.
    static func containsDoctype(_ bytes: [UInt8]) -> Bool {
        let needle = Array("<!doctype".utf8)
        guard bytes.count >= needle.count else { return false }
        outer: for i in 0...(bytes.count - needle.count) where bytes[i] == UInt8(ascii: "<") {
            for j in 1..<needle.count {
                let b = bytes[i + j]
                let lower = (0x41...0x5A).contains(b) ? b | 0x20 : b
                if lower != needle[j] { continue outer }
            }
            return true
        }
        return false
    }
}

/// Collects the report from SAX events. Elements are matched by local name (prefix stripped) and by
/// their path below <feedback>, so order and namespace do not matter.
final class DMARCReportSAXHandler: NSObject, XMLParserDelegate {
    private(set) var failure: DMARCReportError?
    private(set) var rootName: String?
    private(set) var feedbackSeen = false
    private(set) var feedbackClosed = false
    /// Elements open around <feedback> (or instead of it).
    private var outside = 0
    private var namespace: String?
    private var stack: [String] = []
    private var text = ""
    private var textBytes = 0

    private var version: String?
    private var orgName = "", email = "", reportID = ""
    private var extraContactInfo: String?, generator: String?
    private var begin: Int64 = 0, end: Int64 = 0
    private var errors: [String] = []
    private var policy = DMARCAggregateReport.PolicyPublished(domain: "")
    private var records: [DMARCAggregateReport.Record] = []

    private var record: DMARCAggregateReport.Record?
    private var reason: DMARCAggregateReport.OverrideReason?
    private var dkim: DMARCAggregateReport.DKIMAuthResult?
    private var spf: DMARCAggregateReport.SPFAuthResult?

    func report() -> DMARCAggregateReport? {
        guard feedbackSeen else { return nil }
        return DMARCAggregateReport(
            version: version, namespace: namespace,
            metadata: .init(orgName: orgName, email: email, extraContactInfo: extraContactInfo, reportID: reportID,
                            dateRange: .init(begin: begin, end: end), errors: errors, generator: generator),
            policyPublished: policy, records: records)
    }

    private func fail(_ parser: XMLParser, _ error: DMARCReportError) {
        if failure == nil { failure = error }
        parser.abortParsing()
    }

    private static func localName(_ qualified: String) -> String {
        guard let colon = qualified.lastIndex(of: ":") else { return qualified }
        return String(qualified[qualified.index(after: colon)...])
    }

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                qualifiedName qName: String?, attributes attributeDict: [String: String] = [:]) {
        guard failure == nil else { return }
        let name = Self.localName(elementName)
        if rootName == nil { rootName = name }
        guard !feedbackClosed else { return }  // anything after </feedback> is ignored
        guard outside + stack.count < DMARCReportLimits.maxDepth else {
            return fail(parser, .tooDeep(limit: DMARCReportLimits.maxDepth))
        }
        if stack.isEmpty {
            guard name == "feedback" else {
                outside += 1
                return
            }
            feedbackSeen = true
            stack.append(name)
            return
        }
        stack.append(name)
        text = ""
        textBytes = 0
        let path = stack.dropFirst()
        switch Array(path) {
        case ["record"]:
            guard records.count < DMARCReportLimits.maxRecords else {
                return fail(parser, .tooManyRecords(limit: DMARCReportLimits.maxRecords))
            }
            record = DMARCAggregateReport.Record(
                sourceIP: "", count: 0,
                policyEvaluated: .init(disposition: nil, dkim: nil, spf: nil),
                identifiers: .init(headerFrom: ""), authResults: .init())
        case ["record", "row", "policy_evaluated", "reason"]:
            reason = DMARCAggregateReport.OverrideReason(type: .other)
            reasonTypeSeen = false
        case ["record", "auth_results", "dkim"]:
            dkim = DMARCAggregateReport.DKIMAuthResult(domain: "", result: nil)
        case ["record", "auth_results", "spf"]:
            spf = DMARCAggregateReport.SPFAuthResult(domain: "", scope: nil, result: nil)
        default:
            break
        }
    }

    private var reasonTypeSeen = false

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        guard failure == nil, !feedbackClosed, stack.count > 1 else { return }
        textBytes += string.utf8.count
        guard textBytes <= DMARCReportLimits.maxTextBytes else {
            return fail(parser, .textTooLong(element: stack.last ?? ""))
        }
        text += string
    }

    func parser(_ parser: XMLParser, foundCDATA CDATABlock: Data) {
        self.parser(parser, foundCharacters: String(decoding: CDATABlock, as: UTF8.self))
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?,
                qualifiedName qName: String?) {
        guard failure == nil, !feedbackClosed else { return }
        if stack.isEmpty {
            outside -= 1
            return
        }
        let value = text.trimmingXMLSpace()
        text = ""
        textBytes = 0
        let path = Array(stack.dropFirst())
        stack.removeLast()
        if path.isEmpty {
            feedbackClosed = true
            return
        }
        let limit = DMARCReportLimits.maxRepeated
        switch path {
        case ["version"], ["report_metadata", "version"]:
            version = value.isEmpty ? version : value
        case ["report_metadata", "org_name"]: orgName = value
        case ["report_metadata", "email"]: email = value
        case ["report_metadata", "extra_contact_info"]: extraContactInfo = value.isEmpty ? nil : value
        case ["report_metadata", "report_id"]: reportID = value
        case ["report_metadata", "generator"]: generator = value.isEmpty ? nil : value
        case ["report_metadata", "error"]:
            if !value.isEmpty, errors.count < limit { errors.append(value) }
        case ["report_metadata", "date_range", "begin"]: begin = DMARCReportLenient.int64(value)
        case ["report_metadata", "date_range", "end"]: end = DMARCReportLenient.int64(value)

        case ["policy_published", "domain"]: policy.domain = value
        case ["policy_published", "adkim"]: policy.adkim = DMARCReportLenient.alignment(value)
        case ["policy_published", "aspf"]: policy.aspf = DMARCReportLenient.alignment(value)
        case ["policy_published", "p"]: policy.p = DMARCReportLenient.policy(value)
        case ["policy_published", "sp"]: policy.sp = DMARCReportLenient.policy(value)
        case ["policy_published", "np"]: policy.np = DMARCReportLenient.policy(value)
        case ["policy_published", "pct"]:
            let pct = DMARCReportLenient.int64(value)
            policy.pct = value.isEmpty ? nil : Int(min(max(pct, 0), 100))
        case ["policy_published", "testing"]: policy.testing = DMARCReportLenient.testing(value)
        case ["policy_published", "fo"]: policy.fo = value.isEmpty ? nil : value
        case ["policy_published", "discovery_method"]:
            policy.discoveryMethod = DMARCAggregateReport.DiscoveryMethod(rawValue: value.lowercased())

        case ["record"]:
            if let record { records.append(record) }
            record = nil
        case ["record", "row", "source_ip"]: record?.sourceIP = value
        case ["record", "row", "count"]:
            record?.count = Int(clamping: max(0, DMARCReportLenient.int64(value)))
        case ["record", "row", "policy_evaluated", "disposition"]:
            record?.policyEvaluated.disposition = DMARCReportLenient.disposition(value)
        case ["record", "row", "policy_evaluated", "dkim"]:
            record?.policyEvaluated.dkim = DMARCReportLenient.aligned(value)
        case ["record", "row", "policy_evaluated", "spf"]:
            record?.policyEvaluated.spf = DMARCReportLenient.aligned(value)
        case ["record", "row", "policy_evaluated", "reason", "type"]:
            if let type = DMARCReportLenient.overrideType(value) {
                reason?.type = type
                reasonTypeSeen = true
            }
        case ["record", "row", "policy_evaluated", "reason", "comment"]:
            reason?.comment = value.isEmpty ? nil : value
        case ["record", "row", "policy_evaluated", "reason"]:
            // A reason whose type is empty and which has no comment says nothing (seen in the wild).
            if let reason, reasonTypeSeen || reason.comment != nil,
               (record?.policyEvaluated.reasons.count ?? limit) < limit {
                record?.policyEvaluated.reasons.append(reason)
            }
            reason = nil
        case ["record", "identifiers", "header_from"]: record?.identifiers.headerFrom = value
        case ["record", "identifiers", "envelope_from"]:
            record?.identifiers.envelopeFrom = value.isEmpty ? nil : value
        case ["record", "identifiers", "envelope_to"]:
            record?.identifiers.envelopeTo = value.isEmpty ? nil : value

        case ["record", "auth_results", "dkim", "domain"]: dkim?.domain = value
        case ["record", "auth_results", "dkim", "selector"]: dkim?.selector = value.isEmpty ? nil : value
        case ["record", "auth_results", "dkim", "result"]: dkim?.result = DMARCReportLenient.dkimResult(value)
        case ["record", "auth_results", "dkim", "human_result"]: dkim?.humanResult = value.isEmpty ? nil : value
        case ["record", "auth_results", "dkim"]:
            if let dkim, (record?.authResults.dkim.count ?? limit) < limit { record?.authResults.dkim.append(dkim) }
            dkim = nil
        case ["record", "auth_results", "spf", "domain"]: spf?.domain = value
        case ["record", "auth_results", "spf", "scope"]: spf?.scope = DMARCReportLenient.spfScope(value)
        case ["record", "auth_results", "spf", "result"]: spf?.result = DMARCReportLenient.spfResult(value)
        case ["record", "auth_results", "spf", "human_result"]: spf?.humanResult = value.isEmpty ? nil : value
        case ["record", "auth_results", "spf"]:
            if let spf, (record?.authResults.spf.count ?? limit) < limit { record?.authResults.spf.append(spf) }
            spf = nil
        default:
            break  // extensions and unknown elements are skipped
        }
    }
}

/// DMARCReportLenient readings of the schema's simple types: trimmed, case-insensitive, with the aliases real
/// reporters use. Empty or unknown values read as nil.
enum DMARCReportLenient {
    static func int64(_ text: String) -> Int64 {
        // Digits up to the first non-digit ("1538204542.0" and "1538204542 " occur); saturating.
        var value: Int64 = 0
        var negative = false
        var sawDigit = false
        for (i, byte) in text.utf8.enumerated() {
            if i == 0, byte == UInt8(ascii: "-") { negative = true; continue }
            if i == 0, byte == UInt8(ascii: "+") { continue }
            guard byte >= 0x30, byte <= 0x39 else { break }
            sawDigit = true
            let (times, o1) = value.multipliedReportingOverflow(by: 10)
            let (plus, o2) = times.addingReportingOverflow(Int64(byte - 0x30))
            if o1 || o2 { return negative ? Int64.min : Int64.max }
            value = plus
        }
        guard sawDigit else { return 0 }
        return negative ? -value : value
    }

    static func alignment(_ text: String) -> DMARCAggregateReport.Alignment? {
        switch text.lowercased() {
        case "r", "relaxed": return .relaxed
        case "s", "strict": return .strict
        default: return nil
        }
    }

    static func policy(_ text: String) -> DMARCAggregateReport.Policy? {
        DMARCAggregateReport.Policy(rawValue: text.lowercased())
    }

    static func testing(_ text: String) -> DMARCAggregateReport.Testing? {
        switch text.lowercased() {
        case "y", "yes", "true", "1": return .yes
        case "n", "no", "false", "0": return .no
        default: return nil
        }
    }

    static func disposition(_ text: String) -> DMARCAggregateReport.Disposition? {
        DMARCAggregateReport.Disposition(rawValue: text.lowercased())
    }

    static func aligned(_ text: String) -> DMARCAggregateReport.AlignedResult? {
        DMARCAggregateReport.AlignedResult(rawValue: text.lowercased())
    }

    static func overrideType(_ text: String) -> DMARCAggregateReport.OverrideType? {
        DMARCAggregateReport.OverrideType(rawValue: text.lowercased())
    }

    static func dkimResult(_ text: String) -> DMARCAggregateReport.DKIMResult? {
        let lower = text.lowercased()
        switch lower {
        case "hardfail": return .fail
        case "unknown": return .temperror  // the XSD's own comment: TempError "commonly implemented as unknown"
        case "error": return .permerror
        default: return DMARCAggregateReport.DKIMResult(rawValue: lower)
        }
    }

    static func spfScope(_ text: String) -> DMARCAggregateReport.SPFScope? {
        switch text.lowercased() {
        case "mfrom", "mailfrom", "mail_from", "mail-from": return .mfrom
        case "helo", "ehlo": return .helo
        default: return nil
        }
    }

    static func spfResult(_ text: String) -> DMARCAggregateReport.SPFResult? {
        let lower = text.lowercased()
        switch lower {
        case "hardfail": return .fail
        case "unknown": return .temperror
        case "error": return .permerror
        default: return DMARCAggregateReport.SPFResult(rawValue: lower)
        }
    }
}
