// Content-Type / Content-Disposition values (RFC 2045 §5.1, RFC 2183) and RFC 2231 parameters.

import FacteurMIME
import XCTest

final class ContentTypeTests: XCTestCase {
    func testSimpleAndCaseKept() throws {
        let ct = try XCTUnwrap(ContentType(parsing: "Text/HTML; Charset=\"UTF-8\""))
        XCTAssertEqual(ct.type, "Text")
        XCTAssertEqual(ct.subtype, "HTML")
        XCTAssertEqual(ct.mimeType, "text/html")
        XCTAssertTrue(ct.hasType("text", "html"))
        XCTAssertEqual(ct.parameters, [MIMEParameter(name: "Charset", value: "UTF-8")])
        XCTAssertEqual(ct.parameter("charset"), "UTF-8")
    }

    func testCommentsSpacesAndQuotedPairs() throws {
        // RFC 2045 §5.1 allows comments; the value of a quoted-string loses its quotes and backslashes.
        let ct = try XCTUnwrap(ContentType(parsing: "text/plain (Plain text) ; charset = us-ascii (ASCII) ;; name=\"a \\\"b\\\".txt\""))
        XCTAssertEqual(ct.mimeType, "text/plain")
        XCTAssertEqual(ct.parameters, [MIMEParameter(name: "charset", value: "us-ascii"),
                                       MIMEParameter(name: "name", value: "a \"b\".txt")])
    }

    func testLenientValues() throws {
        // Unquoted value with spaces; missing ";" before a parameter on the next (unfolded) line.
        let ct = try XCTUnwrap(ContentType(parsing: "application/pdf; name=my file.pdf"))
        XCTAssertEqual(ct.parameter("name"), "my file.pdf")
        let mp = try XCTUnwrap(ContentType(parsing: "multipart/mixed\tboundary=\"b1\""))
        XCTAssertEqual(mp.parameter("boundary"), "b1")
        // Boundaries keep "=" and other tspecials that real mailers leave unquoted.
        XCTAssertEqual(ContentType(parsing: "multipart/alternative; boundary=----=_NextPart_000_0001")?.parameter("boundary"),
                       "----=_NextPart_000_0001")
        // The first of a repeated parameter wins.
        XCTAssertEqual(ContentType(parsing: "text/plain; charset=utf-8; charset=latin1")?.parameters.count, 1)
        XCTAssertEqual(ContentType(parsing: "text/plain; charset=utf-8; charset=latin1")?.parameter("charset"), "utf-8")
    }

    func testMissingSemicolonBeforeAParameter() throws {
        // RFC 2046 §5.2.3.7's own example lacks a ";": the value is the first word, the broken parameter
        // is dropped (Dovecot's answer), instead of one value swallowing the next parameter.
        let ct = try XCTUnwrap(ContentType(parsing: "message/external-body; access-type=mail-server server=\"listserv@bogus.bitnet\"; x=1"))
        XCTAssertEqual(ct.parameter("access-type"), "mail-server")
        XCTAssertNil(ct.parameter("server"))
        XCTAssertEqual(ct.parameter("x"), "1")
    }

    func testInvalidTypes() {
        XCTAssertNil(ContentType(parsing: ""))
        XCTAssertNil(ContentType(parsing: "text"))
        XCTAssertNil(ContentType(parsing: "text/"))
        XCTAssertNil(ContentType(parsing: "/plain"))
    }

    /// RFC 2231 §3: parameter value continuations.
    func testRFC2231Section3Continuations() throws {
        let ct = try XCTUnwrap(ContentType(parsing: """
            message/external-body; access-type=URL;
                     URL*0="ftp://";
                     URL*1="cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar"
            """))
        XCTAssertEqual(ct.parameters, [MIMEParameter(name: "access-type", value: "URL"),
                                       MIMEParameter(name: "URL", value: "ftp://cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar")])
    }

    /// RFC 2231 §4: charset and language.
    func testRFC2231Section4CharsetAndLanguage() throws {
        let ct = try XCTUnwrap(ContentType(parsing: "application/x-stuff;\r\n title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A"))
        XCTAssertEqual(ct.parameters, [MIMEParameter(name: "title", value: "This is ***fun***")])
    }

    /// RFC 2231 §4.1: continuations mixing encoded and plain sections.
    func testRFC2231Section4_1Combined() throws {
        let ct = try XCTUnwrap(ContentType(parsing: """
            application/x-stuff;
             title*0*=us-ascii'en'This%20is%20even%20more%20;
             title*1*=%2A%2A%2Afun%2A%2A%2A%20;
             title*2="isn't it!"
            """))
        XCTAssertEqual(ct.parameter("title"), "This is even more ***fun*** isn't it!")
    }

    func testRFC2231CharsetsOrderAndPrecedence() throws {
        XCTAssertEqual(ContentDisposition(parsing: "attachment; filename*=UTF-8''%E2%82%AC%20rates.pdf")?.parameter("filename"),
                       "€ rates.pdf")
        XCTAssertEqual(ContentDisposition(parsing: "attachment; filename*=iso-8859-1'fr'caf%E9.txt")?.parameter("filename"),
                       "café.txt")
        // Sections out of order are put in order; the RFC 2231 form wins over a plain one.
        XCTAssertEqual(ContentType(parsing: "text/plain; name*1=\"b\"; name=\"old\"; name*0=\"a\"")?.parameter("name"), "ab")
        // A gap ends the value; a multi-byte character split across encoded sections comes out whole.
        XCTAssertEqual(ContentType(parsing: "text/plain; n*0=a; n*2=c")?.parameter("n"), "a")
        XCTAssertEqual(ContentType(parsing: "text/plain; n*0*=utf-8''%E2%82; n*1*=%AC")?.parameter("n"), "€")
        // Absurd section numbers are refused rather than allocated.
        XCTAssertNil(ContentType(parsing: "text/plain; n*99999999=x")?.parameter("n"))
    }

    func testDisposition() throws {
        let d = try XCTUnwrap(ContentDisposition(parsing: "attachment; filename=\"a.pdf\"; size=12"))
        XCTAssertEqual(d.type, "attachment")
        XCTAssertEqual(d.parameters, [MIMEParameter(name: "filename", value: "a.pdf"), MIMEParameter(name: "size", value: "12")])
        XCTAssertNil(ContentDisposition(parsing: "; filename=x"))
        XCTAssertEqual(ContentDisposition(parsing: "INLINE")?.type, "INLINE")
    }

    func testParameterCountIsCapped() {
        let many = (0..<500).map { "p\($0)=v" }.joined(separator: "; ")
        XCTAssertEqual(ContentType(parsing: "text/plain; " + many)?.parameters.count, MIMELimits.maxParameters)
    }
}
