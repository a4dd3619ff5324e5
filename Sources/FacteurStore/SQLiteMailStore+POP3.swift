// Reading one message's bytes for POP3 RETR/TOP (RFC 1939 §7) without Swift-concurrency hops:
// the async `messageContent(messageID:)` goes event loop → task → GRDB's reader actor → task →
// event loop, and those thread hand-offs cost more CPU than the query itself (profiled with
// bench/pop3/run.py). Two synchronous ways instead, one query each:
// - `messageContentBlocking(messageID:)` on the pool's readers, for a thread pool;
// - `MessageReader`, a read-only connection of its own that never waits on a lock, for a
//   caller that must not block long (a NIO event loop serving a small message).

import Foundation
import GRDB

extension SQLiteMailStore {
    /// The bytes served for a message (prefix, then blob), without loading a file blob.
    /// Blocks the calling thread on SQLite: call it from a thread pool, never an event loop.
    public func messageContentBlocking(messageID: Int64) throws -> MessageContent {
        let blobs = self.blobs
        do {
            return try pool.read { db in try Self.fetchContent(db, messageID: messageID, blobs: blobs) }
        } catch {
            throw Self.storeError(error, writing: false)
        }
    }

    /// A new read-only connection to this store's database, for `MessageReader`.
    public func makeMessageReader() throws -> MessageReader {
        do {
            return try MessageReader(path: pool.path, blobs: blobs)
        } catch {
            throw Self.storeError(error, writing: false)
        }
    }

    /// One query: the per-recipient prefix joined with the blob. Each column is copied once,
    /// straight out of SQLite's memory (the cursor's row reads the statement in place).
    static func fetchContent(_ db: Database, messageID: Int64, blobs: BlobFiles) throws -> MessageContent {
        let statement = try db.cachedStatement(sql: """
            SELECT message.prefix, blob.data, blob.id FROM message JOIN blob ON blob.id = message.blobID WHERE message.id = ?
            """)
        let rows = try Row.fetchCursor(statement, arguments: [messageID])
        guard let row = try rows.next() else { throw StoreError.notFound("message \(messageID)") }
        let prefix: [UInt8] = try row.withUnsafeData(atIndex: 0) { $0.map { [UInt8]($0) } ?? [] }
        let inline: [UInt8]? = try row.withUnsafeData(atIndex: 1) { $0.map { [UInt8]($0) } }
        if let inline { return MessageContent(prefix: prefix, body: .inline(inline)) }
        let blobID: String = row[2]
        // Once open, the file stays readable even if garbage collection unlinks it.
        return MessageContent(prefix: prefix, body: .file(try BlobFileReader(path: blobs.path(for: blobID))))
    }
}

/// A read-only connection to the store's database that never waits: a lock held elsewhere
/// (`SQLITE_BUSY`) is an error at once, not a sleep, so the caller can fall back to
/// `messageContentBlocking` on a thread pool. Each read is one statement in SQLite's autocommit
/// mode, so no transaction stays open to hold back WAL checkpoints.
///
/// Meant for one thread (a NIO event loop keeps its own): used from several it stays correct,
/// but callers queue behind each other.
public final class MessageReader: Sendable {
    private let queue: DatabaseQueue
    private let blobs: BlobFiles

    init(path: String, blobs: BlobFiles) throws {
        var config = Configuration()
        config.readonly = true
        config.busyMode = .immediateError
        config.label = "facteur.store.message-reader"
        queue = try DatabaseQueue(path: path, configuration: config)
        self.blobs = blobs
    }

    /// The bytes served for a message; throws `StoreError` (including when SQLite is busy).
    public func content(messageID: Int64) throws -> MessageContent {
        let blobs = self.blobs
        do {
            return try queue.inDatabase { db in try SQLiteMailStore.fetchContent(db, messageID: messageID, blobs: blobs) }
        } catch {
            throw SQLiteMailStore.storeError(error, writing: false)
        }
    }
}
