// Authentication (RFC 9051 §6.2: LOGIN, AUTHENTICATE with SASL-IR RFC 4959) and the mailbox
// commands (RFC 9051 §6.3: SELECT, EXAMINE, CREATE, DELETE, RENAME, SUBSCRIBE, LIST, STATUS;
// LIST-EXTENDED RFC 5258, SPECIAL-USE RFC 6154, LIST-STATUS RFC 5819).

import FacteurIdentity
import FacteurStore
import Foundation

extension IMAPCommandRunner {
    // MARK: LOGIN, AUTHENTICATE

    func login(tag: String, user: [UInt8], password: [UInt8], session: inout IMAPSession, output: any IMAPOutput) async -> IMAPNext {
        guard session.plaintextAuthenticationAllowed else {
            // RFC 9051 §6.2.3: LOGIN is refused while LOGINDISABLED is advertised.
            await output.write(line("\(tag) NO [PRIVACYREQUIRED] LOGIN needs TLS (use STARTTLS)"))
            return .command
        }
        // Run as SASL PLAIN so the password check goes through the same throttled, off-loop path.
        guard var exchange = authenticator.begin(mechanism: "PLAIN", client: session.clientAddress) else {
            await output.write(line("\(tag) NO [UNAVAILABLE] Password login is not available"))
            return .command
        }
        let message: [UInt8] = [0] + user + [0] + password
        let outcome = await exchange.respond(message)
        return await authenticationFinished(tag: tag, outcome: outcome, session: &session, output: output, verb: "LOGIN")
    }

    func authenticate(tag: String, mechanism: String, initialResponse: [UInt8]?, session: inout IMAPSession,
                      output: any IMAPOutput) async -> IMAPNext {
        let offered = authenticator.advertisedMechanisms(connectionIsSecure: session.plaintextAuthenticationAllowed)
        guard offered.contains(mechanism),
              var exchange = authenticator.begin(mechanism: mechanism, client: session.clientAddress) else {
            await output.write(line("\(tag) NO [CANNOT] Mechanism \(mechanism) is not available"))
            return .command
        }
        var decoded: [UInt8]?
        if let initialResponse {
            // RFC 4959 §3: "=" is an empty initial response.
            if initialResponse == [UInt8(ascii: "=")] {
                decoded = []
            } else if let bytes = Data(base64Encoded: Data(initialResponse)) {
                decoded = [UInt8](bytes)
            } else {
                await output.write(line("\(tag) BAD Invalid base64"))
                return .command
            }
        }
        let outcome = await exchange.respond(decoded)
        if case .challenge(let challenge) = outcome {
            session.authentication = (tag, exchange)
            await output.write(line("+ " + Data(challenge).base64EncodedString()))
            return .authenticationLine
        }
        return await authenticationFinished(tag: tag, outcome: outcome, session: &session, output: output, verb: "AUTHENTICATE")
    }

    /// The client's answer to a challenge (RFC 9051 §6.2.2: base64, or "*" to cancel).
    public func continueAuthentication(line received: [UInt8], session: inout IMAPSession, output: any IMAPOutput) async -> IMAPNext {
        guard let (tag, storedExchange) = session.authentication else { return .command }
        var exchange = storedExchange
        session.authentication = nil
        let outcome: AuthOutcome
        if received == [UInt8(ascii: "*")] {
            outcome = exchange.cancel()
        } else if let bytes = Data(base64Encoded: Data(received)) {
            outcome = await exchange.respond([UInt8](bytes))
        } else {
            outcome = exchange.reject()
        }
        if case .challenge(let challenge) = outcome {
            session.authentication = (tag, exchange)
            await output.write(line("+ " + Data(challenge).base64EncodedString()))
            return .authenticationLine
        }
        return await authenticationFinished(tag: tag, outcome: outcome, session: &session, output: output, verb: "AUTHENTICATE")
    }

    private func authenticationFinished(tag: String, outcome: AuthOutcome, session: inout IMAPSession, output: any IMAPOutput,
                                        verb: String) async -> IMAPNext {
        switch outcome {
        case .success(let success):
            if let upgraded = success.upgradedCredentials {
                try? await store.setCredentials(address: success.authcid, upgraded)
            }
            let account: AccountRecord?
            do { account = try await store.account(address: success.authcid) } catch { account = nil }
            guard let account else {
                await output.write(line("\(tag) NO [UNAVAILABLE] Account unavailable"))
                return .command
            }
            if let accountLimiter {
                guard let slot = accountLimiter.acquire(account.address) else {
                    await output.write(line("\(tag) NO [UNAVAILABLE] Too many connections for this account (at most \(accountLimiter.maxPerAccount))"))
                    return .command
                }
                session.accountSlot = slot
            }
            session.didAuthenticate(account)
            session.changeInbox.watch(accountID: account.id, mailboxID: nil)
            // RFC 9051 §6.2.2: the OK may carry the new capabilities.
            await output.write(line("\(tag) OK [CAPABILITY \(capabilities(session).joined(separator: " "))] \(verb) completed"))
        case .failure(let failure):
            switch failure.reason {
            case .malformed: await output.write(line("\(tag) BAD Invalid authentication exchange"))
            case .cancelled: await output.write(line("\(tag) BAD Authentication cancelled"))
            case .authorizationFailed: await output.write(line("\(tag) NO [AUTHORIZATIONFAILED] Not allowed to act as that user"))
            case .authenticationFailed: await output.write(line("\(tag) NO [AUTHENTICATIONFAILED] Invalid credentials"))
            case .temporarilyUnavailable, .tooManyFailures: await output.write(line("\(tag) NO [UNAVAILABLE] Try again later"))
            }
        case .challenge:
            await output.write(line("\(tag) BAD Unexpected challenge"))
        }
        return .command
    }

    // MARK: SELECT, EXAMINE (RFC 9051 §6.3.2, §6.3.3)

    func select(tag: String, name: MailboxName, readOnly: Bool, condStore: Bool, qresync: QResyncParameters? = nil,
                session: inout IMAPSession, output: any IMAPOutput) async {
        // RFC 7162 §3.2.5: the QRESYNC parameter needs ENABLE QRESYNC first.
        if qresync != nil, !session.qresyncEnabled {
            await output.write(line("\(tag) BAD QRESYNC parameter without ENABLE QRESYNC"))
            return
        }
        // RFC 9051 §6.3.2: a failed SELECT leaves no mailbox selected.
        if session.state == .selected {
            session.didDeselect()
            session.changeInbox.watch(accountID: session.account?.id, mailboxID: nil)
            // RFC 9051 §6.3.2, RFC 7162 §3.2.11: CLOSED marks where the old mailbox's responses end.
            if session.isIMAP4rev2 || condStore || session.qresyncEnabled {
                await output.write(line("* OK [CLOSED] Previous mailbox closed"))
            }
        }
        guard let account = session.account,
              let decoded = await mailboxName(name, tag: tag, session: session, output: output) else { return }
        if condStore { session.enabled.insert("CONDSTORE") }
        do {
            // Watch first, so that nothing committed after the snapshot is missed.
            guard let mailbox = try await store.mailbox(accountID: account.id, name: decoded) else {
                await output.write(line("\(tag) NO [NONEXISTENT] No such mailbox"))
                return
            }
            session.changeInbox.watch(accountID: account.id, mailboxID: mailbox.id)
            // Only the UIDs, the first unseen and the keywords: a 100,000-message mailbox must not
            // load 100,000 records to answer SELECT. QRESYNC (RFC 7162 §3.2.5.1) is rare and needs
            // each record's MODSEQ, numbered from the same snapshot, so it alone reads them all.
            var resyncRecords: [MessageRecord] = []
            let index: MailboxIndex
            if qresync != nil {
                resyncRecords = try await store.messages(mailboxID: mailbox.id)
                index = MailboxIndex(records: resyncRecords)
            } else {
                index = try await store.mailboxIndex(mailboxID: mailbox.id)
            }
            let selected = SelectedMailbox(id: mailbox.id, name: mailbox.name, readOnly: readOnly, uidValidity: mailbox.uidValidity,
                                           uidNext: mailbox.uidNext, highestModSeq: mailbox.highestModSeq,
                                           uids: index.uids)
            let firstUnseen = index.firstUnseen
            let flagList = (["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"] + index.keywords).joined(separator: " ")
            // The untagged responses leave in one write: each write is a flush and a wait for it.
            var head: [UInt8] = line("* \(index.uids.count) EXISTS")
            if !session.isIMAP4rev2 {
                head += line("* 0 RECENT")
                if let firstUnseen { head += line("* OK [UNSEEN \(firstUnseen)] First unseen") }
            }
            head += line("* FLAGS (\(flagList))")
            head += line(readOnly ? "* OK [PERMANENTFLAGS ()] Read-only mailbox"
                                  : "* OK [PERMANENTFLAGS (\(flagList) \\*)] Flags permitted")
            head += line("* OK [UIDVALIDITY \(mailbox.uidValidity)] UIDs valid")
            head += line("* OK [UIDNEXT \(mailbox.uidNext)] Predicted next UID")
            head += line("* OK [MAILBOXID (\(IMAPObjectID.mailbox(mailbox)))] Ok")
            if session.enabled.contains("CONDSTORE") {
                head += line("* OK [HIGHESTMODSEQ \(mailbox.highestModSeq)] Highest")
            }
            if let qresync {
                await output.write(head)
                head = []
                try await quickResync(qresync, mailbox: selected, messages: resyncRecords, session: session, output: output)
            }
            if session.isIMAP4rev2 {
                // RFC 9051 §6.3.2: the mailbox's LIST response, with its canonical name.
                var w = IMAPResponseWriter(utf8Accepted: session.utf8Accepted)
                w.raw("* LIST () \"/\" ")
                w.astring(session.encodeMailboxName(mailbox.name))
                w.crlf()
                head += w.bytes
            }
            session.didSelect(selected)
            head += line("\(tag) OK [\(readOnly ? "READ-ONLY" : "READ-WRITE")] \(readOnly ? "EXAMINE" : "SELECT") completed")
            await output.write(head)
        } catch {
            session.changeInbox.watch(accountID: account.id, mailboxID: nil)
            await storeFailure(error, tag: tag, output: output)
        }
    }

    // MARK: CREATE, DELETE, RENAME, SUBSCRIBE (RFC 9051 §6.3.4–§6.3.8)

    func create(tag: String, name: MailboxName, uses: [String], session: inout IMAPSession, output: any IMAPOutput) async {
        guard let account = session.account,
              var decoded = await mailboxName(name, tag: tag, session: session, output: output) else { return }
        // RFC 9051 §6.3.4: a trailing delimiter only says the client means to create children.
        while decoded.hasSuffix("/") { decoded.removeLast() }
        guard decoded != "INBOX" else {
            await output.write(line("\(tag) NO [ALREADYEXISTS] INBOX always exists"))
            return
        }
        var specialUse: SpecialUse?
        if let use = uses.first {
            // RFC 6154 §5.3: one attribute per mailbox here; an unknown one is USEATTR.
            guard uses.count == 1, let known = SpecialUse.allCases.first(where: { $0.rawValue.lowercased() == use.lowercased() }) else {
                await output.write(line("\(tag) NO [USEATTR] Unsupported special-use attribute"))
                return
            }
            specialUse = known
        }
        do {
            let created = try await store.createMailbox(accountID: account.id, name: decoded, specialUse: specialUse)
            await finish(tag, "[MAILBOXID (\(IMAPObjectID.mailbox(created)))] CREATE completed", session: &session, output: output, expunges: true)
        } catch {
            await storeFailure(error, tag: tag, output: output)
        }
    }

    func delete(tag: String, name: MailboxName, session: inout IMAPSession, output: any IMAPOutput) async {
        guard let account = session.account,
              let decoded = await mailboxName(name, tag: tag, session: session, output: output) else { return }
        guard decoded != "INBOX" else {
            await output.write(line("\(tag) NO [CANNOT] INBOX cannot be deleted"))
            return
        }
        guard let sqlite = store as? SQLiteMailStore else {
            await output.write(line("\(tag) NO [CANNOT] DELETE is not supported by this store"))
            return
        }
        do {
            try await sqlite.deleteMailbox(accountID: account.id, name: decoded)
            if session.selected?.name == decoded {
                session.didDeselect()
                session.changeInbox.watch(accountID: account.id, mailboxID: nil)
            }
            await finish(tag, "DELETE completed", session: &session, output: output, expunges: true)
        } catch {
            await storeFailure(error, tag: tag, output: output)
        }
    }

    func rename(tag: String, from: MailboxName, to: MailboxName, session: inout IMAPSession, output: any IMAPOutput) async {
        guard let account = session.account,
              let old = await mailboxName(from, tag: tag, session: session, output: output),
              let new = await mailboxName(to, tag: tag, session: session, output: output) else { return }
        guard let sqlite = store as? SQLiteMailStore else {
            await output.write(line("\(tag) NO [CANNOT] RENAME is not supported by this store"))
            return
        }
        do {
            if old == "INBOX" {
                // RFC 9051 §6.3.6: renaming INBOX moves its messages to the new mailbox and leaves
                // INBOX empty.
                try await renameInbox(account: account, to: new, session: &session)
            } else {
                try await sqlite.renameMailbox(accountID: account.id, from: old, to: new)
            }
            await finish(tag, "RENAME completed", session: &session, output: output, expunges: true)
        } catch {
            await storeFailure(error, tag: tag, output: output)
        }
    }

    private func renameInbox(account: AccountRecord, to new: String, session: inout IMAPSession) async throws {
        guard let inbox = try await store.mailbox(accountID: account.id, name: "INBOX") else {
            throw StoreError.notFound("mailbox INBOX")
        }
        try await store.createMailbox(accountID: account.id, name: new, specialUse: nil)
        let messages = try await store.messages(mailboxID: inbox.id)
        for message in messages {
            let bytes = try await store.messageBytes(messageID: message.id)
            _ = try await store.deliver(Delivery(message: .memory(bytes), recipients: [
                DeliveryRecipient(accountID: account.id, mailbox: new, flags: message.flags, keywords: message.keywords),
            ], internalDate: message.internalDate))
        }
        try await store.expunge(mailboxID: inbox.id, uids: messages.map(\.uid))
    }

    func setSubscribed(tag: String, name: MailboxName, _ subscribed: Bool, session: inout IMAPSession, output: any IMAPOutput) async {
        guard let account = session.account,
              let decoded = await mailboxName(name, tag: tag, session: session, output: output) else { return }
        guard let sqlite = store as? SQLiteMailStore else {
            await output.write(line("\(tag) NO [CANNOT] SUBSCRIBE is not supported by this store"))
            return
        }
        do {
            try await sqlite.setSubscribed(accountID: account.id, name: decoded, subscribed)
            await finish(tag, subscribed ? "SUBSCRIBE completed" : "UNSUBSCRIBE completed", session: &session, output: output,
                         expunges: true)
        } catch StoreError.notFound where !subscribed {
            // Unsubscribing from a mailbox that is gone is not an error worth reporting.
            await finish(tag, "UNSUBSCRIBE completed", session: &session, output: output, expunges: true)
        } catch {
            await storeFailure(error, tag: tag, output: output)
        }
    }

    // MARK: LIST, LSUB (RFC 9051 §6.3.9, RFC 5258, RFC 6154, RFC 5819)

    func list(tag: String, _ command: ListCommand, lsub: Bool, session: inout IMAPSession, output: any IMAPOutput) async {
        guard let account = session.account else { return }
        let verb = lsub ? "LSUB" : "LIST"
        // RFC 9051 §6.3.9: an empty pattern asks for the delimiter and root.
        if command.patterns.count == 1, command.patterns[0].bytes.isEmpty, command.selectionOptions.isEmpty {
            await output.write(line("* \(verb) (\\Noselect) \"/\" \"\""))
            await finish(tag, "\(verb) completed", session: &session, output: output, expunges: true)
            return
        }
        guard let reference = session.decodeMailboxName(command.reference) ?? (command.reference.bytes.isEmpty ? "" : nil) else {
            await output.write(line("\(tag) NO [CANNOT] Invalid reference"))
            return
        }
        var patterns: [String] = []
        for pattern in command.patterns {
            let text = pattern.bytes.isEmpty ? "" : (session.decodeMailboxName(pattern) ?? "")
            patterns.append(MailboxPattern.join(reference: reference, pattern: text))
        }
        let selection = Set(command.selectionOptions)
        let returns = Set(command.returnOptions)
        let subscribedOnly = selection.contains("SUBSCRIBED")
        let specialUseOnly = selection.contains("SPECIAL-USE")
        do {
            let mailboxes = try await store.mailboxes(accountID: account.id)
            let names = Set(mailboxes.map(\.name))
            for mailbox in mailboxes {
                guard patterns.contains(where: { MailboxPattern.matches(mailbox.name, pattern: $0) }) else { continue }
                if subscribedOnly, !mailbox.subscribed { continue }
                if specialUseOnly, mailbox.specialUse == nil { continue }
                var attributes: [String] = []
                let hasChildren = names.contains { $0.hasPrefix(mailbox.name + "/") }
                attributes.append(hasChildren ? "\\HasChildren" : "\\HasNoChildren")
                if !lsub, subscribedOnly || returns.contains("SUBSCRIBED"), mailbox.subscribed { attributes.append("\\Subscribed") }
                if let use = mailbox.specialUse, !lsub { attributes.append(use.rawValue) }
                var w = IMAPResponseWriter(utf8Accepted: session.utf8Accepted)
                w.raw("* \(verb) (\(attributes.joined(separator: " "))) \"/\" ")
                w.astring(session.encodeMailboxName(mailbox.name))
                w.crlf()
                if !command.returnStatus.isEmpty {
                    // RFC 5819 §2: a STATUS response right after each LIST response.
                    w.raw(try await statusLine(mailbox: mailbox, items: command.returnStatus, session: session))
                }
                await output.write(w.bytes)
            }
            await finish(tag, "\(verb) completed", session: &session, output: output, expunges: true)
        } catch {
            await storeFailure(error, tag: tag, output: output)
        }
    }

    // MARK: STATUS (RFC 9051 §6.3.11)

    func status(tag: String, name: MailboxName, items: [StatusAttribute], session: inout IMAPSession, output: any IMAPOutput) async {
        guard let account = session.account,
              let decoded = await mailboxName(name, tag: tag, session: session, output: output) else { return }
        if items.contains(.highestModSeq) { await enableCondStore(session: &session, output: output) }
        do {
            guard let mailbox = try await store.mailbox(accountID: account.id, name: decoded) else {
                await output.write(line("\(tag) NO [NONEXISTENT] No such mailbox"))
                return
            }
            await output.write(try await statusLine(mailbox: mailbox, items: items, session: session))
            await finish(tag, "STATUS completed", session: &session, output: output, expunges: true)
        } catch {
            await storeFailure(error, tag: tag, output: output)
        }
    }

    func statusLine(mailbox: MailboxRecord, items: [StatusAttribute], session: IMAPSession) async throws -> [UInt8] {
        var counts = MessageCounts()
        if items.contains(where: { $0 == .unseen || $0 == .deleted || $0 == .size || $0 == .deletedStorage }) {
            counts = try await store.messageCounts(mailboxID: mailbox.id, size: items.contains(.size))
        }
        var w = IMAPResponseWriter(utf8Accepted: session.utf8Accepted)
        w.raw("* STATUS ")
        w.astring(session.encodeMailboxName(mailbox.name))
        w.raw(" (")
        for (i, item) in items.enumerated() {
            if i > 0 { w.space() }
            w.raw(item.rawValue + " ")
            switch item {
            case .messages: w.number(mailbox.messageCount)
            case .uidNext: w.number(mailbox.uidNext)
            case .uidValidity: w.number(mailbox.uidValidity)
            case .unseen: w.number(counts.unseen)
            case .deleted: w.number(counts.deleted)
            case .size: w.number(counts.size ?? 0)
            case .recent: w.number(0)
            case .highestModSeq: w.number(mailbox.highestModSeq)
            case .mailboxID: w.raw("(\(IMAPObjectID.mailbox(mailbox)))")
            case .deletedStorage: w.number(IMAPQuota.kibibytes(counts.deletedSize))
            }
        }
        w.raw(")")
        w.crlf()
        return w.bytes
    }
}

/// LIST patterns (RFC 9051 §6.3.9): "*" matches anything, "%" anything but the delimiter.
enum MailboxPattern {
    static func join(reference: String, pattern: String) -> String {
        if reference.isEmpty || pattern.hasPrefix("/") { return pattern }
        return reference.hasSuffix("/") ? reference + pattern : reference + "/" + pattern
    }

    static func matches(_ name: String, pattern: String) -> Bool {
        var pattern = pattern
        // INBOX is case-insensitive in patterns too.
        if pattern.uppercased().hasPrefix("INBOX"), name.hasPrefix("INBOX") {
            pattern = "INBOX" + pattern.dropFirst(5)
        }
        return match(Array(name.unicodeScalars), 0, Array(pattern.unicodeScalars), 0, budget: 10_000) ?? false
    }

    /// Backtracking with a step budget, so a hostile pattern ("*%*%*%…") cannot burn the CPU.
    private static func match(_ n: [Unicode.Scalar], _ i: Int, _ p: [Unicode.Scalar], _ j: Int, budget: Int) -> Bool? {
        var budget = budget
        return step(n, i, p, j, &budget)
    }

    private static func step(_ n: [Unicode.Scalar], _ i: Int, _ p: [Unicode.Scalar], _ j: Int, _ budget: inout Int) -> Bool? {
        budget -= 1
        if budget < 0 { return nil }
        if j == p.count { return i == n.count }
        let c = p[j]
        if c == "*" || c == "%" {
            var k = i
            while true {
                if let r = step(n, k, p, j + 1, &budget) { if r { return true } } else { return nil }
                if k == n.count { return false }
                if c == "%", n[k] == "/" { return false }
                k += 1
            }
        }
        guard i < n.count, n[i] == c else { return false }
        return step(n, i + 1, p, j + 1, &budget)
    }
}
