// FacteurServer: SMTP TLS Reporting both ways (RFC 8460), in the shape of DMARC reporting
// (DMARCReporting.swift). Outbound TLS sessions are counted in memory (`TLSReportRecorder`, the
// queue's `TLSReportSink`) and flushed to the store every few minutes and at shutdown; once a day
// every recipient domain that publishes `_smtp._tls` (§3) gets its report for the finished UTC
// day, gzip-compressed, by mail (§5.3, DKIM-signed by the queue, exempt from its TLS policy) and/or
// HTTPS POST (§5.4). Reports other organisations send to our reporting address are parsed and
// kept for `facteur tlsrpt`.

import FacteurDNS
import FacteurIdentity
import FacteurMailAuth
import FacteurMIME
import FacteurQueue
import FacteurStore
import Foundation
import Logging
import NIOCore
import ServiceLifecycle

/// Counts TLS session outcomes in memory; `flush` writes them in one transaction.
actor TLSReportRecorder: TLSReportSink {
    let store: SQLiteMailStore
    let logger: Logger
    private var counts: [TLSReportCountKey: Int] = [:]
    /// Flushed early past this many distinct keys, so memory stays bounded under a flood of failures.
    static let maxPending = 10_000

    init(store: SQLiteMailStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    func record(_ outcome: TLSSessionOutcome) async {
        let domain = outcome.recipientDomain.lowercased()
        guard !domain.isEmpty, domain.utf8.count <= 253 else { return }
        let key = TLSReportBuilder.key(for: outcome)
        let seconds = outcome.date.timeIntervalSince1970
        guard seconds.isFinite, seconds >= 0, seconds < 1e12 else { return }
        counts[TLSReportCountKey(day: Int(seconds / 86_400), recipientDomain: domain, policy: key.policy, failure: key.failure), default: 0] += 1
        if counts.count >= Self.maxPending { await flush() }
    }

    func flush() async {
        guard !counts.isEmpty else { return }
        let batch = counts
        counts = [:]
        do {
            try await store.addTLSReportCounts(batch)
        } catch {
            logger.warning("TLS report counts not recorded", metadata: ["error": "\(error)", "keys": "\(batch.count)"])
        }
    }

    var pendingKeys: Int { counts.count }
}

/// Builds and sends the daily reports.
struct TLSReportSender: Sendable {
    let store: SQLiteMailStore
    let queue: any OutboundQueue
    let resolver: any DNSResolver
    /// "organization-name", "contact-info", and the Submitter (our domain) of §5.3.
    let organization: String
    let contact: String
    let submitter: String
    let fromAddress: String
    let logger: Logger
    var allowHTTP = false
    var httpTimeout: TimeAmount = .seconds(30)

    /// Reports of every finished UTC day (before today; `includeToday` adds today, for tests and the
    /// CLI), each sent to its domain's rua and then marked sent. Returns how many reports went out.
    @discardableResult
    func sendDue(now: Date = Date(), includeToday: Bool = false) async throws -> Int {
        let today = Int(now.timeIntervalSince1970 / 86_400) + (includeToday ? 1 : 0)
        var sent = 0
        for group in try await store.pendingTLSReportCounts(before: today) {
            if try await store.isTLSReportSent(day: group.day, recipientDomain: group.recipientDomain) {
                // Late counts for a day already reported: dropped, never a second report.
                try await store.markTLSReportSent(day: group.day, recipientDomain: group.recipientDomain, reportID: "", destinations: "")
                continue
            }
            guard let report = TLSReportBuilder.report(day: group.day, recipientDomain: group.recipientDomain, rows: group.rows,
                                                       organization: organization, contact: contact) else {
                try await store.markTLSReportSent(day: group.day, recipientDomain: group.recipientDomain, reportID: "", destinations: "")
                continue
            }
            let destinations: [TLSReportRecord.Destination]
            switch await TLSReportRecord.lookupOutcome(domain: group.recipientDomain, resolver: resolver) {
            case .record(let record): destinations = record.destinations
            case .noRecord: destinations = []
            case .temporaryFailure:
                // Tried again at the next pass, for three days at most.
                if group.day >= today - 3 { continue }
                destinations = []
            }
            var done: [String] = []
            if !destinations.isEmpty {
                let gzipped = DMARCReportCompression.gzip(report.json())
                let mailto = destinations.compactMap { destination -> String? in
                    if case .mailto(let address) = destination { return address }
                    return nil
                }
                if !mailto.isEmpty {
                    let bytes = TLSReportMail.compose(report: report, gzipped: gzipped, submitter: submitter, policyDomain: group.recipientDomain,
                                                      from: fromAddress, to: mailto, date: now)
                    // Null reverse-path: a report is never bounced back to us. RFC 8460 §3: a report
                    // is delivered even when the recipient's own TLS policy fails.
                    _ = try await queue.enqueue(QueueSubmission(sender: "", recipients: mailto.map { QueueRecipientInput(address: $0) },
                                                                message: .memory(bytes), tlsDemand: .policyExempt))
                    done += mailto.map { "mailto:" + $0 }
                }
                for case .https(let url) in destinations {
                    do {
                        try await TLSReportUpload.post(gzipped, to: url, timeout: httpTimeout, allowHTTP: allowHTTP)
                        done.append(url)
                    } catch {
                        logger.notice("TLS report not accepted over HTTPS", metadata: ["domain": "\(group.recipientDomain)", "url": "\(url)", "error": "\(error)"])
                    }
                }
                if !done.isEmpty { sent += 1 }
                logger.info("TLS report sent", metadata: ["domain": "\(group.recipientDomain)", "day": "\(group.day)",
                                                          "to": "\(done.joined(separator: ","))"])
            }
            try await store.markTLSReportSent(day: group.day, recipientDomain: group.recipientDomain, reportID: report.reportID,
                                              destinations: done.joined(separator: ","), at: now)
        }
        return sent
    }

    /// The reports that `sendDue` would send now, without sending or marking them.
    func pending(now: Date = Date(), includeToday: Bool) async throws -> [(domain: String, report: TLSReport)] {
        let today = Int(now.timeIntervalSince1970 / 86_400) + (includeToday ? 1 : 0)
        return try await store.pendingTLSReportCounts(before: today).compactMap { group in
            TLSReportBuilder.report(day: group.day, recipientDomain: group.recipientDomain, rows: group.rows,
                                    organization: organization, contact: contact).map { (group.recipientDomain, $0) }
        }
    }
}

extension TLSReportRecord {
    enum LookupOutcome { case record(TLSReportRecord), noRecord, temporaryFailure }

    /// `lookup`, telling "no usable record" apart from "DNS did not answer".
    static func lookupOutcome(domain: String, resolver: any DNSResolver) async -> LookupOutcome {
        guard let name = try? DNSName("_smtp._tls." + domain) else { return .noRecord }
        do {
            let records = try await resolver.txt(name)
            return select(records.map(\.text)).map { .record($0) } ?? .noRecord
        } catch {
            return error.isTemporary ? .temporaryFailure : .noRecord
        }
    }
}

/// Reports in a message: application/tlsrpt+gzip or +json parts (§5.3), and parts named *.json or
/// *.json.gz, gzip or plain.
enum TLSReportExtractor {
    static func reports(fromMessage bytes: [UInt8]) throws(TLSReportError) -> [TLSReport] {
        guard bytes.count <= TLSReportLimits.maxCompressedBytes * 2 else { throw .tooLarge(limit: TLSReportLimits.maxCompressedBytes * 2) }
        let summary = MessageSummary(parsing: bytes)
        var candidates: [BodyPart] = []
        collect(summary.body, into: &candidates)
        var found: [TLSReport] = []
        var firstError: TLSReportError?
        for part in candidates.prefix(10) {
            guard part.bodyOffset >= 0, part.bodyLength >= 0, part.bodyOffset <= bytes.count,
                  part.bodyLength <= bytes.count - part.bodyOffset else { continue }
            let decoded = TransferDecoding.decode(bytes[part.bodyOffset..<(part.bodyOffset + part.bodyLength)], encoding: part.encoding)
            do throws(TLSReportError) {
                found.append(try report(fromFile: decoded))
            } catch {
                if firstError == nil { firstError = error }
            }
        }
        if found.isEmpty { throw firstError ?? .invalid("no report in the message") }
        return found
    }

    /// One report file: gzip-compressed or plain JSON.
    static func report(fromFile bytes: [UInt8]) throws(TLSReportError) -> TLSReport {
        guard bytes.count <= TLSReportLimits.maxJSONBytes else { throw .tooLarge(limit: TLSReportLimits.maxJSONBytes) }
        guard DMARCReportCompression.isGzip(bytes) else { return try TLSReport.parse(json: bytes) }
        let json: [UInt8]
        do {
            json = try DMARCReportCompression.gunzip(bytes, maxOutput: TLSReportLimits.maxJSONBytes)
        } catch {
            throw .invalid("gzip: \(error)")
        }
        return try TLSReport.parse(json: json)
    }

    /// FacteurMIME caps the part tree's depth and size, so this recursion is bounded.
    private static func collect(_ part: BodyPart, into candidates: inout [BodyPart]) {
        if !part.children.isEmpty {
            for child in part.children { collect(child, into: &candidates) }
            return
        }
        let name = part.fileName?.lowercased() ?? ""
        if part.mimeType == "application/tlsrpt+gzip" || part.mimeType == "application/tlsrpt+json"
            || name.hasSuffix(".json") || name.hasSuffix(".json.gz") {
            candidates.append(part)
        }
    }

    /// Stores one parsed report; false when the same reporter's report id is already here.
    static func store(_ report: TLSReport, in store: SQLiteMailStore) async throws -> Bool {
        let totals = report.totals
        return try await store.addReceivedTLSReport(
            organization: report.organizationName, reportID: report.reportID,
            policyDomains: Array(Set(report.policies.map { $0.policy.policyDomain.lowercased() })).sorted(),
            begin: report.dateRange.start, end: report.dateRange.end, successful: totals.successful, failed: totals.failed,
            json: report.json())
    }
}

/// Reads the reports that arrive in the reporting account's INBOX, keeps them, and removes the
/// messages (what is not a report is logged and removed too: nobody reads this mailbox).
struct TLSReportIngestor: Sendable {
    let store: SQLiteMailStore
    let address: String
    let logger: Logger

    @discardableResult
    func ingest() async throws -> Int {
        try await ReportMailbox.drain(store: store, address: address, kind: "TLS report", logger: logger) { bytes in
            var kept = 0
            for report in try TLSReportExtractor.reports(fromMessage: bytes) {
                if try await TLSReportExtractor.store(report, in: store) { kept += 1 }
            }
            return kept
        }
    }
}

/// The timers, as a service of its own: counts flushed every `interval` seconds and at shutdown,
/// received reports read every 10 seconds, our reports sent shortly after midnight UTC (and at
/// start for days left unsent).
struct TLSReportingService: Service {
    let recorder: TLSReportRecorder?
    let sender: TLSReportSender?
    let ingestor: TLSReportIngestor?
    let interval: Int
    let logger: Logger

    /// What `facteur serve` runs; `recorder` is the sink the outbound queue reports sessions to.
    /// `recorder`: the sink given to the queue (made first, as the queue is this service's way out).
    static func make(store: SQLiteMailStore, queue: any OutboundQueue, recorder: TLSReportRecorder?, resolver: any DNSResolver,
                     configuration: ServerConfiguration, logger: Logger) async throws -> TLSReportingService {
        let settings = configuration.tlsReports
        var ingestor: TLSReportIngestor?
        if var address = settings.address {
            if !address.contains("@") { address += "@\(configuration.primaryDomain)" }
            if try await store.account(address: address) == nil, try await store.resolveRecipient(address) == .unknownUser {
                let credentials = try Credentials.make(password: FirstStart.randomPassword())
                _ = try await store.addAccount(address: address, credentials: credentials, quota: .unlimited, isAdmin: false)
                logger.notice("created the TLS report account", metadata: ["address": "\(address)"])
            }
            if try await store.account(address: address) != nil { ingestor = TLSReportIngestor(store: store, address: address, logger: logger) }
        }
        guard settings.enabled, let recorder else {
            return TLSReportingService(recorder: nil, sender: nil, ingestor: ingestor, interval: settings.interval, logger: logger)
        }
        return TLSReportingService(
            recorder: recorder,
            sender: TLSReportSender(store: store, queue: queue, resolver: resolver, organization: configuration.tlsReportOrganization,
                                    contact: configuration.tlsReportContact, submitter: configuration.primaryDomain,
                                    fromAddress: configuration.tlsReportFrom, logger: logger),
            ingestor: ingestor, interval: settings.interval, logger: logger)
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            var lastFlush = Date()
            var lastSendDay = -1
            while !Task.isCancelled {
                let now = Date()
                if let ingestor {
                    do { try await ingestor.ingest() } catch { logger.warning("reading TLS reports failed", metadata: ["error": "\(error)"]) }
                }
                if let recorder, now.timeIntervalSince(lastFlush) >= Double(interval) {
                    await recorder.flush()
                    lastFlush = now
                }
                let day = Int(now.timeIntervalSince1970 / 86_400)
                // Ten minutes past midnight, so that the sessions of the day have been counted.
                if let sender, day != lastSendDay, now.timeIntervalSince1970 - Double(day) * 86_400 >= 600 || lastSendDay == -1 {
                    await recorder?.flush()
                    do { try await sender.sendDue(now: now) } catch { logger.warning("sending TLS reports failed", metadata: ["error": "\(error)"]) }
                    lastSendDay = day
                }
                try? await Task.sleep(for: .seconds(10))
            }
        }
        // The counts of the sessions just made belong in the next reports.
        await recorder?.flush()
    }
}

/// What `facteur tlsrpt …` does, on the data folder (the server may be running: the store is
/// shared, and reports queued here are picked up by its queue worker).
public enum TLSReportCommands {
    /// One line per received report.
    public static func list(configuration: ServerConfiguration, domain: String?, days: Int) async throws -> String {
        let store = try SQLiteMailStore(directory: configuration.dataDirectory, logger: DMARCCommands.quietLogger)
        let reports = try await store.receivedTLSReports(since: Date().addingTimeInterval(-Double(days) * 86_400), policyDomain: domain)
        guard !reports.isEmpty else { return "no TLS reports received in the last \(days) days\n" }
        var out = "ID     BEGIN                 DOMAINS                         OK        FAILED    FROM\n"
        for r in reports {
            func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
            out += pad(String(r.id), 7) + pad(RFC3339.format(r.begin), 22) + pad(clean(r.policyDomains), 32)
                + pad(String(r.successful), 10) + pad(String(r.failed), 10) + clean(r.organization) + "\n"
        }
        return out
    }

    /// One received report in full: its JSON, pretty-printed.
    public static func show(configuration: ServerConfiguration, id: Int64) async throws -> String? {
        let store = try SQLiteMailStore(directory: configuration.dataDirectory, logger: DMARCCommands.quietLogger)
        guard let stored = try await store.receivedTLSReport(id: id) else { return nil }
        guard let object = try? JSONSerialization.jsonObject(with: Data(stored.json)),
              let pretty = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]) else {
            return String(decoding: stored.json, as: UTF8.self) + "\n"
        }
        return String(decoding: pretty, as: UTF8.self) + "\n"
    }

    /// The reports we would send now (JSON), without sending them.
    public static func pending(configuration: ServerConfiguration, includeToday: Bool) async throws -> [(domain: String, json: String)] {
        let store = try SQLiteMailStore(directory: configuration.dataDirectory, logger: DMARCCommands.quietLogger)
        let sender = TLSReportSender(store: store, queue: NoQueue(), resolver: StaticResolver(), organization: configuration.tlsReportOrganization,
                                     contact: configuration.tlsReportContact, submitter: configuration.primaryDomain,
                                     fromAddress: configuration.tlsReportFrom, logger: DMARCCommands.quietLogger)
        return try await sender.pending(includeToday: includeToday).map { ($0.domain, String(decoding: $0.report.json(), as: UTF8.self)) }
    }

    /// Sends the due reports now (mail is queued, DKIM-signed like everything queued; a running
    /// server delivers it).
    public static func send(configuration: ServerConfiguration, includeToday: Bool) async throws -> Int {
        let store = try SQLiteMailStore(directory: configuration.dataDirectory, logger: DMARCCommands.quietLogger)
        let resolver = DNSClient(configuration: try FacteurServer.dnsConfiguration(configuration), logger: DMARCCommands.quietLogger)
        let keyring = DKIMKeyring(directory: configuration.resolve("dkim"))
        let queue = QueueDeliveryService(store: store, resolver: resolver, configuration: QueueConfiguration(hostname: configuration.hostname),
                                         signer: configuration.mailAuth.dkimSign ? DKIMQueueSigner(cache: DKIMSignerCache(keyring: keyring), logger: DMARCCommands.quietLogger) : nil,
                                         logger: DMARCCommands.quietLogger)
        let sender = TLSReportSender(store: store, queue: queue, resolver: resolver, organization: configuration.tlsReportOrganization,
                                     contact: configuration.tlsReportContact, submitter: configuration.primaryDomain,
                                     fromAddress: configuration.tlsReportFrom, logger: DMARCCommands.quietLogger)
        return try await sender.sendDue(includeToday: includeToday)
    }

    /// Reads report files (.json, .json.gz, or a whole message .eml) into the store.
    public static func importReports(configuration: ServerConfiguration, files: [String]) async throws -> Int {
        let store = try SQLiteMailStore(directory: configuration.dataDirectory, logger: DMARCCommands.quietLogger)
        var added = 0
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else { throw ConfigurationError(file: file, location: "-", message: "cannot read") }
            let bytes = Array(data)
            let reports = file.hasSuffix(".eml") ? try TLSReportExtractor.reports(fromMessage: bytes) : [try TLSReportExtractor.report(fromFile: bytes)]
            for report in reports {
                if try await TLSReportExtractor.store(report, in: store) { added += 1 }
            }
        }
        return added
    }

    private static func clean(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? " " : $0 }))
    }

    /// `pending` sends nothing.
    private struct NoQueue: OutboundQueue {
        func enqueue(_ submission: QueueSubmission) async throws -> QueuedMessage {
            throw ConfigurationError(file: "-", location: "-", message: "not sending")
        }
    }
}
