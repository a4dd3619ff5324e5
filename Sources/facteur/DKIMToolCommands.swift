// `facteur dkim sign` and `facteur dkim verify`: Facteur's DKIM code (RFC 6376; ed25519-sha256,
// RFC 8463) on one message read from standard input — to check interoperability with other
// implementations by hand, and, with --repeat, to measure signatures signed or verified per second
// (bench/mailauth).

import ArgumentParser
import FacteurDNS
import FacteurMailAuth
import Foundation

extension DKIMCommand {
    /// Messages larger than this are refused: the tools read the whole message into memory.
    static let maximumMessageSize = 64 * 1024 * 1024

    /// Standard input, whole, up to `maximumMessageSize`.
    static func readMessage() throws -> [UInt8] {
        var bytes: [UInt8] = []
        let input = FileHandle.standardInput
        while let chunk = try input.read(upToCount: 1 << 20), !chunk.isEmpty {
            bytes += chunk
            guard bytes.count <= maximumMessageSize else {
                throw CLIError("message larger than \(maximumMessageSize / (1024 * 1024)) MiB")
            }
        }
        guard !bytes.isEmpty else { throw CLIError("no message on standard input") }
        return bytes
    }

    /// "signed 1000 in 0.812 s (1231.5/s)".
    static func rate(_ verb: String, count: Int, elapsed: Duration) -> String {
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let perSecond = seconds > 0 ? Double(count) / seconds : 0
        return "\(verb) \(count) in \(String(format: "%.3f", seconds)) s (\(String(format: "%.1f", perSecond))/s)"
    }

    struct Sign: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sign the message on standard input and print it with its DKIM-Signature field first.",
            discussion: "relaxed/relaxed, Facteur's default signed-header list (oversigned). The key is a PEM RSA key or a base64 Ed25519 seed, as in DATA/dkim/DOMAIN/.")
        @Option(help: "Signing domain (d=).") var domain: String
        @Option(help: "Selector (s=).") var selector: String
        @Option(help: "Private key file.") var key: String
        @Option(help: "rsa or ed25519 (default: rsa for a PEM file, ed25519 otherwise).") var algorithm: String?
        @Option(help: "Sign N times and print only the rate.") var `repeat`: Int?

        func validate() throws {
            if let algorithm, !["rsa", "ed25519"].contains(algorithm) { throw ValidationError("--algorithm must be rsa or ed25519") }
            if let count = `repeat`, count < 1 { throw ValidationError("--repeat must be at least 1") }
        }

        func run() async throws {
            guard let data = FileManager.default.contents(atPath: key), let text = String(data: data, encoding: .utf8) else {
                throw CLIError("cannot read the key \(key)")
            }
            let isPEM = text.contains("-----BEGIN")
            let signingKey: DKIMSigningKey
            do {
                switch algorithm ?? (isPEM ? "rsa" : "ed25519") {
                case "rsa": signingKey = try DKIMSigningKey(rsaPEM: text)
                default: signingKey = try DKIMSigningKey(ed25519SeedBase64: text)
                }
            } catch {
                throw CLIError("\(key) is not a usable key: \(error)")
            }
            let input = try DKIMCommand.readMessage()
            // Signing is over CRLF lines (RFC 6376 §3.4 canonicalizes lines ending in CRLF); a file
            // with bare LFs gets its signature back with LFs too.
            let message = DKIMMessage.withCRLF(input)
            let signer = DKIMSigner(domain: domain, selector: selector, key: signingKey)
            if let count = `repeat` {
                let clock = ContinuousClock()
                let start = clock.now
                for _ in 0..<count { _ = try signer.sign(message: message) }
                print(DKIMCommand.rate("signed", count: count, elapsed: clock.now - start))
                return
            }
            let field = try signer.sign(message: message)
            let usesCRLF = input.contains(0x0D)
            var output = Array((usesCRLF ? field : field.replacingOccurrences(of: "\r\n", with: "\n")).utf8)
            output += usesCRLF ? message : input
            FileHandle.standardOutput.write(Data(output))
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify every DKIM-Signature of the message on standard input; one line per signature.",
            discussion: "Exit status 0 when at least one signature passes, 1 otherwise. Keys are looked up in DNS: --dns, else the servers of /etc/resolv.conf.")
        @Option(help: "DNS server ADDRESS[:PORT] to ask for the keys (default: /etc/resolv.conf).") var dns: String?
        @Option(help: "Verify N times (DNS answers cached after the first) and print the rate as well.") var `repeat`: Int?

        func validate() throws {
            if let count = `repeat`, count < 1 { throw ValidationError("--repeat must be at least 1") }
        }

        func resolverConfiguration() throws -> DNSClientConfiguration {
            guard let dns else { return try DNSClientConfiguration.system() }
            var host = dns, port = 53
            if dns.hasPrefix("["), let close = dns.firstIndex(of: "]") {
                host = String(dns[dns.index(after: dns.startIndex)..<close])
                let rest = dns[dns.index(after: close)...]
                if rest.hasPrefix(":") { port = Int(rest.dropFirst()) ?? -1 }
            } else if dns.filter({ $0 == ":" }).count == 1, let colon = dns.firstIndex(of: ":") {
                host = String(dns[..<colon])
                port = Int(dns[dns.index(after: colon)...]) ?? -1
            }
            guard let address = IPAddress(host), (1...65535).contains(port) else {
                throw CLIError("--dns: \"\(dns)\" is not ADDRESS or ADDRESS:PORT")
            }
            return DNSClientConfiguration(servers: [try address.socketAddress(port: port)])
        }

        func run() async throws {
            let verifier = DKIMVerifier(resolver: DNSClient(configuration: try resolverConfiguration()))
            let message = DKIMMessage.withCRLF(try DKIMCommand.readMessage())
            var results: [DKIMSignatureResult] = []
            if let count = `repeat` {
                let clock = ContinuousClock()
                let start = clock.now
                for _ in 0..<count { results = await verifier.verify(message: message) }
                print(DKIMCommand.rate("verified", count: count, elapsed: clock.now - start))
            } else {
                results = await verifier.verify(message: message)
            }
            if results.isEmpty { print("none (no DKIM-Signature field)") }
            for result in results {
                var line = "\(result.result.rawValue) d=\(result.domain ?? "?") s=\(result.selector ?? "?")"
                if let algorithm = result.signature?.algorithm { line += " a=\(algorithm.rawValue)" }
                if result.testing { line += " (testing key)" }
                print(line + " (\(result.reason))")
            }
            if !results.contains(where: { $0.result == .pass }) { throw ExitCode(1) }
        }
    }
}
