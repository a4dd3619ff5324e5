// The POP3 session state machine, as transcripts: RFC 1939 §4–§7 states and commands, RFC 2449
// CAPA and response codes, RFC 2595 STLS, RFC 5034 AUTH.

@testable import FacteurIdentity
import XCTest
@testable import FacteurPOP3

final class POP3SessionTests: XCTestCase {
    static let drop = Maildrop(accountID: 1, mailboxID: 10, messages: [
        MaildropMessage(id: 101, uid: 5, size: 120, uniqueID: "7-5"),
        MaildropMessage(id: 102, uid: 6, size: 200, uniqueID: "7-6"),
        MaildropMessage(id: 103, uid: 9, size: 30, uniqueID: "7-9"),
    ])

    static let success = AuthSuccess(authcid: "alice@example.org", authzid: nil, mechanism: .plain, finalData: nil, upgradedCredentials: nil)

    private func session(tls: Bool = false, loopback: Bool = false, maxErrors: Int = 20) -> POP3Session {
        POP3Session(configuration: POP3SessionConfiguration(hostname: "mail.example.org", implicitTLS: tls, maxErrors: maxErrors),
                    plaintextAllowedInClear: loopback)
    }

    private func send(_ session: inout POP3Session, _ line: String) -> [POP3Action] {
        session.receive(line: Array(line.utf8))
    }

    /// The text of the single reply in `actions`.
    private func reply(_ actions: [POP3Action], file: StaticString = #filePath, line: UInt = #line) -> String {
        let replies = actions.compactMap { action -> String? in
            if case .reply(let response) = action { return response.encoded } else { return nil }
        }
        XCTAssertEqual(replies.count, 1, "\(actions)", file: file, line: line)
        return replies.first ?? ""
    }

    /// A session logged in on `drop` through USER/PASS.
    private func loggedIn() -> POP3Session {
        var s = session(tls: true)
        _ = s.start()
        XCTAssertEqual(reply(send(&s, "USER alice@example.org")), "+OK Send your password\r\n")
        XCTAssertEqual(send(&s, "PASS secret"), [.authenticate(.start(mechanism: "PLAIN", initialResponse: Array("\0alice@example.org\0secret".utf8)))])
        XCTAssertEqual(s.authProgressed(.success(Self.success)), [.openMaildrop(account: "alice@example.org")])
        XCTAssertEqual(reply(s.maildropOpened(.opened(Self.drop))), "+OK Logged in, 3 messages (350 octets)\r\n")
        return s
    }

    func testGreetingHasNoAPOPTimestamp() {
        var s = session()
        XCTAssertEqual(reply(s.start()), "+OK Facteur POP3 server ready\r\n")
    }

    func testStatListUidl() {
        var s = loggedIn()
        XCTAssertEqual(reply(send(&s, "STAT")), "+OK 3 350\r\n")
        XCTAssertEqual(reply(send(&s, "LIST")), "+OK 3 messages (350 octets)\r\n1 120\r\n2 200\r\n3 30\r\n.\r\n")
        XCTAssertEqual(reply(send(&s, "LIST 2")), "+OK 2 200\r\n")
        XCTAssertEqual(reply(send(&s, "LIST 4")), "-ERR No such message, only 3 messages in maildrop\r\n")
        XCTAssertEqual(reply(send(&s, "UIDL")), "+OK\r\n1 7-5\r\n2 7-6\r\n3 7-9\r\n.\r\n")
        XCTAssertEqual(reply(send(&s, "UIDL 3")), "+OK 3 7-9\r\n")
        XCTAssertEqual(reply(send(&s, "NOOP")), "+OK\r\n")
    }

    func testRetrAndTopAskTheAdapterToStream() {
        var s = loggedIn()
        XCTAssertEqual(send(&s, "RETR 2"), [.retrieve(Self.drop.messages[1], topLines: nil, okText: "200 octets")])
        XCTAssertEqual(send(&s, "NOOP"), [], "no command runs while a message streams")
        XCTAssertEqual(s.retrieved(), [])
        XCTAssertEqual(send(&s, "TOP 1 5"), [.retrieve(Self.drop.messages[0], topLines: 5, okText: "Top of message follows")])
        _ = s.retrieved()
        XCTAssertEqual(reply(send(&s, "RETR 9")), "-ERR No such message, only 3 messages in maildrop\r\n")
    }

    func testDeleHidesUntilRsetAndQuitExpunges() {
        var s = loggedIn()
        XCTAssertEqual(reply(send(&s, "DELE 1")), "+OK Message 1 deleted\r\n")
        XCTAssertEqual(reply(send(&s, "DELE 1")), "-ERR Message 1 already deleted\r\n")
        XCTAssertEqual(reply(send(&s, "RETR 1")), "-ERR Message 1 already deleted\r\n")
        XCTAssertEqual(reply(send(&s, "STAT")), "+OK 2 230\r\n")
        XCTAssertEqual(reply(send(&s, "LIST")), "+OK 2 messages (230 octets)\r\n2 200\r\n3 30\r\n.\r\n")
        XCTAssertEqual(reply(send(&s, "UIDL")), "+OK\r\n2 7-6\r\n3 7-9\r\n.\r\n")
        // RSET after DELE: everything is back.
        XCTAssertEqual(reply(send(&s, "RSET")), "+OK Maildrop has 3 messages (350 octets)\r\n")
        XCTAssertEqual(reply(send(&s, "STAT")), "+OK 3 350\r\n")
        XCTAssertEqual(reply(send(&s, "LIST 1")), "+OK 1 120\r\n")
        // Message numbers never change in a session.
        _ = send(&s, "DELE 3")
        _ = send(&s, "DELE 1")
        XCTAssertEqual(reply(send(&s, "LIST 2")), "+OK 2 200\r\n")
        XCTAssertEqual(send(&s, "QUIT"), [.expunge(Self.drop, uids: [5, 9])])
        XCTAssertEqual(s.expunged(true), [.reply(.ok("mail.example.org signing off (1 messages left)")), .close])
        XCTAssertTrue(s.isClosed)
    }

    func testQuitWithoutDeletionsDoesNotExpunge() {
        var s = loggedIn()
        XCTAssertEqual(send(&s, "QUIT"), [.reply(.ok("mail.example.org signing off (3 messages left)")), .close])
    }

    func testFailedExpungeSaysSo() {
        var s = loggedIn()
        _ = send(&s, "DELE 2")
        _ = send(&s, "QUIT")
        XCTAssertEqual(s.expunged(false), [.reply(.err(.sysTemp, "Some deleted messages not removed")), .close])
    }

    func testQuitFromAuthorizationHasNoUpdate() {
        var s = session(tls: true)
        _ = s.start()
        _ = send(&s, "USER bob")
        XCTAssertEqual(send(&s, "QUIT"), [.reply(.ok("mail.example.org signing off")), .close])
        XCTAssertEqual(send(&s, "STAT"), [], "nothing after QUIT")
    }

    func testTransactionCommandsRefusedBeforeLogin() {
        var s = session(tls: true)
        for command in ["STAT", "LIST", "RETR 1", "DELE 1", "RSET", "TOP 1 1", "UIDL", "NOOP"] {
            XCTAssertEqual(reply(send(&s, command)), "-ERR Command not valid in this state\r\n", command)
        }
        XCTAssertEqual(reply(send(&s, "PASS x")), "-ERR USER first\r\n")
    }

    func testAuthorizationCommandsRefusedAfterLogin() {
        var s = loggedIn()
        for command in ["USER a", "PASS b", "AUTH PLAIN", "STLS"] {
            XCTAssertEqual(reply(send(&s, command)), "-ERR Command not valid in this state\r\n", command)
        }
    }

    func testPasswordsRefusedInTheClearExceptOnLoopback() {
        var s = session()
        XCTAssertEqual(reply(send(&s, "USER a")), "-ERR [AUTH] Plaintext authentication disallowed without TLS; use STLS first\r\n")
        XCTAssertEqual(reply(send(&s, "AUTH PLAIN")), "-ERR [AUTH] Plaintext authentication disallowed without TLS; use STLS first\r\n")
        XCTAssertEqual(send(&s, "AUTH SCRAM-SHA-256"), [.authenticate(.start(mechanism: "SCRAM-SHA-256", initialResponse: nil))])
        var local = session(loopback: true)
        XCTAssertEqual(reply(send(&local, "USER a")), "+OK Send your password\r\n")
    }

    func testCapaDependsOnStateAndTLS() {
        var clear = session()
        let before = reply(send(&clear, "CAPA"))
        XCTAssertTrue(before.hasPrefix("+OK Capability list follows\r\n"))
        for capability in ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER", "LOGIN-DELAY 0",
                           "IMPLEMENTATION Facteur", "STLS", "SASL SCRAM-SHA-256"] {
            XCTAssertTrue(before.contains("\r\n\(capability)\r\n"), capability)
        }
        XCTAssertFalse(before.contains("\r\nUSER\r\n"), "USER is not offered where it would be refused")
        XCTAssertEqual(send(&clear, "STLS"), [.reply(.ok("Begin TLS negotiation")), .startTLS])
        _ = clear.tlsEstablished()
        let after = reply(send(&clear, "CAPA"))
        XCTAssertTrue(after.contains("\r\nUSER\r\n"))
        XCTAssertTrue(after.contains("\r\nSASL SCRAM-SHA-256 PLAIN LOGIN\r\n"))
        XCTAssertFalse(after.contains("STLS"))
        XCTAssertEqual(reply(send(&clear, "STLS")), "-ERR Command not permitted when TLS active\r\n")
        var inside = loggedIn()
        let transaction = reply(send(&inside, "CAPA"))
        XCTAssertFalse(transaction.contains("USER") || transaction.contains("SASL") || transaction.contains("STLS"))
        XCTAssertTrue(transaction.contains("\r\nTOP\r\n"))
    }

    func testSTLSForgetsUser() {
        var s = session(loopback: true)
        _ = send(&s, "USER a")
        _ = send(&s, "STLS")
        _ = s.tlsEstablished()
        XCTAssertEqual(reply(send(&s, "PASS b")), "-ERR USER first\r\n")
    }

    func testSASLExchangeWithChallengesAndCancel() {
        var s = session(tls: true)
        XCTAssertEqual(send(&s, "AUTH LOGIN"), [.authenticate(.start(mechanism: "LOGIN", initialResponse: nil))])
        XCTAssertEqual(reply(s.authProgressed(.challenge(Array("Username:".utf8)))), "+ VXNlcm5hbWU6\r\n")
        XCTAssertTrue(s.expectsSASLResponse)
        XCTAssertEqual(send(&s, "YWxpY2U="), [.authenticate(.respond(Array("alice".utf8)))])
        _ = s.authProgressed(.challenge(Array("Password:".utf8)))
        XCTAssertEqual(send(&s, "not base64!"), [.authenticate(.malformed)])
        XCTAssertEqual(reply(s.authProgressed(.failure(SASLFailure(.malformed)))), "-ERR Malformed authentication exchange\r\n")
        _ = send(&s, "AUTH PLAIN")
        _ = s.authProgressed(.challenge([]))
        XCTAssertEqual(send(&s, "*"), [.authenticate(.cancel)])
        XCTAssertEqual(reply(s.authProgressed(.failure(SASLFailure(.cancelled)))), "-ERR Authentication cancelled\r\n")
        XCTAssertEqual(send(&s, "AUTH PLAIN ="), [.authenticate(.start(mechanism: "PLAIN", initialResponse: []))])
        XCTAssertEqual(s.authProgressed(.success(Self.success)), [.openMaildrop(account: "alice@example.org")])
    }

    func testAuthListsMechanismsAndRefusesUnknown() {
        var s = session(tls: true)
        XCTAssertEqual(reply(send(&s, "AUTH")), "+OK Supported mechanisms follow\r\nSCRAM-SHA-256\r\nPLAIN\r\nLOGIN\r\n.\r\n")
        XCTAssertEqual(reply(send(&s, "AUTH CRAM-MD5")), "-ERR Unrecognized authentication type\r\n")
        XCTAssertEqual(reply(send(&s, "AUTH PLAIN !!!")), "-ERR Invalid base64 in initial response\r\n")
    }

    func testFailedLoginsAndTheirCodes() {
        var s = session(tls: true)
        _ = send(&s, "USER a"); _ = send(&s, "PASS b")
        XCTAssertEqual(reply(s.authProgressed(.failure(SASLFailure(.authenticationFailed)))), "-ERR [AUTH] Authentication failed\r\n")
        XCTAssertEqual(reply(send(&s, "PASS b")), "-ERR USER first\r\n", "a failed PASS forgets USER (RFC 1939 §7)")
        _ = send(&s, "USER a"); _ = send(&s, "PASS b")
        XCTAssertEqual(reply(s.authProgressed(.failure(SASLFailure(.temporarilyUnavailable)))),
                       "-ERR [SYS/TEMP] Authentication temporarily unavailable, try again later\r\n")
        _ = send(&s, "USER a"); _ = send(&s, "PASS b")
        _ = s.authProgressed(.failure(SASLFailure(.authenticationFailed)))
        _ = send(&s, "USER a"); _ = send(&s, "PASS b")
        let last = s.authProgressed(.failure(SASLFailure(.authenticationFailed)))
        XCTAssertEqual(last, [.reply(.err(.auth, "Too many authentication failures")), .close])
    }

    func testMaildropInUseAndUnavailable() {
        var s = session(tls: true)
        _ = send(&s, "USER a"); _ = send(&s, "PASS b")
        _ = s.authProgressed(.success(Self.success))
        XCTAssertEqual(reply(s.maildropOpened(.inUse)), "-ERR [IN-USE] Maildrop already in use by another POP3 session\r\n")
        XCTAssertEqual(reply(send(&s, "STAT")), "-ERR Command not valid in this state\r\n", "back in AUTHORIZATION")
        _ = send(&s, "USER a"); _ = send(&s, "PASS b")
        _ = s.authProgressed(.success(Self.success))
        XCTAssertEqual(reply(s.maildropOpened(.unavailable)), "-ERR [SYS/TEMP] Maildrop unavailable, try again later\r\n")
    }

    func testTooManyErrorsCloses() {
        var s = session(maxErrors: 3)
        _ = send(&s, "BOGUS")
        _ = send(&s, "BOGUS")
        let third = send(&s, "BOGUS")
        XCTAssertEqual(third.last, .close)
        XCTAssertTrue(s.isClosed)
    }

    func testTimeoutAndDrainDeleteNothing() {
        var s = loggedIn()
        _ = send(&s, "DELE 1")
        XCTAssertEqual(s.timedOut(), [.reply(.err(nil, "Autologout; idle for too long")), .close])
        var d = loggedIn()
        _ = send(&d, "DELE 1")
        _ = send(&d, "RETR 2")
        XCTAssertEqual(d.drain(), [], "a retrieval in progress finishes first")
        XCTAssertEqual(d.retrieved(), [.reply(.err(.sysTemp, "Server shutting down, try again later")), .close])
    }

    func testOverlongLineInSASLIsMalformed() {
        var s = session(tls: true)
        _ = send(&s, "AUTH PLAIN")
        _ = s.authProgressed(.challenge([]))
        XCTAssertEqual(s.lineTooLong(), [.authenticate(.malformed)])
        var other = session()
        XCTAssertEqual(reply(other.lineTooLong()), "-ERR Line too long\r\n")
    }
}
