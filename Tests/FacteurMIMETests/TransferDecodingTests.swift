// RFC 2045 §6.7 quoted-printable and §6.8 base64, and RFC 2047 §4.2 "Q".

import FacteurMIME
import XCTest

final class TransferDecodingTests: XCTestCase {
    func b(_ s: String) -> [UInt8] { Array(s.utf8) }

    func testBase64() {
        XCTAssertEqual(TransferDecoding.base64(b("SGVsbG8sIFdvcmxkIQ==")), b("Hello, World!"))
        // Line breaks, spaces and characters outside the alphabet are ignored (RFC 2045 §6.8).
        XCTAssertEqual(TransferDecoding.base64(b("SGVs\r\nbG8s IFdv*cmxk\tIQ==\r\n")), b("Hello, World!"))
        // Missing padding still decodes the complete bytes.
        XCTAssertEqual(TransferDecoding.base64(b("SGVsbG8")), b("Hello"))
        // Two encoded blobs glued together.
        XCTAssertEqual(TransferDecoding.base64(b("QQ==Qg==")), b("AB"))
        XCTAssertEqual(TransferDecoding.base64(b("")), [])
        XCTAssertEqual(TransferDecoding.base64(b("====")), [])
        XCTAssertEqual(TransferDecoding.base64(b("/+8=")), [0xFF, 0xEF])
    }

    func testQuotedPrintable() {
        // RFC 2045 §6.7 rule 5 (soft line breaks) and rule 1 (=XX).
        XCTAssertEqual(TransferDecoding.quotedPrintable(b("Now's the time =\r\nfor all folk to come=\r\n to the aid of their country.")),
                       b("Now's the time for all folk to come to the aid of their country."))
        XCTAssertEqual(TransferDecoding.quotedPrintable(b("caf=C3=A9 caf=c3=a9")), b("café café"))
        // Rule 3: trailing whitespace on a line is deleted; a soft break may be followed by padding.
        XCTAssertEqual(TransferDecoding.quotedPrintable(b("a  \r\nb=  \r\nc\t\nd")), b("a\r\nbc\nd"))
        // A "=" that starts neither a hex pair nor a soft break is kept.
        XCTAssertEqual(TransferDecoding.quotedPrintable(b("1=2 =G0 end=")), b("1=2 =G0 end"))
        XCTAssertEqual(TransferDecoding.quotedPrintable(b("a=\nb")), b("ab"))
        XCTAssertEqual(TransferDecoding.quotedPrintable(b("x=3")), b("x=3"))
    }

    func testQEncoding() {
        XCTAssertEqual(TransferDecoding.qEncoding(b("a_b=5Fc")), b("a b_c"))
    }

    func testDecodeByName() {
        XCTAssertEqual(TransferDecoding.decode(b("SGk="), encoding: "BASE64"), b("Hi"))
        XCTAssertEqual(TransferDecoding.decode(b("H=69"), encoding: " Quoted-Printable "), b("Hi"))
        XCTAssertEqual(TransferDecoding.decode(b("H=69"), encoding: "8bit"), b("H=69"))
        XCTAssertEqual(TransferDecoding.decode(b("H=69"), encoding: "x-uuencode"), b("H=69"))
    }
}
