// TEMPORARY on main until the store branch lands.
import FacteurMIME
import Logging
public final class SQLiteMailStore: MailStore {
    public init(directory: String, logger: Logger) throws { fatalError("store not merged yet") }
    public func collectGarbage() async throws -> Int { 0 }
    public func addDomain(_ name: String) async throws { fatalError() }
    public func removeDomain(_ name: String) async throws { fatalError() }
    public func domains() async throws -> [DomainRecord] { fatalError() }
    public func isLocalDomain(_ name: String) async throws -> Bool { fatalError() }
    public func addAccount(address: String, credentials: StoredCredentials, quota: Quota, isAdmin: Bool) async throws -> AccountRecord { fatalError() }
    public func account(address: String) async throws -> AccountRecord? { fatalError() }
    public func account(id: Int64) async throws -> AccountRecord? { fatalError() }
    public func accounts(domain: String?) async throws -> [AccountRecord] { fatalError() }
    public func credentials(address: String) async throws -> StoredCredentials? { fatalError() }
    public func setCredentials(address: String, _ credentials: StoredCredentials) async throws { fatalError() }
    public func setQuota(address: String, _ quota: Quota) async throws { fatalError() }
    public func removeAccount(address: String) async throws { fatalError() }
    public func addAlias(source: String, targets: [String]) async throws { fatalError() }
    public func removeAlias(source: String, target: String?) async throws { fatalError() }
    public func aliases(domain: String?) async throws -> [AliasRecord] { fatalError() }
    public func setPostmaster(_ address: String?) async throws { fatalError() }
    public func resolveRecipient(_ address: String) async throws -> RecipientResolution { fatalError() }
    public func checkQuota(accountID: Int64, incomingSize: Int64?) async throws -> QuotaCheck { fatalError() }
    public func deliver(_ delivery: Delivery) async throws -> DeliveryResult { fatalError() }
    public func mailboxes(accountID: Int64) async throws -> [MailboxRecord] { fatalError() }
    public func mailbox(accountID: Int64, name: String) async throws -> MailboxRecord? { fatalError() }
    public func createMailbox(accountID: Int64, name: String, specialUse: SpecialUse?) async throws -> MailboxRecord { fatalError() }
    public func messages(mailboxID: Int64) async throws -> [MessageRecord] { fatalError() }
    public func message(mailboxID: Int64, uid: UInt32) async throws -> MessageRecord? { fatalError() }
    public func summary(messageID: Int64) async throws -> MessageSummary? { fatalError() }
    public func messageBytes(messageID: Int64) async throws -> [UInt8] { fatalError() }
    public func setFlags(mailboxID: Int64, uid: UInt32, flags: MessageFlags, keywords: [String]) async throws -> UInt64 { fatalError() }
    public func expunge(mailboxID: Int64, uids: [UInt32]) async throws { fatalError() }
    public func changes() -> AsyncStream<MailboxChange> { fatalError() }
}
