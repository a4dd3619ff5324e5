// The INBOX of an account that receives machine reports (DMARC aggregate reports, RFC 7489 §7.2;
// SMTP TLS reports, RFC 8460 §5.3): each message is handed to a reader that keeps what it can
// parse, then expunged either way — the parsed reports live in the store, and messages that are
// not reports would only pile up.

import FacteurStore
import Logging

enum ReportMailbox {
    /// Reads at most `limit` messages of `address`'s INBOX with `read` (which returns how many
    /// reports it kept, or throws for a message that is no report) and expunges them.
    /// Returns the number of reports kept.
    static func drain(store: SQLiteMailStore, address: String, kind: String, limit: Int = 500, logger: Logger,
                      read: ([UInt8]) async throws -> Int) async throws -> Int {
        guard let account = try await store.account(address: address),
              let inbox = try await store.mailbox(accountID: account.id, name: "INBOX") else { return 0 }
        var kept = 0
        var done: [UInt32] = []
        for message in try await store.messages(mailboxID: inbox.id).prefix(limit) {
            let bytes = try await store.messageBytes(messageID: message.id)
            do {
                kept += try await read(bytes)
            } catch {
                logger.notice("not a \(kind)", metadata: ["uid": "\(message.uid)", "error": "\(error)"])
            }
            done.append(message.uid)
        }
        if !done.isEmpty { try await store.expunge(mailboxID: inbox.id, uids: done) }
        if kept > 0 { logger.info("\(kind)s received", metadata: ["count": "\(kept)"]) }
        return kept
    }
}
