// FacteurMailAuth: rendering the Authentication-Results header field (RFC 8601 §2.2) that tells
// users and filters what this server checked: spf, dkim (RFC 6008 header.b), dmarc, arc and iprev.
// Parsing (to drop forged fields, to read ARC-Authentication-Results) lives in
// AuthenticationResultsParser.swift.

/// One "method=result" clause with its reason comment and properties (ptype.property=value).
public struct AuthenticationResultsClause: Sendable, Hashable {
    public var method: String
    public var result: String
    /// A short human-readable note, rendered as a comment.
    public var comment: String?
    public var properties: [(ptype: String, property: String, value: String)]

    public init(method: String, result: String, comment: String? = nil,
                properties: [(ptype: String, property: String, value: String)] = []) {
        self.method = method; self.result = result; self.comment = comment; self.properties = properties
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.method == b.method && a.result == b.result && a.comment == b.comment
            && a.properties.map { [$0.ptype, $0.property, $0.value] } == b.properties.map { [$0.ptype, $0.property, $0.value] }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(method); hasher.combine(result); hasher.combine(comment)
    }
}

public enum AuthenticationResultsField {
    /// The whole field, "Authentication-Results: …" folded one clause per line, ending with CRLF.
    /// No clause renders `authserv-id; none` (§2.2).
    public static func render(authservID: String, clauses: [AuthenticationResultsClause]) -> String {
        var text = "Authentication-Results: \(authservID);"
        if clauses.isEmpty { return text + " none\r\n" }
        for (index, clause) in clauses.enumerated() {
            text += "\r\n\t\(clause.method)=\(clause.result)"
            if let comment = clause.comment.map(sanitizedComment), !comment.isEmpty { text += " (\(comment))" }
            for property in clause.properties {
                text += " \(property.ptype).\(property.property)=\(value(property.value))"
            }
            if index < clauses.count - 1 { text += ";" }
        }
        return text + "\r\n"
    }

    /// §2.2: a pvalue is a value (token or quoted-string) or an address/domain. Domains and
    /// dot-atom addresses go bare; anything else is quoted.
    static func value(_ text: String) -> String {
        let bare = !text.isEmpty && text.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"): true
            case UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "+"), UInt8(ascii: "@"),
                 UInt8(ascii: "/"), UInt8(ascii: ":"): true
            default: false
            }
        } && text.utf8.filter({ $0 == UInt8(ascii: "@") }).count <= 1
        if bare { return text }
        var quoted = "\""
        for scalar in text.unicodeScalars.prefix(256) {
            if scalar == "\"" || scalar == "\\" { quoted += "\\" }
            if scalar.value < 0x20 || scalar.value == 0x7F { continue }
            quoted.unicodeScalars.append(scalar)
        }
        return quoted + "\""
    }

    /// Comments may nest and escape, but a reason copied from a remote DNS record is not to be
    /// trusted: keep printable ASCII without parentheses or backslashes, and keep it short.
    static func sanitizedComment(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            guard scalar.value >= 0x20, scalar.value < 0x7F, scalar != "(", scalar != ")", scalar != "\\" else { continue }
            out.unicodeScalars.append(scalar)
            if out.unicodeScalars.count >= 120 { break }
        }
        return out.trimmingCharactersInSet()
    }
}

extension String {
    fileprivate func trimmingCharactersInSet() -> String {
        var scalars = Substring(self)
        while scalars.first == " " { scalars.removeFirst() }
        while scalars.last == " " { scalars.removeLast() }
        return String(scalars)
    }
}
