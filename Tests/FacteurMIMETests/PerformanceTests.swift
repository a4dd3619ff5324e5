// How long MessageSummary(parsing:) takes on a typical 10 KB message. Prints a figure; asserts none
// (timings depend on the machine and the build; run with `-c release` for the number that matters).

import FacteurMIME
import Foundation
import XCTest

final class PerformanceTests: XCTestCase {
    /// A message as mail arrives today: a long trace header, multipart/alternative text and HTML,
    /// and a small base64 attachment; about 10 KB with CRLF line ends.
    static func typicalMessage() -> [UInt8] {
        var h = ""
        for i in 0..<6 {
            h += "Received: from mx\(i).example.net (mx\(i).example.net [192.0.2.\(i)])\r\n\tby mail.example.com (Facteur) with ESMTPS id abc\(i)def\r\n\tfor <bob@example.com>; Mon, 2 Jan 2006 15:04:0\(i) -0700\r\n"
        }
        h += """
            DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.net; s=sel;\r
            \th=from:to:subject:date:message-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r
            \tb=dzdVyOfAKCdLXdJOc9G2q8LoXSlEniSbav+yuU4zGeeruD00lszZVoG4ZHRNiYzR\r
            From: "Alice Example" <alice@example.net>\r
            To: Bob <bob@example.com>, =?utf-8?Q?J=C3=B6rg?= <jorg@example.com>\r
            Cc: team: carol@example.org, dave@example.org;\r
            Subject: =?utf-8?B?UXVhcnRlcmx5IHJlcG9ydCDigJMgZHJhZnQ=?=\r
            Date: Mon, 2 Jan 2006 15:04:05 -0700\r
            Message-ID: <20060102150405.12345@example.net>\r
            MIME-Version: 1.0\r
            Content-Type: multipart/mixed; boundary="mixed-boundary-0123456789"\r
            \r
            This is a multi-part message in MIME format.\r
            --mixed-boundary-0123456789\r
            Content-Type: multipart/alternative; boundary="alt-boundary-0123456789"\r
            \r
            --alt-boundary-0123456789\r
            Content-Type: text/plain; charset=utf-8; format=flowed\r
            Content-Transfer-Encoding: quoted-printable\r
            \r

            """
        var text = ""
        for i in 0..<40 { text += "Line \(i) of the plain text version of the report, with a few words =C3=A9.\r\n" }
        h += text
        h += "--alt-boundary-0123456789\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        for i in 0..<40 { h += "<p>Line \(i) of the <b>HTML</b> version of the report.</p>\r\n" }
        h += "--alt-boundary-0123456789--\r\n--mixed-boundary-0123456789\r\n"
        h += "Content-Type: application/pdf; name=\"report.pdf\"\r\nContent-Disposition: attachment; filename*=utf-8''r%C3%A9port.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        for _ in 0..<30 { h += "JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFIvRmlsdGVyIC9GbGF0ZURlY29k\r\n" }
        h += "--mixed-boundary-0123456789--\r\n"
        return Array(h.utf8)
    }

    func testParseTypicalMessage() {
        let message = Self.typicalMessage()
        XCTAssertGreaterThan(message.count, 9_000)
        XCTAssertLessThan(message.count, 12_000)
        let s = MessageSummary(parsing: message)
        XCTAssertEqual(CorpusTests.shape(s.body).description,
                       "multipart/mixed[multipart/alternative[text/plain, text/html], application/pdf]")
        XCTAssertEqual(s.defects, [])

        var checksum = 0
        let iterations = 2_000
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<iterations {
            checksum &+= MessageSummary(parsing: message).body.bodyLength
        }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1_000
        XCTAssertEqual(checksum, iterations * s.body.bodyLength)
        let line = String(format: "MessageSummary(parsing:) of a %d-byte message: %.1f µs per parse (%d parses)\n",
                          message.count, elapsed / Double(iterations), iterations)
        FileHandle.standardOutput.write(Data(line.utf8))
    }
}
