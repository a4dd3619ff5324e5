// FacteurIMAP: an IMAP4rev2 (RFC 9051) and IMAP4rev1 (RFC 3501) server. This file holds every
// limit the server applies to a client, in one place (hostile input never grows memory without
// bound: RFC 9051 §2.2.3 lets a server bound line lengths, RFC 7888 §4 literal sizes).

/// Every limit of an IMAP connection. The defaults suit a server on the open Internet.
public struct IMAPLimits: Sendable {
    /// Longest command line (the bytes between two literals, or the whole command without them).
    /// RFC 7162 §4 asks servers to accept lines of at least 8192 octets.
    public var maxLineLength = 64 * 1024
    /// Largest literal in any command except APPEND (a password, a search string, a mailbox name).
    public var maxLiteralSize = 64 * 1024
    /// Largest message APPEND takes (RFC 7889 APPENDLIMIT advertises it).
    public var maxMessageSize = 50 * 1024 * 1024
    /// Whole command, literals included (MULTIAPPEND sends several messages in one command).
    public var maxCommandSize = 100 * 1024 * 1024
    /// Literals in one command (every string of a command can be a literal).
    public var maxLiteralsPerCommand = 1_000
    /// Parenthesised nesting (search keys, ID lists, fetch attributes).
    public var maxNestingDepth = 32
    /// Ranges in one sequence set, and items in one list.
    public var maxListItems = 10_000
    /// A non-synchronising literal (RFC 7888) over the limit is read and thrown away up to this
    /// size; anything larger ends the connection.
    public var maxDiscardedLiteral = 100 * 1024 * 1024
    /// Idle time before authentication; RFC 9051 §5.4 asks for at least 30 minutes after it.
    public var idleTimeoutUnauthenticated: Duration = .seconds(60)
    public var idleTimeoutAuthenticated: Duration = .seconds(30 * 60)
    /// Syntax errors in a row before the server gives up on the client.
    public var maxConsecutiveBadCommands = 20
    /// Input buffered while a command runs before reads are withheld.
    public var maxBufferedInput = 256 * 1024

    public init() {}
}
