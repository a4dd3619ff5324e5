// Carries out IMAP commands against the store (FacteurStore `MailStore`) and FacteurIdentity's
// `Authenticator`, writing responses to an `IMAPOutput` as they are ready, so that a large FETCH
// streams instead of being built whole. The session value (`IMAPSession`) holds the state; the
// runner holds no per-connection state, so one runner serves a whole listener.
// RFC 9051 §6 (commands), §7 (responses).

import FacteurNet
import FacteurIdentity
import FacteurStore
import Foundation

/// Where responses go: the connection (with back-pressure: `write` returns once the bytes are
/// handed to the socket), or a test's transcript.
public protocol IMAPOutput: Sendable {
    func write(_ bytes: [UInt8]) async
}

/// What the connection does after a command.
public enum IMAPNext: Sendable, Equatable {
    /// Read the next command.
    case command
    /// Put TLS in front (the OK has been written); then read commands.
    case startTLS
    /// An AUTHENTICATE exchange waits for the client's next line (`continueAuthentication`).
    case authenticationLine
    /// IDLE: wait for DONE (`endIdle`) or a change (`idleUpdate`).
    case idle
    /// Close the connection (LOGOUT, or too many errors).
    case close
    /// Put DEFLATE in both directions (the OK has been written); then read commands (RFC 4978).
    case startCompression
}

public struct IMAPCommandRunner: Sendable {
    public let store: any MailStore
    public let authenticator: Authenticator
    public let changeFeedAvailable: Bool
    /// Authenticated connections per account, shared by the IMAP and IMAPS listeners; nil: no limit.
    public let accountLimiter: AccountConnectionLimiter?

    public init(store: any MailStore, authenticator: Authenticator, changeFeedAvailable: Bool = true,
                accountLimiter: AccountConnectionLimiter? = nil) {
        self.accountLimiter = accountLimiter
        self.store = store
        self.authenticator = authenticator
        self.changeFeedAvailable = changeFeedAvailable
    }

    // MARK: Entry points

    /// A command line the parser could not read (RFC 9051 §7.1.5: BAD, and the session goes on).
    public func rejectSyntax(tag: String?, message: String, session: inout IMAPSession, output: any IMAPOutput) async -> IMAPNext {
        if session.noteBadCommand() {
            await output.write(line("* BYE Too many invalid commands"))
            session.didLogout()
            return .close
        }
        await output.write(line("\(tag ?? "*") BAD \(message)"))
        return .command
    }

    public func run(_ command: IMAPCommand, session: inout IMAPSession, output: any IMAPOutput) async -> IMAPNext {
        let tag = command.tag
        guard session.allows(command.kind) else {
            let why: String
            switch session.state {
            case .notAuthenticated: why = "Log in first"
            case .authenticated, .selected:
                switch command.kind {
                case .startTLS, .login, .authenticate: why = "Already authenticated"
                default: why = "Select a mailbox first"
                }
            case .logout: why = "Logging out"
            }
            return await rejectSyntax(tag: tag, message: "\(command.name) \(why)", session: &session, output: output)
        }
        session.noteGoodCommand()
        let inbox = session.changeInbox

        switch command.kind {
        case .capability:
            await output.write(line("* CAPABILITY " + capabilities(session).joined(separator: " ")))
            await finish(tag, "CAPABILITY completed", session: &session, output: output, expunges: true)
        case .noop, .check:
            await finish(tag, "\(command.name) completed", session: &session, output: output, expunges: true)
        case .logout:
            await output.write(line("* BYE Logging out"))
            await output.write(line("\(tag) OK LOGOUT completed"))
            session.didLogout()
            return .close
        case .id:
            // RFC 2971 §3.3: the server's own fields.
            await output.write(line("* ID (\"name\" \"Facteur\" \"vendor\" \"Facteur\")"))
            await finish(tag, "ID completed", session: &session, output: output, expunges: true)
        case .namespace:
            // RFC 2342 §5: one personal namespace with "/" as delimiter; no shared ones.
            await output.write(line("* NAMESPACE ((\"\" \"/\")) NIL NIL"))
            await finish(tag, "NAMESPACE completed", session: &session, output: output, expunges: true)
        case .enable(let names):
            // RFC 5161 §3.1: answer with what was enabled now, ignoring the unknown.
            var newly: [String] = []
            for name in names {
                let upper = name.uppercased()
                guard ["IMAP4REV2", "UTF8=ACCEPT", "CONDSTORE", "QRESYNC"].contains(upper), !session.enabled.contains(upper) else { continue }
                session.enabled.insert(upper)
                // RFC 7162 §3.2.3: QRESYNC implies CONDSTORE.
                if upper == "QRESYNC" { session.enabled.insert("CONDSTORE") }
                newly.append(upper == "IMAP4REV2" ? "IMAP4rev2" : upper)
            }
            await output.write(line("* ENABLED" + newly.map { " " + $0 }.joined()))
            await finish(tag, "ENABLE completed", session: &session, output: output, expunges: true)
        case .startTLS:
            guard session.configuration.tlsAvailable, !session.tlsActive else {
                await output.write(line("\(tag) BAD STARTTLS not available"))
                return .command
            }
            await output.write(line("\(tag) OK Begin TLS negotiation now"))
            return .startTLS
        case .compress(let mechanism):
            // RFC 4978 §3: DEFLATE only, once per connection.
            guard mechanism == "DEFLATE" else {
                await output.write(line("\(tag) BAD Unknown compression mechanism"))
                return .command
            }
            guard !session.compressionActive else {
                await output.write(line("\(tag) NO [COMPRESSIONACTIVE] DEFLATE is already active"))
                return .command
            }
            session.compressionActive = true
            await output.write(line("\(tag) OK DEFLATE active"))
            return .startCompression
        case .login(let user, let password):
            return await login(tag: tag, user: user, password: password, session: &session, output: output)
        case .authenticate(let mechanism, let initial):
            return await authenticate(tag: tag, mechanism: mechanism, initialResponse: initial, session: &session, output: output)
        case .select(let name, let condStore, let qresync), .examine(let name, let condStore, let qresync):
            if case .select = command.kind {
                await select(tag: tag, name: name, readOnly: false, condStore: condStore, qresync: qresync, session: &session, output: output)
            } else {
                await select(tag: tag, name: name, readOnly: true, condStore: condStore, qresync: qresync, session: &session, output: output)
            }
        case .create(let name, let uses):
            await create(tag: tag, name: name, uses: uses, session: &session, output: output)
        case .delete(let name):
            await delete(tag: tag, name: name, session: &session, output: output)
        case .rename(let from, let to):
            await rename(tag: tag, from: from, to: to, session: &session, output: output)
        case .subscribe(let name), .unsubscribe(let name):
            let subscribe: Bool
            if case .subscribe = command.kind { subscribe = true } else { subscribe = false }
            await setSubscribed(tag: tag, name: name, subscribe, session: &session, output: output)
        case .list(let list):
            await self.list(tag: tag, list, lsub: false, session: &session, output: output)
        case .lsub(let reference, let pattern):
            await self.list(tag: tag, ListCommand(reference: reference, patterns: [pattern], selectionOptions: ["SUBSCRIBED"]),
                            lsub: true, session: &session, output: output)
        case .status(let name, let items):
            await status(tag: tag, name: name, items: items, session: &session, output: output)
        case .append(let name, let messages):
            await append(tag: tag, name: name, messages: messages, session: &session, output: output)
        case .idle:
            await output.write(line("+ idling"))
            await reportChanges(session: &session, output: output, expunges: true)
            return .idle
        case .close:
            if let selected = session.selected, !selected.readOnly {
                // RFC 9051 §6.4.1: CLOSE expunges silently.
                _ = await expungeDeleted(session: &session, output: nil, only: nil)
            }
            session.didDeselect()
            inbox.watch(accountID: session.account?.id, mailboxID: nil)
            await output.write(line("\(tag) OK CLOSE completed"))
        case .unselect:
            session.didDeselect()
            inbox.watch(accountID: session.account?.id, mailboxID: nil)
            await output.write(line("\(tag) OK UNSELECT completed"))
        case .expunge:
            await expunge(tag: tag, only: nil, session: &session, output: output)
        case .uidExpunge(let set):
            await expunge(tag: tag, only: set, session: &session, output: output)
        case .fetch(let set, let attributes, let modifiers, let uid):
            await fetch(tag: tag, set: set, attributes: attributes, modifiers: modifiers, uid: uid, session: &session, output: output)
        case .store(let set, let action, let unchangedSince, let uid):
            await store(tag: tag, set: set, action: action, unchangedSince: unchangedSince, uid: uid, session: &session, output: output)
        case .copy(let set, let target, let uid):
            await copy(tag: tag, set: set, target: target, move: false, uid: uid, session: &session, output: output)
        case .getQuota(let root):
            await getQuota(tag: tag, root: root, session: &session, output: output)
        case .getQuotaRoot(let name):
            await getQuotaRoot(tag: tag, name: name, session: &session, output: output)
        case .setQuota:
            // RFC 9208 §4.1.3: limits are the administrator's (`facteur account quota`); no QUOTASET.
            await output.write(line("\(tag) NO [NOPERM] Quotas are set by the administrator"))
        case .move(let set, let target, let uid):
            await copy(tag: tag, set: set, target: target, move: true, uid: uid, session: &session, output: output)
        case .search(let search, let uid):
            await self.search(tag: tag, search, uid: uid, session: &session, output: output)
        case .sort(let sort, let uid):
            await self.sort(tag: tag, sort, uid: uid, session: &session, output: output)
        case .thread(let thread, let uid):
            await self.thread(tag: tag, thread, uid: uid, session: &session, output: output)
        }
        return session.state == .logout ? .close : .command
    }

    func capabilities(_ session: IMAPSession) -> [String] {
        session.capabilities(mechanisms: authenticator.configuration.mechanisms.map(\.rawValue))
    }

    // MARK: IDLE (RFC 2177)

    /// A change arrived while idling: report it now.
    public func idleUpdate(session: inout IMAPSession, output: any IMAPOutput) async {
        await reportChanges(session: &session, output: output, expunges: true)
    }

    /// The client's line during IDLE: DONE ends it; anything else is a BAD and ends it too.
    public func endIdle(tag: String, line received: [UInt8], session: inout IMAPSession, output: any IMAPOutput) async -> IMAPNext {
        guard String(decoding: received, as: UTF8.self).uppercased() == "DONE" else {
            await output.write(line("\(tag) BAD Expected DONE"))
            return .command
        }
        await finish(tag, "IDLE terminated", session: &session, output: output, expunges: true)
        return .command
    }

    // MARK: Helpers

    func line(_ text: String) -> [UInt8] { Array((text + "\r\n").utf8) }

    /// Reports pending changes, then the tagged OK (RFC 9051 §7.5.1: EXPUNGE is held back during
    /// FETCH, STORE and SEARCH; EXISTS and flag updates may always go).
    func finish(_ tag: String, _ text: String, session: inout IMAPSession, output: any IMAPOutput, expunges: Bool) async {
        await reportChanges(session: &session, output: output, expunges: expunges)
        await output.write(line("\(tag) OK \(text)"))
    }

    /// The decoded name, or a tagged BAD/NO written and nil.
    func mailboxName(_ name: MailboxName, tag: String, session: IMAPSession, output: any IMAPOutput) async -> String? {
        guard let decoded = session.decodeMailboxName(name) else {
            await output.write(line("\(tag) NO [CANNOT] Invalid mailbox name"))
            return nil
        }
        return decoded
    }

    /// Maps a store error to a tagged NO with the RFC 5530 response code.
    func storeFailure(_ error: any Error, tag: String, output: any IMAPOutput) async {
        let text: String
        switch error {
        case StoreError.alreadyExists(let what): text = "NO [ALREADYEXISTS] \(what) already exists"
        case StoreError.notFound(let what): text = "NO [NONEXISTENT] \(what) not found"
        case StoreError.invalid(let why): text = "NO [CANNOT] \(why)"
        case StoreError.writeFailed: text = "NO [SERVERBUG] The change could not be saved"
        default: text = "NO [UNAVAILABLE] Try again later"
        }
        await output.write(line("\(tag) \(text)"))
    }
}
