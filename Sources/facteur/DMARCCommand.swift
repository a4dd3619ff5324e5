// `facteur dmarc`: the DMARC aggregate reports received for our domains, and the ones we send
// (RFC 7489 §7.2).

import ArgumentParser
import FacteurServer
import Foundation

struct DMARCCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dmarc", abstract: "DMARC aggregate reports, received and sent.",
        subcommands: [Report.self, Import.self, Pending.self, Send.self])

    struct Report: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Summarise the reports received, per source IP: who sends as our domains, what passes, what fails.")
        @OptionGroup var options: CommonOptions
        @Option(help: "Only reports about this domain.") var domain: String?
        @Option(help: "Reports of the last N days.") var days = 30
        func run() async throws {
            print(try await DMARCCommands.summary(configuration: options.load(), domain: domain?.lowercased(), days: days), terminator: "")
        }
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Store report files (.xml, .xml.gz, .zip, or a whole .eml message).")
        @OptionGroup var options: CommonOptions
        @Argument var files: [String]
        func run() async throws {
            let added = try await DMARCCommands.importReports(configuration: options.load(), files: files)
            print("\(added) report(s) stored")
        }
    }

    struct Pending: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the aggregate reports not sent yet (RFC 7489 XML).")
        @OptionGroup var options: CommonOptions
        @Flag(name: .customLong("include-today"), help: "Include today's evaluations (the day is not over).") var includeToday = false
        func run() async throws {
            for report in try await DMARCCommands.pendingReports(configuration: options.load(), includeToday: includeToday) {
                print("<!-- \(report.domain) -->")
                print(report.xml)
            }
        }
    }

    struct Send: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Queue the due aggregate reports now (the server sends them daily by itself).")
        @OptionGroup var options: CommonOptions
        @Flag(name: .customLong("include-today")) var includeToday = false
        func run() async throws {
            let sent = try await DMARCCommands.sendReports(configuration: options.load(), includeToday: includeToday)
            print("\(sent) report(s) queued")
        }
    }
}
