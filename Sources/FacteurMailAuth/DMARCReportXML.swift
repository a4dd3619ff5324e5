// DMARC aggregate report XML writer: RFC 7489 Appendix C (validates against its XSD with the
// targetNamespace removed, the form real reports use) and the DMARCbis format of RFC 9990 Appendix A
// (namespace urn:ietf:params:xml:ns:dmarc-2.0). All text is escaped (XML 1.0 §2.4) and characters XML 1.0
// cannot carry (§2.2: C0 controls other than TAB/LF/CR, lone surrogates, U+FFFE/U+FFFF) are replaced, so
// a hostile value in a DKIM comment cannot break the document.

import FacteurDNS

extension DMARCAggregateReport {
    /// The report as an XML document (UTF-8 text, LF line ends) in `format`.
    public func xml(format: Format) -> String {
        var w = DMARCReportXMLWriter()
        w.raw("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
        switch format {
        case .rfc7489: w.open("feedback")
        case .dmarcbis: w.open("feedback", attributes: [("xmlns", Self.dmarcbisNamespace)])
        }
        // Both schemas: version first. RFC 7489 requires it (xs:decimal); RFC 9990 makes it optional
        // but says the value is 1.0.
        w.leaf("version", "1.0")
        writeMetadata(&w, format)
        writePolicyPublished(&w, format)
        for record in records { writeRecord(&w, record, format) }
        w.close("feedback")
        return w.output
    }

    /// ReportMetadataType. RFC 7489 is an xs:sequence, so the order below is the schema's.
    private func writeMetadata(_ w: inout DMARCReportXMLWriter, _ format: Format) {
        w.open("report_metadata")
        w.leaf("org_name", metadata.orgName)
        w.leaf("email", metadata.email)
        if let extra = metadata.extraContactInfo { w.leaf("extra_contact_info", extra) }
        w.leaf("report_id", metadata.reportID)
        w.open("date_range")
        w.leaf("begin", String(metadata.dateRange.begin))
        w.leaf("end", String(metadata.dateRange.end))
        w.close("date_range")
        switch format {
        case .rfc7489:
            for error in metadata.errors { w.leaf("error", error) }
        case .dmarcbis:
            // RFC 9990's schema allows one <error>: several are joined rather than dropped.
            if !metadata.errors.isEmpty { w.leaf("error", metadata.errors.joined(separator: "; ")) }
            if let generator = metadata.generator { w.leaf("generator", generator) }
        }
        w.close("report_metadata")
    }

    /// PolicyPublishedType. RFC 7489 requires p, sp, pct and fo: absent values get the record's
    /// defaults (§6.3: sp defaults to p, pct to 100, fo to "0"; p itself to none as §6.6.3 does for a
    /// record without a valid p but with rua).
    private func writePolicyPublished(_ w: inout DMARCReportXMLWriter, _ format: Format) {
        let policy = policyPublished
        w.open("policy_published")
        w.leaf("domain", policy.domain)
        switch format {
        case .rfc7489:
            if let adkim = policy.adkim { w.leaf("adkim", adkim.rawValue) }
            if let aspf = policy.aspf { w.leaf("aspf", aspf.rawValue) }
            let p = policy.p ?? .none
            w.leaf("p", p.rawValue)
            w.leaf("sp", (policy.sp ?? p).rawValue)
            // DMARCbis's t=y is RFC 7489's pct=0 (the policy is not applied).
            let pct = policy.pct ?? (policy.testing == .yes ? 0 : 100)
            w.leaf("pct", String(min(max(pct, 0), 100)))
            w.leaf("fo", policy.fo ?? "0")
        case .dmarcbis:
            w.leaf("p", (policy.p ?? .none).rawValue)
            if let sp = policy.sp { w.leaf("sp", sp.rawValue) }
            if let np = policy.np { w.leaf("np", np.rawValue) }
            if let adkim = policy.adkim { w.leaf("adkim", adkim.rawValue) }
            if let aspf = policy.aspf { w.leaf("aspf", aspf.rawValue) }
            if let method = policy.discoveryMethod { w.leaf("discovery_method", method.rawValue) }
            if let fo = policy.fo { w.leaf("fo", fo) }
            if let testing = policy.testing ?? policy.pct.map({ $0 == 0 ? .yes : .no }) {
                w.leaf("testing", testing.rawValue)
            }
        }
        w.close("policy_published")
    }

    private func writeRecord(_ w: inout DMARCReportXMLWriter, _ record: Record, _ format: Format) {
        w.open("record")
        w.open("row")
        w.leaf("source_ip", Self.sourceIPText(record.sourceIP, format))
        w.leaf("count", String(max(0, record.count)))
        let evaluated = record.policyEvaluated
        w.open("policy_evaluated")
        var disposition = evaluated.disposition ?? .none
        // RFC 7489's DispositionType has no "pass": a passing message had no action taken.
        if format == .rfc7489, disposition == .pass { disposition = .none }
        w.leaf("disposition", disposition.rawValue)
        w.leaf("dkim", (evaluated.dkim ?? .fail).rawValue)
        w.leaf("spf", (evaluated.spf ?? .fail).rawValue)
        for reason in evaluated.reasons {
            let (type, comment) = Self.overrideReason(reason, format)
            w.open("reason")
            w.leaf("type", type.rawValue)
            if let comment { w.leaf("comment", comment) }
            w.close("reason")
        }
        w.close("policy_evaluated")
        w.close("row")

        let ids = record.identifiers
        w.open("identifiers")
        switch format {
        case .rfc7489:
            if let to = ids.envelopeTo { w.leaf("envelope_to", to) }
            // Required by RFC 7489's schema; empty when the envelope sender was null and HELO unknown.
            w.leaf("envelope_from", ids.envelopeFrom ?? "")
            w.leaf("header_from", ids.headerFrom)
        case .dmarcbis:
            w.leaf("header_from", ids.headerFrom)
            if let from = ids.envelopeFrom { w.leaf("envelope_from", from) }
            if let to = ids.envelopeTo { w.leaf("envelope_to", to) }
        }
        w.close("identifiers")

        w.open("auth_results")
        for dkim in record.authResults.dkim {
            w.open("dkim")
            w.leaf("domain", dkim.domain)
            switch format {
            case .rfc7489: if let selector = dkim.selector { w.leaf("selector", selector) }
            case .dmarcbis: w.leaf("selector", dkim.selector ?? "")  // required in RFC 9990
            }
            w.leaf("result", (dkim.result ?? .none).rawValue)
            if let human = dkim.humanResult { w.leaf("human_result", human) }
            w.close("dkim")
        }
        switch format {
        case .rfc7489:
            // "There will always be at least one SPF result" (Appendix C): when none was recorded the
            // MAIL FROM domain (or the From domain) is reported with result none.
            var spfResults = record.authResults.spf
            if spfResults.isEmpty {
                spfResults = [SPFAuthResult(domain: ids.envelopeFrom ?? ids.headerFrom, scope: .mfrom, result: SPFResult.none)]
            }
            for spf in spfResults {
                w.open("spf")
                w.leaf("domain", spf.domain)
                w.leaf("scope", (spf.scope ?? .mfrom).rawValue)
                // RFC 7489's SPFResultType has no "policy" (an RFC 8601 local-policy outcome): neutral
                // is the closest statement that SPF asserted nothing usable.
                let result = spf.result ?? SPFResult.none
                w.leaf("result", result == .policy ? SPFResult.neutral.rawValue : result.rawValue)
                w.close("spf")
            }
        case .dmarcbis:
            // RFC 9990: at most one SPF result, for the MAIL FROM identity (HELO is no longer reported).
            if let spf = record.authResults.spf.first(where: { $0.scope != .helo }) {
                w.open("spf")
                w.leaf("domain", spf.domain)
                w.leaf("scope", SPFScope.mfrom.rawValue)
                w.leaf("result", (spf.result ?? SPFResult.none).rawValue)
                if let human = spf.humanResult { w.leaf("human_result", human) }
                w.close("spf")
            }
        }
        w.close("auth_results")
        w.close("record")
    }

    /// Override reasons that one format lacks are carried as `other` with the original name in the
    /// comment, so nothing is lost: RFC 7489 has no `policy_test_mode`, RFC 9990 has no `forwarded` or
    /// `sampled_out` (sampling went with `pct=`; its successor is testing mode).
    private static func overrideReason(_ reason: OverrideReason, _ format: Format) -> (OverrideType, String?) {
        switch (format, reason.type) {
        case (.rfc7489, .policyTestMode), (.dmarcbis, .forwarded):
            return (.other, reason.comment ?? reason.type.rawValue)
        case (.dmarcbis, .sampledOut):
            return (.policyTestMode, reason.comment)
        default:
            return (reason.type, reason.comment)
        }
    }

    /// RFC 7489's IPAddress pattern only accepts dotted quads and IPv6 with all eight groups, so IPv6
    /// is written uncompressed there; DMARCbis takes RFC 5952 text. An IPv4-mapped IPv6 address (RFC
    /// 4291 §2.5.5.2), as a dual-stack listener reports IPv4 clients, is written as the IPv4 address.
    static func sourceIPText(_ text: String, _ format: Format) -> String {
        let trimmed = text.trimmingXMLSpace()
        if let v4 = IPv4Address(trimmed) { return v4.description }
        guard let v6 = IPv6Address(trimmed) else { return trimmed }
        let b = v6.bytes
        if b[0..<10].allSatisfy({ $0 == 0 }), b[10] == 0xFF, b[11] == 0xFF, let v4 = IPv4Address(bytes: Array(b[12..<16])) {
            return v4.description
        }
        switch format {
        case .dmarcbis:
            return v6.description
        case .rfc7489:
            var groups: [String] = []
            for i in stride(from: 0, to: 16, by: 2) {
                groups.append(String(UInt16(b[i]) << 8 | UInt16(b[i + 1]), radix: 16))
            }
            return groups.joined(separator: ":")
        }
    }
}

/// A minimal indenting XML writer: elements, escaped text, nothing else.
struct DMARCReportXMLWriter {
    private(set) var output = ""
    private var depth = 0

    mutating func raw(_ text: String) { output += text }

    mutating func open(_ name: String, attributes: [(String, String)] = []) {
        indent()
        output += "<" + name
        for (key, value) in attributes { output += " " + key + "=\"" + Self.escape(value) + "\"" }
        output += ">\n"
        depth += 1
    }

    mutating func close(_ name: String) {
        depth -= 1
        indent()
        output += "</" + name + ">\n"
    }

    mutating func leaf(_ name: String, _ text: String) {
        indent()
        output += "<" + name + ">" + Self.escape(text) + "</" + name + ">\n"
    }

    private mutating func indent() {
        output += String(repeating: "  ", count: depth)
    }

    /// XML 1.0 §2.4 escaping for text and attribute values, and §2.2 Char filtering: characters XML
    /// cannot represent at all become U+FFFD; CR is written as a character reference so it survives
    /// end-of-line normalisation (§2.11).
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            case "\r": out += "&#13;"
            case "\t", "\n": out.unicodeScalars.append(scalar)
            default:
                let v = scalar.value
                if v < 0x20 || v == 0xFFFE || v == 0xFFFF || (0x7F...0x84).contains(v) || (0x86...0x9F).contains(v) {
                    out += "\u{FFFD}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }
}

extension String {
    /// The string without leading and trailing XML whitespace (space, TAB, CR, LF; XML 1.0 §2.3 S).
    func trimmingXMLSpace() -> String {
        let scalars = unicodeScalars
        func isSpace(_ s: Unicode.Scalar) -> Bool { s == " " || s == "\t" || s == "\r" || s == "\n" }
        guard let first = scalars.firstIndex(where: { !isSpace($0) }),
              let last = scalars.lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(scalars[first...last])
    }
}
