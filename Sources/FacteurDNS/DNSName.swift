// FacteurDNS: a domain name as a list of labels (RFC 1035 §2.3.1, §3.1), compared without regard
// to ASCII case (RFC 4343), with the size limits of RFC 1035 §2.3.4 enforced on every construction.
// Callers give internationalised names as A-labels (RFC 5890); this type never converts U-labels.

/// Why a name was refused.
public enum DNSNameError: Error, Equatable, Sendable {
    /// A label was empty (two dots in a row, or a leading dot).
    case emptyLabel
    /// A label was longer than 63 octets (RFC 1035 §2.3.4).
    case labelTooLong
    /// The whole name was longer than 255 octets in wire form (RFC 1035 §2.3.4).
    case nameTooLong
    /// A character outside ASCII: internationalised names must be given as A-labels (RFC 5890 §2.3.2.1).
    case notASCII
    /// A backslash escape in the text form was malformed (RFC 1035 §5.1).
    case badEscape
}

/// A domain name: a sequence of labels, the root being the empty sequence.
///
/// Equality and hashing ignore ASCII case (RFC 4343 §3); the original spelling is kept for display.
public struct DNSName: Hashable, Sendable, CustomStringConvertible {
    /// The labels, most specific first, without the root's empty label.
    public let labels: [[UInt8]]

    /// The root name ".".
    public static let root = DNSName(uncheckedLabels: [])

    // No ExpressibleByStringLiteral on purpose: with it, `try DNSName("a..b")` would silently become a
    // literal conversion (SE-0213) and trap instead of throwing.

    init(uncheckedLabels: [[UInt8]]) {
        self.labels = uncheckedLabels
    }

    /// A name from labels, checked against the RFC 1035 §2.3.4 limits.
    public init(labels: [[UInt8]]) throws(DNSNameError) {
        var length = 1 // the root's zero-length octet
        for label in labels {
            if label.isEmpty { throw .emptyLabel }
            if label.count > DNSLimits.maxLabelLength { throw .labelTooLong }
            length += 1 + label.count
            if length > DNSLimits.maxNameLength { throw .nameTooLong }
        }
        self.labels = labels
    }

    /// A name from its text form: `mail.example.com`, with or without the final dot; `.` is the root.
    /// Backslash escapes (`\.`, `\\`, `\DDD`) are understood as in RFC 1035 §5.1.
    public init(_ text: String) throws(DNSNameError) {
        let bytes = Array(text.utf8)
        if bytes == [UInt8(ascii: ".")] {
            self = .root
            return
        }
        var labels: [[UInt8]] = []
        var current: [UInt8] = []
        var index = 0
        var sawAnything = false
        while index < bytes.count {
            let byte = bytes[index]
            if byte >= 0x80 { throw .notASCII }
            sawAnything = true
            if byte == UInt8(ascii: ".") {
                if current.isEmpty { throw .emptyLabel }
                labels.append(current)
                current = []
                index += 1
                // A final dot marks the name as fully qualified; it adds no label.
                continue
            }
            if byte == UInt8(ascii: "\\") {
                index += 1
                guard index < bytes.count else { throw .badEscape }
                let next = bytes[index]
                if next >= UInt8(ascii: "0") && next <= UInt8(ascii: "9") {
                    guard index + 2 < bytes.count else { throw .badEscape }
                    var value = 0
                    for digit in bytes[index...(index + 2)] {
                        guard digit >= UInt8(ascii: "0") && digit <= UInt8(ascii: "9") else { throw .badEscape }
                        value = value * 10 + Int(digit - UInt8(ascii: "0"))
                    }
                    guard value <= 255 else { throw .badEscape }
                    current.append(UInt8(value))
                    index += 3
                } else {
                    if next >= 0x80 { throw .notASCII }
                    current.append(next)
                    index += 1
                }
                continue
            }
            current.append(byte)
            index += 1
        }
        if !sawAnything { throw .emptyLabel }
        if !current.isEmpty { labels.append(current) }
        try self.init(labels: labels)
    }

    /// The length of the name in wire form, root octet included.
    public var wireLength: Int {
        labels.reduce(1) { $0 + 1 + $1.count }
    }

    public var isRoot: Bool { labels.isEmpty }

    /// The name with every ASCII letter in lower case (the cache's key form).
    public var lowercased: DNSName {
        DNSName(uncheckedLabels: labels.map { $0.map(Self.lowercase) })
    }

    /// The parent name (one label fewer); the root is its own parent.
    public var parent: DNSName {
        labels.isEmpty ? self : DNSName(uncheckedLabels: Array(labels.dropFirst()))
    }

    /// `label.self`, e.g. `_dmarc` prepended to `example.com`.
    public func prepending(_ label: String) throws(DNSNameError) -> DNSName {
        let prefix = try DNSName(label)
        return try DNSName(labels: prefix.labels + labels)
    }

    /// Whether this name equals `other` or lies below it (RFC 1034 §3.1 "subdomain").
    public func isSubdomain(of other: DNSName) -> Bool {
        guard labels.count >= other.labels.count else { return false }
        let tail = labels.suffix(other.labels.count)
        return zip(tail, other.labels).allSatisfy(Self.labelsEqual)
    }

    public static func == (lhs: DNSName, rhs: DNSName) -> Bool {
        lhs.labels.count == rhs.labels.count && zip(lhs.labels, rhs.labels).allSatisfy(labelsEqual)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(labels.count)
        for label in labels {
            hasher.combine(label.count)
            for byte in label { hasher.combine(Self.lowercase(byte)) }
        }
    }

    /// Text form without the final dot (the root is "."); dots, backslashes and unprintable
    /// octets inside a label are escaped as RFC 1035 §5.1 does.
    public var description: String {
        if labels.isEmpty { return "." }
        var out = ""
        for (position, label) in labels.enumerated() {
            if position > 0 { out += "." }
            for byte in label {
                switch byte {
                case UInt8(ascii: "."), UInt8(ascii: "\\"):
                    out += "\\" + String(UnicodeScalar(byte))
                case 0x21...0x7E:
                    out += String(UnicodeScalar(byte))
                default:
                    let digits = String(byte)
                    out += "\\" + String(repeating: "0", count: 3 - digits.count) + digits
                }
            }
        }
        return out
    }

    static func lowercase(_ byte: UInt8) -> UInt8 {
        (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")) ? byte | 0x20 : byte
    }

    static func labelsEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { lowercase($0) == lowercase($1) }
    }
}

extension DNSName {
    /// The reverse-lookup name of an address: `4.3.2.1.in-addr.arpa` (RFC 1035 §3.5) or the
    /// nibble form under `ip6.arpa` (RFC 3596 §2.5).
    public init(reverseOf address: IPAddress) {
        func ascii(_ s: String) -> [UInt8] { Array(s.utf8) }
        switch address {
        case .v4(let v4):
            let octets = v4.bytes.reversed().map { ascii(String($0)) }
            self.init(uncheckedLabels: octets + [ascii("in-addr"), ascii("arpa")])
        case .v6(let v6):
            let hex = Array("0123456789abcdef".utf8)
            var nibbles: [[UInt8]] = []
            for byte in v6.bytes.reversed() {
                nibbles.append([hex[Int(byte & 0x0F)]])
                nibbles.append([hex[Int(byte >> 4)]])
            }
            self.init(uncheckedLabels: nibbles + [ascii("ip6"), ascii("arpa")])
        }
    }
}
