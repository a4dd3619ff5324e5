// The POP3 server session as a pure state machine: AUTHORIZATION → TRANSACTION → UPDATE
// (RFC 1939 §3–§6), with CAPA (RFC 2449), STLS (RFC 2595 §4) and SASL AUTH (RFC 5034).
// It takes command lines and the outcomes of the effects it asked for, and returns actions:
// responses to write, TLS upgrade, authentication steps, maildrop opening, message streaming and
// the UPDATE expunge. No sockets, no clock, no store: tests feed it transcripts.

import FacteurIdentity
import Foundation

public enum POP3Action: Equatable, Sendable {
    case reply(POP3Response)
    /// Write pending responses, then put TLS in front and discard anything pipelined after STLS
    /// (RFC 2595 §4; CVE-2011-0411); then call `tlsEstablished()` on handshake.
    case startTLS
    /// Run this step of a SASL exchange and call `authProgressed(_:)` with the outcome.
    case authenticate(POP3AuthStep)
    /// Lock and list the account's maildrop, then call `maildropOpened(_:)`.
    case openMaildrop(account: String)
    /// Open the message; write `+OK okText` and the stuffed content (whole, or TOP's first
    /// `topLines` body lines) ending in ".", or a `-ERR [SYS/TEMP]` line if it cannot be read;
    /// then call `retrieved()`.
    case retrieve(MaildropMessage, topLines: Int?, okText: String)
    /// UPDATE state (RFC 1939 §6): remove these messages, then call `expunged(_:)`.
    case expunge(Maildrop, uids: [UInt32])
    /// Close the connection once the responses are written.
    case close
}

public enum POP3AuthStep: Equatable, Sendable {
    /// Begin an exchange; `initialResponse` nil means none was sent (RFC 4422 §3.3).
    case start(mechanism: String, initialResponse: [UInt8]?)
    case respond([UInt8])
    /// The client answered "*" (RFC 5034 §4).
    case cancel
    /// The client's answer was not base64.
    case malformed
}

public struct POP3SessionConfiguration: Sendable {
    public var hostname: String
    /// STLS can be offered (a certificate is configured and this is not an implicit-TLS port).
    public var tlsAvailable: Bool
    /// POP3S (RFC 8314): TLS is in place before the greeting.
    public var implicitTLS: Bool
    /// Mechanisms that may be used before TLS (SCRAM only: no password on the wire), and under TLS.
    public var mechanismsWithoutTLS: [String]
    public var mechanismsWithTLS: [String]
    /// Bad commands tolerated before the connection is closed.
    public var maxErrors: Int
    /// Failed logins tolerated on one connection before it is closed.
    public var maxAuthFailures: Int

    public init(hostname: String, tlsAvailable: Bool = true, implicitTLS: Bool = false,
                mechanismsWithoutTLS: [String] = ["SCRAM-SHA-256"],
                mechanismsWithTLS: [String] = ["SCRAM-SHA-256", "PLAIN", "LOGIN"],
                maxErrors: Int = 20, maxAuthFailures: Int = 3) {
        self.hostname = hostname; self.tlsAvailable = tlsAvailable; self.implicitTLS = implicitTLS
        self.mechanismsWithoutTLS = mechanismsWithoutTLS; self.mechanismsWithTLS = mechanismsWithTLS
        self.maxErrors = maxErrors; self.maxAuthFailures = maxAuthFailures
    }
}

public struct POP3Session: Sendable {
    enum Phase: Equatable {
        /// RFC 1939 §4; `user` is the name given by USER, waiting for PASS.
        case authorization(user: String?)
        /// A SASL step (or USER/PASS check) is running.
        case authenticating(sasl: Bool)
        /// A challenge was sent; the next line is the client's SASL response.
        case saslResponse
        case opening
        case transaction
        /// RETR/TOP streaming.
        case retrieving
        /// QUIT received in TRANSACTION: deleted messages are being removed (RFC 1939 §6).
        case updating
        case closed
    }

    public let configuration: POP3SessionConfiguration
    /// Whether USER/PASS, PLAIN and LOGIN may be used without TLS: only for loopback clients
    /// (development). The adapter decides it from the peer address and the listener's settings.
    public let plaintextAllowedInClear: Bool

    private(set) var phase: Phase = .authorization(user: nil)
    public private(set) var tlsActive: Bool
    private(set) var maildrop: Maildrop?
    private(set) var deleted = Set<Int>()
    private var errors = 0
    private var authFailures = 0
    private var draining = false

    public init(configuration: POP3SessionConfiguration, plaintextAllowedInClear: Bool = false) {
        self.configuration = configuration
        self.plaintextAllowedInClear = plaintextAllowedInClear
        self.tlsActive = configuration.implicitTLS
    }

    public var isClosed: Bool { phase == .closed }
    /// After login: the long (10 minute) autologout timer applies (RFC 1939 §3).
    public var isAuthenticated: Bool {
        switch phase {
        case .transaction, .retrieving, .updating: return true
        default: return false
        }
    }
    /// True while a line from the client is a SASL response rather than a command.
    public var expectsSASLResponse: Bool { phase == .saslResponse }

    private var passwordsAllowed: Bool { tlsActive || plaintextAllowedInClear }
    private var mechanisms: [String] { passwordsAllowed ? configuration.mechanismsWithTLS : configuration.mechanismsWithoutTLS }

    // MARK: Events

    public mutating func start() -> [POP3Action] {
        // No APOP timestamp in the greeting: APOP is not offered (see POP3Command.swift).
        [.reply(.ok("Facteur POP3 server ready"))]
    }

    public mutating func receive(line: [UInt8]) -> [POP3Action] {
        switch phase {
        case .closed, .authenticating, .opening, .retrieving, .updating:
            // The adapter never feeds lines while an effect runs; ignore defensively.
            return []
        case .saslResponse:
            return saslResponse(line)
        case .authorization, .transaction:
            switch POP3CommandParser.parse(line) {
            case .failure(let error): return fail(.err(nil, error.message))
            case .success(let command): return handle(command)
            }
        }
    }

    public mutating func lineTooLong() -> [POP3Action] {
        if phase == .saslResponse {
            phase = .authenticating(sasl: true)
            return [.authenticate(.malformed)]
        }
        return fail(.err(nil, "Line too long"))
    }

    public mutating func authProgressed(_ outcome: AuthOutcome) -> [POP3Action] {
        guard case .authenticating(let sasl) = phase else { return [] }
        switch outcome {
        case .challenge(let bytes):
            guard sasl else {
                // USER/PASS runs PLAIN with an initial response; it never needs a challenge.
                phase = .authenticating(sasl: false)
                return [.authenticate(.cancel)]
            }
            phase = .saslResponse
            return [.reply(.continuation(Data(bytes).base64EncodedString()))]
        case .success(let success):
            phase = .opening
            return [.openMaildrop(account: success.authcid)]
        case .failure(let failure):
            phase = .authorization(user: nil)
            switch failure.reason {
            case .authenticationFailed, .authorizationFailed:
                authFailures += 1
                if authFailures >= configuration.maxAuthFailures {
                    phase = .closed
                    return [.reply(.err(.auth, "Too many authentication failures")), .close]
                }
                return fail(.err(.auth, "Authentication failed"))
            case .cancelled:
                return fail(.err(nil, "Authentication cancelled"))
            case .malformed:
                return fail(.err(nil, "Malformed authentication exchange"))
            case .temporarilyUnavailable:
                return [.reply(.err(.sysTemp, "Authentication temporarily unavailable, try again later"))]
            case .tooManyFailures:
                return [.reply(.err(.sysTemp, "Too many failed logins, try again later"))]
            }
        }
    }

    public mutating func maildropOpened(_ opening: MaildropOpening) -> [POP3Action] {
        guard phase == .opening else { return [] }
        switch opening {
        case .opened(let drop):
            maildrop = drop
            deleted = []
            phase = .transaction
            if draining { return drainNow() }
            let octets = drop.messages.reduce(0) { $0 + $1.size }
            return [.reply(.ok("Logged in, \(drop.messages.count) messages (\(octets) octets)"))]
        case .inUse:
            phase = .authorization(user: nil)
            return [.reply(.err(.inUse, "Maildrop already in use by another POP3 session"))]
        case .unavailable:
            phase = .authorization(user: nil)
            return [.reply(.err(.sysTemp, "Maildrop unavailable, try again later"))]
        }
    }

    public mutating func retrieved() -> [POP3Action] {
        guard phase == .retrieving else { return [] }
        phase = .transaction
        return draining ? drainNow() : []
    }

    public mutating func expunged(_ succeeded: Bool) -> [POP3Action] {
        guard phase == .updating, let maildrop else { return [] }
        phase = .closed
        let left = maildrop.messages.count - deleted.count
        if succeeded {
            return [.reply(.ok("\(configuration.hostname) signing off (\(left) messages left)")), .close]
        }
        // RFC 1939 §6: -ERR if some deleted messages could not be removed.
        return [.reply(.err(.sysTemp, "Some deleted messages not removed")), .close]
    }

    public mutating func tlsEstablished() -> [POP3Action] {
        // RFC 2595 §4: the client discards what it knew; a USER given before is forgotten.
        tlsActive = true
        if case .authorization = phase { phase = .authorization(user: nil) }
        return []
    }

    /// Autologout (RFC 1939 §3): the session ends without entering UPDATE; nothing is deleted.
    public mutating func timedOut() -> [POP3Action] {
        guard phase != .closed else { return [] }
        phase = .closed
        return [.reply(.err(nil, "Autologout; idle for too long")), .close]
    }

    /// The server is shutting down: leave now when idle, after the current effect otherwise.
    /// Like a timeout, nothing marked deleted is removed (no QUIT, no UPDATE).
    public mutating func drain() -> [POP3Action] {
        draining = true
        switch phase {
        case .authorization, .transaction, .saslResponse: return drainNow()
        default: return []
        }
    }

    private mutating func drainNow() -> [POP3Action] {
        phase = .closed
        return [.reply(.err(.sysTemp, "Server shutting down, try again later")), .close]
    }

    // MARK: Commands

    private mutating func handle(_ command: POP3Command) -> [POP3Action] {
        switch command {
        case .capa:
            return [.reply(.multiline("Capability list follows", capabilities()))]
        case .noop:
            guard phase == .transaction else { return wrongState() }
            return [.reply(.ok(""))]
        case .quit:
            return quit()
        case .user(let name):
            guard case .authorization = phase else { return wrongState() }
            guard passwordsAllowed else { return fail(.err(.auth, "Plaintext authentication disallowed without TLS; use STLS first")) }
            phase = .authorization(user: name)
            return [.reply(.ok("Send your password"))]
        case .pass(let password):
            guard case .authorization(let user) = phase else { return wrongState() }
            guard let user else { return fail(.err(nil, "USER first")) }
            guard passwordsAllowed else { return fail(.err(.auth, "Plaintext authentication disallowed without TLS; use STLS first")) }
            // PLAIN's message (RFC 4616): empty authzid, authcid, password. The Authenticator then
            // hashes off the event loop, throttles, and equalises timing for unknown users.
            let message = [0] + Array(user.utf8) + [0] + Array(password.utf8)
            phase = .authenticating(sasl: false)
            return [.authenticate(.start(mechanism: "PLAIN", initialResponse: message))]
        case .auth(let mechanism, let initial):
            guard case .authorization = phase else { return wrongState() }
            guard let mechanism else {
                return [.reply(.multiline("Supported mechanisms follow", mechanisms))]
            }
            guard mechanisms.contains(mechanism) else {
                if configuration.mechanismsWithTLS.contains(mechanism) {
                    return fail(.err(.auth, "Plaintext authentication disallowed without TLS; use STLS first"))
                }
                return fail(.err(nil, "Unrecognized authentication type"))
            }
            var response: [UInt8]?
            if let initial {
                // RFC 5034 §4: "=" is an empty initial response.
                if initial == "=" { response = [] } else {
                    guard let decoded = Data(base64Encoded: initial) else { return fail(.err(nil, "Invalid base64 in initial response")) }
                    response = [UInt8](decoded)
                }
            }
            phase = .authenticating(sasl: true)
            return [.authenticate(.start(mechanism: mechanism, initialResponse: response))]
        case .stls:
            guard case .authorization = phase else { return wrongState() }
            guard !tlsActive else { return fail(.err(nil, "Command not permitted when TLS active")) }
            guard configuration.tlsAvailable else { return fail(.err(nil, "STLS not available")) }
            phase = .authorization(user: nil)
            return [.reply(.ok("Begin TLS negotiation")), .startTLS]
        case .stat, .list, .retr, .dele, .rset, .top, .uidl:
            guard phase == .transaction, let maildrop else { return wrongState() }
            return transaction(command, maildrop: maildrop)
        }
    }

    private mutating func transaction(_ command: POP3Command, maildrop: Maildrop) -> [POP3Action] {
        switch command {
        case .stat:
            let (count, octets) = visibleTotals(maildrop)
            return [.reply(.ok("\(count) \(octets)"))]
        case .list(nil):
            let lines = maildrop.messages.enumerated().compactMap { index, message in
                deleted.contains(index + 1) ? nil : "\(index + 1) \(message.size)"
            }
            let (count, octets) = visibleTotals(maildrop)
            return [.reply(.multiline("\(count) messages (\(octets) octets)", lines))]
        case .list(let number?):
            guard let message = lookup(number, in: maildrop) else { return noSuchMessage(number, maildrop) }
            return [.reply(.ok("\(number) \(message.size)"))]
        case .uidl(nil):
            let lines = maildrop.messages.enumerated().compactMap { index, message in
                deleted.contains(index + 1) ? nil : "\(index + 1) \(message.uniqueID)"
            }
            return [.reply(.multiline("", lines))]
        case .uidl(let number?):
            guard let message = lookup(number, in: maildrop) else { return noSuchMessage(number, maildrop) }
            return [.reply(.ok("\(number) \(message.uniqueID)"))]
        case .retr(let number):
            guard let message = lookup(number, in: maildrop) else { return noSuchMessage(number, maildrop) }
            phase = .retrieving
            return [.retrieve(message, topLines: nil, okText: "\(message.size) octets")]
        case .top(let number, let lines):
            guard let message = lookup(number, in: maildrop) else { return noSuchMessage(number, maildrop) }
            phase = .retrieving
            return [.retrieve(message, topLines: lines, okText: "Top of message follows")]
        case .dele(let number):
            guard lookup(number, in: maildrop) != nil else { return noSuchMessage(number, maildrop) }
            deleted.insert(number)
            return [.reply(.ok("Message \(number) deleted"))]
        case .rset:
            deleted = []
            let octets = maildrop.messages.reduce(0) { $0 + $1.size }
            return [.reply(.ok("Maildrop has \(maildrop.messages.count) messages (\(octets) octets)"))]
        default:
            return wrongState()
        }
    }

    private mutating func quit() -> [POP3Action] {
        switch phase {
        case .transaction:
            guard let maildrop else { return wrongState() }
            if deleted.isEmpty {
                phase = .closed
                return [.reply(.ok("\(configuration.hostname) signing off (\(maildrop.messages.count) messages left)")), .close]
            }
            phase = .updating
            let uids = deleted.sorted().map { maildrop.messages[$0 - 1].uid }
            return [.expunge(maildrop, uids: uids)]
        default:
            // QUIT in AUTHORIZATION: no UPDATE state (RFC 1939 §4).
            phase = .closed
            return [.reply(.ok("\(configuration.hostname) signing off")), .close]
        }
    }

    private func lookup(_ number: Int, in maildrop: Maildrop) -> MaildropMessage? {
        guard number >= 1, number <= maildrop.messages.count, !deleted.contains(number) else { return nil }
        return maildrop.messages[number - 1]
    }

    private mutating func noSuchMessage(_ number: Int, _ maildrop: Maildrop) -> [POP3Action] {
        if number >= 1, number <= maildrop.messages.count {
            return fail(.err(nil, "Message \(number) already deleted"))
        }
        return fail(.err(nil, "No such message, only \(maildrop.messages.count) messages in maildrop"))
    }

    private func visibleTotals(_ maildrop: Maildrop) -> (Int, Int) {
        var count = 0, octets = 0
        for (index, message) in maildrop.messages.enumerated() where !deleted.contains(index + 1) {
            count += 1
            octets += message.size
        }
        return (count, octets)
    }

    /// RFC 2449 §6. USER, SASL and STLS only where they can be used (AUTHORIZATION, and USER and
    /// password mechanisms only where passwords may travel).
    func capabilities() -> [String] {
        var lines = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER", "LOGIN-DELAY 0"]
        if case .authorization = phase {
            if passwordsAllowed { lines.append("USER") }
            if !mechanisms.isEmpty { lines.append("SASL " + mechanisms.joined(separator: " ")) }
            if configuration.tlsAvailable, !tlsActive { lines.append("STLS") }
        }
        lines.append("IMPLEMENTATION Facteur")
        return lines
    }

    private mutating func saslResponse(_ line: [UInt8]) -> [POP3Action] {
        phase = .authenticating(sasl: true)
        if line == [UInt8(ascii: "*")] { return [.authenticate(.cancel)] }
        if line.isEmpty { return [.authenticate(.respond([]))] }
        guard let decoded = Data(base64Encoded: Data(line)) else { return [.authenticate(.malformed)] }
        return [.authenticate(.respond([UInt8](decoded)))]
    }

    private mutating func wrongState() -> [POP3Action] {
        fail(.err(nil, "Command not valid in this state"))
    }

    private mutating func fail(_ response: POP3Response) -> [POP3Action] {
        errors += 1
        if errors >= configuration.maxErrors {
            phase = .closed
            return [.reply(response), .reply(.err(nil, "Too many errors, closing connection")), .close]
        }
        return [.reply(response)]
    }
}
