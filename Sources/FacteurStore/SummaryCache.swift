// Decoded MIME summaries kept in memory, shared by every session. SEARCH on envelope keys and
// FETCH of ENVELOPE, BODYSTRUCTURE or header sections read the same summaries again and again;
// decoding them costs more than the query that finds them. Blob ids are hashes of the bytes and
// a summary depends only on the bytes, so an entry is never stale; it only ages out.

import FacteurMIME
import Foundation

final class SummaryCache: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [String: MessageSummary] = [:]
    /// Insertion order, for first-in first-out eviction; `head` is the oldest live slot.
    private var order: [(blobID: String, cost: Int)] = []
    private var head = 0
    private var cost = 0
    /// Upper bound on the encoded size of the summaries held (decoded, they take a small
    /// multiple of it).
    let budget: Int

    init(budget: Int) {
        self.budget = budget
    }

    func value(forBlob blobID: String) -> MessageSummary? {
        lock.withLock { entries[blobID] }
    }

    func insert(_ summary: MessageSummary, forBlob blobID: String, cost: Int) {
        guard cost <= budget / 4 else { return }
        lock.withLock {
            guard entries.updateValue(summary, forKey: blobID) == nil else { return }
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
