// FacteurProcess: the real `facteur` binary, started as a child process on ephemeral
// loopback ports with a throw-away data folder, plus its CLI (`facteur domain|account|
// message … --data DIR`). The server announces each bound listener on stdout as
// `LISTENING <proto> <address>:<port>` and, on the first start of a data folder,
// `admin password: <password>`.

import Foundation
import XCTest

enum FacteurBinary {
    /// The package root, from this file's path (Tests/FacteurEndToEndTests/Harness/…).
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static var candidates: [URL] {
        var list: [URL] = []
        if let explicit = ProcessInfo.processInfo.environment["FACTEUR_BIN"] { list.append(URL(fileURLWithPath: explicit)) }
        // `swift test` puts the test bundle (FacteurPackageTests.xctest) next to the executables.
        if let argv0 = CommandLine.arguments.first {
            let bundle = URL(fileURLWithPath: argv0).standardizedFileURL
            list.append(bundle.deletingLastPathComponent().appendingPathComponent("facteur"))
            // On Darwin argv0 is the xctest runner; the bundle is further up.
            list.append(bundle.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("facteur"))
        }
        list.append(packageRoot.appendingPathComponent(".build/debug/facteur"))
        return list
    }

    static func url() throws -> URL {
        for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate.path) {
            return candidate
        }
        let message = "the `facteur` executable was not found; looked at: "
            + candidates.map(\.path).joined(separator: ", ")
            + ". `swift test` builds it; or set FACTEUR_BIN."
        XCTFail(message)
        throw HarnessError(message)
    }
}

/// Where test scripts live.
enum E2EScripts {
    static let directory = FacteurBinary.packageRoot.appendingPathComponent("Tests/e2e")
    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
}

/// A fresh temporary folder, removed by `remove()`.
struct TemporaryDirectory {
    let url: URL
    init(_ label: String) throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("facteur-e2e-\(label)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func remove() { try? FileManager.default.removeItem(at: url) }
}

final class FacteurProcess: @unchecked Sendable {
    let binary: URL
    let dataDir: URL
    let logURL: URL
    let process: Process
    private let lock = NSLock()
    private var output = Data()
    private var outputClosed = false

    /// `proto` -> port, from the LISTENING lines.
    private(set) var ports: [String: Int] = [:]
    /// Printed only on the first start of a data folder.
    private(set) var adminPassword: String?

    var smtpPort: Int { ports["smtp"] ?? 0 }
    var isRunning: Bool { process.isRunning }
    /// The pid of what we started (strace when `wrapper` is used).
    var pid: Int32 { process.processIdentifier }

    /// Starts `facteur serve --data DIR --listen …` (under `wrapper`, e.g. strace, if given)
    /// and waits until every listener is announced.
    init(dataDir: URL, listen: [String] = ["smtp=127.0.0.1:0"], config: URL? = nil, wrapper: [String] = [],
         startupTimeout: TimeInterval = 90) throws {
        binary = try FacteurBinary.url()
        self.dataDir = dataDir
        logURL = dataDir.deletingLastPathComponent().appendingPathComponent(dataDir.lastPathComponent + ".log")
        process = Process()
        var arguments = [binary.path, "serve", "--data", dataDir.path]
        if let config { arguments += ["--config", config.path] }
        for l in listen { arguments += ["--listen", l] }
        if let first = wrapper.first {
            process.executableURL = URL(fileURLWithPath: first)
            process.arguments = Array(wrapper.dropFirst()) + arguments
        } else {
            process.executableURL = binary
            process.arguments = Array(arguments.dropFirst())
        }
        process.currentDirectoryURL = dataDir.deletingLastPathComponent()
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        try log.seekToEnd()
        process.standardError = log
        process.standardInput = FileHandle(forReadingAtPath: "/dev/null")
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        try? log.close()
        let reader = pipe.fileHandleForReading
        let thread = Thread { [self] in
            while true {
                let chunk = reader.availableData
                self.lock.lock()
                if chunk.isEmpty { self.outputClosed = true; self.lock.unlock(); break }
                self.output.append(chunk)
                self.lock.unlock()
            }
        }
        thread.start()
        try waitForListeners(count: listen.count, timeout: startupTimeout)
    }

    var stdoutText: String {
        lock.lock(); defer { lock.unlock() }
        return String(decoding: output, as: UTF8.self)
    }

    var logText: String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

    /// The start and the end of the server's stderr, for failure messages (a crash's reason
    /// comes first, its backtrace after).
    var logExcerpt: String {
        let text = logText
        guard text.count > 4000 else { return text }
        return String(text.prefix(2000)) + "\n[…]\n" + String(text.suffix(2000))
    }

    private func waitForListeners(count: Int, timeout: TimeInterval) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            parseOutput()
            if ports.count >= count { return }
            if !process.isRunning {
                throw HarnessError("facteur exited with \(process.terminationStatus) before listening; stdout: \(stdoutText); log: \(logExcerpt)")
            }
            if Date() > deadline {
                kill(process.processIdentifier, SIGKILL)
                throw HarnessError("facteur did not print \(count) LISTENING line(s) within \(timeout) s; stdout: \(stdoutText); log: \(logExcerpt)")
            }
            usleep(20_000)
        }
    }

    private func parseOutput() {
        for line in stdoutText.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            let words = line.split(separator: " ")
            if words.count == 3, words[0] == "LISTENING", let colon = words[2].lastIndex(of: ":"),
               let port = Int(words[2][words[2].index(after: colon)...]) {
                ports[String(words[1])] = port
            } else if line.hasPrefix("admin password: ") {
                adminPassword = String(line.dropFirst("admin password: ".count))
            }
        }
    }

    /// SIGTERM and wait; returns the exit status (nil if it had to be killed).
    @discardableResult
    func stop(timeout: TimeInterval = 30) -> Int32? {
        guard process.isRunning else { return process.terminationStatus }
        kill(process.processIdentifier, SIGTERM)
        if Subprocess.waitForExit(process, timeout: timeout) { return process.terminationStatus }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        return nil
    }

    /// SIGKILL: the crash.
    func crash() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    // MARK: - CLI

    /// `facteur ARGS --data DIR`.
    @discardableResult
    static func cli(_ arguments: [String], dataDir: URL, stdin: String? = nil, timeout: TimeInterval = 60) throws -> ToolResult {
        try Subprocess.run(try FacteurBinary.url().path, arguments + ["--data", dataDir.path],
                           stdin: stdin.map { Data($0.utf8) }, timeout: timeout)
    }

    @discardableResult
    func cli(_ arguments: [String], stdin: String? = nil, expectSuccess: Bool = true,
             file: StaticString = #filePath, line: UInt = #line) throws -> ToolResult {
        let result = try FacteurProcess.cli(arguments, dataDir: dataDir, stdin: stdin)
        if expectSuccess && result.status != 0 {
            XCTFail("CLI failed: \(result.summary)", file: file, line: line)
            throw HarnessError("CLI failed: \(result.summary)")
        }
        return result
    }

    func addAccount(_ address: String, password: String = "e2e-password-1") throws {
        try cli(["account", "add", address, "--password-stdin"], stdin: password + "\n")
    }

    struct ListedMessage: Equatable {
        var uid: Int
        var size: Int
        var internalDate: String
        var from: String
        var subject: String
    }

    /// `facteur message list ACCOUNT MAILBOX`: UID, SIZE, INTERNALDATE, FROM, SUBJECT, tab-separated.
    func messages(_ account: String, mailbox: String = "INBOX",
                  file: StaticString = #filePath, line: UInt = #line) throws -> [ListedMessage] {
        let result = try cli(["message", "list", account, mailbox], file: file, line: line)
        var list: [ListedMessage] = []
        for row in result.stdoutText.split(separator: "\n") where !row.isEmpty {
            let fields = row.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard fields.count >= 5, let uid = Int(fields[0]), let size = Int(fields[1]) else {
                XCTFail("`message list` line is not UID<TAB>SIZE<TAB>DATE<TAB>FROM<TAB>SUBJECT: \(row.debugDescription)",
                        file: file, line: line)
                throw HarnessError("bad message list line")
            }
            list.append(ListedMessage(uid: uid, size: size, internalDate: fields[2], from: fields[3],
                                      subject: fields[4...].joined(separator: "\t")))
        }
        return list
    }

    /// `facteur message show ACCOUNT MAILBOX UID`: the exact stored bytes.
    func show(_ account: String, mailbox: String = "INBOX", uid: Int,
              file: StaticString = #filePath, line: UInt = #line) throws -> Data {
        try cli(["message", "show", account, mailbox, String(uid)], file: file, line: line).stdout
    }

    struct StoredMessage {
        var listed: ListedMessage
        var bytes: Data
        /// The Subject field of the stored message itself (not the list's column, which
        /// depends on the MIME summary).
        var subject: String
    }

    /// Every message of a mailbox with its stored bytes (`message list`, then `message show` each).
    func storedMessages(_ account: String, mailbox: String = "INBOX",
                        file: StaticString = #filePath, line: UInt = #line) throws -> [StoredMessage] {
        try messages(account, mailbox: mailbox, file: file, line: line).map { listed in
            let bytes = try show(account, mailbox: mailbox, uid: listed.uid, file: file, line: line)
            return StoredMessage(listed: listed, bytes: bytes, subject: FacteurProcess.subjectField(bytes) ?? "")
        }
    }

    /// The first Subject field of the header section (after any trace prefix), unfolded.
    static func subjectField(_ bytes: Data) -> String? {
        let text = String(decoding: bytes, as: UTF8.self)
        let header = text.components(separatedBy: "\r\n\r\n").first ?? text
        var result: String?
        for fieldLine in header.components(separatedBy: "\r\n") {
            if result != nil {
                if fieldLine.hasPrefix(" ") || fieldLine.hasPrefix("\t") { result! += fieldLine; continue }
                break
            }
            if fieldLine.lowercased().hasPrefix("subject:") {
                result = String(fieldLine.dropFirst("subject:".count)).trimmingCharacters(in: .whitespaces)
            }
        }
        return result
    }

    /// The one message of `account` whose Subject field contains `subject`; fails if none or several.
    func findMessage(_ account: String, subject: String, mailbox: String = "INBOX",
                     file: StaticString = #filePath, line: UInt = #line) throws -> (ListedMessage, Data) {
        let matches = try storedMessages(account, mailbox: mailbox, file: file, line: line).filter { $0.subject.contains(subject) }
        guard matches.count == 1 else {
            let message = "expected exactly one message with subject containing \(subject.debugDescription) in \(account) \(mailbox), found \(matches.count)"
            XCTFail(message, file: file, line: line)
            throw HarnessError(message)
        }
        return (matches[0].listed, matches[0].bytes)
    }
}
