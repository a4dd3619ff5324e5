// FacteurDNS: what callers see — the `DNSResolver` protocol, the answer, and the outcomes in RFC
// vocabulary: an answer, NXDOMAIN ("Name Error", RFC 1035 §4.1.1), no data (RFC 2308 §2.2), SERVFAIL,
// REFUSED, timeout. Convenience lookups for MX (RFC 5321 §5.1), A/AAAA, TXT (RFC 7208 §3.3),
// PTR (RFC 1035 §3.5, RFC 3596 §2.5) and TLSA (RFC 7672 §3).

/// A positive answer to one question, after any CNAME chain was followed.
public struct DNSAnswer: Hashable, Sendable {
    /// The name that was asked for.
    public var name: DNSName
    public var type: DNSRecordType
    /// The name that owns `records`: `name` itself, or the end of the CNAME chain.
    public var canonicalName: DNSName
    /// The CNAME records followed, in order (RFC 1034 §3.6.2).
    public var cnameChain: [DNSResourceRecord]
    /// The records of `type` owned by `canonicalName`; never empty (an empty answer is `.noData`).
    public var records: [DNSResourceRecord]
    /// The AD bit of every response used (RFC 4035 §3.2.3): the resolver validated the data with
    /// DNSSEC. DANE (RFC 7672 §2.1) trusts TLSA and MX records only when this is true — and only when
    /// the path to the resolver is trusted (see `DNSClientConfiguration.trustAuthenticData`).
    public var authenticData: Bool

    public init(name: DNSName, type: DNSRecordType, canonicalName: DNSName, cnameChain: [DNSResourceRecord] = [],
                records: [DNSResourceRecord], authenticData: Bool) {
        self.name = name
        self.type = type
        self.canonicalName = canonicalName
        self.cnameChain = cnameChain
        self.records = records
        self.authenticData = authenticData
    }

    /// The smallest TTL of the records and CNAMEs: how long the whole answer may be cached.
    public var ttl: UInt32 {
        (records + cnameChain).map(\.ttl).min() ?? 0
    }
}

/// A negative answer's details (RFC 2308 §2).
public struct DNSNegativeAnswer: Hashable, Sendable {
    /// The name that was asked for.
    public var name: DNSName
    public var type: DNSRecordType
    /// The name the negative answer is about (the end of a CNAME chain, RFC 6604 §2).
    public var canonicalName: DNSName
    /// RFC 2308 §5: min(SOA TTL, SOA MINIMUM) when the authority section held the zone's SOA; nil
    /// otherwise, and such an answer is not cached.
    public var negativeTTL: UInt32?
    /// AD bit: the non-existence was proven with DNSSEC (RFC 4035 §3.2.3).
    public var authenticData: Bool

    public init(name: DNSName, type: DNSRecordType, canonicalName: DNSName? = nil, negativeTTL: UInt32?,
                authenticData: Bool) {
        self.name = name
        self.type = type
        self.canonicalName = canonicalName ?? name
        self.negativeTTL = negativeTTL
        self.authenticData = authenticData
    }
}

/// Every outcome other than a positive answer.
public enum DNSError: Error, Hashable, Sendable {
    /// RCODE 3, "Name Error": the name does not exist (NXDOMAIN). Permanent.
    case nxdomain(DNSNegativeAnswer)
    /// NOERROR with no record of the type asked for (RFC 2308 §2.2, "NODATA"). Permanent; for MX
    /// it means "use the A/AAAA records" (RFC 5321 §5.1).
    case noData(DNSNegativeAnswer)
    /// RCODE 2, SERVFAIL: the resolver could not answer (includes DNSSEC validation failures,
    /// RFC 4035 §5.5). Temporary.
    case serverFailure(DNSQuestion)
    /// RCODE 5, REFUSED: the server will not answer us. Temporary (another server may).
    case refused(DNSQuestion)
    /// No usable response from any server within the timeouts and attempts. Temporary.
    case timeout(DNSQuestion)
    /// Any other RCODE (FORMERR, NOTIMP, BADVERS, …). Temporary.
    case otherResponseCode(DNSQuestion, DNSResponseCode)
    /// Responses that could not be decoded or did not fit the question. Temporary.
    case malformedResponse(DNSQuestion, String)
    /// The CNAME chain came back to a name already seen (RFC 1034 §3.6.2). Permanent.
    case cnameLoop(DNSQuestion)
    /// The CNAME chain was longer than `DNSLimits.maxCNAMEChain`. Permanent.
    case cnameChainTooLong(DNSQuestion)
    /// The name given was not a valid DNS name. Permanent.
    case invalidName(String, DNSNameError)
    /// The client could not talk to any server (socket errors). Temporary.
    case transport(String)

    /// SMTP says 4xx for these and retries later (RFC 5321 §4.2.5); the others are final.
    public var isTemporary: Bool {
        switch self {
        case .nxdomain, .noData, .cnameLoop, .cnameChainTooLong, .invalidName: false
        case .serverFailure, .refused, .timeout, .otherResponseCode, .malformedResponse, .transport: true
        }
    }

    /// NXDOMAIN or no data: the records asked for do not exist.
    public var isNotFound: Bool {
        switch self {
        case .nxdomain, .noData: true
        default: false
        }
    }
}

/// Something that answers DNS questions: the NIO client (`DNSClient`) or in-memory data (`StaticResolver`).
public protocol DNSResolver: Sendable {
    /// Asks for records of `type` at `name`, following CNAMEs. Returns a non-empty answer, or throws
    /// a `DNSError` naming the outcome.
    func query(name: DNSName, type: DNSRecordType) async throws(DNSError) -> DNSAnswer
}

extension DNSResolver {
    /// `query` with a name given as text (A-labels).
    public func query(_ name: String, type: DNSRecordType) async throws(DNSError) -> DNSAnswer {
        let parsed: DNSName
        do {
            parsed = try DNSName(name)
        } catch {
            throw .invalidName(name, error)
        }
        return try await query(name: parsed, type: type)
    }

    /// MX records sorted by preference, lowest first (RFC 5321 §5.1). A null MX (RFC 7505) is returned
    /// as it is; `MXRecord.isNullMX` tells. No data throws `.noData`: the caller falls back to A/AAAA.
    public func mx(_ name: DNSName) async throws(DNSError) -> [MXRecord] {
        let answer = try await query(name: name, type: .mx)
        return answer.records.compactMap { record -> MXRecord? in
            if case .mx(let mx) = record.data { return mx }
            return nil
        }.sorted { $0.preference < $1.preference }
    }

    public func a(_ name: DNSName) async throws(DNSError) -> [IPv4Address] {
        try await query(name: name, type: .a).records.compactMap {
            if case .a(let address) = $0.data { return address }
            return nil
        }
    }

    public func aaaa(_ name: DNSName) async throws(DNSError) -> [IPv6Address] {
        try await query(name: name, type: .aaaa).records.compactMap {
            if case .aaaa(let address) = $0.data { return address }
            return nil
        }
    }

    /// TXT records, each with its character-strings kept and joined (RFC 7208 §3.3).
    public func txt(_ name: DNSName) async throws(DNSError) -> [TXTRecord] {
        try await query(name: name, type: .txt).records.compactMap {
            if case .txt(let txt) = $0.data { return txt }
            return nil
        }
    }

    /// The names an address points back to (RFC 1035 §3.5, RFC 3596 §2.5).
    public func ptr(_ address: IPAddress) async throws(DNSError) -> [DNSName] {
        try await query(name: DNSName(reverseOf: address), type: .ptr).records.compactMap {
            if case .ptr(let name) = $0.data { return name }
            return nil
        }
    }

    /// TLSA records with the AD bit of the answer: DANE uses them only if `authenticData` (RFC 7672 §2.2).
    public func tlsa(_ name: DNSName) async throws(DNSError) -> (records: [TLSARecord], authenticData: Bool) {
        let answer = try await query(name: name, type: .tlsa)
        let records = answer.records.compactMap { record -> TLSARecord? in
            if case .tlsa(let tlsa) = record.data { return tlsa }
            return nil
        }
        return (records, answer.authenticData)
    }

    /// TLSA records for a service: `_port._tcp.host` (RFC 6698 §3, RFC 7672 §3.2.2).
    public func tlsa(host: DNSName, port: Int, transport: String = "tcp") async throws(DNSError)
        -> (records: [TLSARecord], authenticData: Bool) {
        let name: DNSName
        do {
            name = try host.prepending("_\(port)._\(transport)")
        } catch {
            throw .invalidName("_\(port)._\(transport).\(host)", error)
        }
        return try await tlsa(name)
    }
}
