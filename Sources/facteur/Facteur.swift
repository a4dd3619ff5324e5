// The `facteur` command: thin; it parses arguments and calls FacteurServer or the store.

import ArgumentParser
import FacteurIdentity
import FacteurMailAuth
import FacteurQueue
import FacteurNet
import FacteurServer
import FacteurStore
import Foundation
import Logging

@main
struct Facteur: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "facteur",
        abstract: "A complete mail server.",
        subcommands: [Serve.self, DomainCommand.self, AccountCommand.self, AliasCommand.self, MailboxCommand.self, MessageCommand.self,
                      QueueCommand.self, DKIMCommand.self, DMARCCommand.self, QuickstartCommand.self, DNSCommand.self, TLSRPTCommand.self])
}

/// `--data` and `--config`, accepted by every subcommand.
struct CommonOptions: ParsableArguments {
    @Option(name: .long, help: "Data folder (database, blobs, keys).")
    var data: String?

    @Option(name: .long, help: "Configuration file (default: DATA/facteur.toml when it exists).")
    var config: String?

    /// The configuration: the file if any, then `--data` on top.
    func load() throws -> ServerConfiguration {
        var configuration = ServerConfiguration()
        let dataFolder = data ?? configuration.dataDirectory
        let file = config ?? "\(dataFolder)/facteur.toml"
        if config != nil || FileManager.default.fileExists(atPath: file) {
            configuration = try ServerConfiguration.load(file: file)
        }
        if let data { configuration.dataDirectory = data }
        return configuration
    }

    func openStore() throws -> SQLiteMailStore {
        let configuration = try load()
        guard FileManager.default.fileExists(atPath: configuration.dataDirectory) else {
            throw CLIError("no data folder at \(configuration.dataDirectory) (run `facteur serve` once, or pass --data)")
        }
        var logger = Logger(label: "facteur")
        logger.logLevel = .warning
        return try SQLiteMailStore(directory: configuration.dataDirectory, logger: logger)
    }
}

struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the mail server.")

    @OptionGroup var options: CommonOptions

    @Option(name: .long, help: "PROTO=ADDRESS:PORT, repeatable; replaces the configured listeners (port 0: any free port).")
    var listen: [String] = []

    func run() async throws {
        var configuration = try options.load()
        try configuration.replaceListeners(with: listen)
        try configuration.validateListeners()
        let level = Logger.Level(rawValue: configuration.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        // Connection buffers of 32 KiB and more get their own mappings (see MemoryTrimmer).
        MemoryTrimmer.mapAllocations(atLeast: 32 * 1024)
        // The data folder holds password hashes and private keys: owner only.
        try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        try await FacteurServer.run(configuration: configuration, logger: Logger(label: "facteur"))
    }
}

// MARK: - domain

struct DomainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "domain", abstract: "Manage local domains.",
                                                    subcommands: [Add.self, List.self, Remove.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a local domain.")
        @OptionGroup var options: CommonOptions
        @Argument var name: String
        func run() async throws {
            try await options.openStore().addDomain(name.lowercased())
            print("domain \(name.lowercased()) added")
            // Outbound mail from the new domain is signed from the start (DKIM); the records to publish follow.
            let configuration = try options.load()
            let keyring = DKIMKeyring(directory: configuration.resolve("dkim"))
            if configuration.mailAuth.dkimGenerateKeys, name.contains("."), try keyring.keys(for: name).isEmpty {
                for algorithm in ["ed25519", "rsa"] { try keyring.generate(domain: name, algorithm: algorithm) }
                print("DKIM keys generated; publish them: facteur dkim record \(name.lowercased())")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List local domains.")
        @OptionGroup var options: CommonOptions
        func run() async throws {
            for domain in try await options.openStore().domains() { print(domain.name) }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a local domain.")
        @OptionGroup var options: CommonOptions
        @Argument var name: String
        func run() async throws {
            try await options.openStore().removeDomain(name.lowercased())
            print("domain \(name.lowercased()) removed")
        }
    }
}

// MARK: - account

struct AccountCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "account", abstract: "Manage accounts.",
                                                    subcommands: [Add.self, Passwd.self, List.self, Remove.self, QuotaCommand.self, SentCopies.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add an account (password from standard input when it is not a terminal).")
        @OptionGroup var options: CommonOptions
        @Argument var address: String
        @Flag(name: .long, help: "Read the password from standard input.") var passwordStdin = false
        @Option(name: .long, help: "Quota in bytes.") var quotaBytes: Int64?
        @Option(name: .long, help: "Quota in messages.") var quotaMessages: Int64?
        @Flag(name: .long, help: "Administrator account.") var admin = false
        func run() async throws {
            let store = try options.openStore()
            let password = try readPassword(fromStdin: passwordStdin)
            let credentials = try Credentials.make(password: password)
            let account = try await store.addAccount(address: address.lowercased(), credentials: credentials,
                                                     quota: Quota(bytes: quotaBytes, messages: quotaMessages), isAdmin: admin)
            print("account \(account.address) added")
        }
    }

    struct Passwd: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set an account's password.")
        @OptionGroup var options: CommonOptions
        @Argument var address: String
        @Flag(name: .long, help: "Read the password from standard input.") var passwordStdin = false
        func run() async throws {
            let store = try options.openStore()
            let password = try readPassword(fromStdin: passwordStdin)
            try await store.setCredentials(address: address.lowercased(), try Credentials.make(password: password))
            print("password of \(address.lowercased()) changed")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List accounts.")
        @OptionGroup var options: CommonOptions
        @Argument var domain: String?
        func run() async throws {
            for account in try await options.openStore().accounts(domain: domain?.lowercased()) {
                let quota = "\(account.quota.bytes.map(String.init) ?? "unlimited") bytes, \(account.quota.messages.map(String.init) ?? "unlimited") messages"
                print("\(account.address)\tused \(account.usage.bytes) bytes, \(account.usage.messages) messages\tquota \(quota)\(account.isAdmin ? "\tadmin" : "")")
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove an account and all its mail.")
        @OptionGroup var options: CommonOptions
        @Argument var address: String
        func run() async throws {
            try await options.openStore().removeAccount(address: address.lowercased())
            print("account \(address.lowercased()) removed")
        }
    }

    struct QuotaCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "quota", abstract: "Set an account's quota (0 = unlimited).")
        @OptionGroup var options: CommonOptions
        @Argument var address: String
        @Option(name: .long) var bytes: Int64?
        @Option(name: .long) var messages: Int64?
        func run() async throws {
            let store = try options.openStore()
            guard let account = try await store.account(address: address.lowercased()) else {
                throw CLIError("no account \(address.lowercased())")
            }
            var quota = account.quota
            if let bytes { quota.bytes = bytes == 0 ? nil : bytes }
            if let messages { quota.messages = messages == 0 ? nil : messages }
            try await store.setQuota(address: account.address, quota)
            print("quota of \(account.address): \(quota.bytes.map(String.init) ?? "unlimited") bytes, \(quota.messages.map(String.init) ?? "unlimited") messages")
        }
    }
}

/// The password: from standard input when asked or when it is not a terminal, else prompted twice.
func readPassword(fromStdin: Bool) throws -> String {
    if fromStdin || isatty(0) == 0 {
        guard let line = Swift.readLine(strippingNewline: true), !line.isEmpty else {
            throw CLIError("no password on standard input")
        }
        return line
    }
    guard let first = getpass("Password: ").map({ String(cString: $0) }), !first.isEmpty else { throw CLIError("empty password") }
    guard let second = getpass("Again: ").map({ String(cString: $0) }), second == first else { throw CLIError("passwords differ") }
    return first
}

// MARK: - alias

extension AccountCommand {
    struct SentCopies: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sent-copies",
            abstract: "Keep a copy of what ADDRESS submits in its Sent mailbox: on, off, or default (the config's sent_copies).")
        @OptionGroup var options: CommonOptions
        @Argument var address: String
        @Argument var setting: String
        func run() async throws {
            let value: Bool?
            switch setting.lowercased() {
            case "on": value = true
            case "off": value = false
            case "default": value = nil
            default: throw CLIError("expected on, off or default")
            }
            try await options.openStore().setSentCopies(address: address, value)
            print("sent copies for \(address.lowercased()): \(setting.lowercased())")
        }
    }
}

struct AliasCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "alias", abstract: "Manage aliases (SOURCE: local@domain, or @domain for a catch-all).",
                                                    subcommands: [Add.self, List.self, Remove.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Deliver SOURCE to local accounts, and forward it to addresses in other domains (SRS).")
        @OptionGroup var options: CommonOptions
        @Argument var source: String
        @Argument var targets: [String]
        func run() async throws {
            guard !targets.isEmpty else { throw CLIError("an alias needs at least one target") }
            try await options.openStore().addAlias(source: source.lowercased(), targets: targets.map { $0.lowercased() })
            print("alias \(source.lowercased()) → \(targets.map { $0.lowercased() }.joined(separator: ", "))")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List aliases.")
        @OptionGroup var options: CommonOptions
        @Argument var domain: String?
        func run() async throws {
            for alias in try await options.openStore().aliases(domain: domain?.lowercased()) {
                print("\(alias.source)\t\(alias.targets.joined(separator: ","))")
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove an alias, or one of its targets.")
        @OptionGroup var options: CommonOptions
        @Argument var source: String
        @Argument var target: String?
        func run() async throws {
            try await options.openStore().removeAlias(source: source.lowercased(), target: target?.lowercased())
            print("alias \(source.lowercased()) removed\(target.map { " for \($0.lowercased())" } ?? "")")
        }
    }
}

// MARK: - mailbox and message

struct MailboxCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "mailbox", abstract: "Look at mailboxes.", subcommands: [List.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List an account's mailboxes.")
        @OptionGroup var options: CommonOptions
        @Argument var account: String
        func run() async throws {
            let store = try options.openStore()
            guard let record = try await store.account(address: account.lowercased()) else { throw CLIError("no account \(account.lowercased())") }
            for mailbox in try await store.mailboxes(accountID: record.id) {
                print("\(mailbox.name)\t\(mailbox.messageCount) messages\tuidvalidity \(mailbox.uidValidity)\tuidnext \(mailbox.uidNext)\(mailbox.specialUse.map { "\t\($0.rawValue)" } ?? "")")
            }
        }
    }
}

struct MessageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "message", abstract: "Look at messages.", subcommands: [List.self, Show.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List messages: UID, size, date, from, subject (tab-separated).")
        @OptionGroup var options: CommonOptions
        @Argument var account: String
        @Argument var mailbox: String = "INBOX"
        func run() async throws {
            let store = try options.openStore()
            let box = try await mailboxRecord(store: store, account: account, mailbox: mailbox)
            let formatter = ISO8601DateFormatter()
            for message in try await store.messages(mailboxID: box.id) {
                let summary = try await store.summary(messageID: message.id)
                let from = summary?.envelope.from.first.map { address -> String in
                    let mailbox = [address.mailbox, address.host].compactMap { $0 }.joined(separator: "@")
                    return address.name.map { "\($0) <\(mailbox)>" } ?? mailbox
                } ?? ""
                let subject = summary?.envelope.subject ?? ""
                print("\(message.uid)\t\(message.size)\t\(formatter.string(from: message.internalDate))\t\(oneLine(from))\t\(oneLine(subject))")
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a message exactly as stored (trace headers, then the message).")
        @OptionGroup var options: CommonOptions
        @Argument var account: String
        @Argument var mailbox: String
        @Argument var uid: UInt32
        func run() async throws {
            let store = try options.openStore()
            let box = try await mailboxRecord(store: store, account: account, mailbox: mailbox)
            guard let message = try await store.message(mailboxID: box.id, uid: uid) else {
                throw CLIError("no message with UID \(uid) in \(mailbox)")
            }
            FileHandle.standardOutput.write(Data(try await store.messageBytes(messageID: message.id)))
        }
    }
}

private func mailboxRecord(store: SQLiteMailStore, account: String, mailbox: String) async throws -> MailboxRecord {
    guard let record = try await store.account(address: account.lowercased()) else { throw CLIError("no account \(account.lowercased())") }
    guard let box = try await store.mailbox(accountID: record.id, name: mailbox) else { throw CLIError("no mailbox \(mailbox) for \(record.address)") }
    return box
}

private func oneLine(_ text: String) -> String {
    String(text.map { $0 == "\t" || $0 == "\r" || $0 == "\n" ? " " : $0 })
}

// MARK: - queue

struct QueueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "queue", abstract: "Look at and act on the outbound queue.",
                                                    subcommands: [List.self, Show.self, Retry.self, Bounce.self, Delete.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List queued messages with their recipients' status.")
        @OptionGroup var options: CommonOptions
        func run() async throws {
            print(QueueListing.list(try await options.openStore().queuedMessages()), terminator: "")
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one queued message: recipients, attempts, next attempt, last reply.")
        @OptionGroup var options: CommonOptions
        @Argument var id: Int64
        func run() async throws {
            guard let message = try await options.openStore().queuedMessage(id: id) else { throw CLIError("no queued message \(id)") }
            print(QueueListing.show(message), terminator: "")
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Try a queued message (or all with --all) at the next pass.")
        @OptionGroup var options: CommonOptions
        @Argument var id: Int64?
        @Flag(name: .long) var all = false
        func run() async throws {
            guard (id == nil) == all else { throw CLIError("give a message id or --all") }
            let count = try await options.openStore().retryQueued(id: id)
            print("\(count) recipient(s) will be tried at the next pass")
        }
    }

    struct Bounce: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Give up on a queued message and tell its sender (DSN).")
        @OptionGroup var options: CommonOptions
        @Argument var id: Int64
        func run() async throws {
            try await options.openStore().bounceQueued(id: id)
            print("message \(id) bounced")
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a queued message without telling anyone.")
        @OptionGroup var options: CommonOptions
        @Argument var id: Int64
        func run() async throws {
            try await options.openStore().deleteQueued(id: id)
            print("message \(id) deleted")
        }
    }
}

// MARK: - quickstart

struct QuickstartCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quickstart",
        abstract: "Write a production configuration for DOMAIN (ports 25, 587, 465, 143, 993, 110, 995) and print the DNS records to publish.")

    @OptionGroup var options: CommonOptions
    @Argument(help: "The mail domain, e.g. example.org.") var domain: String
    @Option(name: .long, help: "This server's host name (default: mail.DOMAIN).") var hostname: String?

    func run() async throws {
        let domain = domain.lowercased()
        let hostname = (hostname ?? "mail.\(domain)").lowercased()
        let data = options.data ?? ServerConfiguration().dataDirectory
        let file = options.config ?? "\(data)/facteur.toml"
        guard !FileManager.default.fileExists(atPath: file) else {
            throw CLIError("\(file) already exists; quickstart never overwrites a configuration")
        }
        let text = Quickstart.configuration(domain: domain, hostname: hostname, dataDirectory: data)
        // What we write must load: a typo here would only show at the next start.
        _ = try ServerConfiguration.parse(text, file: file)
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        try Data(text.utf8).write(to: URL(fileURLWithPath: file), options: .atomic)
        print("wrote \(file)")
        print("start the server with: facteur serve --data \(data)")
        print("the first start creates \(domain) and admin@\(domain), and prints its password once\n")
        // Keys now, so that the records printed below are the ones the server will sign with.
        let keyring = DKIMKeyring(directory: "\(data)/dkim")
        if try keyring.keys(for: domain).isEmpty {
            for algorithm in ["ed25519", "rsa"] { try keyring.generate(domain: domain, algorithm: algorithm) }
        }
        let dkim = try keyring.records(for: domain).map { (name: $0.name, value: $0.value) }
        print(Quickstart.dnsRecords(domain: domain, hostname: hostname, dkim: dkim), terminator: "")
    }
}
