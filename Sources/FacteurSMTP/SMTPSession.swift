// The SMTP server session as a pure state machine (RFC 5321 §4.1.4 command order, §4.2 replies).
// It takes parsed commands and the outcomes of the effects it asked for, and returns actions:
// replies to write, framing changes, recipient checks and deliveries for the adapter to run.
// No sockets, no clock, no store: every test feeds it a transcript and reads the replies.

import FacteurQueue
import FacteurStore
import Foundation

/// What the adapter must do, in order.
public enum SMTPAction: Equatable, Sendable {
    case reply(SMTPReply)
    /// Write the pending replies, then put TLS in front and throw away anything the client
    /// pipelined after STARTTLS (RFC 3207 §4.2; CVE-2011-0411).
    case startTLS
    /// Check a recipient, then call `recipientChecked(_:)`.
    case checkRecipient(SMTPMailbox, declaredSize: Int?)
    /// Read dot-stuffed message data up to `<CRLF>.<CRLF>`, then call `messageReceived(_:)`.
    case receiveData
    /// Read exactly `size` octets of a BDAT chunk, then call `chunkReceived(_:)`.
    case receiveChunk(size: Int, last: Bool)
    /// Store the message, then call `deliveryFinished(_:)`.
    case deliver(SMTPTransaction)
    /// Run a SASL exchange (RFC 4954) starting with `initialResponse` (nil: none; []: empty),
    /// then call `authenticationFinished(_:)`.
    case authenticate(mechanism: String, initialResponse: [UInt8]?)
    /// Submission: check that the authenticated account may use this envelope sender, then call
    /// `senderChecked(_:)`.
    case checkSender(SMTPMailbox?, account: String)
    /// Close the connection once the replies are written.
    case close
}

/// Which service a listener offers.
public enum SMTPMode: Sendable, Equatable {
    /// Port 25: mail from other organisations, for local recipients only; no AUTH.
    case inbound
    /// Ports 587/465 (RFC 6409, RFC 8314): the organisation's own users, AUTH required.
    case submission
}

/// Whether an authenticated account may send now, as this sender.
public enum SenderVerdict: Sendable, Equatable {
    case allowed
    /// Not one of the account's addresses (553 5.7.1).
    case notOwned
    /// Over the account's hourly message limit (451 4.7.1: clients retry; a 5xx would lose mail).
    case rateLimited
}

public enum AuthenticationResult: Sendable, Equatable {
    case success(account: String)
    case failure(SMTPReply)
}

/// A local account a recipient resolved to.
public struct LocalRecipient: Equatable, Sendable {
    public var accountID: Int64
    public var address: String
    public init(accountID: Int64, address: String) { self.accountID = accountID; self.address = address }
}

/// The outcome of checking one RCPT TO.
public enum RecipientVerdict: Equatable, Sendable {
    case accepted([LocalRecipient])
    /// An alias with members elsewhere (forwarding), and maybe local ones too.
    case forwarded([LocalRecipient], external: [String])
    case unknownUser
    case relayDenied
    /// Submission to another domain: needs the outbound queue, which is not built yet.
    case relayUnavailable
    /// Over the authenticated account's hourly recipient limit.
    case rateLimited
    case mailboxFull
    case tooLargeForMailbox
    case temporaryFailure
}

/// How the message data went; problems found while streaming it.
public struct ReceivedMessage: Sendable, Equatable {
    public var size: Int
    public var exceededMaximumSize: Bool
    public var containsNUL: Bool
    public var lineTooLong: Bool
    public init(size: Int, exceededMaximumSize: Bool = false, containsNUL: Bool = false, lineTooLong: Bool = false) {
        self.size = size; self.exceededMaximumSize = exceededMaximumSize; self.containsNUL = containsNUL; self.lineTooLong = lineTooLong
    }
}

public enum DeliveryVerdict: Equatable, Sendable {
    /// Stored for every recipient (or at least one; see the adapter's log for the others).
    case stored
    /// Nobody could take it because their mailboxes are full.
    case mailboxFull
    /// The store could not write (disk full, I/O error): nothing was kept.
    case storageFailure
    /// Refused by policy after reading it (e.g. a From: the account may not use).
    case rejected(SMTPReply)
}

/// Everything known about a message transaction when its data is complete.
public struct SMTPTransaction: Equatable, Sendable {
    public struct Recipient: Equatable, Sendable {
        public var mailbox: SMTPMailbox
        public var accounts: [LocalRecipient]
        /// RFC 3461 §4.1 NOTIFY; nil when not given.
        public var notify: DSNNotify? = nil
        /// RFC 3461 §4.2 ORCPT as sent (`addr-type;xtext`), validated; nil when not given.
        public var originalRecipient: String? = nil
        /// Addresses elsewhere this recipient forwards to (an alias's external members).
        public var forwards: [String] = []
        /// Neither a local mailbox nor a forwarding alias: relayed for an authenticated user.
        public var isRelayed: Bool { accounts.isEmpty && forwards.isEmpty }
    }
    public var id: String
    public var sender: SMTPMailbox?
    public var recipients: [Recipient]
    public var heloName: String
    public var clientAddress: String
    /// RFC 3848 / RFC 6531 §3.7.3 protocol name for the Received header: ESMTP, ESMTPS, UTF8SMTPS, …
    public var receivedProtocol: String
    public var size: Int
    /// The account that authenticated (submission), nil on the inbound port.
    public var authenticatedAccount: String? = nil
    /// RFC 3461 §4.3 RET; nil when not given.
    public var ret: DSNReturn? = nil
    /// RFC 3461 §4.4 ENVID as sent (xtext), validated; nil when not given.
    public var envelopeID: String? = nil
    /// The TLS version and cipher the message came over (`TLSv1.3 with cipher TLS_AES_128_GCM_SHA256`),
    /// recorded in Received: as RFC 8314 §4.3 recommends; nil without TLS.
    public var tls: String? = nil
    /// RFC 8689 §4.1: MAIL FROM carried REQUIRETLS (only accepted under TLS); the message must
    /// travel onward over verified TLS only.
    public var requireTLS: Bool = false
}

public struct SMTPSessionConfiguration: Sendable {
    public var hostname: String
    public var maxMessageSize: Int
    public var maxRecipients: Int
    /// Failed commands tolerated before the session is closed (421).
    public var maxErrors: Int
    /// Whether STARTTLS can be offered (a certificate is configured).
    public var tlsAvailable: Bool
    /// Implicit TLS listener (smtps/submissions): the session is already under TLS.
    public var implicitTLS: Bool
    public var mode: SMTPMode
    /// SASL mechanisms offered (submission).
    public var authMechanisms: [String]
    /// Mechanisms that send the password in the clear are offered without TLS only when this is
    /// set (loopback clients in development).
    public var allowPlaintextAuthWithoutTLS: Bool

    public init(hostname: String, maxMessageSize: Int = 50 * 1024 * 1024, maxRecipients: Int = 100, maxErrors: Int = 20,
                tlsAvailable: Bool = true, implicitTLS: Bool = false, mode: SMTPMode = .inbound,
                authMechanisms: [String] = ["SCRAM-SHA-256", "PLAIN", "LOGIN"], allowPlaintextAuthWithoutTLS: Bool = false) {
        self.hostname = hostname; self.maxMessageSize = maxMessageSize; self.maxRecipients = maxRecipients
        self.maxErrors = maxErrors; self.tlsAvailable = tlsAvailable; self.implicitTLS = implicitTLS
        self.mode = mode; self.authMechanisms = authMechanisms; self.allowPlaintextAuthWithoutTLS = allowPlaintextAuthWithoutTLS
    }
}

public struct SMTPSession: Sendable {
    enum Phase: Equatable {
        case greeting           // before EHLO/HELO
        case ready              // after EHLO/HELO, no transaction
        case mail               // MAIL accepted, collecting RCPT
        case checkingRecipient  // waiting for recipientChecked
        case checkingSender     // waiting for senderChecked
        case authenticating     // a SASL exchange runs in the adapter
        case data               // reading DATA
        case chunk(last: Bool)  // reading a BDAT chunk
        case chunksOpen         // between BDAT chunks
        case delivering         // waiting for deliveryFinished
        case closed
    }

    public let configuration: SMTPSessionConfiguration
    public let clientAddress: String
    private let makeTransactionID: @Sendable () -> String

    private(set) var phase: Phase = .greeting
    public private(set) var tlsActive: Bool
    /// What TLS the connection uses, for the Received header (set when the handshake completes).
    public private(set) var tlsDescription: String?
    private var heloName: String?
    private var extended = false
    private var sender: SMTPMailbox??
    private var declaredSize: Int?
    private var smtpUTF8 = false
    private var recipients: [SMTPTransaction.Recipient] = []
    private var pendingRecipient: SMTPMailbox?
    private var pendingRecipientDSN: (notify: DSNNotify?, originalRecipient: String?) = (nil, nil)
    private var dsnReturn: DSNReturn?
    private var envelopeID: String?
    private var requireTLS = false
    private var usingChunks = false
    private var chunkFailed: SMTPReply?
    private var receivedSize = 0
    private var errors = 0
    private var draining = false
    public private(set) var authenticatedAccount: String?
    private var pendingSender: (mailbox: SMTPMailbox?, size: Int?, utf8: Bool, ret: DSNReturn?, envelopeID: String?, requireTLS: Bool)?

    public init(configuration: SMTPSessionConfiguration, clientAddress: String,
                makeTransactionID: @escaping @Sendable () -> String = SMTPSession.randomTransactionID) {
        self.configuration = configuration
        self.clientAddress = clientAddress
        self.makeTransactionID = makeTransactionID
        self.tlsActive = configuration.implicitTLS
    }

    public var isClosed: Bool { phase == .closed }
    /// True while message data is being read or stored: shutdown lets these finish.
    public var isInsideMessage: Bool {
        switch phase {
        case .data, .chunk, .chunksOpen, .delivering: return true
        default: return false
        }
    }

    // MARK: Events

    public mutating func start() -> [SMTPAction] {
        [.reply(SMTPReply(220, nil, "\(configuration.hostname) ESMTP Facteur"))]
    }

    public mutating func receive(_ parsed: Result<SMTPCommand, SMTPReply>) -> [SMTPAction] {
        guard phase != .closed else { return [] }
        switch parsed {
        case .failure(let reply): return fail(reply)
        case .success(let command): return handle(command)
        }
    }

    public mutating func commandLineTooLong() -> [SMTPAction] {
        fail(.lineTooLong)
    }

    public mutating func recipientChecked(_ verdict: RecipientVerdict) -> [SMTPAction] {
        guard phase == .checkingRecipient, let mailbox = pendingRecipient else { return [] }
        phase = .mail
        pendingRecipient = nil
        switch verdict {
        case .accepted(let accounts):
            recipients.append(.init(mailbox: mailbox, accounts: accounts, notify: pendingRecipientDSN.notify,
                                    originalRecipient: pendingRecipientDSN.originalRecipient))
            pendingRecipientDSN = (nil, nil)
            return [.reply(SMTPReply(250, "2.1.5", "Ok"))]
        case .forwarded(let accounts, let external):
            recipients.append(.init(mailbox: mailbox, accounts: accounts, notify: pendingRecipientDSN.notify,
                                    originalRecipient: pendingRecipientDSN.originalRecipient, forwards: external))
            pendingRecipientDSN = (nil, nil)
            return [.reply(SMTPReply(250, "2.1.5", "Ok"))]
        case .unknownUser:
            return fail(SMTPReply(550, "5.1.1", "<\(mailbox)>: Recipient address rejected: no such user"))
        case .relayDenied:
            return fail(SMTPReply(550, "5.7.1", "<\(mailbox)>: Relay access denied"))
        case .relayUnavailable:
            return fail(SMTPReply(550, "5.3.5", "<\(mailbox)>: Delivery to other domains is not available on this server yet"))
        case .rateLimited:
            return fail(SMTPReply(451, "4.7.1", "<\(mailbox)>: Too many recipients this hour, try again later"))
        case .mailboxFull:
            return fail(SMTPReply(452, "4.2.2", "<\(mailbox)>: Mailbox full"))
        case .tooLargeForMailbox:
            return fail(SMTPReply(552, "5.2.2", "<\(mailbox)>: Message larger than the mailbox quota"))
        case .temporaryFailure:
            return fail(SMTPReply(451, "4.3.0", "<\(mailbox)>: Temporary lookup failure, try again later"))
        }
    }

    /// The whole DATA section has arrived (after `<CRLF>.<CRLF>`).
    public mutating func messageReceived(_ message: ReceivedMessage) -> [SMTPAction] {
        guard phase == .data else { return [] }
        if let problem = problem(with: message) {
            resetTransaction()
            return fail(problem) + afterTransactionIfDraining()
        }
        return deliver(size: message.size)
    }

    /// One BDAT chunk has been read; `total` describes the message so far.
    public mutating func chunkReceived(_ total: ReceivedMessage) -> [SMTPAction] {
        guard case .chunk(let last) = phase else { return [] }
        receivedSize = total.size
        if chunkFailed == nil, let problem = problem(with: total) { chunkFailed = problem }
        if !last {
            phase = .chunksOpen
            if let failure = chunkFailed { return fail(failure) }
            return [.reply(SMTPReply(250, "2.0.0", "\(total.size) octets received"))]
        }
        if let failure = chunkFailed {
            resetTransaction()
            return fail(failure) + afterTransactionIfDraining()
        }
        return deliver(size: total.size)
    }

    public mutating func deliveryFinished(_ verdict: DeliveryVerdict, transactionID: String) -> [SMTPAction] {
        guard phase == .delivering else { return [] }
        resetTransaction()
        let reply: SMTPReply
        switch verdict {
        case .stored: reply = SMTPReply(250, "2.0.0", "Ok: queued as \(transactionID)")
        case .mailboxFull: reply = SMTPReply(452, "4.2.2", "Mailbox full, try again later")
        case .storageFailure: reply = SMTPReply(452, "4.3.1", "Insufficient system storage, try again later")
        case .rejected(let refusal): return fail(refusal) + afterTransactionIfDraining()
        }
        return [.reply(reply)] + afterTransactionIfDraining()
    }

    /// `description` names the negotiated version and cipher (RFC 8314 §4.3), for trace headers.
    public mutating func tlsEstablished(description: String? = nil) -> [SMTPAction] {
        // RFC 3207 §4.2: discard all knowledge obtained from the client; it must EHLO again.
        tlsActive = true
        tlsDescription = description
        heloName = nil
        extended = false
        authenticatedAccount = nil
        resetTransaction()
        phase = .greeting
        return []
    }

    public mutating func timedOut() -> [SMTPAction] {
        guard phase != .closed else { return [] }
        phase = .closed
        return [.reply(.timeout), .close]
    }

    /// The server is shutting down: leave now when idle, after the current message otherwise.
    public mutating func drain() -> [SMTPAction] {
        guard phase != .closed else { return [] }
        draining = true
        if isInsideMessage || phase == .checkingRecipient || phase == .checkingSender || phase == .authenticating { return [] }
        phase = .closed
        return [.reply(.shuttingDown), .close]
    }

    /// The adapter finished the SASL exchange it was asked to run.
    public mutating func authenticationFinished(_ result: AuthenticationResult) -> [SMTPAction] {
        guard phase == .authenticating else { return [] }
        phase = .ready
        switch result {
        case .success(let account):
            authenticatedAccount = account
            return [.reply(SMTPReply(235, "2.7.0", "Authentication successful"))] + afterTransactionIfDraining()
        case .failure(let reply):
            return fail(reply) + afterTransactionIfDraining()
        }
    }

    /// Submission: whether the authenticated account may send as the MAIL FROM address.
    public mutating func senderChecked(_ verdict: SenderVerdict) -> [SMTPAction] {
        guard phase == .checkingSender, let pending = pendingSender else { return [] }
        pendingSender = nil
        phase = .ready
        switch verdict {
        case .allowed: break
        case .notOwned:
            return fail(SMTPReply(553, "5.7.1", "Sender address not owned by the authenticated user")) + afterTransactionIfDraining()
        case .rateLimited:
            return fail(SMTPReply(451, "4.7.1", "Too many messages this hour, try again later")) + afterTransactionIfDraining()
        }
        sender = .some(pending.mailbox)
        declaredSize = pending.size
        smtpUTF8 = pending.utf8
        dsnReturn = pending.ret
        envelopeID = pending.envelopeID
        requireTLS = pending.requireTLS
        phase = .mail
        return [.reply(SMTPReply(250, "2.1.0", "Ok"))] + afterTransactionIfDraining()
    }

    /// Mechanisms offered now: none on the inbound port; on submission, all of them under TLS,
    /// only those that never reveal the password otherwise (unless development allows it).
    public var offeredMechanisms: [String] {
        guard configuration.mode == .submission else { return [] }
        if tlsActive || configuration.allowPlaintextAuthWithoutTLS { return configuration.authMechanisms }
        return configuration.authMechanisms.filter { $0.hasPrefix("SCRAM-") }
    }

    // MARK: Commands

    private mutating func handle(_ command: SMTPCommand) -> [SMTPAction] {
        switch command {
        case .ehlo(let name), .helo(let name):
            let isEHLO: Bool
            if case .ehlo = command { isEHLO = true } else { isEHLO = false }
            heloName = name
            extended = isEHLO
            resetTransaction()
            phase = .ready
            if isEHLO { return [.reply(SMTPReply(250, nil, ehloLines(greeting: name)))] }
            return [.reply(SMTPReply(250, nil, "\(configuration.hostname)"))]

        case .mail(let from, let parameters):
            guard phase != .greeting else { return fail(SMTPReply(503, "5.5.1", "Send EHLO or HELO first")) }
            guard phase == .ready else { return fail(SMTPReply(503, "5.5.1", "Nested MAIL command")) }
            return mail(from: from, parameters: parameters)

        case .rcpt(let to, let parameters):
            guard phase == .mail else { return fail(SMTPReply(503, "5.5.1", "Need MAIL command first")) }
            return rcpt(to: to, parameters: parameters)

        case .data:
            switch phase {
            case .greeting, .ready: return fail(SMTPReply(503, "5.5.1", "Need MAIL command first"))
            case .chunksOpen: return fail(SMTPReply(503, "5.5.1", "DATA not allowed after BDAT"))
            case .mail:
                guard !recipients.isEmpty else { return fail(SMTPReply(554, "5.5.1", "No valid recipients")) }
                phase = .data
                return [.reply(SMTPReply(354, nil, "End data with <CR><LF>.<CR><LF>")), .receiveData]
            default: return fail(.badSequence)
            }

        case .bdat(let size, let last):
            // RFC 3030 §2: the chunk must be read whatever the outcome, or the session desynchronises.
            switch phase {
            case .mail, .chunksOpen:
                if recipients.isEmpty, chunkFailed == nil {
                    chunkFailed = SMTPReply(554, "5.5.1", "No valid recipients")
                }
            default:
                if chunkFailed == nil {
                    chunkFailed = phase == .greeting ? SMTPReply(503, "5.5.1", "Send EHLO or HELO first") : SMTPReply(503, "5.5.1", "Need MAIL command first")
                }
            }
            usingChunks = true
            phase = .chunk(last: last)
            return [.receiveChunk(size: size, last: last)]

        case .rset:
            resetTransaction()
            return [.reply(.ok())]

        case .noop:
            return [.reply(.ok())]

        case .quit:
            phase = .closed
            return [.reply(SMTPReply(221, "2.0.0", "Bye")), .close]

        case .vrfy:
            // RFC 5321 §3.5.3: 252 says "send it and we'll see" without revealing accounts.
            return [.reply(SMTPReply(252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery"))]

        case .expn:
            return fail(SMTPReply(502, "5.5.1", "EXPN not available"))

        case .help:
            return [.reply(SMTPReply(214, "2.0.0", ["Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS",
                                                     "See RFC 5321"]))]

        case .startTLS:
            guard configuration.tlsAvailable, !tlsActive else {
                return fail(SMTPReply(502, "5.5.1", tlsActive ? "TLS already active" : "STARTTLS not available"))
            }
            guard phase == .ready || phase == .greeting else { return fail(SMTPReply(503, "5.5.1", "STARTTLS not allowed inside a transaction")) }
            return [.reply(SMTPReply(220, "2.0.0", "Ready to start TLS")), .startTLS]

        case .auth(let mechanism, let initial):
            return auth(mechanism: mechanism, initialResponse: initial)
        }
    }

    // AUTH mechanism [initial-response]     (RFC 4954 §4)
    private mutating func auth(mechanism: String, initialResponse: String?) -> [SMTPAction] {
        guard configuration.mode == .submission else {
            // Inbound MX: authentication lives on the submission listeners (RFC 6409).
            return fail(SMTPReply(502, "5.5.1", "AUTH not available on this port"))
        }
        guard phase == .ready, extended else {
            return fail(phase == .greeting || !extended ? SMTPReply(503, "5.5.1", "Send EHLO first") : SMTPReply(503, "5.5.1", "AUTH not allowed inside a transaction"))
        }
        guard authenticatedAccount == nil else { return fail(SMTPReply(503, "5.5.1", "Already authenticated")) }
        guard configuration.authMechanisms.contains(mechanism) else {
            return fail(SMTPReply(504, "5.5.4", "Unrecognized authentication type"))
        }
        guard offeredMechanisms.contains(mechanism) else {
            return fail(SMTPReply(538, "5.7.11", "Encryption required for requested authentication mechanism"))
        }
        var initial: [UInt8]?
        if let initialResponse {
            if initialResponse == "=" {
                initial = []
            } else if let decoded = Data(base64Encoded: initialResponse) {
                initial = Array(decoded)
            } else {
                return fail(SMTPReply(501, "5.5.2", "Invalid base64 in initial response"))
            }
        }
        phase = .authenticating
        return [.authenticate(mechanism: mechanism, initialResponse: initial)]
    }

    private func ehloLines(greeting name: String) -> [String] {
        var lines = ["\(configuration.hostname) greets \(name)",
                     "PIPELINING",
                     "SIZE \(configuration.maxMessageSize)",
                     "8BITMIME",
                     "SMTPUTF8",
                     "ENHANCEDSTATUSCODES",
                     "CHUNKING",
                     "DSN"]
        if configuration.tlsAvailable, !tlsActive { lines.append("STARTTLS") }
        // RFC 8689 §4: REQUIRETLS is offered only once the session itself is under TLS.
        if tlsActive { lines.append("REQUIRETLS") }
        if configuration.mode == .submission, !offeredMechanisms.isEmpty {
            lines.append("AUTH " + offeredMechanisms.joined(separator: " "))
        }
        lines.append("HELP")
        return lines
    }

    private mutating func mail(from: SMTPMailbox?, parameters: SMTPParameters) -> [SMTPAction] {
        var size: Int?
        var utf8 = false
        var ret: DSNReturn?
        var envid: String?
        var requiresTLS = false
        for (keyword, value) in parameters.items {
            switch keyword {
            case "RET":
                // RFC 3461 §4.3; a second RET (or ENVID) is a syntax error, not a silent override.
                guard ret == nil, let value, let parsed = DSNParameterSyntax.parseReturn(value) else {
                    return fail(SMTPReply(501, "5.5.4", "Bad RET parameter (RET=FULL or RET=HDRS)"))
                }
                ret = parsed
            case "ENVID":
                // RFC 3461 §4.4: xtext, at most 100 characters.
                guard envid == nil, let value, DSNParameterSyntax.parseEnvelopeID(value) != nil else {
                    return fail(SMTPReply(501, "5.5.4", "Bad ENVID parameter (xtext, at most 100 characters)"))
                }
                envid = value
            case "SIZE":
                // RFC 1870 §6: refuse at MAIL a declared size over the fixed maximum.
                guard let value, value.utf8.count <= 18, let declared = Int(value), declared >= 0 else {
                    return fail(SMTPReply(501, "5.5.4", "Bad SIZE parameter"))
                }
                guard declared <= configuration.maxMessageSize else {
                    return fail(SMTPReply(552, "5.3.4", "Message size exceeds fixed maximum message size"))
                }
                size = declared
            case "BODY":
                guard let body = value?.uppercased(), body == "7BIT" || body == "8BITMIME" else {
                    return fail(SMTPReply(555, "5.5.4", "Unsupported BODY type"))
                }
            case "SMTPUTF8":
                guard value == nil else { return fail(SMTPReply(501, "5.5.4", "SMTPUTF8 takes no value")) }
                utf8 = true
            case "REQUIRETLS":
                // RFC 8689 §4.1: no value; never accepted on a session without TLS (the client
                // must not believe the message was carried securely to us when it was not).
                guard value == nil, !requiresTLS else { return fail(SMTPReply(501, "5.5.4", "REQUIRETLS takes no value")) }
                guard tlsActive else { return fail(SMTPReply(530, "5.7.10", "REQUIRETLS needs a TLS session: STARTTLS first")) }
                requiresTLS = true
            case "AUTH":
                continue  // RFC 4954 §5: only meaningful from trusted, authenticated peers; ignored.
            default:
                return fail(SMTPReply(555, "5.5.4", "Unsupported parameter \(keyword)"))
            }
        }
        if let from, !from.isASCII, !utf8 {
            return fail(SMTPReply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8"))
        }
        if configuration.mode == .submission {
            // RFC 6409 §4.3 / RFC 4954 §6: submission needs an authenticated user.
            guard let account = authenticatedAccount else { return fail(SMTPReply(530, "5.7.0", "Authentication required")) }
            pendingSender = (from, size, utf8, ret, envid, requiresTLS)
            phase = .checkingSender
            return [.checkSender(from, account: account)]
        }
        sender = .some(from)
        declaredSize = size
        smtpUTF8 = utf8
        dsnReturn = ret
        envelopeID = envid
        requireTLS = requiresTLS
        phase = .mail
        return [.reply(SMTPReply(250, "2.1.0", "Ok"))]
    }

    private mutating func rcpt(to: SMTPMailbox, parameters: SMTPParameters) -> [SMTPAction] {
        var notify: DSNNotify?
        var orcpt: String?
        for (keyword, value) in parameters.items {
            switch keyword {
            case "NOTIFY":
                // RFC 3461 §4.1: NEVER alone, or a comma list of SUCCESS, FAILURE, DELAY.
                guard notify == nil, let value, let parsed = DSNParameterSyntax.parseNotify(value) else {
                    return fail(SMTPReply(501, "5.5.4", "Bad NOTIFY parameter (NEVER, or SUCCESS,FAILURE,DELAY)"))
                }
                notify = parsed
            case "ORCPT":
                // RFC 3461 §4.2: addr-type ";" xtext, at most 500 characters.
                guard orcpt == nil, let value, DSNParameterSyntax.parseOriginalRecipient(value) != nil else {
                    return fail(SMTPReply(501, "5.5.4", "Bad ORCPT parameter (addr-type;xtext, at most 500 characters)"))
                }
                orcpt = value
            default: return fail(SMTPReply(555, "5.5.4", "Unsupported parameter \(keyword)"))
            }
        }
        if !to.isASCII, !smtpUTF8 {
            return fail(SMTPReply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8"))
        }
        guard recipients.count < configuration.maxRecipients else {
            // RFC 5321 §4.5.3.1.10: 452 for too many recipients, so the client sends the rest later.
            return fail(SMTPReply(452, "4.5.3", "Too many recipients"))
        }
        pendingRecipient = to
        pendingRecipientDSN = (notify, orcpt)
        phase = .checkingRecipient
        return [.checkRecipient(to, declaredSize: declaredSize)]
    }

    // MARK: Helpers

    private func problem(with message: ReceivedMessage) -> SMTPReply? {
        if message.exceededMaximumSize { return SMTPReply(552, "5.3.4", "Message size exceeds fixed maximum message size") }
        if message.containsNUL { return SMTPReply(554, "5.6.0", "Message contains NUL characters") }
        if message.lineTooLong { return SMTPReply(554, "5.6.0", "Message contains a line that is too long") }
        return nil
    }

    private mutating func deliver(size: Int) -> [SMTPAction] {
        guard let sender, let heloName else { resetTransaction(); return fail(.badSequence) }
        phase = .delivering
        // RFC 3848 / RFC 6531 §3.7.3: ESMTP, ESMTPS, ESMTPA, ESMTPSA, UTF8SMTPSA, …
        var proto = smtpUTF8 ? "UTF8SMTP" : (extended ? "ESMTP" : "SMTP")
        if tlsActive { proto += "S" }
        if authenticatedAccount != nil { proto += "A" }
        let transaction = SMTPTransaction(
            id: makeTransactionID(), sender: sender, recipients: recipients, heloName: heloName,
            clientAddress: clientAddress, receivedProtocol: proto, size: size, authenticatedAccount: authenticatedAccount,
            ret: dsnReturn, envelopeID: envelopeID, tls: tlsActive ? tlsDescription : nil,
            requireTLS: requireTLS)
        return [.deliver(transaction)]
    }

    private mutating func afterTransactionIfDraining() -> [SMTPAction] {
        guard draining, phase != .closed else { return [] }
        phase = .closed
        return [.reply(.shuttingDown), .close]
    }

    private mutating func resetTransaction() {
        sender = nil
        declaredSize = nil
        smtpUTF8 = false
        recipients = []
        pendingRecipient = nil
        pendingRecipientDSN = (nil, nil)
        dsnReturn = nil
        envelopeID = nil
        requireTLS = false
        usingChunks = false
        chunkFailed = nil
        receivedSize = 0
        if phase != .closed { phase = heloName == nil ? .greeting : .ready }
    }

    private mutating func fail(_ reply: SMTPReply) -> [SMTPAction] {
        errors += 1
        if errors > configuration.maxErrors {
            phase = .closed
            return [.reply(reply), .reply(.tooManyErrors), .close]
        }
        return [.reply(reply)]
    }

    /// 12 characters of Crockford base32 from the system RNG: unique enough to find a message in logs.
    public static let randomTransactionID: @Sendable () -> String = {
        let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ".utf8)
        var generator = SystemRandomNumberGenerator()
        return String(decoding: (0..<12).map { _ in alphabet[Int(generator.next() % 32)] }, as: UTF8.self)
    }
}
