// Interop with OpenDKIM 2.11 (Debian opendkim-tools and its libopendkim), both ways:
//
// - Facteur signs (rsa-sha256, ed25519-sha256; RFC 6376, RFC 8463) and `opendkim-testmsg` verifies.
//   opendkim-testmsg looks keys up through the system resolver only, so each check runs in a
//   private mount+network+PID namespace (`unshare`) where /etc/resolv.conf is bind-mounted to point
//   at an unbound on 127.0.0.1:53 serving the key records. The host's resolv.conf and network
//   are untouched, and everything in the namespace dies with it.
// - OpenDKIM signs and Facteur's DKIMVerifier verifies. `opendkim-testmsg` itself always signs
//   rsa-sha1 (relaxed/simple), which RFC 8301 §3.1 forbids verifiers to accept: that test checks
//   Facteur fails it for that reason and nothing else (dkimpy, when installed, still verifies it).
//   The rsa-sha256 and ed25519-sha256 signatures come from libopendkim's `dkim_sign()` itself,
//   called through Python's ctypes.
//
// Skipped with the reason when not root or when a tool is missing, unless FACTEUR_REQUIRE_ALL=1.

import Crypto
import _CryptoExtras
import FacteurDNS
import FacteurMIME
import FacteurMailAuth
import FacteurTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class DKIMOpenDKIMInteropTests: XCTestCase {
    static let domain = "example.com"

    // MARK: tools

    struct Tools {
        var testmsg: String
        var unbound: String
        var unshare: String
        var ip: String
    }

    static func firstExecutable(_ candidates: [String]) -> String? {
        candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Skips (or, with FACTEUR_REQUIRE_ALL=1, fails) with the reason.
    static func unavailable(_ why: String) throws -> Never {
        if ProcessInfo.processInfo.environment["FACTEUR_REQUIRE_ALL"] == "1" {
            XCTFail(why)
        }
        throw XCTSkip(why)
    }

    /// What the opendkim-testmsg checks need: root (for the namespaces), the tools, and a kernel
    /// that lets us create the namespaces.
    static func requireNamespaceTools() throws -> Tools {
        guard getuid() == 0 else {
            try unavailable("not root: opendkim-testmsg needs a private network namespace (unshare) to resolve the test keys")
        }
        guard let testmsg = firstExecutable(["/usr/sbin/opendkim-testmsg", "/usr/bin/opendkim-testmsg"]) else {
            try unavailable("opendkim-testmsg missing (apt-get install -y opendkim-tools)")
        }
        guard let unbound = UnboundProcess.executable() else { try unavailable("unbound missing (apt-get install -y unbound)") }
        guard let unshare = firstExecutable(["/usr/bin/unshare", "/bin/unshare"]) else { try unavailable("unshare missing (util-linux)") }
        guard let ip = firstExecutable(["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]) else {
            try unavailable("ip missing (apt-get install -y iproute2)")
        }
        let probe = run(unshare, ["-mnp", "--fork", "--kill-child", "/bin/true"])
        guard probe.status == 0 else { try unavailable("cannot create namespaces here (unshare: \(probe.error))") }
        return Tools(testmsg: testmsg, unbound: unbound, unshare: unshare, ip: ip)
    }

    struct Output {
        var status: Int32
        var output: [UInt8]
        var error: String
        var text: String { String(decoding: output, as: UTF8.self) }
    }

    /// Runs a program with `input` on standard input; output and errors go through files, so no
    /// pipe can fill up and block either side. Killed after `timeout` seconds.
    @discardableResult
    static func run(_ path: String, _ arguments: [String], input: [UInt8] = [], timeout: TimeInterval = 60) -> Output {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("facteur-run-\(UUID().uuidString)")
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            return Output(status: -1, output: [], error: "\(error)")
        }
        defer { try? FileManager.default.removeItem(at: directory) }
        let inURL = directory.appendingPathComponent("in"), outURL = directory.appendingPathComponent("out")
        let errURL = directory.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: inURL.path, contents: Data(input))
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        do {
            process.standardInput = try FileHandle(forReadingFrom: inURL)
            process.standardOutput = try FileHandle(forWritingTo: outURL)
            process.standardError = try FileHandle(forWritingTo: errURL)
            try process.run()
        } catch {
            return Output(status: -1, output: [], error: "\(error)")
        }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        var timedOut = false
        if process.isRunning {
            process.terminate()
            timedOut = true
        }
        process.waitUntilExit()
        let output = (try? Data(contentsOf: outURL)).map { [UInt8]($0) } ?? []
        var error = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
        if timedOut { error += "\n(killed after \(Int(timeout)) s)" }
        return Output(status: process.terminationStatus, output: output, error: error)
    }

    // MARK: messages

    /// The messages every direction is checked with: the dkimpy and RFC 6376 fixtures, and a few
    /// made here for canonicalization corners (folded and padded fields, trailing blank lines and
    /// whitespace in the body, an empty body, a 10 KB body).
    static func sampleMessages() throws -> [(name: String, bytes: [UInt8])] {
        var messages: [(String, [UInt8])] = []
        for file in ["dkimpy/test.message", "dkimpy/rfc6376.msg", "dkimpy/rfc6376.w1258.msg", "dkimpy/test_extra.message",
                     "rfc6376/a1-unsigned.eml"] {
            messages.append((file, DKIMMessage.withCRLF(try DKIMTests.data(file))))
        }
        messages.append(("folded", Array((
            "From:   Folded Sender <sender@example.com>  \r\n"
            + "To: one@example.org,\r\n\ttwo@example.org,\r\n   three@example.org\r\n"
            + "Subject: a subject\r\n that is folded\t \r\n\tthree times\r\n"
            + "Date: Thu, 27 Nov 2025 10:00:00 +0000\r\n"
            + "Message-ID: <folded@example.com>\r\n"
            + "MIME-Version: 1.0\r\n"
            + "Content-Type: text/plain;\r\n charset=utf-8\r\n"
            + "\r\n"
            + "Trailing spaces here   \r\n"
            + "\tand a tab  \t inside\r\n"
            + "\r\n"
            + "\u{e9}t\u{e9} \u{e0} Paris\r\n"
            + "\r\n\r\n\r\n").utf8)))
        messages.append(("empty-body", Array(
            "From: sender@example.com\r\nTo: rcpt@example.org\r\nSubject: nothing\r\nDate: Thu, 27 Nov 2025 10:00:00 +0000\r\n\r\n".utf8)))
        var large = "From: Bench <bench@example.com>\r\nTo: rcpt@example.org\r\nSubject: ten kilobytes\r\n"
            + "Date: Thu, 27 Nov 2025 10:00:00 +0000\r\nMessage-ID: <large@example.com>\r\n\r\n"
        while large.utf8.count < 10_240 { large += "The quick brown fox jumps over the lazy dog; 0123456789 abcdefghijklmnopqrst\r\n" }
        messages.append(("10k", Array(large.utf8)))
        return messages
    }

    /// Changes one word of the body (after the header block).
    static func tamperedBody(_ message: [UInt8]) -> [UInt8] {
        let header = MessageHeader(parsing: message)
        var bytes = message
        bytes.insert(contentsOf: Array("Tampered: ".utf8), at: header.bodyOffset)
        return bytes
    }

    /// Changes the Subject (a signed field): "Subject:" becomes "Subject: Re:". On bytes: some
    /// samples are not UTF-8.
    static func tamperedHeader(_ message: [UInt8]) -> [UInt8] {
        let needle = Array("\r\nSubject:".utf8)
        guard message.count > needle.count,
              let start = (0...(message.count - needle.count)).first(where: { Array(message[$0..<($0 + needle.count)]) == needle }) else {
            XCTFail("no Subject field to change")
            return message
        }
        var bytes = message
        bytes.insert(contentsOf: Array(" Re:".utf8), at: start + needle.count)
        return bytes
    }

    // MARK: opendkim-testmsg as the verifier

    struct Verdict {
        var status: Int32
        var error: String
    }

    /// Runs `opendkim-testmsg` (verify mode) on each message, inside a namespace whose resolver is
    /// an unbound serving `records` (owner name → TXT value) in the zone of `domain`.
    func openDKIMVerify(_ messages: [(name: String, bytes: [UInt8])], records: [(name: String, value: String)],
                        tools: Tools) throws -> [String: Verdict] {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("facteur-opendkim-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.path
        try "nameserver 127.0.0.1\noptions timeout:2 attempts:2\n".write(
            toFile: "\(path)/resolv.conf", atomically: true, encoding: .utf8)
        var config = [
            "server:",
            "  interface: 127.0.0.1",
            "  port: 53",
            "  do-daemonize: no",
            "  chroot: \"\"",
            "  username: \"\"",
            "  directory: \"\(path)\"",
            "  pidfile: \"\(path)/unbound.pid\"",
            "  use-syslog: no",
            "  logfile: \"\"",
            "  verbosity: 1",
            "  num-threads: 1",
            "  do-ip6: no",
            "  access-control: 127.0.0.0/8 allow",
            "  module-config: \"iterator\"",
            // Nothing leaves the namespace anyway (it has only lo); refuse the rest outright.
            "  local-zone: \".\" refuse",
            "  local-zone: \"\(Self.domain).\" static",
            "  local-data: \"\(Self.domain). 300 IN SOA ns.\(Self.domain). hostmaster.\(Self.domain). 1 3600 600 86400 60\"",
        ]
        for record in records {
            config.append("  local-data: '\(record.name). 300 IN TXT \(UnboundProcess.txt(record.value))'")
        }
        config += ["remote-control:", "  control-enable: no", ""]
        try config.joined(separator: "\n").write(toFile: "\(path)/unbound.conf", atomically: true, encoding: .utf8)
        for (index, message) in messages.enumerated() {
            try Data(message.bytes).write(to: URL(fileURLWithPath: "\(path)/msg-\(index).eml"))
        }
        // Runs as PID 1 of the new PID namespace: when it ends (or unshare is killed), unbound goes too.
        let script = """
            set -u
            dir="$1"
            \(tools.ip) link set lo up || exit 90
            mount --bind "$dir/resolv.conf" /etc/resolv.conf || exit 91
            \(tools.unbound) -d -c "$dir/unbound.conf" >"$dir/unbound.log" 2>&1 &
            ub=$!
            n=0
            until grep -q "start of service" "$dir/unbound.log"; do
              n=$((n + 1)); [ "$n" -gt 400 ] && exit 92
              kill -0 "$ub" 2>/dev/null || exit 93
              sleep 0.05
            done
            i=0
            while [ -f "$dir/msg-$i.eml" ]; do
              \(tools.testmsg) <"$dir/msg-$i.eml" 2>"$dir/msg-$i.err"
              echo $? >"$dir/msg-$i.rc"
              i=$((i + 1))
            done
            kill "$ub"
            wait "$ub" 2>/dev/null
            exit 0
            """
        try script.write(toFile: "\(path)/run.sh", atomically: true, encoding: .utf8)
        let result = Self.run(tools.unshare, ["-mnp", "--fork", "--kill-child", "/bin/sh", "\(path)/run.sh", path], timeout: 120)
        let log = (try? String(contentsOfFile: "\(path)/unbound.log", encoding: .utf8)) ?? ""
        guard result.status == 0 else {
            throw XCTSkip("namespace run failed (status \(result.status)): \(result.error) \(log.suffix(1500))")
        }
        var verdicts: [String: Verdict] = [:]
        for (index, message) in messages.enumerated() {
            let rc = (try? String(contentsOfFile: "\(path)/msg-\(index).rc", encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let error = (try? String(contentsOfFile: "\(path)/msg-\(index).err", encoding: .utf8)) ?? "(no stderr file)"
            verdicts[message.name] = Verdict(status: rc.flatMap { Int32($0) } ?? -1, error: error)
        }
        return verdicts
    }

    /// Facteur signs every sample with `key` as s=`selector`; opendkim-testmsg must accept each one
    /// silently, and reject a copy with a changed body, one with a changed Subject, and one signed
    /// by another key of the same algorithm (so a pass means it really fetched and used our record).
    func checkFacteurSignaturesVerifyInOpenDKIM(key: DKIMSigningKey, otherKey: DKIMSigningKey, selector: String) throws {
        let tools = try Self.requireNamespaceTools()
        let signer = DKIMSigner(domain: Self.domain, selector: selector, key: key)
        let impostor = DKIMSigner(domain: Self.domain, selector: selector, key: otherKey)
        var messages: [(name: String, bytes: [UInt8])] = []
        var expectations: [(name: String, shouldPass: Bool)] = []
        for sample in try Self.sampleMessages() {
            let signed = Array(try signer.sign(message: sample.bytes).utf8) + sample.bytes
            XCTAssertTrue(String(decoding: signed.prefix(200), as: UTF8.self).contains("a=\(key.algorithm.rawValue)"))
            messages.append(("\(sample.name) signed", signed))
            expectations.append(("\(sample.name) signed", true))
            messages.append(("\(sample.name) body changed", Self.tamperedBody(signed)))
            expectations.append(("\(sample.name) body changed", false))
            messages.append(("\(sample.name) subject changed", Self.tamperedHeader(signed)))
            expectations.append(("\(sample.name) subject changed", false))
            let forged = Array(try impostor.sign(message: sample.bytes).utf8) + sample.bytes
            messages.append(("\(sample.name) other key", forged))
            expectations.append(("\(sample.name) other key", false))
        }
        let verdicts = try openDKIMVerify(messages, records: [("\(selector)._domainkey.\(Self.domain)", key.dnsRecord)], tools: tools)
        for expectation in expectations {
            guard let verdict = verdicts[expectation.name] else {
                XCTFail("\(expectation.name): no verdict")
                continue
            }
            if expectation.shouldPass {
                XCTAssertEqual(verdict.status, 0, "\(expectation.name): opendkim-testmsg said \(verdict.error)")
                XCTAssertEqual(verdict.error.trimmingCharacters(in: .whitespacesAndNewlines), "", "\(expectation.name)")
            } else {
                XCTAssertNotEqual(verdict.status, 0, "\(expectation.name) verified in OpenDKIM")
                XCTAssertFalse(verdict.error.isEmpty, "\(expectation.name): a failure without a reason")
            }
        }
    }

    func testFacteurRSASignaturesVerifyInOpenDKIM() throws {
        try checkFacteurSignaturesVerifyInOpenDKIM(key: try DKIMSigningKey.generateRSA(), otherKey: try DKIMSigningKey.generateRSA(),
                                                   selector: "rsa")
    }

    func testFacteurEd25519SignaturesVerifyInOpenDKIM() throws {
        try checkFacteurSignaturesVerifyInOpenDKIM(key: DKIMSigningKey.generateEd25519(), otherKey: DKIMSigningKey.generateEd25519(),
                                                   selector: "ed")
    }

    // MARK: OpenDKIM as the signer

    /// The private key as OpenDKIM reads it: PEM (PKCS#1 for RSA, which is what Facteur writes;
    /// PKCS#8 for Ed25519, RFC 8410 §7, whereas Facteur stores the bare seed).
    static func openDKIMKeyText(_ key: DKIMSigningKey) -> String {
        switch key {
        case .rsa(let rsa):
            return rsa.pemRepresentation + "\n"
        case .ed25519(let ed):
            // PrivateKeyInfo { version 0, AlgorithmIdentifier { 1.3.101.112 }, OCTET STRING { OCTET STRING seed } }
            let prefix: [UInt8] = [0x30, 0x2E, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70,
                                   0x04, 0x22, 0x04, 0x20]
            let der = Data(prefix + [UInt8](ed.rawRepresentation))
            return "-----BEGIN PRIVATE KEY-----\n\(der.base64EncodedString())\n-----END PRIVATE KEY-----\n"
        }
    }

    func resolver(publishing records: [(name: String, value: String)]) throws -> StaticResolver {
        var resolver = StaticResolver()
        for record in records {
            resolver.add(DNSResourceRecord(name: try DNSName(record.name), ttl: 300, data: .txt(TXTRecord(text: record.value))))
        }
        return resolver
    }

    /// libopendkim's own signer (`dkim_sign`, `dkim_set_margin`, `dkim_chunk`, `dkim_eom`,
    /// `dkim_getsighdr_d` as the opendkim milter calls them; constants from its dkim.h), driven
    /// through ctypes: reads the message on stdin, prints the DKIM-Signature field (CRLF) and the
    /// message. MARGIN "default" keeps the library's folding of the field; a number sets it (0: no folding).
    static let libopendkimSigner = #"""
        import ctypes, sys
        domain, selector, algorithm, canon, keyfile, margin = sys.argv[1:7]
        lib = ctypes.CDLL("libopendkim.so.11")
        lib.dkim_init.restype = ctypes.c_void_p
        lib.dkim_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.dkim_sign.restype = ctypes.c_void_p
        lib.dkim_sign.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                  ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_ssize_t,
                                  ctypes.POINTER(ctypes.c_int)]
        lib.dkim_set_margin.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.dkim_chunk.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.dkim_eom.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.dkim_getsighdr_d.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_char_p),
                                         ctypes.POINTER(ctypes.c_size_t)]
        lib.dkim_geterror.restype = ctypes.c_char_p
        lib.dkim_geterror.argtypes = [ctypes.c_void_p]
        lib.dkim_free.argtypes = [ctypes.c_void_p]
        lib.dkim_close.argtypes = [ctypes.c_void_p]
        CANON = {"simple": 0, "relaxed": 1}                                    # DKIM_CANON_*
        SIGN = {"rsa-sha1": 0, "rsa-sha256": 1, "ed25519-sha256": 2}          # DKIM_SIGN_*
        header_canon, body_canon = canon.split("/")
        key = open(keyfile, "rb").read()
        message = sys.stdin.buffer.read()
        library = lib.dkim_init(None, None)
        status = ctypes.c_int(0)
        dkim = lib.dkim_sign(library, b"facteur-interop", None, key, selector.encode(), domain.encode(),
                             CANON[header_canon], CANON[body_canon], SIGN[algorithm], -1, ctypes.byref(status))
        if not dkim:
            sys.exit("dkim_sign failed: status %d" % status.value)
        if margin != "default" and lib.dkim_set_margin(dkim, int(margin)) != 0:
            sys.exit("dkim_set_margin failed")
        for step, result in (("dkim_chunk", lib.dkim_chunk(dkim, message, len(message))),
                             ("dkim_chunk(end)", lib.dkim_chunk(dkim, None, 0)),
                             ("dkim_eom", lib.dkim_eom(dkim, None))):
            if result != 0:
                sys.exit("%s: status %d (%s)" % (step, result, lib.dkim_geterror(dkim)))
        value = ctypes.c_char_p()
        length = ctypes.c_size_t(0)
        result = lib.dkim_getsighdr_d(dkim, len("DKIM-Signature: "), ctypes.byref(value), ctypes.byref(length))
        if result != 0:
            sys.exit("dkim_getsighdr_d: status %d" % result)
        field = ctypes.string_at(value, length.value).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        sys.stdout.buffer.write(b"DKIM-Signature: " + field + b"\r\n" + message)
        lib.dkim_free(dkim)
        lib.dkim_close(library)
        """#

    /// libopendkim signs every sample with rsa-sha256 and ed25519-sha256 keys Facteur generated,
    /// in all four canonicalization pairs; Facteur must pass each and fail a changed body or Subject.
    ///
    /// One exception, found here: libopendkim 2.11.0~beta2 (Debian 12) makes ed25519-sha256
    /// signatures with *simple header* canonicalization that do not verify anywhere — not in
    /// opendkim-testmsg, not in dkimpy — once it folds the DKIM-Signature field (its default);
    /// unfolded (margin 0) they verify everywhere. So those are checked unfolded, and for the folded
    /// ones Facteur must agree with dkimpy, whatever the verdict (it stays right if OpenDKIM is fixed).
    func testLibOpenDKIMSignaturesVerifyInFacteur() async throws {
        guard let python = Self.firstExecutable(["/usr/bin/python3", "/bin/python3"]) else {
            try Self.unavailable("python3 missing")
        }
        let probe = Self.run(python, ["-c", "import ctypes; ctypes.CDLL('libopendkim.so.11')"])
        guard probe.status == 0 else {
            try Self.unavailable("libopendkim.so.11 missing (apt-get install -y opendkim-tools): \(probe.error)")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("facteur-libopendkim-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let script = directory.appendingPathComponent("sign.py")
        try Self.libopendkimSigner.write(to: script, atomically: true, encoding: .utf8)

        let keys: [(algorithm: String, selector: String, key: DKIMSigningKey)] = [
            ("rsa-sha256", "rsa", try DKIMSigningKey.generateRSA()),
            ("ed25519-sha256", "ed", DKIMSigningKey.generateEd25519()),
        ]
        var records: [(name: String, value: String)] = []
        var keyFiles: [String: URL] = [:]
        for entry in keys {
            records.append(("\(entry.selector)._domainkey.\(Self.domain)", entry.key.dnsRecord))
            let file = directory.appendingPathComponent("\(entry.selector).pem")
            try Self.openDKIMKeyText(entry.key).write(to: file, atomically: true, encoding: .utf8)
            keyFiles[entry.selector] = file
        }
        let verifier = DKIMVerifier(resolver: try resolver(publishing: records))
        var folded: [(what: String, message: [UInt8], facteur: DKIMResult)] = []
        var checked = 0
        for sample in try Self.sampleMessages() {
            for entry in keys {
                for canon in ["relaxed/relaxed", "simple/simple", "relaxed/simple", "simple/relaxed"] {
                    let quirk = entry.algorithm == "ed25519-sha256" && canon.hasPrefix("simple/")
                    for margin in quirk ? ["default", "0"] : ["default"] {
                        let what = "\(sample.name) \(entry.algorithm) \(canon) margin \(margin)"
                        let signed = Self.run(python, [script.path, Self.domain, entry.selector, entry.algorithm, canon,
                                                       keyFiles[entry.selector]?.path ?? "", margin], input: sample.bytes)
                        XCTAssertEqual(signed.status, 0, "\(what): \(signed.error)")
                        guard signed.status == 0 else { continue }
                        XCTAssertTrue(signed.text.hasPrefix("DKIM-Signature: v=1; a=\(entry.algorithm); c=\(canon);"),
                                      "\(what): \(signed.text.prefix(120))")
                        let results = await verifier.verify(message: signed.output)
                        if quirk && margin == "default" {
                            folded.append((what, signed.output, results.first?.result ?? .none))
                            continue
                        }
                        checked += 1
                        XCTAssertEqual(results.map(\.result), [.pass], "\(what): \(results.map(\.reason))")
                        let body = await verifier.verify(message: Self.tamperedBody(signed.output))
                        XCTAssertEqual(body.map(\.result), [.fail], "\(what), body changed: \(body.map(\.reason))")
                        let header = await verifier.verify(message: Self.tamperedHeader(signed.output))
                        XCTAssertEqual(header.map(\.result), [.fail], "\(what), subject changed: \(header.map(\.reason))")
                    }
                }
            }
        }
        XCTAssertEqual(checked, try Self.sampleMessages().count * 8)
        if let verdicts = try dkimpyVerdicts(folded.map(\.message), records: records) {
            for (entry, dkimpyPasses) in zip(folded, verdicts) {
                XCTAssertEqual(entry.facteur == .pass, dkimpyPasses,
                               "\(entry.what): Facteur says \(entry.facteur), dkimpy \(dkimpyPasses ? "pass" : "fail")")
            }
        }
    }

    /// `opendkim-testmsg -d -s -k` with an RSA key Facteur generated (PKCS#1 PEM, as Facteur stores
    /// it). The tool always signs rsa-sha1, relaxed/simple; Facteur must refuse it for exactly
    /// that reason (RFC 8301 §3.1) — not for a canonicalization or key-format disagreement, which
    /// dkimpy (still accepting rsa-sha1) rules out by verifying the same messages.
    func testOpenDKIMTestmsgSignatureIsRSASHA1AndRefused() async throws {
        guard let testmsg = Self.firstExecutable(["/usr/sbin/opendkim-testmsg", "/usr/bin/opendkim-testmsg"]) else {
            try Self.unavailable("opendkim-testmsg missing (apt-get install -y opendkim-tools)")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("facteur-testmsg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let key = try DKIMSigningKey.generateRSA()
        let keyFile = directory.appendingPathComponent("key.pem")
        try Self.openDKIMKeyText(key).write(to: keyFile, atomically: true, encoding: .utf8)
        XCTAssertTrue(try String(contentsOf: keyFile, encoding: .utf8).hasPrefix("-----BEGIN RSA PRIVATE KEY-----"))
        let records = [(name: "sel._domainkey.\(Self.domain)", value: key.dnsRecord)]
        let verifier = DKIMVerifier(resolver: try resolver(publishing: records))
        var signedMessages: [[UInt8]] = []
        for sample in try Self.sampleMessages() {
            let signed = Self.run(testmsg, ["-C", "-d", Self.domain, "-s", "sel", "-k", keyFile.path], input: sample.bytes)
            XCTAssertEqual(signed.status, 0, "\(sample.name): \(signed.error)")
            XCTAssertEqual(signed.error, "", sample.name)
            guard signed.status == 0 else { continue }
            XCTAssertTrue(signed.text.hasPrefix("DKIM-Signature: v=1; a=rsa-sha1; c=relaxed/simple; d=\(Self.domain); s=sel;"),
                          "\(sample.name): \(signed.text.prefix(120))")
            let message = DKIMMessage.withCRLF(signed.output)
            signedMessages.append(message)
            let results = await verifier.verify(message: message)
            XCTAssertEqual(results.map(\.result), [.fail], sample.name)
            XCTAssertEqual(results.first?.reason, "rsa-sha1 is not accepted (RFC 8301)", sample.name)
            XCTAssertEqual(results.first?.signature?.algorithm, .rsaSHA1, sample.name)
        }
        XCTAssertEqual(signedMessages.count, try Self.sampleMessages().count)
        if let verdicts = try dkimpyVerdicts(signedMessages + signedMessages.map(Self.tamperedBody), records: records) {
            XCTAssertEqual(verdicts, Array(repeating: true, count: signedMessages.count) + Array(repeating: false, count: signedMessages.count),
                           "dkimpy: OpenDKIM's signatures pass, tampered copies fail")
        }
    }

    /// dkimpy's verdict on each message (every signature must verify), with `records` as the only
    /// DNS; nil when dkimpy is not installed (these checks are then left out, the rest still run).
    func dkimpyVerdicts(_ messages: [[UInt8]], records: [(name: String, value: String)]) throws -> [Bool]? {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3"),
              Self.run("/usr/bin/python3", ["-c", "import dkim"]).status == 0 else { return nil }
        guard !messages.isEmpty else { return [] }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("facteur-dkimpy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var paths: [String] = []
        for (index, message) in messages.enumerated() {
            let url = directory.appendingPathComponent("\(index).eml")
            try Data(message).write(to: url)
            paths.append(url.path)
        }
        let table = records.map { "\($0.name.lowercased())\t\($0.value)" }.joined(separator: "\n")
        let script = """
            import sys, dkim
            records = dict(line.split("\\t", 1) for line in sys.argv[1].splitlines())
            def dnsfunc(name, timeout=5):
                name = name.decode() if isinstance(name, bytes) else name
                return records.get(name.rstrip(".").lower(), "").encode() or None
            for path in sys.argv[2:]:
                message = open(path, "rb").read()
                count = sum(1 for line in message.split(b"\\r\\n\\r\\n", 1)[0].split(b"\\r\\n")
                            if line.lower().startswith(b"dkim-signature:"))
                d = dkim.DKIM(message)
                try:
                    ok = count > 0 and all(d.verify(idx=i, dnsfunc=dnsfunc) for i in range(count))
                except dkim.DKIMException:  # dkimpy raises on some failures (body hash mismatch)
                    ok = False
                print("PASS" if ok else "FAIL")
            """
        let result = Self.run("/usr/bin/python3", ["-c", script, table] + paths)
        let lines = result.text.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, messages.count, "dkimpy: \(result.error)")
        return lines.map { $0 == "PASS" }
    }
}
