// Connection limits, global and per client address, shared by every listener of a protocol.

import NIOConcurrencyHelpers

public final class ConnectionLimiter: Sendable {
    public enum Verdict: Equatable, Sendable {
        case accepted
        case tooManyGlobally
        case tooManyFromAddress
    }

    public let maxConnections: Int
    public let maxPerAddress: Int
    private let state = NIOLockedValueBox<(total: Int, perAddress: [String: Int])>((0, [:]))

    public init(maxConnections: Int, maxPerAddress: Int) {
        self.maxConnections = maxConnections
        self.maxPerAddress = maxPerAddress
    }

    /// Counts a new connection from `address`, unless a limit forbids it.
    public func acquire(address: String) -> Verdict {
        state.withLockedValue { state in
            if state.total >= maxConnections { return .tooManyGlobally }
            let current = state.perAddress[address, default: 0]
            if current >= maxPerAddress { return .tooManyFromAddress }
            state.total += 1
            state.perAddress[address] = current + 1
            return .accepted
        }
    }

    public func release(address: String) {
        state.withLockedValue { state in
            guard let current = state.perAddress[address] else { return }
            state.total -= 1
            if current <= 1 { state.perAddress[address] = nil } else { state.perAddress[address] = current - 1 }
        }
    }

    public var activeConnections: Int { state.withLockedValue { $0.total } }
}
