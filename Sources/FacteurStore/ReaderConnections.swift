// Read-only connections of the store's own, beside GRDB's pool, for the short reads that run on
// the calling thread (`SQLiteMailStore.read` and `readStatement`). GRDB's DatabasePool hands out
// a reader through a concurrent dispatch queue, a semaphore, a dispatch group and a read-write
// lock that is itself a dispatch queue. IMAP makes two or three tiny reads per command from
// many sessions at once, and on two cores that hand-out cost about as much as the reads: a
// third of FETCH BODY[]'s CPU, mostly futex waits and thread switches. Here a connection comes
// off a list under a lock held for a few instructions.
//
// Each connection is an ordinary SQLite connection on the same WAL database, so every read
// sees a committed snapshot exactly as the pool's readers do.

import Foundation
import GRDB

final class ReaderConnections: @unchecked Sendable {
    private let lock = NSLock()
    private var idle: [DatabaseQueue] = []
    private var open = 0
    private var closed = false
    private let path: String
    private let configuration: Configuration
    /// Connections open at most; a read that finds them all busy returns nil (the caller then
    /// uses GRDB's pool), so a burst never opens an unbounded number of files.
    let limit: Int

    init(path: String, limit: Int) {
        self.path = path
        self.limit = limit
        var config = Configuration()
        config.readonly = true
        config.busyMode = .timeout(10)
        config.label = "facteur.store.reader"
        configuration = config
    }

    /// Runs `body` on a connection of its own; nil, without running it, when `limit`
    /// connections are busy or the store is closed.
    func withConnection<T>(_ body: (DatabaseQueue) throws -> T) throws -> T? {
        let take: Take = lock.withLock {
            if closed { return .none }
            if let connection = idle.popLast() { return .reuse(connection) }
            guard open < limit else { return .none }
            open += 1
            return .openNew
        }
        let connection: DatabaseQueue
        switch take {
        case .none: return nil
        case .reuse(let queue): connection = queue
        case .openNew:
            // Opened outside the lock: opening reads the schema.
            do {
                connection = try DatabaseQueue(path: path, configuration: configuration)
            } catch {
                lock.withLock { open -= 1 }
                throw error
            }
        }
        defer { giveBack(connection) }
        return try body(connection)
    }

    private enum Take { case reuse(DatabaseQueue), openNew, none }

    private func giveBack(_ connection: DatabaseQueue) {
        let keep: Bool = lock.withLock {
            if closed {
                open -= 1
                return false
            }
            idle.append(connection)
            return true
        }
        if !keep { try? connection.close() }
    }

    /// Closes the idle connections now and the busy ones as they come back.
    func close() {
        let connections: [DatabaseQueue] = lock.withLock {
            closed = true
            let list = idle
            idle = []
            open -= list.count
            return list
        }
        for connection in connections { try? connection.close() }
    }

    var openCount: Int { lock.withLock { open } }
}
