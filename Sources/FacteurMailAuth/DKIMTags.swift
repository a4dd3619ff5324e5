// FacteurMailAuth: DKIM tag=value lists (RFC 6376 §3.2), the DKIM-Signature header field
// (§3.5, with RFC 8301 and RFC 8463 algorithms) and the key record (§3.6.1), parsed on bytes.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

public enum DKIMLimits {
    /// A DKIM-Signature or key record larger than this is refused.
    public static let maxTagListLength = 16 * 1024
    /// At most this many tags in a list.
    public static let maxTags = 64
    /// At most this many names in h=.
    public static let maxSignedHeaders = 256
    /// At most this many DKIM-Signature fields (the topmost) are verified per message; the rest are ignored.
    public static let maxSignaturesVerified = 10
    /// RFC 8301 §3.2: RSA keys shorter than this are not valid.
    public static let minimumRSAKeyBits = 1024
    /// Seconds a t= may lie in the future, and an x= in the past, before the signature is refused.
    public static let defaultClockSkew: Int64 = 300
}

/// Why a tag list, signature or key record is unusable (→ permerror).
public struct DKIMSyntaxError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
    init(_ message: String) { self.message = message }
}

/// One tag of a tag-list, with where its value stands in the input (for b= removal, §3.7).
struct DKIMTag {
    var name: String
    var value: [UInt8]
    var valueRange: Range<Int>
}

enum DKIMTagList {
    static func isWSP(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 }
    static func isFWS(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0D || b == 0x0A }

    /// tag-list = tag-spec *( ";" tag-spec ) [ ";" ] (RFC 6376 §3.2). Values keep inner FWS trimmed
    /// at both ends; a repeated tag name is an error.
    static func parse(_ bytes: [UInt8]) throws(DKIMSyntaxError) -> [DKIMTag] {
        guard bytes.count <= DKIMLimits.maxTagListLength else { throw DKIMSyntaxError("tag list too long") }
        var tags: [DKIMTag] = []
        var start = 0
        while start <= bytes.count {
            let end = bytes[start...].firstIndex(of: UInt8(ascii: ";")) ?? bytes.count
            let spec = bytes[start..<end]
            if spec.allSatisfy(isFWS) {
                // Only the last spec may be empty (a trailing ";").
                guard end >= bytes.count || bytes[(end + 1)...].allSatisfy(isFWS) else {
                    throw DKIMSyntaxError("empty tag")
                }
                break
            }
            guard let equals = spec.firstIndex(of: UInt8(ascii: "=")) else { throw DKIMSyntaxError("tag without =") }
            let rawName = spec[..<equals]
            let name = rawName.drop(while: isFWS).reversed().drop(while: isFWS).reversed()
            // tag-name = ALPHA *ALNUMPUNC
            guard let first = name.first, isAlpha(first),
                  name.allSatisfy({ isAlnum($0) || $0 == UInt8(ascii: "_") }) else {
                throw DKIMSyntaxError("bad tag name")
            }
            var valueStart = equals + 1
            var valueEnd = end
            while valueStart < valueEnd, isFWS(bytes[valueStart]) { valueStart += 1 }
            while valueEnd > valueStart, isFWS(bytes[valueEnd - 1]) { valueEnd -= 1 }
            let value = Array(bytes[valueStart..<valueEnd])
            // tag-value = [ tval *( 1*(WSP / FWS) tval ) ], tval = 1*VALCHAR (%x21-3A / %x3C-7E)
            guard value.allSatisfy({ isFWS($0) || ((0x21...0x7E).contains($0) && $0 != UInt8(ascii: ";")) || $0 >= 0x80 }) else {
                throw DKIMSyntaxError("bad character in tag value")
            }
            let nameString = String(decoding: name, as: UTF8.self)
            guard !tags.contains(where: { $0.name == nameString }) else { throw DKIMSyntaxError("duplicate tag \(nameString)") }
            tags.append(DKIMTag(name: nameString, value: value, valueRange: (equals + 1)..<end))
            guard tags.count <= DKIMLimits.maxTags else { throw DKIMSyntaxError("too many tags") }
            start = end + 1
        }
        return tags
    }

    /// Base64 with FWS removed (RFC 6376 §3.5 b= and bh=).
    static func base64(_ value: [UInt8]) -> [UInt8]? {
        let compact = value.filter { !isFWS($0) }
        guard let data = Data(base64Encoded: Data(compact)) else { return nil }
        return [UInt8](data)
    }
}

/// The signing algorithm (a=).
public enum DKIMAlgorithm: String, Sendable, Hashable {
    case rsaSHA256 = "rsa-sha256"
    /// RFC 8301 §3.1: no longer valid; parsed only to be reported as failing.
    case rsaSHA1 = "rsa-sha1"
    case ed25519SHA256 = "ed25519-sha256"

    var keyType: String {
        switch self {
        case .rsaSHA256, .rsaSHA1: "rsa"
        case .ed25519SHA256: "ed25519"
        }
    }

    var hashName: String { self == .rsaSHA1 ? "sha1" : "sha256" }
}

/// c= (RFC 6376 §3.4).
public enum DKIMCanonicalization: String, Sendable, Hashable {
    case simple, relaxed
}

/// A parsed DKIM-Signature header field (RFC 6376 §3.5).
public struct DKIMSignature: Sendable, Hashable {
    public var algorithm: DKIMAlgorithm
    public var signature: [UInt8]
    public var bodyHash: [UInt8]
    public var headerCanonicalization: DKIMCanonicalization
    public var bodyCanonicalization: DKIMCanonicalization
    /// d=, lower-cased.
    public var domain: String
    /// h=, lower-cased, in order.
    public var signedHeaders: [String]
    /// i= (defaults to "@" + d).
    public var identity: String
    /// l=: how many body octets are signed, or nil for the whole body.
    public var bodyLength: Int?
    /// s=.
    public var selector: String
    /// t= and x=, seconds since the epoch.
    public var timestamp: Int64?
    public var expiration: Int64?
    /// The raw field value with the b= value emptied: what the header hash covers (§3.7).
    var valueWithoutSignature: [UInt8]

    /// Parses the value of a DKIM-Signature field (the bytes after the colon, folding kept).
    public init(parsing value: [UInt8]) throws(DKIMSyntaxError) {
        let tags = try DKIMTagList.parse(value)
        func tag(_ name: String) -> DKIMTag? { tags.first { $0.name == name } }
        func required(_ name: String) throws(DKIMSyntaxError) -> [UInt8] {
            guard let t = tag(name) else { throw DKIMSyntaxError("missing \(name)= tag") }
            return t.value
        }
        func text(_ bytes: [UInt8]) -> String { String(decoding: bytes.filter { !DKIMTagList.isFWS($0) }, as: UTF8.self) }

        guard text(try required("v")) == "1" else { throw DKIMSyntaxError("unsupported version") }
        let a = text(try required("a")).lowercased()
        guard let algorithm = DKIMAlgorithm(rawValue: a) else { throw DKIMSyntaxError("unknown algorithm \(a)") }
        self.algorithm = algorithm
        guard let b = DKIMTagList.base64(try required("b")), !b.isEmpty else { throw DKIMSyntaxError("bad b=") }
        signature = b
        guard let bh = DKIMTagList.base64(try required("bh")), !bh.isEmpty else { throw DKIMSyntaxError("bad bh=") }
        bodyHash = bh

        let c = text(tag("c")?.value ?? Array("simple/simple".utf8)).lowercased()
        let parts = c.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let header = DKIMCanonicalization(rawValue: String(parts[0])),
              let body = DKIMCanonicalization(rawValue: parts.count == 2 ? String(parts[1]) : "simple") else {
            throw DKIMSyntaxError("unknown canonicalization \(c)")
        }
        headerCanonicalization = header
        bodyCanonicalization = body

        domain = text(try required("d")).lowercased()
        guard DKIMSignature.isDomainName(domain) else { throw DKIMSyntaxError("bad d= domain") }
        selector = text(try required("s")).lowercased()
        guard DKIMSignature.isDomainName(selector, allowSingleLabel: true) else { throw DKIMSyntaxError("bad s= selector") }

        let h = text(try required("h")).lowercased()
        signedHeaders = h.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard signedHeaders.count <= DKIMLimits.maxSignedHeaders else { throw DKIMSyntaxError("h= too long") }
        guard signedHeaders.allSatisfy({ !$0.isEmpty }) else { throw DKIMSyntaxError("empty name in h=") }
        // §5.4: From MUST be signed.
        guard signedHeaders.contains("from") else { throw DKIMSyntaxError("h= does not include From") }

        // §3.5 i=: its domain must be d= or a subdomain of it.
        if let i = tag("i") {
            identity = text(i.value)
            guard let at = identity.lastIndex(of: "@") else { throw DKIMSyntaxError("i= has no @") }
            let iDomain = identity[identity.index(after: at)...].lowercased()
            guard iDomain == domain || iDomain.hasSuffix("." + domain) else {
                throw DKIMSyntaxError("i= domain is not within d=")
            }
        } else {
            identity = "@" + domain
        }
        func number(_ name: String) throws(DKIMSyntaxError) -> Int64? {
            guard let t = tag(name) else { return nil }
            let digits = text(t.value)
            // §3.5: up to 76 digits are allowed but values that large are meaningless; saturate.
            guard !digits.isEmpty, digits.utf8.allSatisfy(isDigit) else { throw DKIMSyntaxError("bad \(name)= number") }
            return digits.count > 18 ? Int64.max : Int64(digits) ?? Int64.max
        }
        bodyLength = try number("l").map { Int(clamping: $0) }
        timestamp = try number("t")
        expiration = try number("x")
        if let t = timestamp, let x = expiration, x <= t { throw DKIMSyntaxError("x= is not after t=") }
        if let q = tag("q"), !text(q.value).lowercased().split(separator: ":").contains("dns/txt") {
            throw DKIMSyntaxError("unsupported query method")
        }
        // The value with b='s value emptied (§3.7: "including all surrounding whitespace").
        guard let bTag = tag("b") else { throw DKIMSyntaxError("missing b= tag") }
        var stripped = value
        stripped.removeSubrange(bTag.valueRange)
        valueWithoutSignature = stripped
    }

    /// Letters, digits, hyphens and underscores in dot-separated non-empty labels (RFC 6376 §3.5 d=, s=).
    static func isDomainName(_ text: String, allowSingleLabel: Bool = true) -> Bool {
        let labels = text.split(separator: ".", omittingEmptySubsequences: false)
        guard !text.isEmpty, text.utf8.count <= 253, allowSingleLabel || labels.count >= 2 else { return false }
        return labels.allSatisfy { label in
            !label.isEmpty && label.utf8.count <= 63 &&
                label.utf8.allSatisfy { isAlnum($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") }
        }
    }
}

/// A DKIM key record (RFC 6376 §3.6.1, RFC 8463 §4).
public struct DKIMKeyRecord: Sendable, Hashable {
    /// k= (default "rsa").
    public var keyType: String
    /// h= (nil: every hash algorithm is acceptable).
    public var hashAlgorithms: [String]?
    /// s= service types (default "*").
    public var serviceTypes: [String]
    /// t= flags: "y" testing, "s" strict identity.
    public var flags: [String]
    /// p=; empty means the key was revoked.
    public var publicKey: [UInt8]

    public var isRevoked: Bool { publicKey.isEmpty }
    public var isTesting: Bool { flags.contains("y") }

    public init(parsing bytes: [UInt8]) throws(DKIMSyntaxError) {
        let tags = try DKIMTagList.parse(bytes)
        func text(_ name: String) -> String? {
            tags.first { $0.name == name }.map { String(decoding: $0.value.filter { !DKIMTagList.isFWS($0) }, as: UTF8.self) }
        }
        func list(_ name: String) -> [String]? {
            text(name)?.lowercased().split(separator: ":", omittingEmptySubsequences: true).map(String.init)
        }
        // §3.6.1: v= is optional, but if present it must be first and "DKIM1".
        if let index = tags.firstIndex(where: { $0.name == "v" }) {
            guard index == 0, text("v") == "DKIM1" else { throw DKIMSyntaxError("bad key record version") }
        }
        keyType = text("k")?.lowercased() ?? "rsa"
        hashAlgorithms = list("h")
        serviceTypes = list("s") ?? ["*"]
        flags = list("t") ?? []
        guard let p = tags.first(where: { $0.name == "p" }) else { throw DKIMSyntaxError("key record without p=") }
        if p.value.allSatisfy(DKIMTagList.isFWS) {
            publicKey = []
        } else {
            guard let key = DKIMTagList.base64(p.value) else { throw DKIMSyntaxError("bad base64 in p=") }
            publicKey = key
        }
    }
}
