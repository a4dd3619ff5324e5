// What the SMTP adapter needs from the rest of the server: recipient checks and delivery.
// `StoreSMTPBackend` is the real one, on a `MailStore`; tests may supply their own.

import FacteurStore
import Foundation
import Logging

public protocol SMTPBackend: Sendable {
    func checkRecipient(_ mailbox: SMTPMailbox, declaredSize: Int?) async -> RecipientVerdict
    /// Stores the message for every recipient; returns only once it is durable (or failed).
    func deliver(_ transaction: SMTPTransaction, message: MessageData) async -> DeliveryVerdict
}

public struct StoreSMTPBackend: SMTPBackend {
    let store: any MailStore
    let hostname: String
    /// Where a bare `RCPT TO:<postmaster>` (no domain, RFC 5321 §4.1.1.3) goes.
    let primaryDomain: String
    let logger: Logger
    let now: @Sendable () -> Date

    public init(store: any MailStore, hostname: String, primaryDomain: String, logger: Logger,
                now: @escaping @Sendable () -> Date = { Date() }) {
        self.store = store
        self.hostname = hostname
        self.primaryDomain = primaryDomain
        self.logger = logger
        self.now = now
    }

    public func checkRecipient(_ mailbox: SMTPMailbox, declaredSize: Int?) async -> RecipientVerdict {
        let domain = mailbox.domain.isEmpty ? primaryDomain : mailbox.domain.lowercased()
        // Address literals are never one of our domains: no relaying through them.
        if domain.hasPrefix("[") { return .relayDenied }
        let address = "\(mailbox.localPart)@\(domain)"
        do {
            switch try await store.resolveRecipient(address) {
            case .nonLocalDomain:
                return .relayDenied
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
            }
        } catch {
            logger.error("recipient lookup failed", metadata: ["rcpt": "\(address)", "error": "\(error)"])
            return .temporaryFailure
        }
    }

    public func deliver(_ transaction: SMTPTransaction, message: MessageData) async -> DeliveryVerdict {
        let date = now()
        // One copy per account, even when several recipients (aliases, +tags) lead to it.
        var seen = Set<Int64>()
        var recipients: [DeliveryRecipient] = []
        var recipientNames: [String] = []
        for recipient in transaction.recipients {
            for account in recipient.accounts where seen.insert(account.accountID).inserted {
                let prefix = TraceHeaders.prefix(transaction: transaction, recipient: recipient.mailbox.description,
                                                 hostname: hostname, date: date)
                recipients.append(DeliveryRecipient(accountID: account.accountID, headerPrefix: prefix))
                recipientNames.append(account.address)
            }
        }
        var metadata: Logger.Metadata = [
            "queue_id": "\(transaction.id)",
            "client": "\(transaction.clientAddress)",
            "helo": "\(transaction.heloName)",
            "from": "\(transaction.sender.map { $0.description } ?? "")",
            "rcpt": "\(transaction.recipients.map { $0.mailbox.description }.joined(separator: ","))",
            "size": "\(transaction.size)",
            "proto": "\(transaction.receivedProtocol)",
        ]
        do {
            let result = try await store.deliver(Delivery(message: message, recipients: recipients, internalDate: date))
            var stored = 0
            var overQuota: [String] = []
            for (index, outcome) in result.outcomes.enumerated() {
                switch outcome {
                case .stored: stored += 1
                case .overQuota, .mailboxMissing: overQuota.append(recipientNames[index])
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
            return .stored
        } catch {
            metadata["outcome"] = "storage failure: \(error)"
            logger.error("message not stored", metadata: metadata)
            return .storageFailure
        }
    }
}
