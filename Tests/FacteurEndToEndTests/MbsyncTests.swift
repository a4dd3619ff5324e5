// mbsync (isync), a widely used IMAP synchroniser, against the real binary over IMAPS with the
// server's self-signed certificate: a Facteur INBOX and a local Maildir kept in step both ways.
// It exercises what a sync client leans on: UIDVALIDITY/UIDNEXT and UID FETCH ranges
// (RFC 9051 §2.3.1.1), STORE of flags, APPEND with APPENDUID (RFC 4315), EXPUNGE.
// Server-side changes and checks go through Tests/e2e/imap_clients.py (imaplib).

import Foundation
import XCTest

final class MbsyncTests: E2ETestCase {
    override var startsServer: Bool { false }

    private var maildir: URL { dataRoot.url.appendingPathComponent("Maildir") }
    private var inbox: URL { maildir.appendingPathComponent("INBOX") }
    private var configURL: URL { dataRoot.url.appendingPathComponent("mbsyncrc") }
    private var password = ""

    private func startServer() throws {
        server = try FacteurProcess(dataDir: dataDir, listen: ["smtp=127.0.0.1:0", "imap=127.0.0.1:0", "imaps=127.0.0.1:0"])
        password = try XCTUnwrap(server.adminPassword, "first start prints the admin password")
        // isync 1.4 syntax (`SSLType`; 1.5 also accepts it). `Expunge Both`: deletions flow both ways.
        let config = """
            IMAPAccount facteur
            Host localhost
            Port \(server.ports["imaps"] ?? 0)
            User admin@localhost
            Pass \(password)
            SSLType IMAPS
            CertificateFile \(dataDir.appendingPathComponent("tls/cert.pem").path)

            IMAPStore facteur-far
            Account facteur

            MaildirStore facteur-near
            Path \(maildir.path)/
            Inbox \(inbox.path)
            SubFolders Verbatim

            Channel facteur
            Far :facteur-far:
            Near :facteur-near:
            Patterns INBOX
            Create Both
            Expunge Both
            SyncState *
            Sync All

            """
        try config.write(to: configURL, atomically: true, encoding: .utf8)
        // mbsync creates mailboxes (`Create Both`) but not the store's root folder.
        try FileManager.default.createDirectory(at: maildir, withIntermediateDirectories: true)
    }

    /// `mbsync -c CONFIG -a` (with `-Dn`, which logs the IMAP exchange on stdout); fails on a non-zero exit.
    @discardableResult
    private func sync(file: StaticString = #filePath, line: UInt = #line) throws -> ToolResult {
        let mbsync = try RequiredTool.path("mbsync", file: file, line: line)
        let result = try Subprocess.run(mbsync, ["-c", configURL.path, "-a", "-Dn"], timeout: 120)
        XCTAssertEqual(result.status, 0, "mbsync failed: \(result.summary)", file: file, line: line)
        return result
    }

    @discardableResult
    private func helper(_ command: String, _ extra: [String] = [], file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        try python("imap_clients.py", [command, "--smtp", "\(server.smtpPort)", "--imap", "\(server.ports["imap"] ?? 0)",
                                       "--user", "admin@localhost", "--password", password] + extra, file: file, line: line)
    }

    struct ServerMessage: Equatable {
        var uid: Int
        var flags: [String]
        var subject: String
    }

    private func serverState(file: StaticString = #filePath, line: UInt = #line) throws -> [ServerMessage] {
        let json = try helper("state", file: file, line: line)
        let list = json["messages"] as? [[String: Any]] ?? []
        return list.map { ServerMessage(uid: $0["uid"] as? Int ?? 0, flags: $0["flags"] as? [String] ?? [],
                                        subject: $0["subject"] as? String ?? "") }
    }

    /// Every message file of the Maildir INBOX (new/ and cur/): relative path -> bytes.
    private func localMessages() throws -> [String: Data] {
        var out: [String: Data] = [:]
        for sub in ["new", "cur"] {
            let dir = inbox.appendingPathComponent(sub)
            for name in (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? [] {
                out["\(sub)/\(name)"] = try Data(contentsOf: dir.appendingPathComponent(name))
            }
        }
        return out
    }

    private func localFile(withSubject subject: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let matches = try localMessages().filter { String(decoding: $0.value, as: UTF8.self).contains("Subject: \(subject)\n") }
        guard matches.count == 1, let path = matches.first?.key else {
            XCTFail("expected one Maildir file with subject \(subject), found \(matches.count)", file: file, line: line)
            throw HarnessError("no local file for \(subject)")
        }
        return path
    }

    static func unixLineEnds(_ data: Data) -> Data {
        var out = Data(capacity: data.count)
        var previous: UInt8 = 0
        for byte in data {
            if byte == 0x0A, previous == 0x0D { out.removeLast() }
            out.append(byte)
            previous = byte
        }
        return out
    }

    static func withoutTUID(_ data: Data) -> Data {
        let text = String(decoding: data, as: UTF8.self)
        guard let start = text.range(of: "\nX-TUID: "), let end = text[start.upperBound...].firstIndex(of: "\n") else { return data }
        return Data((text[..<start.lowerBound] + text[end...]).utf8)
    }

    /// Maildir flags are the letters after `:2,` (D F P R S T), https://cr.yp.to/proto/maildir.html.
    private func maildirFlags(_ path: String) -> String {
        guard let range = path.range(of: ":2,") else { return "" }
        return String(path[range.upperBound...])
    }

    func testMaildirSyncsBothWays() throws {
        _ = try RequiredTool.path("mbsync")
        try startServer()

        // 1. Mail delivered over SMTP reaches the Maildir, byte for byte as stored.
        try helper("deliver", ["--to", "admin@localhost", "--subject", "mbsync", "--count", "3"])
        try sync()
        var local = try localMessages()
        XCTAssertEqual(local.count, 3, "three delivered messages in the Maildir: \(local.keys.sorted())")
        for n in 1 ... 3 {
            let (_, stored) = try server.findMessage("admin@localhost", subject: "mbsync-\(n)")
            let path = try localFile(withSubject: "mbsync-\(n)")
            // Maildir files have Unix line ends: mbsync turns CRLF into LF on the way in (and back on APPEND),
            // and adds its own tracking field, X-TUID, at the end of the header.
            XCTAssertEqual(local[path].map(Self.withoutTUID), Self.unixLineEnds(stored), "the Maildir copy of mbsync-\(n) is the stored message")
            XCTAssertEqual(maildirFlags(path), "", "mbsync-\(n) is unseen on the server, so unflagged locally")
        }

        // 2. A flag set locally (the file renamed into cur/ with F and S) reaches the server.
        let first = try localFile(withSubject: "mbsync-1")
        let base = (first as NSString).lastPathComponent.components(separatedBy: ":2,")[0]
        try FileManager.default.moveItem(at: inbox.appendingPathComponent(first),
                                         to: inbox.appendingPathComponent("cur/\(base):2,FS"))
        try sync()
        var state = try serverState()
        XCTAssertEqual(state.first { $0.subject == "mbsync-1" }?.flags, ["\\Flagged", "\\Seen"],
                       "local F and S became \\Flagged \\Seen on the server: \(state)")

        // 3. A message deleted (and expunged) on the server disappears locally.
        try helper("expunge", ["--subject", "mbsync-2"])
        try sync()
        local = try localMessages()
        XCTAssertFalse(local.values.contains { String(decoding: $0, as: UTF8.self).contains("Subject: mbsync-2\n") },
                       "mbsync-2 was expunged on the server but is still in the Maildir: \(local.keys.sorted())")
        XCTAssertEqual(local.count, 2)

        // 4. A message added to the Maildir (LF line ends, seen) is appended to the server.
        let added = "From: Admin <admin@localhost>\nTo: friend@example.net\nSubject: from-maildir\nDate: Fri, 27 Nov 2026 10:00:00 +0000\nMessage-ID: <maildir.1@localhost>\n\nwritten locally\n"
        try Data(added.utf8).write(to: inbox.appendingPathComponent("cur/1700000000.facteur-e2e.local:2,S"))
        try sync()
        state = try serverState()
        let appended = state.first { $0.subject == "from-maildir" }
        XCTAssertEqual(appended?.flags, ["\\Seen"], "the local message was appended with \\Seen: \(state)")
        let (_, stored) = try server.findMessage("admin@localhost", subject: "from-maildir")
        let storedText = String(decoding: stored, as: UTF8.self)
        XCTAssertTrue(storedText.hasSuffix("\r\n\r\nwritten locally\r\n"), "appended with CRLF line ends: \(storedText.debugDescription)")
        XCTAssertEqual(state.map(\.subject).sorted(), ["from-maildir", "mbsync-1", "mbsync-3"])

        // 5. A second sync changes nothing on either side, and sends no changing command.
        let localBefore = try localMessages()
        let stateBefore = try serverState()
        let again = try sync()
        XCTAssertEqual(try localMessages(), localBefore, "a second sync changed the Maildir")
        XCTAssertEqual(try serverState(), stateBefore, "a second sync changed the server")
        let changing = again.stdoutText.split(separator: "\n").filter { line in
            guard line.hasPrefix(">>> ") else { return false }
            let words = line.split(separator: " ").dropFirst(2).prefix(2).map { $0.uppercased() }
            return ["APPEND", "STORE", "EXPUNGE", "MOVE", "COPY"].contains(where: { words.contains($0) })
        }
        XCTAssertEqual(changing, [], "the second sync sent changing commands")
    }
}
