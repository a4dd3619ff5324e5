// SMTP TLS reporting data in SQLiteMailStore (RFC 8460): counts of outbound TLS sessions per day,
// recipient domain, policy and failure (what a daily report is made of) until that report is sent;
// which reports went out (so that nothing is sent twice); and the reports other organisations
// send us. Policies and failures are opaque JSON texts here: FacteurQueue gives them their meaning.

import Foundation
import GRDB

/// One aggregation key of TLS sessions. `failure` is "" for successful sessions.
public struct TLSReportCountKey: Sendable, Hashable, Codable {
    /// Days since 1970-01-01 (UTC).
    public var day: Int
    public var recipientDomain: String
    public var policy: String
    public var failure: String

    public init(day: Int, recipientDomain: String, policy: String, failure: String) {
        self.day = day; self.recipientDomain = recipientDomain; self.policy = policy; self.failure = failure
    }
}

/// A report we sent (or found no destination for).
public struct SentTLSReport: Sendable {
    public var day: Int
    public var recipientDomain: String
    public var reportID: String
    public var sent: Date
    /// Where it went ("mailto:…", "https://…"), or "" when the domain publishes no usable record.
    public var destinations: String
}

/// A report received from another organisation, as stored.
public struct ReceivedTLSReport: Sendable {
    public var id: Int64
    public var received: Date
    public var organization: String
    public var reportID: String
    /// The policy domains the report covers, comma-separated (lowercased).
    public var policyDomains: String
    public var begin: Date
    public var end: Date
    public var successful: Int
    public var failed: Int
    public var json: [UInt8]
}

enum TLSReportSchema {
    static func v7(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE tls_report_count (
                day             INTEGER NOT NULL,
                recipientDomain TEXT NOT NULL,
                policy          TEXT NOT NULL,
                failure         TEXT NOT NULL,
                count           INTEGER NOT NULL CHECK (count > 0),
                PRIMARY KEY (day, recipientDomain, policy, failure)
            ) WITHOUT ROWID;

            CREATE TABLE tls_report_sent (
                day             INTEGER NOT NULL,
                recipientDomain TEXT NOT NULL,
                reportID        TEXT NOT NULL,
                sent            REAL NOT NULL,
                destinations    TEXT NOT NULL,
                PRIMARY KEY (day, recipientDomain)
            ) WITHOUT ROWID;

            CREATE TABLE tls_received_report (
                id            INTEGER PRIMARY KEY AUTOINCREMENT,
                received      REAL NOT NULL,
                organization  TEXT NOT NULL,
                reportID      TEXT NOT NULL,
                policyDomains TEXT NOT NULL,
                begin         REAL NOT NULL,
                end           REAL NOT NULL,
                successful    INTEGER NOT NULL,
                failed        INTEGER NOT NULL,
                json          BLOB NOT NULL,
                UNIQUE (organization, reportID)
            );
            CREATE INDEX tls_received_report_begin ON tls_received_report(begin);
            """)
    }
}

extension SQLiteMailStore {
    /// Adds session counts in one transaction (the caller aggregates in memory first). Counts for
    /// a (day, domain) whose report has already gone are dropped: a report is sent once.
    public func addTLSReportCounts(_ counts: [TLSReportCountKey: Int]) async throws {
        guard !counts.isEmpty else { return }
        try await write { db in
            let upsert = try db.cachedStatement(sql: """
                INSERT INTO tls_report_count (day, recipientDomain, policy, failure, count)
                SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM tls_report_sent WHERE day = ?1 AND recipientDomain = ?2)
                ON CONFLICT (day, recipientDomain, policy, failure) DO UPDATE SET count = min(count + excluded.count, 1000000000000)
                """)
            for (key, count) in counts where count > 0 {
                try upsert.execute(arguments: [key.day, key.recipientDomain.lowercased(), key.policy, key.failure, count])
            }
        }
    }

    /// The counts of days before `day` not yet reported, per (day, recipient domain).
    public func pendingTLSReportCounts(before day: Int) async throws
        -> [(day: Int, recipientDomain: String, rows: [(policy: String, failure: String, count: Int)])] {
        try await read { db in
            var groups: [(day: Int, recipientDomain: String, rows: [(policy: String, failure: String, count: Int)])] = []
            for row in try Row.fetchAll(db, sql: """
                SELECT day, recipientDomain, policy, failure, count FROM tls_report_count
                WHERE day < ? ORDER BY day, recipientDomain, policy, failure
                """, arguments: [day]) {
                let d: Int = row[0]
                let domain: String = row[1]
                if groups.last?.day != d || groups.last?.recipientDomain != domain { groups.append((d, domain, [])) }
                groups[groups.count - 1].rows.append((row[2], row[3], row[4]))
            }
            return groups
        }
    }

    /// Records that the (day, domain) report went out (or had nowhere to go) and forgets its
    /// counts, in one transaction. False when it was already marked (another process sent it).
    @discardableResult
    public func markTLSReportSent(day: Int, recipientDomain: String, reportID: String, destinations: String,
                                  at date: Date = Date()) async throws -> Bool {
        try await write { db in
            try db.execute(sql: """
                INSERT OR IGNORE INTO tls_report_sent (day, recipientDomain, reportID, sent, destinations) VALUES (?, ?, ?, ?, ?)
                """, arguments: [day, recipientDomain.lowercased(), reportID, date.timeIntervalSince1970, destinations])
            let inserted = db.changesCount > 0
            try db.execute(sql: "DELETE FROM tls_report_count WHERE day = ? AND recipientDomain = ?",
                           arguments: [day, recipientDomain.lowercased()])
            return inserted
        }
    }

    public func isTLSReportSent(day: Int, recipientDomain: String) async throws -> Bool {
        try await read { db in
            try Bool.fetchOne(db, sql: "SELECT 1 FROM tls_report_sent WHERE day = ? AND recipientDomain = ?",
                              arguments: [day, recipientDomain.lowercased()]) ?? false
        }
    }

    public func sentTLSReports(since day: Int) async throws -> [SentTLSReport] {
        try await read { db in
            try Row.fetchAll(db, sql: """
                SELECT day, recipientDomain, reportID, sent, destinations FROM tls_report_sent WHERE day >= ? ORDER BY day, recipientDomain
                """, arguments: [day]).map {
                SentTLSReport(day: $0[0], recipientDomain: $0[1], reportID: $0[2], sent: Date(timeIntervalSince1970: $0[3]), destinations: $0[4])
            }
        }
    }

    /// Keeps a received report; false when the same reporter's report id is already here.
    @discardableResult
    public func addReceivedTLSReport(organization: String, reportID: String, policyDomains: [String], begin: Date, end: Date,
                                     successful: Int, failed: Int, json: [UInt8], received: Date = Date()) async throws -> Bool {
        try await write { db in
            try db.execute(sql: """
                INSERT OR IGNORE INTO tls_received_report (received, organization, reportID, policyDomains, begin, end, successful, failed, json)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [received.timeIntervalSince1970, organization, reportID,
                                 policyDomains.map { $0.lowercased() }.joined(separator: ","),
                                 begin.timeIntervalSince1970, end.timeIntervalSince1970, successful, failed, Data(json)])
            return db.changesCount > 0
        }
    }

    /// Received reports whose period ends after `since`, newest first, optionally for one policy domain.
    public func receivedTLSReports(since: Date, policyDomain: String? = nil, limit: Int = 1000) async throws -> [ReceivedTLSReport] {
        try await read { db in
            var sql = "SELECT \(Self.receivedTLSColumns) FROM tls_received_report WHERE end >= ?"
            var arguments: StatementArguments = [since.timeIntervalSince1970]
            if let policyDomain {
                sql += " AND (',' || policyDomains || ',') LIKE ?"
                arguments += ["%," + policyDomain.lowercased() + ",%"]
            }
            arguments += [max(1, min(limit, 100_000))]
            return try Row.fetchAll(db, sql: sql + " ORDER BY begin DESC, id DESC LIMIT ?", arguments: arguments).map(Self.receivedTLSReport)
        }
    }

    public func receivedTLSReport(id: Int64) async throws -> ReceivedTLSReport? {
        try await read { db in
            try Row.fetchOne(db, sql: "SELECT \(Self.receivedTLSColumns) FROM tls_received_report WHERE id = ?", arguments: [id])
                .map(Self.receivedTLSReport)
        }
    }

    static let receivedTLSColumns = "id, received, organization, reportID, policyDomains, begin, end, successful, failed, json"

    static func receivedTLSReport(_ row: Row) -> ReceivedTLSReport {
        let json: Data = row[9]
        return ReceivedTLSReport(id: row[0], received: Date(timeIntervalSince1970: row[1]), organization: row[2], reportID: row[3],
                                 policyDomains: row[4], begin: Date(timeIntervalSince1970: row[5]), end: Date(timeIntervalSince1970: row[6]),
                                 successful: row[7], failed: row[8], json: Array(json))
    }
}
