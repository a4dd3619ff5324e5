// FacteurMailAuth: the DMARC policy record — RFC 7489 §6.3 (tags) and §6.4 (ABNF), the RFC 7489
// §6.6.3 step 6 rule for a missing or invalid p=, RFC 9091 §4 (np=), and the DMARCbis tags psd= and
// t= (draft-ietf-dmarc-dmarcbis-41 §4.7, §4.8). Unknown tags are ignored; a malformed value falls
// back to the tag's default. Hard limits keep hostile records small.

/// The policy a Domain Owner requests for mail that fails DMARC (RFC 7489 §6.3 p=).
public enum DMARCPolicy: String, Sendable, Hashable, CaseIterable {
    case none, quarantine, reject

    /// The next less strict policy (RFC 7489 §6.6.4: what applies to mail pct= leaves out;
    /// DMARCbis §4.7 t=y: "one level below the specified policy").
    public var downgraded: DMARCPolicy {
        switch self {
        case .reject: .quarantine
        case .quarantine, .none: .none
        }
    }
}

/// Identifier alignment mode (RFC 7489 §3.1, adkim= and aspf=).
public enum DMARCAlignmentMode: String, Sendable, Hashable {
    /// Same Organizational Domain.
    case relaxed = "r"
    /// Identical domains.
    case strict = "s"
}

/// DMARCbis §4.7 psd=: whether the record's domain is a Public Suffix Domain.
public enum DMARCPublicSuffixFlag: String, Sendable, Hashable {
    /// A PSD: the Organizational Domain is the name one label below.
    case yes = "y"
    /// Not a PSD, and the Organizational Domain of itself and its subdomains.
    case no = "n"
    /// Unknown (the default): the tree walk decides.
    case unknown = "u"
}

/// RFC 7489 §6.3 fo=: when failure reports are wanted.
public enum DMARCFailureReportingOption: String, Sendable, Hashable, CaseIterable {
    /// All mechanisms failed to give an aligned pass (the default).
    case allFail = "0"
    /// Any mechanism failed to give an aligned pass.
    case anyFail = "1"
    /// A DKIM signature failed, aligned or not (RFC 6651).
    case dkimFailure = "d"
    /// SPF failed, aligned or not (RFC 6652).
    case spfFailure = "s"
}

/// One DMARC reporting URI (RFC 7489 §6.2, §6.4 dmarc-uri) with its optional size limit.
public struct DMARCReportURI: Sendable, Hashable, CustomStringConvertible {
    /// The URI as published, without the `!size` suffix.
    public var uri: String
    /// The scheme, lower-cased (`mailto`, `https`).
    public var scheme: String
    /// The `!size` limit in octets (RFC 7489 §6.2; obsolete in DMARCbis, which says to ignore it).
    public var maxSize: UInt64?

    /// For a `mailto:` URI: the address (percent-decoded, without `?headers`), else nil.
    public var mailtoAddress: String? {
        guard scheme == "mailto" else { return nil }
        let rest = uri.utf8.drop { $0 != UInt8(ascii: ":") }.dropFirst()
        let address = rest.prefix { $0 != UInt8(ascii: "?") }
        guard let decoded = DMARCReportURI.percentDecoded(Array(address)), !decoded.isEmpty else { return nil }
        return decoded
    }

    /// For a `mailto:` URI: the domain of the address, lower-cased; the domain RFC 7489 §7.1
    /// compares with the policy domain to decide whether external verification is needed.
    public var mailtoDomain: String? {
        guard let address = mailtoAddress, let at = address.lastIndex(of: "@") else { return nil }
        let domain = address[address.index(after: at)...]
        return domain.isEmpty ? nil : domain.lowercased()
    }

    public var description: String {
        maxSize.map { "\(uri)!\($0)" } ?? uri
    }

    static func percentDecoded(_ bytes: [UInt8]) -> String? {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "%") {
                guard index + 2 < bytes.count, let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2]) else {
                    return nil
                }
                out.append(high << 4 | low)
                index += 3
            } else {
                out.append(bytes[index])
                index += 1
            }
        }
        return String(validating: out, as: UTF8.self)
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// Parses `dmarc-uri [ "!" 1*DIGIT [ "k" / "m" / "g" / "t" ] ]`. The URI must have an RFC 3986
    /// §3.1 scheme and a non-empty rest of visible ASCII. A malformed size is ignored, as DMARCbis
    /// §4.8 says reporters should ignore the obsolete size altogether.
    init?(parsing bytes: ArraySlice<UInt8>) {
        let bang = bytes.firstIndex(of: UInt8(ascii: "!"))
        let uriBytes = bytes[bytes.startIndex..<(bang ?? bytes.endIndex)]
        guard let colon = uriBytes.firstIndex(of: UInt8(ascii: ":")) else { return nil }
        let scheme = uriBytes[uriBytes.startIndex..<colon]
        guard let first = scheme.first, DMARCRecord.isAlpha(first),
              scheme.allSatisfy({ DMARCRecord.isAlpha($0) || DMARCRecord.isDigit($0) || $0 == UInt8(ascii: "+")
                  || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") }),
              colon + 1 < uriBytes.endIndex,
              uriBytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return nil }
        self.uri = String(decoding: uriBytes, as: UTF8.self)
        self.scheme = String(decoding: scheme, as: UTF8.self).lowercased()
        if let bang {
            self.maxSize = Self.size(bytes[(bang + 1)...])
        }
    }

    /// `1*DIGIT [ "k" / "m" / "g" / "t" ]` in octets, or nil when malformed or beyond UInt64.
    static func size(_ bytes: ArraySlice<UInt8>) -> UInt64? {
        var digits = bytes
        var multiplier: UInt64 = 1
        if let last = digits.last, !DMARCRecord.isDigit(last) {
            switch last | 0x20 {
            case UInt8(ascii: "k"): multiplier = 1 << 10
            case UInt8(ascii: "m"): multiplier = 1 << 20
            case UInt8(ascii: "g"): multiplier = 1 << 30
            case UInt8(ascii: "t"): multiplier = 1 << 40
            default: return nil
            }
            digits = digits.dropLast()
        }
        guard let value = DMARCRecord.decimal(digits) else { return nil }
        let (product, overflow) = value.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : product
    }
}

/// Why a TXT string is not a usable DMARC record.
public enum DMARCRecordError: Error, Equatable, Sendable {
    /// It does not start with `v=DMARC1` (RFC 7489 §6.3 v=): not a DMARC record at all; discovery
    /// discards it (§6.6.3 step 2).
    case notDMARC
    /// Longer than `DMARCLimits.maxRecordLength`.
    case tooLong
}

/// A parsed DMARC policy record (RFC 7489 §6.3).
public struct DMARCRecord: Sendable, Hashable {
    /// p=, after the RFC 7489 §6.6.3 step 6 rule: when p= (or sp=, np=) is missing or invalid and
    /// rua= holds a valid URI, the record acts as `p=none`.
    public var policy: DMARCPolicy
    /// sp= (nil when absent): the policy for existing subdomains when the record was found at the
    /// Organizational Domain (§6.6.3).
    public var subdomainPolicy: DMARCPolicy?
    /// np= (RFC 9091 §4.1; DMARCbis §4.7): the policy for non-existent subdomains.
    public var nonExistentSubdomainPolicy: DMARCPolicy?
    /// pct= (0…100, default 100; RFC 7489 §6.3). Removed by DMARCbis, still honoured here.
    public var percentage: Int
    /// adkim= (default relaxed).
    public var dkimAlignment: DMARCAlignmentMode
    /// aspf= (default relaxed).
    public var spfAlignment: DMARCAlignmentMode
    /// rua= — the syntactically valid URIs, at most `DMARCLimits.maxReportURIs`.
    public var aggregateReportURIs: [DMARCReportURI]
    /// ruf=.
    public var failureReportURIs: [DMARCReportURI]
    /// fo= (default `0`). Meaningful only with ruf=.
    public var failureReportingOptions: Set<DMARCFailureReportingOption>
    /// rf= (default `afrf`), lower-cased.
    public var reportFormats: [String]
    /// ri= in seconds (default 86400).
    public var reportInterval: UInt32
    /// psd= (DMARCbis; default unknown).
    public var publicSuffixDomain: DMARCPublicSuffixFlag
    /// t=y (DMARCbis): the owner is testing; a failing message gets one policy level less.
    public var testing: Bool
    /// False when p=, sp= or np= is missing or invalid and rua= has no valid URI: RFC 7489 §6.6.3
    /// step 6 and DMARCbis §4.10.1 say the receiver applies no DMARC processing then.
    public var isApplicable: Bool
    /// What was wrong in the record and ignored or defaulted (for logs).
    public var notes: [String]

    /// The tag names this implementation understands; others are ignored (RFC 7489 §6.3).
    static let knownTags: Set<String> = ["v", "p", "sp", "np", "pct", "adkim", "aspf", "rua", "ruf", "fo", "rf", "ri", "psd", "t"]

    /// Whether a TXT string starts with `v=DMARC1` as the first tag (RFC 7489 §6.3 v=, §6.6.3 step 2).
    /// The tag name is case-insensitive (ABNF literal); the value `DMARC1` is case-sensitive
    /// (DMARCbis §4.8 `%s"DMARC1"`).
    public static func isDMARC1(_ text: some Collection<UInt8>) -> Bool {
        let bytes = Array(text.prefix(256))
        let first = bytes.split(separator: UInt8(ascii: ";"), maxSplits: 1, omittingEmptySubsequences: false).first ?? []
        guard let (name, value) = tag(trimmed(first)) else { return false }
        return name == "v" && value.elementsEqual("DMARC1".utf8)
    }

    public init(parsing text: String) throws(DMARCRecordError) {
        try self.init(parsing: Array(text.utf8))
    }

    /// Parses a record (the TXT record's character-strings already joined, RFC 7489 §6.1).
    public init(parsing bytes: [UInt8]) throws(DMARCRecordError) {
        guard bytes.count <= DMARCLimits.maxRecordLength else { throw .tooLong }
        guard Self.isDMARC1(bytes) else { throw .notDMARC }

        var values: [String: ArraySlice<UInt8>] = [:]
        var notes: [String] = []
        let parts = bytes.split(separator: UInt8(ascii: ";"), omittingEmptySubsequences: false).dropFirst()
        for (index, part) in parts.enumerated() {
            if index >= DMARCLimits.maxTags {
                notes.append("more than \(DMARCLimits.maxTags) tags; the rest ignored")
                break
            }
            let content = Self.trimmed(part)
            if content.isEmpty { continue }
            guard let (name, value) = Self.tag(content) else {
                notes.append("malformed tag ignored")
                continue
            }
            guard Self.knownTags.contains(name) else { continue }
            if values[name] != nil {
                notes.append("duplicate \(name)= ignored")
                continue
            }
            values[name] = value
        }

        func keyword(_ name: String) -> String? {
            values[name].map { String(decoding: $0, as: UTF8.self).lowercased() }
        }
        func policyTag(_ name: String) -> (value: DMARCPolicy?, invalid: Bool) {
            guard let text = keyword(name) else { return (nil, false) }
            if let policy = DMARCPolicy(rawValue: text) { return (policy, false) }
            notes.append("invalid \(name)=\(text.prefix(32))")
            return (nil, true)
        }

        aggregateReportURIs = Self.uriList(values["rua"], name: "rua", notes: &notes)
        failureReportURIs = Self.uriList(values["ruf"], name: "ruf", notes: &notes)

        let p = policyTag("p")
        let sp = policyTag("sp")
        let np = policyTag("np")
        if p.value == nil && !p.invalid { notes.append("no p=") }
        let policyProblem = p.value == nil || sp.invalid || np.invalid
        if policyProblem {
            // RFC 7489 §6.6.3 step 6; DMARCbis §4.10.1: with a valid rua, act as if "p=none" was
            // retrieved; without one, apply no DMARC processing.
            isApplicable = !aggregateReportURIs.isEmpty
            policy = .none
            subdomainPolicy = nil
            nonExistentSubdomainPolicy = nil
            if isApplicable { notes.append("treated as p=none because rua= is valid") }
        } else {
            isApplicable = true
            policy = p.value ?? .none
            subdomainPolicy = sp.value
            nonExistentSubdomainPolicy = np.value
        }

        percentage = 100
        if let raw = values["pct"] {
            if let value = Self.decimal(raw), value <= 100 {
                percentage = Int(value)
            } else {
                notes.append("invalid pct= ignored")
            }
        }
        dkimAlignment = keyword("adkim").flatMap(DMARCAlignmentMode.init(rawValue:)) ?? .relaxed
        spfAlignment = keyword("aspf").flatMap(DMARCAlignmentMode.init(rawValue:)) ?? .relaxed
        publicSuffixDomain = keyword("psd").flatMap(DMARCPublicSuffixFlag.init(rawValue:)) ?? .unknown
        testing = keyword("t") == "y"

        failureReportingOptions = [.allFail]
        if let raw = keyword("fo") {
            let options = raw.split(separator: ":", omittingEmptySubsequences: false).map {
                DMARCFailureReportingOption(rawValue: $0.trimmingWSP())
            }
            if !options.isEmpty, options.count <= 8, options.allSatisfy({ $0 != nil }) {
                failureReportingOptions = Set(options.compactMap { $0 })
            } else {
                notes.append("invalid fo= ignored")
            }
        }
        reportFormats = ["afrf"]
        if let raw = keyword("rf") {
            let formats = raw.split(separator: ":").map { $0.trimmingWSP() }.filter { !$0.isEmpty }
            if !formats.isEmpty, formats.count <= 8 { reportFormats = formats } else { notes.append("invalid rf= ignored") }
        }
        reportInterval = 86400
        if let raw = values["ri"] {
            if let value = Self.decimal(raw), value <= UInt64(UInt32.max) {
                reportInterval = UInt32(value)
            } else {
                notes.append("invalid ri= ignored")
            }
        }
        self.notes = notes
    }

    /// `dmarc-urilist`: comma-separated URIs with optional WSP around the commas; invalid ones are
    /// dropped (RFC 7489 §6.3: unsupported or malformed URIs are ignored).
    static func uriList(_ raw: ArraySlice<UInt8>?, name: String, notes: inout [String]) -> [DMARCReportURI] {
        guard let raw else { return [] }
        var uris: [DMARCReportURI] = []
        for item in raw.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false) {
            if uris.count == DMARCLimits.maxReportURIs {
                notes.append("more than \(DMARCLimits.maxReportURIs) \(name) URIs; the rest ignored")
                break
            }
            if let uri = DMARCReportURI(parsing: trimmed(item)) {
                uris.append(uri)
            } else {
                notes.append("invalid \(name) URI ignored")
            }
        }
        return uris
    }

    // MARK: - ABNF helpers (RFC 7489 §6.4)

    /// `dmarc-tag = 1*ALPHA equals 1*dmarc-value`, with `equals = *WSP "=" *WSP`; the name lower-cased.
    static func tag(_ content: ArraySlice<UInt8>) -> (String, ArraySlice<UInt8>)? {
        guard let equals = content.firstIndex(of: UInt8(ascii: "=")) else { return nil }
        let name = trimmed(content[content.startIndex..<equals])
        let value = trimmed(content[(equals + 1)...])
        guard !name.isEmpty, name.count <= 16, name.allSatisfy(isAlpha), !value.isEmpty,
              value.allSatisfy({ ($0 >= 0x20 && $0 <= 0x7E) || $0 == 0x09 }) else { return nil }
        return (String(decoding: name.map { $0 | 0x20 }, as: UTF8.self), value)
    }

    /// Without leading and trailing WSP (RFC 5234: SP / HTAB).
    static func trimmed(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var slice = bytes
        while let first = slice.first, first == 0x20 || first == 0x09 { slice = slice.dropFirst() }
        while let last = slice.last, last == 0x20 || last == 0x09 { slice = slice.dropLast() }
        return slice
    }

    /// `1*DIGIT`, at most 19 digits so the value fits in UInt64 without a trap.
    static func decimal(_ bytes: ArraySlice<UInt8>) -> UInt64? {
        guard !bytes.isEmpty, bytes.count <= 19, bytes.allSatisfy(isDigit) else { return nil }
        return bytes.reduce(0) { $0 * 10 + UInt64($1 - UInt8(ascii: "0")) }
    }

    static func isAlpha(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
    }

    static func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }
}

extension Substring {
    fileprivate func trimmingWSP() -> String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}

/// The hard limits of DMARC processing, in one place.
public enum DMARCLimits {
    /// A DMARC record longer than this is refused. Real records are under 1 kB; a TXT RRset can be
    /// far larger.
    public static let maxRecordLength = 4096
    /// Tags read from one record.
    public static let maxTags = 32
    /// URIs kept from one rua= or ruf= list (RFC 7489 §6.2 lets receivers limit them; at least two).
    public static let maxReportURIs = 8
    /// DMARCbis §4.10: a tree walk makes at most 8 queries.
    public static let maxTreeWalkQueries = 8
    /// DMARCbis §4.10 step 4: a long name is cut to this many labels after the first query.
    public static let treeWalkShortenedLabels = 7
    /// Distinct passing DKIM signing domains checked for alignment; a message with more is unusual
    /// and the rest are ignored (they cannot turn a pass into a fail).
    public static let maxDKIMDomains = 8
    /// `_dmarc` TXT queries one evaluation may make (tree walks for the author domain, the SPF
    /// domain and the DKIM domains share answers). Past it, lookups count as temporary failures.
    public static let maxQueriesPerEvaluation = 48
}
