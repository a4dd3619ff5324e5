// The selected-state commands (RFC 9051 §6.4: EXPUNGE, SEARCH, FETCH, STORE, COPY, MOVE and
// their UID forms; UIDPLUS RFC 4315; MOVE RFC 6851; ESEARCH RFC 4731; SEARCHRES RFC 5182),
// APPEND (§6.3.12), and the untagged updates other sessions' changes cause (§7.5.1).

import FacteurMIME
import FacteurStore
import Foundation

extension IMAPCommandRunner {
    // MARK: FETCH (RFC 9051 §6.4.5)

    func fetch(tag: String, set: SequenceSet, attributes: [FetchAttribute], modifiers: FetchModifiers, uid: Bool,
               session: inout IMAPSession, output: any IMAPOutput) async {
        guard let selected = session.selected else { return }
        guard let (messages, invalid) = resolve(set, uid: uid, session: session), !invalid else {
            await output.write(line("\(tag) BAD Invalid message sequence number"))
            return
        }
        let needsSummary = IMAPFetchRenderer.needsSummary(attributes)
        let needsBytes = IMAPFetchRenderer.needsBytes(attributes)
        let headersOnly = needsBytes && needsSummary && IMAPFetchRenderer.needsOnlyHeader(attributes)
        let marksSeen = IMAPFetchRenderer.setsSeen(attributes) && !selected.readOnly
        if modifiers.vanished {
            // RFC 7162 §3.2.6: only UID FETCH, with CHANGEDSINCE, once QRESYNC is enabled.
            guard uid, modifiers.changedSince != nil, session.qresyncEnabled else {
                await output.write(line("\(tag) BAD VANISHED needs UID FETCH, CHANGEDSINCE and ENABLE QRESYNC"))
                return
            }
        }
        if modifiers.changedSince != nil || attributes.contains(.modSeq) {
            await enableCondStore(session: &session, output: output)
        }
        let condStore = session.condStoreEnabled
        var pending: [UInt8] = []
        do {
            if modifiers.vanished, let since = modifiers.changedSince {
                try await fetchVanished(set: set, since: since, session: session, output: output)
            }
            // Records (and summaries) are read one batch of UIDs per query, and the rendered
            // responses leave in chunks: FETCH 1:* of a 100,000-message mailbox neither makes
            // 100,000 store calls nor builds one giant response; memory stays one batch.
            var start = 0
            while start < messages.count {
                let end = min(start + Self.fetchBatchSize, messages.count)
                let batch = messages[start..<end]
                start = end
                let records = try await store.messages(mailboxID: selected.id, uids: batch.map(\.uid))
                var byUID: [UInt32: MessageRecord] = [:]
                byUID.reserveCapacity(records.count)
                for r in records { byUID[r.uid] = r }
                var recordsByID: [Int64: MessageRecord] = [:]
                if headersOnly { for r in records { recordsByID[r.id] = r } }
                var summaries: [Int64: MessageSummary] = [:]
                if needsSummary {
                    let wanted = records.filter { r in modifiers.changedSince.map { r.modSeq > $0 } ?? true }
                    summaries = try await store.summaries(of: wanted)
                }
                // Bytes too are read a group of messages per query (see `nextBytesGroup`).
                var bytesAhead: [Int64: [UInt8]] = [:]
                let batchedStore = needsBytes ? store as? any IMAPBatchedStore : nil
                for (index, (msn, messageUID)) in batch.enumerated() {
                    guard var record = byUID[messageUID] else { continue }
                    if let since = modifiers.changedSince, record.modSeq <= since { continue }
                    if let batchedStore, bytesAhead[record.id] == nil {
                        let group = Self.nextBytesGroup(batch[(batch.startIndex + index)...], byUID: byUID,
                                                        changedSince: modifiers.changedSince)
                        if headersOnly, let heads = Self.heads(group, byID: recordsByID, summaries: summaries) {
                            bytesAhead = try await batchedStore.messageHeads(of: heads)
                        } else {
                            bytesAhead = group.count > 1 ? try await batchedStore.messageBytes(messageIDs: group) : [:]
                        }
                    }
                    var attributes = attributes
                    if marksSeen, !record.flags.contains(.seen) {
                        record.flags.insert(.seen)
                        record.modSeq = try await store.setFlags(mailboxID: selected.id, uid: messageUID, flags: record.flags,
                                                                 keywords: record.keywords)
                        session.ownFlagChanges.insert(.init(uid: messageUID, modSeq: record.modSeq))
                        // RFC 9051 §6.4.5: the changed flags are reported (RFC 7162 §3.1.4.1: with MODSEQ).
                        if !attributes.contains(.flags) { attributes.append(.flags) }
                        if condStore, !attributes.contains(.modSeq) { attributes.append(.modSeq) }
                        // RFC 7162 §3.1: ... and with the UID.
                        if condStore, !attributes.contains(.uid) { attributes.insert(.uid, at: 0) }
                    }
                    let summary = needsSummary ? summaries[record.id] : nil
                    var bytes: [UInt8]?
                    if needsBytes {
                        if let ahead = bytesAhead.removeValue(forKey: record.id) {
                            bytes = ahead
                        } else {
                            bytes = try await store.messageBytes(messageID: record.id)
                        }
                    }
                    pending.append(contentsOf: IMAPFetchRenderer.render(
                        msn: msn, record: record, summary: summary, bytes: bytes, attributes: attributes, includeUID: uid,
                        includeModSeq: condStore && modifiers.changedSince != nil, utf8: session.utf8Accepted))
                    if pending.count >= Self.fetchChunkBytes {
                        await output.write(pending)
                        // A big body must not pin its buffer for the rest of the command.
                        pending.removeAll(keepingCapacity: pending.count <= 4 * Self.fetchChunkBytes)
                    }
                }
            }
            if !pending.isEmpty { await output.write(pending) }
            pending = []
            await finish(tag, "\(uid ? "UID FETCH" : "FETCH") completed", session: &session, output: output, expunges: uid)
        } catch {
            // What was rendered (flags already set \Seen among it) still reaches the client.
            if !pending.isEmpty { await output.write(pending) }
            await storeFailure(error, tag: tag, output: output)
        }
    }

    /// UIDs whose records FETCH reads per store query.
    static var fetchBatchSize: Int { storeQueryBatchSize }
    /// Messages whose bytes FETCH reads per store query, and the bytes such a group may hold:
    /// one query for twenty small messages, while a big one is still read (and freed) alone.
    static var bytesGroupCount: Int { 100 }
    static var bytesGroupBytes: Int64 { 1 << 20 }

    /// The ids of the messages, from the head of `rest`, whose bytes one query reads: up to
    /// `bytesGroupCount` of them while their sizes stay within `bytesGroupBytes` (the first
    /// always counts, so a single big message makes a group of one).
    static func nextBytesGroup(_ rest: ArraySlice<(msn: Int, uid: UInt32)>, byUID: [UInt32: MessageRecord],
                               changedSince: UInt64?) -> [Int64] {
        var ids: [Int64] = []
        var total: Int64 = 0
        for (_, uid) in rest {
            guard let record = byUID[uid] else { continue }
            if let changedSince, record.modSeq <= changedSince { continue }
            let size = max(0, record.size) + Int64(max(0, record.prefixLength))
            if !ids.isEmpty, total + size > bytesGroupBytes || ids.count >= bytesGroupCount { break }
            ids.append(record.id)
            total += size
        }
        return ids
    }
    /// Each message of `ids` with its header length (in the blob), or nil when a summary is missing.
    static func heads(_ ids: [Int64], byID: [Int64: MessageRecord],
                      summaries: [Int64: MessageSummary]) -> [(record: MessageRecord, blobLength: Int)]? {
        var heads: [(record: MessageRecord, blobLength: Int)] = []
        for id in ids {
            guard let record = byID[id], let summary = summaries[id] else { return nil }
            heads.append((record, summary.body.headerLength))
        }
        return heads
    }

    /// Rendered FETCH responses are written once this many bytes are pending: one write per
    /// few hundred small responses, while a big body still goes out on its own.
    static var fetchChunkBytes: Int { 64 * 1024 }

    /// Resolves a sequence set (or `$`) against the selected mailbox.
    func resolve(_ set: SequenceSet, uid: Bool, session: IMAPSession) -> (messages: [(msn: Int, uid: UInt32)], invalid: Bool)? {
        guard let selected = session.selected else { return nil }
        switch set {
        case .ranges(let ranges):
            return selected.resolve(ranges, uid: uid)
        case .saved:
            // RFC 5182 §2.1: "$" is the saved UIDs, whatever the command form.
            let ranges = session.savedSearch.map { SequenceRange(.number($0)) }
            return (ranges.isEmpty ? [] : selected.resolve(ranges, uid: true).messages, false)
        }
    }

    // MARK: STORE (RFC 9051 §6.4.6, CONDSTORE RFC 7162 §3.1.3)

    func store(tag: String, set: SequenceSet, action: StoreAction, unchangedSince: UInt64?, uid: Bool,
               session: inout IMAPSession, output: any IMAPOutput) async {
        guard let selected = session.selected else { return }
        guard !selected.readOnly else {
            await output.write(line("\(tag) NO [READ-ONLY] Mailbox is read-only"))
            return
        }
        guard let (messages, invalid) = resolve(set, uid: uid, session: session), !invalid else {
            await output.write(line("\(tag) BAD Invalid message sequence number"))
            return
        }
        if action.flags.contains(where: { if case .otherSystem = $0 { return true }; return $0 == .recent }) {
            await output.write(line("\(tag) BAD Unknown system flag"))
            return
        }
        var system = MessageFlags()
        var keywords: [String] = []
        for flag in action.flags {
            switch flag {
            case .seen: system.insert(.seen)
            case .answered: system.insert(.answered)
            case .flagged: system.insert(.flagged)
            case .deleted: system.insert(.deleted)
            case .draft: system.insert(.draft)
            case .keyword(let k): if !keywords.contains(where: { $0.caseInsensitiveCompare(k) == .orderedSame }) { keywords.append(k) }
            case .recent, .otherSystem: break
            }
        }
        if unchangedSince != nil { await enableCondStore(session: &session, output: output) }
        let condStore = session.condStoreEnabled
        var modified: [UInt32] = []
        let batchedStore = store as? any IMAPBatchedStore
        do {
            // One read per batch of UIDs and one write transaction per batch (not a read and a
            // write per message); the responses follow the batch's commit.
            var start = 0
            while start < messages.count {
                let end = min(start + Self.fetchBatchSize, messages.count)
                let batch = messages[start..<end]
                start = end
                let records = try await store.messages(mailboxID: selected.id, uids: batch.map(\.uid))
                var byUID: [UInt32: MessageRecord] = [:]
                byUID.reserveCapacity(records.count)
                for r in records { byUID[r.uid] = r }
                var updates: [FlagUpdate] = []
                var results: [(msn: Int, record: MessageRecord, changed: Bool)] = []
                results.reserveCapacity(batch.count)
                for (msn, messageUID) in batch {
                    guard var record = byUID[messageUID] else { continue }
                    if let unchangedSince, record.modSeq > unchangedSince {
                        modified.append(uid ? messageUID : UInt32(msn))
                        continue
                    }
                    var newFlags = record.flags
                    var newKeywords = record.keywords
                    switch action.mode {
                    case .replace:
                        newFlags = system
                        newKeywords = keywords
                    case .add:
                        newFlags.formUnion(system)
                        for k in keywords where !newKeywords.contains(where: { $0.caseInsensitiveCompare(k) == .orderedSame }) {
                            newKeywords.append(k)
                        }
                    case .remove:
                        newFlags.subtract(system)
                        newKeywords.removeAll { k in keywords.contains { $0.caseInsensitiveCompare(k) == .orderedSame } }
                    }
                    let changed = newFlags != record.flags || newKeywords != record.keywords
                    if changed {
                        record.flags = newFlags
                        record.keywords = newKeywords
                        updates.append(FlagUpdate(uid: messageUID, flags: newFlags, keywords: newKeywords))
                    }
                    results.append((msn, record, changed))
                }
                var modSeqs: [UInt32: UInt64] = [:]
                if let batchedStore {
                    modSeqs = try await batchedStore.setFlags(mailboxID: selected.id, updates: updates)
                } else {
                    for u in updates {
                        modSeqs[u.uid] = try await store.setFlags(mailboxID: selected.id, uid: u.uid, flags: u.flags, keywords: u.keywords)
                    }
                }
                for result in results {
                    let msn = result.msn
                    var record = result.record
                    if result.changed {
                        // Expunged by another session meanwhile: nothing to report for it.
                        guard let modSeq = modSeqs[record.uid] else { continue }
                        record.modSeq = modSeq
                        session.ownFlagChanges.insert(.init(uid: record.uid, modSeq: modSeq))
                    }
                    if !action.silent || condStore && unchangedSince != nil {
                        var attributes: [FetchAttribute] = action.silent ? [] : [.flags]
                        if condStore { attributes.append(.modSeq) }
                        await output.write(IMAPFetchRenderer.render(msn: msn, record: record, summary: nil, bytes: nil,
                                                                    // RFC 7162 §3.1: with CONDSTORE, UID and MODSEQ always.
                                                                    attributes: attributes, includeUID: uid || condStore, includeModSeq: false,
                                                                    utf8: session.utf8Accepted))
                    }
                }
            }
            if !modified.isEmpty {
                // RFC 7162 §3.1.3: the messages that failed the UNCHANGEDSINCE test.
                await reportChanges(session: &session, output: output, expunges: uid)
                await output.write(line("\(tag) OK [MODIFIED \(SequenceSetText.compress(modified))] Conditional STORE failed for some"))
                return
            }
            await finish(tag, "\(uid ? "UID STORE" : "STORE") completed", session: &session, output: output, expunges: uid)
        } catch {
            await storeFailure(error, tag: tag, output: output)
        }
    }

    // MARK: COPY, MOVE (RFC 9051 §6.4.7, RFC 6851, UIDPLUS RFC 4315 §3)

    func copy(tag: String, set: SequenceSet, target: MailboxName, move: Bool, uid: Bool,
              session: inout IMAPSession, output: any IMAPOutput) async {
        guard let selected = session.selected, let account = session.account else { return }
        if move, selected.readOnly {
            await output.write(line("\(tag) NO [READ-ONLY] Mailbox is read-only"))
            return
        }
        guard let (messages, invalid) = resolve(set, uid: uid, session: session), !invalid else {
            await output.write(line("\(tag) BAD Invalid message sequence number"))
            return
        }
        guard let name = await mailboxName(target, tag: tag, session: session, output: output) else { return }
        do {
            guard let destination = try await store.mailbox(accountID: account.id, name: name) else {
                // RFC 9051 §6.4.7: TRYCREATE tells the client CREATE would help.
                await output.write(line("\(tag) NO [TRYCREATE] No such mailbox"))
                return
            }
            var sourceUIDs: [UInt32] = []
            var destinationUIDs: [UInt32] = []
            for (_, messageUID) in messages {
                guard let record = try await store.message(mailboxID: selected.id, uid: messageUID) else { continue }
                let bytes = try await store.messageBytes(messageID: record.id)
                let result = try await store.deliver(Delivery(message: .memory(bytes), recipients: [
                    DeliveryRecipient(accountID: account.id, mailbox: destination.name, flags: record.flags, keywords: record.keywords),
                ], internalDate: record.internalDate))
                switch result.outcomes.first {
                case .stored(_, let newUID):
                    sourceUIDs.append(messageUID)
                    destinationUIDs.append(newUID)
                case .overQuota:
                    await output.write(line("\(tag) NO [OVERQUOTA] Quota exceeded"))
                    return
                default:
                    await output.write(line("\(tag) NO [TRYCREATE] No such mailbox"))
                    return
                }
            }
            let code = sourceUIDs.isEmpty ? "" :
                "[COPYUID \(destination.uidValidity) \(SequenceSetText.list(sourceUIDs)) \(SequenceSetText.list(destinationUIDs))] "
            if move {
                // RFC 6851 §4.3: COPYUID goes in an untagged OK before the EXPUNGEs.
                if !code.isEmpty { await output.write(line("* OK \(code)Moved")) }
                try await store.expunge(mailboxID: selected.id, uids: sourceUIDs)
                await reportExpunged(Set(sourceUIDs), session: &session, output: output)
                await finish(tag, "\(uid ? "UID MOVE" : "MOVE") completed", session: &session, output: output, expunges: true)
            } else {
                await finish(tag, "\(code)\(uid ? "UID COPY" : "COPY") completed", session: &session, output: output, expunges: true)
            }
        } catch {
            await storeFailure(error, tag: tag, output: output)
        }
    }

    // MARK: EXPUNGE, UID EXPUNGE (RFC 9051 §6.4.3, RFC 4315 §2.1)

    func expunge(tag: String, only: SequenceSet?, session: inout IMAPSession, output: any IMAPOutput) async {
        guard let selected = session.selected else { return }
        guard !selected.readOnly else {
            await output.write(line("\(tag) NO [READ-ONLY] Mailbox is read-only"))
            return
        }
        var restrict: Set<UInt32>?
        if let only {
            guard let (messages, _) = resolve(only, uid: true, session: session) else { return }
            restrict = Set(messages.map(\.uid))
        }
        if await expungeDeleted(session: &session, output: output, only: restrict) {
            // RFC 7162 §3.2.7: with CONDSTORE on, the tagged OK carries the new HIGHESTMODSEQ.
            var code = ""
            if session.condStoreEnabled, let account = session.account,
               let mailbox = try? await store.mailbox(accountID: account.id, name: selected.name) {
                code = "[HIGHESTMODSEQ \(mailbox.highestModSeq)] "
            }
            await finish(tag, "\(code)\(only == nil ? "EXPUNGE" : "UID EXPUNGE") completed", session: &session, output: output, expunges: true)
        } else {
            await output.write(line("\(tag) NO [UNAVAILABLE] Expunge failed"))
        }
    }

    /// Removes the messages flagged \Deleted (among `only`, if given); reports them when
    /// `output` is given (CLOSE removes silently). False when the store failed.
    func expungeDeleted(session: inout IMAPSession, output: (any IMAPOutput)?, only: Set<UInt32>?) async -> Bool {
        guard let selected = session.selected else { return false }
        do {
            // The \Deleted UIDs alone when the store can say (not every record of the mailbox).
            let deleted: [UInt32]
            if let batched = store as? any IMAPBatchedStore {
                deleted = try await batched.deletedUIDs(mailboxID: selected.id)
            } else {
                deleted = try await store.messages(mailboxID: selected.id).filter { $0.flags.contains(.deleted) }.map(\.uid)
            }
            let doomed = deleted.filter { only?.contains($0) ?? true }
            guard !doomed.isEmpty else { return true }
            try await store.expunge(mailboxID: selected.id, uids: doomed)
            if let output {
                await reportExpunged(Set(doomed), session: &session, output: output)
            }
            return true
        } catch {
            return false
        }
    }

    /// Sends `* n EXPUNGE` for these UIDs, highest sequence number first so that each number is
    /// right when it is sent (RFC 9051 §7.5.1), and drops them from the snapshot.
    func reportExpunged(_ uids: Set<UInt32>, session: inout IMAPSession, output: any IMAPOutput) async {
        guard var selected = session.selected else { return }
        var indices: [Int] = []
        for (i, u) in selected.uids.enumerated() where uids.contains(u) { indices.append(i) }
        if session.qresyncEnabled {
            // RFC 7162 §3.2.10: once QRESYNC is enabled, VANISHED (by UID) replaces EXPUNGE.
            await writeVanished(indices.map { selected.uids[$0] }, earlier: false, output: output)
            for i in indices.reversed() { selected.uids.remove(at: i) }
            session.selected = selected
            return
        }
        for i in indices.reversed() {
            await output.write(line("* \(i + 1) EXPUNGE"))
            selected.uids.remove(at: i)
        }
        session.selected = selected
    }

    // MARK: APPEND (RFC 9051 §6.3.12, MULTIAPPEND RFC 3502, UIDPLUS RFC 4315 §3)

    func append(tag: String, name: MailboxName, messages: [AppendMessage], session: inout IMAPSession, output: any IMAPOutput) async {
        guard let account = session.account,
              let decoded = await mailboxName(name, tag: tag, session: session, output: output) else { return }
        do {
            guard let mailbox = try await store.mailbox(accountID: account.id, name: decoded) else {
                await output.write(line("\(tag) NO [TRYCREATE] No such mailbox"))
                return
            }
            var uids: [UInt32] = []
            for message in messages {
                guard message.bytes.count <= session.configuration.limits.maxMessageSize else {
                    await output.write(line("\(tag) NO [TOOBIG] Message too large"))
                    return
                }
                var flags = MessageFlags()
                var keywords: [String] = []
                for flag in message.flags {
                    switch flag {
                    case .seen: flags.insert(.seen)
                    case .answered: flags.insert(.answered)
                    case .flagged: flags.insert(.flagged)
                    case .deleted: flags.insert(.deleted)
                    case .draft: flags.insert(.draft)
                    case .keyword(let k): keywords.append(k)
                    case .recent, .otherSystem: break
                    }
                }
                let result = try await store.deliver(Delivery(
                    message: .memory(LineEndings.crlf(message.bytes)),
                    recipients: [DeliveryRecipient(accountID: account.id, mailbox: mailbox.name, flags: flags, keywords: keywords)],
                    internalDate: message.internalDate ?? Date()))
                switch result.outcomes.first {
                case .stored(_, let uid): uids.append(uid)
                case .overQuota:
                    await output.write(line("\(tag) NO [OVERQUOTA] Quota exceeded"))
                    return
                default:
                    await output.write(line("\(tag) NO [TRYCREATE] No such mailbox"))
                    return
                }
            }
            await finish(tag, "[APPENDUID \(mailbox.uidValidity) \(SequenceSetText.list(uids))] APPEND completed",
                         session: &session, output: output, expunges: true)
        } catch {
            await storeFailure(error, tag: tag, output: output)
        }
    }

    // MARK: SEARCH (RFC 9051 §6.4.4, ESEARCH RFC 4731, SEARCHRES RFC 5182)

    func search(tag: String, _ command: SearchCommand, uid: Bool, session: inout IMAPSession, output: any IMAPOutput) async {
        guard let selected = session.selected else { return }
        if let charset = command.charset, !["UTF-8", "US-ASCII"].contains(charset) {
            await output.write(line("\(tag) NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset"))
            return
        }
        let usesModSeq = command.key.usesModSeq
        if usesModSeq { await enableCondStore(session: &session, output: output) }
        do {
            let records = try await store.messages(mailboxID: selected.id)
            // The session's view and the records both ascend by UID: one pass pairs each message
            // number with its record (a message expunged meanwhile has none and cannot match).
            var visible: [(msn: Int, record: Int)] = []
            visible.reserveCapacity(min(records.count, selected.uids.count))
            var next = 0
            for (i, messageUID) in selected.uids.enumerated() {
                while next < records.count, records[next].uid < messageUID { next += 1 }
                if next < records.count, records[next].uid == messageUID { visible.append((i + 1, next)) }
            }
            let fullText = try await FullTextAnswers.compute(for: command.key, mailboxID: selected.id, store: store)
            var matcher = IMAPSearchMatcher(store: store, selected: selected, saved: session.savedSearch, fullText: fullText)
            var matches: [(msn: Int, record: Int)] = []
            // Envelope keys read the summaries a batch at a time (one query per batch, not per message).
            let prefetch = IMAPSearchMatcher.needsSummary(command.key)
            var start = 0
            while start < visible.count {
                let batch = visible[start ..< min(start + Self.fetchBatchSize, visible.count)]
                if prefetch { try await matcher.prefetch(batch.map { records[$0.record] }) }
                for message in batch {
                    if try await matcher.matches(command.key, msn: message.msn, record: records[message.record]) { matches.append(message) }
                }
                start = batch.endIndex
            }
            let numbers = matches.map { uid ? records[$0.record].uid : UInt32($0.msn) }
            // RFC 7162 §3.1.5: with MODSEQ in the criteria, the highest MODSEQ of the matches.
            let highest = usesModSeq ? matches.map { records[$0.record].modSeq }.max() : nil
            if let options = command.returnOptions {
                let set = Set(options)
                if set.contains(.save) { session.savedSearch = matches.map { records[$0.record].uid } }
                let wantsResult = !(set.count == 1 && set.contains(.save))
                if wantsResult {
                    var parts = ["* ESEARCH (TAG \"\(tag)\")"]
                    if uid { parts.append("UID") }
                    let all = set.isEmpty || set.contains(.all) || (set == [.save] ? false : false)
                    if set.contains(.min), let m = numbers.first { parts.append("MIN \(m)") }
                    if set.contains(.max), let m = numbers.last { parts.append("MAX \(m)") }
                    if set.contains(.count) { parts.append("COUNT \(numbers.count)") }
                    if all, !numbers.isEmpty { parts.append("ALL \(SequenceSetText.compress(numbers))") }
                    if let highest { parts.append("MODSEQ \(highest)") }
                    await output.write(line(parts.joined(separator: " ")))
                }
            } else {
                await output.write(line("* SEARCH" + numbers.map { " \($0)" }.joined() + (highest.map { " (MODSEQ \($0))" } ?? "")))
            }
            await finish(tag, "\(uid ? "UID SEARCH" : "SEARCH") completed", session: &session, output: output, expunges: uid)
        } catch {
            await storeFailure(error, tag: tag, output: output)
        }
    }

    // MARK: Untagged updates (RFC 9051 §7.5.1, §5.2)

    /// Reports other sessions' changes to the selected mailbox: new messages (EXISTS), flag
    /// changes (FETCH FLAGS), and, when `expunges` allows, removed ones (EXPUNGE).
    func reportChanges(session: inout IMAPSession, output: any IMAPOutput, expunges: Bool) async {
        guard var selected = session.selected else {
            _ = session.changeInbox.take()
            return
        }
        let pending = session.changeInbox.take()
        guard !pending.isEmpty || session.needsResync else { return }
        do {
            var flagChanges = pending.flagChanges
            // The feed names each UID added or removed, so the usual case reads nothing. The store
            // is asked for the whole UID list only when those details are missing: the inbox
            // overflowed, the mailbox went away, or an earlier comparison failed.
            var gone: Set<UInt32>
            var added: [UInt32]
            if pending.overflowed || pending.mailboxGone || session.needsResync {
                let current = try await store.uids(mailboxID: selected.id)
                let present = Set(current)
                gone = Set(selected.uids.filter { !present.contains($0) })
                let last = selected.uids.last ?? 0
                added = current.filter { $0 > last }
                session.needsResync = false
                if pending.overflowed {
                    // Flag details were lost too: report every message's flags.
                    flagChanges = try await store.messages(mailboxID: selected.id).map { ($0.uid, $0.modSeq) }
                }
            } else {
                // A UID appended before this session's snapshot is already listed, and UIDs only
                // grow: what is new is above the last one known. Expunged UIDs not listed were
                // removed before the snapshot, or already reported by this session's EXPUNGE.
                let expunged = Set(pending.expunged)
                gone = expunged.isEmpty ? [] : Set(selected.uids.filter { expunged.contains($0) })
                let last = selected.uids.last ?? 0
                added = pending.appended.filter { $0 > last && !expunged.contains($0) }.sorted()
            }
            if !added.isEmpty {
                // Both lists come from the store in UID order; dedupe in case a snapshot overlapped.
                var previous = selected.uids.last ?? 0
                for uid in added where uid > previous {
                    selected.uids.append(uid)
                    previous = uid
                }
                session.selected = selected
                await output.write(line("* \(selected.uids.count) EXISTS"))
            }
            if !gone.isEmpty {
                if expunges {
                    await reportExpunged(gone, session: &session, output: output)
                    selected = session.selected ?? selected
                } else {
                    session.changeInbox.putBack(expunged: Array(gone))
                }
            }
            var seen = Set<UInt32>()
            for (uid, modSeq) in flagChanges {
                if session.ownFlagChanges.remove(.init(uid: uid, modSeq: modSeq)) != nil { continue }
                guard seen.insert(uid).inserted, let msn = selected.sequenceNumber(of: uid),
                      let record = try await store.message(mailboxID: selected.id, uid: uid) else { continue }
                var attributes: [FetchAttribute] = [.flags]
                if session.enabled.contains("CONDSTORE") { attributes.append(.modSeq) }
                await output.write(IMAPFetchRenderer.render(msn: msn, record: record, summary: nil, bytes: nil, attributes: attributes,
                                                            includeUID: true, includeModSeq: false, utf8: session.utf8Accepted))
            }
            if session.ownFlagChanges.count > 10_000 { session.ownFlagChanges.removeAll() }
        } catch {
            session.needsResync = true
        }
    }
}

/// Sequence sets as the server writes them (COPYUID, APPENDUID, ESEARCH ALL, MODIFIED).
enum SequenceSetText {
    /// "1,3,5" in the given order (COPYUID pairs source and destination UIDs by position).
    static func list(_ numbers: [UInt32]) -> String {
        // Ranges keep responses short, but only where order allows them.
        var parts: [String] = []
        var i = 0
        while i < numbers.count {
            var j = i
            while j + 1 < numbers.count, numbers[j + 1] == numbers[j] &+ 1 { j += 1 }
            parts.append(j > i ? "\(numbers[i]):\(numbers[j])" : "\(numbers[i])")
            i = j + 1
        }
        return parts.joined(separator: ",")
    }

    /// Sorted and compressed into ranges.
    static func compress(_ numbers: [UInt32]) -> String { list(Array(Set(numbers)).sorted()) }
}

/// APPEND takes what clients send; the store wants CRLF line ends only (bare LF becomes CRLF).
enum LineEndings {
    static func crlf(_ bytes: [UInt8]) -> [UInt8] {
        var needsFix = false
        for (i, b) in bytes.enumerated() where b == 0x0A && (i == 0 || bytes[i - 1] != 0x0D) { needsFix = true; break }
        for (i, b) in bytes.enumerated() where b == 0x0D && (i + 1 == bytes.count || bytes[i + 1] != 0x0A) { needsFix = true; break }
        guard needsFix else { return bytes }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + bytes.count / 50)
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b == 0x0D {
                out.append(contentsOf: [0x0D, 0x0A])
                if i + 1 < bytes.count, bytes[i + 1] == 0x0A { i += 1 }
            } else if b == 0x0A {
                out.append(contentsOf: [0x0D, 0x0A])
            } else {
                out.append(b)
            }
            i += 1
        }
        return out
    }
}
