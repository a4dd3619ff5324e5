// `facteur dns records DOMAIN`: every DNS record to publish for a domain served by Facteur
// (MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT, DANE TLSA), in zone-file form.

import ArgumentParser
import FacteurMailAuth
import FacteurServer
import Foundation

struct DNSCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dns", abstract: "DNS records to publish.", subcommands: [Records.self])

    struct Records: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the records for DOMAIN, in zone-file form.")
        @OptionGroup var options: CommonOptions
        @Argument var domain: String

        func run() async throws {
            let configuration = try options.load()
            let keyring = DKIMKeyring(directory: configuration.resolve("dkim"))
            let dkim = ((try? keyring.records(for: domain)) ?? [])
                .filter { $0.state != .expired }
                .map { (name: $0.name, text: DKIMKeyring.zoneText($0.value)) }
            print(DNSRecords.zone(domain: domain, configuration: configuration, dkim: dkim), terminator: "")
        }
    }
}
