// FacteurDNS: IPv4 and IPv6 addresses as A (RFC 1035 §3.4.1) and AAAA (RFC 3596 §2.2) records carry
// them, with their text forms: dotted quad, and RFC 4291 §2.2 input / RFC 5952 §4 canonical output.

import NIOCore

/// An IPv4 address: four octets in network order.
public struct IPv4Address: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    /// Exactly four octets, or nil.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 else { return nil }
        self.bytes = bytes
    }

    /// Dotted-quad text, `192.0.2.1`; no leading zeros, no shorter forms.
    public init?(_ text: String) {
        let parts = text.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [UInt8] = []
        for part in parts {
            guard (1...3).contains(part.count), part.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
            if part.count > 1 && part.first == UInt8(ascii: "0") { return nil }
            let value = part.reduce(0) { $0 * 10 + Int($1 - 0x30) }
            guard value <= 255 else { return nil }
            out.append(UInt8(value))
        }
        self.bytes = out
    }

    public var description: String { bytes.map(String.init).joined(separator: ".") }
}

/// An IPv6 address: sixteen octets in network order.
public struct IPv6Address: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    /// Exactly sixteen octets, or nil.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// Text form of RFC 4291 §2.2: groups of hex digits, one `::`, optionally an embedded dotted quad.
    public init?(_ text: String) {
        let utf8 = Array(text.utf8)
        guard !utf8.isEmpty, utf8.count <= 45 else { return nil }
        var head: [UInt16] = []
        var tail: [UInt16] = []
        var sawDoubleColon = false
        // Split on "::" once.
        var pieces: [ArraySlice<UInt8>] = []
        if let range = Self.find(doubleColonIn: utf8) {
            sawDoubleColon = true
            pieces = [utf8[..<range], utf8[(range + 2)...]]
            if pieces[1].starts(with: [UInt8(ascii: ":")]) { return nil }
            if Self.find(doubleColonIn: Array(pieces[1])) != nil { return nil }
        } else {
            pieces = [utf8[...]]
        }
        func groups(_ slice: ArraySlice<UInt8>, allowV4Tail: Bool) -> [UInt16]? {
            if slice.isEmpty { return [] }
            let fields = slice.split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
            var out: [UInt16] = []
            for (position, field) in fields.enumerated() {
                if allowV4Tail, position == fields.count - 1, field.contains(UInt8(ascii: ".")) {
                    guard let v4 = IPv4Address(String(decoding: field, as: UTF8.self)) else { return nil }
                    out.append(UInt16(v4.bytes[0]) << 8 | UInt16(v4.bytes[1]))
                    out.append(UInt16(v4.bytes[2]) << 8 | UInt16(v4.bytes[3]))
                    continue
                }
                guard (1...4).contains(field.count) else { return nil }
                var value: UInt16 = 0
                for byte in field {
                    guard let digit = Self.hexValue(byte) else { return nil }
                    value = value << 4 | UInt16(digit)
                }
                out.append(value)
            }
            return out
        }
        if sawDoubleColon {
            guard let h = groups(pieces[0], allowV4Tail: false), let t = groups(pieces[1], allowV4Tail: true) else {
                return nil
            }
            head = h
            tail = t
            guard head.count + tail.count <= 7 else { return nil }
        } else {
            guard let all = groups(pieces[0], allowV4Tail: true), all.count == 8 else { return nil }
            head = all
        }
        let words = head + Array(repeating: 0, count: 8 - head.count - tail.count) + tail
        self.bytes = words.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
    }

    /// RFC 5952 §4: lower-case hex, no leading zeros, the longest run (of two or more) of zero
    /// groups shortened to `::`, the first such run when two are equally long.
    public var description: String {
        let words = stride(from: 0, to: 16, by: 2).map { UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]) }
        var bestStart = -1
        var bestLength = 1
        var index = 0
        while index < 8 {
            if words[index] == 0 {
                var end = index
                while end < 8 && words[end] == 0 { end += 1 }
                if end - index > bestLength {
                    bestStart = index
                    bestLength = end - index
                }
                index = end
            } else {
                index += 1
            }
        }
        func hex(_ range: Range<Int>) -> String {
            words[range].map { String($0, radix: 16) }.joined(separator: ":")
        }
        if bestStart < 0 { return hex(0..<8) }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLength)..<8)
    }

    private static func find(doubleColonIn bytes: [UInt8]) -> Int? {
        guard bytes.count >= 2 else { return nil }
        for index in 0..<(bytes.count - 1) where bytes[index] == UInt8(ascii: ":") && bytes[index + 1] == UInt8(ascii: ":") {
            return index
        }
        return nil
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// An address of either family, as the outbound queue connects to it.
public enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    case v4(IPv4Address)
    case v6(IPv6Address)

    /// Either text form; nil if it is neither.
    public init?(_ text: String) {
        if let v4 = IPv4Address(text) {
            self = .v4(v4)
        } else if let v6 = IPv6Address(text) {
            self = .v6(v6)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .v4(let a): a.description
        case .v6(let a): a.description
        }
    }

    /// A NIO socket address for connecting to this address on `port`.
    public func socketAddress(port: Int) throws -> SocketAddress {
        try SocketAddress(ipAddress: description, port: port)
    }
}

/// An address block, `192.0.2.0/24` or `2001:db8::/32` (a bare address is a /32 or /128):
/// for configuration lists such as trusted networks and known forwarders.
public struct IPNetwork: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let prefixLength: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(String(parts[0])) else { return nil }
        let maximum = address.bytes.count * 8
        if parts.count == 2 {
            guard let length = Int(parts[1]), (0...maximum).contains(length) else { return nil }
            prefixLength = length
        } else {
            prefixLength = maximum
        }
        self.address = address
    }

    public func contains(_ candidate: IPAddress) -> Bool {
        Self.prefixMatches(candidate.bytes, address.bytes, prefixLength)
    }

    /// The first `prefix` bits of `a` and `b` are equal (and both are of one family).
    public static func prefixMatches(_ a: [UInt8], _ b: [UInt8], _ prefix: Int) -> Bool {
        guard a.count == b.count, prefix >= 0, prefix <= a.count * 8 else { return false }
        var bits = prefix
        for (x, y) in zip(a, b) {
            if bits <= 0 { return true }
            let mask: UInt8 = bits >= 8 ? 0xFF : ~(0xFF >> UInt8(bits))
            if x & mask != y & mask { return false }
            bits -= 8
        }
        return true
    }

    public var description: String { "\(address)/\(prefixLength)" }
}

extension IPAddress {
    /// The address octets, 4 or 16.
    public var bytes: [UInt8] {
        switch self {
        case .v4(let a): a.bytes
        case .v6(let a): a.bytes
        }
    }
}
