// Collects the store's change feed (FacteurStore `MailStore.changes()`) for one connection, so
// that the session can report other sessions' changes at the points RFC 9051 §7.5.1 and §5.2
// allow (after a command, or at once while IDLE, RFC 2177 §3).

import FacteurStore
import NIOConcurrencyHelpers

public final class IMAPChangeInbox: Sendable {
    /// Changes kept before the inbox gives up on details and asks for a full resync.
    static let capacity = 10_000

    struct Pending: Sendable {
        /// Messages were added to or removed from the watched mailbox.
        var membershipChanged = false
        var flagChanges: [(uid: UInt32, modSeq: UInt64)] = []
        var overflowed = false
        var isEmpty: Bool { !membershipChanged && flagChanges.isEmpty && !overflowed }
    }

    private struct State {
        var accountID: Int64?
        var mailboxID: Int64?
        var pending = Pending()
        var wake: (@Sendable () -> Void)?
    }

    private let state = NIOLockedValueBox(State())

    public init() {}

    /// Which mailbox to watch (nil: none; only the account's mailbox list then matters).
    func watch(accountID: Int64?, mailboxID: Int64?) {
        state.withLockedValue {
            $0.accountID = accountID
            $0.mailboxID = mailboxID
            $0.pending = Pending()
        }
    }

    /// Called for each change the store publishes (from the feed's task).
    public func receive(_ change: MailboxChange) {
        let wake: (@Sendable () -> Void)? = state.withLockedValue { state in
            guard let mailboxID = state.mailboxID else { return nil }
            switch change {
            case .appended(_, let id, _, _), .expunged(_, let id, _, _):
                guard id == mailboxID else { return nil }
                state.pending.membershipChanged = true
            case .flagsChanged(_, let id, let uid, let modSeq):
                guard id == mailboxID else { return nil }
                if state.pending.flagChanges.count >= Self.capacity {
                    state.pending.overflowed = true
                } else {
                    state.pending.flagChanges.append((uid, modSeq))
                }
            case .mailboxDeleted(_, let id):
                guard id == mailboxID else { return nil }
                state.pending.membershipChanged = true
            case .mailboxCreated, .mailboxRenamed:
                return nil
            }
            return state.wake
        }
        wake?()
    }

    func take() -> Pending {
        state.withLockedValue { state in
            defer { state.pending = Pending() }
            return state.pending
        }
    }

    var hasPending: Bool { state.withLockedValue { !$0.pending.isEmpty } }

    /// IDLE: `wake` runs (on the feed's task) whenever a change for the watched mailbox arrives.
    func onChange(_ wake: (@Sendable () -> Void)?) {
        state.withLockedValue { $0.wake = wake }
    }
}
