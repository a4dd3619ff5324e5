// Per-account limits on submission, to contain a compromised account: messages and
// recipients per hour, over a sliding window. Refusals are 451 4.7.1 (RFC 6409 §5.1 lets a
// submission server apply policy; a 4xx keeps the mail in the client's outbox instead of
// losing it).

public actor SubmissionRateLimiter {
    public struct Limits: Sendable, Equatable {
        public var messagesPerHour: Int
        public var recipientsPerHour: Int
        public init(messagesPerHour: Int = 500, recipientsPerHour: Int = 2_000) {
            self.messagesPerHour = messagesPerHour
            self.recipientsPerHour = recipientsPerHour
        }
    }

    public let limits: Limits
    private let window: Duration
    private let now: @Sendable () -> ContinuousClock.Instant
    /// Event times per account, oldest first; at most the limit each, so memory is bounded per account.
    private var messages: [String: [ContinuousClock.Instant]] = [:]
    private var recipients: [String: [ContinuousClock.Instant]] = [:]

    public init(limits: Limits = Limits(), window: Duration = .seconds(3600),
                now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }) {
        self.limits = limits
        self.window = window
        self.now = now
    }

    /// Counts one message for `account` unless it is over its limit.
    public func admitMessage(account: String) -> Bool {
        admit(&messages, account: account, limit: limits.messagesPerHour)
    }

    /// Counts one recipient for `account` unless it is over its limit.
    public func admitRecipient(account: String) -> Bool {
        admit(&recipients, account: account, limit: limits.recipientsPerHour)
    }

    private func admit(_ table: inout [String: [ContinuousClock.Instant]], account: String, limit: Int) -> Bool {
        let current = now()
        var events = table[account, default: []]
        events.removeAll { current - $0 >= window }
        guard events.count < limit else {
            table[account] = events
            return false
        }
        events.append(current)
        table[account] = events
        // Accounts idle for a whole window leave nothing behind.
        if table.count > 10_000 { table = table.filter { !$0.value.isEmpty && current - $0.value.last! < window } }
        return true
    }
}
