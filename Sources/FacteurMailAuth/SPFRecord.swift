// FacteurMailAuth: the SPF record grammar (RFC 7208 §4.5, §4.6, §5, §6, §7.1): version, directives
// (qualifier + mechanism), modifiers, dual CIDR lengths and macro strings, parsed on bytes. A record
// with any syntax error anywhere is a permerror (RFC 7208 §4.6) before anything is evaluated.

import FacteurDNS

/// Hard limits on hostile input, and the RFC 7208 processing limits.
public enum SPFLimits {
    /// RFC 7208 §4.6.4: at most 10 mechanisms/modifiers that cause DNS queries.
    public static let maxDNSLookups = 10
    /// RFC 7208 §4.6.4: at most 2 "void lookups" (NXDOMAIN or no data).
    public static let maxVoidLookups = 2
    /// RFC 7208 §4.6.4: an "mx" mechanism may look up at most 10 MX targets; a "ptr" mechanism and
    /// the %{p} macro consider at most 10 PTR names.
    public static let maxAddressLookupsPerMechanism = 10
    /// A TXT record larger than this is refused (a DNS message is at most 64 KB anyway).
    public static let maxRecordLength = 8192
    /// At most this many terms in one record.
    public static let maxTerms = 512
    /// RFC 7208 §7.3: an expanded domain-spec is cut to 253 characters by dropping left labels.
    public static let maxDomainLength = 253
    /// An explanation string (RFC 7208 §6.2) is cut to this length.
    public static let maxExplanationLength = 1024
}

/// RFC 7208 §4.6.2 qualifiers.
public enum SPFQualifier: Character, Sendable, Hashable {
    case pass = "+"
    case fail = "-"
    case softfail = "~"
    case neutral = "?"

    var result: SPFResult {
        switch self {
        case .pass: .pass
        case .fail: .fail
        case .softfail: .softfail
        case .neutral: .neutral
        }
    }
}

/// One piece of a macro-string (RFC 7208 §7.1).
public enum SPFMacroToken: Sendable, Hashable {
    case literal([UInt8])
    /// `%{` letter [digits] ["r"] [delimiters] `}`; `urlEscape` when the letter is upper case.
    case macro(letter: UInt8, keep: Int?, reverse: Bool, delimiters: [UInt8], urlEscape: Bool)
}

/// A parsed macro-string.
public struct SPFMacroString: Sendable, Hashable {
    public var tokens: [SPFMacroToken]
    /// True when the string has no macro at all.
    public var isLiteral: Bool { tokens.allSatisfy { if case .literal = $0 { true } else { false } } }
}

/// RFC 7208 §5 mechanisms.
public enum SPFMechanism: Sendable, Hashable {
    case all
    case include(SPFMacroString)
    case a(SPFMacroString?, cidr4: Int, cidr6: Int)
    case mx(SPFMacroString?, cidr4: Int, cidr6: Int)
    case ptr(SPFMacroString?)
    case ip4([UInt8], prefix: Int)
    case ip6([UInt8], prefix: Int)
    case exists(SPFMacroString)

    /// The mechanism as a record writes it (macros shown by name), for reasons and logs.
    public var text: String {
        switch self {
        case .all: return "all"
        case .include: return "include"
        case .a(_, let c4, let c6): return "a" + (c4 < 32 ? "/\(c4)" : "") + (c6 < 128 ? "//\(c6)" : "")
        case .mx(_, let c4, let c6): return "mx" + (c4 < 32 ? "/\(c4)" : "") + (c6 < 128 ? "//\(c6)" : "")
        case .ptr: return "ptr"
        case .ip4(let bytes, let prefix):
            return "ip4:" + bytes.map(String.init).joined(separator: ".") + "/\(prefix)"
        case .ip6(let bytes, let prefix):
            return "ip6:" + ((IPv6Address(bytes: bytes)?.description) ?? "?") + "/\(prefix)"
        case .exists: return "exists"
        }
    }

    /// RFC 7208 §4.6.4: these cost one DNS lookup each.
    var causesLookup: Bool {
        switch self {
        case .include, .a, .mx, .ptr, .exists: true
        case .all, .ip4, .ip6: false
        }
    }
}

public struct SPFDirective: Sendable, Hashable {
    public var qualifier: SPFQualifier
    public var mechanism: SPFMechanism
}

/// Why a record did not parse.
public struct SPFSyntaxError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
    init(_ message: String) { self.message = message }
}

/// A parsed "v=spf1" record.
public struct SPFRecord: Sendable, Hashable {
    public var directives: [SPFDirective]
    /// RFC 7208 §6.1.
    public var redirect: SPFMacroString?
    /// RFC 7208 §6.2.
    public var explanation: SPFMacroString?

    /// True when `text` is an SPF record at all (RFC 7208 §4.5: "v=spf1" then a space or the end).
    public static func isSPF(_ text: [UInt8]) -> Bool {
        let version = Array("v=spf1".utf8)
        guard text.count >= version.count,
              zip(text.prefix(version.count), version).allSatisfy({ lower($0) == $1 }) else { return false }
        return text.count == version.count || text[version.count] == 0x20
    }

    /// Parses a record. Throws on any syntax error (→ permerror, RFC 7208 §4.6).
    public init(parsing text: [UInt8]) throws(SPFSyntaxError) {
        guard text.count <= SPFLimits.maxRecordLength else { throw SPFSyntaxError("record too long") }
        guard Self.isSPF(text) else { throw SPFSyntaxError("not an SPF record") }
        directives = []
        var terms = text.dropFirst(6).split(separator: 0x20, omittingEmptySubsequences: true)
        guard terms.count <= SPFLimits.maxTerms else { throw SPFSyntaxError("too many terms") }
        var seenRedirect = false, seenExp = false
        while !terms.isEmpty {
            let term = Array(terms.removeFirst())
            // modifier = name "=" macro-string, name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." )
            var nameEnd = 0
            while nameEnd < term.count, isNameByte(term[nameEnd], first: nameEnd == 0) { nameEnd += 1 }
            if nameEnd > 0, nameEnd < term.count, term[nameEnd] == UInt8(ascii: "=") {
                let name = term[..<nameEnd].map(lower)
                let value = Array(term[(nameEnd + 1)...])
                switch name {
                case Array("redirect".utf8):
                    if seenRedirect { throw SPFSyntaxError("two redirect modifiers") }
                    seenRedirect = true
                    redirect = try Self.domainSpec(value)
                case Array("exp".utf8):
                    if seenExp { throw SPFSyntaxError("two exp modifiers") }
                    seenExp = true
                    explanation = try Self.domainSpec(value)
                default:
                    // Unknown modifiers are ignored (RFC 7208 §6) but must still be well-formed.
                    _ = try SPFMacroString(parsing: value, allowExplanationLetters: false)
                }
                continue
            }
            directives.append(try Self.directive(term))
        }
    }

    private static func directive(_ term: [UInt8]) throws(SPFSyntaxError) -> SPFDirective {
        var rest = term[...]
        var qualifier = SPFQualifier.pass
        if let first = rest.first, let q = SPFQualifier(rawValue: Character(UnicodeScalar(first))) {
            qualifier = q
            rest = rest.dropFirst()
        }
        let nameEnd = rest.firstIndex { $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: "/") } ?? rest.endIndex
        let name = rest[..<nameEnd].map(lower)
        let afterName = rest[nameEnd...]
        let argument: ArraySlice<UInt8>? = afterName.first == UInt8(ascii: ":") ? afterName.dropFirst() : nil
        let cidrPart: ArraySlice<UInt8> = afterName.first == UInt8(ascii: "/") ? afterName : []
        func noArguments() throws(SPFSyntaxError) {
            if !afterName.isEmpty { throw SPFSyntaxError("\(String(decoding: name, as: UTF8.self)) takes no argument") }
        }
        let mechanism: SPFMechanism
        switch String(decoding: name, as: UTF8.self) {
        case "all":
            try noArguments()
            mechanism = .all
        case "include", "exists":
            guard let argument, cidrPart.isEmpty else { throw SPFSyntaxError("missing domain") }
            let spec = try domainSpec(Array(argument))
            mechanism = name == Array("include".utf8) ? .include(spec) : .exists(spec)
        case "ptr":
            if !cidrPart.isEmpty { throw SPFSyntaxError("ptr takes no CIDR") }
            mechanism = .ptr(try argument.map { (a) throws(SPFSyntaxError) in try domainSpec(Array(a)) })
        case "a", "mx":
            var spec: SPFMacroString?
            var cidr = cidrPart
            if let argument {
                // The domain-spec ends where a dual-cidr-length starts: a "/" followed by digits or "/".
                let (domain, tail) = splitCIDR(argument)
                spec = try domainSpec(Array(domain))
                cidr = tail
            }
            let (c4, c6) = try dualCIDR(cidr)
            mechanism = name == Array("a".utf8) ? .a(spec, cidr4: c4, cidr6: c6) : .mx(spec, cidr4: c4, cidr6: c6)
        case "ip4":
            guard let argument else { throw SPFSyntaxError("ip4 needs an address") }
            let slash = argument.firstIndex(of: UInt8(ascii: "/"))
            let addressText = String(decoding: argument[..<(slash ?? argument.endIndex)], as: UTF8.self)
            guard let address = IPv4Address(addressText), isStrictIPv4(addressText) else {
                throw SPFSyntaxError("bad ip4 address")
            }
            var prefix = 32
            if let slash { prefix = try cidrLength(argument[(slash + 1)...], max: 32) }
            mechanism = .ip4(address.bytes, prefix: prefix)
        case "ip6":
            guard let argument else { throw SPFSyntaxError("ip6 needs an address") }
            let slash = argument.firstIndex(of: UInt8(ascii: "/"))
            let addressText = String(decoding: argument[..<(slash ?? argument.endIndex)], as: UTF8.self)
            guard let address = IPv6Address(addressText) else { throw SPFSyntaxError("bad ip6 address") }
            var prefix = 128
            if let slash { prefix = try cidrLength(argument[(slash + 1)...], max: 128) }
            mechanism = .ip6(address.bytes, prefix: prefix)
        default:
            throw SPFSyntaxError("unknown mechanism")
        }
        return SPFDirective(qualifier: qualifier, mechanism: mechanism)
    }

    /// Splits "domain/24//64" into the domain and the CIDR tail: the tail is the shortest suffix that
    /// is a valid dual-cidr-length.
    private static func splitCIDR(_ argument: ArraySlice<UInt8>) -> (ArraySlice<UInt8>, ArraySlice<UInt8>) {
        var index = argument.startIndex
        while index < argument.endIndex {
            if argument[index] == UInt8(ascii: "/") {
                let tail = argument[index...]
                if tail.allSatisfy({ $0 == UInt8(ascii: "/") || isDigit($0) }) {
                    return (argument[..<index], tail)
                }
            }
            index += 1
        }
        return (argument, [])
    }

    /// dual-cidr-length = [ ip4-cidr-length ] [ "/" ip6-cidr-length ] (RFC 7208 §5.6).
    private static func dualCIDR(_ text: ArraySlice<UInt8>) throws(SPFSyntaxError) -> (Int, Int) {
        if text.isEmpty { return (32, 128) }
        guard text.first == UInt8(ascii: "/") else { throw SPFSyntaxError("bad CIDR") }
        let body = text.dropFirst()
        if body.first == UInt8(ascii: "/") {
            return (32, try cidrLength(body.dropFirst(), max: 128))
        }
        if let slash = body.firstIndex(of: UInt8(ascii: "/")) {
            guard body[(slash + 1)...].first == UInt8(ascii: "/") else { throw SPFSyntaxError("bad CIDR") }
            return (try cidrLength(body[..<slash], max: 32), try cidrLength(body[(slash + 2)...], max: 128))
        }
        return (try cidrLength(body, max: 32), 128)
    }

    /// A decimal with no leading zero (RFC 7208 §5.6 ABNF), at most `max`.
    private static func cidrLength(_ text: ArraySlice<UInt8>, max: Int) throws(SPFSyntaxError) -> Int {
        guard !text.isEmpty, text.count <= 3, text.allSatisfy(isDigit),
              !(text.count > 1 && text.first == UInt8(ascii: "0")) else { throw SPFSyntaxError("bad CIDR length") }
        let value = text.reduce(0) { $0 * 10 + Int($1 - 0x30) }
        guard value <= max else { throw SPFSyntaxError("CIDR length out of range") }
        return value
    }

    /// domain-spec = macro-string domain-end (RFC 7208 §7.1). When the string ends with a literal, its
    /// last label must be a valid toplabel (optionally followed by one dot).
    static func domainSpec(_ text: [UInt8]) throws(SPFSyntaxError) -> SPFMacroString {
        guard !text.isEmpty else { throw SPFSyntaxError("empty domain-spec") }
        let spec = try SPFMacroString(parsing: text, allowExplanationLetters: false)
        if case .macro = spec.tokens.last { return spec }
        // domain-end = ( "." toplabel [ "." ] ) / macro-expand
        var literal = text[...]
        if literal.last == UInt8(ascii: ".") { literal = literal.dropLast() }
        guard let dot = literal.lastIndex(of: UInt8(ascii: ".")) else { throw SPFSyntaxError("domain has no dot") }
        let top = literal[(dot + 1)...]
        // A macro inside the last label makes the whole thing end in a literal that is not a label.
        guard isTopLabel(top) else { throw SPFSyntaxError("bad top label") }
        return spec
    }
}

/// toplabel = ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum / "-" ) alphanum )
func isTopLabel(_ label: ArraySlice<UInt8>) -> Bool {
    guard let first = label.first, let last = label.last, isAlnum(first), isAlnum(last) else { return false }
    guard label.allSatisfy({ isAlnum($0) || $0 == UInt8(ascii: "-") }) else { return false }
    return label.contains(where: isAlpha) || label.contains(UInt8(ascii: "-"))
}

func isStrictIPv4(_ text: String) -> Bool {
    let parts = text.split(separator: ".", omittingEmptySubsequences: false)
    return parts.count == 4 && parts.allSatisfy { $0.count >= 1 && $0.count <= 3 && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }
}

extension SPFMacroString {
    /// macro-string = *( macro-expand / macro-literal ) (RFC 7208 §7.1). `allowExplanationLetters`
    /// admits c, r and t, which only an explanation string may use.
    public init(parsing text: [UInt8], allowExplanationLetters: Bool) throws(SPFSyntaxError) {
        var tokens: [SPFMacroToken] = []
        var literal: [UInt8] = []
        var index = 0
        func flush() {
            if !literal.isEmpty { tokens.append(.literal(literal)); literal = [] }
        }
        while index < text.count {
            let byte = text[index]
            if byte != UInt8(ascii: "%") {
                // macro-literal = %x21-24 / %x26-7E; an explanation may also hold spaces.
                guard (0x21...0x7E).contains(byte) || (allowExplanationLetters && byte == 0x20) else {
                    throw SPFSyntaxError("bad character in macro-string")
                }
                literal.append(byte)
                index += 1
                continue
            }
            guard index + 1 < text.count else { throw SPFSyntaxError("lone %") }
            switch text[index + 1] {
            case UInt8(ascii: "%"): literal.append(UInt8(ascii: "%")); index += 2
            case UInt8(ascii: "_"): literal.append(0x20); index += 2
            case UInt8(ascii: "-"): literal.append(contentsOf: Array("%20".utf8)); index += 2
            case UInt8(ascii: "{"):
                guard let close = text[(index + 2)...].firstIndex(of: UInt8(ascii: "}")) else {
                    throw SPFSyntaxError("unterminated macro")
                }
                let body = text[(index + 2)..<close]
                guard let letterByte = body.first else { throw SPFSyntaxError("empty macro") }
                let letter = lower(letterByte)
                let allowed: [UInt8] = Array("slodiphv".utf8) + (allowExplanationLetters ? Array("crt".utf8) : [])
                guard allowed.contains(letter) else { throw SPFSyntaxError("unknown macro letter") }
                var rest = body.dropFirst()
                var digits = 0, keep: Int?
                while let d = rest.first, isDigit(d) {
                    digits += 1
                    guard digits <= 3 else { throw SPFSyntaxError("macro digits too long") }
                    keep = (keep ?? 0) * 10 + Int(d - 0x30)
                    rest = rest.dropFirst()
                }
                if keep == 0 { throw SPFSyntaxError("macro keeps zero parts") }
                var reverse = false
                if let r = rest.first, lower(r) == UInt8(ascii: "r") { reverse = true; rest = rest.dropFirst() }
                let delimiterSet = Array(".-+,/_=".utf8)
                guard rest.allSatisfy({ delimiterSet.contains($0) }) else { throw SPFSyntaxError("bad macro delimiter") }
                flush()
                tokens.append(.macro(letter: letter, keep: keep, reverse: reverse, delimiters: Array(rest),
                                     urlEscape: isUpper(letterByte)))
                index = close + 1
            default:
                throw SPFSyntaxError("bad macro escape")
            }
        }
        flush()
        self.tokens = tokens
    }
}

// Byte classes (ASCII only: SPF records are ASCII, RFC 7208 §3).
func lower(_ b: UInt8) -> UInt8 { (0x41...0x5A).contains(b) ? b | 0x20 : b }
func isUpper(_ b: UInt8) -> Bool { (0x41...0x5A).contains(b) }
func isAlpha(_ b: UInt8) -> Bool { (0x41...0x5A).contains(b) || (0x61...0x7A).contains(b) }
func isDigit(_ b: UInt8) -> Bool { (0x30...0x39).contains(b) }
func isAlnum(_ b: UInt8) -> Bool { isAlpha(b) || isDigit(b) }
private func isNameByte(_ b: UInt8, first: Bool) -> Bool {
    if first { return isAlpha(b) }
    return isAlnum(b) || b == UInt8(ascii: "-") || b == UInt8(ascii: "_") || b == UInt8(ascii: ".")
}
