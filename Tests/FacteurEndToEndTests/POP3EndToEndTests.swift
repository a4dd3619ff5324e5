// End-to-end POP3: the real `facteur serve` binary on ephemeral loopback ports (SMTP, POP3 with
// STLS, POP3S), driven by Tests/e2e/pop3_clients.py — Python's poplib (every command), fetchmail and
// getmail6 (with and without keeping mail on the server, over STLS and POP3S), and messages sent by
// smtplib retrieved byte-identical. A missing tool skips its test, unless FACTEUR_REQUIRE_ALL=1.
//
// Self-contained on purpose (its own small process harness), so it does not depend on the shared
// end-to-end harness landing first.

import Foundation
import XCTest

final class POP3EndToEndTests: XCTestCase {
    private static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    private var server: POP3E2EServer?

    override func tearDown() {
        server?.stop()
        server = nil
    }

    func testPoplibEveryCommandOverSTLSAndPOP3S() throws {
        try runCase("poplib")
    }

    func testFetchmailWithAndWithoutKeep() throws {
        try runCase("fetchmail")
    }

    func testGetmailWithAndWithoutDelete() throws {
        try runCase("getmail")
    }

    func testDeletionOverPOP3ReachesAnIMAPSession() throws {
        try runCase("imap")
    }

    private func runCase(_ name: String) throws {
        let requireAll = ProcessInfo.processInfo.environment["FACTEUR_REQUIRE_ALL"] == "1"
        guard let python = POP3E2EServer.which("python3") else {
            if requireAll { XCTFail("python3 is required"); return }
            throw XCTSkip("python3 is not installed")
        }
        let server = try POP3E2EServer.start(packageRoot: Self.packageRoot)
        self.server = server
        let script = Self.packageRoot.appendingPathComponent("Tests/e2e/pop3_clients.py").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script, name, "--smtp", "\(server.ports["smtp"] ?? 0)", "--pop3", "\(server.ports["pop3"] ?? 0)",
                             "--pop3s", "\(server.ports["pop3s"] ?? 0)", "--imap", "\(server.ports["imap"] ?? 0)",
                             "--user", "admin@localhost",
                             "--password", server.adminPassword, "--cafile", server.dataDirectory + "/tls/cert.pem"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        if process.terminationStatus == 77 {
            if requireAll { XCTFail("\(name): a required tool is missing: \(text)"); return }
            throw XCTSkip("\(name): \(text.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        XCTAssertEqual(process.terminationStatus, 0, "\(name) failed: \(text)\nserver log:\n\(server.log)")
        XCTAssertTrue(text.contains("\"ok\": true"), text)
    }
}

/// `facteur serve` in a throw-away data folder with smtp, pop3 and pop3s on port 0.
final class POP3E2EServer: @unchecked Sendable {
    let process: Process
    let dataDirectory: String
    private(set) var ports: [String: Int] = [:]
    private(set) var adminPassword = ""
    private let lock = NSLock()
    private var output = ""

    var log: String { lock.withLock { String(output.suffix(4000)) } }

    static func which(_ tool: String) -> String? {
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let path = "\(directory)/\(tool)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    static func binary(packageRoot: URL) -> String? {
        var candidates: [String] = []
        if let explicit = ProcessInfo.processInfo.environment["FACTEUR_BIN"] { candidates.append(explicit) }
        if let argv0 = CommandLine.arguments.first {
            candidates.append(URL(fileURLWithPath: argv0).standardizedFileURL.deletingLastPathComponent().appendingPathComponent("facteur").path)
        }
        candidates.append(packageRoot.appendingPathComponent(".build/debug/facteur").path)
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    private init(process: Process, dataDirectory: String) {
        self.process = process
        self.dataDirectory = dataDirectory
    }

    static func start(packageRoot: URL) throws -> POP3E2EServer {
        guard let binary = binary(packageRoot: packageRoot) else { throw XCTSkip("the facteur binary is not built") }
        let data = NSTemporaryDirectory() + "facteur-pop3-e2e-\(UUID().uuidString)"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["serve", "--data", data, "--listen", "smtp=127.0.0.1:0", "--listen", "pop3=127.0.0.1:0",
                             "--listen", "pop3s=127.0.0.1:0", "--listen", "imap=127.0.0.1:0"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let server = POP3E2EServer(process: process, dataDirectory: data)
        try process.run()
        let reader = pipe.fileHandleForReading
        Thread.detachNewThread {
            while true {
                let chunk = reader.availableData
                if chunk.isEmpty { return }
                server.lock.withLock { server.output += String(decoding: chunk, as: UTF8.self) }
            }
        }
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            server.parse()
            if server.ports.count == 4, !server.adminPassword.isEmpty { return server }
            if !process.isRunning { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        let log = server.log
        server.stop()
        throw NSError(domain: "POP3E2E", code: 1, userInfo: [NSLocalizedDescriptionKey: "facteur did not start: \(log)"])
    }

    private func parse() {
        let text = lock.withLock { output }
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 3, fields[0] == "LISTENING", let colon = fields[2].lastIndex(of: ":"),
               let port = Int(fields[2][fields[2].index(after: colon)...]) {
                ports[String(fields[1])] = port
            }
            if line.hasPrefix("admin password: ") {
                adminPassword = String(line.dropFirst("admin password: ".count)).trimmingCharacters(in: .whitespaces)
            }
        }
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: dataDirectory)
    }
}
