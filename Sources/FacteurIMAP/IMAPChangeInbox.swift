// Collects the store's committed changes (FacteurStore `MailboxChangeObserver`) for one
// connection, so that the session can report other sessions' changes at the points RFC 9051
// §7.5.1 and §5.2 allow (after a command, or at once while IDLE, RFC 2177 §3). It observes only
// the logged-in account, and is told directly by the committing thread: no task or stream per
// connection.

import FacteurStore
import NIOConcurrencyHelpers

public final class IMAPChangeInbox: MailboxChangeObserver, Sendable {
    /// Changes kept before the inbox gives up on details and asks for a full resync.
    static let capacity = 10_000

    struct Pending: Sendable {
        /// UIDs added to the watched mailbox, in commit order (hence ascending).
        var appended: [UInt32] = []
        /// UIDs removed from the watched mailbox.
        var expunged: [UInt32] = []
        /// The watched mailbox itself went away: only a fresh look at the store can say what is left.
        var mailboxGone = false
        var flagChanges: [(uid: UInt32, modSeq: UInt64)] = []
        /// Too many changes to keep: the details were dropped, and the session compares its
        /// UIDs with the store's instead.
        var overflowed = false
        var isEmpty: Bool { appended.isEmpty && expunged.isEmpty && !mailboxGone && flagChanges.isEmpty && !overflowed }
        var count: Int { appended.count + expunged.count + flagChanges.count }

        /// Keeps `n` more details unless that would pass `IMAPChangeInbox.capacity`; then only
        /// the overflow is remembered.
        mutating func keep(_ n: Int = 1, _ add: (inout Pending) -> Void) {
            if count + n > IMAPChangeInbox.capacity { overflowed = true } else { add(&self) }
        }
    }

    private struct State {
        var accountID: Int64?
        var mailboxID: Int64?
        var pending = Pending()
        var wake: (@Sendable () -> Void)?
    }

    private let state = NIOLockedValueBox(State())
    /// Where changes come from, once the connection is attached (tests may use none).
    private let source = NIOLockedValueBox<(store: any MailStore, account: Int64?)?>(nil)

    public init() {}

    deinit {
        if let attached = source.withLockedValue({ $0 }), attached.account != nil {
            attached.store.observeChanges(of: nil, by: self)
        }
    }

    /// From now on, `watch` subscribes to this store's changes of the watched account.
    public func attach(to store: any MailStore) {
        source.withLockedValue { $0 = (store, nil) }
    }

    /// Stops observing (the connection closed).
    public func detach() {
        let attached = source.withLockedValue { value -> (any MailStore)? in
            defer { value = nil }
            return value?.account == nil ? nil : value?.store
        }
        attached?.observeChanges(of: nil, by: self)
    }

    /// Which mailbox to watch (nil: none; only the account's mailbox list then matters).
    func watch(accountID: Int64?, mailboxID: Int64?) {
        // Subscribed before the state changes, so that nothing committed after the caller's next
        // snapshot is missed; outside the lock, which the feed takes while publishing.
        let store = source.withLockedValue { value -> (any MailStore)? in
            guard let attached = value, attached.account != accountID else { return nil }
            value?.account = accountID
            return attached.store
        }
        store?.observeChanges(of: accountID, by: self)
        state.withLockedValue {
            $0.accountID = accountID
            $0.mailboxID = mailboxID
            $0.pending = Pending()
        }
    }

    /// Called for each change of the watched account, on the committing thread.
    public func receive(_ change: MailboxChange) {
        let wake: (@Sendable () -> Void)? = state.withLockedValue { state in
            guard let mailboxID = state.mailboxID else { return nil }
            switch change {
            case .appended(_, let id, let uid, _):
                guard id == mailboxID else { return nil }
                state.pending.keep { $0.appended.append(uid) }
            case .expunged(_, let id, let uid, _):
                guard id == mailboxID else { return nil }
                state.pending.keep { $0.expunged.append(uid) }
            case .flagsChanged(_, let id, let uid, let modSeq):
                guard id == mailboxID else { return nil }
                state.pending.keep { $0.flagChanges.append((uid, modSeq)) }
            case .mailboxDeleted(_, let id):
                guard id == mailboxID else { return nil }
                state.pending.mailboxGone = true
            case .mailboxCreated, .mailboxRenamed:
                return nil
            }
            return state.wake
        }
        wake?()
    }

    /// Expunges seen while the session could not report them (RFC 9051 §7.5.1: not during
    /// FETCH, STORE or SEARCH) go back, to be reported at the next point that allows them.
    func putBack(expunged uids: [UInt32]) {
        guard !uids.isEmpty else { return }
        state.withLockedValue { $0.pending.keep(uids.count) { $0.expunged.append(contentsOf: uids) } }
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
