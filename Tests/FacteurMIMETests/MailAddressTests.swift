// RFC 5322 §3.4 addresses, the examples of Appendix A, obsolete forms, RFC 6532 UTF-8, and the
// ENVELOPE form (RFC 3501 §7.4.2) as Dovecot sends it.

import FacteurMIME
import XCTest

final class MailAddressTests: XCTestCase {
    func mailbox(_ name: String?, _ local: String, _ domain: String?) -> MailAddress {
        MailAddress(displayName: name, localPart: local, domain: domain)
    }

    func list(_ s: String) -> [AddressListElement] { AddressList(parsing: s).elements }

    /// Compares what matters of each mailbox (names, local part, domain, route).
    func assertMailboxes(_ got: [MailAddress], _ want: [(String?, String, String?)], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.map(\.displayName), want.map(\.0), file: file, line: line)
        XCTAssertEqual(got.map(\.localPart), want.map(\.1), file: file, line: line)
        XCTAssertEqual(got.map(\.domain), want.map(\.2), file: file, line: line)
    }

    /// RFC 5322 A.1.1 and A.1.2.
    func testAppendixA1() {
        assertMailboxes(AddressList(parsing: "John Doe <jdoe@machine.example>").mailboxes, [("John Doe", "jdoe", "machine.example")])
        assertMailboxes(AddressList(parsing: "\"Joe Q. Public\" <john.q.public@example.com>").mailboxes,
                        [("Joe Q. Public", "john.q.public", "example.com")])
        assertMailboxes(AddressList(parsing: "Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>").mailboxes,
                        [("Mary Smith", "mary", "x.test"), (nil, "jdoe", "example.org"), ("Who?", "one", "y.test")])
        assertMailboxes(AddressList(parsing: "<boss@nil.test>, \"Giant; \\\"Big\\\" Box\" <sysservices@example.net>").mailboxes,
                        [(nil, "boss", "nil.test"), ("Giant; \"Big\" Box", "sysservices", "example.net")])
    }

    /// RFC 5322 A.1.3: groups.
    func testAppendixA1_3Groups() {
        let to = list("A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;")
        XCTAssertEqual(to.count, 1)
        guard case .group(let g)? = to.first else { return XCTFail("not a group") }
        XCTAssertEqual(g.name, "A Group")
        assertMailboxes(g.members, [("Ed Jones", "c", "a.test"), (nil, "joe", "where.test"), ("John", "jdoe", "one.test")])
        XCTAssertEqual(list("Undisclosed recipients:;"), [.group(MailGroup(name: "Undisclosed recipients", members: []))])
    }

    /// RFC 5322 A.5: white space and comments everywhere.
    func testAppendixA5Comments() {
        let from = AddressList(parsing: "Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>").mailboxes
        assertMailboxes(from, [("Pete", "pete", "silly.test")])
        let to = list("A Group(Some people)\r\n     :Chris Jones <c@(Chris's host.)public.example>,\r\n         joe@example.org,\r\n  John <jdoe@one.test> (my dear friend); (the end of the group)")
        guard case .group(let g)? = to.first, to.count == 1 else { return XCTFail("not one group: \(to)") }
        XCTAssertEqual(g.name, "A Group")
        assertMailboxes(g.members, [("Chris Jones", "c", "public.example"), (nil, "joe", "example.org"), ("John", "jdoe", "one.test")])
        XCTAssertEqual(g.members[2].comment, "my dear friend")
        XCTAssertEqual(list("(Empty list)(start)Hidden recipients  :(nobody(that I know))  ;"),
                       [.group(MailGroup(name: "Hidden recipients", members: []))])
    }

    /// RFC 5322 A.6.1 and A.6.3: obsolete routes, empty elements, CFWS around dots.
    func testAppendixA6Obsolete() {
        let to = AddressList(parsing: "Mary Smith <@node.test:mary@example.net>, , jdoe@test  . example").mailboxes
        assertMailboxes(to, [("Mary Smith", "mary", "example.net"), (nil, "jdoe", "test.example")])
        XCTAssertEqual(to[0].route, "@node.test")
        XCTAssertEqual(AddressList(parsing: "<@a.test,@b.test:x@c.test>").mailboxes.first?.route, "@a.test,@b.test")
        assertMailboxes(AddressList(parsing: "John Doe <jdoe@machine(comment).  example>").mailboxes, [("John Doe", "jdoe", "machine.example")])
        assertMailboxes(AddressList(parsing: "Mary Smith\r\n  \r\n <mary@example.net>").mailboxes, [("Mary Smith", "mary", "example.net")])
        // obs-local-part: words and quoted strings with dots between them.
        assertMailboxes(AddressList(parsing: "\"john doe\".x @ example.com").mailboxes, [(nil, "john doe.x", "example.com")])
    }

    func testQuotedLocalPartAndAddressForm() {
        let m = AddressList(parsing: "\"a b\\\"c\"@example.com").mailboxes
        assertMailboxes(m, [(nil, "a b\"c", "example.com")])
        XCTAssertEqual(m.first?.address, "\"a b\\\"c\"@example.com")
        XCTAssertEqual(MailAddress(parsing: "x.y@example.com")?.address, "x.y@example.com")
        XCTAssertEqual(MailAddress(parsing: "[127.0.0.1]")?.domain, nil)
        XCTAssertEqual(MailAddress(parsing: "a@[127.0.0.1]")?.domain, "[127.0.0.1]")
    }

    /// RFC 6532: UTF-8 in names, local parts and domains.
    func testUTF8() {
        assertMailboxes(AddressList(parsing: "Jörg Müller <jörg@bücher.example>, \"山田\" <山田@例え.jp>").mailboxes,
                        [("Jörg Müller", "jörg", "bücher.example"), ("山田", "山田", "例え.jp")])
    }

    /// RFC 2047 words in display names are decoded; the raw form keeps them for IMAP.
    func testEncodedWordDisplayNames() {
        let m = AddressList(parsing: "=?utf-8?Q?Andr=C3=A9?= Pirard <ap@example.be>, =?utf-8?Q?Doe,_John?= <jd@example.com>").mailboxes
        assertMailboxes(m, [("André Pirard", "ap", "example.be"), ("Doe, John", "jd", "example.com")])
        XCTAssertEqual(m[0].rawDisplayName, "=?utf-8?Q?Andr=C3=A9?= Pirard")
        XCTAssertEqual(m[0].envelopeAddress,
                       EnvelopeAddress(name: "=?utf-8?Q?Andr=C3=A9?= Pirard", adl: nil, mailbox: "ap", host: "example.be"))
        // Mailers quote encoded words although RFC 2047 §5 says not to; readers decode them anyway.
        XCTAssertEqual(MailAddress(parsing: "\"=?utf-8?B?w6l0w6k=?=\" <e@example.com>")?.displayName, "été")
    }

    /// What IMAP servers (Dovecot) put in ENVELOPE for broken addresses.
    func testEnvelopeFormOfOddAddresses() {
        XCTAssertEqual(AddressList(parsing: "john@example.com (John Doe)").envelopeAddresses,
                       [EnvelopeAddress(name: "John Doe", adl: nil, mailbox: "john", host: "example.com")])
        // One bare word is a local mailbox name (UW-IMAP's convention, Dovecot's answer for `From: Whomever`);
        // several words are a name without an address.
        XCTAssertEqual(AddressList(parsing: "undisclosed-recipients").envelopeAddresses,
                       [EnvelopeAddress(name: nil, adl: nil, mailbox: "undisclosed-recipients", host: "MISSING_DOMAIN")])
        XCTAssertEqual(AddressList(parsing: "John Doe").envelopeAddresses,
                       [EnvelopeAddress(name: "John Doe", adl: nil, mailbox: "MISSING_MAILBOX", host: "MISSING_DOMAIN")])
        XCTAssertEqual(AddressList(parsing: "Joe <joe>").envelopeAddresses,
                       [EnvelopeAddress(name: "Joe", adl: nil, mailbox: "joe", host: "MISSING_DOMAIN")])
        XCTAssertEqual(AddressList(parsing: "Team: a@b.example;, c@d.example").envelopeAddresses, [
            EnvelopeAddress(name: nil, adl: nil, mailbox: "Team", host: nil),
            EnvelopeAddress(name: nil, adl: nil, mailbox: "a", host: "b.example"),
            EnvelopeAddress(),
            EnvelopeAddress(name: nil, adl: nil, mailbox: "c", host: "d.example"),
        ])
        XCTAssertEqual(AddressList(parsing: "Mary <@node.test:mary@example.net>").envelopeAddresses,
                       [EnvelopeAddress(name: "Mary", adl: "@node.test", mailbox: "mary", host: "example.net")])
    }

    func testGarbageIsSkippedToTheNextComma() {
        let l = AddressList(parsing: "a@b.example >>> junk <<, c@d.example, , ;;; ,e@f.example")
        XCTAssertEqual(l.mailboxes.map(\.address), ["a@b.example", "c@d.example", "e@f.example"])
        XCTAssertFalse(l.defects.isEmpty)
        XCTAssertEqual(AddressList(parsing: "").elements, [])
        XCTAssertEqual(AddressList(parsing: "   (just a comment)  ").elements, [])
        // Unclosed quote, comment and angle bracket: the parse ends, it does not fail.
        XCTAssertEqual(AddressList(parsing: "\"unclosed <a@b.example>").mailboxes.map(\.rawDisplayName), ["unclosed <a@b.example>"])
        XCTAssertEqual(AddressList(parsing: "x@y.example (unclosed").mailboxes.map(\.address), ["x@y.example"])
        XCTAssertEqual(AddressList(parsing: "Name <a@b.example").mailboxes.map(\.address), ["a@b.example"])
    }

    func testAddressCountIsCapped() {
        let many = Array(repeating: "a@b.example", count: MIMELimits.maxAddresses + 50).joined(separator: ",")
        XCTAssertEqual(AddressList(parsing: many).mailboxes.count, MIMELimits.maxAddresses)
    }
}
