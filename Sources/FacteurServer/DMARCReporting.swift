// FacteurServer: DMARC aggregate reporting both ways (RFC 7489 §7.2, DMARCbis aggregate
// reporting). Evaluations of mail received are counted in memory and flushed to the store in
// batches (a report is statistics: a crash may lose the last minutes of counts, never mail);
// once a day each domain that asked (rua=) gets its report, gzip-compressed and DKIM-signed,
// after the external-destination check of RFC 7489 §7.1. Reports other organisations send to
// our reporting address are parsed and kept for `facteur dmarc report`.

import FacteurDNS
import FacteurMailAuth
import FacteurQueue
import FacteurStore
import Foundation
import Logging

/// The per-message facts a report record is made of (aggregation key, stored as JSON).
struct DMARCEvaluationDetails: Codable, Hashable {
    var headerFrom: String
    var envelopeFrom: String?
    var envelopeTo: String?
    var disposition: String
    var dkimAligned: Bool
    var spfAligned: Bool
    /// [domain, selector, result] per signature.
    var dkim: [[String]]
    /// [domain, scope, result].
    var spf: [[String]]
    /// [type, comment] when the disposition differs from the policy.
    var override: [String]?

    var row: DMARCReportRow {
        DMARCReportRow(
            sourceIP: "", headerFrom: headerFrom, envelopeFrom: envelopeFrom, envelopeTo: envelopeTo,
            disposition: DMARCAggregateReport.Disposition(rawValue: disposition) ?? .none,
            dkimAligned: dkimAligned ? .pass : .fail, spfAligned: spfAligned ? .pass : .fail,
            dkim: dkim.compactMap { $0.count == 3 ? .init(domain: $0[0], selector: $0[1].isEmpty ? nil : $0[1],
                                                           result: .init(rawValue: $0[2])) : nil },
            spf: spf.compactMap { $0.count == 3 ? .init(domain: $0[0], scope: .init(rawValue: $0[1]), result: .init(rawValue: $0[2])) : nil },
            policyOverride: override.flatMap { $0.count == 2 ? .init(type: .init(rawValue: $0[0]) ?? .other, comment: $0[1].isEmpty ? nil : $0[1]) : nil })
    }
}

/// The published policy at evaluation time (stored as JSON per day and domain).
struct DMARCPolicySnapshot: Codable, Hashable {
    var domain: String
    var adkim: String
    var aspf: String
    var p: String
    var sp: String?
    var np: String?
    var pct: Int
    var fo: String?
    var testing: Bool
    var rua: [String]

    init(domain: String, record: DMARCRecord) {
        self.domain = domain
        adkim = record.dkimAlignment.rawValue
        aspf = record.spfAlignment.rawValue
        p = record.policy.rawValue
        sp = record.subdomainPolicy?.rawValue
        np = record.nonExistentSubdomainPolicy?.rawValue
        pct = record.percentage
        fo = record.failureReportingOptions.map(\.rawValue).sorted().joined(separator: ":")
        testing = record.testing
        rua = record.aggregateReportURIs.map(\.uri)
    }

    var published: DMARCPublishedPolicy {
        DMARCPublishedPolicy(domain: domain, adkim: .init(rawValue: adkim), aspf: .init(rawValue: aspf), p: .init(rawValue: p),
                             sp: sp.flatMap { .init(rawValue: $0) }, np: np.flatMap { .init(rawValue: $0) }, pct: pct,
                             testing: testing ? .yes : .no, fo: fo?.isEmpty == false ? fo : nil)
    }
}

/// Counts evaluations in memory; `flush` writes them in one transaction.
actor DMARCEvaluationRecorder {
    let store: SQLiteMailStore
    let logger: Logger
    private var counts: [DMARCEvaluationKey: Int] = [:]
    private var policies: [DMARCEvaluationKey: String] = [:]
    /// Flushed early past this many distinct keys, so memory stays bounded under a flood.
    static let maxPending = 10_000
    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    init(store: SQLiteMailStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    /// Records one message's evaluation when its policy domain asked for aggregate reports.
    func record(_ evaluation: DMARCEvaluation, authentication: MessageAuthentication, sourceIP: String,
                envelopeTo: String?, disposition: DMARCPolicy, override: (type: String, comment: String)?, now: Date = Date()) async {
        guard let policyDomain = evaluation.policyDomain, let record = evaluation.record,
              !record.aggregateReportURIs.isEmpty else { return }
        var spf: [[String]] = []
        if let outcome = authentication.spfMailFrom {
            spf.append([outcome.domain, authentication.mailFrom.isEmpty ? "helo" : "mfrom", outcome.result.rawValue])
        }
        let details = DMARCEvaluationDetails(
            headerFrom: evaluation.fromDomain, envelopeFrom: authentication.spfMailFrom?.domain, envelopeTo: envelopeTo,
            disposition: disposition.rawValue, dkimAligned: evaluation.dkimAligned, spfAligned: evaluation.spfAligned,
            dkim: authentication.dkim.prefix(8).map { [$0.domain ?? "", $0.selector ?? "", $0.result.rawValue] },
            spf: spf, override: override.map { [$0.type, $0.comment] })
        guard let json = try? Self.encoder.encode(details), let policy = try? Self.encoder.encode(DMARCPolicySnapshot(domain: policyDomain, record: record)) else { return }
        let day = Int(now.timeIntervalSince1970 / 86_400)
        counts[DMARCEvaluationKey(day: day, policyDomain: policyDomain, sourceIP: sourceIP, details: String(decoding: json, as: UTF8.self)), default: 0] += 1
        policies[DMARCEvaluationKey(day: day, policyDomain: policyDomain, sourceIP: "", details: "")] = String(decoding: policy, as: UTF8.self)
        if counts.count >= Self.maxPending { await flush() }
    }

    func flush() async {
        guard !counts.isEmpty else { return }
        let batch = counts, batchPolicies = policies
        counts = [:]
        policies = [:]
        do {
            try await store.addDMARCEvaluations(batch, policies: batchPolicies)
        } catch {
            logger.warning("DMARC evaluations not recorded", metadata: ["error": "\(error)", "keys": "\(batch.count)"])
        }
    }
}

/// Builds and sends the daily aggregate reports.
struct DMARCReportSender {
    let store: SQLiteMailStore
    let queue: any OutboundQueue
    let evaluator: DMARCEvaluator
    /// Our reporting identity: org_name, the From: address and the domain in report file names.
    let organization: String
    let fromAddress: String
    let logger: Logger

    /// The reports of every complete day (before `today`), each sent to its domain's verified rua
    /// addresses; the counts are then forgotten. Returns how many reports were queued.
    @discardableResult
    func sendDue(now: Date = Date(), includeToday: Bool = false) async throws -> Int {
        let today = Int(now.timeIntervalSince1970 / 86_400) + (includeToday ? 1 : 0)
        var sent = 0
        for group in try await store.dmarcEvaluations(before: today) {
            defer { }
            guard let report = Self.report(group: group, organization: organization, email: fromAddress) else {
                try await store.deleteDMARCEvaluations(day: group.day, policyDomain: group.policyDomain)
                continue
            }
            let recipients = await verifiedRecipients(policy: group.policy, policyDomain: group.policyDomain)
            if !recipients.isEmpty {
                let bytes = DMARCReportMail.compose(report: report, reporterDomain: organization, from: fromAddress, to: recipients,
                                                    date: now, messageID: "<\(report.metadata.reportID)@\(organization)>")
                // The null reverse-path: a report is never bounced back to us (RFC 7489 §7.2.1.1 leaves
                // it to the reporter; bounces of reports would only loop).
                _ = try await queue.enqueue(QueueSubmission(sender: "", recipients: recipients.map { QueueRecipientInput(address: $0) },
                                                            message: .memory(bytes)))
                sent += 1
                logger.info("DMARC aggregate report queued", metadata: [
                    "domain": "\(group.policyDomain)", "day": "\(group.day)", "records": "\(report.records.count)", "to": "\(recipients.joined(separator: ","))"])
            }
            try await store.deleteDMARCEvaluations(day: group.day, policyDomain: group.policyDomain)
        }
        return sent
    }

    static func report(group: (day: Int, policyDomain: String, policy: String?, rows: [(key: DMARCEvaluationKey, count: Int)]),
                       organization: String, email: String) -> DMARCAggregateReport? {
        guard let policyText = group.policy,
              let snapshot = try? JSONDecoder().decode(DMARCPolicySnapshot.self, from: Data(policyText.utf8)) else { return nil }
        var rows: [DMARCReportRow] = []
        for (key, count) in group.rows {
            guard let details = try? JSONDecoder().decode(DMARCEvaluationDetails.self, from: Data(key.details.utf8)) else { continue }
            var row = details.row
            row.sourceIP = key.sourceIP
            rows += Array(repeating: row, count: min(count, 1_000_000))
        }
        guard !rows.isEmpty else { return nil }
        let begin = Int64(group.day) * 86_400
        let id = "\(organization)-\(group.policyDomain)-\(group.day)"
        return DMARCReportBuilder(orgName: organization, email: email).report(
            policy: snapshot.published, rows: rows, dateRange: .init(begin: begin, end: begin + 86_399), reportID: id)
    }

    /// mailto: rua addresses, each outside the policy domain's organisation checked per §7.1.
    func verifiedRecipients(policy: String?, policyDomain: String) async -> [String] {
        guard let policy, let snapshot = try? JSONDecoder().decode(DMARCPolicySnapshot.self, from: Data(policy.utf8)) else { return [] }
        var recipients: [String] = []
        for uri in snapshot.rua.prefix(DMARCLimits.maxReportURIs) {
            guard uri.lowercased().hasPrefix("mailto:") else { continue }
            var address = String(uri.dropFirst("mailto:".count))
            if let bang = address.firstIndex(of: "!") { address = String(address[..<bang]) }
            address = address.removingPercentEncoding ?? address
            guard let at = address.lastIndex(of: "@"), !address.contains(","), !address.contains(" ") else { continue }
            let domain = String(address[address.index(after: at)...]).lowercased()
            if await evaluator.verifyExternalDestination(policyDomain: policyDomain, destinationDomain: domain) {
                recipients.append(address)
            } else {
                logger.notice("DMARC report destination not authorised (RFC 7489 §7.1)", metadata: ["domain": "\(policyDomain)", "rua": "\(address)"])
            }
        }
        return recipients
    }
}

/// Reads the reports that arrive in the reporting account's INBOX, keeps them, and removes the
/// messages (what is not a report is logged and removed too: nobody reads this mailbox).
struct DMARCReportIngestor {
    let store: SQLiteMailStore
    let address: String
    let logger: Logger

    @discardableResult
    func ingest() async throws -> Int {
        try await ReportMailbox.drain(store: store, address: address, kind: "DMARC report", logger: logger) { bytes in
            var kept = 0
            for report in try DMARCReportExtractor.reports(fromMessage: bytes) {
                let xml = Array(report.xml(format: report.namespace == nil ? .rfc7489 : .dmarcbis).utf8)
                if try await store.addReceivedDMARCReport(
                    organization: report.metadata.orgName, reportID: report.metadata.reportID,
                    policyDomain: report.policyPublished.domain,
                    begin: Date(timeIntervalSince1970: TimeInterval(report.metadata.dateRange.begin)),
                    end: Date(timeIntervalSince1970: TimeInterval(report.metadata.dateRange.end)), xml: xml) {
                    kept += 1
                }
            }
            return kept
        }
    }
}

/// The timers: evaluations flushed every five minutes, received reports read every 10 seconds, our
/// reports sent once a day shortly after midnight UTC (and at start for days left unsent).
struct DMARCReportingService: Sendable {
    let recorder: DMARCEvaluationRecorder?
    let sender: DMARCReportSender
    let ingestor: DMARCReportIngestor?
    let logger: Logger

    func run() async {
        var lastFlush = Date()
        var lastSendDay = -1
        while !Task.isCancelled {
            let now = Date()
            if let ingestor {
                do { try await ingestor.ingest() } catch { logger.warning("reading DMARC reports failed", metadata: ["error": "\(error)"]) }
            }
            if let recorder, now.timeIntervalSince(lastFlush) >= 300 {
                await recorder.flush()
                lastFlush = now
            }
            let day = Int(now.timeIntervalSince1970 / 86_400)
            // A few minutes past midnight, so that every message of the day has been counted.
            if recorder != nil, day != lastSendDay, now.timeIntervalSince1970 - Double(day) * 86_400 >= 600 || lastSendDay == -1 {
                await recorder?.flush()
                do { try await sender.sendDue(now: now) } catch { logger.warning("sending DMARC reports failed", metadata: ["error": "\(error)"]) }
                lastSendDay = day
            }
            try? await Task.sleep(for: .seconds(10))
        }
    }
}

/// What `facteur dmarc …` does, on the data folder (the server may be running: the store is
/// shared, and reports queued here are picked up by its queue worker).
public enum DMARCCommands {
    /// Per source IP, what the reports received for our domains say.
    public static func summary(configuration: ServerConfiguration, domain: String?, days: Int) async throws -> String {
        let store = try SQLiteMailStore(directory: configuration.dataDirectory, logger: quietLogger)
        let since = Date().addingTimeInterval(-Double(days) * 86_400)
        var reports: [DMARCAggregateReport] = []
        for stored in try await store.receivedDMARCReports(since: since, policyDomain: domain) {
            if let report = try? DMARCAggregateReport.parse(xml: stored.xml) { reports.append(report) }
        }
        guard !reports.isEmpty else { return "no DMARC reports received in the last \(days) days\n" }
        return "\(reports.count) report(s) from \(Set(reports.map(\.metadata.orgName)).count) reporter(s)\n"
            + DMARCReportSummary(reports: reports).renderTable()
    }

    /// Reads report files (XML, .gz, .zip or a whole message) into the store.
    public static func importReports(configuration: ServerConfiguration, files: [String]) async throws -> Int {
        let store = try SQLiteMailStore(directory: configuration.dataDirectory, logger: quietLogger)
        var added = 0
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else { throw ConfigurationError(file: file, location: "-", message: "cannot read") }
            let bytes = Array(data)
            let reports = file.hasSuffix(".eml") ? try DMARCReportExtractor.reports(fromMessage: bytes)
                : try DMARCReportExtractor.reports(fromAttachment: bytes, filename: (file as NSString).lastPathComponent)
            for report in reports {
                let xml = Array(report.xml(format: report.namespace == nil ? .rfc7489 : .dmarcbis).utf8)
                if try await store.addReceivedDMARCReport(
                    organization: report.metadata.orgName, reportID: report.metadata.reportID, policyDomain: report.policyPublished.domain,
                    begin: Date(timeIntervalSince1970: TimeInterval(report.metadata.dateRange.begin)),
                    end: Date(timeIntervalSince1970: TimeInterval(report.metadata.dateRange.end)), xml: xml) {
                    added += 1
                }
            }
        }
        return added
    }

    /// The aggregate reports we would send now (XML, RFC 7489 format), without sending them.
    public static func pendingReports(configuration: ServerConfiguration, includeToday: Bool) async throws -> [(domain: String, xml: String)] {
        let store = try SQLiteMailStore(directory: configuration.dataDirectory, logger: quietLogger)
        let day = Int(Date().timeIntervalSince1970 / 86_400) + (includeToday ? 1 : 0)
        return try await store.dmarcEvaluations(before: day).compactMap { group in
            DMARCReportSender.report(group: group, organization: configuration.primaryDomain,
                                     email: "noreply-dmarc@\(configuration.primaryDomain)")
                .map { (group.policyDomain, $0.xml(format: .rfc7489)) }
        }
    }

    /// Queues the due reports now (DKIM-signed like everything queued); a running server delivers them.
    public static func sendReports(configuration: ServerConfiguration, includeToday: Bool) async throws -> Int {
        let store = try SQLiteMailStore(directory: configuration.dataDirectory, logger: quietLogger)
        let resolver = DNSClient(configuration: try FacteurServer.dnsConfiguration(configuration), logger: quietLogger)
        let keyring = DKIMKeyring(directory: configuration.resolve("dkim"))
        let queue = QueueDeliveryService(store: store, resolver: resolver, configuration: QueueConfiguration(hostname: configuration.hostname),
                                         signer: configuration.mailAuth.dkimSign ? DKIMQueueSigner(cache: DKIMSignerCache(keyring: keyring), logger: quietLogger) : nil,
                                         logger: quietLogger)
        let evaluator = DMARCEvaluator(resolver: resolver, organizationalDomain: try FacteurServer.organizationalDomainStrategy(configuration))
        let sender = DMARCReportSender(store: store, queue: queue, evaluator: evaluator, organization: configuration.primaryDomain,
                                       fromAddress: "noreply-dmarc@\(configuration.primaryDomain)", logger: quietLogger)
        return try await sender.sendDue(includeToday: includeToday)
    }

    static var quietLogger: Logger {
        var logger = Logger(label: "facteur")
        logger.logLevel = .warning
        return logger
    }
}
