// DMARC reporting data in SQLiteMailStore: the evaluations of mail received (aggregated per day,
// policy domain, source and outcome: what RFC 7489 §7.2's aggregate reports are made of) until the
// daily report is sent, and the aggregate reports other organisations send us (kept as XML,
// deduplicated by reporter and report id). The store keeps them opaque: FacteurMailAuth gives
// them their meaning.

import Foundation
import GRDB

/// One aggregation key of evaluations. `details` carries the per-message authentication results
/// (JSON made by the caller), part of the key so that different results are counted apart.
public struct DMARCEvaluationKey: Sendable, Hashable, Codable {
    /// Days since 1970-01-01 (UTC).
    public var day: Int
    public var policyDomain: String
    public var sourceIP: String
    public var details: String

    public init(day: Int, policyDomain: String, sourceIP: String, details: String) {
        self.day = day; self.policyDomain = policyDomain; self.sourceIP = sourceIP; self.details = details
    }
}

/// A report received from another organisation, as stored.
public struct ReceivedDMARCReport: Sendable {
    public var id: Int64
    public var received: Date
    public var organization: String
    public var reportID: String
    public var policyDomain: String
    public var begin: Date
    public var end: Date
    public var xml: [UInt8]
}

enum DMARCSchema {
    static func v3(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE dmarc_evaluation (
                day          INTEGER NOT NULL,
                policyDomain TEXT NOT NULL,
                sourceIP     TEXT NOT NULL,
                details      TEXT NOT NULL,
                count        INTEGER NOT NULL CHECK (count > 0),
                PRIMARY KEY (day, policyDomain, sourceIP, details)
            ) WITHOUT ROWID;

            -- The policy each domain published on a day, and where it wants its reports.
            CREATE TABLE dmarc_policy (
                day          INTEGER NOT NULL,
                policyDomain TEXT NOT NULL,
                policy       TEXT NOT NULL,
                PRIMARY KEY (day, policyDomain)
            ) WITHOUT ROWID;

            CREATE TABLE dmarc_received_report (
                id           INTEGER PRIMARY KEY AUTOINCREMENT,
                received     REAL NOT NULL,
                organization TEXT NOT NULL,
                reportID     TEXT NOT NULL,
                policyDomain TEXT NOT NULL,
                begin        REAL NOT NULL,
                end          REAL NOT NULL,
                xml          BLOB NOT NULL,
                UNIQUE (organization, reportID)
            );
            CREATE INDEX dmarc_received_report_domain ON dmarc_received_report(policyDomain, begin);
            """)
    }
}

extension SQLiteMailStore {
    /// Adds counts (one transaction for a whole batch: the caller aggregates in memory first).
    /// `policies`: the latest published policy per (day, domain), replacing what was there.
    public func addDMARCEvaluations(_ counts: [DMARCEvaluationKey: Int], policies: [DMARCEvaluationKey: String]) async throws {
        guard !counts.isEmpty || !policies.isEmpty else { return }
        try await write { db in
            let upsert = try db.cachedStatement(sql: """
                INSERT INTO dmarc_evaluation (day, policyDomain, sourceIP, details, count) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (day, policyDomain, sourceIP, details) DO UPDATE SET count = count + excluded.count
                """)
            for (key, count) in counts where count > 0 {
                try upsert.execute(arguments: [key.day, key.policyDomain, key.sourceIP, key.details, count])
            }
            let policy = try db.cachedStatement(sql: """
                INSERT INTO dmarc_policy (day, policyDomain, policy) VALUES (?, ?, ?)
                ON CONFLICT (day, policyDomain) DO UPDATE SET policy = excluded.policy
                """)
            for (key, text) in policies {
                try policy.execute(arguments: [key.day, key.policyDomain, text])
            }
        }
    }

    /// Every evaluation of days before `day`, per (day, policy domain), with the policy recorded.
    public func dmarcEvaluations(before day: Int) async throws -> [(day: Int, policyDomain: String, policy: String?,
                                                                     rows: [(key: DMARCEvaluationKey, count: Int)])] {
        try await read { db in
            var groups: [String: (Int, String, [(key: DMARCEvaluationKey, count: Int)])] = [:]
            for row in try Row.fetchAll(db, sql: """
                SELECT day, policyDomain, sourceIP, details, count FROM dmarc_evaluation WHERE day < ? ORDER BY day, policyDomain
                """, arguments: [day]) {
                let key = DMARCEvaluationKey(day: row[0], policyDomain: row[1], sourceIP: row[2], details: row[3])
                groups["\(key.day) \(key.policyDomain)", default: (key.day, key.policyDomain, [])].2.append((key, row[4]))
            }
            var policies: [String: String] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT day, policyDomain, policy FROM dmarc_policy WHERE day < ?", arguments: [day]) {
                let d: Int = row[0]
                let domain: String = row[1]
                policies["\(d) \(domain)"] = row[2]
            }
            return groups.sorted { $0.key < $1.key }.map { ($0.value.0, $0.value.1, policies[$0.key], $0.value.2) }
        }
    }

    /// Forgets what has been reported (or is too old to report).
    public func deleteDMARCEvaluations(day: Int, policyDomain: String) async throws {
        try await write { db in
            try db.execute(sql: "DELETE FROM dmarc_evaluation WHERE day = ? AND policyDomain = ?", arguments: [day, policyDomain])
            try db.execute(sql: "DELETE FROM dmarc_policy WHERE day = ? AND policyDomain = ?", arguments: [day, policyDomain])
        }
    }

    /// Keeps a received report; false when the same reporter's report id is already here.
    @discardableResult
    public func addReceivedDMARCReport(organization: String, reportID: String, policyDomain: String, begin: Date, end: Date,
                                       xml: [UInt8], received: Date = Date()) async throws -> Bool {
        try await write { db in
            try db.execute(sql: """
                INSERT OR IGNORE INTO dmarc_received_report (received, organization, reportID, policyDomain, begin, end, xml)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """, arguments: [received.timeIntervalSince1970, organization, reportID, policyDomain.lowercased(),
                                 begin.timeIntervalSince1970, end.timeIntervalSince1970, Data(xml)])
            return db.changesCount > 0
        }
    }

    /// Received reports whose period ends after `since`, optionally for one policy domain.
    public func receivedDMARCReports(since: Date, policyDomain: String? = nil) async throws -> [ReceivedDMARCReport] {
        try await read { db in
            var sql = "SELECT id, received, organization, reportID, policyDomain, begin, end, xml FROM dmarc_received_report WHERE end >= ?"
            var arguments: StatementArguments = [since.timeIntervalSince1970]
            if let policyDomain { sql += " AND policyDomain = ?"; arguments += [policyDomain.lowercased()] }
            return try Row.fetchAll(db, sql: sql + " ORDER BY begin", arguments: arguments).map { row in
                let xml: Data = row[7]
                return ReceivedDMARCReport(id: row[0], received: Date(timeIntervalSince1970: row[1]), organization: row[2], reportID: row[3],
                                           policyDomain: row[4], begin: Date(timeIntervalSince1970: row[5]),
                                           end: Date(timeIntervalSince1970: row[6]), xml: Array(xml))
            }
        }
    }
}
