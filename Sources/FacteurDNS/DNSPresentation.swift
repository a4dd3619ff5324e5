// FacteurDNS: one resource record from its zone-file text (RFC 1035 §5.1), for StaticResolver data in
// tests and development configurations: `owner [TTL] [IN] TYPE RDATA`, owner names absolute, RDATA for
// A, AAAA, NS, CNAME, PTR, MX, TXT (quoted strings), SOA and TLSA (hex). No $ORIGIN, no parentheses.

/// Why a record's text could not be read.
public enum DNSPresentationError: Error, Equatable, Sendable {
    case badSyntax(String)
    case badName(String, DNSNameError)
    case unsupportedType(String)
}

extension DNSResourceRecord {
    /// Reads `example.org. 300 IN MX 10 mail.example.org.`; TTL defaults to 300, class to IN.
    public init(presentation text: String) throws(DNSPresentationError) {
        var tokens = try Self.tokenize(text)
        guard tokens.count >= 2 else { throw .badSyntax(text) }
        let owner = try Self.name(tokens.removeFirst())
        var ttl: UInt32 = 300
        if let first = tokens.first, let value = UInt32(first) {
            ttl = min(value, DNSLimits.maxTTL)
            tokens.removeFirst()
        }
        if tokens.first?.uppercased() == "IN" { tokens.removeFirst() }
        guard !tokens.isEmpty else { throw .badSyntax(text) }
        let type = tokens.removeFirst().uppercased()
        func need(_ count: Int) throws(DNSPresentationError) {
            guard tokens.count == count else { throw .badSyntax(text) }
        }
        let data: DNSRecordData
        switch type {
        case "A":
            try need(1)
            guard let address = IPv4Address(tokens[0]) else { throw .badSyntax(text) }
            data = .a(address)
        case "AAAA":
            try need(1)
            guard let address = IPv6Address(tokens[0]) else { throw .badSyntax(text) }
            data = .aaaa(address)
        case "NS":
            try need(1)
            data = .ns(try Self.name(tokens[0]))
        case "CNAME":
            try need(1)
            data = .cname(try Self.name(tokens[0]))
        case "PTR":
            try need(1)
            data = .ptr(try Self.name(tokens[0]))
        case "MX":
            try need(2)
            guard let preference = UInt16(tokens[0]) else { throw .badSyntax(text) }
            data = .mx(MXRecord(preference: preference, exchange: try Self.name(tokens[1])))
        case "TXT":
            guard !tokens.isEmpty else { throw .badSyntax(text) }
            let strings = tokens.map { Array($0.utf8) }
            guard strings.allSatisfy({ $0.count <= 255 }) else { throw .badSyntax(text) }
            data = .txt(TXTRecord(strings: strings))
        case "SOA":
            try need(7)
            let numbers = tokens[2...].compactMap { UInt32($0) }
            guard numbers.count == 5 else { throw .badSyntax(text) }
            data = .soa(SOARecord(mname: try Self.name(tokens[0]), rname: try Self.name(tokens[1]), serial: numbers[0],
                                  refresh: numbers[1], retry: numbers[2], expire: numbers[3], minimum: numbers[4]))
        case "TLSA":
            guard tokens.count >= 4, let usage = UInt8(tokens[0]), let selector = UInt8(tokens[1]),
                  let matching = UInt8(tokens[2]), let hex = Self.hex(tokens[3...].joined()) else {
                throw .badSyntax(text)
            }
            data = .tlsa(TLSARecord(certificateUsage: usage, selector: selector, matchingType: matching,
                                    certificateAssociationData: hex))
        default:
            throw .unsupportedType(type)
        }
        self.init(name: owner, ttl: ttl, data: data)
    }

    private static func name(_ text: String) throws(DNSPresentationError) -> DNSName {
        do {
            return try DNSName(text)
        } catch {
            throw .badName(text, error)
        }
    }

    private static func hex(_ text: String) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        var index = 0
        while index < digits.count {
            guard let high = UInt8(String(decoding: digits[index...index + 1], as: UTF8.self), radix: 16) else {
                return nil
            }
            out.append(high)
            index += 2
        }
        return out
    }

    /// Splits on blanks; a double-quoted token may hold blanks, `\"` and `\\`.
    private static func tokenize(_ text: String) throws(DNSPresentationError) -> [String] {
        var tokens: [String] = []
        var current = ""
        var inQuotes = false
        var escaped = false
        var hasToken = false
        for character in text {
            if escaped {
                current.append(character)
                escaped = false
            } else if character == "\\" && inQuotes {
                escaped = true
            } else if character == "\"" {
                inQuotes.toggle()
                hasToken = true
            } else if (character == " " || character == "\t") && !inQuotes {
                if hasToken { tokens.append(current) }
                current = ""
                hasToken = false
            } else {
                current.append(character)
                hasToken = true
            }
        }
        guard !inQuotes, !escaped else { throw .badSyntax(text) }
        if hasToken { tokens.append(current) }
        return tokens
    }
}
