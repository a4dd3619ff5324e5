// The SMTP client's side of RFC 8689 §5: a REQUIRETLS message carries the REQUIRETLS parameter on
// MAIL FROM to a server that offers the extension, and is not sent at all (550 5.7.30) to one that
// does not. Also the TLS details' log text when no TLS was negotiated.

import Foundation
import FacteurNet
import XCTest
@testable import FacteurQueue

final class REQUIRETLSClientTests: XCTestCase {
    let config = SMTPClientConfiguration(heloName: "out.example.net", timeouts: .uniform(.seconds(5)))
    let message = crlf("From: a@example.net\nTo: b@example.org\nSubject: hi\n\nbody\n")

    func testREQUIRETLSParameterGoesOnMAILFROMWhenOffered() async throws {
        let server = try await ScriptedSMTPServer(script: acceptingScript(ehlo: ["PIPELINING", "REQUIRETLS"]))
        let connection = try await SMTPClientConnection.open(hostname: "s", address: "127.0.0.1", port: server.port, configuration: config)
        let results = try await connection.send(SMTPClientEnvelope(sender: "a@example.net", recipients: [.init(address: "b@example.org")],
                                                                   requireTLS: true), message: message)
        XCTAssertEqual(results.map(\.reply.code), [250])
        XCTAssertEqual(server.commands.filter { $0.hasPrefix("MAIL") }, ["MAIL FROM:<a@example.net> REQUIRETLS"])
        let info = await connection.tlsInfo
        XCTAssertNil(info, "no STARTTLS offered, no TLS details")
        await connection.quit()
        await server.stop()
    }

    func testREQUIRETLSMessageIsNotSentToAServerWithoutTheExtension() async throws {
        let server = try await ScriptedSMTPServer(script: acceptingScript(ehlo: ["PIPELINING"]))
        let connection = try await SMTPClientConnection.open(hostname: "s", address: "127.0.0.1", port: server.port, configuration: config)
        let results = try await connection.send(SMTPClientEnvelope(sender: "a@example.net", recipients: [.init(address: "b@example.org")],
                                                                   requireTLS: true), message: message)
        XCTAssertEqual(results.map(\.reply.code), [550])
        XCTAssertTrue(results.first?.reply.description.contains("5.7.30") == true, "\(results)")
        XCTAssertTrue(results.first?.local == true)
        XCTAssertFalse(server.commands.contains { $0.hasPrefix("MAIL") }, "nothing sent")
        // An ordinary message on the same connection goes without the parameter.
        let plain = try await connection.send(SMTPClientEnvelope(sender: "a@example.net", recipients: [.init(address: "b@example.org")]),
                                              message: message)
        XCTAssertEqual(plain.map(\.reply.code), [250])
        XCTAssertEqual(server.commands.filter { $0.hasPrefix("MAIL") }, ["MAIL FROM:<a@example.net>"])
        await connection.quit()
        await server.stop()
    }

    func testServerHelloCipherSuiteIsRead() {
        // A TLS 1.3 ServerHello header: record, handshake type 2, version, random, 32-octet session id, suite.
        var hello: [UInt8] = [22, 3, 3, 0, 90, 2, 0, 0, 86, 3, 3] + [UInt8](repeating: 7, count: 32) + [32] + [UInt8](repeating: 1, count: 32)
        XCTAssertNil(TLSServerHello.cipherSuite(in: hello), "needs the suite's two octets")
        hello += [0x13, 0x02, 0]
        XCTAssertEqual(TLSServerHello.cipherSuite(in: hello), .some(0x1302))
        XCTAssertEqual(TLSConnectionInfo.cipherName(0x1302), "TLS_AES_256_GCM_SHA384")
        XCTAssertEqual(TLSConnectionInfo.cipherName(0x00FF), "0x00FF")
        XCTAssertEqual(TLSServerHello.cipherSuite(in: [21, 3, 3, 0, 2, 2, 40]), .some(nil), "an alert")
        XCTAssertEqual(TLSServerHello.cipherSuite(in: [22, 3, 3, 0, 4, 1, 0, 0, 0]), .some(nil), "not a ServerHello")
    }

    func testTLSInfoLogText() {
        XCTAssertEqual(SMTPClientTLSInfo(version: nil, verification: .none).logText, "tls=none")
        XCTAssertEqual(SMTPClientTLSInfo(version: "TLSv1.3", verification: .daneEE).logText, "tls=TLSv1.3 verified=dane-ee")
        XCTAssertEqual(SMTPClientTLSInfo(version: "TLSv1.2", cipher: "TLS_AES_256_GCM_SHA384", verification: .webPKI,
                                         failure: .certificateExpired).logText,
                       "tls=TLSv1.2 cipher=TLS_AES_256_GCM_SHA384 verified=webpki policy-failure=certificate-expired")
    }
}
