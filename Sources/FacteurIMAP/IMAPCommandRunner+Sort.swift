// SORT, UID SORT, THREAD and UID THREAD against the store (RFC 5256 §3), SORT=DISPLAY's keys
// (RFC 5957) and ESORT's RETURN options answered with ESEARCH (RFC 5267 §3). The search part
// is SEARCH's (IMAPSearchMatcher); sort values come from the stored ENVELOPE, References from
// the message's header.

import FacteurMIME
import FacteurStore
import Foundation

extension IMAPCommandRunner {
    // MARK: SORT (RFC 5256 §3, RFC 5267 §3)

    func sort(tag: String, _ command: SortCommand, uid: Bool, session: inout IMAPSession, output: any IMAPOutput) async {
        let name = uid ? "UID SORT" : "SORT"
        guard await acceptsCharset(command.charset, tag: tag, output: output) else { return }
        if command.key.usesModSeq { await enableCondStore(session: &session, output: output) }
        do {
            // ARRIVAL and SIZE are in the message record; every other key needs the ENVELOPE.
            let envelopes = command.criteria.contains { $0.key != .arrival && $0.key != .size }
            let matches = try await sortableMatches(command.key, session: session, envelopes: envelopes)
            let sorted = IMAPSorter.sort(matches.map(\.sortable), by: command.criteria)
            let numbers = sorted.map { uid ? $0.uid : UInt32($0.msn) }
            if let options = command.returnOptions {
                // RFC 5267 §3.1: MIN and MAX are the first and last in sort order; ALL keeps the
                // order (ranges only where ascending, §3.2); no option at all means ALL (§3.3).
                let set = Set(options)
                var parts = ["* ESEARCH (TAG \"\(tag)\")"]
                if uid { parts.append("UID") }
                if set.contains(.min), let m = numbers.first { parts.append("MIN \(m)") }
                if set.contains(.max), let m = numbers.last { parts.append("MAX \(m)") }
                if set.contains(.count) { parts.append("COUNT \(numbers.count)") }
                if set.isEmpty || set.contains(.all), !numbers.isEmpty { parts.append("ALL \(SequenceSetText.list(numbers))") }
                await output.write(line(parts.joined(separator: " ")))
            } else {
                await output.write(line("* SORT" + numbers.map { " \($0)" }.joined()))
            }
            // RFC 5256 §3: no EXPUNGE during SORT; UID SORT may carry them.
            await finish(tag, "\(name) completed", session: &session, output: output, expunges: uid)
        } catch {
            await storeFailure(error, tag: tag, output: output)
        }
    }

    // MARK: THREAD (RFC 5256 §3)

    func thread(tag: String, _ command: ThreadCommand, uid: Bool, session: inout IMAPSession, output: any IMAPOutput) async {
        let name = uid ? "UID THREAD" : "THREAD"
        guard await acceptsCharset(command.charset, tag: tag, output: output) else { return }
        if command.key.usesModSeq { await enableCondStore(session: &session, output: output) }
        do {
            let needsReferences = command.algorithm == .references
            let matches = try await sortableMatches(command.key, session: session, references: needsReferences)
            let messages = matches.map { m in
                ThreadMessage(sortable: m.sortable, messageID: m.envelope?.messageID, inReplyTo: m.envelope?.inReplyTo,
                              references: m.references)
            }
            let forest = IMAPThreader.thread(messages, algorithm: command.algorithm)
            let text = forest.render { i in uid ? messages[i].sortable.uid : UInt32(messages[i].sortable.msn) }
            await output.write(line("* THREAD" + (text.isEmpty ? "" : " " + text)))
            await finish(tag, "\(name) completed", session: &session, output: output, expunges: uid)
        } catch {
            await storeFailure(error, tag: tag, output: output)
        }
    }

    // MARK: Helpers

    /// RFC 5256 §3: US-ASCII and UTF-8 must be implemented; others get BADCHARSET (RFC 9051 §7.1).
    private func acceptsCharset(_ charset: String, tag: String, output: any IMAPOutput) async -> Bool {
        guard ["UTF-8", "US-ASCII"].contains(charset) else {
            await output.write(line("\(tag) NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset"))
            return false
        }
        return true
    }

    private struct SortMatch {
        var sortable: SortableMessage
        var envelope: Envelope?
        var references: String?
    }

    /// The messages matching `key`, in sequence order, with what sorting and threading compare.
    private func sortableMatches(_ key: SearchKey, session: IMAPSession, envelopes: Bool = true,
                                 references: Bool = false) async throws -> [SortMatch] {
        guard let selected = session.selected else { return [] }
        let records = try await store.messages(mailboxID: selected.id)
        var byUID: [UInt32: MessageRecord] = [:]
        for r in records { byUID[r.uid] = r }
        var matcher = IMAPSearchMatcher(store: store, selected: selected, saved: session.savedSearch)
        var out: [SortMatch] = []
        for (i, messageUID) in selected.uids.enumerated() {
            guard let record = byUID[messageUID], try await matcher.matches(key, msn: i + 1, record: record) else { continue }
            var summary: MessageSummary?
            if envelopes || references { summary = try await store.summaries(of: [record])[record.id] }
            var referencesField: String?
            if references {
                // References is not in the ENVELOPE: read it from the header (bounded by the
                // summary's header length, so the body is not scanned).
                let bytes = try await store.messageBytes(messageID: record.id)
                let length = min(bytes.count, record.prefixLength + (summary?.body.headerLength ?? bytes.count))
                referencesField = MessageHeader(parsing: bytes[0 ..< length])["References"]
            }
            out.append(SortMatch(
                sortable: SortableMessage(msn: i + 1, uid: messageUID, internalDate: record.internalDate, size: record.size,
                                          envelope: summary?.envelope),
                envelope: summary?.envelope, references: referencesField))
        }
        return out
    }
}
