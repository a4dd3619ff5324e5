// FacteurDNS: resource records (RFC 1035 §3.2.1, §4.1.3) and the RDATA forms Facteur reads:
// A, NS, CNAME, SOA, PTR, MX, TXT (RFC 1035 §3.3, §3.4), AAAA (RFC 3596), TLSA (RFC 6698 §2.1);
// any other type keeps its RDATA raw (RFC 3597).

/// MX RDATA (RFC 1035 §3.3.9).
public struct MXRecord: Hashable, Sendable {
    /// Lower is preferred (RFC 5321 §5.1).
    public var preference: UInt16
    public var exchange: DNSName
    public init(preference: UInt16, exchange: DNSName) {
        self.preference = preference
        self.exchange = exchange
    }
    /// RFC 7505 §3: "0 ." means the domain accepts no mail.
    public var isNullMX: Bool { exchange.isRoot }
}

/// TXT RDATA (RFC 1035 §3.3.14): one or more character-strings of up to 255 octets each.
public struct TXTRecord: Hashable, Sendable {
    /// The character-strings as they were on the wire.
    public var strings: [[UInt8]]
    public init(strings: [[UInt8]]) {
        self.strings = strings
    }
    /// A record from text, split into 255-octet character-strings as publishers do.
    public init(text: String) {
        let bytes = Array(text.utf8)
        var strings: [[UInt8]] = []
        var start = 0
        repeat {
            let end = min(start + 255, bytes.count)
            strings.append(Array(bytes[start..<end]))
            start = end
        } while start < bytes.count
        self.strings = strings
    }
    /// The strings concatenated without separators, as RFC 7208 §3.3 (SPF) and RFC 6376 §3.6.2.2
    /// (DKIM) both require.
    public var joined: [UInt8] { strings.flatMap { $0 } }
    /// `joined` as text; bytes that are not UTF-8 become U+FFFD.
    public var text: String { String(decoding: joined, as: UTF8.self) }
}

/// SOA RDATA (RFC 1035 §3.3.13).
public struct SOARecord: Hashable, Sendable {
    public var mname: DNSName
    public var rname: DNSName
    public var serial: UInt32
    public var refresh: UInt32
    public var retry: UInt32
    public var expire: UInt32
    /// RFC 2308 §4: the TTL of negative answers from this zone.
    public var minimum: UInt32
    public init(mname: DNSName, rname: DNSName, serial: UInt32, refresh: UInt32, retry: UInt32,
                expire: UInt32, minimum: UInt32) {
        self.mname = mname
        self.rname = rname
        self.serial = serial
        self.refresh = refresh
        self.retry = retry
        self.expire = expire
        self.minimum = minimum
    }
}

/// TLSA RDATA (RFC 6698 §2.1), the fields DANE for SMTP reads (RFC 7672 §3.1).
public struct TLSARecord: Hashable, Sendable {
    /// 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE (RFC 7218).
    public var certificateUsage: UInt8
    /// 0 full certificate, 1 SubjectPublicKeyInfo.
    public var selector: UInt8
    /// 0 exact, 1 SHA-256, 2 SHA-512.
    public var matchingType: UInt8
    public var certificateAssociationData: [UInt8]
    public init(certificateUsage: UInt8, selector: UInt8, matchingType: UInt8, certificateAssociationData: [UInt8]) {
        self.certificateUsage = certificateUsage
        self.selector = selector
        self.matchingType = matchingType
        self.certificateAssociationData = certificateAssociationData
    }
}

/// A record's data, decoded for the types Facteur uses.
public enum DNSRecordData: Hashable, Sendable {
    case a(IPv4Address)
    case aaaa(IPv6Address)
    case ns(DNSName)
    case cname(DNSName)
    case ptr(DNSName)
    case mx(MXRecord)
    case txt(TXTRecord)
    case soa(SOARecord)
    case tlsa(TLSARecord)
    /// Any other type, its RDATA as received (RFC 3597 §2).
    case unknown(type: DNSRecordType, rdata: [UInt8])

    public var type: DNSRecordType {
        switch self {
        case .a: .a
        case .aaaa: .aaaa
        case .ns: .ns
        case .cname: .cname
        case .ptr: .ptr
        case .mx: .mx
        case .txt: .txt
        case .soa: .soa
        case .tlsa: .tlsa
        case .unknown(let type, _): type
        }
    }
}

/// A resource record (RFC 1035 §4.1.3).
public struct DNSResourceRecord: Hashable, Sendable, CustomStringConvertible {
    public var name: DNSName
    public var dnsClass: DNSClass
    /// Seconds the record may be cached (RFC 2181 §8: values above 2^31-1 read as zero).
    public var ttl: UInt32
    public var data: DNSRecordData

    public init(name: DNSName, ttl: UInt32, data: DNSRecordData, dnsClass: DNSClass = .internet) {
        self.name = name
        self.dnsClass = dnsClass
        self.ttl = ttl
        self.data = data
    }

    public var type: DNSRecordType { data.type }

    public var description: String {
        let rdata: String
        switch data {
        case .a(let a): rdata = a.description
        case .aaaa(let a): rdata = a.description
        case .ns(let n), .cname(let n), .ptr(let n): rdata = n.description + "."
        case .mx(let mx): rdata = "\(mx.preference) \(mx.exchange)."
        case .txt(let txt):
            rdata = txt.strings.map { "\"" + String(decoding: $0, as: UTF8.self) + "\"" }.joined(separator: " ")
        case .soa(let s):
            rdata = "\(s.mname). \(s.rname). \(s.serial) \(s.refresh) \(s.retry) \(s.expire) \(s.minimum)"
        case .tlsa(let t):
            rdata = "\(t.certificateUsage) \(t.selector) \(t.matchingType) " + t.certificateAssociationData.hexString
        case .unknown(_, let bytes): rdata = "\\# \(bytes.count) " + bytes.hexString
        }
        return "\(name). \(ttl) IN \(type) \(rdata)"
    }
}

extension [UInt8] {
    var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        return String(decoding: flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0F)]] }, as: UTF8.self)
    }
}
