import Crypto
import FacteurStore
import Foundation
import XCTest
@testable import FacteurIdentity

/// A store stand-in: the lookup closure an `Authenticator` gets.
final class FakeAccounts: @unchecked Sendable {
    private let lock = NSLock()
    private var accounts: [String: StoredCredentials] = [:]
    private var lookedUp: [String] = []
    var failing = false

    subscript(name: String) -> StoredCredentials? {
        get { lock.withLock { accounts[name] } }
        set { lock.withLock { accounts[name] = newValue } }
    }

    var lookups: [String] { lock.withLock { lookedUp } }

    func lookup(_ name: String) throws -> StoredCredentials? {
        try lock.withLock {
            lookedUp.append(name)
            if failing { throw StoreError.writeFailed("disk on fire") }
            return accounts[name]
        }
    }
}

final class AuthenticatorTests: XCTestCase {
    var accounts = FakeAccounts()

    override func setUpWithError() throws {
        accounts = FakeAccounts()
        accounts["alice@example.org"] = try Credentials.make(password: "pencil", hasher: cheapHasher)
    }

    func authenticator(throttle: SharedAuthThrottle? = nil, sleeper: SleepRecorder = SleepRecorder(),
                       hasher: PasswordHasher = cheapHasher, nonce: String? = nil) -> Authenticator {
        var sasl = SASLOptions()
        if let nonce { sasl.serverNonce = { nonce } }
        let accounts = self.accounts
        return Authenticator(configuration: .init(hasher: hasher, sasl: sasl),
                             lookup: { try accounts.lookup($0) }, throttle: throttle,
                             workPool: BlockingWorkPool(maximumConcurrent: 2, maximumQueued: 8),
                             sleep: { sleeper.sleep($0) })
    }

    func testPlainSuccess() async throws {
        var exchange = try XCTUnwrap(authenticator().begin(mechanism: "PLAIN"))
        let outcome = await exchange.respond(bytes("\u{0}Alice@Example.org\u{0}pencil"))
        XCTAssertEqual(outcome, .success(AuthSuccess(authcid: "alice@example.org", authzid: nil, mechanism: .plain,
                                                     finalData: nil, upgradedCredentials: nil)))
        XCTAssertEqual(accounts.lookups, ["alice@example.org"])
        // Finished exchanges take no more input.
        let again = await exchange.respond([])
        XCTAssertEqual(again, .failure(SASLFailure(.malformed)))
    }

    func testPlainWrongPasswordAndUnknownUserLookAlike() async throws {
        let auth = authenticator()
        var wrong = try XCTUnwrap(auth.begin(mechanism: "plain"))
        let wrongOutcome = await wrong.respond(bytes("\u{0}alice@example.org\u{0}pen"))
        var unknown = try XCTUnwrap(auth.begin(mechanism: "plain"))
        let unknownOutcome = await unknown.respond(bytes("\u{0}bob@example.org\u{0}pencil"))
        XCTAssertEqual(wrongOutcome, .failure(SASLFailure(.authenticationFailed)))
        XCTAssertEqual(unknownOutcome, wrongOutcome)
    }

    /// An unknown user still costs a KDF run: its failure takes about as long as a wrong
    /// password's (loosely checked, the machine is shared).
    func testUnknownUserSpendsComparableTime() async throws {
        let hasher = PasswordHasher(parameters: ScryptParameters(logN: 13, r: 8, p: 1))
        accounts["alice@example.org"] = try Credentials.make(password: "pencil", hasher: hasher)
        let auth = authenticator(hasher: hasher)
        func time(_ message: String) async throws -> Duration {
            var exchange = try XCTUnwrap(auth.begin(mechanism: "PLAIN"))
            let start = ContinuousClock.now
            _ = await exchange.respond(bytes(message))
            return ContinuousClock.now - start
        }
        var known: [Duration] = [], unknown: [Duration] = []
        for _ in 0..<3 {
            known.append(try await time("\u{0}alice@example.org\u{0}wrong"))
            unknown.append(try await time("\u{0}nobody@example.org\u{0}wrong"))
        }
        let knownMin = try XCTUnwrap(known.min()), unknownMin = try XCTUnwrap(unknown.min())
        XCTAssertGreaterThan(unknownMin, knownMin / 4, "known \(known), unknown \(unknown)")
    }

    func testPlainAuthorizationFailure() async throws {
        var exchange = try XCTUnwrap(authenticator().begin(mechanism: "PLAIN"))
        let outcome = await exchange.respond(bytes("root\u{0}alice@example.org\u{0}pencil"))
        XCTAssertEqual(outcome, .failure(SASLFailure(.authorizationFailed)))
    }

    func testLoginExchange() async throws {
        var exchange = try XCTUnwrap(authenticator().begin(mechanism: "LOGIN"))
        var outcome = await exchange.respond(nil)
        XCTAssertEqual(outcome, .challenge(bytes("Username:")))
        outcome = await exchange.respond(bytes("alice@example.org"))
        XCTAssertEqual(outcome, .challenge(bytes("Password:")))
        outcome = await exchange.respond(bytes("pencil"))
        guard case .success(let success) = outcome else { return XCTFail("\(outcome)") }
        XCTAssertEqual(success.authcid, "alice@example.org")
        XCTAssertEqual(success.mechanism, .login)
    }

    func testSCRAMWithFinalDataAsChallenge() async throws {
        let auth = authenticator(nonce: "srvnonce")
        var exchange = try XCTUnwrap(auth.begin(mechanism: "SCRAM-SHA-256"))
        var outcome = await exchange.respond(nil)
        XCTAssertEqual(outcome, .challenge([]))
        outcome = await exchange.respond(bytes("n,,n=alice@example.org,r=cnonce"))
        guard case .challenge(let serverFirstBytes) = outcome else { return XCTFail("\(outcome)") }
        let serverFirst = text(serverFirstBytes)
        XCTAssertTrue(serverFirst.hasPrefix("r=cnoncesrvnonce,s="), serverFirst)

        let client = TestSCRAMClient(password: "pencil")
        let withoutProof = "c=biws,r=cnoncesrvnonce"
        let final = try client.clientFinal(clientFirstBare: "n=alice@example.org,r=cnonce", serverFirst: serverFirst,
                                           withoutProof: withoutProof)
        outcome = await exchange.respond(bytes(final))
        let verifier = try client.serverSignature(clientFirstBare: "n=alice@example.org,r=cnonce", serverFirst: serverFirst,
                                                  withoutProof: withoutProof)
        XCTAssertEqual(outcome, .challenge(bytes(verifier)))
        // RFC 4422 §5: the client acknowledges the additional data with an empty response.
        outcome = await exchange.respond([])
        XCTAssertEqual(outcome, .success(AuthSuccess(authcid: "alice@example.org", authzid: nil, mechanism: .scramSHA256,
                                                     finalData: nil, upgradedCredentials: nil)))
    }

    func testSCRAMWithFinalDataInSuccess() async throws {
        var exchange = try XCTUnwrap(authenticator(nonce: "srv").begin(mechanism: "SCRAM-SHA-256", finalDataAsChallenge: false))
        guard case .challenge(let sf) = await exchange.respond(bytes("n,,n=alice@example.org,r=c")) else { return XCTFail() }
        let final = try TestSCRAMClient(password: "pencil").clientFinal(clientFirstBare: "n=alice@example.org,r=c",
                                                                        serverFirst: text(sf), withoutProof: "c=biws,r=csrv")
        let outcome = await exchange.respond(bytes(final))
        guard case .success(let success) = outcome else { return XCTFail("\(outcome)") }
        XCTAssertTrue(text(try XCTUnwrap(success.finalData)).hasPrefix("v="))
    }

    func testSCRAMFinalAcknowledgementMustBeEmpty() async throws {
        var exchange = try XCTUnwrap(authenticator(nonce: "srv").begin(mechanism: "SCRAM-SHA-256"))
        guard case .challenge(let sf) = await exchange.respond(bytes("n,,n=alice@example.org,r=c")) else { return XCTFail() }
        let final = try TestSCRAMClient(password: "pencil").clientFinal(clientFirstBare: "n=alice@example.org,r=c",
                                                                        serverFirst: text(sf), withoutProof: "c=biws,r=csrv")
        guard case .challenge = await exchange.respond(bytes(final)) else { return XCTFail() }
        let outcome = await exchange.respond(bytes("junk"))
        XCTAssertEqual(outcome, .failure(SASLFailure(.malformed)))
    }

    func testUnknownAndDisabledMechanisms() {
        let auth = Authenticator(configuration: .init(mechanisms: [.scramSHA256, .plain]), lookup: { _ in nil })
        XCTAssertNil(auth.begin(mechanism: "LOGIN"))
        XCTAssertNil(auth.begin(mechanism: "CRAM-MD5"))
        XCTAssertNotNil(auth.begin(mechanism: "plain"))
        XCTAssertEqual(auth.advertisedMechanisms(connectionIsSecure: true), ["SCRAM-SHA-256", "PLAIN"])
        XCTAssertEqual(auth.advertisedMechanisms(connectionIsSecure: false), ["SCRAM-SHA-256"])
    }

    func testCancelAndReject() async throws {
        var exchange = try XCTUnwrap(authenticator().begin(mechanism: "LOGIN"))
        _ = await exchange.respond(nil)
        XCTAssertEqual(exchange.cancel(), .failure(SASLFailure(.cancelled)))
        let after = await exchange.respond(bytes("alice@example.org"))
        XCTAssertEqual(after, .failure(SASLFailure(.malformed)))
        var other = try XCTUnwrap(authenticator().begin(mechanism: "PLAIN"))
        XCTAssertEqual(other.reject(), .failure(SASLFailure(.malformed)))
    }

    func testStoreErrorsAreTemporary() async throws {
        accounts.failing = true
        var plain = try XCTUnwrap(authenticator().begin(mechanism: "PLAIN"))
        let plainOutcome = await plain.respond(bytes("\u{0}alice@example.org\u{0}pencil"))
        XCTAssertEqual(plainOutcome, .failure(SASLFailure(.temporarilyUnavailable)))
        var scram = try XCTUnwrap(authenticator().begin(mechanism: "SCRAM-SHA-256"))
        let scramOutcome = await scram.respond(bytes("n,,n=alice@example.org,r=c"))
        XCTAssertEqual(scramOutcome, .failure(SASLFailure(.temporarilyUnavailable)))
    }

    func testWeakCredentialsAreUpgradedOnPasswordLogin() async throws {
        let weak = PasswordHasher(parameters: ScryptParameters(logN: 8, r: 8, p: 1))
        var stored = try Credentials.make(password: "pencil", hasher: weak)
        stored.scramSHA256 = nil
        accounts["alice@example.org"] = stored
        var exchange = try XCTUnwrap(authenticator().begin(mechanism: "PLAIN"))
        let outcome = await exchange.respond(bytes("\u{0}alice@example.org\u{0}pencil"))
        guard case .success(let success) = outcome else { return XCTFail("\(outcome)") }
        let upgraded = try XCTUnwrap(success.upgradedCredentials)
        XCTAssertTrue(upgraded.passwordHash.hasPrefix("$scrypt$ln=10,"))
        XCTAssertNotNil(upgraded.scramSHA256)
        XCTAssertTrue(Credentials.verify(password: "pencil", against: upgraded, hasher: cheapHasher))
        XCTAssertFalse(Credentials.needsUpgrade(upgraded, hasher: cheapHasher))
    }

    func testTooManyResponses() async throws {
        let accounts = self.accounts
        let auth = Authenticator(configuration: .init(hasher: cheapHasher, maximumResponses: 2),
                                 lookup: { try accounts.lookup($0) })
        var exchange = try XCTUnwrap(auth.begin(mechanism: "LOGIN"))
        let first = await exchange.respond(nil)
        XCTAssertEqual(first, .challenge(bytes("Username:")))
        let second = await exchange.respond(bytes("alice@example.org"))
        XCTAssertEqual(second, .challenge(bytes("Password:")))
        let third = await exchange.respond(bytes("pencil"))
        XCTAssertEqual(third, .failure(SASLFailure(.malformed)))
    }

    func testThrottlingDelaysThenLocksOut() async throws {
        let clock = ManualClock()
        let sleeper = SleepRecorder()
        let throttle = SharedAuthThrottle(
            policy: AuthThrottle.Policy(freeFailures: 1, baseDelay: .seconds(2), maximumDelay: .seconds(30),
                                        clientLockoutThreshold: 3, accountLockoutThreshold: 100,
                                        lockoutDuration: .seconds(60), forgetAfter: .seconds(300)),
            now: { clock.now })
        let auth = authenticator(throttle: throttle, sleeper: sleeper)
        for _ in 0..<3 {
            var exchange = try XCTUnwrap(auth.begin(mechanism: "PLAIN", client: "192.0.2.1"))
            let outcome = await exchange.respond(bytes("\u{0}alice@example.org\u{0}wrong"))
            XCTAssertEqual(outcome, .failure(SASLFailure(.authenticationFailed)))
        }
        XCTAssertEqual(sleeper.delays, [.seconds(2), .seconds(4)])

        // Locked: refused before any lookup, even with the right password.
        let lookupsBefore = accounts.lookups.count
        var locked = try XCTUnwrap(auth.begin(mechanism: "PLAIN", client: "192.0.2.1"))
        let lockedOutcome = await locked.respond(bytes("\u{0}alice@example.org\u{0}pencil"))
        XCTAssertEqual(lockedOutcome, .failure(SASLFailure(.tooManyFailures(retryAfter: .seconds(60)))))
        XCTAssertEqual(accounts.lookups.count, lookupsBefore)

        // Another client is unaffected; after the lockout the first may try again.
        var other = try XCTUnwrap(auth.begin(mechanism: "PLAIN", client: "192.0.2.2"))
        guard case .success = await other.respond(bytes("\u{0}alice@example.org\u{0}pencil")) else { return XCTFail() }
        clock.advance(by: .seconds(61))
        var again = try XCTUnwrap(auth.begin(mechanism: "PLAIN", client: "192.0.2.1"))
        guard case .success = await again.respond(bytes("\u{0}alice@example.org\u{0}pencil")) else { return XCTFail() }
    }

    func testThrottledAccountRefusesSCRAMToo() async throws {
        let throttle = SharedAuthThrottle(policy: AuthThrottle.Policy(accountLockoutThreshold: 1))
        _ = await throttle.recordFailure(client: nil, account: "alice@example.org")
        var exchange = try XCTUnwrap(authenticator(throttle: throttle).begin(mechanism: "SCRAM-SHA-256", client: "192.0.2.1"))
        let outcome = await exchange.respond(bytes("n,,n=alice@example.org,r=c"))
        guard case .failure(let failure) = outcome, case .tooManyFailures = failure.reason else { return XCTFail("\(outcome)") }
    }

    func testWorkPoolRefusesWhenQueueIsFull() async {
        let pool = BlockingWorkPool(maximumConcurrent: 1, maximumQueued: 0)
        let gate = DispatchSemaphore(value: 0)
        async let first: Int? = pool.run { gate.wait(); return 1 }
        // Let the first job take the only slot.
        try? await Task.sleep(for: .milliseconds(100))
        let second = await pool.run { 2 }
        XCTAssertNil(second)
        gate.signal()
        let firstResult = await first
        XCTAssertEqual(firstResult, 1)
        let third = await pool.run { 3 }
        XCTAssertEqual(third, 3)
    }
}
