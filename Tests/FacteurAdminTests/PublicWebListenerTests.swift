import FacteurAdmin
import FacteurNet
import FacteurTestSupport
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import XCTest

/// The listener over real loopback sockets: well-formed requests, then hostile ones.
final class PublicWebListenerTests: XCTestCase {
    let policy = MTASTSPolicy(mode: .enforce, mx: ["mail.example.org"])

    private func withListener(tls: Bool = false, limits: PublicWebLimits = .init(),
                              _ body: (Int, PublicWebRouter) async throws -> Void) async throws {
        let router = PublicWebRouter(policy: policy, domains: ["example.org"])
        let provider: (any TLSContextSource)? = tls ? try Self.tlsContext() : nil
        let listener = try await PublicWebListener.bind(
            configuration: .init(host: "127.0.0.1", port: 0, limits: limits), router: router,
            tlsContext: provider, group: MultiThreadedEventLoopGroup.singleton,
            logger: Logger(label: "test"))
        do {
            try await body(try XCTUnwrap(listener.localAddress?.port), router)
        } catch {
            await listener.shutdown()
            throw error
        }
        await listener.shutdown()
    }

    static func tlsContext() throws -> NIOSSLContext {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("facteur-web-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let files = CertificateFiles(certificatePath: directory.appendingPathComponent("cert.pem").path,
                                     keyPath: directory.appendingPathComponent("key.pem").path)
        try TLSProvider.ensureSelfSigned(files, hostnames: ["mta-sts.example.org"])
        return try TLSProvider(defaultCertificate: files).context
    }

    /// Sends `request` and reads until the server closes (or 5 s).
    static func exchange(port: Int, _ request: String) throws -> String {
        let client = try LoopbackLineClient(port: port)
        client.send(request)
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(client.fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            received += buffer[..<n]
        }
        return String(decoding: received, as: UTF8.self)
    }

    func testAnswersChallengeAndRefusesPolicyOverPlainHTTP() async throws {
        try await withListener { port, router in
            router.challenges.set(token: "tok1", keyAuthorization: "tok1.abc")
            let ok = try Self.exchange(port: port, "GET /.well-known/acme-challenge/tok1 HTTP/1.1\r\nHost: mail.example.org\r\n\r\n")
            XCTAssertTrue(ok.hasPrefix("HTTP/1.1 200"), ok)
            XCTAssertTrue(ok.hasSuffix("tok1.abc"), ok)
            let policy = try Self.exchange(port: port, "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.org\r\n\r\n")
            XCTAssertTrue(policy.hasPrefix("HTTP/1.1 404"), policy)
        }
    }

    func testHostileRequests() async throws {
        var limits = PublicWebLimits()
        limits.connectionDeadline = .seconds(1)
        try await withListener(limits: limits) { port, _ in
            let huge = "GET / HTTP/1.1\r\nHost: x\r\nX-Fill: \(String(repeating: "a", count: 20_000))\r\n\r\n"
            XCTAssertTrue(try Self.exchange(port: port, huge).hasPrefix("HTTP/1.1 431"))
            let body = "POST /.well-known/acme-challenge/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            XCTAssertTrue(try Self.exchange(port: port, body).hasPrefix("HTTP/1.1 413"))
            let chunked = "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            XCTAssertTrue(try Self.exchange(port: port, chunked).hasPrefix("HTTP/1.1 413"))
            XCTAssertTrue(try Self.exchange(port: port, "DELETE / HTTP/1.1\r\nHost: x\r\n\r\n").hasPrefix("HTTP/1.1 405"))
            XCTAssertTrue(try Self.exchange(port: port, "\u{01}\u{02} garbage\r\n\r\n").hasPrefix("HTTP/1.1 400"))
            // A client that never finishes its request is cut off by the deadline.
            let slow = try LoopbackLineClient(port: port, timeout: 5)
            slow.send("GET / HTTP/1.1\r\n")
            let started = Date()
            XCTAssertNil(slow.readLine())
            XCTAssertLessThan(Date().timeIntervalSince(started), 4)
        }
    }

    func testServesPolicyOverHTTPS() async throws {
        guard let curl = ["/usr/bin/curl", "/bin/curl"].first(where: FileManager.default.isExecutableFile) else {
            throw XCTSkip("curl is not installed")
        }
        try await withListener(tls: true) { port, _ in
            func get(_ host: String) throws -> (String, Int32) {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: curl)
                process.arguments = ["-sk", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}",
                                     "--resolve", "\(host):\(port):127.0.0.1", "https://\(host):\(port)/.well-known/mta-sts.txt"]
                let pipe = Pipe()
                process.standardOutput = pipe
                try process.run()
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                return (String(decoding: data, as: UTF8.self), process.terminationStatus)
            }
            let (served, status) = try get("mta-sts.example.org")
            XCTAssertEqual(status, 0)
            XCTAssertEqual(served, policy.text + "\n200")
            XCTAssertTrue(try get("mta-sts.unknown.org").0.hasSuffix("404"))
        }
    }
}
