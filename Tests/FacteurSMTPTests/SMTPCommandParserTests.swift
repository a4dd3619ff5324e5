@testable import FacteurSMTP
import XCTest

final class SMTPCommandParserTests: XCTestCase {
    private func parse(_ line: String) -> Result<SMTPCommand, SMTPReply> {
        SMTPCommandParser.parse(Array(line.utf8))
    }

    private func command(_ line: String, file: StaticString = #filePath, line number: UInt = #line) -> SMTPCommand? {
        switch parse(line) {
        case .success(let command): return command
        case .failure(let reply): XCTFail("\(line) → \(reply)", file: file, line: number); return nil
        }
    }

    private func replyCode(_ line: String) -> ReplyCode? {
        if case .failure(let reply) = parse(line) { return ReplyCode(reply.code, reply.enhanced) }
        return nil
    }

    func testGreetingsAreCaseInsensitive() {
        XCTAssertEqual(command("EHLO mail.example.org"), .ehlo("mail.example.org"))
        XCTAssertEqual(command("ehlo [192.0.2.1]"), .ehlo("[192.0.2.1]"))
        XCTAssertEqual(command("Helo host"), .helo("host"))
        XCTAssertEqual(replyCode("EHLO")?.code, 501)
    }

    func testMailFrom() {
        XCTAssertEqual(command("MAIL FROM:<alice@example.org>"),
                       .mail(from: SMTPMailbox(localPart: "alice", domain: "example.org"), parameters: .init()))
        XCTAssertEqual(command("mail from:<>"), .mail(from: nil, parameters: .init()))
        // Lenient forms real clients send.
        XCTAssertEqual(command("MAIL FROM: <alice@example.org>"),
                       .mail(from: SMTPMailbox(localPart: "alice", domain: "example.org"), parameters: .init()))
        XCTAssertEqual(command("MAIL FROM:alice@example.org"),
                       .mail(from: SMTPMailbox(localPart: "alice", domain: "example.org"), parameters: .init()))
        // Source routes are ignored (RFC 5321 §4.1.1.3 / Appendix C).
        XCTAssertEqual(command("MAIL FROM:<@relay.example,@other.example:alice@example.org>"),
                       .mail(from: SMTPMailbox(localPart: "alice", domain: "example.org"), parameters: .init()))
    }

    func testParameters() {
        guard case .mail(_, let parameters)? = command("MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME SMTPUTF8") else {
            return XCTFail("not a MAIL command")
        }
        XCTAssertEqual(parameters["SIZE"], .some("1000"))
        XCTAssertEqual(parameters["BODY"], .some("8BITMIME"))
        XCTAssertEqual(parameters["SMTPUTF8"], .some(nil))
        XCTAssertEqual(replyCode("MAIL FROM:<a@b.example> SIZE="), ReplyCode(501, "5.5.4"))
        XCTAssertEqual(replyCode("MAIL FROM:<a@b.example> =1"), ReplyCode(501, "5.5.4"))
    }

    func testQuotedLocalPartAndUTF8() {
        XCTAssertEqual(command("RCPT TO:<\"john doe\"@example.org>"),
                       .rcpt(to: SMTPMailbox(localPart: "john doe", domain: "example.org"), parameters: .init()))
        XCTAssertEqual(SMTPMailbox(localPart: "john doe", domain: "example.org").description, "\"john doe\"@example.org")
        XCTAssertEqual(command("RCPT TO:<\"a\\\"b\"@example.org>"),
                       .rcpt(to: SMTPMailbox(localPart: "a\"b", domain: "example.org"), parameters: .init()))
        XCTAssertEqual(command("RCPT TO:<jöran@bücher.example>"),
                       .rcpt(to: SMTPMailbox(localPart: "jöran", domain: "bücher.example"), parameters: .init()))
    }

    func testBarePostmaster() {
        XCTAssertEqual(command("RCPT TO:<Postmaster>"),
                       .rcpt(to: SMTPMailbox(localPart: "postmaster", domain: ""), parameters: .init()))
    }

    func testBadAddresses() {
        XCTAssertEqual(replyCode("RCPT TO:<>")?.code, 501)
        XCTAssertEqual(replyCode("RCPT TO:<no-at-sign>")?.code, 501)
        XCTAssertEqual(replyCode("RCPT TO:<a..b@example.org>")?.code, 501)
        XCTAssertEqual(replyCode("RCPT TO:<a@-example.org>")?.code, 501)
        XCTAssertEqual(replyCode("RCPT TO:<a@example..org>")?.code, 501)
        XCTAssertEqual(replyCode("RCPT TO:<a@example.org")?.code, 501)
        XCTAssertEqual(replyCode("RCPT TO:<a@example.org>junk")?.code, 501)
        XCTAssertEqual(replyCode("MAIL FROM<a@example.org>")?.code, 501)
        XCTAssertEqual(replyCode("RCPT <a@example.org>")?.code, 501)
        // Invalid UTF-8 is never taken for an address.
        XCTAssertEqual(SMTPCommandParser.parse(Array("RCPT TO:<a".utf8) + [0xFF, 0xFE] + Array("@example.org>".utf8)).failureCode, 501)
    }

    func testAddressLiteralDomain() {
        XCTAssertEqual(command("RCPT TO:<a@[192.0.2.1]>"),
                       .rcpt(to: SMTPMailbox(localPart: "a", domain: "[192.0.2.1]"), parameters: .init()))
    }

    func testBDAT() {
        XCTAssertEqual(command("BDAT 1000"), .bdat(size: 1000, last: false))
        XCTAssertEqual(command("bdat 0 last"), .bdat(size: 0, last: true))
        XCTAssertEqual(replyCode("BDAT")?.code, 501)
        XCTAssertEqual(replyCode("BDAT -1")?.code, 501)
        XCTAssertEqual(replyCode("BDAT 10 FIRST")?.code, 501)
        XCTAssertEqual(replyCode("BDAT 99999999999999999999999")?.code, 501)
    }

    func testSimpleCommands() {
        XCTAssertEqual(command("DATA"), .data)
        XCTAssertEqual(command("RSET"), .rset)
        XCTAssertEqual(command("NOOP"), .noop)
        XCTAssertEqual(command("NOOP anything"), .noop)
        XCTAssertEqual(command("QUIT"), .quit)
        XCTAssertEqual(command("STARTTLS"), .startTLS)
        XCTAssertEqual(command("VRFY alice"), .vrfy("alice"))
        XCTAssertEqual(command("HELP"), .help(nil))
        XCTAssertEqual(command("AUTH PLAIN AGFAYg=="), .auth(mechanism: "PLAIN", initialResponse: "AGFAYg=="))
        XCTAssertEqual(replyCode("DATA now")?.code, 501)
        XCTAssertEqual(replyCode("QUIT now")?.code, 501)
        XCTAssertEqual(replyCode("STARTTLS x")?.code, 501)
        XCTAssertEqual(replyCode("XYZZY")?.code, 500)
        XCTAssertEqual(replyCode("")?.code, 500)
        XCTAssertEqual(SMTPCommandParser.parse(Array("NOOP\u{0}".utf8)).failureCode, 500)
    }

    func testReplyEncoding() {
        XCTAssertEqual(String(decoding: SMTPReply(250, "2.0.0", "Ok").encoded, as: UTF8.self), "250 2.0.0 Ok\r\n")
        XCTAssertEqual(String(decoding: SMTPReply(250, nil, ["a", "b", "c"]).encoded, as: UTF8.self), "250-a\r\n250-b\r\n250 c\r\n")
    }
}

extension Result where Success == SMTPCommand, Failure == SMTPReply {
    var failureCode: Int? {
        if case .failure(let reply) = self { return reply.code }
        return nil
    }
}

struct ReplyCode: Equatable {
    var code: Int
    var enhanced: String?
    init(_ code: Int, _ enhanced: String?) { self.code = code; self.enhanced = enhanced }
    var first: Int { code }
}
