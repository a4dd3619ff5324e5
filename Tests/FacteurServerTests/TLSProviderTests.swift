// TLSProvider, TLSServerPipeline and the ClientHello parser, in process over loopback sockets:
// reload without restart, SNI, the TLS 1.2+/AEAD policy, key/certificate matching, the
// TLS-ALPN-01 hook (RFC 8737) and the version/cipher report (RFC 8314 §4.3).

@testable import FacteurNet
@testable import FacteurServer
@testable import FacteurSMTP
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import X509
import XCTest

final class TLSProviderTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("facteur-tls-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    // MARK: Certificates and keys

    func testKeyThatDoesNotMatchItsCertificateIsRefusedNamingBothFiles() throws {
        let first = try writePair("first", hostname: "first.example")
        let second = try writePair("second", hostname: "second.example")
        let mixed = CertificateFiles(certificatePath: first.certificatePath, keyPath: second.keyPath)
        XCTAssertThrowsError(try TLSProvider(defaultCertificate: mixed)) { error in
            XCTAssertEqual("\(error)", "\(second.keyPath) does not match \(first.certificatePath)")
        }
        // A per-domain pair is checked as well.
        XCTAssertThrowsError(try TLSProvider(defaultCertificate: first, perDomain: ["second.example": mixed]))
        XCTAssertNoThrow(try TLSProvider(defaultCertificate: first, perDomain: ["second.example": second]))
    }

    func testUnreadableFilesNameThePath() throws {
        let pair = try writePair("pair", hostname: "pair.example")
        try Data("not a certificate".utf8).write(to: URL(fileURLWithPath: pair.certificatePath))
        XCTAssertThrowsError(try TLSProvider(defaultCertificate: pair)) { error in
            XCTAssertTrue("\(error)".hasPrefix(pair.certificatePath), "\(error)")
        }
    }

    // MARK: Reload

    func testReloadServesTheNewCertificateAndKeepsTheOldOneOnError() throws {
        let files = try writePair("main", hostname: "old.example")
        let provider = try TLSProvider(defaultCertificate: files)
        try withServer(provider) { port in
            XCTAssertEqual(try handshake(port: port).commonName, "old.example")

            XCTAssertFalse(provider.filesChanged())
            _ = try writePair("main", hostname: "new.example")
            XCTAssertTrue(provider.filesChanged())
            try provider.reload()
            XCTAssertFalse(provider.filesChanged())
            XCTAssertEqual(try handshake(port: port).commonName, "new.example", "a new connection gets the reloaded certificate")

            // A broken file: the reload fails, the previous certificate stays in service.
            try Data("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n".utf8)
                .write(to: URL(fileURLWithPath: files.certificatePath))
            XCTAssertThrowsError(try provider.reload())
            XCTAssertEqual(try handshake(port: port).commonName, "new.example")

            // A key written before its certificate (half-renewed): refused, old pair kept.
            _ = try writePair("main", hostname: "third.example")
            try provider.reload()
            let (certificatePEM, keyPEM) = try TLSProvider.makeSelfSigned(hostnames: ["fourth.example"])
            try Data(keyPEM.utf8).write(to: URL(fileURLWithPath: files.keyPath))
            XCTAssertThrowsError(try provider.reload()) { XCTAssertTrue("\($0)".contains("does not match"), "\($0)") }
            XCTAssertEqual(try handshake(port: port).commonName, "third.example")
            try Data(certificatePEM.utf8).write(to: URL(fileURLWithPath: files.certificatePath))
            try provider.reload()
            XCTAssertEqual(try handshake(port: port).commonName, "fourth.example")
        }
    }

    func testWatcherReloadsChangedFiles() throws {
        let files = try writePair("watched", hostname: "before.example")
        let provider = try TLSProvider(defaultCertificate: files)
        provider.startWatching(interval: .milliseconds(100))
        defer { provider.stopWatching() }
        try withServer(provider) { port in
            XCTAssertEqual(try handshake(port: port).commonName, "before.example")
            _ = try writePair("watched", hostname: "after.example")
            let deadline = Date().addingTimeInterval(10)
            var served = ""
            while Date() < deadline {
                served = try handshake(port: port).commonName
                if served == "after.example" { break }
                usleep(100_000)
            }
            XCTAssertEqual(served, "after.example", "the watcher should pick up the new files")
        }
    }

    // MARK: SNI and policy

    func testSNIPicksThePerDomainCertificateAndUnknownNamesGetTheDefault() throws {
        let main = try writePair("main", hostname: "mail.example.org")
        let other = try writePair("other", hostname: "mail.example.net")
        let provider = try TLSProvider(defaultCertificate: main, perDomain: ["Mail.Example.NET": other])
        try withServer(provider) { port in
            XCTAssertEqual(try handshake(port: port, serverName: "mail.example.net").commonName, "mail.example.net")
            XCTAssertEqual(try handshake(port: port, serverName: "MAIL.example.net").commonName, "mail.example.net")
            XCTAssertEqual(try handshake(port: port, serverName: "unknown.example").commonName, "mail.example.org")
            XCTAssertEqual(try handshake(port: port, serverName: nil).commonName, "mail.example.org")
        }
    }

    func testTLS13IsPreferredAndReportedWithItsCipher() throws {
        let provider = try TLSProvider(defaultCertificate: try writePair("main", hostname: "mx.example"))
        try withServer(provider) { port in
            let result = try handshake(port: port)
            XCTAssertEqual(result.version, .tlsv13)
            // The application handler learnt version and cipher from the pipeline.
            XCTAssertTrue(result.greeting.hasPrefix("hello TLSv1.3 with cipher TLS_"), result.greeting)
            XCTAssertFalse(result.greeting.contains("unknown"), result.greeting)
        }
    }

    func testTLS12UsesAnECDHEAEADSuiteAndIsReported() throws {
        let provider = try TLSProvider(defaultCertificate: try writePair("main", hostname: "mx.example"))
        try withServer(provider) { port in
            let result = try handshake(port: port, maximumVersion: .tlsv12)
            XCTAssertEqual(result.version, .tlsv12)
            XCTAssertTrue(result.greeting.hasPrefix("hello TLSv1.2 with cipher TLS_ECDHE_ECDSA_WITH_"), result.greeting)
            XCTAssertTrue(result.greeting.contains("GCM") || result.greeting.contains("CHACHA20"), result.greeting)
        }
    }

    func testOldVersionsAndWeakSuitesAreRefused() throws {
        let provider = try TLSProvider(defaultCertificate: try writePair("main", hostname: "mx.example"))
        try withServer(provider) { port in
            XCTAssertThrowsError(try handshake(port: port, minimumVersion: .tlsv1, maximumVersion: .tlsv1), "TLS 1.0")
            XCTAssertThrowsError(try handshake(port: port, minimumVersion: .tlsv1, maximumVersion: .tlsv11), "TLS 1.1")
            // CBC without forward secrecy is not in our TLS 1.2 list.
            XCTAssertThrowsError(try handshake(port: port, maximumVersion: .tlsv12, cipherSuites: "AES128-SHA:AES256-SHA"))
            XCTAssertThrowsError(try handshake(port: port, maximumVersion: .tlsv12, cipherSuites: "ECDHE-ECDSA-AES128-SHA"))
            XCTAssertNoThrow(try handshake(port: port, maximumVersion: .tlsv12, cipherSuites: "ECDHE-ECDSA-CHACHA20-POLY1305"))
        }
    }

    // MARK: TLS-ALPN-01 (RFC 8737)

    func testACMEChallengeCertificateIsServedOnlyForAcmeTLS1AndTheConnectionCarriesNoData() throws {
        let provider = try TLSProvider(defaultCertificate: try writePair("main", hostname: "mail.example.org"))
        let (challengeCertificate, challengeKey) = try TLSProvider.makeSelfSigned(hostnames: ["challenge-cert.example"])
        try provider.challenges.set(host: "Mail.Example.org", certificateChainPEM: challengeCertificate, privateKeyPEM: challengeKey)
        try withServer(provider) { port in
            let challenge = try handshake(port: port, serverName: "mail.example.org", alpn: ["acme-tls/1"])
            XCTAssertEqual(challenge.commonName, "challenge-cert.example")
            XCTAssertEqual(challenge.negotiatedProtocol, "acme-tls/1")
            XCTAssertEqual(challenge.greeting, "", "RFC 8737 §3: no application data on a validation connection")
            XCTAssertTrue(challenge.closedByServer)

            // Without ALPN, or for another name: the normal certificate and the protocol's greeting.
            let normal = try handshake(port: port, serverName: "mail.example.org")
            XCTAssertEqual(normal.commonName, "mail.example.org")
            XCTAssertNil(normal.negotiatedProtocol)
            XCTAssertTrue(normal.greeting.hasPrefix("hello "), normal.greeting)
            let otherName = try handshake(port: port, serverName: "other.example", alpn: ["acme-tls/1"])
            XCTAssertEqual(otherName.commonName, "mail.example.org")
            XCTAssertNil(otherName.negotiatedProtocol)

            provider.challenges.remove(host: "mail.example.org")
            XCTAssertEqual(try handshake(port: port, serverName: "mail.example.org", alpn: ["acme-tls/1"]).commonName, "mail.example.org")
        }
        XCTAssertThrowsError(try provider.challenges.set(host: "x.example", certificateChainPEM: challengeCertificate,
                                                         privateKeyPEM: try TLSProvider.makeSelfSigned(hostnames: ["y"]).key))
    }

    func testOpenSSLClientSeesTheChallengeCertificateOnlyWithAcmeTLS1() throws {
        guard let openssl = ["/usr/bin/openssl", "/usr/local/bin/openssl"].first(where: FileManager.default.isExecutableFile) else {
            throw XCTSkip("openssl is not installed")
        }
        let provider = try TLSProvider(defaultCertificate: try writePair("main", hostname: "mail.example.org"))
        let (challengeCertificate, challengeKey) = try TLSProvider.makeSelfSigned(hostnames: ["challenge-cert.example"])
        try provider.challenges.set(host: "mail.example.org", certificateChainPEM: challengeCertificate, privateKeyPEM: challengeKey)
        try withServer(provider) { port in
            let challenge = try run(openssl, ["s_client", "-connect", "127.0.0.1:\(port)", "-alpn", "acme-tls/1",
                                              "-servername", "mail.example.org"])
            XCTAssertTrue(challenge.contains("CN = challenge-cert.example"), challenge)
            XCTAssertTrue(challenge.contains("ALPN protocol: acme-tls/1"), challenge)
            let normal = try run(openssl, ["s_client", "-connect", "127.0.0.1:\(port)", "-servername", "mail.example.org"])
            XCTAssertTrue(normal.contains("CN = mail.example.org"), normal)
            XCTAssertFalse(normal.contains("challenge-cert"), normal)
            XCTAssertTrue(normal.contains("No ALPN negotiated"), normal)
        }
    }

    // MARK: Received header and configuration

    func testReceivedHeaderRecordsTLSVersionAndCipher() {
        var transaction = SMTPTransaction(id: "ABC123", sender: nil, recipients: [], heloName: "client.example",
                                          clientAddress: "192.0.2.1", receivedProtocol: "ESMTPS", size: 10)
        transaction.tls = TLSConnectionInfo(version: "TLSv1.3", cipher: "TLS_AES_128_GCM_SHA256").description
        let received = String(decoding: TraceHeaders.received(transaction: transaction, recipient: nil, hostname: "mx.example.org",
                                                              date: Date(timeIntervalSince1970: 1_796_000_000)), as: UTF8.self)
        XCTAssertEqual(received, """
        Received: from client.example ([192.0.2.1])\r
        \t(using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256)\r
        \tby mx.example.org (Facteur) with ESMTPS id ABC123; Mon, 30 Nov 2026 00:53:20 +0000\r

        """)
        transaction.tls = nil
        XCTAssertFalse(String(decoding: TraceHeaders.received(transaction: transaction, recipient: nil, hostname: "mx", date: Date()),
                              as: UTF8.self).contains("using"))
    }

    func testSessionCarriesTheTLSDescriptionIntoTheTransaction() {
        var session = SMTPSession(configuration: SMTPSessionConfiguration(hostname: "mx.example.org", tlsAvailable: true),
                                  clientAddress: "192.0.2.1")
        _ = session.start()
        _ = session.tlsEstablished(description: "TLSv1.2 with cipher TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
        XCTAssertTrue(session.tlsActive)
        XCTAssertEqual(session.tlsDescription, "TLSv1.2 with cipher TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
    }

    func testCipherNamesAndServerHelloReading() {
        XCTAssertEqual(TLSConnectionInfo.cipherName(0x1301), "TLS_AES_128_GCM_SHA256")
        XCTAssertEqual(TLSConnectionInfo.cipherName(0xC02F), "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
        XCTAssertEqual(TLSConnectionInfo.cipherName(0x0A), "0x000A")
        // record header, server_hello, version, random, empty session id, suite 0x1302
        let hello: [UInt8] = [22, 3, 3, 0, 60, 2, 0, 0, 56, 3, 3] + Array(repeating: 7, count: 32) + [0, 0x13, 0x02, 0]
        XCTAssertEqual(TLSServerHello.cipherSuite(in: hello), .some(.some(0x1302)))
        XCTAssertEqual(TLSServerHello.cipherSuite(in: Array(hello.prefix(20))), .none)
        XCTAssertEqual(TLSServerHello.cipherSuite(in: [21, 3, 3, 0, 2, 2, 70, 0, 0]), .some(.none), "an alert")
    }

    func testReloadIntervalIsConfigurable() throws {
        let configuration = try ServerConfiguration.parse("[tls]\nreload_interval = 2\n", file: "test.toml")
        XCTAssertEqual(configuration.tlsReloadIntervalSeconds, 2)
        XCTAssertEqual(ServerConfiguration().tlsReloadIntervalSeconds, 5)
        XCTAssertThrowsError(try ServerConfiguration.parse("[tls]\nreload_interval = 0\n", file: "test.toml"))
    }

    // MARK: ClientHello parser (hostile input)

    func testClientHelloParserReadsSNIAndALPNFromARealClientHello() throws {
        let hello = try realClientHello(serverName: "Mail.Example.org", alpn: ["acme-tls/1", "h2"])
        XCTAssertEqual(TLSClientHelloParser.parse(hello),
                       .clientHello(TLSClientHelloInfo(serverName: "mail.example.org", applicationProtocols: ["acme-tls/1", "h2"])))
        let bare = try realClientHello(serverName: nil, alpn: [])
        XCTAssertEqual(TLSClientHelloParser.parse(bare), .clientHello(TLSClientHelloInfo(serverName: nil, applicationProtocols: [])))
    }

    func testClientHelloParserHandlesEveryTruncationAndFragmentation() throws {
        let hello = try realClientHello(serverName: "mail.example.org", alpn: ["acme-tls/1"])
        let expected = TLSClientHelloParser.Result.clientHello(TLSClientHelloInfo(serverName: "mail.example.org", applicationProtocols: ["acme-tls/1"]))
        for length in 0..<hello.count {
            XCTAssertEqual(TLSClientHelloParser.parse(Array(hello.prefix(length))), .needMoreData, "prefix of \(length) bytes")
        }
        // The same handshake message split over two records (RFC 8446 §5.1).
        let body = Array(hello.dropFirst(5))
        for split in [1, 4, 10, body.count / 2, body.count - 1] {
            let first = Array(body.prefix(split)), second = Array(body.dropFirst(split))
            let fragmented = record(first) + record(second)
            XCTAssertEqual(TLSClientHelloParser.parse(fragmented), expected, "split at \(split)")
        }
    }

    func testClientHelloParserRefusesGarbageWithoutTrapping() throws {
        XCTAssertEqual(TLSClientHelloParser.parse(Array("EHLO example.org\r\n".utf8)), .notTLS)
        XCTAssertEqual(TLSClientHelloParser.parse([22, 3, 1, 0, 0]), .malformed, "empty record")
        XCTAssertEqual(TLSClientHelloParser.parse([22, 3, 1, 0xFF, 0xFF]), .malformed, "record over the limit")
        XCTAssertEqual(TLSClientHelloParser.parse(record([2, 0, 0, 4, 0, 0, 0, 0])), .malformed, "not a ClientHello")
        XCTAssertEqual(TLSClientHelloParser.parse(record([1, 0xFF, 0xFF, 0xFF])), .malformed, "ClientHello over the limit")
        // Random mutations of a real ClientHello: any answer but a crash.
        let hello = try realClientHello(serverName: "mail.example.org", alpn: ["acme-tls/1"])
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<5_000 {
            var mutated = hello
            for _ in 0..<Int.random(in: 1...8, using: &generator) {
                mutated[Int.random(in: 0..<mutated.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            }
            _ = TLSClientHelloParser.parse(mutated)
            _ = TLSClientHelloParser.parse(Array(mutated.prefix(Int.random(in: 0...mutated.count, using: &generator))))
        }
    }

    func testSilentClientIsNotGivenTheProtocolAndPlaintextIsRefused() throws {
        let provider = try TLSProvider(defaultCertificate: try writePair("main", hostname: "mx.example"))
        try withServer(provider) { port in
            // A plaintext client on an implicit-TLS port gets no greeting in the clear.
            let reply = try plaintextExchange(port: port, send: "EHLO client.example\r\n")
            XCTAssertFalse(reply.contains("hello"), reply)
        }
    }

    func testClientThatSendsNoClientHelloIsDroppedAfterTheTimeout() throws {
        let provider = try TLSProvider(defaultCertificate: try writePair("main", hostname: "mx.example"))
        let server = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try TLSServerPipeline.configureSync(channel: channel, provider: provider, clientHelloTimeout: .milliseconds(200)) { pipeline in
                        try pipeline.addHandler(Greeter())
                    }
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { try? server.close().wait() }
        let started = Date()
        // Half a record header, then silence: the server must hang up on its own.
        let reply = try plaintextExchange(port: server.localAddress!.port!, send: "\u{16}\u{03}", wait: .seconds(5))
        XCTAssertEqual(reply, "")
        XCTAssertLessThan(Date().timeIntervalSince(started), 3, "dropped by the ClientHello timeout, not by the test's")
    }

    func testSilentConnectionsAreBoundedBeforeTheClientHello() throws {
        // The protocols count a connection only once TLS is set up; until then this limiter does.
        let provider = try TLSProvider(defaultCertificate: try writePair("main", hostname: "mx.example"))
        let waiting = ConnectionLimiter(maxConnections: 100, maxPerAddress: 3)
        let server = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try TLSServerPipeline.configureSync(channel: channel, provider: provider, clientHelloTimeout: .seconds(30),
                                                        waitingLimiter: waiting) { pipeline in
                        try pipeline.addHandler(Greeter())
                    }
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { try? server.close().wait() }
        let port = server.localAddress!.port!
        var silent: [any Channel] = []
        for _ in 0..<3 {
            silent.append(try ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).wait())
        }
        let deadline = Date().addingTimeInterval(5)
        while waiting.activeConnections < 3, Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        XCTAssertEqual(waiting.activeConnections, 3)
        // A fourth silent connection from the same address is closed at once, not after 30 s.
        let started = Date()
        let fourth = try ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).wait()
        try fourth.closeFuture.wait()
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
        XCTAssertEqual(waiting.activeConnections, 3)
        for channel in silent { try channel.close().wait() }
        while waiting.activeConnections > 0, Date() < deadline.addingTimeInterval(5) { Thread.sleep(forTimeInterval: 0.02) }
        XCTAssertEqual(waiting.activeConnections, 0, "every slot is given back when the connections close")
    }

    // MARK: Helpers

    private func writePair(_ name: String, hostname: String) throws -> CertificateFiles {
        let files = CertificateFiles(certificatePath: directory.appendingPathComponent("\(name).crt").path,
                                     keyPath: directory.appendingPathComponent("\(name).key").path)
        let (certificate, key) = try TLSProvider.makeSelfSigned(hostnames: [hostname])
        try Data(certificate.utf8).write(to: URL(fileURLWithPath: files.certificatePath))
        try Data(key.utf8).write(to: URL(fileURLWithPath: files.keyPath))
        return files
    }

    private func record(_ payload: [UInt8]) -> [UInt8] {
        [22, 3, 1, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)] + payload
    }

    /// What NIOSSL's client sends first, captured by a plain TCP server.
    private func realClientHello(serverName: String?, alpn: [String]) throws -> [UInt8] {
        let group = MultiThreadedEventLoopGroup.singleton
        let captured = group.any().makePromise(of: [UInt8].self)
        let server = try ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(FirstBytes(promise: captured))
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { try? server.close().wait() }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        configuration.applicationProtocols = alpn
        let context = try NIOSSLContext(configuration: configuration)
        let client = try ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: serverName))
                }
            }
            .connect(host: "127.0.0.1", port: server.localAddress!.port!).wait()
        defer { client.close(promise: nil) }
        return try captured.futureResult.wait()
    }

    private func withServer(_ provider: TLSProvider, _ body: (Int) throws -> Void) throws {
        let server = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try TLSServerPipeline.configureSync(channel: channel, provider: provider) { pipeline in
                        try pipeline.addHandler(Greeter())
                    }
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { try? server.close().wait() }
        try body(server.localAddress!.port!)
    }

    struct HandshakeResult {
        var commonName: String
        var negotiatedProtocol: String?
        var version: TLSVersion?
        var greeting: String
        var closedByServer: Bool
    }

    /// Connects with TLS, waits for the greeting line (or the close), and reports what was served.
    private func handshake(port: Int, serverName: String? = nil, alpn: [String] = [],
                           minimumVersion: TLSVersion = .tlsv12, maximumVersion: TLSVersion? = nil,
                           cipherSuites: String? = nil) throws -> HandshakeResult {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        configuration.applicationProtocols = alpn
        configuration.minimumTLSVersion = minimumVersion
        configuration.maximumTLSVersion = maximumVersion
        if let cipherSuites { configuration.cipherSuites = cipherSuites }
        let context = try NIOSSLContext(configuration: configuration)
        let group = MultiThreadedEventLoopGroup.singleton
        let done = group.any().makePromise(of: HandshakeResult.self)
        let channel = try ClientBootstrap(group: group)
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: serverName))
                    try channel.pipeline.syncOperations.addHandler(HandshakeObserver(promise: done))
                }
            }
            .connect(host: "127.0.0.1", port: port).wait()
        let timeout = channel.eventLoop.scheduleTask(in: .seconds(10)) {
            done.fail(HandshakeTimeout())
            channel.close(promise: nil)
        }
        defer { timeout.cancel(); channel.close(promise: nil) }
        return try done.futureResult.wait()
    }

    private func run(_ executable: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle(forReadingAtPath: "/dev/null")
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    private func plaintextExchange(port: Int, send text: String, wait: TimeAmount = .seconds(5)) throws -> String {
        let group = MultiThreadedEventLoopGroup.singleton
        let captured = group.any().makePromise(of: [UInt8].self)
        let channel = try ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(FirstBytes(promise: captured))
                }
            }
            .connect(host: "127.0.0.1", port: port).wait()
        defer { channel.close(promise: nil) }
        try channel.writeAndFlush(ByteBuffer(string: text)).wait()
        let timeout = channel.eventLoop.scheduleTask(in: wait) { captured.succeed(Array("timeout".utf8)) }
        defer { timeout.cancel() }
        return String(decoding: try captured.futureResult.wait(), as: UTF8.self)
    }
}

struct HandshakeTimeout: Error {}

/// The stand-in protocol handler: greets with the TLS facts once the handshake is done.
private final class Greeter: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private var collector = TLSConnectionInfoCollector()

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let info = collector.observe(event, context: context) {
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "hello \(info)\r\n")), promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

/// Client side: records the peer certificate and ALPN result, then the first line or the close.
private final class HandshakeObserver: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let promise: EventLoopPromise<TLSProviderTests.HandshakeResult>
    private var result: TLSProviderTests.HandshakeResult?
    private var received = ""

    init(promise: EventLoopPromise<TLSProviderTests.HandshakeResult>) { self.promise = promise }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tls = event as? TLSUserEvent, case .handshakeCompleted(let negotiated) = tls {
            let handler = try? context.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self)
            var name = ""
            if let der = try? handler?.peerCertificate?.toDERBytes(), let certificate = try? Certificate(derEncoded: der) {
                // "CN=mail.example.org": our test certificates have a single CN.
                name = certificate.subject.description.replacingOccurrences(of: "CN=", with: "")
            }
            result = .init(commonName: name, negotiatedProtocol: negotiated, version: handler?.tlsVersion, greeting: "", closedByServer: false)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        received += buffer.readString(length: buffer.readableBytes) ?? ""
        if received.contains("\r\n"), var result {
            result.greeting = received.trimmingCharacters(in: .whitespacesAndNewlines)
            promise.succeed(result)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if var result {
            result.greeting = received
            result.closedByServer = true
            promise.succeed(result)
        } else {
            promise.fail(ChannelError.eof)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if result == nil { promise.fail(error) }
        context.close(promise: nil)
    }
}

/// Collects whatever arrives until a pause, then completes (used for the raw ClientHello).
private final class FirstBytes: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let promise: EventLoopPromise<[UInt8]>
    private var bytes: [UInt8] = []
    private var scheduled: Scheduled<Void>?

    init(promise: EventLoopPromise<[UInt8]>) { self.promise = promise }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        bytes += unwrapInboundIn(data).readableBytesView
        scheduled?.cancel()
        let collected = bytes
        let promise = self.promise
        scheduled = context.eventLoop.scheduleTask(in: .milliseconds(300)) { promise.succeed(collected) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        scheduled?.cancel()
        promise.succeed(bytes)
    }
}
