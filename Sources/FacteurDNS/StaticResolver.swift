// FacteurDNS: an in-memory resolver for tests and development configurations. It builds the response
// an authoritative server would give (answer, CNAME, NXDOMAIN or no data with an SOA, RFC 1034 §4.3.2,
// RFC 2308 §2) and reads it through the same interpreter as the network client, so CNAME chains and
// negative answers behave the same. Failures (timeout, SERVFAIL, REFUSED) can be injected per name.

/// A failure to inject for a name.
public enum StaticResolverFailure: Hashable, Sendable {
    case timeout
    case serverFailure
    case refused
}

/// Resolves from records held in memory.
public struct StaticResolver: DNSResolver {
    private var records: [DNSName: [DNSResourceRecord]] = [:]
    private var failures: [DNSName: [DNSRecordType?: StaticResolverFailure]] = [:]
    private static let localhost = DNSName(uncheckedLabels: [Array("localhost".utf8)])

    /// Reported as the AD bit of every response, to test DANE's secure and insecure paths.
    public var authenticData: Bool
    /// TTL of the synthesised SOA that negative answers carry (RFC 2308 §3).
    public var negativeTTL: UInt32

    public init(records: [DNSResourceRecord] = [], authenticData: Bool = false, negativeTTL: UInt32 = 300) {
        self.authenticData = authenticData
        self.negativeTTL = negativeTTL
        for record in records { add(record) }
    }

    /// Adds one record.
    public mutating func add(_ record: DNSResourceRecord) {
        records[record.name.lowercased, default: []].append(record)
    }

    /// Adds records from text, one per line, in the zone-file form `DNSResourceRecord(presentation:)`
    /// reads (`example.org. 300 IN MX 10 mail.example.org.`). Blank lines and `;` comments are skipped.
    public mutating func add(zone text: String) throws(DNSPresentationError) {
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            // A ";" starts a comment, except inside a quoted character-string (TXT "v=DMARC1; p=none").
            var quoted = false
            var escaped = false
            let content = line.prefix { character in
                if escaped { escaped = false; return true }
                if character == "\\" { escaped = true; return true }
                if character == "\"" { quoted.toggle() }
                return quoted || character != ";"
            }
            guard content.contains(where: { $0 != " " && $0 != "\t" }) else { continue }
            add(try DNSResourceRecord(presentation: String(content)))
        }
    }

    /// Makes questions about `name` (of `type`, or of any type when nil) fail with `failure`.
    public mutating func inject(_ failure: StaticResolverFailure, name: DNSName, type: DNSRecordType? = nil) {
        failures[name.lowercased, default: [:]][type] = failure
    }

    public func query(name: DNSName, type: DNSRecordType) async throws(DNSError) -> DNSAnswer {
        try await DNSResponseInterpreter.resolve(name: name, type: type, trustAuthenticData: true) {
            (question: DNSQuestion) async throws(DNSError) -> DNSMessage in
            try self.respond(to: question)
        }
    }

    /// The response an authoritative server holding these records would send.
    func respond(to question: DNSQuestion) throws(DNSError) -> DNSMessage {
        let key = question.name.lowercased
        if let byType = failures[key], let failure = byType[question.type] ?? byType[nil] {
            switch failure {
            case .timeout: throw .timeout(question)
            case .serverFailure: throw .serverFailure(question)
            case .refused: throw .refused(question)
            }
        }
        var header = DNSHeader(id: 0, isResponse: true, authoritativeAnswer: true, recursionAvailable: true,
                               authenticData: authenticData)
        let owned = records[key] ?? []
        var answers = owned.filter { $0.type == question.type }
        if answers.isEmpty, question.type != .cname {
            answers = owned.filter { $0.type == .cname }
        }
        if !answers.isEmpty {
            return DNSMessage(header: header, questions: [question], answers: answers)
        }
        // RFC 8020: a name exists if it, or a name below it, owns records (empty non-terminals).
        let exists = !owned.isEmpty || records.keys.contains { $0.isSubdomain(of: key) }
        header.rcodeLow = UInt8(exists ? DNSResponseCode.noError.rawValue : DNSResponseCode.nameError.rawValue)
        let soa = DNSResourceRecord(
            name: key.parent, ttl: negativeTTL,
            data: .soa(SOARecord(mname: Self.localhost, rname: DNSName(uncheckedLabels: [Array("hostmaster".utf8)] + Self.localhost.labels),
                                 serial: 1, refresh: 3600,
                                 retry: 600, expire: 86400, minimum: negativeTTL)))
        return DNSMessage(header: header, questions: [question], authority: [soa])
    }
}
