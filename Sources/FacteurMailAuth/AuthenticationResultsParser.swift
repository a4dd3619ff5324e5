// FacteurMailAuth: a parser for Authentication-Results header field values (RFC 8601 §2.2), with
// comments (CFWS, RFC 5322 §3.2.2) and quoted strings. Used to find (and drop) forged fields that
// carry our authserv-id (RFC 8601 §5) and to read the payload of ARC-Authentication-Results
// (RFC 8617 §4.1.1). Works on bytes, never recurses, and refuses oversized input.

/// One `ptype.property=value` of a result (RFC 8601 §2.2 propspec), e.g. `smtp.mailfrom=a@b`.
public struct AuthenticationResultsProperty: Sendable, Hashable {
    /// "smtp", "header", "body", "policy", … (lower-cased).
    public var ptype: String
    /// "mailfrom", "d", "from", … (lower-cased).
    public var property: String
    /// The value, with quoting removed.
    public var value: String

    public init(ptype: String, property: String, value: String) {
        self.ptype = ptype
        self.property = property
        self.value = value
    }
}

/// One resinfo (RFC 8601 §2.2): `method[/version]=result [reason=…] [ptype.property=value …]`.
public struct AuthenticationResultsEntry: Sendable, Hashable {
    /// "spf", "dkim", "dmarc", "arc", … (lower-cased).
    public var method: String
    /// The method-version after "/", when given.
    public var methodVersion: Int?
    /// "pass", "fail", … (lower-cased).
    public var result: String
    /// The reasonspec value, quoting removed.
    public var reason: String?
    public var properties: [AuthenticationResultsProperty]

    public init(method: String, methodVersion: Int? = nil, result: String, reason: String? = nil,
                properties: [AuthenticationResultsProperty] = []) {
        self.method = method
        self.methodVersion = methodVersion
        self.result = result
        self.reason = reason
        self.properties = properties
    }

    /// The value of the first property `ptype.property` (names compared without case).
    public func property(_ ptype: String, _ property: String) -> String? {
        let p = ptype.lowercased(), q = property.lowercased()
        return properties.first { $0.ptype == p && $0.property == q }?.value
    }
}

/// A parsed Authentication-Results value.
public struct AuthenticationResultsHeader: Sendable, Hashable {
    /// The authserv-id, as written (compare it without case: it is a domain name in practice).
    public var authservID: String
    /// authres-version; RFC 8601 §2.2 defines only 1.
    public var version: Int?
    /// The results; empty for the "none" form (RFC 8601 §2.2 no-result).
    public var results: [AuthenticationResultsEntry]

    public init(authservID: String, version: Int? = nil, results: [AuthenticationResultsEntry]) {
        self.authservID = authservID
        self.version = version
        self.results = results
    }

    /// RFC 8601 §2.2 no-result: "authserv-id; none".
    public var isNone: Bool { results.isEmpty }

    /// Whether the authserv-id is `id`, ignoring ASCII case.
    public func hasAuthservID(_ id: String) -> Bool { authservID.lowercased() == id.lowercased() }

    /// Every result of `method` (e.g. "dkim"), in order.
    public func results(for method: String) -> [AuthenticationResultsEntry] {
        let m = method.lowercased()
        return results.filter { $0.method == m }
    }
}

public struct AuthenticationResultsSyntaxError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    /// Byte offset in the value where parsing stopped.
    public var offset: Int
    public var description: String { "\(message) at offset \(offset)" }
}

/// Hard limits on hostile input.
public enum AuthenticationResultsLimits {
    /// Values longer than this are refused outright.
    public static let maxValueLength = 64 * 1024
    public static let maxResults = 256
    public static let maxPropertiesPerResult = 64
    /// RFC 5322 comments nest; deeper nesting than this is refused.
    public static let maxCommentDepth = 32
}

public enum AuthenticationResultsParser {
    /// Parses a header field value (the bytes after "Authentication-Results:", folding kept).
    public static func parse(_ value: [UInt8]) throws(AuthenticationResultsSyntaxError) -> AuthenticationResultsHeader {
        var cursor = Cursor(value)
        return try cursor.header()
    }

    public static func parse(_ value: String) throws(AuthenticationResultsSyntaxError) -> AuthenticationResultsHeader {
        try parse(Array(value.utf8))
    }

    /// Only the authserv-id, even when the results after it do not parse: enough to decide whether
    /// a field claims to come from us (RFC 8601 §5: such fields are removed or renamed on entry).
    public static func authservID(of value: [UInt8]) -> String? {
        var cursor = Cursor(value)
        guard cursor.bytes.count <= AuthenticationResultsLimits.maxValueLength else { return nil }
        do {
            try cursor.skipCFWS()
            let id = try cursor.valueText()
            return id.isEmpty ? nil : id
        } catch {
            return nil
        }
    }

    /// Where the resinfo list starts: just after the authserv-id and version (at the first ";").
    /// Lets a caller copy the results' text as written (ARC sealing, RFC 8617 §4.1.1).
    static func resultsOffset(of value: [UInt8]) -> Int? {
        var cursor = Cursor(value)
        do {
            _ = try cursor.authservAndVersion()
            return cursor.index
        } catch {
            return nil
        }
    }

    struct Cursor {
        let bytes: [UInt8]
        var index = 0

        init(_ bytes: [UInt8]) { self.bytes = bytes }

        var atEnd: Bool { index >= bytes.count }
        var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

        func error(_ message: String) -> AuthenticationResultsSyntaxError {
            AuthenticationResultsSyntaxError(message: message, offset: index)
        }

        // authres-payload = [CFWS] authserv-id [ CFWS authres-version ] ( no-result / 1*resinfo ) [CFWS] CRLF
        mutating func header() throws(AuthenticationResultsSyntaxError) -> AuthenticationResultsHeader {
            guard bytes.count <= AuthenticationResultsLimits.maxValueLength else { throw error("value too long") }
            let (id, version) = try authservAndVersion()
            var results: [AuthenticationResultsEntry] = []
            // no-result = [CFWS] ";" [CFWS] "none"
            guard peek == UInt8(ascii: ";") else { throw error("expected ; after authserv-id") }
            while peek == UInt8(ascii: ";") {
                index += 1
                try skipCFWS()
                // A trailing ";" is common in the wild (and in RFC 8617's test suite): accept it.
                if atEnd { break }
                if results.isEmpty, isNoneKeyword() {
                    index += 4
                    try skipCFWS()
                    guard atEnd else { throw error("text after none") }
                    return AuthenticationResultsHeader(authservID: id, version: version, results: [])
                }
                results.append(try resinfo())
                guard results.count <= AuthenticationResultsLimits.maxResults else { throw error("too many results") }
            }
            guard atEnd else { throw error("unexpected character") }
            return AuthenticationResultsHeader(authservID: id, version: version, results: results)
        }

        mutating func authservAndVersion() throws(AuthenticationResultsSyntaxError) -> (String, Int?) {
            try skipCFWS()
            // authserv-id = value (RFC 2045 token / quoted-string)
            let id = try valueText()
            guard !id.isEmpty else { throw error("missing authserv-id") }
            try skipCFWS()
            // authres-version = 1*DIGIT [CFWS]
            var version: Int?
            if let b = peek, isDigit(b) {
                version = try digits()
                try skipCFWS()
            }
            return (id, version)
        }

        func isNoneKeyword() -> Bool {
            guard index + 4 <= bytes.count,
                  String(decoding: bytes[index..<(index + 4)], as: UTF8.self).lowercased() == "none" else { return false }
            return index + 4 == bytes.count || !isKeywordByte(bytes[index + 4])
        }

        // resinfo = [CFWS] ";" methodspec [ CFWS reasonspec ] [ CFWS 1*propspec ]
        // methodspec = [CFWS] method [CFWS] "=" [CFWS] result
        // method = Keyword [ [CFWS] "/" [CFWS] method-version ]
        mutating func resinfo() throws(AuthenticationResultsSyntaxError) -> AuthenticationResultsEntry {
            let method = try keyword().lowercased()
            try skipCFWS()
            var methodVersion: Int?
            if peek == UInt8(ascii: "/") {
                index += 1
                try skipCFWS()
                methodVersion = try digits()
                try skipCFWS()
            }
            guard peek == UInt8(ascii: "=") else { throw error("expected = after method") }
            index += 1
            try skipCFWS()
            let result = try keyword().lowercased()
            var entry = AuthenticationResultsEntry(method: method, methodVersion: methodVersion, result: result)
            try skipCFWS()
            // reasonspec = "reason" [CFWS] "=" [CFWS] value
            let save = index
            if let word = try? keyword(), word.lowercased() == "reason" {
                try skipCFWS()
                if peek == UInt8(ascii: "=") {
                    index += 1
                    try skipCFWS()
                    entry.reason = try pvalue()
                    try skipCFWS()
                } else {
                    index = save
                }
            } else {
                index = save
            }
            // propspec = ptype [CFWS] "." [CFWS] property [CFWS] "=" pvalue
            while let b = peek, b != UInt8(ascii: ";") {
                let ptype = try keyword().lowercased()
                try skipCFWS()
                guard peek == UInt8(ascii: ".") else { throw error("expected . in property") }
                index += 1
                try skipCFWS()
                let property = try keyword().lowercased()
                try skipCFWS()
                guard peek == UInt8(ascii: "=") else { throw error("expected = in property") }
                index += 1
                try skipCFWS()
                let value = try pvalue()
                try skipCFWS()
                entry.properties.append(AuthenticationResultsProperty(ptype: ptype, property: property, value: value))
                guard entry.properties.count <= AuthenticationResultsLimits.maxPropertiesPerResult else {
                    throw error("too many properties")
                }
            }
            return entry
        }

        // Keyword = ldh-str (RFC 5321); "_" is accepted too, as some producers use it.
        func isKeywordByte(_ b: UInt8) -> Bool {
            isAlnum(b) || b == UInt8(ascii: "-") || b == UInt8(ascii: "_")
        }

        mutating func keyword() throws(AuthenticationResultsSyntaxError) -> String {
            let start = index
            while let b = peek, isKeywordByte(b) { index += 1 }
            guard index > start else { throw error("expected a keyword") }
            return String(decoding: bytes[start..<index], as: UTF8.self)
        }

        mutating func digits() throws(AuthenticationResultsSyntaxError) -> Int {
            let start = index
            while let b = peek, isDigit(b) { index += 1 }
            guard index > start, index - start <= 9 else { throw error("expected a number") }
            return Int(String(decoding: bytes[start..<index], as: UTF8.self)) ?? 0
        }

        // value = token / quoted-string (RFC 2045 §5.1)
        mutating func valueText() throws(AuthenticationResultsSyntaxError) -> String {
            if peek == UInt8(ascii: "\"") { return try quotedString() }
            let start = index
            while let b = peek, isTokenByte(b) { index += 1 }
            return String(decoding: bytes[start..<index], as: UTF8.self)
        }

        /// pvalue = [CFWS] ( value / [ [ local-part ] "@" ] domain-name ) [CFWS]. Read leniently as a
        /// quoted string (optionally followed by "@domain") or a run of non-delimiter characters, so
        /// that addresses, IPv6 literals and base64 fragments (header.b=) found in real fields parse.
        mutating func pvalue() throws(AuthenticationResultsSyntaxError) -> String {
            var text = ""
            if peek == UInt8(ascii: "\"") {
                text = try quotedString()
                guard peek == UInt8(ascii: "@") else { return text }
            }
            let start = index
            while let b = peek, isPValueByte(b) { index += 1 }
            return text + String(decoding: bytes[start..<index], as: UTF8.self)
        }

        // quoted-string = [CFWS] DQUOTE *([FWS] qcontent) [FWS] DQUOTE [CFWS] (RFC 5322 §3.2.4)
        mutating func quotedString() throws(AuthenticationResultsSyntaxError) -> String {
            index += 1
            var out: [UInt8] = []
            while let b = peek {
                index += 1
                switch b {
                case UInt8(ascii: "\""):
                    return String(decoding: out, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    guard let next = peek else { throw error("unterminated quoted-pair") }
                    out.append(next)
                    index += 1
                case 0x0D, 0x0A:
                    continue // folding inside the string: the CRLF is not part of the content
                default:
                    out.append(b)
                }
            }
            throw error("unterminated quoted string")
        }

        /// CFWS, with nested comments tracked by a counter (no recursion), depth capped.
        mutating func skipCFWS() throws(AuthenticationResultsSyntaxError) {
            var depth = 0
            while let b = peek {
                if depth > 0 {
                    index += 1
                    switch b {
                    case UInt8(ascii: "\\"):
                        guard !atEnd else { throw error("unterminated comment") }
                        index += 1
                    case UInt8(ascii: "("):
                        depth += 1
                        guard depth <= AuthenticationResultsLimits.maxCommentDepth else { throw error("comments nested too deep") }
                    case UInt8(ascii: ")"):
                        depth -= 1
                    default:
                        break
                    }
                    continue
                }
                switch b {
                case 0x20, 0x09, 0x0D, 0x0A:
                    index += 1
                case UInt8(ascii: "("):
                    index += 1
                    depth = 1
                default:
                    return
                }
            }
            if depth > 0 { throw error("unterminated comment") }
        }
    }

    // RFC 2045 token: any CHAR except SPACE, CTLs and tspecials; UTF-8 (RFC 6532) is let through.
    static func isTokenByte(_ b: UInt8) -> Bool {
        if b >= 0x80 { return true }
        guard b > 0x20, b < 0x7F else { return false }
        return !Array("()<>@,;:\\\"/[]?=".utf8).contains(b)
    }

    static func isPValueByte(_ b: UInt8) -> Bool {
        if b >= 0x80 { return true }
        guard b > 0x20, b < 0x7F else { return false }
        return b != UInt8(ascii: ";") && b != UInt8(ascii: "(") && b != UInt8(ascii: ")") && b != UInt8(ascii: "\"")
    }
}
