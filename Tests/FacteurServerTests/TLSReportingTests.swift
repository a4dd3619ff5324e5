// TLS-RPT in the server (RFC 8460): outcomes counted by the recorder reach the store, the daily
// sender queues one report per recipient domain and day (once), and a received report mail is
// parsed back and stored. Also the `[tls_reports]` configuration section.

import FacteurDNS
import FacteurMailAuth
import FacteurQueue
@testable import FacteurServer
import FacteurStore
import Foundation
import Logging
import XCTest

private final class CollectingQueue: OutboundQueue, @unchecked Sendable {
    let store: SQLiteMailStore
    private let lock = NSLock()
    private var _submissions: [QueueSubmission] = []
    var submissions: [QueueSubmission] { lock.withLock { _submissions } }
    init(store: SQLiteMailStore) { self.store = store }
    func enqueue(_ submission: QueueSubmission) async throws -> QueuedMessage {
        lock.withLock { _submissions.append(submission) }
        return try await store.enqueue(submission)
    }
}

final class TLSReportingTests: XCTestCase {
    var directory: String!
    var store: SQLiteMailStore!

    override func setUp() async throws {
        directory = NSTemporaryDirectory() + "facteur-tlsrpt-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        store = try SQLiteMailStore(directory: directory)
    }

    override func tearDown() async throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func outcome(_ domain: String, failure: TLSFailureType? = nil, day: Int) -> TLSSessionOutcome {
        TLSSessionOutcome(recipientDomain: domain, policyType: .sts, policyStrings: ["version: STSv1", "mode: enforce", "mx: mx.\(domain)", "max_age: 86400"],
                          policyDomain: domain, mxHostPattern: "mx.\(domain)", receivingMXHostname: "mx.\(domain)",
                          receivingIP: "192.0.2.10", sendingMTAIP: "198.51.100.1", failure: failure,
                          date: Date(timeIntervalSince1970: Double(day) * 86_400 + 7_200))
    }

    func testRecordFlushSendOnce() async throws {
        let logger = Logger(label: "test")
        let recorder = TLSReportRecorder(store: store, logger: logger)
        let day = 20_400
        for _ in 0..<3 { await recorder.record(outcome("example.com", day: day)) }
        await recorder.record(outcome("example.com", failure: .certificateNotTrusted, day: day))
        await recorder.record(outcome("no-record.example", day: day))
        await recorder.record(outcome("today.example", day: day + 1))
        await recorder.flush()
        let pendingKeys = await recorder.pendingKeys
        XCTAssertEqual(pendingKeys, 0)
        let groups = try await store.pendingTLSReportCounts(before: day + 1)
        XCTAssertEqual(groups.map(\.recipientDomain), ["example.com", "no-record.example"])

        let resolver = StaticResolver(records: [
            DNSResourceRecord(name: try DNSName("_smtp._tls.example.com"), ttl: 300,
                              data: .txt(TXTRecord(text: "v=TLSRPTv1; rua=mailto:tlsrpt@example.com"))),
        ])
        let queue = CollectingQueue(store: store)
        let sender = TLSReportSender(store: store, queue: queue, resolver: resolver, organization: "sender.example",
                                     contact: "postmaster@sender.example", submitter: "sender.example",
                                     fromAddress: "noreply-tlsrpt@sender.example", logger: logger)
        let now = Date(timeIntervalSince1970: Double(day + 1) * 86_400 + 900)
        let sent = try await sender.sendDue(now: now)
        XCTAssertEqual(sent, 1)
        XCTAssertEqual(queue.submissions.count, 1)
        let submission = try XCTUnwrap(queue.submissions.first)
        XCTAssertEqual(submission.tlsDemand, .policyExempt, "RFC 8460 §3: reports go even when TLS policy fails")
        XCTAssertEqual(submission.sender, "")
        XCTAssertEqual(submission.recipients.map(\.address), ["tlsrpt@example.com"])
        guard case .memory(let bytes) = submission.message else { return XCTFail("expected the message in memory") }

        // The mail parses back into the same report.
        let reports = try TLSReportExtractor.reports(fromMessage: bytes)
        XCTAssertEqual(reports.count, 1)
        let report = try XCTUnwrap(reports.first)
        XCTAssertEqual(report.organizationName, "sender.example")
        XCTAssertEqual(report.policies.first?.summary, .init(totalSuccessfulSessionCount: 3, totalFailureSessionCount: 1))
        XCTAssertEqual(report.policies.first?.failureDetails.first?.failureType, .certificateNotTrusted)

        // Both finished days are marked (the one without a record too); today's counts wait.
        let marked = try await store.sentTLSReports(since: 0)
        XCTAssertEqual(marked.map(\.recipientDomain), ["example.com", "no-record.example"])
        XCTAssertEqual(marked.first?.destinations, "mailto:tlsrpt@example.com")
        let afterwards = try await store.pendingTLSReportCounts(before: day + 1)
        XCTAssertTrue(afterwards.isEmpty)

        // A late outcome for a reported day never makes a second report.
        await recorder.record(outcome("example.com", day: day))
        await recorder.flush()
        let again = try await sender.sendDue(now: now)
        XCTAssertEqual(again, 0)
        XCTAssertEqual(queue.submissions.count, 1)

        // Received: stored once, listed, shown.
        let stored = try await TLSReportExtractor.store(report, in: store)
        XCTAssertTrue(stored)
        let duplicate = try await TLSReportExtractor.store(report, in: store)
        XCTAssertFalse(duplicate)
        let received = try await store.receivedTLSReports(since: Date(timeIntervalSince1970: 0), policyDomain: "example.com")
        XCTAssertEqual(received.count, 1)
        XCTAssertEqual(received.first?.failed, 1)
        XCTAssertEqual(received.first?.successful, 3)
        let other = try await store.receivedTLSReports(since: Date(timeIntervalSince1970: 0), policyDomain: "example.net")
        XCTAssertTrue(other.isEmpty)
    }

    func testGzipAndPlainFilesAreRead() throws {
        let report = TLSReport(organizationName: "o", dateRange: .init(start: Date(timeIntervalSince1970: 0), end: Date(timeIntervalSince1970: 86_399)),
                               contactInfo: "c", reportID: "r",
                               policies: [.init(policy: .init(policyType: .noPolicyFound, policyDomain: "example.com"),
                                                summary: .init(totalSuccessfulSessionCount: 4, totalFailureSessionCount: 0))])
        XCTAssertEqual(try TLSReportExtractor.report(fromFile: report.json()), report)
        XCTAssertEqual(try TLSReportExtractor.report(fromFile: DMARCReportCompression.gzip(report.json())), report)
        XCTAssertThrowsError(try TLSReportExtractor.report(fromFile: [0x1F, 0x8B, 0, 0]))
    }

    func testConfigurationSection() throws {
        let configuration = try ServerConfiguration.parse("""
            primary_domain = "example.org"
            [tls_reports]
            enabled = false
            organization = "Example Org"
            contact = "mailto:tls@example.org"
            address = "TLS@example.org"
            interval = 60
            """, file: "t")
        XCTAssertFalse(configuration.tlsReports.enabled)
        XCTAssertEqual(configuration.tlsReports.organization, "Example Org")
        XCTAssertEqual(configuration.tlsReportContact, "mailto:tls@example.org")
        XCTAssertEqual(configuration.tlsReports.address, "tls@example.org")
        XCTAssertEqual(configuration.tlsReports.interval, 60)
        let defaults = try ServerConfiguration.parse("primary_domain = \"example.org\"", file: "t")
        XCTAssertTrue(defaults.tlsReports.enabled)
        XCTAssertEqual(defaults.tlsReportOrganization, "example.org")
        XCTAssertEqual(defaults.tlsReportContact, "postmaster@example.org")
        XCTAssertThrowsError(try ServerConfiguration.parse("[tls_reports]\nbogus = 1", file: "t"))
        XCTAssertThrowsError(try ServerConfiguration.parse("[tls_reports]\ninterval = 1", file: "t"))
    }
}
