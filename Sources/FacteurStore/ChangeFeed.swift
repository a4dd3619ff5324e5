// ChangeFeed: broadcasts every committed mailbox change to every subscriber (IMAP IDLE and
// NOTIFY, RFC 2177 / RFC 5465; POP3; the admin UI). In-process only; the PostgreSQL store
// carries it across nodes with LISTEN/NOTIFY.

import Foundation

/// A lock-protected set of stream continuations. `publish` is called on the database writer's
/// queue right after a commit, so subscribers see changes in commit order.
final class ChangeFeed: @unchecked Sendable {
    /// A subscriber that stops reading loses the oldest changes beyond this many, never blocks
    /// the writer and never grows memory without bound.
    static let bufferLimit = 10_000

    private let lock = NSLock()
    private var subscribers: [UInt64: AsyncStream<MailboxChange>.Continuation] = [:]
    private var nextID: UInt64 = 0
    /// Observers by account, held weakly; `observedAccount` finds an observer's current entry.
    private var observers: [Int64: [ObjectIdentifier: WeakObserver]] = [:]
    private var observedAccount: [ObjectIdentifier: Int64] = [:]

    private struct WeakObserver {
        weak var value: (any MailboxChangeObserver)?
    }

    func observe(_ accountID: Int64?, by observer: any MailboxChangeObserver) {
        let key = ObjectIdentifier(observer)
        lock.withLock {
            if let previous = observedAccount.removeValue(forKey: key) {
                observers[previous]?[key] = nil
                if observers[previous]?.isEmpty == true { observers[previous] = nil }
            }
            guard let accountID else { return }
            observedAccount[key] = accountID
            observers[accountID, default: [:]][key] = WeakObserver(value: observer)
        }
    }

    func subscribe() -> AsyncStream<MailboxChange> {
        let (stream, continuation) = AsyncStream<MailboxChange>.makeStream(
            bufferingPolicy: .bufferingNewest(ChangeFeed.bufferLimit))
        let id: UInt64 = lock.withLock {
            nextID += 1
            subscribers[nextID] = continuation
            return nextID
        }
        continuation.onTermination = { [weak self] _ in
            guard let self else { return }
            _ = self.lock.withLock { self.subscribers.removeValue(forKey: id) }
        }
        return stream
    }

    var hasSubscribers: Bool { lock.withLock { !subscribers.isEmpty || !observers.isEmpty } }

    func publish(_ changes: [MailboxChange]) {
        guard !changes.isEmpty else { return }
        // Each observer gets the changes of its own account only, in commit order.
        let (targets, deliveries) = lock.withLock { () -> ([AsyncStream<MailboxChange>.Continuation], [(any MailboxChangeObserver, [MailboxChange])]) in
            var deliveries: [(any MailboxChangeObserver, [MailboxChange])] = []
            var accounts: [Int64] = []
            for change in changes where !accounts.contains(change.accountID) { accounts.append(change.accountID) }
            for account in accounts {
                guard let entries = observers[account] else { continue }
                let mine = changes.filter { $0.accountID == account }
                for entry in entries.values {
                    if let observer = entry.value { deliveries.append((observer, mine)) }
                }
            }
            return (Array(subscribers.values), deliveries)
        }
        for continuation in targets {
            for change in changes { continuation.yield(change) }
        }
        // Outside the lock: an observer may wake its connection, which may ask the feed again.
        for (observer, mine) in deliveries {
            for change in mine { observer.receive(change) }
        }
    }

    /// Ends every stream (store closed).
    func finishAll() {
        let targets = lock.withLock {
            let all = Array(subscribers.values)
            subscribers.removeAll()
            observers.removeAll()
            observedAccount.removeAll()
            return all
        }
        for continuation in targets { continuation.finish() }
    }
}
