// FacteurStore limits: every bound the SQLite store enforces, named in one place.
// Address lengths follow RFC 5321 §4.5.3.1; the rest are our own choices, explained.

import Foundation

public enum StoreLimits {
    /// Messages up to this size live inside SQLite (the `blob` table) and become durable with the
    /// same WAL commit as their metadata; larger ones are files under `blobs/`. 256 KiB keeps
    /// ordinary mail (a few KB to a few hundred KB) to a single fsync per group commit, while big
    /// attachments do not bloat the database or the WAL.
    public static let inlineBlobThreshold = 256 * 1024

    /// Deliveries may exceed the account's quota by this fraction (10 %): the quota is checked at
    /// RCPT TO against the declared SIZE, and a message that turns out a little larger, or lands
    /// together with other mail, should not bounce for a few bytes.
    public static let quotaGraceNumerator: Int64 = 1
    public static let quotaGraceDenominator: Int64 = 10

    /// The most deliveries one group-commit transaction carries. Bounds the transaction's size
    /// (and the latency of the first delivery in it) under a burst.
    public static let maxDeliveriesPerCommit = 256

    /// Orphan blob files (a file without a row) younger than this are left alone by garbage
    /// collection: they may belong to a delivery still in progress, perhaps in another process.
    public static let orphanFileGracePeriod: TimeInterval = 5 * 60

    /// RFC 5321 §4.5.3.1.1 / §4.5.3.1.2: local part 64 octets, domain 255 octets.
    public static let maxLocalPartLength = 64
    public static let maxDomainLength = 255

    /// A mailbox name, in UTF-8 bytes. IMAP has no limit; ours keeps names usable in every client.
    public static let maxMailboxNameLength = 1000
    /// Hierarchy depth of a mailbox name (`a/b/c` is 3).
    public static let maxMailboxDepth = 32
    /// Keywords per message and bytes per keyword: IMAP allows any atom; we bound both.
    public static let maxKeywordsPerMessage = 128
    public static let maxKeywordLength = 255
    /// The per-recipient header prefix (Return-Path, Delivered-To, Received, …).
    public static let maxHeaderPrefixLength = 64 * 1024
    /// Targets of one alias.
    public static let maxAliasTargets = 1000
    /// Recipients of one delivery (RFC 5321 §4.5.3.1.8 asks for at least 100).
    public static let maxRecipientsPerDelivery = 1000
}
