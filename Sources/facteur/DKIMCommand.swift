// `facteur dkim`: the keys Facteur signs outbound mail with (RFC 6376, RFC 8463), and the DNS
// records to publish for them. Keys live in DATA/dkim/DOMAIN/; a running server picks up a new or
// rotated key within a minute.

import ArgumentParser
import FacteurMailAuth
import FacteurServer
import Foundation

struct DKIMCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dkim", abstract: "Manage DKIM signing keys.",
        subcommands: [Generate.self, Rotate.self, Record.self, List.self, Sign.self, Verify.self])

    static func keyring(_ options: CommonOptions) throws -> DKIMKeyring {
        DKIMKeyring(directory: try options.load().resolve("dkim"))
    }

    struct Generate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a key (by default an Ed25519 and an RSA-2048 key). With no key of that algorithm yet it signs at once; otherwise it takes over after --activate-in hours.")
        @OptionGroup var options: CommonOptions
        @Argument var domain: String
        @Option(help: "Selector (default: dated, e.g. f20261127e).") var selector: String?
        @Option(help: "rsa, ed25519 or both.") var algorithm = "both"
        @Option(name: .customLong("activate-in"), help: "Hours before a replacement key starts signing (time to publish its record).")
        var activateIn = 72.0

        func run() async throws {
            let keyring = try DKIMCommand.keyring(options)
            let algorithms = algorithm == "both" ? ["ed25519", "rsa"] : [algorithm]
            guard algorithms.allSatisfy({ ["ed25519", "rsa"].contains($0) }) else { throw CLIError("--algorithm must be rsa, ed25519 or both") }
            guard selector == nil || algorithms.count == 1 else { throw CLIError("--selector needs --algorithm rsa or ed25519") }
            for name in algorithms {
                let info = try keyring.generate(domain: domain, algorithm: name, selector: selector, activateAfter: activateIn * 3600)
                let when = info.activates > Date() ? "signs from \(ISO8601DateFormatter().string(from: info.activates))" : "signs now"
                print("\(name) key \(info.selector) for \(domain.lowercased()): \(when)")
            }
            print("publish: facteur dkim record \(domain.lowercased())")
        }
    }

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Schedule new keys (Ed25519 and RSA) to replace the current ones after --activate-in hours; the old ones stay published for 7 days after.")
        @OptionGroup var options: CommonOptions
        @Argument var domain: String
        @Option(name: .customLong("activate-in")) var activateIn = 72.0

        func run() async throws {
            let keyring = try DKIMCommand.keyring(options)
            guard !(try keyring.keys(for: domain)).isEmpty else { throw CLIError("no keys for \(domain) yet: use `facteur dkim generate`") }
            for name in ["ed25519", "rsa"] {
                let info = try keyring.generate(domain: domain, algorithm: name, activateAfter: activateIn * 3600)
                print("\(name) key \(info.selector) signs from \(ISO8601DateFormatter().string(from: info.activates))")
            }
            print("publish the new records now: facteur dkim record \(domain.lowercased())")
        }
    }

    struct Record: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the DNS TXT records to publish, in zone-file form.")
        @OptionGroup var options: CommonOptions
        @Argument var domain: String

        func run() async throws {
            let records = try DKIMCommand.keyring(options).records(for: domain)
            guard !records.isEmpty else { throw CLIError("no DKIM keys for \(domain): use `facteur dkim generate \(domain)`") }
            for record in records {
                let note: String
                switch record.state {
                case .pending: note = "; next key: publish now, signs from \(ISO8601DateFormatter().string(from: record.info.activates))"
                case .active: note = "; signing"
                case .retired: note = "; retired: keep published until signatures in transit have arrived"
                case .expired: note = "; expired: remove this record"
                }
                print(note)
                print("\(record.name). 3600 IN TXT \(DKIMKeyring.zoneText(record.value))")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the keys of every domain (or one).")
        @OptionGroup var options: CommonOptions
        @Argument var domain: String?

        func run() async throws {
            let keyring = try DKIMCommand.keyring(options)
            let formatter = ISO8601DateFormatter()
            for name in domain.map({ [$0.lowercased()] }) ?? keyring.domains() {
                for key in try keyring.keys(for: name) {
                    let state = key.state(at: Date(), overlap: keyring.overlap)
                    print("\(name)\t\(key.selector)\t\(key.algorithm)\t\(state.rawValue)\tfrom \(formatter.string(from: key.activates))"
                          + (key.retires.map { "\tuntil \(formatter.string(from: $0))" } ?? ""))
                }
            }
        }
    }
}
