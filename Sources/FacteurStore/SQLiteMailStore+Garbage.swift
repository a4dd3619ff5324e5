// Garbage collection of SQLiteMailStore's blobs: rows and files that no message references
// any more (after expunge, mailbox or account removal), and orphan files a crash left behind.
// A blob the outbound queue references (queue_message.blobID) is live too.

import Dispatch
import Foundation
import GRDB

extension SQLiteMailStore {
    /// SQL condition on a `blob` row: nothing references it, neither a message nor a queued
    /// message. The one definition of a live blob, for the collector and for EXPUNGE.
    static let blobIsUnreferenced = """
        NOT EXISTS (SELECT 1 FROM message WHERE message.blobID = blob.id)
        AND NOT EXISTS (SELECT 1 FROM queue_message WHERE queue_message.blobID = blob.id)
        """

    /// Removes unreferenced blobs and returns how many went. Never removes a blob a delivery in
    /// flight is about to reference (`BlobGuard`), nor an orphan file younger than
    /// `StoreLimits.orphanFileGracePeriod`. Safe to run while mail flows.
    public func collectGarbage() async throws -> Int {
        try await collectGarbage(now: Date())
    }

    func collectGarbage(now: Date) async throws -> Int {
        // 1. Rows nobody references.
        let candidates: [String] = try await read { db in
            try String.fetchAll(db, sql: "SELECT id FROM blob WHERE \(Self.blobIsUnreferenced)")
        }
        var removed = 0
        let condemned = blobGuard.condemn(candidates)
        do {
            defer { blobGuard.pardon(condemned) }
            // Checked again inside the transaction: a delivery may have committed a reference
            // between the read above and the condemnation.
            let deleted: [(id: String, isFile: Bool)] = try await write { db in
                // (Not `DELETE … RETURNING data IS NULL`: in this store's tests it reported 0 for
                // rows whose data was NULL; whether SQLite 3.40 or GRDB is at fault is not known.)
                let isFile = try db.cachedStatement(sql: "SELECT data IS NULL FROM blob WHERE id = ?")
                let delete = try db.cachedStatement(sql: "DELETE FROM blob WHERE id = ? AND \(Self.blobIsUnreferenced)")
                var deleted: [(id: String, isFile: Bool)] = []
                for id in condemned {
                    guard let file = try Bool.fetchOne(isFile, arguments: [id]) else { continue }
                    try delete.execute(arguments: [id])
                    if db.changesCount == 1 { deleted.append((id, file)) }
                }
                return deleted
            }
            let files = blobs
            let fileIDs = deleted.filter(\.isFile).map(\.id)
            if !fileIDs.isEmpty {
                await Self.blocking { for id in fileIDs { files.remove(id) } }
            }
            removed += deleted.count
        }

        // 2. Orphan files: a blob file without a file row (crash between the file's rename and
        // the commit, or a failed commit), and stale temp files.
        let files = blobs
        let listed = await Self.blocking { files.listFiles() }
        let old = listed.filter { now.timeIntervalSince($0.modified) >= StoreLimits.orphanFileGracePeriod }
        let stale = old.filter { $0.id == nil }.map(\.path)
        let orphanIDs = old.compactMap(\.id)
        if !orphanIDs.isEmpty {
            let condemnedFiles = blobGuard.condemn(orphanIDs)
            defer { blobGuard.pardon(condemnedFiles) }
            let orphans: [String] = try await read { db in
                let isFileRow = try db.cachedStatement(sql: "SELECT 1 FROM blob WHERE id = ? AND data IS NULL")
                return try condemnedFiles.filter { try Bool.fetchOne(isFileRow, arguments: [$0]) != true }
            }
            await Self.blocking { for id in orphans { files.remove(id) } }
            removed += orphans.count
        }
        if !stale.isEmpty {
            await Self.blocking { for path in stale { unlink(path) } }
        }
        if removed > 0 || !stale.isEmpty {
            logger.info("garbage collection removed \(removed) blob(s) and \(stale.count) stale temp file(s)")
        }
        return removed
    }

    /// Directory walks and unlinks, off Swift's cooperative threads.
    private static func blocking<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: work()) }
        }
    }
}
