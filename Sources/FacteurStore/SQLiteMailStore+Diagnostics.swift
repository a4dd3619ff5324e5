// Read-only views into SQLiteMailStore's tables, for tests and (later) `facteur status`.

import Foundation
import GRDB

extension SQLiteMailStore {
    enum Table: String, Sendable {
        case blob, message, mailbox, account, alias, domain, expunged
    }

    /// Rows in `table`.
    func rowCount(_ table: Table) async throws -> Int {
        try await read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM \(table.rawValue)") ?? 0 }
    }

    /// Where blob `id` lives: true inside SQLite, false as a file, nil when there is no row.
    func blobIsInline(_ id: String) async throws -> Bool? {
        try await read { db in try Bool.fetchOne(db, sql: "SELECT data IS NOT NULL FROM blob WHERE id = ?", arguments: [id]) }
    }

    /// A PRAGMA's value as the writer connection sees it (`journal_mode`, `synchronous`, …).
    func writerPragma(_ name: String) async throws -> String? {
        try await pool.writeWithoutTransaction { db in try String.fetchOne(db, sql: "PRAGMA \(name)") }
    }

    /// The path a file blob has (or would have).
    func blobPath(_ id: String) -> String { blobs.path(for: id) }

    /// Test hook: caps the database at its current size plus `extraPages`, so the next writes
    /// fail with SQLITE_FULL exactly as on a full disk.
    func limitDatabaseGrowth(extraPages: Int) async throws {
        try await pool.writeWithoutTransaction { db in
            let pages = try Int.fetchOne(db, sql: "PRAGMA page_count") ?? 0
            _ = try Int.fetchOne(db, sql: "PRAGMA max_page_count = \(pages + extraPages)")
        }
    }
}
