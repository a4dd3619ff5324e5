import FacteurQueue
import Foundation
@testable import FacteurSMTP
import XCTest

/// Drives an `SMTPSession` like the NIO adapter does, with scripted effect outcomes.
struct SessionDriver {
    var session: SMTPSession
    var verdicts: [String: RecipientVerdict] = [:]
    var deliveryVerdict: DeliveryVerdict = .stored
    var delivered: [SMTPTransaction] = []
    var startedTLS = false
    var closed = false
    var pendingData = false
    var pendingChunk: (size: Int, last: Bool)?
    var authResult: AuthenticationResult = .success(account: "alice@example.org")
    var authStarted: (String, [UInt8]?)?
    var allowedSenders: Set<String> = ["alice@example.org"]
    var rateLimited = false

    init(configuration: SMTPSessionConfiguration = SMTPSessionConfiguration(hostname: "mx.example.org", maxMessageSize: 1000, maxRecipients: 3, maxErrors: 5)) {
        session = SMTPSession(configuration: configuration, clientAddress: "192.0.2.7", makeTransactionID: { "TESTID" })
    }

    /// Sends one command line; returns the replies as "code enhanced" strings.
    mutating func send(_ line: String) -> [String] {
        run(session.receive(SMTPCommandParser.parse(Array(line.utf8))))
    }

    mutating func dataEnds(_ message: ReceivedMessage) -> [String] {
        XCTAssertTrue(pendingData, "no DATA in progress")
        pendingData = false
        return run(session.messageReceived(message))
    }

    mutating func chunkEnds(_ total: ReceivedMessage) -> [String] {
        XCTAssertNotNil(pendingChunk, "no BDAT in progress")
        pendingChunk = nil
        return run(session.chunkReceived(total))
    }

    mutating func run(_ actions: [SMTPAction]) -> [String] {
        var replies: [String] = []
        for action in actions {
            switch action {
            case .reply(let reply):
                replies.append([String(reply.code), reply.enhanced].compactMap { $0 }.joined(separator: " "))
            case .startTLS: startedTLS = true
            case .close: closed = true
            case .checkRecipient(let mailbox, _):
                let verdict = verdicts[mailbox.description] ?? .accepted([LocalRecipient(accountID: 1, address: mailbox.description)])
                replies += run(session.recipientChecked(verdict))
            case .receiveData: pendingData = true
            case .receiveChunk(let size, let last): pendingChunk = (size, last)
            case .authenticate(let mechanism, let initial):
                authStarted = (mechanism, initial)
                replies += run(session.authenticationFinished(authResult))
            case .checkSender(let sender, _):
                let owned = sender.map { allowedSenders.contains($0.description) } ?? false
                replies += run(session.senderChecked(rateLimited ? .rateLimited : (owned ? .allowed : .notOwned)))
            case .deliver(let transaction):
                delivered.append(transaction)
                replies += run(session.deliveryFinished(deliveryVerdict, transactionID: transaction.id))
            }
        }
        return replies
    }
}

final class SMTPSessionTests: XCTestCase {
    func testHappyPathTranscript() {
        var d = SessionDriver()
        XCTAssertEqual(d.run(d.session.start()), ["220"])
        XCTAssertEqual(d.send("EHLO client.example"), ["250"])
        XCTAssertEqual(d.send("MAIL FROM:<alice@example.net> SIZE=500"), ["250 2.1.0"])
        XCTAssertEqual(d.send("RCPT TO:<bob@example.org>"), ["250 2.1.5"])
        XCTAssertEqual(d.send("DATA"), ["354"])
        XCTAssertEqual(d.dataEnds(ReceivedMessage(size: 400)), ["250 2.0.0"])
        XCTAssertEqual(d.delivered.count, 1)
        let transaction = d.delivered[0]
        XCTAssertEqual(transaction.sender, SMTPMailbox(localPart: "alice", domain: "example.net"))
        XCTAssertEqual(transaction.recipients.map(\.mailbox.description), ["bob@example.org"])
        XCTAssertEqual(transaction.heloName, "client.example")
        XCTAssertEqual(transaction.receivedProtocol, "ESMTP")
        XCTAssertEqual(transaction.size, 400)
        // A second transaction in the same session.
        XCTAssertEqual(d.send("MAIL FROM:<>"), ["250 2.1.0"])
        XCTAssertEqual(d.send("RCPT TO:<bob@example.org>"), ["250 2.1.5"])
        XCTAssertEqual(d.send("DATA"), ["354"])
        XCTAssertEqual(d.dataEnds(ReceivedMessage(size: 10)), ["250 2.0.0"])
        XCTAssertEqual(d.delivered[1].sender, nil)
        XCTAssertEqual(d.send("QUIT"), ["221 2.0.0"])
        XCTAssertTrue(d.closed)
    }

    func testEHLOAdvertisesExtensions() {
        var session = SMTPSession(configuration: .init(hostname: "mx.example.org", maxMessageSize: 1234), clientAddress: "::1")
        guard case .reply(let reply)? = session.receive(.success(.ehlo("c"))).first else { return XCTFail("no reply") }
        XCTAssertEqual(Array(reply.lines.dropFirst()), ["PIPELINING", "SIZE 1234", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING", "DSN", "STARTTLS", "HELP"])
        XCTAssertTrue(reply.lines.contains("DSN"), "RFC 3461 §4: the DSN extension is advertised")
    }

    func testCommandOrderIsEnforced() {
        var d = SessionDriver()
        XCTAssertEqual(d.send("MAIL FROM:<a@example.net>"), ["503 5.5.1"])
        XCTAssertEqual(d.send("RCPT TO:<b@example.org>"), ["503 5.5.1"])
        XCTAssertEqual(d.send("DATA"), ["503 5.5.1"])
        XCTAssertEqual(d.send("HELO client"), ["250"])
        XCTAssertEqual(d.send("RCPT TO:<b@example.org>"), ["503 5.5.1"])
        XCTAssertEqual(d.send("MAIL FROM:<a@example.net>"), ["250 2.1.0"])
        XCTAssertEqual(d.send("MAIL FROM:<a@example.net>"), ["503 5.5.1"])
    }

    func testDataWithoutValidRecipients() {
        var d = SessionDriver()
        d.verdicts["nobody@example.org"] = .unknownUser
        _ = d.send("EHLO c")
        _ = d.send("MAIL FROM:<a@example.net>")
        XCTAssertEqual(d.send("RCPT TO:<nobody@example.org>"), ["550 5.1.1"])
        XCTAssertEqual(d.send("DATA"), ["554 5.5.1"])
        XCTAssertFalse(d.pendingData)
    }

    func testRecipientVerdicts() {
        var d = SessionDriver(configuration: .init(hostname: "mx", maxMessageSize: 1000, maxRecipients: 10, maxErrors: 50))
        d.verdicts["x@elsewhere.example"] = .relayDenied
        d.verdicts["full@example.org"] = .mailboxFull
        d.verdicts["small@example.org"] = .tooLargeForMailbox
        d.verdicts["flaky@example.org"] = .temporaryFailure
        _ = d.send("EHLO c")
        _ = d.send("MAIL FROM:<a@example.net>")
        XCTAssertEqual(d.send("RCPT TO:<x@elsewhere.example>"), ["550 5.7.1"])
        XCTAssertEqual(d.send("RCPT TO:<full@example.org>"), ["452 4.2.2"])
        XCTAssertEqual(d.send("RCPT TO:<small@example.org>"), ["552 5.2.2"])
        XCTAssertEqual(d.send("RCPT TO:<flaky@example.org>"), ["451 4.3.0"])
        XCTAssertEqual(d.send("RCPT TO:<ok@example.org>"), ["250 2.1.5"])
    }

    func testRecipientLimit() {
        var d = SessionDriver()
        _ = d.send("EHLO c")
        _ = d.send("MAIL FROM:<a@example.net>")
        for n in 1...3 { XCTAssertEqual(d.send("RCPT TO:<u\(n)@example.org>"), ["250 2.1.5"]) }
        XCTAssertEqual(d.send("RCPT TO:<u4@example.org>"), ["452 4.5.3"])
        XCTAssertEqual(d.send("DATA"), ["354"])
        XCTAssertEqual(d.dataEnds(ReceivedMessage(size: 1)), ["250 2.0.0"])
        XCTAssertEqual(d.delivered.first?.recipients.count, 3)
    }

    func testSizeDeclaredAtMail() {
        var d = SessionDriver()
        _ = d.send("EHLO c")
        XCTAssertEqual(d.send("MAIL FROM:<a@example.net> SIZE=1001"), ["552 5.3.4"])
        XCTAssertEqual(d.send("MAIL FROM:<a@example.net> SIZE=abc"), ["501 5.5.4"])
        XCTAssertEqual(d.send("MAIL FROM:<a@example.net> SIZE=1000"), ["250 2.1.0"])
    }

    func testMessageProblemsAfterData() {
        var d = SessionDriver(configuration: .init(hostname: "mx", maxMessageSize: 1000, maxErrors: 50))
        _ = d.send("EHLO c")
        for (problem, expected) in [(ReceivedMessage(size: 2000, exceededMaximumSize: true), "552 5.3.4"),
                                    (ReceivedMessage(size: 10, containsNUL: true), "554 5.6.0"),
                                    (ReceivedMessage(size: 10, lineTooLong: true), "554 5.6.0")] {
            _ = d.send("MAIL FROM:<a@example.net>")
            _ = d.send("RCPT TO:<b@example.org>")
            _ = d.send("DATA")
            XCTAssertEqual(d.dataEnds(problem), [expected])
        }
        XCTAssertTrue(d.delivered.isEmpty)
        // The session is usable again.
        XCTAssertEqual(d.send("MAIL FROM:<a@example.net>"), ["250 2.1.0"])
    }

    func testDeliveryFailuresAreTemporary() {
        var d = SessionDriver()
        _ = d.send("EHLO c")
        d.deliveryVerdict = .storageFailure
        _ = d.send("MAIL FROM:<a@example.net>"); _ = d.send("RCPT TO:<b@example.org>"); _ = d.send("DATA")
        XCTAssertEqual(d.dataEnds(ReceivedMessage(size: 5)), ["452 4.3.1"])
        d.deliveryVerdict = .mailboxFull
        _ = d.send("MAIL FROM:<a@example.net>"); _ = d.send("RCPT TO:<b@example.org>"); _ = d.send("DATA")
        XCTAssertEqual(d.dataEnds(ReceivedMessage(size: 5)), ["452 4.2.2"])
    }

    func testDSNParametersAreCarriedInTheTransaction() {
        var d = SessionDriver()
        _ = d.send("EHLO c")
        XCTAssertEqual(d.send("MAIL FROM:<a@example.net> RET=hdrs ENVID=QQ+2B314"), ["250 2.1.0"])
        XCTAssertEqual(d.send("RCPT TO:<b@example.org> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;b+2Bx@example.org"), ["250 2.1.5"])
        XCTAssertEqual(d.send("RCPT TO:<c@example.org> NOTIFY=never"), ["250 2.1.5"])
        XCTAssertEqual(d.send("RCPT TO:<e@example.org>"), ["250 2.1.5"])
        _ = d.send("DATA")
        XCTAssertEqual(d.dataEnds(ReceivedMessage(size: 5)), ["250 2.0.0"])
        let t = d.delivered[0]
        XCTAssertEqual(t.ret, .headers)
        XCTAssertEqual(t.envelopeID, "QQ+2B314", "kept as sent (xtext) so that it is relayed unchanged")
        XCTAssertEqual(t.recipients.map(\.notify), [[.success, .delay], .never, nil])
        XCTAssertEqual(t.recipients.map(\.originalRecipient), ["rfc822;b+2Bx@example.org", nil, nil])
        // RSET (and the end of a transaction) forgets them.
        XCTAssertEqual(d.send("MAIL FROM:<a@example.net>"), ["250 2.1.0"])
        XCTAssertEqual(d.send("RCPT TO:<b@example.org>"), ["250 2.1.5"])
        _ = d.send("DATA")
        _ = d.dataEnds(ReceivedMessage(size: 5))
        XCTAssertNil(d.delivered[1].ret)
        XCTAssertNil(d.delivered[1].envelopeID)
        XCTAssertNil(d.delivered[1].recipients[0].notify)
    }

    func testBadDSNParametersAre501() {
        var d = SessionDriver(configuration: .init(hostname: "mx", maxMessageSize: 1000, maxErrors: 50))
        _ = d.send("EHLO c")
        for bad in ["RET=BODY", "RET", "RET=FULL RET=FULL", "ENVID", "ENVID=a+2", "ENVID=a+zz", "ENVID=a+2b",
                    "ENVID=" + String(repeating: "x", count: 101), "ENVID=x ENVID=y", "ENVID=é"] {
            XCTAssertEqual(d.send("MAIL FROM:<a@example.net> \(bad)"), ["501 5.5.4"], bad)
        }
        XCTAssertEqual(d.send("MAIL FROM:<a@example.net> ENVID=" + String(repeating: "x", count: 100)), ["250 2.1.0"])
        for bad in ["NOTIFY=NEVER,SUCCESS", "NOTIFY=SUCCESS,", "NOTIFY=,FAILURE", "NOTIFY=SOMETIMES", "NOTIFY",
                    "NOTIFY=NEVER NOTIFY=NEVER", "ORCPT=b@example.org", "ORCPT=;b@example.org", "ORCPT=rfc822;",
                    "ORCPT=rfc822;b+4@example.org", "ORCPT=rfc 822;b", "ORCPT=rfc822;" + String(repeating: "b", count: 494),
                    "ORCPT=rfc822;a ORCPT=rfc822;b"] {
            XCTAssertEqual(d.send("RCPT TO:<b@example.org> \(bad)"), ["501 5.5.4"], bad)
        }
        XCTAssertEqual(d.send("RCPT TO:<b@example.org> ORCPT=rfc822;" + String(repeating: "b", count: 493)), ["250 2.1.5"])
        XCTAssertEqual(d.send("RCPT TO:<c@example.org> NOTIFY=FAILURE"), ["250 2.1.5"])
        XCTAssertEqual(d.send("RCPT TO:<c@example.org> FOO=BAR"), ["555 5.5.4"])
    }

    func testDSNParametersOnSubmission() {
        var d = SessionDriver(configuration: .init(hostname: "mx", mode: .submission, allowPlaintextAuthWithoutTLS: true))
        _ = d.send("EHLO c")
        _ = d.send("AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA==")
        XCTAssertEqual(d.send("MAIL FROM:<alice@example.org> RET=FULL ENVID=id1"), ["250 2.1.0"])
        XCTAssertEqual(d.send("RCPT TO:<x@example.com> NOTIFY=FAILURE"), ["250 2.1.5"])
        _ = d.send("DATA")
        _ = d.dataEnds(ReceivedMessage(size: 5))
        XCTAssertEqual(d.delivered.first?.ret, .full)
        XCTAssertEqual(d.delivered.first?.envelopeID, "id1")
        XCTAssertEqual(d.delivered.first?.recipients.first?.notify, .failure)
    }

    func testXtext() {
        XCTAssertEqual(DSNParameterSyntax.decodeXtext("a+2Bb+3Dc"), "a+b=c")
        XCTAssertEqual(DSNParameterSyntax.decodeXtext(""), "")
        XCTAssertNil(DSNParameterSyntax.decodeXtext("a+"))
        XCTAssertNil(DSNParameterSyntax.decodeXtext("a+2"))
        XCTAssertNil(DSNParameterSyntax.decodeXtext("a+2b"), "hexchar is upper-case (RFC 3461 §4)")
        XCTAssertNil(DSNParameterSyntax.decodeXtext("a=b"))
        XCTAssertNil(DSNParameterSyntax.decodeXtext("a b"))
        XCTAssertNil(DSNParameterSyntax.decodeXtext("é"))
        let text = "jöe+tag=x y@example.org"
        let encoded = DSNParameterSyntax.encodeXtext(text)
        XCTAssertEqual(encoded, "j+C3+B6e+2Btag+3Dx+20y@example.org")
        XCTAssertEqual(DSNParameterSyntax.decodeXtext(encoded), text)
        let orcpt = DSNParameterSyntax.parseOriginalRecipient("rfc822;b+2Bx@example.org")
        XCTAssertEqual(orcpt?.addressType, "rfc822")
        XCTAssertEqual(orcpt?.address, "b+x@example.org")
        XCTAssertEqual(DSNParameterSyntax.parseEnvelopeID("a+20b"), "a b")
    }

    func testOtherParameters() {
        var d = SessionDriver(configuration: .init(hostname: "mx", maxMessageSize: 1000, maxErrors: 50))
        _ = d.send("EHLO c")
        XCTAssertEqual(d.send("MAIL FROM:<a@example.net> BODY=BINARYMIME"), ["555 5.5.4"])
        XCTAssertEqual(d.send("MAIL FROM:<a@example.net> FOO=BAR"), ["555 5.5.4"])
        XCTAssertEqual(d.send("MAIL FROM:<jö@example.net>"), ["553 5.6.7"])
        XCTAssertEqual(d.send("MAIL FROM:<a@example.net> AUTH=<>"), ["250 2.1.0"])
        XCTAssertEqual(d.send("RCPT TO:<bö@example.org>"), ["553 5.6.7"])
    }

    func testSMTPUTF8Transaction() {
        var d = SessionDriver()
        _ = d.send("EHLO c")
        XCTAssertEqual(d.send("MAIL FROM:<jö@example.net> SMTPUTF8 BODY=8BITMIME"), ["250 2.1.0"])
        XCTAssertEqual(d.send("RCPT TO:<bö@example.org>"), ["250 2.1.5"])
        _ = d.send("DATA")
        XCTAssertEqual(d.dataEnds(ReceivedMessage(size: 5)), ["250 2.0.0"])
        XCTAssertEqual(d.delivered.first?.receivedProtocol, "UTF8SMTP")
    }

    func testRsetClearsTheTransaction() {
        var d = SessionDriver()
        _ = d.send("EHLO c")
        _ = d.send("MAIL FROM:<a@example.net>")
        _ = d.send("RCPT TO:<b@example.org>")
        XCTAssertEqual(d.send("RSET"), ["250 2.0.0"])
        XCTAssertEqual(d.send("DATA"), ["503 5.5.1"])
        XCTAssertEqual(d.send("MAIL FROM:<a@example.net>"), ["250 2.1.0"])
    }

    func testVrfyNeverRevealsAccounts() {
        var d = SessionDriver()
        XCTAssertEqual(d.send("VRFY root"), ["252 2.5.2"])
        XCTAssertEqual(d.send("VRFY nobody-at-all"), ["252 2.5.2"])
        XCTAssertEqual(d.send("EXPN staff"), ["502 5.5.1"])
        XCTAssertEqual(d.send("HELP"), ["214 2.0.0"])
        XCTAssertEqual(d.send("NOOP"), ["250 2.0.0"])
    }

    func testSTARTTLSResetsTheSession() {
        var d = SessionDriver()
        _ = d.send("EHLO c")
        XCTAssertEqual(d.send("STARTTLS"), ["220 2.0.0"])
        XCTAssertTrue(d.startedTLS)
        _ = d.run(d.session.tlsEstablished())
        XCTAssertEqual(d.send("MAIL FROM:<a@example.net>"), ["503 5.5.1"], "EHLO is needed again after TLS")
        guard case .reply(let reply)? = d.session.receive(.success(.ehlo("c"))).first else { return XCTFail("no reply") }
        XCTAssertFalse(reply.lines.contains("STARTTLS"))
        _ = d.send("MAIL FROM:<a@example.net>"); _ = d.send("RCPT TO:<b@example.org>"); _ = d.send("DATA")
        _ = d.dataEnds(ReceivedMessage(size: 5))
        XCTAssertEqual(d.delivered.first?.receivedProtocol, "ESMTPS")
        XCTAssertEqual(d.send("STARTTLS"), ["502 5.5.1"])
    }

    func testSTARTTLSNotInsideTransactionNorWhenUnavailable() {
        var d = SessionDriver()
        _ = d.send("EHLO c")
        _ = d.send("MAIL FROM:<a@example.net>")
        XCTAssertEqual(d.send("STARTTLS"), ["503 5.5.1"])
        var plain = SessionDriver(configuration: .init(hostname: "mx", tlsAvailable: false))
        _ = plain.send("EHLO c")
        XCTAssertEqual(plain.send("STARTTLS"), ["502 5.5.1"])
    }

    func testAuthIsNotOfferedOnTheMXPort() {
        var d = SessionDriver()
        _ = d.send("EHLO c")
        XCTAssertEqual(d.send("AUTH PLAIN AGFAYg=="), ["502 5.5.1"])
    }

    func testTooManyErrorsCloses() {
        var d = SessionDriver()
        for _ in 1...5 { XCTAssertEqual(d.send("BOGUS"), ["500 5.5.2"]) }
        XCTAssertEqual(d.send("BOGUS"), ["500 5.5.2", "421 4.7.0"])
        XCTAssertTrue(d.closed)
        XCTAssertEqual(d.send("NOOP"), [], "nothing is answered after close")
    }

    func testBDATTranscript() {
        var d = SessionDriver()
        _ = d.send("EHLO c")
        _ = d.send("MAIL FROM:<a@example.net>")
        _ = d.send("RCPT TO:<b@example.org>")
        XCTAssertEqual(d.send("BDAT 100"), [])
        XCTAssertEqual(d.pendingChunk?.size, 100)
        XCTAssertEqual(d.chunkEnds(ReceivedMessage(size: 100)), ["250 2.0.0"])
        XCTAssertEqual(d.send("DATA"), ["503 5.5.1"], "no DATA after BDAT")
        XCTAssertEqual(d.send("BDAT 50 LAST"), [])
        XCTAssertEqual(d.chunkEnds(ReceivedMessage(size: 150)), ["250 2.0.0"])
        XCTAssertEqual(d.delivered.first?.size, 150)
    }

    func testBDATWithoutRecipientsStillReadsTheChunk() {
        var d = SessionDriver()
        _ = d.send("EHLO c")
        XCTAssertEqual(d.send("BDAT 10 LAST"), [])
        XCTAssertEqual(d.pendingChunk?.size, 10, "the chunk must be consumed to stay in step")
        XCTAssertEqual(d.chunkEnds(ReceivedMessage(size: 10)), ["503 5.5.1"])
        _ = d.send("MAIL FROM:<a@example.net>")
        d.verdicts["nobody@example.org"] = .unknownUser
        _ = d.send("RCPT TO:<nobody@example.org>")
        _ = d.send("BDAT 5")
        XCTAssertEqual(d.chunkEnds(ReceivedMessage(size: 5)), ["554 5.5.1"])
        _ = d.send("BDAT 5 LAST")
        XCTAssertEqual(d.chunkEnds(ReceivedMessage(size: 10)), ["554 5.5.1"])
        XCTAssertTrue(d.delivered.isEmpty)
        XCTAssertEqual(d.send("MAIL FROM:<a@example.net>"), ["250 2.1.0"], "the transaction was reset")
    }

    func testDrainWhenIdleClosesAtOnce() {
        var d = SessionDriver()
        _ = d.send("EHLO c")
        XCTAssertEqual(d.run(d.session.drain()), ["421 4.3.2"])
        XCTAssertTrue(d.closed)
    }

    func testDrainDuringDataLetsTheMessageFinish() {
        var d = SessionDriver()
        _ = d.send("EHLO c"); _ = d.send("MAIL FROM:<a@example.net>"); _ = d.send("RCPT TO:<b@example.org>"); _ = d.send("DATA")
        XCTAssertEqual(d.run(d.session.drain()), [])
        XCTAssertFalse(d.closed)
        XCTAssertEqual(d.dataEnds(ReceivedMessage(size: 5)), ["250 2.0.0", "421 4.3.2"])
        XCTAssertEqual(d.delivered.count, 1)
        XCTAssertTrue(d.closed)
    }

    func testTimeout() {
        var d = SessionDriver()
        XCTAssertEqual(d.run(d.session.timedOut()), ["421 4.4.2"])
        XCTAssertTrue(d.closed)
    }

    func testTraceHeaders() {
        let transaction = SMTPTransaction(id: "ABC123", sender: SMTPMailbox(localPart: "alice", domain: "example.net"),
                                          recipients: [], heloName: "client.example\u{7}", clientAddress: "2001:db8::1",
                                          receivedProtocol: "ESMTPS", size: 10)
        let prefix = String(decoding: TraceHeaders.prefix(transaction: transaction, recipient: "bob@example.org", hostname: "mx.example.org",
                                                          date: Date(timeIntervalSince1970: 1_796_000_000)), as: UTF8.self)
        XCTAssertEqual(prefix, """
        Return-Path: <alice@example.net>\r
        Delivered-To: bob@example.org\r
        Received: from client.example? ([IPv6:2001:db8::1])\r
        \tby mx.example.org (Facteur) with ESMTPS id ABC123\r
        \tfor <bob@example.org>; Mon, 30 Nov 2026 00:53:20 +0000\r

        """)
    }

    // MARK: Submission (RFC 6409, RFC 4954)

    private func submission(tls: Bool = true, plaintextWithoutTLS: Bool = false) -> SessionDriver {
        SessionDriver(configuration: .init(hostname: "mx", maxErrors: 50, implicitTLS: tls, mode: .submission,
                                           allowPlaintextAuthWithoutTLS: plaintextWithoutTLS))
    }

    func testSubmissionAdvertisesAuthAndRequiresIt() {
        var d = submission()
        guard case .reply(let reply)? = d.session.receive(.success(.ehlo("c"))).first else { return XCTFail("no reply") }
        XCTAssertTrue(reply.lines.contains("AUTH SCRAM-SHA-256 PLAIN LOGIN"))
        XCTAssertEqual(d.send("MAIL FROM:<alice@example.org>"), ["530 5.7.0"])
        XCTAssertEqual(d.send("AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA=="), ["235 2.7.0"])
        XCTAssertEqual(d.authStarted?.0, "PLAIN")
        XCTAssertEqual(d.authStarted?.1, Array("\0alice@example.org\0secret".utf8))
        XCTAssertEqual(d.send("AUTH PLAIN"), ["503 5.5.1"], "already authenticated")
        XCTAssertEqual(d.send("MAIL FROM:<alice@example.org>"), ["250 2.1.0"])
        XCTAssertEqual(d.send("RCPT TO:<bob@example.org>"), ["250 2.1.5"])
        XCTAssertEqual(d.send("DATA"), ["354"])
        XCTAssertEqual(d.dataEnds(ReceivedMessage(size: 5)), ["250 2.0.0"])
        XCTAssertEqual(d.delivered.first?.authenticatedAccount, "alice@example.org")
        XCTAssertEqual(d.delivered.first?.receivedProtocol, "ESMTPSA")
    }

    func testSubmissionRefusesForeignSenders() {
        var d = submission()
        _ = d.send("EHLO c")
        _ = d.send("AUTH PLAIN =")
        XCTAssertEqual(d.authStarted?.1, [], "'=' is an empty initial response")
        XCTAssertEqual(d.send("MAIL FROM:<ceo@example.org>"), ["553 5.7.1"])
        XCTAssertEqual(d.send("MAIL FROM:<>"), ["553 5.7.1"])
        XCTAssertEqual(d.send("MAIL FROM:<alice@example.org>"), ["250 2.1.0"])
    }

    func testPlaintextMechanismsNeedTLS() {
        var d = submission(tls: false)
        guard case .reply(let reply)? = d.session.receive(.success(.ehlo("c"))).first else { return XCTFail("no reply") }
        XCTAssertTrue(reply.lines.contains("AUTH SCRAM-SHA-256"), "only SCRAM before TLS: \(reply.lines)")
        XCTAssertEqual(d.send("AUTH PLAIN AGFAYg=="), ["538 5.7.11"])
        XCTAssertNil(d.authStarted)
        XCTAssertEqual(d.send("AUTH SCRAM-SHA-256"), ["235 2.7.0"])
        XCTAssertEqual(d.authStarted?.1, nil, "no initial response")
        var loopback = submission(tls: false, plaintextWithoutTLS: true)
        _ = loopback.send("EHLO c")
        XCTAssertEqual(loopback.send("AUTH LOGIN"), ["235 2.7.0"])
    }

    func testAuthErrors() {
        var d = submission()
        XCTAssertEqual(d.send("AUTH PLAIN"), ["503 5.5.1"], "EHLO first")
        _ = d.send("HELO c")
        XCTAssertEqual(d.send("AUTH PLAIN"), ["503 5.5.1"], "HELO clients cannot AUTH")
        _ = d.send("EHLO c")
        XCTAssertEqual(d.send("AUTH CRAM-MD5"), ["504 5.5.4"])
        XCTAssertEqual(d.send("AUTH PLAIN !!notbase64"), ["501 5.5.2"])
        d.authResult = .failure(SMTPReply(535, "5.7.8", "no"))
        XCTAssertEqual(d.send("AUTH PLAIN AGFAYg=="), ["535 5.7.8"])
        XCTAssertEqual(d.send("MAIL FROM:<alice@example.org>"), ["530 5.7.0"])
        var inbound = SessionDriver()
        _ = inbound.send("EHLO c")
        XCTAssertEqual(inbound.send("AUTH PLAIN AGFAYg=="), ["502 5.5.1"])
    }

    func testRateLimitsAreTemporaryFailures() {
        var d = submission()
        d.verdicts["many@example.org"] = .rateLimited
        _ = d.send("EHLO c"); _ = d.send("AUTH PLAIN =")
        d.rateLimited = true
        XCTAssertEqual(d.send("MAIL FROM:<alice@example.org>"), ["451 4.7.1"])
        d.rateLimited = false
        XCTAssertEqual(d.send("MAIL FROM:<alice@example.org>"), ["250 2.1.0"])
        XCTAssertEqual(d.send("RCPT TO:<many@example.org>"), ["451 4.7.1"])
    }

    func testSubmissionRelayNeedsTheQueue() {
        var d = submission()
        d.verdicts["x@elsewhere.example"] = .relayUnavailable
        _ = d.send("EHLO c"); _ = d.send("AUTH PLAIN ="); _ = d.send("MAIL FROM:<alice@example.org>")
        XCTAssertEqual(d.send("RCPT TO:<x@elsewhere.example>"), ["550 5.3.5"])
    }

    func testRejectedAfterData() {
        var d = submission()
        d.deliveryVerdict = .rejected(SMTPReply(553, "5.7.1", "From: not yours"))
        _ = d.send("EHLO c"); _ = d.send("AUTH PLAIN ="); _ = d.send("MAIL FROM:<alice@example.org>")
        _ = d.send("RCPT TO:<bob@example.org>"); _ = d.send("DATA")
        XCTAssertEqual(d.dataEnds(ReceivedMessage(size: 5)), ["553 5.7.1"])
        XCTAssertEqual(d.send("MAIL FROM:<alice@example.org>"), ["250 2.1.0"], "the session goes on")
    }
}
