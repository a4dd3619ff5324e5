// Subprocess: runs the external tools the end-to-end tests drive (the `facteur` CLI,
// python3 scripts, swaks) with a timeout, capturing stdout and stderr in files so a
// chatty child can never block on a full pipe.

import Foundation
import XCTest

struct ToolResult {
    var status: Int32
    var stdout: Data
    var stderr: Data
    var timedOut: Bool
    var command: String

    var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    var stderrText: String { String(decoding: stderr, as: UTF8.self) }

    /// One line for failure messages.
    var summary: String {
        "`\(command)` exited \(status)\(timedOut ? " (timed out)" : ""); stderr: \(stderrText.suffix(2000)); stdout: \(stdoutText.prefix(2000))"
    }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

enum Subprocess {
    /// The first executable called `name` on PATH (or nil).
    static func find(_ name: String) -> String? {
        if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    static func run(_ executable: String, _ arguments: [String], stdin: Data? = nil, timeout: TimeInterval = 120,
                    workingDirectory: URL? = nil, environment: [String: String]? = nil) throws -> ToolResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let workingDirectory { process.currentDirectoryURL = workingDirectory }
        if let environment { process.environment = environment }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("facteur-e2e-io-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let outURL = scratch.appendingPathComponent("stdout")
        let errURL = scratch.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL)
        let err = try FileHandle(forWritingTo: errURL)
        defer { try? out.close(); try? err.close() }
        process.standardOutput = out
        process.standardError = err
        let input = Pipe()
        process.standardInput = stdin == nil ? FileHandle(forReadingAtPath: "/dev/null") : input
        try process.run()
        if let stdin {
            try input.fileHandleForWriting.write(contentsOf: stdin)
            try input.fileHandleForWriting.close()
        }
        let timedOut = !waitForExit(process, timeout: timeout)
        if timedOut {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        let command = ([executable] + arguments).map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " ")
        return ToolResult(status: process.terminationStatus,
                          stdout: (try? Data(contentsOf: outURL)) ?? Data(),
                          stderr: (try? Data(contentsOf: errURL)) ?? Data(),
                          timedOut: timedOut, command: command)
    }

    /// Waits up to `timeout` seconds; true if the process has exited.
    @discardableResult
    static func waitForExit(_ process: Process, timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning {
            if Date() > deadline { return false }
            usleep(10_000)
        }
        return true
    }
}

/// External tools the tests need. Missing ones skip the test, unless FACTEUR_REQUIRE_ALL=1
/// (CI), where a missing tool is a failure.
enum RequiredTool {
    static var requireAll: Bool { ProcessInfo.processInfo.environment["FACTEUR_REQUIRE_ALL"] == "1" }

    static func path(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        if let found = Subprocess.find(name) { return found }
        let message = "\(name) is not installed (on PATH); the .ci/run script installs it"
        if requireAll {
            XCTFail("FACTEUR_REQUIRE_ALL=1 but " + message, file: file, line: line)
            throw HarnessError(message)
        }
        throw XCTSkip("skipped: " + message)
    }
}
