// Making and checking an account's credentials from its password: the scrypt PHC
// hash (for PLAIN and LOGIN) and the SCRAM-SHA-256 keys (RFC 5802/7677, stored per
// RFC 5803) are computed together when the password is set, so SCRAM works from the
// first login without a password reset. Passwords go through SASLprep (RFC 4013)
// first, as RFC 4616 §4 and RFC 5802 §5.1 ask, so every mechanism sees the same bytes.

import FacteurStore

public enum CredentialsError: Error, Sendable, Equatable {
    case emptyPassword
    /// Longer than `Credentials.maximumPasswordBytes` after preparation.
    case passwordTooLong
    /// SASLprep refused the password (a control character, mixed-direction text, …).
    case unpreparable(SASLprep.Failure)
    /// Below RFC 7677's minimum of 4096, or above our maximum.
    case iterationCountOutOfRange(Int)
    case derivationFailed
}

public enum Credentials {
    /// Longest password accepted, in UTF-8 bytes after SASLprep. RFC 4616 requires
    /// servers to accept at least 255; we accept more for passphrases.
    public static let maximumPasswordBytes = 1024
    /// Longest user name (an address; RFC 5321 §4.5.3.1.3 caps paths at 256 octets).
    public static let maximumUsernameBytes = 320

    /// Computes what the store keeps for `password`: the scrypt PHC string and the
    /// SCRAM-SHA-256 keys with a fresh 16-byte salt and `scramIterations` rounds.
    /// Synchronous CPU work (one scrypt run and one PBKDF2 run): call it off the event loop.
    public static func make(password: String, hasher: PasswordHasher = PasswordHasher(),
                            scramIterations: Int = SCRAMCredentials.defaultIterations) throws(CredentialsError) -> StoredCredentials {
        guard (SCRAMCredentials.minimumIterations...SCRAMCredentials.maximumIterations).contains(scramIterations) else {
            throw .iterationCountOutOfRange(scramIterations)
        }
        let prepared = try preparePassword(password, profile: .stored)
        let phc: String
        do { phc = try hasher.hash(prepared) } catch { throw .derivationFailed }
        let scram: SCRAMCredentials
        do {
            scram = try SCRAMCredentials.derive(preparedPassword: prepared, salt: Bytes.random(count: SCRAMCredentials.defaultSaltLength),
                                                iterations: scramIterations)
        } catch {
            throw .derivationFailed
        }
        return StoredCredentials(passwordHash: phc, scramSHA256: scram.rfc5803)
    }

    /// Checks `password` against stored credentials. `nil` (no such account) still
    /// costs one scrypt run so that the answer's timing does not tell whether the account
    /// exists. Synchronous CPU work: call it off the event loop.
    public static func verify(password: String, against stored: StoredCredentials?,
                              hasher: PasswordHasher = PasswordHasher()) -> Bool {
        guard let stored, let prepared = try? preparePassword(password, profile: .query) else {
            hasher.spendEquivalentTime()
            return false
        }
        return hasher.verify(prepared, against: stored.passwordHash)
    }

    /// True when the stored credentials should be recomputed at the next successful
    /// password login: a weaker hash than `hasher`'s, no SCRAM keys, or fewer SCRAM
    /// iterations than `scramIterations`.
    public static func needsUpgrade(_ stored: StoredCredentials, hasher: PasswordHasher = PasswordHasher(),
                                    scramIterations: Int = SCRAMCredentials.defaultIterations) -> Bool {
        if hasher.needsRehash(stored.passwordHash) { return true }
        guard let text = stored.scramSHA256, let scram = try? SCRAMCredentials(rfc5803: text) else { return true }
        return scram.iterations < scramIterations
    }

    /// SASLprep, then the UTF-8 bytes; empty and over-long results are refused.
    public static func preparePassword(_ password: String, profile: SASLprep.Profile) throws(CredentialsError) -> [UInt8] {
        // Bound the work before normalising hostile input.
        guard password.utf8.count <= 4 * maximumPasswordBytes else { throw .passwordTooLong }
        let prepared: String
        do { prepared = try SASLprep.prepare(password, profile: profile) } catch { throw .unpreparable(error) }
        let bytes = Array(prepared.utf8)
        guard !bytes.isEmpty else { throw .emptyPassword }
        guard bytes.count <= maximumPasswordBytes else { throw .passwordTooLong }
        return bytes
    }

    /// The name accounts are looked up by: SASLprep-ed (RFC 5802 §5.1, RFC 4616 §2)
    /// and lowercased, since the store keeps addresses in lower case. `nil` when empty,
    /// too long or unpreparable.
    public static func normalizeUsername(_ name: String) -> String? {
        guard !name.isEmpty, name.utf8.count <= 4 * maximumUsernameBytes,
              let prepared = try? SASLprep.prepare(name, profile: .query) else { return nil }
        let lowered = prepared.lowercased()
        guard !lowered.isEmpty, lowered.utf8.count <= maximumUsernameBytes else { return nil }
        return lowered
    }
}
