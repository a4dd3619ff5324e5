// Drives a SASL exchange (RFC 4422) for a protocol layer: looks the account up through
// an async closure, runs the password KDF on `BlockingWorkPool`, applies the
// `SharedAuthThrottle`, and turns SCRAM's final data into one more challenge for
// protocols that cannot carry data with success. SMTP AUTH, IMAP AUTHENTICATE and POP3
// AUTH all use it the same way:
//
//     guard var exchange = authenticator.begin(mechanism: name, client: peerIP) else { /* 504 / NO */ }
//     var outcome = await exchange.respond(initialResponse)          // nil: no initial response
//     while case .challenge(let bytes) = outcome {
//         send(continuation(base64(bytes)))                          // "334 …" / "+ …"
//         let line = await readLine()
//         if line == "*" { outcome = exchange.cancel(); break }
//         guard let decoded = base64Decode(line) else { outcome = exchange.reject(); break }
//         outcome = await exchange.respond(decoded)
//     }
//     switch outcome { case .success(let s): …; case .failure(let f): …; case .challenge: break }
//
// Successful password checks are remembered for a minute (`PasswordCheckCache`, like Dovecot's
// auth_cache with positive entries only) so that a client logging in again and again does not
// pay a scrypt run each time; see that type for why this is safe.

import Crypto
import FacteurStore
import Synchronization

public struct Authenticator: Sendable {
    public typealias Lookup = @Sendable (String) async throws -> StoredCredentials?

    public struct Configuration: Sendable {
        /// Offered mechanisms, in preference order.
        public var mechanisms: [SASLMechanism.Name]
        public var hasher: PasswordHasher
        /// SCRAM iteration count for credentials made here (upgrades) and announced for
        /// unknown users.
        public var scramIterations: Int
        public var sasl: SASLOptions
        /// Recompute weak or incomplete credentials after a successful password login.
        public var upgradeCredentials: Bool
        /// Most client responses in one exchange (none of ours needs more than 3).
        public var maximumResponses: Int

        public init(mechanisms: [SASLMechanism.Name] = [.scramSHA256, .plain, .login],
                    hasher: PasswordHasher = PasswordHasher(),
                    scramIterations: Int = SCRAMCredentials.defaultIterations,
                    sasl: SASLOptions = SASLOptions(), upgradeCredentials: Bool = true, maximumResponses: Int = 5) {
            self.mechanisms = mechanisms; self.hasher = hasher; self.scramIterations = scramIterations
            // Unknown users must be announced with the iteration count real accounts get.
            self.sasl = sasl; self.sasl.unknownUserIterations = scramIterations
            self.upgradeCredentials = upgradeCredentials; self.maximumResponses = maximumResponses
        }
    }

    public let configuration: Configuration
    let lookup: Lookup
    let throttle: SharedAuthThrottle?
    let workPool: BlockingWorkPool
    let sleep: @Sendable (Duration) async -> Void
    /// Shared by every copy of this authenticator (SMTP, IMAP and POP3 use one).
    public let passwordCache: PasswordCheckCache?

    /// - Parameters:
    ///   - lookup: the account's stored credentials by normalised address, or nil.
    ///     Errors thrown become `.temporarilyUnavailable`.
    ///   - throttle: shared failure counting; nil disables throttling.
    ///   - sleep: how a failure's delay is waited out (tests inject a recorder).
    ///   - passwordCache: successful password checks remembered for a short while; nil checks
    ///     every password with the KDF.
    public init(configuration: Configuration = Configuration(), lookup: @escaping Lookup,
                throttle: SharedAuthThrottle? = nil, workPool: BlockingWorkPool = .shared,
                sleep: @escaping @Sendable (Duration) async -> Void = { try? await Task.sleep(for: $0) },
                passwordCache: PasswordCheckCache? = PasswordCheckCache()) {
        self.configuration = configuration; self.lookup = lookup; self.throttle = throttle
        self.workPool = workPool; self.sleep = sleep; self.passwordCache = passwordCache
    }

    /// Mechanism names to advertise (EHLO `AUTH`, IMAP `AUTH=`, POP3 `SASL`). PLAIN and
    /// LOGIN send the password in clear: list them only on a TLS-protected connection.
    public func advertisedMechanisms(connectionIsSecure: Bool) -> [String] {
        configuration.mechanisms.filter { connectionIsSecure || $0 == .scramSHA256 }.map(\.rawValue)
    }

    /// Starts an exchange, or returns nil when the mechanism is unknown or not offered.
    /// - Parameters:
    ///   - client: the peer's IP address, for throttling.
    ///   - finalDataAsChallenge: true for protocols whose success reply cannot carry
    ///     data (SMTP RFC 4954 §4, POP3 RFC 5034 §4, IMAP4rev1 RFC 3501 §6.2.2): SCRAM's `v=` is then
    ///     sent as one more challenge, answered by an empty response.
    public func begin(mechanism: String, client: String? = nil, finalDataAsChallenge: Bool = true) -> AuthExchange? {
        guard let sasl = SASLMechanism(name: mechanism, options: configuration.sasl),
              configuration.mechanisms.contains(sasl.name) else { return nil }
        return AuthExchange(authenticator: self, mechanism: sasl, client: client, finalDataAsChallenge: finalDataAsChallenge)
    }
}

/// What the protocol layer does next.
public enum AuthOutcome: Sendable, Equatable {
    /// Send these bytes as a continuation (base64) and pass the client's answer to `respond`.
    case challenge([UInt8])
    case success(AuthSuccess)
    case failure(SASLFailure)
}

public struct AuthSuccess: Sendable, Equatable {
    /// The authenticated account's address, normalised (lower case).
    public var authcid: String
    /// The authorisation identity the client asked for, when it sent one (equal to authcid).
    public var authzid: String?
    public var mechanism: SASLMechanism.Name
    /// SCRAM's server-final `v=` data, when `finalDataAsChallenge` was false: for a
    /// protocol that can carry additional data in its success reply.
    public var finalData: [UInt8]?
    /// Set when a password login showed that the stored credentials are weaker than
    /// the current settings or lack SCRAM keys: store them with
    /// `MailStore.setCredentials(address: authcid, _:)`.
    public var upgradedCredentials: StoredCredentials?
}

/// One exchange in progress. A value: the protocol layer keeps it in its session state.
public struct AuthExchange: Sendable {
    private let authenticator: Authenticator
    private var mechanism: SASLMechanism
    private let client: String?
    private let finalDataAsChallenge: Bool
    private var responses = 0
    private var account: String?
    private var pendingSuccess: AuthSuccess?
    private var finished = false

    fileprivate init(authenticator: Authenticator, mechanism: SASLMechanism, client: String?, finalDataAsChallenge: Bool) {
        self.authenticator = authenticator; self.mechanism = mechanism; self.client = client
        self.finalDataAsChallenge = finalDataAsChallenge
    }

    public var mechanismName: SASLMechanism.Name { mechanism.name }

    /// Feeds the client's (base64-decoded) response; `nil` for "no initial response".
    public mutating func respond(_ clientResponse: [UInt8]?) async -> AuthOutcome {
        guard !finished else { return .failure(SASLFailure(.malformed)) }
        responses += 1
        guard responses <= authenticator.configuration.maximumResponses else { return finish(.failure(SASLFailure(.malformed))) }

        // RFC 4422 §5: after success data sent as a challenge the client answers empty.
        if let success = pendingSuccess {
            guard clientResponse?.isEmpty ?? true else { return finish(.failure(SASLFailure(.malformed))) }
            return finish(.success(success))
        }
        if responses == 1, let throttle = authenticator.throttle,
           case .locked(let retryAfter) = await throttle.check(client: client, account: nil) {
            return finish(.failure(SASLFailure(.tooManyFailures(retryAfter: retryAfter))))
        }

        var step = mechanism.step(clientResponse)
        var upgraded: StoredCredentials?
        switch step {
        case .needCredentials(let authcid):
            account = authcid
            if let locked = await lockout(account: authcid) { return finish(.failure(locked)) }
            let credentials: StoredCredentials?
            do { credentials = try await authenticator.lookup(authcid) } catch {
                return finish(.failure(SASLFailure(.temporarilyUnavailable)))
            }
            step = mechanism.provide(credentials)
        case .verifyPassword(let authcid, let password):
            account = authcid
            if let locked = await lockout(account: authcid) { return finish(.failure(locked)) }
            let credentials: StoredCredentials?
            do { credentials = try await authenticator.lookup(authcid) } catch {
                return finish(.failure(SASLFailure(.temporarilyUnavailable)))
            }
            if let cache = authenticator.passwordCache, let credentials,
               cache.isKnownGood(account: authcid, password: password, stored: credentials) {
                step = mechanism.passwordChecked(true)
                break
            }
            let configuration = authenticator.configuration
            let checked = await authenticator.workPool.run { () -> (Bool, StoredCredentials?) in
                let matches = Credentials.verify(password: password, against: credentials, hasher: configuration.hasher)
                guard matches, configuration.upgradeCredentials, let credentials,
                      Credentials.needsUpgrade(credentials, hasher: configuration.hasher,
                                               scramIterations: configuration.scramIterations) else { return (matches, nil) }
                return (true, try? Credentials.make(password: password, hasher: configuration.hasher,
                                                    scramIterations: configuration.scramIterations))
            }
            guard let (matches, fresh) = checked else { return finish(.failure(SASLFailure(.temporarilyUnavailable))) }
            upgraded = fresh
            // Upgraded credentials are about to replace these: nothing worth remembering yet.
            if matches, fresh == nil, let credentials {
                authenticator.passwordCache?.remember(account: authcid, password: password, stored: credentials)
            }
            step = mechanism.passwordChecked(matches)
        case .challenge, .success, .failure:
            break
        }

        switch step {
        case .challenge(let bytes):
            return .challenge(bytes)
        case .success(let authcid, let authzid, let finalData):
            if let throttle = authenticator.throttle { await throttle.recordSuccess(client: client, account: authcid) }
            var success = AuthSuccess(authcid: authcid, authzid: authzid, mechanism: mechanism.name,
                                      finalData: finalData, upgradedCredentials: upgraded)
            if finalDataAsChallenge, let finalData {
                success.finalData = nil
                pendingSuccess = success
                return .challenge(finalData)
            }
            return finish(.success(success))
        case .failure(let failure):
            if failure.reason == .authenticationFailed, let throttle = authenticator.throttle {
                let delay = await throttle.recordFailure(client: client, account: account)
                if delay > .zero { await authenticator.sleep(delay) }
            }
            return finish(.failure(failure))
        case .needCredentials, .verifyPassword:
            // A mechanism never asks twice; treat it as a broken exchange.
            return finish(.failure(SASLFailure(.malformed)))
        }
    }

    /// The client cancelled with "*" (RFC 4954 §4, RFC 9051 §6.2.2, RFC 5034 §4).
    public mutating func cancel() -> AuthOutcome { finish(.failure(SASLFailure(.cancelled))) }

    /// The client's answer was not valid base64: the exchange ends as malformed.
    public mutating func reject() -> AuthOutcome { finish(.failure(SASLFailure(.malformed))) }

    private func lockout(account: String) async -> SASLFailure? {
        guard let throttle = authenticator.throttle,
              case .locked(let retryAfter) = await throttle.check(client: client, account: account) else { return nil }
        return SASLFailure(.tooManyFailures(retryAfter: retryAfter))
    }

    private mutating func finish(_ outcome: AuthOutcome) -> AuthOutcome {
        finished = true
        pendingSuccess = nil
        return outcome
    }
}

/// Successful password checks, remembered for a short while (Dovecot's auth_cache, positive
/// results only). A password check costs one scrypt run on purpose; a client that polls with
/// USER/PASS or AUTH PLAIN every minute would pay it every time.
///
/// Why this does not weaken anything:
/// - What is kept per account is an HMAC-SHA-256 of the password under a key drawn at random
///   when the process starts and never stored, and the stored password hash it was checked
///   against. No password, nothing reusable outside this process.
/// - A login is accepted from the cache only if the entry is younger than `timeToLive`, the
///   credentials the store returns *for this login* still carry the same hash (so a password
///   change or a removed account, also from another process like the CLI, misses at once), and
///   the HMACs match, compared in constant time.
/// - Failures are never cached: a wrong password always costs a full scrypt run and still counts
///   for the throttle, which runs before any of this.
/// - At most `maximumEntries` accounts are remembered; the oldest go first.
public final class PasswordCheckCache: Sendable {
    struct Entry: Sendable {
        var mac: [UInt8]
        var passwordHash: String
        var expires: ContinuousClock.Instant
    }

    public let timeToLive: Duration
    public let maximumEntries: Int
    private let key = SymmetricKey(size: .bits256)
    private let now: @Sendable () -> ContinuousClock.Instant
    private let entries = Mutex<[String: Entry]>([:])

    public init(timeToLive: Duration = .seconds(60), maximumEntries: Int = 10_000,
                now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }) {
        self.timeToLive = timeToLive; self.maximumEntries = max(1, maximumEntries); self.now = now
    }

    /// True when `password` checked out against exactly these credentials less than
    /// `timeToLive` ago.
    public func isKnownGood(account: String, password: String, stored: StoredCredentials) -> Bool {
        guard let entry = entries.withLock({ $0[account] }) else { return false }
        guard now() < entry.expires, entry.passwordHash == stored.passwordHash else { return false }
        return HMAC<SHA256>.isValidAuthenticationCode(entry.mac, authenticating: message(account: account, password: password),
                                                      using: key)
    }

    /// Call only after the KDF said `password` matches `stored`.
    public func remember(account: String, password: String, stored: StoredCredentials) {
        let mac = Array(HMAC<SHA256>.authenticationCode(for: message(account: account, password: password), using: key))
        let now = self.now()
        let entry = Entry(mac: mac, passwordHash: stored.passwordHash, expires: now + timeToLive)
        entries.withLock { entries in
            if entries[account] == nil, entries.count >= maximumEntries {
                entries = entries.filter { $0.value.expires > now }
                if entries.count >= maximumEntries, let oldest = entries.min(by: { $0.value.expires < $1.value.expires }) {
                    entries[oldest.key] = nil
                }
            }
            entries[account] = entry
        }
    }

    /// Forgets an account at once (its credentials changed in this process, it was removed).
    public func forget(account: String) {
        _ = entries.withLock { $0.removeValue(forKey: account) }
    }

    public var count: Int { entries.withLock { $0.count } }

    /// The account is part of what is authenticated: an entry can never vouch for another one.
    private func message(account: String, password: String) -> [UInt8] {
        Array(account.utf8) + [0] + Array(password.utf8)
    }
}
