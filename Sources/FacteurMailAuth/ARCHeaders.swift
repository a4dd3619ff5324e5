// FacteurMailAuth: the three ARC header fields of RFC 8617 §4.1 — ARC-Authentication-Results
// (§4.1.1), ARC-Message-Signature (§4.1.2) and ARC-Seal (§4.1.3) — parsed on bytes with the DKIM
// tag-list parser (RFC 6376 §3.2), and the chain validation status (cv=, §4.1.3).

import FacteurMIME

/// The result of ARC chain validation (RFC 8617 §4.4, the cv= values; RFC 8601 "arc" method).
public enum ARCResult: String, Sendable, Hashable {
    case none, pass, fail
}

public enum ARCLimits {
    /// RFC 8617 §4.2.1: i= ranges over 1…50.
    public static let maxInstance = 50
    /// More ARC header fields than three per allowed instance (and a little slack) is refused
    /// without looking further.
    public static let maxFields = 3 * maxInstance + 3
}

/// Field names (RFC 8617 §4.1), as they are written when sealing.
enum ARCFieldName {
    static let seal = "ARC-Seal"
    static let messageSignature = "ARC-Message-Signature"
    static let authenticationResults = "ARC-Authentication-Results"
}

/// Parsing helpers shared by the AMS and the AS.
enum ARCTags {
    static func text(_ bytes: [UInt8]) -> String {
        String(decoding: bytes.filter { !DKIMTagList.isFWS($0) }, as: UTF8.self)
    }

    /// instance = 1*2DIGIT, 1…50 (RFC 8617 §4.2.1).
    static func instance(_ text: String) throws(DKIMSyntaxError) -> Int {
        guard !text.isEmpty, text.utf8.count <= 2, text.utf8.allSatisfy(isDigit), let i = Int(text),
              (1...ARCLimits.maxInstance).contains(i) else {
            throw DKIMSyntaxError("bad instance i=\(text.prefix(8))")
        }
        return i
    }

    /// a=: RFC 8617 §4.1.2/§4.1.3 take DKIM's algorithms minus rsa-sha1 (RFC 8301). Values are
    /// case-sensitive here, as in the ARC test suite.
    static func algorithm(_ text: String, allowed: Set<DKIMAlgorithm>) throws(DKIMSyntaxError) -> DKIMAlgorithm {
        guard let a = DKIMAlgorithm(rawValue: text), a != .rsaSHA1, allowed.contains(a) else {
            throw DKIMSyntaxError("unsupported algorithm \(text.prefix(32))")
        }
        return a
    }

    static func timestamp(_ tag: DKIMTag?, _ name: String) throws(DKIMSyntaxError) -> Int64? {
        guard let tag else { return nil }
        let digits = text(tag.value)
        guard !digits.isEmpty, digits.utf8.allSatisfy(isDigit) else { throw DKIMSyntaxError("bad \(name)= number") }
        return digits.count > 18 ? Int64.max : Int64(digits) ?? Int64.max
    }

    static func base64(_ tag: DKIMTag?, _ name: String) throws(DKIMSyntaxError) -> [UInt8] {
        guard let tag else { throw DKIMSyntaxError("missing \(name)= tag") }
        guard let value = DKIMTagList.base64(tag.value), !value.isEmpty else { throw DKIMSyntaxError("bad \(name)=") }
        return value
    }

    static func domain(_ tag: DKIMTag?) throws(DKIMSyntaxError) -> String {
        guard let tag else { throw DKIMSyntaxError("missing d= tag") }
        let d = text(tag.value).lowercased()
        guard DKIMSignature.isDomainName(d) else { throw DKIMSyntaxError("bad d= domain") }
        return d
    }

    static func selector(_ tag: DKIMTag?) throws(DKIMSyntaxError) -> String {
        guard let tag else { throw DKIMSyntaxError("missing s= tag") }
        let s = text(tag.value).lowercased()
        guard DKIMSignature.isDomainName(s, allowSingleLabel: true) else { throw DKIMSyntaxError("bad s= selector") }
        return s
    }

    /// The value with b='s value removed, "including all surrounding whitespace" (RFC 6376 §3.7).
    static func withoutSignature(_ value: [UInt8], _ b: DKIMTag) -> [UInt8] {
        var stripped = value
        stripped.removeSubrange(b.valueRange)
        return stripped
    }
}

/// An ARC-Message-Signature (RFC 8617 §4.1.2): a DKIM-Signature whose i= is the instance, without v=.
public struct ARCMessageSignature: Sendable, Hashable {
    public var instance: Int
    public var algorithm: DKIMAlgorithm
    public var signature: [UInt8]
    public var bodyHash: [UInt8]
    public var headerCanonicalization: DKIMCanonicalization
    public var bodyCanonicalization: DKIMCanonicalization
    public var domain: String
    public var selector: String
    /// h=, lower-cased; may be empty.
    public var signedHeaders: [String]
    public var bodyLength: Int?
    public var timestamp: Int64?
    public var expiration: Int64?
    var valueWithoutSignature: [UInt8]

    public init(parsing value: [UInt8], algorithms: Set<DKIMAlgorithm> = [.rsaSHA256]) throws(DKIMSyntaxError) {
        let tags = try DKIMTagList.parse(value)
        func tag(_ name: String) -> DKIMTag? { tags.first { $0.name == name } }
        guard let i = tag("i") else { throw DKIMSyntaxError("missing i= tag") }
        instance = try ARCTags.instance(ARCTags.text(i.value))
        guard let a = tag("a") else { throw DKIMSyntaxError("missing a= tag") }
        algorithm = try ARCTags.algorithm(ARCTags.text(a.value), allowed: algorithms)
        signature = try ARCTags.base64(tag("b"), "b")
        bodyHash = try ARCTags.base64(tag("bh"), "bh")
        // c= is optional. A missing c= is read as relaxed/relaxed, the form ARC sealers use, as
        // dkimpy does and the ARC test suite expects (ams_fields_c_na), not DKIM's simple/simple.
        let c = tag("c").map { ARCTags.text($0.value) } ?? "relaxed/relaxed"
        let parts = c.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let header = DKIMCanonicalization(rawValue: String(parts[0])),
              let body = DKIMCanonicalization(rawValue: parts.count == 2 ? String(parts[1]) : "simple") else {
            throw DKIMSyntaxError("unknown canonicalization \(c.prefix(32))")
        }
        headerCanonicalization = header
        bodyCanonicalization = body
        domain = try ARCTags.domain(tag("d"))
        selector = try ARCTags.selector(tag("s"))
        // h= is required but, unlike DKIM, From need not be listed: the ARC suite passes an empty h=.
        guard let h = tag("h") else { throw DKIMSyntaxError("missing h= tag") }
        let names = ARCTags.text(h.value).lowercased()
        // An empty name ("from::to") selects no field, which is what the suite expects (ams_fields_h_mis_hdr).
        signedHeaders = names.split(separator: ":", omittingEmptySubsequences: true).map(String.init)
        guard signedHeaders.count <= DKIMLimits.maxSignedHeaders else { throw DKIMSyntaxError("h= too long") }
        // §4.1.2: the AMS must not cover ARC-Seal fields (they are added after it).
        guard !signedHeaders.contains("arc-seal") else { throw DKIMSyntaxError("h= includes ARC-Seal") }
        bodyLength = try ARCTags.timestamp(tag("l"), "l").map { Int(clamping: $0) }
        timestamp = try ARCTags.timestamp(tag("t"), "t")
        expiration = try ARCTags.timestamp(tag("x"), "x")
        if let t = timestamp, let x = expiration, x <= t { throw DKIMSyntaxError("x= is not after t=") }
        guard let b = tag("b") else { throw DKIMSyntaxError("missing b= tag") }
        valueWithoutSignature = ARCTags.withoutSignature(value, b)
    }
}

/// An ARC-Seal (RFC 8617 §4.1.3).
public struct ARCSeal: Sendable, Hashable {
    public var instance: Int
    public var algorithm: DKIMAlgorithm
    public var signature: [UInt8]
    /// cv=.
    public var chainValidation: ARCResult
    public var domain: String
    public var selector: String
    public var timestamp: Int64?
    var valueWithoutSignature: [UInt8]

    public init(parsing value: [UInt8], algorithms: Set<DKIMAlgorithm> = [.rsaSHA256]) throws(DKIMSyntaxError) {
        let tags = try DKIMTagList.parse(value)
        func tag(_ name: String) -> DKIMTag? { tags.first { $0.name == name } }
        guard let i = tag("i") else { throw DKIMSyntaxError("missing i= tag") }
        instance = try ARCTags.instance(ARCTags.text(i.value))
        guard let a = tag("a") else { throw DKIMSyntaxError("missing a= tag") }
        algorithm = try ARCTags.algorithm(ARCTags.text(a.value), allowed: algorithms)
        signature = try ARCTags.base64(tag("b"), "b")
        guard let cv = tag("cv") else { throw DKIMSyntaxError("missing cv= tag") }
        guard let status = ARCResult(rawValue: ARCTags.text(cv.value)) else { throw DKIMSyntaxError("bad cv= value") }
        chainValidation = status
        domain = try ARCTags.domain(tag("d"))
        selector = try ARCTags.selector(tag("s"))
        timestamp = try ARCTags.timestamp(tag("t"), "t")
        // §4.1.3: the seal covers the ARC sets, never other fields: an h= makes it invalid.
        guard tag("h") == nil else { throw DKIMSyntaxError("h= is not allowed in ARC-Seal") }
        guard let b = tag("b") else { throw DKIMSyntaxError("missing b= tag") }
        valueWithoutSignature = ARCTags.withoutSignature(value, b)
    }
}

/// An ARC-Authentication-Results value: arc-info = instance [CFWS] ";" authres-payload (RFC 8617 §4.1.1).
public struct ARCAuthenticationResults: Sendable, Hashable {
    public var instance: Int
    /// The payload after "i=N;", unfolded and trimmed.
    public var payload: String
    /// The payload parsed as an Authentication-Results value, when it parses.
    public var parsed: AuthenticationResultsHeader?

    public init(parsing value: [UInt8]) throws(DKIMSyntaxError) {
        // instance = [CFWS] "i" [CFWS] "=" [CFWS] 1*2DIGIT [CFWS]
        var cursor = AuthenticationResultsParser.Cursor(value)
        func skip() throws(DKIMSyntaxError) {
            do { try cursor.skipCFWS() } catch { throw DKIMSyntaxError("bad comment in instance") }
        }
        try skip()
        // ABNF literals are case-insensitive (RFC 5234 §2.3): "i" or "I".
        guard cursor.peek == UInt8(ascii: "i") || cursor.peek == UInt8(ascii: "I") else {
            throw DKIMSyntaxError("AAR does not start with i=")
        }
        cursor.index += 1
        try skip()
        guard cursor.peek == UInt8(ascii: "=") else { throw DKIMSyntaxError("AAR does not start with i=") }
        cursor.index += 1
        try skip()
        let start = cursor.index
        while let b = cursor.peek, isDigit(b) { cursor.index += 1 }
        instance = try ARCTags.instance(String(decoding: value[start..<cursor.index], as: UTF8.self))
        try skip()
        guard cursor.peek == UInt8(ascii: ";") else { throw DKIMSyntaxError("AAR i= not followed by ;") }
        let rest = Array(value[(cursor.index + 1)...])
        payload = String(decoding: HeaderField.unfoldAndTrim(rest), as: UTF8.self)
        parsed = try? AuthenticationResultsParser.parse(rest)
    }
}
