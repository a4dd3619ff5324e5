// FacteurMailAuth: the Public Suffix List (https://publicsuffix.org/list/, format and algorithm) used
// by RFC 7489 §3.2 to find a domain's Organizational Domain: the public suffix plus one label. Rules
// are read from a file at run time so the list can be updated without a rebuild. Internationalised
// rules and inputs are compared as lower-cased A-labels (RFC 5890 §2.3.2.1), produced with our own
// Punycode encoder (RFC 3492 §6.3).

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Why a list could not be loaded.
public enum PublicSuffixListError: Error, Equatable, Sendable {
    /// The file could not be read.
    case unreadable(String)
    /// The file was larger than `PublicSuffixList.maxFileSize`.
    case tooLarge
    /// No rule was found: the file is not a public suffix list.
    case empty
}

/// A parsed Public Suffix List. Immutable and `Sendable`: load it once and share it.
public struct PublicSuffixList: Sendable, Hashable {
    /// Which part of the list a rule came from (the `===BEGIN ICANN DOMAINS===` and
    /// `===BEGIN PRIVATE DOMAINS===` sections).
    public enum Section: String, Sendable, Hashable {
        case icann, `private`
    }

    /// The real list is about 230 kB; anything past 16 MB is not a suffix list.
    public static let maxFileSize = 16 << 20
    /// RFC 1035 §2.3.4: names longer than 253 characters in text form (255 octets in wire form) do not exist.
    static let maxDomainLength = 253
    /// RFC 1035 §2.3.4: 127 labels is the most a 255-octet name can hold.
    static let maxLabels = 127

    /// Plain rules (`co.uk`), as lower-cased A-labels joined by dots.
    private var exact: Set<String> = []
    /// Wildcard rules `*.ck`, stored without the `*.` (`ck`).
    private var wildcardParents: Set<String> = []
    /// Exception rules `!www.ck`, stored without the `!` (`www.ck`).
    private var exceptions: Set<String> = []

    /// How many rules were read.
    public private(set) var ruleCount = 0

    /// Reads the list from a file in the publicsuffix.org format.
    public init(contentsOf path: String, includePrivateDomains: Bool = true) throws(PublicSuffixListError) {
        let data: Data
        do {
            let url = URL(fileURLWithPath: path)
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            if size > Self.maxFileSize { throw PublicSuffixListError.tooLarge }
            data = try Data(contentsOf: url)
        } catch let error as PublicSuffixListError {
            throw error
        } catch {
            throw .unreadable("\(path): \(error)")
        }
        if data.count > Self.maxFileSize { throw .tooLarge }
        self.init(parsing: String(decoding: data, as: UTF8.self), includePrivateDomains: includePrivateDomains)
        if ruleCount == 0 { throw .empty }
    }

    /// Parses the list's text. One rule per line; only the text up to the first whitespace counts;
    /// `//` starts a comment line. Lines that are not valid rules are skipped.
    /// `includePrivateDomains: false` keeps only the ICANN section, as some receivers prefer.
    public init(parsing text: String, includePrivateDomains: Bool = true) {
        var section: Section = .icann
        for rawLine in text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }) {
            let line = rawLine.drop { $0 == " " || $0 == "\t" }
            if line.hasPrefix("//") {
                if line.contains("===BEGIN PRIVATE DOMAINS===") { section = .private }
                if line.contains("===BEGIN ICANN DOMAINS===") { section = .icann }
                continue
            }
            let rule = line.prefix { $0 != " " && $0 != "\t" }
            if rule.isEmpty { continue }
            if section == .private && !includePrivateDomains { continue }
            add(rule: String(rule))
        }
    }

    private mutating func add(rule: String) {
        var text = Substring(rule)
        var isException = false
        if text.hasPrefix("!") {
            isException = true
            text = text.dropFirst()
        }
        guard let labels = Self.asciiLabels(String(text), allowWildcard: true), !labels.isEmpty else { return }
        if isException {
            // An exception must name at least two labels: it makes its parent the public suffix.
            guard labels.count >= 2, !labels.contains("*") else { return }
            exceptions.insert(labels.joined(separator: "."))
        } else if labels[0] == "*" {
            // Only a leftmost wildcard is in use on the list; anything else is skipped.
            guard labels.count >= 2, !labels.dropFirst().contains("*") else { return }
            wildcardParents.insert(labels.dropFirst().joined(separator: "."))
        } else {
            guard !labels.contains("*") else { return }
            exact.insert(labels.joined(separator: "."))
        }
        ruleCount += 1
    }

    /// The number of rightmost labels of `labels` that form its public suffix (publicsuffix.org
    /// algorithm): an exception rule wins and gives its own labels minus the leftmost; otherwise the
    /// matching rule with the most labels; otherwise the implicit rule `*` (one label).
    func publicSuffixLength(_ labels: [String]) -> Int {
        let count = labels.count
        // Suffixes from the longest (the whole name) to the shortest (the TLD).
        var suffixes: [String] = []
        suffixes.reserveCapacity(count)
        for start in 0..<count {
            suffixes.append(labels[start...].joined(separator: "."))
        }
        for start in 0..<count where exceptions.contains(suffixes[start]) {
            return count - start - 1
        }
        for start in 0..<count {
            if exact.contains(suffixes[start]) { return count - start }
            if start + 1 < count, wildcardParents.contains(suffixes[start + 1]) { return count - start }
        }
        return 1
    }

    /// The public suffix of `domain` (`co.uk` for `www.example.co.uk`), in the form the domain was
    /// given (lower-cased; U-labels stay U-labels); nil for an empty or malformed name.
    public func publicSuffix(_ domain: String) -> String? {
        guard let (original, ascii) = Self.split(domain) else { return nil }
        let length = publicSuffixLength(ascii)
        return original.suffix(length).joined(separator: ".")
    }

    /// The registrable domain (RFC 7489 §3.2 step 3–4, the Organizational Domain): the public suffix
    /// plus one label. Nil when `domain` is itself a public suffix, or is empty or malformed (a
    /// leading dot, an empty label).
    public func registrableDomain(_ domain: String) -> String? {
        guard let (original, ascii) = Self.split(domain) else { return nil }
        let length = publicSuffixLength(ascii)
        guard original.count > length else { return nil }
        return original.suffix(length + 1).joined(separator: ".")
    }

    /// Whether `domain` is exactly a public suffix.
    public func isPublicSuffix(_ domain: String) -> Bool {
        guard let (_, ascii) = Self.split(domain) else { return false }
        return publicSuffixLength(ascii) == ascii.count
    }

    /// The domain's labels as given (lower-cased) and as A-labels. One final dot (a fully qualified
    /// name) is accepted; a leading dot, an empty label or an oversized name is refused.
    static func split(_ domain: String) -> (original: [String], ascii: [String])? {
        var text = Substring(domain)
        if text.hasSuffix(".") { text = text.dropLast() }
        guard !text.isEmpty, text.utf8.count <= maxDomainLength * 4 else { return nil }
        let original = text.split(separator: ".", omittingEmptySubsequences: false).map { $0.lowercased() }
        guard original.count <= maxLabels, !original.contains(where: \.isEmpty) else { return nil }
        guard let ascii = asciiLabels(String(text), allowWildcard: false) else { return nil }
        return (original, ascii)
    }

    /// Lower-cased A-labels of a name, or nil when a label is empty, too long or cannot be encoded.
    static func asciiLabels(_ domain: String, allowWildcard: Bool) -> [String]? {
        var labels: [String] = []
        for part in domain.split(separator: ".", omittingEmptySubsequences: false) {
            guard !part.isEmpty else { return nil }
            if part == "*" {
                guard allowWildcard else { return nil }
                labels.append("*")
                continue
            }
            guard let label = Punycode.aLabel(String(part)) else { return nil }
            labels.append(label)
        }
        guard labels.count <= maxLabels, labels.reduce(0, { $0 + $1.utf8.count + 1 }) <= maxDomainLength + 1 else {
            return nil
        }
        return labels
    }

    /// A domain name in the form DMARC compares and queries: lower-cased A-labels without a final dot
    /// (RFC 5890 §2.3.2.1; DMARCbis §5.3.1 converts U-labels to A-labels). Nil when the name is
    /// empty, has an empty label, a label over 63 octets, or more than 253 characters.
    public static func asciiDomain(_ domain: String) -> String? {
        var text = Substring(domain)
        if text.hasSuffix(".") { text = text.dropLast() }
        guard !text.isEmpty, text.utf8.count <= maxDomainLength * 4,
              let labels = asciiLabels(String(text), allowWildcard: false) else { return nil }
        return labels.joined(separator: ".")
    }
}

/// Punycode (RFC 3492) encoding of one label, for turning U-labels into A-labels. Only what DMARC
/// and the suffix list need: lower-casing and encoding, not the full IDNA2008 validity rules.
enum Punycode {
    private static let base = 36, tMin = 1, tMax = 26, skew = 38, damp = 700
    private static let initialBias = 72, initialN = 128
    /// RFC 1035 §2.3.4.
    static let maxLabelLength = 63

    /// The label as an A-label: ASCII labels are lower-cased; others are lower-cased, put in
    /// Normalization Form C where available, and encoded as `xn--` + Punycode. Nil when the result is
    /// longer than 63 octets or the label holds characters no name may hold (controls, dots).
    static func aLabel(_ label: String) -> String? {
        guard label.utf8.count <= maxLabelLength * 4 else { return nil }
        if label.utf8.allSatisfy({ $0 < 0x80 }) {
            let lower = String(decoding: label.utf8.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }, as: UTF8.self)
            guard lower.utf8.count <= maxLabelLength,
                  lower.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ".") }) else { return nil }
            return lower
        }
        var lower = label.lowercased()
        #if !canImport(FoundationEssentials)
        lower = lower.precomposedStringWithCanonicalMapping
        #endif
        let scalars = lower.unicodeScalars.map(\.value)
        guard !scalars.contains(where: { $0 <= 0x20 || $0 == 0x7F || $0 == 0x2E }),
              let encoded = encode(scalars) else { return nil }
        let result = "xn--" + encoded
        return result.utf8.count <= maxLabelLength ? result : nil
    }

    /// RFC 3492 §6.3, the encoding procedure. Nil on overflow (only reachable with absurd input).
    static func encode(_ input: [UInt32]) -> String? {
        var output: [UInt8] = input.filter { $0 < 0x80 }.map { UInt8($0) }
        let basicCount = output.count
        var handled = basicCount
        if basicCount > 0 { output.append(UInt8(ascii: "-")) }
        var n = UInt32(initialN)
        var delta = 0
        var bias = initialBias
        while handled < input.count {
            guard let m = input.filter({ $0 >= n }).min() else { return nil }
            let (step, overflow) = Int(m - n).multipliedReportingOverflow(by: handled + 1)
            guard !overflow, step <= Int(Int32.max) - delta else { return nil }
            delta += step
            n = m
            for c in input {
                if c < n {
                    delta += 1
                    guard delta <= Int(Int32.max) else { return nil }
                }
                if c == n {
                    var q = delta
                    var k = base
                    while true {
                        let t = k <= bias ? tMin : (k >= bias + tMax ? tMax : k - bias)
                        if q < t { break }
                        output.append(digit(t + (q - t) % (base - t)))
                        q = (q - t) / (base - t)
                        k += base
                    }
                    output.append(digit(q))
                    bias = adapt(delta: delta, points: handled + 1, first: handled == basicCount)
                    delta = 0
                    handled += 1
                }
            }
            delta += 1
            n += 1
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// RFC 3492 §6.1.
    private static func adapt(delta: Int, points: Int, first: Bool) -> Int {
        var delta = first ? delta / damp : delta / 2
        delta += delta / points
        var k = 0
        while delta > ((base - tMin) * tMax) / 2 {
            delta /= base - tMin
            k += base
        }
        return k + (base - tMin + 1) * delta / (delta + skew)
    }

    /// RFC 3492 §5: 0–25 are a–z, 26–35 are 0–9.
    private static func digit(_ value: Int) -> UInt8 {
        value < 26 ? UInt8(ascii: "a") + UInt8(value) : UInt8(ascii: "0") + UInt8(value - 26)
    }
}
