// FacteurDNS: the DNS message model of RFC 1035 §4.1 — header, question, resource records — with the
// header bits added later: AD and CD (RFC 4035 §3.2, RFC 6840 §5.7), and the EDNS0 OPT pseudo-record
// (RFC 6891 §6) lifted out of the additional section into its own field.

/// A record type (RFC 1035 §3.2.2 and later registrations); unknown values are kept as they are.
public struct DNSRecordType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let a = DNSRecordType(rawValue: 1)
    public static let ns = DNSRecordType(rawValue: 2)
    public static let cname = DNSRecordType(rawValue: 5)
    public static let soa = DNSRecordType(rawValue: 6)
    public static let ptr = DNSRecordType(rawValue: 12)
    public static let mx = DNSRecordType(rawValue: 15)
    public static let txt = DNSRecordType(rawValue: 16)
    public static let aaaa = DNSRecordType(rawValue: 28)   // RFC 3596
    public static let opt = DNSRecordType(rawValue: 41)    // RFC 6891
    public static let tlsa = DNSRecordType(rawValue: 52)   // RFC 6698
    public static let any = DNSRecordType(rawValue: 255)   // RFC 1035 §3.2.3 QTYPE "*"

    public var description: String {
        switch self {
        case .a: "A"
        case .ns: "NS"
        case .cname: "CNAME"
        case .soa: "SOA"
        case .ptr: "PTR"
        case .mx: "MX"
        case .txt: "TXT"
        case .aaaa: "AAAA"
        case .opt: "OPT"
        case .tlsa: "TLSA"
        default: "TYPE\(rawValue)" // RFC 3597 §5
        }
    }
}

/// A record class; Facteur only asks for IN (RFC 1035 §3.2.4).
public struct DNSClass: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let internet = DNSClass(rawValue: 1)
}

/// The header's RCODE (RFC 1035 §4.1.1), extended to 12 bits by EDNS0 (RFC 6891 §6.1.3).
public struct DNSResponseCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let noError = DNSResponseCode(rawValue: 0)
    public static let formatError = DNSResponseCode(rawValue: 1)
    public static let serverFailure = DNSResponseCode(rawValue: 2)
    /// "Name Error": the name does not exist (NXDOMAIN).
    public static let nameError = DNSResponseCode(rawValue: 3)
    public static let notImplemented = DNSResponseCode(rawValue: 4)
    public static let refused = DNSResponseCode(rawValue: 5)
    /// RFC 6891 §9: the server does not implement our EDNS version.
    public static let badVersion = DNSResponseCode(rawValue: 16)

    public var description: String {
        switch self {
        case .noError: "NOERROR"
        case .formatError: "FORMERR"
        case .serverFailure: "SERVFAIL"
        case .nameError: "NXDOMAIN"
        case .notImplemented: "NOTIMP"
        case .refused: "REFUSED"
        case .badVersion: "BADVERS"
        default: "RCODE\(rawValue)"
        }
    }
}

/// The header of a message (RFC 1035 §4.1.1) less the section counts, which the encoder derives.
public struct DNSHeader: Hashable, Sendable {
    public var id: UInt16
    /// QR: this message is a response.
    public var isResponse: Bool
    public var opcode: UInt8
    /// AA: the answer comes from an authoritative server.
    public var authoritativeAnswer: Bool
    /// TC: the message was truncated to fit the transport (RFC 1035 §4.1.1; retry over TCP, RFC 7766 §5).
    public var truncated: Bool
    /// RD: recursion desired.
    public var recursionDesired: Bool
    /// RA: recursion available.
    public var recursionAvailable: Bool
    /// AD: the resolver validated every record in the answer and authority sections (RFC 4035 §3.2.3).
    public var authenticData: Bool
    /// CD: checking disabled (RFC 4035 §3.2.2).
    public var checkingDisabled: Bool
    /// The low four bits of the RCODE; the full code is `DNSMessage.responseCode`.
    public var rcodeLow: UInt8

    public init(id: UInt16, isResponse: Bool = false, opcode: UInt8 = 0, authoritativeAnswer: Bool = false,
                truncated: Bool = false, recursionDesired: Bool = true, recursionAvailable: Bool = false,
                authenticData: Bool = false, checkingDisabled: Bool = false, rcodeLow: UInt8 = 0) {
        self.id = id
        self.isResponse = isResponse
        self.opcode = opcode & 0x0F
        self.authoritativeAnswer = authoritativeAnswer
        self.truncated = truncated
        self.recursionDesired = recursionDesired
        self.recursionAvailable = recursionAvailable
        self.authenticData = authenticData
        self.checkingDisabled = checkingDisabled
        self.rcodeLow = rcodeLow & 0x0F
    }
}

/// A question (RFC 1035 §4.1.2).
public struct DNSQuestion: Hashable, Sendable, CustomStringConvertible {
    public var name: DNSName
    public var type: DNSRecordType
    public var dnsClass: DNSClass

    public init(name: DNSName, type: DNSRecordType, dnsClass: DNSClass = .internet) {
        self.name = name
        self.type = type
        self.dnsClass = dnsClass
    }

    public var description: String { "\(name) \(type)" }
}

/// The EDNS0 OPT pseudo-record's fields (RFC 6891 §6.1.2, §6.1.3).
public struct EDNSOptions: Hashable, Sendable {
    /// The largest UDP payload the sender can reassemble.
    public var udpPayloadSize: UInt16
    /// The upper eight bits of the 12-bit RCODE.
    public var extendedRCode: UInt8
    public var version: UInt8
    /// DO: DNSSEC OK — the sender wants DNSSEC records (RFC 3225 §3).
    public var dnssecOK: Bool
    /// Options as (code, data) pairs, kept raw.
    public var options: [EDNSOption]

    public init(udpPayloadSize: UInt16 = DNSLimits.defaultEDNSPayloadSize, extendedRCode: UInt8 = 0,
                version: UInt8 = 0, dnssecOK: Bool = false, options: [EDNSOption] = []) {
        self.udpPayloadSize = udpPayloadSize
        self.extendedRCode = extendedRCode
        self.version = version
        self.dnssecOK = dnssecOK
        self.options = options
    }
}

/// One EDNS option (RFC 6891 §6.1.2), uninterpreted.
public struct EDNSOption: Hashable, Sendable {
    public var code: UInt16
    public var data: [UInt8]
    public init(code: UInt16, data: [UInt8]) {
        self.code = code
        self.data = data
    }
}

/// A whole message (RFC 1035 §4.1).
public struct DNSMessage: Hashable, Sendable {
    public var header: DNSHeader
    public var questions: [DNSQuestion]
    public var answers: [DNSResourceRecord]
    public var authority: [DNSResourceRecord]
    /// The additional section without the OPT record, which is in `edns`.
    public var additional: [DNSResourceRecord]
    public var edns: EDNSOptions?

    public init(header: DNSHeader, questions: [DNSQuestion] = [], answers: [DNSResourceRecord] = [],
                authority: [DNSResourceRecord] = [], additional: [DNSResourceRecord] = [], edns: EDNSOptions? = nil) {
        self.header = header
        self.questions = questions
        self.answers = answers
        self.authority = authority
        self.additional = additional
        self.edns = edns
    }

    /// The full RCODE: the header's four bits, extended by the OPT record's eight (RFC 6891 §6.1.3).
    public var responseCode: DNSResponseCode {
        let high = UInt16(edns?.extendedRCode ?? 0) << 4
        return DNSResponseCode(rawValue: high | UInt16(header.rcodeLow))
    }

    /// A recursive query for one question, with EDNS0 (RFC 6891) unless `edns` is nil.
    public static func query(id: UInt16, question: DNSQuestion, edns: EDNSOptions? = EDNSOptions(),
                             authenticData: Bool = false, checkingDisabled: Bool = false) -> DNSMessage {
        DNSMessage(header: DNSHeader(id: id, recursionDesired: true, authenticData: authenticData,
                                     checkingDisabled: checkingDisabled),
                   questions: [question], edns: edns)
    }
}
