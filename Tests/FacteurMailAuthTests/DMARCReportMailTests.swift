// The report mail (RFC 7489 §7.2.1.1) and the containers reports arrive in: compose → extract → parse
// round trips, gzip members and truncation, zip stored/deflate entries, and zip/gzip bombs.

@testable import FacteurMailAuth
import FacteurMIME
import Foundation
import XCTest

final class DMARCReportMailTests: XCTestCase {
    let date = Date(timeIntervalSince1970: 1_700_100_000)  // Thu, 16 Nov 2023 02:00:00 UTC

    func compose(_ report: DMARCAggregateReport, format: DMARCAggregateReport.Format = .rfc7489) -> [UInt8] {
        DMARCReportMail.compose(report: report, reporterDomain: "mx.example.net", from: "DMARC <dmarc-reports@example.net>",
                                to: ["rua@example.com", "dmarc@thirdparty.example"], date: date,
                                messageID: "dmarc.1700000000@mx.example.net", format: format)
    }

    func testComposeFollowsRFC7489Section7211() throws {
        let report = DMARCReportSamples.rfc7489Complete()
        let message = compose(report)
        let text = String(decoding: message, as: UTF8.self)

        // CRLF everywhere: every LF is preceded by CR.
        for (i, byte) in message.enumerated() where byte == 0x0A {
            XCTAssertEqual(i > 0 ? message[i - 1] : 0, 0x0D, "bare LF at \(i)")
        }
        let header = MessageHeader(parsing: message)
        XCTAssertEqual(header["Subject"], "Report Domain: example.com Submitter: mx.example.net Report-ID: <example.com.1700000000>")
        XCTAssertEqual(header["Date"], "Thu, 16 Nov 2023 02:00:00 +0000")
        XCTAssertEqual(header["Message-ID"], "<dmarc.1700000000@mx.example.net>")
        XCTAssertEqual(header["To"], "rua@example.com, dmarc@thirdparty.example")
        XCTAssertEqual(header["MIME-Version"], "1.0")

        let summary = MessageSummary(parsing: message)
        XCTAssertEqual(summary.body.mimeType, "multipart/mixed")
        XCTAssertEqual(summary.body.children.map(\.mimeType), ["text/plain", "application/gzip"])
        let attachment = summary.body.children[1]
        XCTAssertEqual(attachment.fileName, "mx.example.net!example.com!1700000000!1700086399!example.com.1700000000.xml.gz")
        XCTAssertEqual(attachment.disposition?.type.lowercased(), "attachment")
        XCTAssertEqual(attachment.encoding.lowercased(), "base64")
        // Base64 in lines of at most 76 characters (RFC 2045 §6.8), all full except the last.
        let body = String(decoding: message[attachment.bodyOffset..<(attachment.bodyOffset + attachment.bodyLength)], as: UTF8.self)
        let lines = body.components(separatedBy: "\r\n").filter { !$0.isEmpty }
        XCTAssertGreaterThan(lines.count, 1)
        XCTAssertTrue(lines.dropLast().allSatisfy { $0.count == 76 }, "\(lines.map(\.count))")
        XCTAssertLessThanOrEqual(lines.last?.count ?? 99, 76)
        // The attachment is gzip.
        let gz = TransferDecoding.base64(Array(body.utf8))
        XCTAssertEqual(Array(gz.prefix(2)), [0x1F, 0x8B])
        XCTAssertTrue(text.contains("This is a DMARC aggregate report"))
    }

    func testComposeExtractParseRoundTrip() throws {
        for (report, format) in [(DMARCReportSamples.rfc7489Complete(), DMARCAggregateReport.Format.rfc7489),
                                 (DMARCReportSamples.dmarcbisComplete(), .dmarcbis)] {
            let reports = try DMARCReportExtractor.reports(fromMessage: compose(report, format: format))
            XCTAssertEqual(reports.count, 1)
            var expected = report
            if format == .rfc7489 { expected.records[1].sourceIP = "2001:db8:0:0:0:0:0:25" }
            XCTAssertEqual(reports.first, expected, "\(format)")
        }
    }

    func testHeaderInjectionIsNeutralised() {
        var report = DMARCReportSamples.rfc7489Complete()
        report.metadata.reportID = "x\r\nBcc: victim@example.org"
        let text = String(decoding: compose(report), as: UTF8.self)
        XCTAssertFalse(text.contains("\r\nBcc:"))
        XCTAssertTrue(text.contains("!xBccvictimexample.org.xml.gz"), "specials dropped from the file name's unique-id")
    }

    func testLongSubjectIsFolded() {
        var report = DMARCReportSamples.rfc7489Complete()
        report.policyPublished.domain = String(repeating: "sub.", count: 15) + "example.com"
        let message = compose(report)
        let text = String(decoding: message, as: UTF8.self)
        let headerText = text.components(separatedBy: "\r\n\r\n")[0]
        XCTAssertTrue(headerText.components(separatedBy: "\r\n").allSatisfy { $0.count <= 998 })
        XCTAssertTrue(headerText.contains("\r\n Submitter:") || headerText.contains("\r\n Report-ID:"), headerText)
        XCTAssertEqual(MessageHeader(parsing: message)["Subject"],
                       "Report Domain: \(report.policyPublished.domain) Submitter: mx.example.net Report-ID: <example.com.1700000000>")
    }

    func testRFC5322Dates() {
        XCTAssertEqual(DMARCReportMail.rfc5322Date(0), "Thu, 1 Jan 1970 00:00:00 +0000")
        XCTAssertEqual(DMARCReportMail.rfc5322Date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000")
        XCTAssertEqual(DMARCReportMail.rfc5322Date(1_700_086_399), "Wed, 15 Nov 2023 22:13:19 +0000")
        XCTAssertEqual(DMARCReportMail.rfc5322Date(-1), "Wed, 31 Dec 1969 23:59:59 +0000")
    }

    // MARK: gzip

    func testGzipMembersTrailingGarbageAndTruncation() throws {
        let a = Array("<feedback>".utf8), b = Array("</feedback>".utf8)
        let gzA = DMARCReportCompression.gzip(a), gzB = DMARCReportCompression.gzip(b)
        XCTAssertEqual(try DMARCReportCompression.gunzip(gzA), a)
        XCTAssertEqual(try DMARCReportCompression.gunzip(gzA + gzB), a + b, "RFC 1952 §2.2 members concatenate")
        XCTAssertEqual(try DMARCReportCompression.gunzip(gzA + [0x0D, 0x0A]), a, "trailing garbage ignored, as gzip(1) does")
        for cut in [2, 10, gzA.count / 2, gzA.count - 4] {
            XCTAssertThrowsError(try DMARCReportCompression.gunzip(Array(gzA.prefix(cut))), "cut at \(cut)") { error in
                guard case .corruptCompressedData = error as? DMARCReportError else { return XCTFail("\(error)") }
            }
        }
        var flipped = gzA
        flipped[flipped.count - 6] ^= 0xFF  // CRC-32 trailer
        XCTAssertThrowsError(try DMARCReportCompression.gunzip(flipped))
    }

    func testGzipBombIsCapped() {
        let bomb = DMARCReportCompression.gzip([UInt8](repeating: 0, count: DMARCReportLimits.maxXMLBytes + 1024 * 1024))
        XCTAssertLessThan(bomb.count, 100_000)
        XCTAssertThrowsError(try DMARCReportExtractor.reports(fromAttachment: bomb, filename: "x.xml.gz")) { error in
            XCTAssertEqual(error as? DMARCReportError, .tooLarge(limit: DMARCReportLimits.maxXMLBytes))
        }
    }

    // MARK: zip

    /// A zip archive of our own making (APPNOTE §4.3): stored or deflated entries.
    /// With `descriptor`, sizes and CRC go in a data descriptor after the data (general purpose flag bit
    /// 3, §4.3.9), as streaming zip writers do; the local header then carries zeros.
    func makeZip(_ files: [(name: String, content: [UInt8], deflate: Bool, declaredSize: Int?)], descriptor: Bool = false) -> [UInt8] {
        func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
        func le32(_ v: Int) -> [UInt8] { le16(v & 0xFFFF) + le16((v >> 16) & 0xFFFF) }
        func le32(_ v: UInt32) -> [UInt8] { le32(Int(v)) }
        var out: [UInt8] = [], directory: [UInt8] = []
        for file in files {
            // Raw deflate = zlib's gzip output without its 10-byte header and 8-byte trailer (RFC 1952 §2.3).
            let gz = DMARCReportCompression.gzip(file.content)
            let data = file.deflate ? Array(gz[10..<(gz.count - 8)]) : file.content
            let crc = DMARCReportCompression.crc32(file.content)
            let size = file.declaredSize ?? file.content.count
            let name = Array(file.name.utf8)
            let flags = descriptor ? 8 : 0
            let common = le16(20) + le16(flags) + le16(file.deflate ? 8 : 0) + le16(0) + le16(0) + le32(crc)
                + le32(data.count) + le32(size) + le16(name.count) + le16(0)
            let local = descriptor
                ? le16(20) + le16(flags) + le16(file.deflate ? 8 : 0) + le16(0) + le16(0) + le32(0) + le32(0) + le32(0) + le16(name.count) + le16(0)
                : common
            directory += le32(0x0201_4B50) + le16(20) + common + le16(0) + le16(0) + le16(0) + le32(0) + le32(out.count) + name
            out += le32(0x0403_4B50) + local + name + data
            if descriptor { out += le32(0x0807_4B50) + le32(crc) + le32(data.count) + le32(size) }
        }
        let offset = out.count
        return out + directory + le32(0x0605_4B50) + le16(0) + le16(0) + le16(files.count) + le16(files.count)
            + le32(directory.count) + le32(offset) + le16(0)
    }

    func testZipStoredAndDeflatedEntries() throws {
        let xml = Array(DMARCReportSamples.rfc7489Complete().xml(format: .rfc7489).utf8)
        let zip = makeZip([("readme.txt", Array("hello".utf8), false, nil), ("a.xml", xml, false, nil), ("b.xml", xml, true, nil)])
        let entries = try DMARCReportCompression.unzip(zip)
        XCTAssertEqual(entries.map(\.name), ["readme.txt", "a.xml", "b.xml"])
        let reports = try DMARCReportExtractor.reports(fromAttachment: zip, filename: nil)
        XCTAssertEqual(reports.count, 2, "only the .xml entries are reports")
        XCTAssertEqual(reports.first?.records.count, 2)
    }

    func testZipWithDataDescriptors() throws {
        let xml = Array(DMARCReportSamples.dmarcbisComplete().xml(format: .dmarcbis).utf8)
        let zip = makeZip([("r.xml", xml, true, nil), ("s.xml", xml, false, nil)], descriptor: true)
        let reports = try DMARCReportExtractor.reports(fromAttachment: zip, filename: "x.zip")
        XCTAssertEqual(reports, [DMARCReportSamples.dmarcbisComplete(), DMARCReportSamples.dmarcbisComplete()])
    }

    /// Python's email and gzip modules read the composed mail: the attachment is what we wrote.
    func testPythonReadsTheComposedMail() throws {
        let python = "/usr/bin/python3"
        guard FileManager.default.isExecutableFile(atPath: python) else {
            if ProcessInfo.processInfo.environment["FACTEUR_REQUIRE_ALL"] == "1" { XCTFail("python3 missing") }
            throw XCTSkip("python3 not installed; interop with Python's email/gzip not tested")
        }
        let report = DMARCReportSamples.rfc7489Complete()
        let script = """
        import sys, email, email.policy, gzip
        m = email.message_from_binary_file(sys.stdin.buffer, policy=email.policy.default)
        parts = [p for p in m.iter_attachments()]
        assert len(parts) == 1, parts
        a = parts[0]
        assert a.get_content_type() == "application/gzip", a.get_content_type()
        sys.stdout.write(a.get_filename() + "\\n")
        sys.stdout.buffer.write(gzip.decompress(a.get_content()))
        """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", script]
        let input = Pipe(), output = Pipe(), errors = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        input.fileHandleForWriting.write(Data(compose(report)))
        try input.fileHandleForWriting.close()
        let out = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let err = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, err)
        XCTAssertEqual(out, DMARCReportMail.filename(report: report, reporterDomain: "mx.example.net") + "\n" + report.xml(format: .rfc7489))
    }

    func testDamagedZipsFailCleanly() {
        let xml = Array("<feedback/>".utf8)
        let good = makeZip([("a.xml", xml, true, nil)])
        XCTAssertNoThrow(try DMARCReportCompression.unzip(good))
        let badSize = makeZip([("a.xml", xml, true, xml.count + 1)])
        XCTAssertThrowsError(try DMARCReportCompression.unzip(badSize))
        var badCRC = makeZip([("a.xml", xml, false, nil)])
        badCRC[30 + 5] ^= 0x01  // a byte of the stored content
        XCTAssertThrowsError(try DMARCReportCompression.unzip(badCRC))
        for cut in stride(from: 0, to: good.count, by: 7) {
            XCTAssertThrowsError(try DMARCReportCompression.unzip(Array(good.prefix(cut))), "cut at \(cut)")
        }
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<300 {
            var mutated = good
            mutated[Int.random(in: 0..<mutated.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            _ = try? DMARCReportCompression.unzip(mutated)
        }
    }

    func testZipBombIsCapped() {
        // A tiny archive that inflates past the cap while declaring a small size.
        let zeros = [UInt8](repeating: 0, count: DMARCReportLimits.maxXMLBytes + 1024 * 1024)
        let zip = makeZip([("bomb.xml", zeros, true, 100)])
        XCTAssertLessThan(zip.count, 100_000)
        XCTAssertThrowsError(try DMARCReportCompression.unzip(zip)) { error in
            XCTAssertEqual(error as? DMARCReportError, .tooLarge(limit: DMARCReportLimits.maxXMLBytes))
        }
    }

    func testMislabelledAttachments() throws {
        let xml = Array(DMARCReportSamples.rfc7489Complete().xml(format: .rfc7489).utf8)
        // Plain XML named .xml.gz, gzip named .zip, gzip without a name: the content decides.
        XCTAssertEqual(try DMARCReportExtractor.reports(fromAttachment: xml, filename: "a!b!1!2.xml.gz").count, 1)
        XCTAssertEqual(try DMARCReportExtractor.reports(fromAttachment: DMARCReportCompression.gzip(xml), filename: "r.zip").count, 1)
        XCTAssertEqual(try DMARCReportExtractor.reports(fromAttachment: DMARCReportCompression.gzip(xml)).count, 1)
        // Binary garbage named .gz is a compression error, not an XML one.
        XCTAssertThrowsError(try DMARCReportExtractor.reports(fromAttachment: [0x42, 0x5A, 0x68, 0x39], filename: "r.xml.gz")) { error in
            guard case .corruptCompressedData = error as? DMARCReportError else { return XCTFail("\(error)") }
        }
    }

    func testExtremeDatesDoNotTrap() {
        XCTAssertEqual(DMARCReportBuilder.utcDay(containing: .max).end - DMARCReportBuilder.utcDay(containing: .max).begin, 86_399)
        XCTAssertEqual(DMARCReportBuilder.utcDay(containing: .min).end - DMARCReportBuilder.utcDay(containing: .min).begin, 86_399)
        var report = DMARCReportSamples.rfc7489Complete()
        report.metadata.dateRange = .init(begin: .min, end: .max)
        let message = DMARCReportMail.compose(report: report, reporterDomain: "r", from: "a@r", to: ["b@c"],
                                              date: Date(timeIntervalSince1970: .infinity), messageID: "x@r")
        XCTAssertFalse(message.isEmpty)
    }

    func testMessageWithoutReport() {
        let message = Array("From: a@b\r\nSubject: hi\r\nContent-Type: text/plain\r\n\r\nhello\r\n".utf8)
        XCTAssertThrowsError(try DMARCReportExtractor.reports(fromMessage: message)) { error in
            XCTAssertEqual(error as? DMARCReportError, .noReportFound)
        }
    }
}
