// FacteurMailAuth: everything checked on a message that comes in from another organisation —
// SPF for MAIL FROM and HELO (RFC 7208), every DKIM signature (RFC 6376), iprev (RFC 8601 §3),
// DMARC (RFC 7489 / DMARCbis) and ARC (RFC 8617) — run concurrently, rendered as one
// Authentication-Results field (RFC 8601). The body is hashed while it streams in
// (`InboundMessageDigest`), so verification never reads the message a second time.

import FacteurDNS
import FacteurMIME

/// Fed with the message bytes as they arrive (after SMTP dot-unstuffing, CRLF line endings):
/// keeps the header section and runs the DKIM body hashes. Not thread-safe: one per message,
/// on the connection's event loop.
public struct InboundMessageDigest: Sendable {
    /// A header section larger than this is not kept (its signatures then fail).
    public static let maxHeaderBytes = 256 * 1024
    private var header: [UInt8] = []
    private var session: DKIMVerificationSession?
    /// Only when the message carries an ARC chain (RFC 8617): its AMS body hash runs alongside.
    private var arc: ARCVerificationSession?
    private var headerOverflowed = false
    private let arcAlgorithms: Set<DKIMAlgorithm>

    public init(arcAlgorithms: Set<DKIMAlgorithm> = [.rsaSHA256]) { self.arcAlgorithms = arcAlgorithms }

    public mutating func consume(_ bytes: UnsafeRawBufferPointer) {
        if let _ = session {
            session!.update(body: bytes)
            if arc != nil { arc!.update(body: bytes) }
            return
        }
        if headerOverflowed { return }
        let searchFrom = max(0, header.count - 3)
        header.append(contentsOf: bytes)
        if let end = Self.endOfHeader(header, from: searchFrom) {
            let body = Array(header[end...])
            header.removeSubrange(end...)
            session = DKIMVerificationSession(headerBytes: header)
            session!.update(body: body)
            let chain = ARCVerificationSession(headerBytes: header, algorithms: arcAlgorithms)
            if chain.hasChain {
                arc = chain
                arc!.update(body: body)
            }
        } else if header.count > Self.maxHeaderBytes {
            headerOverflowed = true
        }
    }

    /// Index just after the blank line that ends the header section (or after a leading CRLF
    /// when the header section is empty).
    static func endOfHeader(_ bytes: [UInt8], from start: Int) -> Int? {
        if start == 0, bytes.count >= 2, bytes[0] == 13, bytes[1] == 10 { return 2 }
        guard bytes.count >= 4 else { return nil }
        var index = start
        while index + 3 < bytes.count {
            if bytes[index] == 13, bytes[index + 1] == 10, bytes[index + 2] == 13, bytes[index + 3] == 10 { return index + 4 }
            index += 1
        }
        return nil
    }

    /// The header section and the DKIM session with the body hashed. A message without a blank
    /// line is all header and an empty body (RFC 5322 §3.5).
    public func finished() -> (headerBytes: [UInt8], dkim: DKIMVerificationSession) {
        if let session { return (header, session) }
        return (header, DKIMVerificationSession(headerBytes: headerOverflowed ? [] : header))
    }

    /// The ARC chain with its body hashed, when the message has one.
    public var arcSession: ARCVerificationSession? { arc }
}

/// The SMTP facts a verdict depends on.
public struct SMTPIdentity: Sendable, Hashable {
    public var clientIP: IPAddress
    public var helo: String
    /// The reverse-path without brackets; "" for the null sender.
    public var mailFrom: String

    public init(clientIP: IPAddress, helo: String, mailFrom: String) {
        self.clientIP = clientIP; self.helo = helo; self.mailFrom = mailFrom
    }
}

/// What was found; `clauses` renders it for Authentication-Results.
public struct MessageAuthentication: Sendable {
    public var spfMailFrom: SPFOutcome?
    public var spfHELO: SPFOutcome?
    public var dkim: [DKIMSignatureResult] = []
    public var iprev: IPRevOutcome?
    /// The RFC5322.From domain, when the message has exactly one From: address with a domain.
    public var fromDomain: String?
    public var fromProblem: String?
    /// DMARC (nil when it could not apply: no usable From domain, or no evaluator).
    public var dmarc: DMARCEvaluation?
    /// ARC (nil: the message has no chain).
    public var arc: ARCValidation?
    public var mailFrom: String = ""
    public var helo: String = ""

    public init() {}

    /// The SPF result that counts for DMARC (RFC 7489 §4.1): MAIL FROM's, or HELO's for the null sender.
    public var spfForDMARC: (result: SPFResult, domain: String)? {
        if let outcome = spfMailFrom { return (outcome.result, outcome.domain) }
        return nil
    }

    public var clauses: [AuthenticationResultsClause] {
        var clauses: [AuthenticationResultsClause] = []
        if let spf = spfMailFrom {
            let identity = mailFrom.isEmpty ? ("helo", helo) : ("mailfrom", mailFrom)
            clauses.append(AuthenticationResultsClause(method: "spf", result: spf.result.rawValue, comment: spf.reason,
                                                       properties: [("smtp", identity.0, identity.1)]))
        }
        if let spf = spfHELO, !mailFrom.isEmpty {
            clauses.append(AuthenticationResultsClause(method: "spf", result: spf.result.rawValue, comment: spf.reason,
                                                       properties: [("smtp", "helo", helo)]))
        }
        if dkim.isEmpty {
            clauses.append(AuthenticationResultsClause(method: "dkim", result: "none"))
        }
        for signature in dkim {
            var properties: [(ptype: String, property: String, value: String)] = []
            if let d = signature.domain { properties.append(("header", "d", d)) }
            if let s = signature.selector { properties.append(("header", "s", s)) }
            if let parsed = signature.signature {
                properties.append(("header", "a", parsed.algorithm.rawValue))
                // RFC 6008: the first 8 characters of b= tell two signatures of one domain apart.
                let b = parsed.signature.prefix(6)
                properties.append(("header", "b", String(base64Prefix(Array(b)).prefix(8))))
            }
            clauses.append(AuthenticationResultsClause(method: "dkim", result: signature.result.rawValue,
                                                       comment: signature.testing ? "\(signature.reason); test mode" : signature.reason,
                                                       properties: properties))
        }
        if let dmarc {
            var comment = dmarc.reason
            if let policy = dmarc.policy { comment = "p=\(policy.rawValue) dis=\(dmarc.disposition.rawValue); " + comment }
            clauses.append(AuthenticationResultsClause(method: "dmarc", result: dmarc.result.rawValue, comment: comment,
                                                       properties: [("header", "from", dmarc.fromDomain)]))
        } else if let fromProblem {
            clauses.append(AuthenticationResultsClause(method: "dmarc", result: "permerror", comment: fromProblem))
        }
        if let arc {
            var properties: [(ptype: String, property: String, value: String)] = []
            if let latest = arc.latest { properties.append(("header", "as.\(latest.instance).d", latest.sealerDomain)) }
            if let oldest = arc.oldestPassProperty { properties.append(("header", "oldest-pass", String(oldest))) }
            properties.append(("smtp", "remote-ip", ipText))
            clauses.append(AuthenticationResultsClause(method: "arc", result: arc.result.rawValue, comment: arc.reason, properties: properties))
        } else {
            clauses.append(AuthenticationResultsClause(method: "arc", result: "none"))
        }
        if let iprev {
            clauses.append(AuthenticationResultsClause(method: "iprev", result: iprev.result.rawValue, comment: iprev.name ?? iprev.reason,
                                                       properties: [("policy", "iprev", ipText)]))
        }
        return clauses
    }

    var ipText: String = ""
}

private func base64Prefix(_ bytes: [UInt8]) -> String {
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    var out = ""
    var index = 0
    while index + 2 < bytes.count {
        let n = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
        for shift in [18, 12, 6, 0] { out.append(alphabet[Int((n >> UInt32(shift)) & 63)]) }
        index += 3
    }
    return out
}

/// Runs the inbound checks. Sendable: create one and share it.
public struct MessageAuthenticator: Sendable {
    public var spf: SPFVerifier
    public var dkim: DKIMVerifier
    public var iprev: IPRevVerifier
    public var dmarc: DMARCEvaluator
    public var arc: ARCVerifier

    public init(resolver: any DNSResolver, receivingDomain: String, organizationalDomain: DMARCOrganizationalDomain = .treeWalk) {
        arc = ARCVerifier(resolver: resolver)
        spf = SPFVerifier(resolver: resolver, receivingDomain: receivingDomain)
        dkim = DKIMVerifier(resolver: resolver)
        iprev = IPRevVerifier(resolver: resolver)
        dmarc = DMARCEvaluator(resolver: resolver, organizationalDomain: organizationalDomain)
    }

    /// SPF, DKIM and iprev concurrently; the From: domain read from the header section.
    public func authenticate(_ identity: SMTPIdentity, headerBytes: [UInt8], dkimSession: DKIMVerificationSession,
                             arcSession: ARCVerificationSession? = nil) async -> MessageAuthentication {
        var outcome = MessageAuthentication()
        outcome.mailFrom = identity.mailFrom
        outcome.helo = identity.helo
        outcome.ipText = identity.clientIP.description
        let header = MessageHeader(parsing: headerBytes)
        (outcome.fromDomain, outcome.fromProblem) = Self.fromDomain(header)

        let spf = self.spf, iprev = self.iprev, dkim = self.dkim
        let heloIsName = !identity.helo.hasPrefix("[") && identity.helo.contains(".") && IPAddress(identity.helo) == nil
        async let mailFromResult = spf.checkMailFrom(ip: identity.clientIP, mailFrom: identity.mailFrom, helo: identity.helo)
        async let heloResult: SPFOutcome? = (!identity.mailFrom.isEmpty && heloIsName)
            ? spf.checkHELO(ip: identity.clientIP, helo: identity.helo) : nil
        async let iprevResult = iprev.check(identity.clientIP)
        let arcVerifier = self.arc
        async let arcResult: ARCValidation? = {
            guard var chain = arcSession else { return nil }
            return await chain.finish(using: arcVerifier)
        }()
        var session = dkimSession
        let dkimResults = await session.finish(using: dkim)
        outcome.dkim = dkimResults
        outcome.spfMailFrom = await mailFromResult
        outcome.spfHELO = await heloResult
        outcome.iprev = await iprevResult
        outcome.arc = await arcResult
        // DMARC (RFC 7489 §4.1, §6.6) on the From: domain with the SPF and DKIM results.
        if let fromDomain = outcome.fromDomain, let spf = outcome.spfMailFrom {
            outcome.dmarc = await self.dmarc.evaluate(DMARCInput(
                fromDomain: fromDomain, spfResult: spf.result, spfDomain: spf.domain,
                dkim: dkimResults.compactMap { result in result.domain.map { (result.result, $0) } }))
        }
        return outcome
    }

    /// RFC 7489 §6.6.1: DMARC applies to a message with exactly one From: field holding one
    /// address; anything else has no usable From domain (and the caller decides what to do).
    public static func fromDomain(_ header: MessageHeader) -> (String?, String?) {
        let fields = header.fields(named: "From")
        guard fields.count == 1 else { return (nil, fields.isEmpty ? "no From: field" : "several From: fields") }
        let mailboxes = AddressList(parsingBytes: fields[0].rawValue).mailboxes
        guard mailboxes.count == 1, let domain = mailboxes[0].domain, !domain.isEmpty else {
            return (nil, mailboxes.count > 1 ? "several From: addresses" : "From: has no usable address")
        }
        var name = domain.lowercased()
        if name.hasSuffix(".") { name.removeLast() }
        return (name, nil)
    }
}
