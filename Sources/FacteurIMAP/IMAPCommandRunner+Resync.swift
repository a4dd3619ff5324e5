// CONDSTORE and QRESYNC (RFC 7162): the implicit enabling of CONDSTORE by the commands that use
// it (§3.1), SEARCH MODSEQ's result (§3.1.5), the quick resynchronisation on SELECT (§3.2.5),
// UID FETCH's VANISHED modifier (§3.2.6) and the VANISHED response that replaces EXPUNGE once
// QRESYNC is enabled (§3.2.10). Expunged UIDs come from the store's tombstones.

import FacteurStore

/// A store that remembers expunged UIDs with the MODSEQ of their removal.
public protocol IMAPExpungeHistory: Sendable {
    func expunged(mailboxID: Int64, sinceModSeq modSeq: UInt64) async throws -> [ExpungedMessage]
}

extension SQLiteMailStore: IMAPExpungeHistory {}

extension IMAPSession {
    public var condStoreEnabled: Bool { enabled.contains("CONDSTORE") }
    public var qresyncEnabled: Bool { enabled.contains("QRESYNC") }
}

extension IMAPCommandRunner {
    /// RFC 7162 §3.1: a CONDSTORE-enabling command (FETCH MODSEQ or CHANGEDSINCE, STORE
    /// UNCHANGEDSINCE, SEARCH MODSEQ, STATUS HIGHESTMODSEQ) turns CONDSTORE on for the session; in
    /// the selected state the client learns the mailbox's HIGHESTMODSEQ then (§3.1.2.1).
    func enableCondStore(session: inout IMAPSession, output: any IMAPOutput) async {
        guard !session.condStoreEnabled else { return }
        session.enabled.insert("CONDSTORE")
        guard let selected = session.selected, let account = session.account,
              let mailbox = try? await store.mailbox(accountID: account.id, name: selected.name) else { return }
        await output.write(line("* OK [HIGHESTMODSEQ \(mailbox.highestModSeq)] Highest"))
    }

    /// UIDs expunged from `mailboxID` after `modSeq`, ascending. Without a tombstone history the
    /// answer is every UID below UIDNEXT that is gone, a superset the RFC allows (§3.2.5.2).
    func vanished(mailboxID: Int64, since modSeq: UInt64, present: [UInt32], uidNext: UInt32) async throws -> [UInt32] {
        if let history = store as? any IMAPExpungeHistory {
            return try await history.expunged(mailboxID: mailboxID, sinceModSeq: modSeq).map(\.uid)
        }
        // Bounded: a store without history and with huge UIDs gets no VANISHED rather than a
        // walk over billions of numbers.
        guard uidNext > 1, uidNext <= Self.maxVanishedScan else { return [] }
        let present = Set(present)
        return (1 ..< uidNext).filter { !present.contains($0) }
    }

    /// Writes `* VANISHED [(EARLIER)] set` for `uids` (ascending), as ranges.
    func writeVanished(_ uids: [UInt32], earlier: Bool, output: any IMAPOutput) async {
        guard !uids.isEmpty else { return }
        await output.write(line("* VANISHED " + (earlier ? "(EARLIER) " : "") + SequenceSetText.ranges(uids)))
    }

    /// RFC 7162 §3.2.5.1: after SELECT's usual responses, when the client's UIDVALIDITY still
    /// holds, what changed since its MODSEQ: VANISHED (EARLIER) for expunged UIDs it knows, and
    /// FETCH (UID FLAGS MODSEQ) for messages whose flags changed (or that arrived) since then.
    func quickResync(_ parameters: QResyncParameters, mailbox: SelectedMailbox, messages: [MessageRecord],
                     session: IMAPSession, output: any IMAPOutput) async throws {
        guard parameters.uidValidity == mailbox.uidValidity else { return }
        let star = max(mailbox.uids.last ?? 0, mailbox.uidNext > 0 ? mailbox.uidNext - 1 : 0)
        let knownSet: UIDRangeSet?
        if case .ranges(let ranges)? = parameters.knownUIDs { knownSet = UIDRangeSet(ranges, star: star) } else { knownSet = nil }
        func known(_ uid: UInt32) -> Bool { knownSet?.contains(uid) ?? true }
        let gone = try await vanished(mailboxID: mailbox.id, since: parameters.modSeq, present: mailbox.uids,
                                      uidNext: mailbox.uidNext)
        await writeVanished(gone.filter(known), earlier: true, output: output)
        for (i, record) in messages.enumerated() where record.modSeq > parameters.modSeq && known(record.uid) {
            await output.write(IMAPFetchRenderer.render(msn: i + 1, record: record, summary: nil, bytes: nil,
                                                        attributes: [.flags, .modSeq], includeUID: true, includeModSeq: true,
                                                        utf8: session.utf8Accepted))
        }
    }

    /// RFC 7162 §3.2.6: UID FETCH ... (CHANGEDSINCE m VANISHED) first reports the UIDs in the set
    /// that were expunged after m. UIDs still in this session's snapshot are left to the
    /// ordinary (VANISHED) update, so the client's message count stays right.
    func fetchVanished(set: SequenceSet, since modSeq: UInt64, session: IMAPSession, output: any IMAPOutput) async throws {
        guard let selected = session.selected, case .ranges(let ranges) = set else { return }
        let star = max(selected.uids.last ?? 0, selected.uidNext > 0 ? selected.uidNext - 1 : 0)
        let requested = UIDRangeSet(ranges, star: star)
        let gone = try await vanished(mailboxID: selected.id, since: modSeq, present: selected.uids, uidNext: selected.uidNext)
        let reported = gone.filter { uid in selected.sequenceNumber(of: uid) == nil && requested.contains(uid) }
        await writeVanished(reported, earlier: true, output: output)
    }
}

extension IMAPCommandRunner {
    /// The largest UIDNEXT for which a store without tombstones gets a computed VANISHED.
    static let maxVanishedScan: UInt32 = 1_000_000
}

/// A client's sequence set as sorted, merged UID ranges: membership in O(log n), so that a
/// long known-uids list against a large mailbox costs little (RFC 7162 §3.2.5).
struct UIDRangeSet {
    private var ranges: [ClosedRange<UInt32>] = []

    init(_ set: [SequenceRange], star: UInt32) {
        for r in set.map({ $0.resolved(star: star) }).sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = ranges.last, r.lowerBound <= last.upperBound || r.lowerBound == last.upperBound &+ 1 {
                ranges[ranges.count - 1] = last.lowerBound ... max(last.upperBound, r.upperBound)
            } else {
                ranges.append(r)
            }
        }
    }

    func contains(_ uid: UInt32) -> Bool {
        var low = 0, high = ranges.count - 1
        while low <= high {
            let mid = (low + high) / 2
            if ranges[mid].contains(uid) { return true }
            if uid < ranges[mid].lowerBound { high = mid - 1 } else { low = mid + 1 }
        }
        return false
    }
}

extension SearchKey {
    /// Whether the key uses MODSEQ (RFC 7162 §3.1.5), at any depth (the parser caps the depth).
    var usesModSeq: Bool {
        switch self {
        case .modSeq: return true
        case .not(let k): return k.usesModSeq
        case .or(let a, let b): return a.usesModSeq || b.usesModSeq
        case .and(let keys): return keys.contains { $0.usesModSeq }
        default: return false
        }
    }
}

extension SequenceSetText {
    /// "1:3,7,9:10" from ascending numbers (VANISHED, RFC 7162 §3.2.10).
    static func ranges(_ numbers: [UInt32]) -> String {
        var parts: [String] = []
        var i = 0
        while i < numbers.count {
            var j = i
            while j + 1 < numbers.count, numbers[j + 1] == numbers[j] &+ 1, numbers[j] < UInt32.max { j += 1 }
            parts.append(i == j ? "\(numbers[i])" : "\(numbers[i]):\(numbers[j])")
            i = j + 1
        }
        return parts.joined(separator: ",")
    }
}
