// What the POP3 adapter needs from the rest of the server: open an account's maildrop (its INBOX,
// RFC 1939 §3) under an exclusive lock, read a message's bytes as a stream, and remove the
// messages deleted in the UPDATE state (RFC 1939 §6). `StorePOP3Backend` is the real one, on
// `SQLiteMailStore`; tests may supply their own.

import FacteurStore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// One message of a maildrop as the session sees it: numbers are positions in `Maildrop.messages`
/// (1-based), fixed for the whole session (RFC 1939 §5).
public struct MaildropMessage: Equatable, Sendable {
    public var id: Int64
    public var uid: UInt32
    /// Exact octets served by RETR (CRLF line endings, as stored; RFC 1939 §5 LIST).
    public var size: Int
    /// RFC 1939 §7 UIDL: 1–70 characters in 0x21–0x7E, the same in every session.
    public var uniqueID: String
    public init(id: Int64, uid: UInt32, size: Int, uniqueID: String) {
        self.id = id; self.uid = uid; self.size = size; self.uniqueID = uniqueID
    }
}

public struct Maildrop: Equatable, Sendable {
    public var accountID: Int64
    public var mailboxID: Int64
    public var messages: [MaildropMessage]
    public init(accountID: Int64, mailboxID: Int64, messages: [MaildropMessage]) {
        self.accountID = accountID; self.mailboxID = mailboxID; self.messages = messages
    }

    /// `<uidvalidity>-<uid>`: stable for as long as the message exists, and never reused for
    /// another message of the same INBOX (UIDs strictly increase; a new UIDVALIDITY changes all).
    public static func uniqueID(uidValidity: UInt32, uid: UInt32) -> String { "\(uidValidity)-\(uid)" }
}

public enum MaildropOpening: Equatable, Sendable {
    case opened(Maildrop)
    /// Another POP3 session holds this maildrop (RFC 2449 §8.1.1 `[IN-USE]`).
    case inUse
    /// The account has no INBOX or the store failed (`[SYS/TEMP]`).
    case unavailable
}

public protocol POP3Backend: Sendable {
    /// Locks and lists the account's maildrop. A successful open must be paired with `close`.
    func openMaildrop(account: String) async -> MaildropOpening
    /// Releases the lock taken by `openMaildrop`.
    func closeMaildrop(_ maildrop: Maildrop)
    /// The bytes of a message, ready to stream.
    func content(of message: MaildropMessage) async throws -> MessageContent
    /// The same, completed on `eventLoop`: what the adapter calls for every RETR and TOP. The
    /// default runs `content(of:)` in a task; a backend that can read without waiting may return
    /// an already succeeded future (the adapter then answers in the same tick), or read on a
    /// thread pool, and so spare each retrieval the task and actor hops.
    func content(of message: MaildropMessage, on eventLoop: any EventLoop) -> EventLoopFuture<MessageContent>
    /// Removes these messages (UPDATE state); false if the store failed.
    func expunge(_ maildrop: Maildrop, uids: [UInt32]) async -> Bool
    /// A password login showed the stored credentials are weaker than today's settings.
    func storeUpgradedCredentials(address: String, _ credentials: StoredCredentials) async
}

extension POP3Backend {
    public func content(of message: MaildropMessage, on eventLoop: any EventLoop) -> EventLoopFuture<MessageContent> {
        let promise = eventLoop.makePromise(of: MessageContent.self)
        promise.completeWithTask { try await self.content(of: message) }
        return promise.futureResult
    }
}

/// Which maildrops are open by a POP3 session in this process. RFC 1939 §8 asks for an
/// exclusive-access lock; POP3 and POP3S listeners share one table.
public final class MaildropLocks: Sendable {
    public static let shared = MaildropLocks()
    private let held = NIOLockedValueBox(Set<Int64>())

    public init() {}

    public func acquire(_ mailboxID: Int64) -> Bool {
        held.withLockedValue { $0.insert(mailboxID).inserted }
    }

    public func release(_ mailboxID: Int64) {
        _ = held.withLockedValue { $0.remove(mailboxID) }
    }

    public var count: Int { held.withLockedValue { $0.count } }
}

public struct StorePOP3Backend: POP3Backend {
    let store: SQLiteMailStore
    let locks: MaildropLocks
    let logger: Logger
    /// Messages up to this size are read on the event loop itself (see `content(of:on:)`).
    let maxOnLoopReadSize: Int
    private let readers: EventLoopMessageReaders

    /// - Parameter maxOnLoopReadSize: largest message read from SQLite on the event loop; larger
    ///   ones (and any read that would wait on a lock) go to NIO's thread pool. 0 turns it off.
    public init(store: SQLiteMailStore, locks: MaildropLocks = .shared, logger: Logger, maxOnLoopReadSize: Int = 64 * 1024) {
        self.store = store; self.locks = locks; self.logger = logger
        self.maxOnLoopReadSize = maxOnLoopReadSize
        self.readers = EventLoopMessageReaders(store: store, logger: logger)
    }

    public func openMaildrop(account address: String) async -> MaildropOpening {
        do {
            guard let account = try await store.account(address: address),
                  let inbox = try await store.mailbox(accountID: account.id, name: "INBOX") else {
                logger.warning("pop3: authenticated account has no INBOX", metadata: ["account": "\(address)"])
                return .unavailable
            }
            guard locks.acquire(inbox.id) else { return .inUse }
            do {
                let records = try await store.messages(mailboxID: inbox.id)
                let messages = records.map {
                    MaildropMessage(id: $0.id, uid: $0.uid, size: Int(clamping: $0.size),
                                    uniqueID: Maildrop.uniqueID(uidValidity: inbox.uidValidity, uid: $0.uid))
                }
                return .opened(Maildrop(accountID: account.id, mailboxID: inbox.id, messages: messages))
            } catch {
                locks.release(inbox.id)
                throw error
            }
        } catch {
            logger.error("pop3: cannot open maildrop", metadata: ["account": "\(address)", "error": "\(error)"])
            return .unavailable
        }
    }

    public func closeMaildrop(_ maildrop: Maildrop) {
        locks.release(maildrop.mailboxID)
    }

    public func content(of message: MaildropMessage) async throws -> MessageContent {
        try await store.messageContent(messageID: message.id)
    }

    /// A small message (nearly all mail) is read on the event loop through that loop's own
    /// read-only connection: one indexed query on a page-cached database, cheaper than any thread
    /// hand-off, and the response is written in the same tick. Profiling bench/pop3/run.py showed
    /// two thirds of a 10 KB RETR's CPU in the task, actor and dispatch hops of the async read.
    /// That connection never waits on a lock: if SQLite is busy (or the message is large), one
    /// blocking query runs on NIO's thread pool instead.
    public func content(of message: MaildropMessage, on eventLoop: any EventLoop) -> EventLoopFuture<MessageContent> {
        let id = message.id
        if message.size <= maxOnLoopReadSize, eventLoop.inEventLoop, let reader = readers.reader(for: eventLoop) {
            if let content = try? reader.content(messageID: id) { return eventLoop.makeSucceededFuture(content) }
        }
        let store = self.store
        return NIOThreadPool.singleton.runIfActive(eventLoop: eventLoop) { try store.messageContentBlocking(messageID: id) }
    }

    public func expunge(_ maildrop: Maildrop, uids: [UInt32]) async -> Bool {
        do {
            try await store.expunge(mailboxID: maildrop.mailboxID, uids: uids)
            return true
        } catch {
            logger.error("pop3: expunge failed", metadata: ["mailbox": "\(maildrop.mailboxID)", "error": "\(error)"])
            return false
        }
    }

    public func storeUpgradedCredentials(address: String, _ credentials: StoredCredentials) async {
        do {
            try await store.setCredentials(address: address, credentials)
        } catch {
            logger.warning("pop3: could not store upgraded credentials", metadata: ["account": "\(address)", "error": "\(error)"])
        }
    }
}

/// One `MessageReader` per event loop, opened on first use and closed with the backend. A reader
/// that cannot be opened is remembered as missing, so the thread pool serves that loop without
/// retrying the open on every RETR.
final class EventLoopMessageReaders: Sendable {
    private let store: SQLiteMailStore
    private let logger: Logger
    private let readers = NIOLockedValueBox([ObjectIdentifier: MessageReader?]())

    init(store: SQLiteMailStore, logger: Logger) {
        self.store = store; self.logger = logger
    }

    /// The reader of `eventLoop`; call only on that loop, which then is the only user.
    func reader(for eventLoop: any EventLoop) -> MessageReader? {
        let key = ObjectIdentifier(eventLoop)
        if let known = readers.withLockedValue({ $0[key] }) { return known }
        var opened: MessageReader?
        do {
            opened = try store.makeMessageReader()
        } catch {
            logger.warning("pop3: no read-only connection for this event loop; reads go to the thread pool",
                           metadata: ["error": "\(error)"])
        }
        readers.withLockedValue { $0[key] = .some(opened) }
        return opened
    }
}
