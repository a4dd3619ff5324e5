// The hard limits of FacteurMIME, in one place: what hostile input may cost us at most.
// RFC 5322 / RFC 2045-2049 set no such limits; these are ours, chosen well above what real mail needs.

/// Limits applied by every parser of this module. A limit that is hit never fails a parse:
/// the parser stops going deeper (or further) and records a defect.
public enum MIMELimits {
    /// Nesting of multipart and message/rfc822 levels below the root. Deeper parts are kept as leaves.
    public static let maxNestingDepth = 64
    /// Body parts in one message, all levels counted. Later parts are folded into their parent's epilogue.
    public static let maxParts = 10_000
    /// Header fields kept per header block. Later fields still belong to the header but are not returned.
    public static let maxHeaderFields = 5_000
    /// Parameters kept per Content-Type / Content-Disposition field.
    public static let maxParameters = 100
    /// Highest RFC 2231 continuation index accepted (`name*N`).
    public static let maxParameterSection = 999
    /// Addresses (mailboxes and groups together) kept per address field.
    public static let maxAddresses = 10_000
    /// Defects recorded per message; the rest are counted in one last entry.
    public static let maxDefects = 100
}
