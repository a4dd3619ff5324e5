// Checks our SCRAM server and our stored formats against an independent implementation:
// Python's `scramp` (pip install scramp) as the SCRAM client, and Python's hashlib for
// scrypt. Skipped with a message when python3 or scramp is missing, unless
// FACTEUR_REQUIRE_ALL=1, in which case that is a failure.

import FacteurStore
import Foundation
import XCTest
@testable import FacteurIdentity

final class ScrampInteropTests: XCTestCase {
    static let script = #"""
    import base64, hashlib, sys
    from scramp import ScramClient, ScramMechanism

    def out(line):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def read():
        return sys.stdin.readline().rstrip("\n")

    mode = sys.argv[1]
    if mode == "client":
        client = ScramClient(["SCRAM-SHA-256"], sys.argv[2], sys.argv[3])
        out(client.get_client_first())
        client.set_server_first(read())
        out(client.get_client_final())
        try:
            client.set_server_final(read())
            out("OK")
        except Exception as error:
            out("FAIL " + str(error).replace("\n", " "))
    elif mode == "keys":
        salt, stored, server, i = ScramMechanism().make_auth_info(sys.argv[2], iteration_count=int(sys.argv[4]),
                                                                  salt=base64.b64decode(sys.argv[3]))
        out(base64.b64encode(stored).decode() + ":" + base64.b64encode(server).decode())
    elif mode == "scrypt":
        _, _, params, salt, digest = sys.argv[3].split("$")
        p = dict(kv.split("=") for kv in params.split(","))
        def unb64(s):
            return base64.b64decode(s + "=" * (-len(s) % 4))
        expected = unb64(digest)
        n, r, par = 1 << int(p["ln"]), int(p["r"]), int(p["p"])
        got = hashlib.scrypt(sys.argv[2].encode(), salt=unb64(salt), n=n, r=r, p=par,
                             maxmem=256 * 1024 * 1024, dklen=len(expected))
        out("OK" if got == expected else "MISMATCH")
    """#

    /// A python3 process running `script` in `mode`, talked to line by line.
    final class Python {
        let process = Process()
        let input = Pipe()
        let output = Pipe()
        private var buffer: [UInt8] = []

        init(_ arguments: [String]) throws {
            let scriptURL = FileManager.default.temporaryDirectory.appendingPathComponent("facteur-scramp-\(getpid()).py")
            try ScrampInteropTests.script.write(to: scriptURL, atomically: true, encoding: .utf8)
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", scriptURL.path] + arguments
            process.standardInput = input
            process.standardOutput = output
            try process.run()
        }

        func send(_ line: String) {
            input.fileHandleForWriting.write(Data((line + "\n").utf8))
        }

        func readLine() -> String? {
            while true {
                if let newline = buffer.firstIndex(of: 0x0A) {
                    let line = String(decoding: buffer[..<newline], as: UTF8.self)
                    buffer.removeSubrange(...newline)
                    return line
                }
                let chunk = output.fileHandleForReading.availableData
                if chunk.isEmpty { return nil }
                buffer += chunk
            }
        }

        deinit {
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
        }
    }

    override func setUpWithError() throws {
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        probe.arguments = ["python3", "-c", "import scramp"]
        probe.standardOutput = FileHandle.nullDevice
        probe.standardError = FileHandle.nullDevice
        var available = false
        if (try? probe.run()) != nil {
            probe.waitUntilExit()
            available = probe.terminationStatus == 0
        }
        guard !available else { return }
        let message = "python3 with scramp is not available (pip install scramp)"
        if ProcessInfo.processInfo.environment["FACTEUR_REQUIRE_ALL"] == "1" {
            XCTFail("\(message); FACTEUR_REQUIRE_ALL=1 makes this a failure")
            throw XCTSkip(message)
        }
        throw XCTSkip("\(message); skipping the interoperability tests")
    }

    /// scramp as the client, our `SASLMechanism` as the server. Returns scramp's verdict
    /// on our server-final message and ours on its proof.
    func exchange(user: String, clientPassword: String, stored: StoredCredentials?) throws -> (SASLStep, String?) {
        let python = try Python(["client", user, clientPassword])
        var scram = SASLMechanism(.scramSHA256)
        let clientFirst = try XCTUnwrap(python.readLine())
        guard case .needCredentials = scram.step(bytes(clientFirst)) else { XCTFail("client-first: \(clientFirst)"); return (.failure(.malformed), nil) }
        guard case .challenge(let serverFirst) = scram.provide(stored) else { XCTFail("no server-first"); return (.failure(.malformed), nil) }
        python.send(text(serverFirst))
        let clientFinal = try XCTUnwrap(python.readLine())
        let result = scram.step(bytes(clientFinal))
        switch result {
        case .success(_, _, let finalData?): python.send(text(finalData))
        case .failure(let failure): python.send(text(failure.serverFinalMessage ?? bytes("e=other-error")))
        default: python.send("e=other-error")
        }
        return (result, python.readLine())
    }

    func testScrampClientAuthenticates() throws {
        let stored = try Credentials.make(password: "pencil", hasher: cheapHasher)
        let (step, verdict) = try exchange(user: "Alice@Example.org", clientPassword: "pencil", stored: stored)
        guard case .success(let authcid, nil, _) = step else { return XCTFail("\(step)") }
        XCTAssertEqual(authcid, "alice@example.org")
        XCTAssertEqual(verdict, "OK", "scramp accepted our server signature")
    }

    func testScrampClientWithWrongPasswordIsRefused() throws {
        let stored = try Credentials.make(password: "pencil", hasher: cheapHasher)
        let (step, verdict) = try exchange(user: "alice@example.org", clientPassword: "crayon", stored: stored)
        XCTAssertEqual(step, .failure(SASLFailure(.authenticationFailed, scramError: "invalid-proof")))
        XCTAssertTrue(verdict?.hasPrefix("FAIL") ?? false, verdict ?? "no verdict")
    }

    func testScrampClientUnknownUserIsRefused() throws {
        let (step, _) = try exchange(user: "nobody@example.org", clientPassword: "pencil", stored: nil)
        XCTAssertEqual(step, .failure(SASLFailure(.authenticationFailed, scramError: "invalid-proof")))
    }

    /// Both sides apply SASLprep: a password set with an ASCII space matches a client
    /// typing a no-break space (RFC 4013 §2.1 maps it to U+0020).
    func testSASLprepAgreesWithScramp() throws {
        let stored = try Credentials.make(password: "pen cil", hasher: cheapHasher)
        let (step, verdict) = try exchange(user: "alice@example.org", clientPassword: "pen\u{00A0}cil", stored: stored)
        guard case .success = step else { return XCTFail("\(step)") }
        XCTAssertEqual(verdict, "OK")
    }

    func testStoredKeysMatchScramp() throws {
        let salt = Bytes.random(count: 16)
        let ours = try SCRAMCredentials.derive(preparedPassword: bytes("Grüße, Welt"), salt: salt, iterations: 4096)
        let python = try Python(["keys", "Grüße, Welt", Bytes.base64(salt), "4096"])
        XCTAssertEqual(python.readLine(), "\(Bytes.base64(ours.storedKey)):\(Bytes.base64(ours.serverKey))")
    }

    func testScryptHashMatchesHashlib() throws {
        let phc = try cheapHasher.hash(bytes("correct horse"))
        let python = try Python(["scrypt", "correct horse", phc])
        XCTAssertEqual(python.readLine(), "OK", phc)
    }
}
