// `facteur tlsrpt`: SMTP TLS reports (RFC 8460) received for our domains, and the ones we send to
// the domains we deliver to.

import ArgumentParser
import FacteurServer
import Foundation

struct TLSRPTCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tlsrpt", abstract: "SMTP TLS reports (RFC 8460), received and sent.",
        subcommands: [List.self, Show.self, Pending.self, Send.self, Import.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the reports received: period, domains, sessions that succeeded and failed.")
        @OptionGroup var options: CommonOptions
        @Option(help: "Only reports about this domain.") var domain: String?
        @Option(help: "Reports of the last N days.") var days = 30
        func run() async throws {
            print(try await TLSReportCommands.list(configuration: options.load(), domain: domain?.lowercased(), days: days), terminator: "")
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print one received report (JSON).")
        @OptionGroup var options: CommonOptions
        @Argument var id: Int64
        func run() async throws {
            guard let text = try await TLSReportCommands.show(configuration: options.load(), id: id) else { throw CLIError("no TLS report \(id)") }
            print(text, terminator: "")
        }
    }

    struct Pending: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the reports not sent yet (RFC 8460 JSON), one per recipient domain and day.")
        @OptionGroup var options: CommonOptions
        @Flag(name: .customLong("include-today"), help: "Include today's sessions (the day is not over).") var includeToday = false
        @Option(help: "Only the report(s) for this recipient domain.") var domain: String?
        func run() async throws {
            let wanted = domain?.lowercased()
            for report in try await TLSReportCommands.pending(configuration: options.load(), includeToday: includeToday)
            where wanted == nil || report.domain.lowercased() == wanted {
                print("# \(report.domain)")
                print(report.json)
            }
        }
    }

    struct Send: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Send the due reports now (the server sends them daily by itself).")
        @OptionGroup var options: CommonOptions
        @Flag(name: .customLong("include-today")) var includeToday = false
        func run() async throws {
            let sent = try await TLSReportCommands.send(configuration: options.load(), includeToday: includeToday)
            print("\(sent) report(s) sent")
        }
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Store report files (.json, .json.gz, or a whole .eml message).")
        @OptionGroup var options: CommonOptions
        @Argument var files: [String]
        func run() async throws {
            let added = try await TLSReportCommands.importReports(configuration: options.load(), files: files)
            print("\(added) report(s) stored")
        }
    }
}
