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

    var hasSubscribers: Bool { lock.withLock { !subscribers.isEmpty } }

    func publish(_ changes: [MailboxChange]) {
        guard !changes.isEmpty else { return }
        let targets = lock.withLock { Array(subscribers.values) }
        for continuation in targets {
            for change in changes { continuation.yield(change) }
        }
    }

    /// Ends every stream (store closed).
    func finishAll() {
        let targets = lock.withLock {
            let all = Array(subscribers.values)
            subscribers.removeAll()
            return all
        }
        for continuation in targets { continuation.finish() }
    }
}
