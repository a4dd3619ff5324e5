// What IMAP derives from a blob, kept in memory and shared by every session: decoded MIME
// summaries (SEARCH on envelope keys, FETCH of ENVELOPE, BODYSTRUCTURE or sections) and header
// bytes (FETCH BODY[HEADER], what clients ask for when they list a mailbox). Reading them again
// costs more than the query that finds them: after any commit by another connection, SQLite
// starts each read with an empty page cache. Blob ids are hashes of the bytes, and what is kept
// depends only on the bytes, so an entry is never stale; it only ages out. Dovecot keeps the
// same things in its dovecot.index.cache.

import FacteurMIME
import Foundation

/// Eviction is CLOCK (second chance): entries leave in insertion order, except that one read
/// since it last came round sends it to the back once more. A stream of new blobs read once
/// (new mail) then passes through without pushing out what sessions keep reading.
final class BlobCache<Value: Sendable>: @unchecked Sendable {
    private struct Entry {
        var value: Value
        var cost: Int
        var referenced = false
    }

    private let lock = NSLock()
    private var entries: [String: Entry] = [:]
    /// The clock's ring, oldest first from `head`.
    private var order: [String] = []
    private var head = 0
    private var cost = 0
    /// Upper bound on the cost of the values held (their encoded size, in bytes).
    let budget: Int

    init(budget: Int) {
        self.budget = budget
    }

    func value(forBlob blobID: String) -> Value? {
        values(forBlobs: CollectionOfOne(blobID))[0]
    }

    /// The values of many blobs under one lock: per-id locking made concurrent SEARCHes queue
    /// on the lock (futex waits and context switches) more than they read.
    func values(forBlobs blobIDs: some Sequence<String>) -> [Value?] {
        lock.withLock {
            blobIDs.map { blobID in
                guard let index = entries.index(forKey: blobID) else { return nil }
                entries.values[index].referenced = true
                return entries.values[index].value
            }
        }
    }

    func insert(_ value: Value, forBlob blobID: String, cost: Int) {
        guard cost <= budget / 4 else { return }
        lock.withLock {
            guard entries[blobID] == nil else { return }
            entries[blobID] = Entry(value: value, cost: cost)
            order.append(blobID)
            self.cost += cost
            // Each entry gets at most one second chance per turn, so this ends.
            while self.cost > budget, head < order.count {
                let oldest = order[head]
                head += 1
                guard let entry = entries[oldest] else { continue }
                if entry.referenced, oldest != blobID {
                    entries[oldest]!.referenced = false
                    order.append(oldest)
                } else {
                    entries[oldest] = nil
                    self.cost -= entry.cost
                }
            }
            if head > 1024, head * 2 > order.count {
                order.removeFirst(head)
                head = 0
            }
        }
    }

    var count: Int { lock.withLock { entries.count } }
}
