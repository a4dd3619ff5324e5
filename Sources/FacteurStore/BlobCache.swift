// What IMAP derives from a blob, kept in memory and shared by every session: decoded MIME
// summaries (SEARCH on envelope keys, FETCH of ENVELOPE, BODYSTRUCTURE or sections) and header
// bytes (FETCH BODY[HEADER], what clients ask for when they list a mailbox). Reading them again
// costs more than the query that finds them: after any commit by another connection, SQLite
// starts each read with an empty page cache. Blob ids are hashes of the bytes, and what is kept
// depends only on the bytes, so an entry is never stale; it only ages out. Dovecot keeps the
// same things in its dovecot.index.cache.

import FacteurMIME
import Foundation

final class BlobCache<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [String: Value] = [:]
    /// Insertion order, for first-in first-out eviction; `head` is the oldest live slot.
    private var order: [(blobID: String, cost: Int)] = []
    private var head = 0
    private var cost = 0
    /// Upper bound on the cost of the values held (their encoded size, in bytes).
    let budget: Int

    init(budget: Int) {
        self.budget = budget
    }

    func value(forBlob blobID: String) -> Value? {
        lock.withLock { entries[blobID] }
    }

    func insert(_ value: Value, forBlob blobID: String, cost: Int) {
        guard cost <= budget / 4 else { return }
        lock.withLock {
            guard entries[blobID] == nil else { return }
            entries[blobID] = value
            order.append((blobID, cost))
            self.cost += cost
            while self.cost > budget, head < order.count {
                let oldest = order[head]
                head += 1
                entries[oldest.blobID] = nil
                self.cost -= oldest.cost
            }
            if head > 1024, head * 2 > order.count {
                order.removeFirst(head)
                head = 0
            }
        }
    }

    var count: Int { lock.withLock { entries.count } }
}
