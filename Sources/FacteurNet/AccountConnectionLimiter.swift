// Connections per account, across every listener of a protocol (IMAP and IMAPS together): one
// account's runaway clients cannot take every slot, and an office behind one NAT address (many
// accounts, one IP) is bounded by the per-address limit instead, which is higher.

import NIOConcurrencyHelpers

public final class AccountConnectionLimiter: Sendable {
    public let maxPerAccount: Int
    private let counts = NIOLockedValueBox<[String: Int]>([:])

    public init(maxPerAccount: Int) { self.maxPerAccount = maxPerAccount }

    /// A slot for `account`, released when the returned token is released (or deallocated);
    /// nil when the account is at its limit.
    public func acquire(_ account: String) -> Slot? {
        let key = account.lowercased()
        let granted = counts.withLockedValue { counts -> Bool in
            let current = counts[key, default: 0]
            guard current < maxPerAccount else { return false }
            counts[key] = current + 1
            return true
        }
        return granted ? Slot(limiter: self, key: key) : nil
    }

    public func connections(_ account: String) -> Int { counts.withLockedValue { $0[account.lowercased(), default: 0] } }

    fileprivate func release(_ key: String) {
        counts.withLockedValue { counts in
            guard let current = counts[key] else { return }
            counts[key] = current <= 1 ? nil : current - 1
        }
    }

    /// Held for as long as the connection is authenticated; copies of a session share it.
    public final class Slot: Sendable {
        private let limiter: AccountConnectionLimiter
        private let key: String
        private let released = NIOLockedValueBox(false)

        fileprivate init(limiter: AccountConnectionLimiter, key: String) {
            self.limiter = limiter
            self.key = key
        }

        public func release() {
            let first = released.withLockedValue { done -> Bool in
                defer { done = true }
                return !done
            }
            if first { limiter.release(key) }
        }

        deinit { release() }
    }
}
