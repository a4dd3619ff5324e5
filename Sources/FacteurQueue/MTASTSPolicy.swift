// MTA-STS (RFC 8461): the `_mta-sts` TXT record (§3.1), the policy file (§3.2), and MX host
// matching (§4.1). Pure parsing; fetching and caching are in MTASTSFetcher.swift.

import Foundation

/// §3.1: `v=STSv1; id=...`.
public struct MTASTSRecord: Sendable, Equatable {
    public var id: String

    /// Parses one TXT record; nil when it is not an STSv1 record or is malformed.
    /// sts-text-record = sts-version 1*(sts-field-delim sts-field) [sts-field-delim]
    /// sts-version = %s"v=STSv1"; sts-id = %s"id=" 1*32(ALPHA / DIGIT)
    public init?(_ text: String) {
        guard text.utf8.count <= 1024 else { return nil }
        let fields = text.split(separator: ";", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: CharacterSet(charactersIn: " \t")) }
        guard fields.first == "v=STSv1" else { return nil }
        var id: String?
        for field in fields.dropFirst() where !field.isEmpty {
            guard let eq = field.firstIndex(of: "=") else { return nil }
            let key = field[..<eq], value = field[field.index(after: eq)...]
            if key == "id" {
                guard id == nil, (1...32).contains(value.utf8.count),
                      value.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) }) else { return nil }
                id = String(value)
            }
            // §3.1: other fields are extensions, ignored.
        }
        guard let id else { return nil }
        self.id = id
    }

    /// §3.1: of several TXT records, those not starting with "v=STSv1;" are discarded; more than one
    /// left means no policy.
    public static func select(_ texts: [String]) -> MTASTSRecord? {
        let candidates = texts.filter { $0.hasPrefix("v=STSv1") }
        guard candidates.count == 1 else { return nil }
        return MTASTSRecord(candidates[0])
    }
}

public enum MTASTSMode: String, Sendable, Codable {
    case enforce, testing, none
}

/// §3.2: the policy file.
public struct MTASTSPolicy: Sendable, Equatable, Codable {
    public var mode: MTASTSMode
    /// MX patterns, lowercased, without a trailing dot: `mail.example.com` or `*.example.net`.
    public var mx: [String]
    /// Seconds; at most 31557600 (§3.2).
    public var maxAge: Int

    public static let maxMaxAge = 31_557_600
    /// §3.3: senders SHOULD limit the policy body; 64 KiB.
    public static let maxBodySize = 64 * 1024
    public static let maxMXPatterns = 100

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case malformed(String)
        public var description: String { if case .malformed(let why) = self { return why }; return "" }
    }

    public init(mode: MTASTSMode, mx: [String], maxAge: Int) {
        self.mode = mode; self.mx = mx; self.maxAge = maxAge
    }

    /// sts-policy-term = sts-policy-field *WSP ":" *WSP sts-policy-value, lines ended by CRLF or LF.
    /// Required: version (STSv1, first? — §3.2 only says present), mode, max_age; mx required unless
    /// mode is none. Unknown fields are ignored (§3.2, extensions).
    public static func parse(_ body: [UInt8]) throws(ParseError) -> MTASTSPolicy {
        guard body.count <= maxBodySize else { throw .malformed("policy larger than \(maxBodySize) octets") }
        guard String(validating: body, as: UTF8.self) != nil else { throw .malformed("policy is not UTF-8") }
        var version: String?, mode: MTASTSMode?, maxAge: Int?
        var mx: [String] = []
        // Lines are split on bytes: "\r\n" is one Character in Swift and would hide the LF.
        for rawLine in body.split(separator: 0x0A, omittingEmptySubsequences: true) {
            var bytes = rawLine
            if bytes.last == 0x0D { bytes = bytes.dropLast() }
            let line = Substring(String(decoding: bytes, as: UTF8.self))
            if line.allSatisfy({ $0 == " " || $0 == "\t" }) { continue }
            guard let colon = line.firstIndex(of: ":") else { throw .malformed("line without a colon: \(line.prefix(80))") }
            let key = line[..<colon].trimmingCharacters(in: CharacterSet(charactersIn: " \t"))
            let value = line[line.index(after: colon)...].trimmingCharacters(in: CharacterSet(charactersIn: " \t"))
            switch key {
            case "version":
                guard version == nil else { throw .malformed("version given twice") }
                version = value
            case "mode":
                guard mode == nil else { throw .malformed("mode given twice") }
                guard let parsed = MTASTSMode(rawValue: value) else { throw .malformed("unknown mode \(value)") }
                mode = parsed
            case "max_age":
                guard maxAge == nil else { throw .malformed("max_age given twice") }
                // sts-policy-max-age-value = 1*10(DIGIT); over the maximum is malformed.
                guard (1...10).contains(value.utf8.count), value.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                      let seconds = Int(value), seconds <= maxMaxAge else { throw .malformed("bad max_age \(value)") }
                maxAge = seconds
            case "mx":
                guard mx.count < maxMXPatterns else { throw .malformed("too many mx patterns") }
                mx.append(try pattern(value))
            default:
                continue
            }
        }
        guard version == "STSv1" else { throw .malformed("version is not STSv1") }
        guard let mode else { throw .malformed("no mode") }
        guard let maxAge else { throw .malformed("no max_age") }
        if mode != .none, mx.isEmpty { throw .malformed("no mx pattern") }
        return MTASTSPolicy(mode: mode, mx: mx, maxAge: maxAge)
    }

    /// §3.2: sts-policy-mx-value = ["*."] Domain; a wildcard only as the whole leftmost label.
    static func pattern(_ value: String) throws(ParseError) -> String {
        var name = value.lowercased()
        if name.hasSuffix(".") { name.removeLast() }
        var labels = name.split(separator: ".", omittingEmptySubsequences: false)
        if labels.first == "*" { labels.removeFirst() }
        guard !labels.isEmpty, name.utf8.count <= 253, labels.allSatisfy({ label in
            (1...63).contains(label.utf8.count) && label.utf8.allSatisfy {
                ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2D || $0 == 0x5F
            }
        }) else { throw .malformed("bad mx pattern \(value)") }
        return name
    }

    /// §4.1: the MX host matches a pattern exactly, or a `*.` pattern with exactly one more
    /// leftmost label ("*.example.com" matches "mx.example.com", not "a.mx.example.com" nor "example.com").
    public func matches(mxHost: String) -> Bool {
        var host = mxHost.lowercased()
        if host.hasSuffix(".") { host.removeLast() }
        return mx.contains { pattern in
            if pattern.hasPrefix("*.") {
                let suffix = pattern.dropFirst(1)  // ".example.com"
                guard host.hasSuffix(suffix) else { return false }
                let label = host.dropLast(suffix.count)
                return !label.isEmpty && !label.contains(".")
            }
            return host == pattern
        }
    }

    /// RFC 8460 §4.4 "policy-string": the policy's lines.
    public var policyStrings: [String] {
        ["version: STSv1", "mode: \(mode.rawValue)"] + mx.map { "mx: \($0)" } + ["max_age: \(maxAge)"]
    }
}
