// The SQLite schema of SQLiteMailStore, as named GRDB migrations. A migration that has shipped
// is never edited: change the schema by appending a new one. Invariants live in the schema
// (foreign keys, UNIQUE, CHECK) so that no code path can break them. IMAP's invariants:
// RFC 9051 §2.3.1.1 (UID, UIDVALIDITY), RFC 7162 §3 (MODSEQ, HIGHESTMODSEQ, VANISHED).

import GRDB

enum SQLiteSchema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-initial", migrate: v1)
        migrator.registerMigration("v2-queue", migrate: QueueSchema.v2)
        migrator.registerMigration("v3-dmarc", migrate: DMARCSchema.v3)
        migrator.registerMigration("v4-alias-forward", migrate: v4AliasForward)
        migrator.registerMigration("v5-fulltext", migrate: FullTextSchema.v5)
        migrator.registerMigration("v6-queue-tls-demand", migrate: QueueSchema.v6)
        migrator.registerMigration("v7-tls-report", migrate: TLSReportSchema.v7)
        migrator.registerMigration("v8-message-flag-indexes", migrate: v8MessageFlagIndexes)
        return migrator
    }

    /// Partial indexes over the few messages each IMAP question is about, so that answering
    /// does not read every row of the mailbox: SELECT's first unseen message and keywords,
    /// STATUS UNSEEN and DELETED, and EXPUNGE's \Deleted messages. Queries must repeat each
    /// WHERE clause word for word (flag bits as literals, see `MessageFlags`) for SQLite to use
    /// the index.
    private static func v8MessageFlagIndexes(_ db: Database) throws {
        try db.execute(sql: """
            CREATE INDEX message_unseen ON message(mailboxID, uid) WHERE (flags & 1) = 0;
            CREATE INDEX message_deleted ON message(mailboxID, uid) WHERE (flags & 8) <> 0;
            CREATE INDEX message_keywords ON message(mailboxID, keywords) WHERE keywords <> '';
            """)
    }

    /// Alias members outside our domains (forwarding). Local members stay in `alias`, tied to
    /// their account so that removing an account removes it from every alias.
    private static func v4AliasForward(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE alias_forward (
                id      INTEGER PRIMARY KEY AUTOINCREMENT,
                source  TEXT NOT NULL,
                domain  TEXT NOT NULL REFERENCES domain(name) ON DELETE CASCADE,
                target  TEXT NOT NULL CHECK (target LIKE '%_@_%'),
                UNIQUE (source, target)
            );
            """)
    }

    private static func v1(_ db: Database) throws {
        // Account, mailbox and message ids are AUTOINCREMENT: never reused, so a session or a
        // change-feed subscriber that still holds the id of something deleted can never reach
        // what was created after it (another user's account, a new mailbox, another message).
        // Small key/value facts: the postmaster target, the last UIDVALIDITY handed out.
        try db.execute(sql: """
            CREATE TABLE setting (
                key   TEXT PRIMARY KEY NOT NULL,
                value TEXT NOT NULL
            );

            CREATE TABLE domain (
                name    TEXT PRIMARY KEY NOT NULL CHECK (name <> '' AND name = lower(name)),
                created REAL NOT NULL
            );

            CREATE TABLE account (
                id            INTEGER PRIMARY KEY AUTOINCREMENT,
                address       TEXT NOT NULL UNIQUE CHECK (address = lower(address) AND instr(address, '@') > 1),
                domain        TEXT NOT NULL REFERENCES domain(name) ON DELETE RESTRICT,
                displayName   TEXT,
                passwordHash  TEXT NOT NULL,
                scramSHA256   TEXT,
                quotaBytes    INTEGER CHECK (quotaBytes IS NULL OR quotaBytes >= 0),
                quotaMessages INTEGER CHECK (quotaMessages IS NULL OR quotaMessages >= 0),
                usageBytes    INTEGER NOT NULL DEFAULT 0 CHECK (usageBytes >= 0),
                usageMessages INTEGER NOT NULL DEFAULT 0 CHECK (usageMessages >= 0),
                isAdmin       INTEGER NOT NULL DEFAULT 0 CHECK (isAdmin IN (0, 1)),
                created       REAL NOT NULL
            );
            CREATE INDEX account_domain ON account(domain);

            -- One row per (source, target). `source` is `local@domain` or `@domain` (catch-all);
            -- targets are local accounts, so deleting an account drops its memberships.
            CREATE TABLE alias (
                id       INTEGER PRIMARY KEY,
                source   TEXT NOT NULL CHECK (source = lower(source) AND instr(source, '@') > 0),
                domain   TEXT NOT NULL REFERENCES domain(name) ON DELETE CASCADE,
                targetID INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
                UNIQUE (source, targetID)
            );
            CREATE INDEX alias_domain ON alias(domain);
            CREATE INDEX alias_target ON alias(targetID);

            CREATE TABLE mailbox (
                id            INTEGER PRIMARY KEY AUTOINCREMENT,
                accountID     INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
                name          TEXT NOT NULL CHECK (name <> ''),
                uidValidity   INTEGER NOT NULL CHECK (uidValidity BETWEEN 1 AND 4294967295),
                uidNext       INTEGER NOT NULL DEFAULT 1 CHECK (uidNext BETWEEN 1 AND 4294967296),
                highestModSeq INTEGER NOT NULL DEFAULT 1 CHECK (highestModSeq >= 1),
                specialUse    TEXT,
                subscribed    INTEGER NOT NULL DEFAULT 0 CHECK (subscribed IN (0, 1)),
                messageCount  INTEGER NOT NULL DEFAULT 0 CHECK (messageCount >= 0),
                created       REAL NOT NULL,
                UNIQUE (accountID, name)
            );

            -- Content-addressed message bytes. `data` NULL: the bytes are the file
            -- blobs/ab/cd/<id> (see BlobLayout). `summary` is the SummaryCodec form of the
            -- MessageSummary: it describes the blob, so it is stored once per blob.
            CREATE TABLE blob (
                id      TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 64),
                size    INTEGER NOT NULL CHECK (size >= 0),
                data    BLOB,
                summary BLOB NOT NULL,
                created REAL NOT NULL
            );

            CREATE TABLE message (
                id           INTEGER PRIMARY KEY AUTOINCREMENT,
                mailboxID    INTEGER NOT NULL REFERENCES mailbox(id) ON DELETE CASCADE,
                uid          INTEGER NOT NULL CHECK (uid BETWEEN 1 AND 4294967295),
                modSeq       INTEGER NOT NULL CHECK (modSeq >= 1),
                flags        INTEGER NOT NULL DEFAULT 0,
                keywords     TEXT NOT NULL DEFAULT '',
                internalDate REAL NOT NULL,
                size         INTEGER NOT NULL CHECK (size >= 0),
                blobID       TEXT NOT NULL REFERENCES blob(id),
                prefix       BLOB NOT NULL DEFAULT x'',
                UNIQUE (mailboxID, uid)
            );
            CREATE INDEX message_blob ON message(blobID);
            CREATE INDEX message_modseq ON message(mailboxID, modSeq);

            -- Tombstones of expunged messages, for QRESYNC's VANISHED (RFC 7162 §3.2.10).
            CREATE TABLE expunged (
                mailboxID INTEGER NOT NULL REFERENCES mailbox(id) ON DELETE CASCADE,
                uid       INTEGER NOT NULL,
                modSeq    INTEGER NOT NULL,
                PRIMARY KEY (mailboxID, uid)
            ) WITHOUT ROWID;
            """)
    }
}
