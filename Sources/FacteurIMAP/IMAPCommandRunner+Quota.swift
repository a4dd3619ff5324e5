// QUOTA (RFC 9208), read-only: each account has one quota root, "", holding all its mailboxes,
// with the STORAGE (units of 1024 octets) and MESSAGE resources from the account's limits and
// usage in the store. Limits are set by the administrator, so SETQUOTA is refused (no QUOTASET).

import FacteurStore

enum IMAPQuota {
    /// The account's only quota root (RFC 9208 §3.2 lets a server name them as it likes).
    static let root = ""

    /// Octets to 1024-octet units, rounded up for usage (a 1-byte message uses storage).
    static func kibibytes(_ bytes: Int64) -> Int64 {
        bytes <= 0 ? 0 : bytes / 1024 + (bytes % 1024 == 0 ? 0 : 1)
    }

    /// `(STORAGE used limit MESSAGE used limit)` for the limited resources; nil when none is.
    static func resources(_ account: AccountRecord) -> String? {
        var parts: [String] = []
        if let limit = account.quota.bytes {
            parts.append("STORAGE \(kibibytes(account.usage.bytes)) \(max(0, limit) / 1024)")
        }
        if let limit = account.quota.messages {
            parts.append("MESSAGE \(max(0, account.usage.messages)) \(max(0, limit))")
        }
        return parts.isEmpty ? nil : "(" + parts.joined(separator: " ") + ")"
    }
}

extension IMAPCommandRunner {
    /// The account as stored now: usage changes with every delivery and expunge.
    private func currentAccount(_ session: IMAPSession) async -> AccountRecord? {
        guard let id = session.account?.id else { return nil }
        return (try? await store.account(id: id)) ?? session.account
    }

    /// RFC 9208 §4.1.1: GETQUOTA quota-root.
    func getQuota(tag: String, root: [UInt8], session: inout IMAPSession, output: any IMAPOutput) async {
        guard let account = await currentAccount(session) else { return }
        guard root.isEmpty, let resources = IMAPQuota.resources(account) else {
            await output.write(line("\(tag) NO [NONEXISTENT] No such quota root"))
            return
        }
        await output.write(line("* QUOTA \"\" \(resources)"))
        await finish(tag, "GETQUOTA completed", session: &session, output: output, expunges: true)
    }

    /// RFC 9208 §4.1.2: GETQUOTAROOT mailbox: the mailbox's roots, then each root's QUOTA.
    func getQuotaRoot(tag: String, name: MailboxName, session: inout IMAPSession, output: any IMAPOutput) async {
        guard let account = await currentAccount(session),
              let decoded = await mailboxName(name, tag: tag, session: session, output: output) else { return }
        do {
            guard try await store.mailbox(accountID: account.id, name: decoded) != nil else {
                await output.write(line("\(tag) NO [NONEXISTENT] No such mailbox"))
                return
            }
        } catch {
            await storeFailure(error, tag: tag, output: output)
            return
        }
        var w = IMAPResponseWriter(utf8Accepted: session.utf8Accepted)
        w.raw("* QUOTAROOT ")
        w.astring(session.encodeMailboxName(decoded))
        let resources = IMAPQuota.resources(account)
        // An account without limits has no quota root at all (§4.1.2 allows an empty list).
        if resources != nil { w.raw(" \"\"") }
        w.crlf()
        await output.write(w.bytes)
        if let resources { await output.write(line("* QUOTA \"\" \(resources)")) }
        await finish(tag, "GETQUOTAROOT completed", session: &session, output: output, expunges: true)
    }
}
