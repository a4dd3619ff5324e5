// FacteurServer: sender authentication composed into the SMTP server and the queue —
// the inbound inspector (SPF, DKIM, iprev, DMARC, ARC → Authentication-Results and a
// disposition) and the outbound DKIM signer. The checks themselves live in FacteurMailAuth.

import FacteurDNS
import FacteurMailAuth
import FacteurMIME
import FacteurQueue
import FacteurSMTP
import FacteurStore
import Foundation
import Logging

/// Runs FacteurMailAuth's streaming digest on the connection's event loop.
final class InboundDigestAdapter: MessageDigest {
    private var digest = InboundMessageDigest()

    struct Result: Sendable {
        var headerBytes: [UInt8]
        var dkim: DKIMVerificationSession
        var arc: ARCVerificationSession?
    }

    func consume(_ bytes: UnsafeRawBufferPointer) { digest.consume(bytes) }

    func finish() -> any Sendable {
        let (header, session) = digest.finished()
        return Result(headerBytes: header, dkim: session, arc: digest.arcSession)
    }
}

struct SenderAuthenticationInspector: MessageInspector {
    let authenticator: MessageAuthenticator
    let authservID: String
    let configuration: MailAuthConfiguration
    let store: any MailStore
    let logger: Logger
    let trustedNetworks: [IPNetwork]
    let trustedForwarderNetworks: [IPNetwork]
    let trustedForwarderDomains: [String]
    /// Counts DMARC evaluations for the aggregate reports; nil: reports are off.
    let recorder: DMARCEvaluationRecorder?
    /// Keys for ARC sealing of forwarded mail.
    let signerCache: DKIMSignerCache?

    init(authenticator: MessageAuthenticator, authservID: String, configuration: MailAuthConfiguration, store: any MailStore,
         recorder: DMARCEvaluationRecorder?, signerCache: DKIMSignerCache? = nil, logger: Logger) {
        self.authenticator = authenticator; self.authservID = authservID; self.configuration = configuration
        self.store = store; self.logger = logger; self.recorder = recorder; self.signerCache = signerCache
        trustedNetworks = configuration.trustedNetworks.compactMap(IPNetwork.init)
        trustedForwarderNetworks = configuration.trustedForwarders.compactMap(IPNetwork.init)
        trustedForwarderDomains = configuration.trustedForwarders.filter { IPNetwork($0) == nil }.map { $0.lowercased() }
    }

    func makeDigest() -> any MessageDigest { InboundDigestAdapter() }

    func inspect(_ transaction: SMTPTransaction, digest: (any Sendable)?, header: MessageHeader, headerBytes: [UInt8]) async -> InspectionVerdict {
        let removed = Self.forgedResults(header, authservID: authservID)
        guard configuration.verifyInbound else { return InspectionVerdict(removedFields: removed) }
        guard let ip = IPAddress(transaction.clientAddress) else {
            return InspectionVerdict(removedFields: removed, summary: "unchecked: no client address")
        }
        if trustedNetworks.contains(where: { $0.contains(ip) }) {
            return InspectionVerdict(removedFields: removed, summary: "unchecked: trusted network")
        }
        let streamed = digest as? InboundDigestAdapter.Result
        let identity = SMTPIdentity(clientIP: ip, helo: transaction.heloName,
                                    mailFrom: transaction.sender.map { $0.description } ?? "")
        let result = await authenticator.authenticate(identity, headerBytes: streamed?.headerBytes ?? headerBytes,
                                                      dkimSession: streamed?.dkim ?? DKIMVerificationSession(headerBytes: headerBytes),
                                                      arcSession: streamed?.arc)
        let clauses = result.clauses
        let field = AuthenticationResultsField.render(authservID: authservID, clauses: clauses)
        var summary = clauses.map { "\($0.method)=\($0.result)" }.joined(separator: " ")
        var verdict = InspectionVerdict(disposition: .accept, headerFields: Array(field.utf8), removedFields: removed)

        // A DMARC failure from a known forwarder is delivered: the forwarder broke SPF (and maybe
        // DKIM) on the way, not the author (RFC 7489 §10.6, the "forwarded" override of §7.2).
        var override: (type: String, comment: String)?
        if let dmarc = result.dmarc, dmarc.result == .fail, let forwarder = trustedForwarder(ip: ip, iprev: result.iprev) {
            override = ("trusted_forwarder", forwarder)
        }
        // RFC 8617 §7.2: a trusted intermediary's ARC set vouches for what it saw before it
        // changed the message (a mailing list's footer, a forwarder's envelope).
        if let dmarc = result.dmarc, dmarc.result == .fail, override == nil, let sealer = arcRescue(result.arc) {
            override = ("local_policy", "arc=pass as.\(result.arc?.latest?.instance ?? 0).d=\(sealer)")
        }
        var applied = result.dmarc?.disposition ?? .none
        if override != nil { applied = .none }
        if applied != .none, !configuration.dmarcEnforce {
            override = ("local_policy", "policy not enforced here")
            applied = .none
        }
        if let dmarc = result.dmarc, dmarc.sampledOut, override == nil {
            override = ("sampled_out", "")
        }
        switch applied {
        case .reject:
            verdict.disposition = .reject(SMTPReply(550, "5.7.1", "Message rejected by the DMARC policy of \(result.dmarc?.fromDomain ?? "the sender's domain")"))
        case .quarantine:
            verdict.disposition = .junk
        case .none:
            break
        }
        // Our own domains in From: must prove it, whatever they publish: outside mail claiming
        // to be from us without passing DMARC is the classic spoof ("CEO fraud").
        if configuration.rejectSpoofedLocalDomains, verdict.disposition != .reject(SMTPReply(550, "5.7.1", "")),
           result.dmarc?.result != .pass, override == nil, let from = result.fromDomain, await isLocal(from) {
            verdict.disposition = .reject(SMTPReply(550, "5.7.1", "Message rejected: From: claims local domain \(from) but is not authenticated by it"))
            summary += " spoof=local-domain"
        }
        if let override { summary += " override=\(override.type)" }
        verdict.summary = summary
        verdict.findings = result
        if let recorder, let dmarc = result.dmarc {
            let recorded: DMARCPolicy
            switch verdict.disposition {
            case .accept: recorded = .none
            case .junk: recorded = .quarantine
            case .reject: recorded = .reject
            }
            let envelopeTo = transaction.recipients.first.map { $0.mailbox.domain.lowercased() }
            await recorder.record(dmarc, authentication: result, sourceIP: ip.description, envelopeTo: envelopeTo,
                                  disposition: recorded, override: override)
        }
        return verdict
    }

    /// The configured forwarder this client is (an address in a listed network, or a
    /// forward-confirmed name in a listed domain), or nil.
    func trustedForwarder(ip: IPAddress, iprev: IPRevOutcome?) -> String? {
        if let network = trustedForwarderNetworks.first(where: { $0.contains(ip) }) { return network.description }
        guard iprev?.result == .pass, let name = iprev?.name?.lowercased() else { return nil }
        return trustedForwarderDomains.first { name == $0 || name.hasSuffix("." + $0) }
    }

    /// RFC 8617 §5.1: an ARC set on mail we forward (when `arc_seal` is on), sealed with the
    /// forwarding domain's RSA key, carrying our Authentication-Results and our chain verdict.
    func forwardingFields(message: MessageData, prefix: [UInt8], inspection: InspectionVerdict, domain: String) async -> [UInt8] {
        guard configuration.arcSeal, let signerCache,
              let signer = signerCache.signers(forFromDomain: domain).first(where: { $0.key.algorithm == .rsaSHA256 }),
              let (head, bodyHash) = RelaxedMessageReader.read(message) else { return [] }
        let headerBytes = prefix + head
        let results = ARCSealer.authenticationResults(in: MessageHeader(parsing: headerBytes), authservID: authservID) ?? ""
        let chain = (inspection.findings as? MessageAuthentication)?.arc?.result ?? ARCResult.none
        do {
            let fields = try ARCSealer(domain: signer.domain, selector: signer.selector, key: signer.key).seal(
                headerBytes: headerBytes, bodyHash: bodyHash, authenticationResults: results, chainValidation: chain,
                authservID: authservID, timestamp: Int64(Date().timeIntervalSince1970))
            return Array(fields.utf8)
        } catch {
            logger.notice("not ARC-sealed", metadata: ["domain": "\(domain)", "error": "\(error)"])
            return []
        }
    }

    /// The trusted sealer whose valid chain says DMARC (or an aligned-looking SPF/DKIM) passed
    /// when the message reached it; nil when there is none.
    func arcRescue(_ arc: ARCValidation?) -> String? {
        guard let arc, arc.result == .pass, let latest = arc.latest,
              configuration.arcTrustedSealers.contains(latest.sealerDomain.lowercased()),
              let results = latest.parsedResults else { return nil }
        let passed = results.results(for: "dmarc").contains { $0.result == "pass" }
            || results.results(for: "dkim").contains { $0.result == "pass" }
            || results.results(for: "spf").contains { $0.result == "pass" }
        return passed ? latest.sealerDomain : nil
    }

    /// A local domain, or a subdomain of one.
    func isLocal(_ domain: String) async -> Bool {
        var labels = domain.lowercased().split(separator: ".")
        while labels.count >= 2 {
            if (try? await store.isLocalDomain(labels.joined(separator: "."))) == true { return true }
            labels.removeFirst()
        }
        return false
    }

    /// RFC 8601 §5: Authentication-Results fields that claim our authserv-id came from outside
    /// and would mislead filters and users; they are removed before ours is added.
    static func forgedResults(_ header: MessageHeader, authservID: String) -> [Range<Int>] {
        header.fields(named: "Authentication-Results").filter {
            AuthenticationResultsParser.authservID(of: $0.rawValue)?.lowercased() == authservID.lowercased()
        }.map(\.range)
    }

}

/// The header section of a message (memory or spool file) and its relaxed body hash, the body
/// read in chunks: what DKIM signing and ARC sealing need.
enum RelaxedMessageReader {
    static let headLimit = 256 * 1024

    static func read(_ message: MessageData) -> (head: [UInt8], bodyHash: [UInt8])? {
        var body = DKIMSigner.makeBodyHasher()
        switch message {
        case .memory(let bytes):
            let header = MessageHeader(parsing: bytes)
            body.update(bytes[header.bodyOffset...])
            return (Array(bytes[..<header.bodyOffset]), body.finalize())
        case .file(let path, _):
            guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
            defer { try? handle.close() }
            guard let first = try? handle.read(upToCount: headLimit) else { return nil }
            let bytes = Array(first)
            let header = MessageHeader(parsing: bytes)
            guard header.hasSeparator else { return nil }
            body.update(bytes[header.bodyOffset...])
            while let chunk = try? handle.read(upToCount: 1 << 20), !chunk.isEmpty { body.update(chunk) }
            return (Array(bytes[..<header.bodyOffset]), body.finalize())
        }
    }
}

/// Signs what the queue takes (submissions, DSNs, reports, forwarded mail) with the keys of the
/// From: domain, or of its nearest parent with keys.
struct DKIMQueueSigner: OutboundMessageSigner {
    let cache: DKIMSignerCache
    let logger: Logger

    func signatureFields(for submission: QueueSubmission) async -> [UInt8] {
        guard var (head, bodyHash) = RelaxedMessageReader.read(submission.message) else { return [] }
        head = submission.headerPrefix + head
        // The author's domain (aligned for DMARC); failing that, the envelope sender's, so that
        // forwarded mail (SRS sender in our domain) and DSNs still carry our signature.
        let from = MessageAuthenticator.fromDomain(MessageHeader(parsing: head)).0
        var signers = from.map { cache.signers(forFromDomain: $0) } ?? []
        if signers.isEmpty, let at = submission.sender.lastIndex(of: "@") {
            signers = cache.signers(forFromDomain: String(submission.sender[submission.sender.index(after: at)...]))
        }
        guard !signers.isEmpty else { return [] }
        var fields = ""
        for signer in signers {
            do {
                fields += try signer.sign(headerBytes: head, bodyHash: bodyHash)
            } catch {
                logger.warning("DKIM signing failed", metadata: ["domain": "\(signer.domain)", "selector": "\(signer.selector)", "error": "\(error)"])
            }
        }
        return Array(fields.utf8)
    }
}
