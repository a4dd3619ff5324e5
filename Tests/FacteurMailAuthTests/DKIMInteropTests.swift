// Interop with dkimpy (Debian python3-dkim): messages we sign verify in dkimpy, and messages
// `dkimsign` signs verify here, for rsa-sha256 and ed25519-sha256. dkimverify's command line
// resolves keys through real DNS, so the verifying side uses dkimpy's `dkim.verify` with a
// `dnsfunc` serving the test key — the same code path dkimverify runs. Skipped when dkimpy is
// missing, unless FACTEUR_REQUIRE_ALL=1.

import FacteurDNS
import FacteurMIME
import FacteurMailAuth
import Foundation
import XCTest

final class DKIMInteropTests: XCTestCase {
    func requireDkimpy() throws {
        let present = FileManager.default.isExecutableFile(atPath: "/usr/bin/dkimsign")
            && run("/usr/bin/python3", ["-c", "import dkim"]).status == 0
        if !present {
            if ProcessInfo.processInfo.environment["FACTEUR_REQUIRE_ALL"] == "1" {
                XCTFail("dkimpy missing: apt-get install -y python3-dkim")
            }
            throw XCTSkip("dkimpy not installed (apt-get install -y python3-dkim); interop not tested")
        }
    }

    @discardableResult
    func run(_ path: String, _ arguments: [String], input: [UInt8] = []) -> (status: Int32, output: [UInt8], error: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let stdinPipe = Pipe(), stdoutPipe = Pipe(), stderrPipe = Pipe()
        process.standardInput = stdinPipe
        process.standardOutput = stdoutPipe
        process.standardError = stderrPipe
        do { try process.run() } catch { return (-1, [], "\(error)") }
        stdinPipe.fileHandleForWriting.write(Data(input))
        try? stdinPipe.fileHandleForWriting.close()
        let output = stdoutPipe.fileHandleForReading.readDataToEndOfFile()
        let error = stderrPipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, [UInt8](output), String(decoding: error, as: UTF8.self))
    }

    /// dkimpy verifies `message` with `record` served for every key lookup; returns its verdict.
    func dkimpyVerifies(_ message: [UInt8], record: String) -> Bool {
        let script = """
        import sys, dkim
        record = sys.argv[1].encode()
        msg = sys.stdin.buffer.read()
        d = dkim.DKIM(msg)
        ok = True
        n = len([l for l in msg.split(b"\\r\\n") if l.lower().startswith(b"dkim-signature:")])
        for i in range(n):
            ok = ok and d.verify(idx=i, dnsfunc=lambda name, timeout=5: record)
        print("PASS" if ok and n > 0 else "FAIL")
        """
        let result = run("/usr/bin/python3", ["-c", script, record], input: message)
        return String(decoding: result.output, as: UTF8.self).contains("PASS")
    }

    func testOurSignaturesVerifyInDkimpy() throws {
        try requireDkimpy()
        let rsa = try DKIMTests.rsaKey(pem: DKIMTests.text("dkimpy/2048_testkey.key"))
        let ed = try DKIMTests.ed25519Key(seedBase64: DKIMTests.text("rfc8463/a1-ed25519-private.b64"))
        for key in [DKIMSigningKey.rsa(rsa), .ed25519(ed)] {
            for file in ["dkimpy/test.message", "dkimpy/rfc6376.msg", "dkimpy/rfc6376.w1258.msg", "dkimpy/test_extra.message"] {
                let message = DKIMMessage.withCRLF(try DKIMTests.data(file))
                let signer = DKIMSigner(domain: "example.com", selector: "test", key: key)
                let signed = Array(try signer.sign(message: message).utf8) + message
                XCTAssertTrue(dkimpyVerifies(signed, record: key.dnsRecord), "\(key.algorithm) \(file)")
                // And a tampered copy must not verify there either.
                var tampered = signed
                tampered.append(contentsOf: Array("tampered\r\n".utf8))
                XCTAssertFalse(dkimpyVerifies(tampered, record: key.dnsRecord), "\(key.algorithm) \(file) tampered")
            }
        }
    }

    func testDkimsignSignaturesVerifyHere() async throws {
        try requireDkimpy()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("facteur-dkim-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let rsaPath = directory.appendingPathComponent("rsa.key")
        let edPath = directory.appendingPathComponent("ed.key")
        try Data(DKIMTests.data("dkimpy/test.private")).write(to: rsaPath)
        try Data(DKIMTests.data("rfc8463/a1-ed25519-private.b64")).write(to: edPath)
        var resolver = StaticResolver()
        resolver.add(DNSResourceRecord(name: try DNSName("rsa._domainkey.example.com"), ttl: 300,
                                       data: .txt(TXTRecord(text: try DKIMTests.text("dkimpy/test.txt").trimmingCharacters(in: .whitespacesAndNewlines)))))
        resolver.add(DNSResourceRecord(name: try DNSName("ed._domainkey.example.com"), ttl: 300,
                                       data: .txt(TXTRecord(text: "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="))))
        let verifier = DKIMVerifier(resolver: resolver)
        for file in ["dkimpy/test.message", "dkimpy/rfc6376.msg", "dkimpy/rfc6376.w1258.msg"] {
            let message = DKIMMessage.withCRLF(try DKIMTests.data(file))
            for (selector, keyPath, extra) in [("rsa", rsaPath, [String]()), ("ed", edPath, ["--signalg", "ed25519-sha256"])] {
                for canon in ["relaxed/relaxed", "simple/simple"] {
                    let hc = String(canon.split(separator: "/")[0]), bc = String(canon.split(separator: "/")[1])
                    let result = run("/usr/bin/dkimsign", extra + ["--hcanon", hc, "--bcanon", bc, selector, "example.com", keyPath.path],
                                     input: message)
                    XCTAssertEqual(result.status, 0, result.error)
                    let signed = DKIMMessage.withCRLF(result.output)
                    let results = await verifier.verify(message: signed)
                    XCTAssertEqual(results.map(\.result), [.pass], "\(file) \(selector) \(canon): \(results.map(\.reason)) \(result.error)")
                    var tampered = signed
                    tampered.append(contentsOf: Array("x\r\n".utf8))
                    let bad = await verifier.verify(message: tampered)
                    XCTAssertEqual(bad.map(\.result), [.fail], "\(file) \(selector) tampered")
                }
            }
        }
    }

    /// l= (RFC 6376 §3.4.5): dkimpy signs with a body length; text appended afterwards still
    /// verifies, a change inside the signed part does not.
    func testBodyLengthSignedByDkimpy() async throws {
        try requireDkimpy()
        let script = """
        import sys, dkim
        key = open(sys.argv[1], "rb").read()
        msg = sys.stdin.buffer.read()
        sig = dkim.sign(msg, b"rsa", b"example.com", key, length=True,
                        canonicalize=(b"relaxed", b"simple"), include_headers=[b"from", b"subject"])
        sys.stdout.buffer.write(sig + msg)
        """
        let keyPath = try SPFSuiteTests.fixture("dkim/dkimpy/test.private").path
        let message = DKIMMessage.withCRLF(try DKIMTests.data("dkimpy/test.message"))
        let result = run("/usr/bin/python3", ["-c", script, keyPath], input: message)
        XCTAssertEqual(result.status, 0, result.error)
        let signed = DKIMMessage.withCRLF(result.output)
        XCTAssertTrue(String(decoding: signed, as: UTF8.self).contains("l="))
        var resolver = StaticResolver()
        resolver.add(DNSResourceRecord(name: try DNSName("rsa._domainkey.example.com"), ttl: 300,
                                       data: .txt(TXTRecord(text: try DKIMTests.text("dkimpy/test.txt").trimmingCharacters(in: .whitespacesAndNewlines)))))
        let verifier = DKIMVerifier(resolver: resolver)
        let plain = await verifier.verify(message: signed)
        XCTAssertEqual(plain.map(\.result), [.pass], plain.map(\.reason).description)
        XCTAssertNotNil(plain.first?.signature?.bodyLength)
        let appended = await verifier.verify(message: signed + Array("appended by a list\r\n".utf8))
        XCTAssertEqual(appended.map(\.result), [.pass])
        // Shortening the body below l= fails.
        let header = MessageHeader(parsing: signed)
        let truncated = Array(signed[..<(header.bodyOffset + 5)])
        let short = await verifier.verify(message: truncated)
        XCTAssertEqual(short.map(\.result), [.fail])
    }
}
