// What the SMTP adapter needs from the rest of the server: recipient checks and delivery.
// `StoreSMTPBackend` is the real one, on a `MailStore`; tests may supply their own.

import FacteurMIME
import FacteurQueue
import FacteurStore
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging

public protocol SMTPBackend: Sendable {
    /// `account`: who logged in on submission (other domains are then relaying, not refused); nil on port 25.
    func checkRecipient(_ mailbox: SMTPMailbox, declaredSize: Int?, account: String?) async -> RecipientVerdict
    /// Submission: may `account` send now, with `sender` as envelope sender?
    func checkSender(_ sender: SMTPMailbox?, account: String) async -> SenderVerdict
    /// Stores the message for every recipient; returns only once it is durable (or failed).
    func deliver(_ transaction: SMTPTransaction, message: MessageData) async -> DeliveryVerdict
    /// A password login recomputed weaker credentials (e.g. added SCRAM keys): keep them.
    func saveUpgradedCredentials(account: String, _ credentials: StoredCredentials) async
    /// Something to watch the next message's bytes as they arrive (nil: nothing watches).
    func makeMessageDigest(authenticated: Bool) -> (any MessageDigest)?
    /// `deliver` with what the digest found.
    func deliver(_ transaction: SMTPTransaction, message: MessageData, digest: (any Sendable)?) async -> DeliveryVerdict
}

extension SMTPBackend {
    /// Secure default: nobody may send as anyone.
    public func checkSender(_ sender: SMTPMailbox?, account: String) async -> SenderVerdict { .notOwned }
    public func saveUpgradedCredentials(account: String, _ credentials: StoredCredentials) async {}
    public func makeMessageDigest(authenticated: Bool) -> (any MessageDigest)? { nil }
    public func deliver(_ transaction: SMTPTransaction, message: MessageData, digest: (any Sendable)?) async -> DeliveryVerdict {
        await deliver(transaction, message: message)
    }
}

public struct StoreSMTPBackend: SMTPBackend {
    let store: any MailStore
    let hostname: String
    /// Where a bare `RCPT TO:<postmaster>` (no domain, RFC 5321 §4.1.1.3) goes.
    let primaryDomain: String
    let logger: Logger
    let now: @Sendable () -> Date
    let rateLimiter: SubmissionRateLimiter?
    /// Where authenticated mail for other domains goes; nil: it is refused (550 5.3.5).
    let queue: (any OutboundQueue)?
    /// Checks mail from unauthenticated clients (sender authentication); nil: none.
    let inspector: (any MessageInspector)?
    /// Rewrites the envelope sender of forwarded mail, and reverses it for bounces (SRS).
    let senderRewriting: SenderRewriting?
    /// Submissions are copied to the sender's Sent mailbox unless the account says otherwise.
    let sentCopiesByDefault: Bool

    public init(store: any MailStore, hostname: String, primaryDomain: String, logger: Logger,
                rateLimiter: SubmissionRateLimiter? = nil, queue: (any OutboundQueue)? = nil,
                inspector: (any MessageInspector)? = nil, senderRewriting: SenderRewriting? = nil,
                sentCopiesByDefault: Bool = false,
                now: @escaping @Sendable () -> Date = { Date() }) {
        self.sentCopiesByDefault = sentCopiesByDefault
        self.inspector = inspector
        self.senderRewriting = senderRewriting
        self.rateLimiter = rateLimiter
        self.queue = queue
        self.store = store
        self.hostname = hostname
        self.primaryDomain = primaryDomain
        self.logger = logger
        self.now = now
    }

    public func checkRecipient(_ mailbox: SMTPMailbox, declaredSize: Int?, account: String?) async -> RecipientVerdict {
        let verdict = await resolve(mailbox, declaredSize: declaredSize, authenticated: account != nil)
        if case .accepted = verdict, let account, let rateLimiter, !(await rateLimiter.admitRecipient(account: account)) {
            return .rateLimited
        }
        return verdict
    }

    private func resolve(_ mailbox: SMTPMailbox, declaredSize: Int?, authenticated: Bool) async -> RecipientVerdict {
        let domain = mailbox.domain.isEmpty ? primaryDomain : mailbox.domain.lowercased()
        // Address literals are never one of our domains: no relaying through them.
        if domain.hasPrefix("[") { return .relayDenied }
        let address = "\(mailbox.localPart)@\(domain)"
        do {
            // A bounce to an address we rewrote when forwarding goes back to the original sender.
            if let senderRewriting, mailbox.localPart.uppercased().hasPrefix("SRS0="), try await store.isLocalDomain(domain) {
                guard let original = senderRewriting.reverse(localPart: mailbox.localPart, now: now()) else { return .unknownUser }
                return queue == nil ? .relayUnavailable : .forwarded([], external: [original])
            }
            switch try await store.resolveRecipient(address) {
            case .nonLocalDomain:
                // Only an authenticated user relays; with a queue, the recipient is accepted for it.
                guard authenticated else { return .relayDenied }
                return queue == nil ? .relayUnavailable : .accepted([])
            case .unknownUser:
                return .unknownUser
            case .local(let accounts):
                guard !accounts.isEmpty else { return .unknownUser }
                if accounts.count == 1 {
                    // One mailbox: refuse now what it cannot take. For lists, delivery decides per member
                    // (with the grace margin), so that one full mailbox never fails the others.
                    switch try await store.checkQuota(accountID: accounts[0].id, incomingSize: declaredSize.map(Int64.init)) {
                    case .ok: break
                    case .full: return .mailboxFull
                    case .tooLarge: return .tooLargeForMailbox
                    }
                }
                return .accepted(accounts.map { LocalRecipient(accountID: $0.id, address: $0.address) })
            case .forwarded(let accounts, let external):
                guard queue != nil else {
                    // Nowhere to forward to: the local members still get it, if there are any.
                    return accounts.isEmpty ? .relayUnavailable : .accepted(accounts.map { LocalRecipient(accountID: $0.id, address: $0.address) })
                }
                return .forwarded(accounts.map { LocalRecipient(accountID: $0.id, address: $0.address) }, external: external)
            }
        } catch {
            logger.error("recipient lookup failed", metadata: ["rcpt": "\(address)", "error": "\(error)"])
            return .temporaryFailure
        }
    }

    /// The account itself, its sub-addresses (`alice+tag@`), and aliases that name it explicitly.
    /// A catch-all does not count: it would let its target send as anyone in the domain.
    public func checkSender(_ sender: SMTPMailbox?, account: String) async -> SenderVerdict {
        guard await owns(sender, account: account) else { return .notOwned }
        if let rateLimiter, !(await rateLimiter.admitMessage(account: account)) { return .rateLimited }
        return .allowed
    }

    private func owns(_ sender: SMTPMailbox?, account: String) async -> Bool {
        guard let sender, !sender.domain.isEmpty, !sender.domain.hasPrefix("[") else { return false }
        let address = "\(sender.localPart)@\(sender.domain)".lowercased()
        let account = account.lowercased()
        if address == account { return true }
        if let plus = sender.localPart.firstIndex(of: "+"),
           "\(sender.localPart[..<plus])@\(sender.domain)".lowercased() == account { return true }
        do {
            let aliases = try await store.aliases(domain: sender.domain.lowercased())
            return aliases.contains { $0.source == address && $0.targets.contains(account) }
        } catch {
            logger.error("sender check failed", metadata: ["sender": "\(address)", "error": "\(error)"])
            return false
        }
    }

    public func saveUpgradedCredentials(account: String, _ credentials: StoredCredentials) async {
        do {
            try await store.setCredentials(address: account, credentials)
        } catch {
            logger.warning("could not save upgraded credentials", metadata: ["account": "\(account)", "error": "\(error)"])
        }
    }

    /// Submission (RFC 6409 §8): every From:/Sender: address must belong to the account; a
    /// missing Date or Message-ID is added. Returns the header lines to add, or a refusal.
    func submissionHeaders(_ transaction: SMTPTransaction, header: MessageHeader, date: Date) async -> Result<[UInt8], SMTPReply> {
        guard let account = transaction.authenticatedAccount else { return .success([]) }
        for name in ["From", "Sender"] {
            for field in header.fields(named: name) {
                for mailbox in AddressList(parsingBytes: field.rawValue).mailboxes {
                    let smtp = mailbox.domain.map { SMTPMailbox(localPart: mailbox.localPart, domain: $0) }
                    guard await owns(smtp, account: account) else {
                        return .failure(SMTPReply(553, "5.7.1", "\(name): address <\(mailbox.address)> not owned by the authenticated user"))
                    }
                }
            }
        }
        var added = ""
        if header.field(named: "Date") == nil { added += "Date: \(TraceHeaders.rfc5322Date(date))\r\n" }
        if header.field(named: "Message-ID") == nil { added += "Message-ID: <\(transaction.id).\(UInt32.random(in: 0...UInt32.max))@\(hostname)>\r\n" }
        return .success(Array(added.utf8))
    }

    /// RFC 5321 §6.3: more Received: fields than this means the message is looping. The RFC asks
    /// for a threshold of "at least 100" so that long legitimate relay chains pass; Postfix's 50
    /// is below that, and a loop reaches 100 within seconds anyway, so we follow the RFC.
    public static let maxReceivedFields = 100

    /// The first bytes of a message: enough for its header section in any sane message.
    static let headLimit = 256 * 1024

    static func head(of message: MessageData, limit: Int = headLimit) -> [UInt8] {
        switch message {
        case .memory(let bytes): return Array(bytes.prefix(limit))
        case .file(let path, _):
            guard let handle = FileHandle(forReadingAtPath: path) else { return [] }
            defer { try? handle.close() }
            return (try? handle.read(upToCount: limit)).map(Array.init) ?? []
        }
    }

    /// Loop detection (RFC 5321 §6.3): too many Received: fields, or a Delivered-To: we would add
    /// ourselves for one of this message's local recipients (it has already been delivered here
    /// and came back, e.g. through a forwarding loop). Returns the refusal, or nil.
    static func loopRefusal(_ transaction: SMTPTransaction, header: MessageHeader) -> SMTPReply? {
        var received = 0
        var deliveredTo = Set<String>()
        for field in header.fields {
            if field.hasName("Received") {
                received += 1
            } else if field.hasName("Delivered-To"), deliveredTo.count < 1_000 {
                var value = field.value.lowercased()
                if value.hasPrefix("<"), value.hasSuffix(">"), value.count >= 2 { value = String(value.dropFirst().dropLast()) }
                deliveredTo.insert(value)
            }
        }
        if received > maxReceivedFields {
            return SMTPReply(554, "5.4.6", "Too many hops (\(received) Received: header fields): mail loop?")
        }
        for recipient in transaction.recipients where !recipient.accounts.isEmpty {
            let names = [recipient.mailbox.description.lowercased()] + recipient.accounts.map { $0.address.lowercased() }
            if let looped = names.first(where: { deliveredTo.contains($0) }) {
                return SMTPReply(554, "5.4.6", "Mail loop: already delivered to <\(looped)> here")
            }
        }
        return nil
    }

    /// DSNs for local recipients (RFC 3461 §5.2.2, §6.2): "delivered" for those that asked for
    /// NOTIFY=SUCCESS, "failed" for those whose mailbox could not take the message (unless NOTIFY
    /// excludes FAILURE), built by the queue's `DSNBuilder` and sent through the queue with the null
    /// sender, like every other DSN. Without a queue there is nowhere to send them: logged.
    func reportLocalOutcomes(_ transaction: SMTPTransaction, delivered: Set<Int>, failed: Set<Int>,
                             original: [UInt8]?, headers: [UInt8], date: Date) async {
        guard let sender = transaction.sender else { return }
        var entries: [DSNRecipient] = []
        for (index, recipient) in transaction.recipients.enumerated() {
            let orcpt = DSNParameterSyntax.reportedOriginalRecipient(recipient.originalRecipient)
            if delivered.contains(index), recipient.notify?.contains(.success) == true {
                entries.append(DSNRecipient(finalRecipient: recipient.mailbox.description, originalRecipient: orcpt, action: .delivered,
                                            diagnostic: "250 2.0.0 delivered to mailbox", remoteMTA: nil, lastAttempt: date))
            } else if failed.contains(index), recipient.notify?.contains(.failure) != false {
                entries.append(DSNRecipient(finalRecipient: recipient.mailbox.description, originalRecipient: orcpt, action: .failed,
                                            diagnostic: "552 5.2.2 mailbox full", remoteMTA: nil, lastAttempt: date))
            }
        }
        guard !entries.isEmpty else { return }
        guard let queue else {
            logger.warning("DSN due but no outbound queue to send it", metadata: ["queue_id": "\(transaction.id)"])
            return
        }
        let utf8 = transaction.receivedProtocol.hasPrefix("UTF8")
        let envid = transaction.envelopeID.flatMap { DSNParameterSyntax.parseEnvelopeID($0) }
        // One report per action, so that the subject and summary say what happened.
        for action in [DSNAction.delivered, .failed] {
            let group = entries.filter { $0.action == action }
            guard !group.isEmpty else { continue }
            let bytes = DSNBuilder(reportingMTA: hostname).build(
                to: sender.description, envelopeID: envid, arrival: date, recipients: group, original: original ?? headers,
                ret: original == nil ? .headers : transaction.ret, now: now(), utf8: utf8)
            do {
                // The null reverse-path: a DSN is never answered by another DSN (RFC 3461 §6.2).
                let queued = try await queue.enqueue(QueueSubmission(
                    sender: "", recipients: [QueueRecipientInput(address: sender.description)],
                    message: .memory(bytes), requiresSMTPUTF8: utf8))
                logger.info("queued a DSN", metadata: ["queue_id": "\(transaction.id)", "action": "\(action.rawValue)",
                                                      "outbound_id": "\(queued.id)", "to": "\(sender)"])
            } catch {
                logger.error("cannot queue a DSN", metadata: ["queue_id": "\(transaction.id)", "error": "\(error)"])
            }
        }
    }

    public func makeMessageDigest(authenticated: Bool) -> (any MessageDigest)? {
        authenticated ? nil : inspector?.makeDigest()
    }

    public func deliver(_ transaction: SMTPTransaction, message: MessageData) async -> DeliveryVerdict {
        await deliver(transaction, message: message, digest: nil)
    }

    /// Forwarding (aliases with members elsewhere, and bounces to our SRS addresses): one queued
    /// copy for every external address, with the envelope sender rewritten (SRS) so that the next
    /// hop's SPF check passes, our Received: and Authentication-Results on top, and an ARC set when
    /// the inspector seals. DKIM signing happens in the queue.
    func forward(_ transaction: SMTPTransaction, recipients: [SMTPTransaction.Recipient], message: MessageData,
                 queue: any OutboundQueue, inspection: InspectionVerdict, header: MessageHeader, date: Date) async -> Result<Void, Error> {
        var seen = Set<String>()
        var inputs: [QueueRecipientInput] = []
        for recipient in recipients {
            // RFC 3461 §6.2.1(d): the original recipient travels with the forwarded copy.
            let orcpt = recipient.originalRecipient ?? "rfc822;" + DSNParameterSyntax.encodeXtext(recipient.mailbox.description)
            for target in recipient.forwards where seen.insert(target.lowercased()).inserted {
                inputs.append(QueueRecipientInput(address: target, originalRecipient: orcpt, notify: recipient.notify))
            }
        }
        let via = recipients[0].mailbox.domain.isEmpty ? primaryDomain : recipients[0].mailbox.domain.lowercased()
        let sender = transaction.sender.map { original in
            senderRewriting?.forward(original.description, via: via, now: date) ?? original.description
        } ?? ""
        var prefix = TraceHeaders.received(transaction: transaction, recipient: recipients.count == 1 ? recipients[0].mailbox.description : nil,
                                           hostname: hostname, date: date) + inspection.headerFields
        if let inspector {
            prefix = await inspector.forwardingFields(message: message, prefix: prefix, inspection: inspection, domain: via) + prefix
        }
        do {
            let queued = try await queue.enqueue(QueueSubmission(
                sender: sender, recipients: inputs, message: message, envelopeID: transaction.envelopeID, ret: transaction.ret,
                requiresSMTPUTF8: transaction.receivedProtocol.hasPrefix("UTF8"), account: nil, headerPrefix: prefix,
                tlsDemand: Self.tlsDemand(transaction, header: header)))
            logger.info("message forwarded", metadata: ["queue_id": "\(transaction.id)", "outbound_id": "\(queued.id)",
                                                        "from": "\(sender)", "rcpt": "\(inputs.map(\.address).joined(separator: ","))"])
            return .success(())
        } catch {
            logger.error("message not forwarded", metadata: ["queue_id": "\(transaction.id)", "error": "\(error)"])
            return .failure(error)
        }
    }

    /// What the message asks of the TLS that carries it onward (RFC 8689): REQUIRETLS on MAIL FROM
    /// wins, and then a `TLS-Required:` field is ignored (§5: "MUST be ignored"); otherwise
    /// `TLS-Required: No` (§5, value case-insensitive) exempts it from the destination's TLS policy.
    static func tlsDemand(_ transaction: SMTPTransaction, header: MessageHeader) -> MessageTLSDemand {
        if transaction.requireTLS { return .requireTLS }
        // Several TLS-Required fields: only an unambiguous "No" counts.
        let values = header.fields(named: "TLS-Required").map { $0.value.lowercased() }
        if !values.isEmpty, values.allSatisfy({ $0 == "no" }) { return .policyExempt }
        return .standard
    }

    /// The Sent-mailbox delivery for a submission, when the account (or the server's default) wants one.
    func sentCopy(for transaction: SMTPTransaction, prefix: [UInt8]) async -> DeliveryRecipient? {
        guard let account = transaction.authenticatedAccount else { return nil }
        do {
            guard try await store.sentCopies(address: account) ?? sentCopiesByDefault,
                  let record = try await store.account(address: account) else { return nil }
            return DeliveryRecipient(accountID: record.id, mailbox: "Sent", headerPrefix: prefix, flags: [.seen])
        } catch {
            logger.warning("Sent copy setting unreadable", metadata: ["account": "\(account)", "error": "\(error)"])
            return nil
        }
    }

    /// A copy of `message` without the header bytes in `ranges` (sorted, inside the header
    /// section). A spooled message gets a new spool file; the old one is removed.
    static func removingFields(_ ranges: [Range<Int>], from message: MessageData) -> MessageData? {
        let sorted = ranges.sorted { $0.lowerBound < $1.lowerBound }
        guard let end = sorted.last?.upperBound else { return message }
        func filtered(_ head: [UInt8]) -> [UInt8] {
            var out: [UInt8] = []
            out.reserveCapacity(head.count)
            var position = 0
            for range in sorted where range.lowerBound >= position && range.upperBound <= head.count {
                out += head[position..<range.lowerBound]
                position = range.upperBound
            }
            return out + head[position...]
        }
        switch message {
        case .memory(let bytes):
            guard end <= bytes.count else { return nil }
            return .memory(filtered(bytes))
        case .file(let path, let size):
            guard let input = FileHandle(forReadingAtPath: path) else { return nil }
            defer { try? input.close() }
            let copy = path + ".r"
            guard FileManager.default.createFile(atPath: copy, contents: nil, attributes: [.posixPermissions: 0o600]),
                  let output = FileHandle(forWritingAtPath: copy) else { return nil }
            defer { try? output.close() }
            do {
                let head = Array(try input.read(upToCount: end) ?? Data())
                guard head.count == end else { return nil }
                let kept = filtered(head)
                try output.write(contentsOf: kept)
                while let chunk = try input.read(upToCount: 1 << 20), !chunk.isEmpty { try output.write(contentsOf: chunk) }
                try? FileManager.default.removeItem(atPath: path)
                return .file(path: copy, size: size - (end - kept.count))
            } catch {
                try? FileManager.default.removeItem(atPath: copy)
                return nil
            }
        }
    }

    public func deliver(_ transaction: SMTPTransaction, message: MessageData, digest: (any Sendable)?) async -> DeliveryVerdict {
        var message = message
        let date = now()
        let head = Self.head(of: message)
        let header = MessageHeader(parsing: head)
        let headerBytes = Array(head.prefix(max(0, min(header.bodyOffset, head.count))))
        if let loop = Self.loopRefusal(transaction, header: header) {
            if case .file(let path, _) = message { try? FileManager.default.removeItem(atPath: path) }
            logger.notice("message refused: loop", metadata: ["queue_id": "\(transaction.id)", "client": "\(transaction.clientAddress)",
                                                             "reason": "\(loop.lines.joined())"])
            return .rejected(loop)
        }
        var submissionPrefix: [UInt8] = []
        switch await submissionHeaders(transaction, header: header, date: date) {
        case .success(let lines): submissionPrefix = lines
        case .failure(let refusal):
            if case .file(let path, _) = message { try? FileManager.default.removeItem(atPath: path) }
            logger.notice("submission refused", metadata: ["queue_id": "\(transaction.id)", "account": "\(transaction.authenticatedAccount ?? "")", "reason": "\(refusal.lines.joined())"])
            return .rejected(refusal)
        }
        // Mail from other organisations: sender authentication decides, and says what it found.
        var inspection = InspectionVerdict()
        if transaction.authenticatedAccount == nil, let inspector {
            inspection = await inspector.inspect(transaction, digest: digest, header: header, headerBytes: headerBytes)
            if case .reject(let refusal) = inspection.disposition {
                if case .file(let path, _) = message { try? FileManager.default.removeItem(atPath: path) }
                logger.notice("message refused", metadata: ["queue_id": "\(transaction.id)", "client": "\(transaction.clientAddress)",
                                                           "from": "\(transaction.sender.map { $0.description } ?? "")",
                                                           "auth": "\(inspection.summary)", "reason": "\(refusal.lines.joined())"])
                return .rejected(refusal)
            }
            if !inspection.removedFields.isEmpty {
                guard let cleaned = Self.removingFields(inspection.removedFields, from: message) else {
                    if case .file(let path, _) = message { try? FileManager.default.removeItem(atPath: path) }
                    return .storageFailure
                }
                message = cleaned
            }
        }
        // Up to three consumers take the message: the queue for relayed recipients (submission),
        // the queue again for forwarded ones (aliases with external members), and the store.
        // Each takes over a spool file, so each gets its own name for it (a hard link).
        let relayed = transaction.recipients.filter(\.isRelayed)
        let forwarding = transaction.recipients.filter { !$0.forwards.isEmpty }
        let hasLocal = transaction.recipients.contains { !$0.accounts.isEmpty }
        // Submission may keep a copy in the sender's Sent mailbox (off by default: most clients
        // append it themselves over IMAP).
        let sentCopy = await sentCopy(for: transaction, prefix: submissionPrefix)
        var consumers = (relayed.isEmpty ? 0 : 1) + (forwarding.isEmpty ? 0 : 1) + (hasLocal || sentCopy != nil ? 1 : 0)
        func handOver() -> MessageData? {
            defer { consumers -= 1 }
            guard consumers > 1, case .file(let path, let size) = message else { return message }
            let copy = path + ".\(consumers)"
            guard link(path, copy) == 0 else { return nil }
            return .file(path: copy, size: size)
        }
        func abandon() {
            if case .file(let path, _) = message { try? FileManager.default.removeItem(atPath: path) }
        }
        if !relayed.isEmpty {
            guard let queue, let queueData = handOver() else { abandon(); return .storageFailure }
            let remote = relayed.map(\.mailbox)
            let prefix = TraceHeaders.received(transaction: transaction, recipient: remote.count == 1 ? remote[0].description : nil,
                                               hostname: hostname, date: date) + inspection.headerFields + submissionPrefix
            do {
                let queued = try await queue.enqueue(QueueSubmission(
                    sender: transaction.sender.map(\.description) ?? "",
                    recipients: relayed.map {
                        QueueRecipientInput(address: $0.mailbox.description, originalRecipient: $0.originalRecipient, notify: $0.notify)
                    },
                    message: queueData, envelopeID: transaction.envelopeID, ret: transaction.ret,
                    requiresSMTPUTF8: transaction.receivedProtocol.hasPrefix("UTF8"),
                    account: transaction.authenticatedAccount, headerPrefix: prefix,
                    tlsDemand: Self.tlsDemand(transaction, header: header)))
                logger.info("message queued", metadata: ["queue_id": "\(transaction.id)", "outbound_id": "\(queued.id)",
                                                         "rcpt": "\(remote.map(\.description).joined(separator: ","))"])
            } catch {
                if consumers > 0 { abandon() }
                logger.error("message not queued", metadata: ["queue_id": "\(transaction.id)", "error": "\(error)"])
                return .storageFailure
            }
        }
        if !forwarding.isEmpty {
            guard let queue, let forwardData = handOver() else { abandon(); return .storageFailure }
            if case .failure = await forward(transaction, recipients: forwarding, message: forwardData, queue: queue,
                                             inspection: inspection, header: header, date: date) {
                if consumers > 0 { abandon() }
                return .storageFailure
            }
        }
        if !hasLocal {
            guard let sentCopy else { return .stored }
            // Already on its way: a Sent copy that cannot be stored is logged, not a failure.
            if let data = handOver() {
                do {
                    _ = try await store.deliver(Delivery(message: data, recipients: [sentCopy], internalDate: date))
                } catch {
                    logger.warning("Sent copy not stored", metadata: ["queue_id": "\(transaction.id)", "error": "\(error)"])
                }
            }
            return .stored
        }
        guard let localData = handOver() else { abandon(); return .storageFailure }
        // One copy per account, even when several recipients (aliases, +tags) lead to it.
        var seen = Set<Int64>()
        var recipients: [DeliveryRecipient] = []
        var recipientNames: [String] = []
        var recipientIndexes: [Int] = []
        for (index, recipient) in transaction.recipients.enumerated() {
            for account in recipient.accounts where seen.insert(account.accountID).inserted {
                recipientIndexes.append(index)
                let prefix = TraceHeaders.prefix(transaction: transaction, recipient: recipient.mailbox.description,
                                                 hostname: hostname, date: date) + inspection.headerFields + submissionPrefix
                recipients.append(DeliveryRecipient(accountID: account.accountID, mailbox: inspection.disposition == .junk ? "Junk" : "INBOX",
                                                    headerPrefix: prefix))
                recipientNames.append(account.address)
            }
        }
        // Last, so that outcomes line up with `recipientNames` for the recipients proper.
        if let sentCopy { recipients.append(sentCopy) }
        var metadata: Logger.Metadata = [
            "queue_id": "\(transaction.id)",
            "client": "\(transaction.clientAddress)",
            "helo": "\(transaction.heloName)",
            "from": "\(transaction.sender.map { $0.description } ?? "")",
            "rcpt": "\(transaction.recipients.map { $0.mailbox.description }.joined(separator: ","))",
            "size": "\(transaction.size)",
            "proto": "\(transaction.receivedProtocol)",
        ]
        if let account = transaction.authenticatedAccount { metadata["account"] = "\(account)" }
        if !inspection.summary.isEmpty { metadata["auth"] = "\(inspection.summary)" }
        if inspection.disposition == .junk { metadata["folder"] = "Junk" }
        // A DSN may be due (RFC 3461 §5.2.2): keep what it may quote before the store takes the spool file.
        // Only NOTIFY=SUCCESS pays for reading up to the DSN's return limit; failures (rare: a full
        // mailbox) return the header section we already have.
        let wantsSuccess = transaction.sender != nil && transaction.recipients.contains {
            !$0.accounts.isEmpty && $0.notify?.contains(.success) == true
        }
        let original: [UInt8]? = wantsSuccess ? Self.head(of: localData, limit: DSNBuilder(reportingMTA: hostname).maxReturnedSize + 1) : nil
        do {
            let result = try await store.deliver(Delivery(message: localData, recipients: recipients, internalDate: date))
            var stored = 0
            var overQuota: [String] = []
            var storedFor = Set<Int>()
            var failedFor = Set<Int>()
            for (index, outcome) in result.outcomes.enumerated() where index < recipientNames.count {
                switch outcome {
                case .stored: stored += 1; storedFor.insert(recipientIndexes[index])
                case .overQuota, .mailboxMissing: overQuota.append(recipientNames[index]); failedFor.insert(recipientIndexes[index])
                }
            }
            metadata["blob"] = "\(result.blobID.prefix(16))"
            if stored == 0 {
                metadata["outcome"] = "deferred: mailbox full"
                logger.notice("message deferred", metadata: metadata)
                return .mailboxFull
            }
            if !overQuota.isEmpty {
                // Accepted for the others; the outbound queue (DSNs) will bounce these. Until then, say it loudly.
                metadata["over_quota"] = "\(overQuota.joined(separator: ","))"
            }
            metadata["outcome"] = "stored"
            logger.info("message stored", metadata: metadata)
            if transaction.sender != nil {
                await reportLocalOutcomes(transaction, delivered: storedFor, failed: failedFor.subtracting(storedFor),
                                          original: original, headers: headerBytes, date: date)
            }
            return .stored
        } catch {
            metadata["outcome"] = "storage failure: \(error)"
            logger.error("message not stored", metadata: metadata)
            return .storageFailure
        }
    }
}
