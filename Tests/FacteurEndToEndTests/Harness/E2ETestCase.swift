// E2ETestCase: the base of the end-to-end tests. Each test gets its own data folder
// and, unless it opts out, a running server (`--listen smtp=127.0.0.1:0`), stopped
// with SIGTERM in tearDown — which must end in exit status 0 (graceful shutdown).
// Also: running the Python scripts of Tests/e2e, and checking stored messages
// (per-recipient prefix, then the bytes exactly as sent).

import Foundation
import XCTest

class E2ETestCase: XCTestCase {
    var dataRoot: TemporaryDirectory!
    var server: FacteurProcess!
    /// Tests that manage their own server (crash, strace) set this to false.
    var startsServer: Bool { true }

    var dataDir: URL { dataRoot.url.appendingPathComponent("data") }

    override func setUpWithError() throws {
        try super.setUpWithError()
        continueAfterFailure = true
        dataRoot = try TemporaryDirectory(String(describing: type(of: self)))
        if startsServer {
            server = try FacteurProcess(dataDir: dataDir)
            XCTAssertNotEqual(server.smtpPort, 0, "no LISTENING smtp line")
            XCTAssertNotNil(server.adminPassword, "first start of a data folder must print `admin password: …`")
        }
    }

    override func tearDownWithError() throws {
        if let server, server.isRunning {
            let status = server.stop()
            XCTAssertEqual(status, 0, "SIGTERM must shut facteur down gracefully with exit status 0; log: \(server.logExcerpt)")
        }
        let failed = (testRun?.failureCount ?? 0) > 0 || (testRun?.unexpectedExceptionCount ?? 0) > 0
        if failed {
            print("facteur-e2e: kept \(dataRoot.url.path) for inspection")
            if let server { print("facteur-e2e: server log:\n\(server.logExcerpt)") }
        } else {
            dataRoot?.remove()
        }
        server = nil
        try super.tearDownWithError()
    }

    // MARK: - Python scripts

    /// Runs `python3 Tests/e2e/SCRIPT ARGS`; fails the test (and throws) on a non-zero exit.
    /// Returns the JSON object printed on the last stdout line.
    @discardableResult
    func python(_ script: String, _ arguments: [String], timeout: TimeInterval = 180,
                file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let python = try RequiredTool.path("python3", file: file, line: line)
        let result = try Subprocess.run(python, [E2EScripts.path(script)] + arguments, timeout: timeout,
                                        workingDirectory: E2EScripts.directory)
        guard result.status == 0, !result.timedOut else {
            XCTFail("\(script) \(arguments.first ?? ""): \(result.summary)", file: file, line: line)
            throw HarnessError("\(script) failed")
        }
        let lastLine = result.stdoutText.split(separator: "\n").last.map(String.init) ?? ""
        guard let object = try? JSONSerialization.jsonObject(with: Data(lastLine.utf8)) as? [String: Any] else {
            XCTFail("\(script) printed no JSON object: \(result.summary)", file: file, line: line)
            throw HarnessError("no JSON")
        }
        return object
    }

    /// `smtp_cases.py CASE --port <smtp port> ARGS`.
    @discardableResult
    func smtpCase(_ name: String, _ arguments: [String] = [], port: Int? = nil, timeout: TimeInterval = 180,
                  file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        try python("smtp_cases.py", [name, "--port", String(port ?? server.smtpPort)] + arguments, timeout: timeout,
                   file: file, line: line)
    }

    static func bytes(_ json: [String: Any], _ key: String = "message") throws -> Data {
        guard let text = json[key] as? String, let data = Data(base64Encoded: text) else {
            throw HarnessError("no base64 \(key) in \(json)")
        }
        return data
    }

    // MARK: - Stored messages

    /// Checks `stored` = per-recipient prefix + `sent` exactly, and returns the prefix's
    /// header fields (name lowercased -> unfolded values). The prefix must be well-formed
    /// RFC 5322 header lines, CRLF-terminated, with Return-Path, Delivered-To and Received.
    @discardableResult
    func assertStored(_ stored: Data, sent: Data, sender: String, recipient: String,
                      file: StaticString = #filePath, line: UInt = #line) -> [String: [String]] {
        guard stored.count > sent.count else {
            XCTFail("stored message (\(stored.count) octets) is not longer than what was sent (\(sent.count)); stored: \(String(decoding: stored.prefix(600), as: UTF8.self).debugDescription)",
                    file: file, line: line)
            return [:]
        }
        let prefix = stored.prefix(stored.count - sent.count)
        let tail = stored.suffix(sent.count)
        if tail != sent {
            let firstDifference = zip(tail, sent).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(tail.count, sent.count)
            let around = { (d: Data) in String(decoding: d.dropFirst(max(0, firstDifference - 40)).prefix(100), as: UTF8.self).debugDescription }
            XCTFail("stored bytes do not end with the message as sent; first difference at offset \(firstDifference) of the message: stored \(around(Data(tail))) vs sent \(around(sent))",
                    file: file, line: line)
        }
        let fields = parsePrefix(Data(prefix), file: file, line: line)
        XCTAssertEqual(fields["return-path"], ["<\(sender)>"], "Return-Path of the stored prefix", file: file, line: line)
        let deliveredTo = fields["delivered-to"] ?? []
        XCTAssertTrue(deliveredTo.contains { $0.lowercased() == recipient.lowercased() || $0.lowercased() == "<\(recipient.lowercased())>" },
                      "Delivered-To should name \(recipient), got \(deliveredTo)", file: file, line: line)
        let received = fields["received"] ?? []
        XCTAssertFalse(received.isEmpty, "no Received field in the stored prefix", file: file, line: line)
        if let first = received.first {
            // RFC 5321 §4.4: "from … by … with ESMTP… id …; date-time".
            XCTAssertTrue(first.hasPrefix("from "), "Received should start with `from`: \(first)", file: file, line: line)
            XCTAssertTrue(first.contains(" by "), "Received without `by`: \(first)", file: file, line: line)
            // RFC 3848 / RFC 6531 §3.7.3 protocol names: ESMTP[S][A], UTF8SMTP[S][A].
            XCTAssertTrue(first.contains("with ESMTP") || first.contains("with UTF8SMTP"),
                          "Received without `with ESMTP…`/`with UTF8SMTP…`: \(first)", file: file, line: line)
            XCTAssertTrue(first.contains(";"), "Received without `; date`: \(first)", file: file, line: line)
            // RFC 5321 §4.4: TCP-info, the client's address literal.
            XCTAssertTrue(first.contains("[127.0.0.1]"), "Received without the client address [127.0.0.1]: \(first)", file: file, line: line)
        }
        return fields
    }

    /// Header lines of a prefix: every line CRLF-terminated, no bare CR or LF, each a
    /// `name: value` field or a folded continuation (RFC 5322 §2.2, §3.6.7).
    func parsePrefix(_ prefix: Data, file: StaticString = #filePath, line: UInt = #line) -> [String: [String]] {
        let bytes = [UInt8](prefix)
        XCTAssertTrue(bytes.count >= 2 && bytes[bytes.count - 2] == 13 && bytes[bytes.count - 1] == 10,
                      "the prefix must end with CRLF", file: file, line: line)
        var lines: [[UInt8]] = []
        var current: [UInt8] = []
        var i = 0
        while i < bytes.count {
            if bytes[i] == 13 && i + 1 < bytes.count && bytes[i + 1] == 10 {
                lines.append(current); current = []; i += 2; continue
            }
            if bytes[i] == 13 || bytes[i] == 10 {
                XCTFail("bare CR or LF in the prefix at offset \(i)", file: file, line: line)
            }
            current.append(bytes[i]); i += 1
        }
        var fields: [String: [String]] = [:]
        var lastName: String?
        for raw in lines {
            let text = String(decoding: raw, as: UTF8.self)
            if let first = raw.first, first == 32 || first == 9 {
                guard let name = lastName, var values = fields[name], !values.isEmpty else {
                    XCTFail("prefix starts with a continuation line: \(text.debugDescription)", file: file, line: line); continue
                }
                values[values.count - 1] += " " + text.trimmingCharacters(in: .whitespaces)
                fields[name] = values
                continue
            }
            guard let colon = text.firstIndex(of: ":"), !text[..<colon].isEmpty,
                  text[..<colon].allSatisfy({ $0.isASCII && $0 != " " && $0 != "\t" }) else {
                XCTFail("prefix line is not a header field: \(text.debugDescription)", file: file, line: line); continue
            }
            let name = text[..<colon].lowercased()
            fields[name, default: []].append(text[text.index(after: colon)...].trimmingCharacters(in: .whitespaces))
            lastName = name
        }
        return fields
    }

    /// Finds the message by subject in `account`, checks it against `sent`, and checks
    /// that `message list`'s SIZE is the number of octets `message show` returns.
    @discardableResult
    func assertDelivered(_ sent: Data, subject: String, to account: String, sender: String,
                         file: StaticString = #filePath, line: UInt = #line) throws -> [String: [String]] {
        let (listed, stored) = try server.findMessage(account, subject: subject, file: file, line: line)
        XCTAssertEqual(listed.size, stored.count, "SIZE in `message list` vs octets of `message show`", file: file, line: line)
        return assertStored(stored, sent: sent, sender: sender, recipient: account, file: file, line: line)
    }

    func messageCount(_ account: String = "admin@localhost") throws -> Int {
        try server.messages(account).count
    }
}
