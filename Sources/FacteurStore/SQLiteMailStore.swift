// SQLiteMailStore: the embedded MailStore. One SQLite database in WAL mode with
// synchronous=FULL (GRDB DatabasePool), plus blobs/ for large messages (see BlobLayout).
// Domains, accounts, aliases and recipient routing (RFC 5321 §4.5.1 postmaster, RFC 5233
// sub-addressing) live in this file; delivery, mailboxes and garbage collection in extensions.

import FacteurMIME
import Foundation
import GRDB
import Logging

/// The embedded implementation of `MailStore`.
///
/// Deliveries and garbage collection must run in one process: the guard that keeps garbage
/// collection away from deliveries in flight lives in memory. Another process (the CLI) may
/// make administrative changes at the same time; SQLite serialises the writes.
public final class SQLiteMailStore: MailStore {
    /// Counters for tests and benchmarks: group commit shows as `commits < deliveries`.
    public struct Stats: Sendable, Equatable {
        /// Deliveries that went through a commit (stored, or refused per recipient).
        public var deliveries = 0
        /// Write transactions that carried deliveries.
        public var commits = 0
        /// Messages appended (one per stored recipient).
        public var messagesStored = 0
        /// Large blobs written as files (not counting deliveries whose file already existed).
        public var blobFilesWritten = 0
    }

    public var stats: Stats { counters.withLock { $0 } }

    let pool: DatabasePool
    /// Connections for the reads run on the calling thread (`read`, `readStatement`).
    let readers: ReaderConnections
    let blobs: BlobFiles
    let logger: Logger
    let feed: ChangeFeed
    /// Hands `feed` what each write transaction queued, when it commits (`publishOnCommit`).
    let commits: CommitPublisher
    let blobGuard = BlobGuard()
    let counters = Locked(Stats())
    let deliveryQueue: DeliveryQueue
    /// Decoded summaries by blob id (`summaries(of:)`): 16 MiB of encoded summaries.
    let summaryCache = BlobCache<MessageSummary>(budget: 16 << 20)
    /// Blob header bytes by blob id (`messageHeads(of:)`).
    let headCache = BlobCache<[UInt8]>(budget: 16 << 20)
    /// Test hook, called inside each group-commit transaction: with a delivery's blob id after
    /// its rows were written (inside its savepoint), then with nil before the commit.
    let faultInjection = Locked<(@Sendable (_ blobID: String?) throws -> Void)?>(nil)

    /// Opens or creates `<directory>/facteur.sqlite` and `<directory>/blobs/`, and runs the
    /// migrations.
    public init(directory: String, logger: Logger = Logger(label: "facteur.store")) throws {
        self.logger = logger
        let feed = ChangeFeed()
        self.feed = feed
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw StoreError.writeFailed("cannot create \(directory): \(error)")
        }
        blobs = BlobFiles(root: directory + "/" + BlobLayout.blobDirectoryName)
        try blobs.createDirectories()

        var config = Configuration()
        config.foreignKeysEnabled = true
        // Another process (the CLI while the server runs) may hold the write lock briefly.
        config.busyMode = .timeout(10)
        config.label = "facteur.store"
        let path = directory + "/" + BlobLayout.databaseFileName
        readers = ReaderConnections(path: path, limit: max(4, 2 * ProcessInfo.processInfo.activeProcessorCount))
        do {
            pool = try DatabasePool(path: path, configuration: config)
            // WAL + FULL: a commit is durable once the WAL is fsync'd (DESIGN.md, Durability).
            // Set on the writer connection after the pool has opened it: GRDB's WAL setup sets
            // NORMAL (no fsync per commit) after `prepareDatabase` has run.
            let synchronous = try pool.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA synchronous = FULL")
                return try Int.fetchOne(db, sql: "PRAGMA synchronous")
            }
            guard synchronous == 2 else {
                throw StoreError.writeFailed("cannot set PRAGMA synchronous = FULL (got \(synchronous ?? -1))")
            }
            try SQLiteSchema.migrator.migrate(pool)
            let commits = CommitPublisher(feed: feed)
            pool.writeWithoutTransaction { db in db.add(transactionObserver: commits, extent: .databaseLifetime) }
            self.commits = commits
        } catch let error as DatabaseError {
            throw StoreError.writeFailed("cannot open the database in \(directory): \(error)")
        }
        deliveryQueue = DeliveryQueue()
    }

    deinit {
        feed.finishAll()
    }

    /// Waits for deliveries in progress, then closes the database. Later deliveries fail with
    /// `StoreError.writeFailed`, other calls with a StoreError; change-feed streams finish.
    public func close() throws {
        deliveryQueue.shutDown()
        feed.finishAll()
        readers.close()
        do {
            try pool.close()
        } catch {
            throw StoreError.writeFailed("close: \(error)")
        }
    }

    // MARK: Database access with error mapping

    /// A write transaction; any failure surfaces as StoreError and commits nothing.
    func write<T: Sendable>(_ updates: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await pool.write(updates)
        } catch {
            throw Self.storeError(error, writing: true)
        }
    }

    /// A write transaction whose commit does not wait for fsync (`PRAGMA synchronous = NORMAL`
    /// for this commit only), for flag changes and expunges: they survive a crash of the process
    /// at once, and reach the disk with the next durable commit (every delivery) or checkpoint,
    /// so only a power failure can lose the last ones (an expunged message would come back).
    /// Never for a new message: its 250 or OK promises it is on disk. The WAL is one file
    /// written in commit order, so a later FULL commit makes every earlier one durable too:
    /// garbage collection, which commits FULL before it removes a blob file, can never remove
    /// the blob of a message whose expunge a power failure undid. Dovecot's default
    /// (mail_fsync = optimized) makes the same choice for its index and expunges.
    func writeWithoutFsync<T: Sendable>(_ updates: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await pool.writeWithoutTransaction { db in
                // Cached statements throughout: GRDB's `execute(sql:)` and `inTransaction` prepare
                // their statements anew each time, which cost more than a flag change itself.
                try db.cachedStatement(sql: "PRAGMA synchronous = NORMAL").execute()
                let result = Result<T, any Error> {
                    try db.cachedStatement(sql: "BEGIN IMMEDIATE TRANSACTION").execute()
                    do {
                        let value = try updates(db)
                        try db.cachedStatement(sql: "COMMIT TRANSACTION").execute()
                        return value
                    } catch {
                        if db.isInsideTransaction { try? db.cachedStatement(sql: "ROLLBACK TRANSACTION").execute() }
                        throw error
                    }
                }
                // Every other commit of this connection relies on FULL: a failure here is fatal to the write.
                try db.cachedStatement(sql: "PRAGMA synchronous = FULL").execute()
                return try result.get()
            }
        } catch {
            throw Self.storeError(error, writing: true)
        }
    }

    /// A read transaction, run on the calling thread. GRDB's async `read` hops to the reader's
    /// dispatch queue and back (two thread switches); a read is a short, CPU-bound B-tree walk
    /// (a few microseconds to a few milliseconds for the largest IMAP reads), so running it in
    /// place is cheaper than scheduling it. It runs on one of `readers`' connections, or on
    /// GRDB's pool when they are all busy.
    func read<T: Sendable>(_ value: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try readInPlace(value)
        } catch {
            throw Self.storeError(error, writing: false)
        }
    }

    /// Synchronous, so that GRDB's blocking `read` is chosen over its async overload.
    private func readInPlace<T>(_ value: (Database) throws -> T) throws -> T {
        if let result = try readers.withConnection({ try $0.read(value) }) { return result }
        return try pool.read(value)
    }

    /// A read of exactly one statement, run on the calling thread without an explicit
    /// transaction: SQLite gives the statement its own snapshot, and BEGIN and COMMIT would
    /// double the cost of a point lookup. Reads of several statements that must agree use `read`.
    func readStatement<T: Sendable>(_ value: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try readStatementInPlace(value)
        } catch {
            throw Self.storeError(error, writing: false)
        }
    }

    private func readStatementInPlace<T>(_ value: (Database) throws -> T) throws -> T {
        if let result = try readers.withConnection({ try $0.unsafeRead(value) }) { return result }
        return try pool.unsafeRead(value)
    }

    static func storeError(_ error: any Error, writing: Bool) -> StoreError {
        if let error = error as? StoreError { return error }
        if let error = error as? DatabaseError {
            let why = "\(error.resultCode): \(error.message ?? "")"
            return writing ? .writeFailed(why) : .invalid("database: \(why)")
        }
        return writing ? .writeFailed("\(error)") : .invalid("\(error)")
    }

    /// Queues `changes` for every subscriber once the current transaction commits (none if it
    /// rolls back). The writer's queue runs the commit, so subscribers see changes in commit order.
    func publishOnCommit(_ db: Database, _ changes: [MailboxChange]) {
        guard !changes.isEmpty else { return }
        commits.queue(changes)
    }

    public func changes() -> AsyncStream<MailboxChange> { feed.subscribe() }

    public func observeChanges(of accountID: Int64?, by observer: any MailboxChangeObserver) {
        feed.observe(accountID, by: observer)
    }

    static var now: Double { Date().timeIntervalSince1970 }

    // MARK: - Domains

    public func addDomain(_ name: String) async throws {
        let domain = try StoreNames.normalizeDomain(name)
        try await write { db in
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM domain WHERE name = ?", arguments: [domain]) == true {
                throw StoreError.alreadyExists("domain \(domain)")
            }
            try db.execute(sql: "INSERT INTO domain (name, created) VALUES (?, ?)", arguments: [domain, Self.now])
        }
    }

    /// Refuses while the domain still has accounts (`StoreError.invalid`): removing mail
    /// silently as a side effect of a domain change is too easy a mistake. The domain's aliases
    /// go with it.
    public func removeDomain(_ name: String) async throws {
        let domain = try StoreNames.normalizeDomain(name)
        try await write { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM domain WHERE name = ?", arguments: [domain]) == true else {
                throw StoreError.notFound("domain \(domain)")
            }
            let accounts = try Int.fetchOne(db, sql: "SELECT count(*) FROM account WHERE domain = ?", arguments: [domain]) ?? 0
            guard accounts == 0 else {
                throw StoreError.invalid("domain \(domain) still has \(accounts) account(s); remove them first")
            }
            try db.execute(sql: "DELETE FROM domain WHERE name = ?", arguments: [domain])
        }
    }

    public func domains() async throws -> [DomainRecord] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT name, created FROM domain ORDER BY name").map {
                DomainRecord(name: $0[0], created: Date(timeIntervalSince1970: $0[1]))
            }
        }
    }

    public func isLocalDomain(_ name: String) async throws -> Bool {
        guard let domain = try? StoreNames.normalizeDomain(name) else { return false }
        return try await read { db in
            try Bool.fetchOne(db, sql: "SELECT 1 FROM domain WHERE name = ?", arguments: [domain]) == true
        }
    }

    // MARK: - Accounts

    /// The columns `accountRecord` reads, in its order.
    static let accountColumns = """
        id, address, displayName, quotaBytes, quotaMessages, usageBytes, usageMessages, isAdmin, created
        """

    static func accountRecord(_ row: Row) -> AccountRecord {
        AccountRecord(id: row[0], address: row[1], displayName: row[2],
                      quota: Quota(bytes: row[3], messages: row[4]),
                      usage: Usage(bytes: row[5], messages: row[6]),
                      isAdmin: row[7], created: Date(timeIntervalSince1970: row[8]))
    }

    static func fetchAccount(_ db: Database, address: String) throws -> AccountRecord? {
        try Row.fetchOne(db.cachedStatement(sql: "SELECT \(accountColumns) FROM account WHERE address = ?"),
                         arguments: [address]).map(accountRecord)
    }

    static func fetchAccount(_ db: Database, id: Int64) throws -> AccountRecord? {
        try Row.fetchOne(db.cachedStatement(sql: "SELECT \(accountColumns) FROM account WHERE id = ?"),
                         arguments: [id]).map(accountRecord)
    }

    static func validate(_ quota: Quota) throws {
        if let bytes = quota.bytes, bytes < 0 { throw StoreError.invalid("quota bytes must not be negative") }
        if let messages = quota.messages, messages < 0 { throw StoreError.invalid("quota messages must not be negative") }
    }

    /// The mailboxes every new account gets (RFC 6154 special-use), all subscribed.
    static let defaultMailboxes: [(String, SpecialUse?)] = [
        (StoreNames.inbox, nil), ("Sent", .sent), ("Drafts", .drafts), ("Junk", .junk), ("Trash", .trash),
        ("Archive", .archive),
    ]

    @discardableResult
    public func addAccount(address: String, credentials: StoredCredentials, quota: Quota, isAdmin: Bool) async throws
        -> AccountRecord {
        let parts = try StoreNames.accountAddress(address)
        try Self.validate(quota)
        let now = Self.now
        return try await write { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM domain WHERE name = ?", arguments: [parts.domain]) == true else {
                throw StoreError.notFound("domain \(parts.domain)")
            }
            if try Self.fetchAccount(db, address: parts.address) != nil {
                throw StoreError.alreadyExists("account \(parts.address)")
            }
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM alias WHERE source = ?", arguments: [parts.address]) == true {
                throw StoreError.alreadyExists("alias \(parts.address)")
            }
            try db.execute(sql: """
                INSERT INTO account (address, domain, passwordHash, scramSHA256, quotaBytes, quotaMessages, isAdmin, created)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [parts.address, parts.domain, credentials.passwordHash, credentials.scramSHA256,
                                 quota.bytes, quota.messages, isAdmin, now])
            let id = db.lastInsertedRowID
            var changes: [MailboxChange] = []
            for (name, use) in Self.defaultMailboxes {
                let mailbox = try Self.insertMailbox(db, accountID: id, name: name, specialUse: use, subscribed: true)
                changes.append(.mailboxCreated(accountID: id, mailboxID: mailbox.id))
            }
            self.publishOnCommit(db, changes)
            return AccountRecord(id: id, address: parts.address, displayName: nil, quota: quota, usage: Usage(),
                                 isAdmin: isAdmin, created: Date(timeIntervalSince1970: now))
        }
    }

    public func account(address: String) async throws -> AccountRecord? {
        let address = StoreNames.normalizeAddress(address)
        return try await read { db in try Self.fetchAccount(db, address: address) }
    }

    public func account(id: Int64) async throws -> AccountRecord? {
        try await read { db in try Self.fetchAccount(db, id: id) }
    }

    public func accounts(domain: String?) async throws -> [AccountRecord] {
        let domain = try domain.map(StoreNames.normalizeDomain)
        return try await read { db in
            if let domain {
                return try Row.fetchAll(db, sql: "SELECT \(Self.accountColumns) FROM account WHERE domain = ? ORDER BY address",
                                        arguments: [domain]).map(Self.accountRecord)
            }
            return try Row.fetchAll(db, sql: "SELECT \(Self.accountColumns) FROM account ORDER BY address")
                .map(Self.accountRecord)
        }
    }

    public func credentials(address: String) async throws -> StoredCredentials? {
        let address = StoreNames.normalizeAddress(address)
        return try await read { db in
            try Row.fetchOne(db, sql: "SELECT passwordHash, scramSHA256 FROM account WHERE address = ?", arguments: [address])
                .map { StoredCredentials(passwordHash: $0[0], scramSHA256: $0[1]) }
        }
    }

    public func setCredentials(address: String, _ credentials: StoredCredentials) async throws {
        let address = StoreNames.normalizeAddress(address)
        try await write { db in
            try db.execute(sql: "UPDATE account SET passwordHash = ?, scramSHA256 = ? WHERE address = ?",
                           arguments: [credentials.passwordHash, credentials.scramSHA256, address])
            guard db.changesCount == 1 else { throw StoreError.notFound("account \(address)") }
        }
    }

    /// Sets the limits; mail already stored stays even if now over quota.
    public func setQuota(address: String, _ quota: Quota) async throws {
        let address = StoreNames.normalizeAddress(address)
        try Self.validate(quota)
        try await write { db in
            try db.execute(sql: "UPDATE account SET quotaBytes = ?, quotaMessages = ? WHERE address = ?",
                           arguments: [quota.bytes, quota.messages, address])
            guard db.changesCount == 1 else { throw StoreError.notFound("account \(address)") }
        }
    }

    /// Deletes the account, its mailboxes and messages (their blobs become garbage), and its
    /// alias memberships; clears the postmaster setting if it named this account.
    public func removeAccount(address: String) async throws {
        let address = StoreNames.normalizeAddress(address)
        try await write { db in
            guard let account = try Self.fetchAccount(db, address: address) else {
                throw StoreError.notFound("account \(address)")
            }
            let mailboxIDs = try Int64.fetchAll(db, sql: "SELECT id FROM mailbox WHERE accountID = ?", arguments: [account.id])
            try db.execute(sql: "DELETE FROM account WHERE id = ?", arguments: [account.id])
            try db.execute(sql: "DELETE FROM setting WHERE key = 'postmaster' AND value = ?", arguments: [address])
            self.publishOnCommit(db, mailboxIDs.map { .mailboxDeleted(accountID: account.id, mailboxID: $0) })
        }
    }

    // MARK: - Aliases

    /// Adds `targets` to the alias `source` (created if new; targets already there are kept).
    /// Targets must be existing local accounts; a source must not be an account's address.
    public func addAlias(source: String, targets: [String]) async throws {
        let (source, domain) = try StoreNames.aliasSource(source)
        guard !targets.isEmpty, targets.count <= StoreLimits.maxAliasTargets else {
            throw StoreError.invalid("an alias needs 1 to \(StoreLimits.maxAliasTargets) targets")
        }
        let targetAddresses = targets.map(StoreNames.normalizeAddress)
        try await write { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM domain WHERE name = ?", arguments: [domain]) == true else {
                throw StoreError.notFound("domain \(domain)")
            }
            if try Self.fetchAccount(db, address: source) != nil {
                throw StoreError.alreadyExists("account \(source)")
            }
            for target in targetAddresses {
                if let account = try Self.fetchAccount(db, address: target) {
                    try db.execute(sql: "INSERT OR IGNORE INTO alias (source, domain, targetID) VALUES (?, ?, ?)",
                                   arguments: [source, domain, account.id])
                    continue
                }
                // A member in another organisation's domain: mail is forwarded to it.
                guard let (local, targetDomain) = StoreNames.split(target), !local.isEmpty, targetDomain.contains("."),
                      !targetDomain.hasPrefix("["), target.utf8.count <= 254 else {
                    throw StoreError.invalid("alias target \(target): expected local@domain")
                }
                guard try Bool.fetchOne(db, sql: "SELECT 1 FROM domain WHERE name = ?", arguments: [targetDomain]) != true else {
                    throw StoreError.notFound("account \(target) (a target in a local domain must be an account)")
                }
                try db.execute(sql: "INSERT OR IGNORE INTO alias_forward (source, domain, target) VALUES (?, ?, ?)",
                               arguments: [source, domain, target])
            }
        }
    }

    /// Removes one target of `source`, or the whole alias when `target` is nil.
    public func removeAlias(source: String, target: String?) async throws {
        let (source, _) = try StoreNames.aliasSource(source)
        let target = target.map(StoreNames.normalizeAddress)
        try await write { db in
            if let target {
                try db.execute(sql: """
                    DELETE FROM alias WHERE source = ? AND targetID = (SELECT id FROM account WHERE address = ?)
                    """, arguments: [source, target])
                var removed = db.changesCount
                try db.execute(sql: "DELETE FROM alias_forward WHERE source = ? AND target = ?", arguments: [source, target])
                removed += db.changesCount
                guard removed > 0 else { throw StoreError.notFound("alias \(source) → \(target)") }
            } else {
                try db.execute(sql: "DELETE FROM alias WHERE source = ?", arguments: [source])
                var removed = db.changesCount
                try db.execute(sql: "DELETE FROM alias_forward WHERE source = ?", arguments: [source])
                removed += db.changesCount
                guard removed > 0 else { throw StoreError.notFound("alias \(source)") }
            }
        }
    }

    public func aliases(domain: String?) async throws -> [AliasRecord] {
        let domain = try domain.map(StoreNames.normalizeDomain)
        return try await read { db in
            let sql = """
                SELECT source, address FROM (
                    SELECT alias.source AS source, account.address AS address, alias.id AS position, 0 AS kind, alias.domain AS domain
                    FROM alias JOIN account ON account.id = alias.targetID
                    UNION ALL
                    SELECT source, target, id, 1, domain FROM alias_forward)
                \(domain == nil ? "" : "WHERE domain = ?") ORDER BY source, kind, position
                """
            let rows = try Row.fetchAll(db, sql: sql, arguments: domain.map { [$0] } ?? [])
            var result: [AliasRecord] = []
            for row in rows {
                let source: String = row[0]
                let target: String = row[1]
                if result.last?.source == source {
                    result[result.count - 1].targets.append(target)
                } else {
                    result.append(AliasRecord(source: source, targets: [target]))
                }
            }
            return result
        }
    }

    /// Sets the account that receives `postmaster@` of every local domain; nil restores the
    /// default (a postmaster account or alias of the domain, else the first admin account).
    public func setPostmaster(_ address: String?) async throws {
        guard let address else {
            try await write { db in try db.execute(sql: "DELETE FROM setting WHERE key = 'postmaster'") }
            return
        }
        let target = StoreNames.normalizeAddress(address)
        try await write { db in
            guard try Self.fetchAccount(db, address: target) != nil else {
                throw StoreError.notFound("account \(target) (the postmaster must be a local account)")
            }
            try db.execute(sql: "INSERT OR REPLACE INTO setting (key, value) VALUES ('postmaster', ?)", arguments: [target])
        }
    }

    public func sentCopies(address: String) async throws -> Bool? {
        let key = "sent-copies:" + StoreNames.normalizeAddress(address)
        return try await read { db in
            try String.fetchOne(db.cachedStatement(sql: "SELECT value FROM setting WHERE key = ?"), arguments: [key]).map { $0 == "on" }
        }
    }

    public func setSentCopies(address: String, _ enabled: Bool?) async throws {
        let address = StoreNames.normalizeAddress(address)
        try await write { db in
            guard try Self.fetchAccount(db, address: address) != nil else { throw StoreError.notFound("account \(address)") }
            if let enabled {
                try db.execute(sql: "INSERT OR REPLACE INTO setting (key, value) VALUES (?, ?)",
                               arguments: ["sent-copies:" + address, enabled ? "on" : "off"])
            } else {
                try db.execute(sql: "DELETE FROM setting WHERE key = ?", arguments: ["sent-copies:" + address])
            }
        }
    }

    // MARK: - Routing

    /// Resolves in this order: the domain must be local (else `.nonLocalDomain`); `postmaster`
    /// always resolves (RFC 5321 §4.5.1: the `setPostmaster` target, else the domain's own
    /// postmaster account or alias, else the first admin account); then an exact account; an
    /// alias; sub-addressing (`user+tag` → `user`, its account then its alias); the domain's
    /// catch-all `@domain`; else `.unknownUser`. Addresses are compared case-insensitively.
    /// A bare `postmaster` (no domain, RFC 5321 §4.1.1.3) resolves like `postmaster@` any domain.
    public func resolveRecipient(_ address: String) async throws -> RecipientResolution {
        let address = StoreNames.normalizeAddress(address)
        if address == "postmaster" {
            return try await read { db in try Self.resolvePostmaster(db, domain: nil) }
        }
        guard let (local, domain) = StoreNames.split(address), !local.isEmpty, !domain.isEmpty else {
            throw StoreError.invalid("address \(address): expected local@domain")
        }
        return try await read { db in
            guard try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM domain WHERE name = ?"), arguments: [domain]) == true else {
                return .nonLocalDomain
            }
            if let found = try Self.resolveExact(db, local: local, domain: domain) { return found }
            if let plus = local.firstIndex(of: StoreNames.subaddressSeparator), plus != local.startIndex {
                let base = String(local[..<plus])
                if let found = try Self.resolveExact(db, local: base, domain: domain) { return found }
            }
            if let catchAll = try Self.aliasResolution(db, source: "@" + domain) { return catchAll }
            return .unknownUser
        }
    }

    /// Postmaster, account, alias: the rules that need the exact local part.
    private static func resolveExact(_ db: Database, local: String, domain: String) throws -> RecipientResolution? {
        if local == "postmaster" { return try resolvePostmaster(db, domain: domain) }
        let address = local + "@" + domain
        if let account = try fetchAccount(db, address: address) { return .local([account]) }
        return try aliasResolution(db, source: address)
    }

    /// An alias's members: local accounts, and addresses elsewhere (forwarding). nil: no alias.
    private static func aliasResolution(_ db: Database, source: String) throws -> RecipientResolution? {
        let targets = try aliasTargets(db, source: source)
        let external = try String.fetchAll(db.cachedStatement(sql: "SELECT target FROM alias_forward WHERE source = ? ORDER BY id"),
                                           arguments: [source])
        if !external.isEmpty { return .forwarded(local: targets, external: external) }
        return targets.isEmpty ? nil : .local(targets)
    }

    private static func resolvePostmaster(_ db: Database, domain: String?) throws -> RecipientResolution {
        if let configured = try String.fetchOne(db, sql: "SELECT value FROM setting WHERE key = 'postmaster'"),
           let account = try fetchAccount(db, address: configured) {
            return .local([account])
        }
        if let domain {
            if let account = try fetchAccount(db, address: "postmaster@" + domain) { return .local([account]) }
            if let alias = try aliasResolution(db, source: "postmaster@" + domain) { return alias }
        }
        if let admin = try Row.fetchOne(db, sql: "SELECT \(accountColumns) FROM account WHERE isAdmin = 1 ORDER BY id LIMIT 1") {
            return .local([accountRecord(admin)])
        }
        return .unknownUser
    }

    /// The accounts an alias expands to, in the order they were added, without duplicates.
    private static func aliasTargets(_ db: Database, source: String) throws -> [AccountRecord] {
        let sql = """
            SELECT account.id, account.address, account.displayName, account.quotaBytes, account.quotaMessages,
                   account.usageBytes, account.usageMessages, account.isAdmin, account.created
            FROM alias JOIN account ON account.id = alias.targetID WHERE alias.source = ? ORDER BY alias.id
            """
        return try Row.fetchAll(db.cachedStatement(sql: sql), arguments: [source]).map(accountRecord)
    }

    // MARK: - Quota

    /// `.tooLarge` when the message alone exceeds a limit, `.full` when the account is at its
    /// limit or the message would take it over; the delivery-time check adds a grace margin.
    public func checkQuota(accountID: Int64, incomingSize: Int64?) async throws -> QuotaCheck {
        guard let account = try await account(id: accountID) else {
            throw StoreError.notFound("account \(accountID)")
        }
        return Self.quotaCheck(quota: account.quota, usage: account.usage, incomingSize: incomingSize)
    }

    static func quotaCheck(quota: Quota, usage: Usage, incomingSize: Int64?) -> QuotaCheck {
        let size = max(incomingSize ?? 0, 0)
        if let limit = quota.bytes, size > limit { return .tooLarge }
        if let limit = quota.messages, limit < 1 { return .tooLarge }  // one message alone exceeds 0
        if let limit = quota.bytes {
            let (total, overflow) = usage.bytes.addingReportingOverflow(size)
            if usage.bytes >= limit || overflow || total > limit { return .full }
        }
        if let limit = quota.messages, usage.messages >= limit { return .full }
        return .ok
    }

    /// `limit` plus the grace margin, saturating.
    static func withGrace(_ limit: Int64) -> Int64 {
        let grace = limit / StoreLimits.quotaGraceDenominator * StoreLimits.quotaGraceNumerator
        let (total, overflow) = limit.addingReportingOverflow(grace)
        return overflow ? .max : total
    }
}

/// A value behind a lock, for the few pieces of shared mutable state.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

/// Publishes the changes a write transaction queued once it commits, and drops them if it rolls
/// back. One observer for the writer's whole life: GRDB's `afterNextTransaction` adds and removes
/// an observer per transaction, and GRDB throws away every cached statement that can delete rows
/// whenever an observer comes or goes, so EXPUNGE (a DELETE) prepared its statements again on
/// every call: 8% of the CPU of an APPEND + EXPUNGE workload.
final class CommitPublisher: TransactionObserver, @unchecked Sendable {
    private let feed: ChangeFeed
    /// Only touched on the writer's queue (GRDB serialises the writer connection).
    private var pending: [MailboxChange] = []

    init(feed: ChangeFeed) {
        self.feed = feed
    }

    func queue(_ changes: [MailboxChange]) {
        pending += changes
    }

    /// No row events: they would cost an update hook per row, and the feed is told explicitly.
    func observes(eventsOfKind eventKind: DatabaseEventKind) -> Bool { false }

    func databaseDidChange(with event: DatabaseEvent) {}

    func databaseDidCommit(_ db: Database) {
        guard !pending.isEmpty else { return }
        let changes = pending
        pending = []
        feed.publish(changes)
    }

    func databaseDidRollback(_ db: Database) {
        pending = []
    }
}
