// The TLS-RPT DNS record (RFC 8460 §3): a TXT record at `_smtp._tls.<domain>` saying where the
// domain wants its reports (`v=TLSRPTv1; rua=mailto:…,https://…`).

import FacteurDNS
import Foundation

public struct TLSReportRecord: Sendable, Equatable {
    /// Where reports go, in the record's order (§3: mailto and https; other schemes are dropped).
    public enum Destination: Sendable, Equatable {
        case mailto(String)
        case https(String)
    }
    public var destinations: [Destination]

    /// At most this many rua URIs are used: a record cannot make us send a report a hundred times.
    public static let maxDestinations = 5

    // tlsrpt-record     = tlsrpt-version 1*(field-delim tlsrpt-field) [field-delim]
    // field-delim       = *WSP ";" *WSP
    // tlsrpt-field      = tlsrpt-rua / tlsrpt-extension
    // tlsrpt-version    = %s"v=TLSRPTv1"
    // tlsrpt-rua        = %s"rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)
    // tlsrpt-extension  = tlsrpt-ext-name "=" tlsrpt-ext-value
    // tlsrpt-ext-name   = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
    // tlsrpt-ext-value  = 1*(%x21-3A / %x3C / %x3E-7E)
    /// Parses one record's text; nil when it is not a valid TLSRPTv1 record or names no usable rua.
    public static func parse(_ text: String) -> TLSReportRecord? {
        guard text.utf8.count <= 4096 else { return nil }
        var fields = text.split(separator: ";", omittingEmptySubsequences: false).map { trimWSP($0) }
        // [field-delim] at the end leaves one empty field.
        if fields.count > 1, fields.last?.isEmpty == true { fields.removeLast() }
        guard fields.count >= 2, fields[0] == "v=TLSRPTv1" else { return nil }
        var rua: [Destination]?
        for field in fields.dropFirst() {
            guard let equals = field.firstIndex(of: "=") else { return nil }
            let name = field[..<equals]
            let value = field[field.index(after: equals)...]
            if name == "rua" {
                guard rua == nil else { return nil }  // two rua fields: ambiguous, so invalid
                var list: [Destination] = []
                for item in value.split(separator: ",", omittingEmptySubsequences: false).map({ trimWSP($0) }) {
                    guard !item.isEmpty, item.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return nil }
                    let lower = item.lowercased()
                    if lower.hasPrefix("mailto:") {
                        var address = String(item.dropFirst("mailto:".count))
                        if let query = address.firstIndex(of: "?") { address = String(address[..<query]) }
                        address = address.removingPercentEncoding ?? address
                        guard let at = address.lastIndex(of: "@"), at != address.startIndex,
                              address.index(after: at) != address.endIndex, !address.contains(",") else { continue }
                        list.append(.mailto(address))
                    } else if lower.hasPrefix("https://"), item.count > "https://".count {
                        list.append(.https(item))
                    }
                    // Other schemes: not ours to use (§3 defines mailto and https only).
                }
                rua = list
            } else {
                guard isExtensionName(name), !value.isEmpty,
                      value.utf8.allSatisfy({ ($0 >= 0x21 && $0 <= 0x3A) || $0 == 0x3C || ($0 >= 0x3E && $0 <= 0x7E) }) else { return nil }
            }
        }
        guard let rua, !rua.isEmpty else { return nil }
        return TLSReportRecord(destinations: Array(rua.prefix(maxDestinations)))
    }

    /// §3: of the TXT records at the name, those that start with "v=TLSRPTv1;" count; anything
    /// but exactly one, or one that does not parse, means the domain does not want reports.
    public static func select(_ texts: [String]) -> TLSReportRecord? {
        let candidates = texts.filter { $0.hasPrefix("v=TLSRPTv1;") || $0.hasPrefix("v=TLSRPTv1 ") }
        guard candidates.count == 1 else { return nil }
        return parse(candidates[0])
    }

    /// Looks the record up for `domain`; nil when there is none (or none usable, or DNS failed:
    /// the report is tried again the next day).
    public static func lookup(domain: String, resolver: any DNSResolver) async -> TLSReportRecord? {
        guard let name = try? DNSName("_smtp._tls." + domain) else { return nil }
        guard let records = try? await resolver.txt(name) else { return nil }
        return select(records.map(\.text))
    }

    private static func trimWSP(_ s: Substring) -> String {
        var s = s
        while let first = s.first, first == " " || first == "\t" { s.removeFirst() }
        while let last = s.last, last == " " || last == "\t" { s.removeLast() }
        return String(s)
    }

    private static func isExtensionName(_ name: Substring) -> Bool {
        let bytes = Array(name.utf8)
        guard let first = bytes.first, bytes.count <= 32, isAlnum(first) else { return false }
        return bytes.dropFirst().allSatisfy { isAlnum($0) || $0 == 0x5F || $0 == 0x2D || $0 == 0x2E }
    }

    private static func isAlnum(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
    }
}
