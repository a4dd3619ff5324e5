// Recipient routing: domains, accounts, aliases (one-to-one, one-to-many, catch-all),
// sub-addressing (RFC 5233) and postmaster (RFC 5321 §4.5.1).

@testable import FacteurStore
import XCTest

final class RoutingTests: StoreTestCase {
    func addresses(_ resolution: RecipientResolution) -> [String]? {
        guard case .local(let accounts) = resolution else { return nil }
        return accounts.map(\.address)
    }

    func testExactAccountAliasesSubaddressingAndCatchAll() async throws {
        try await account("alice@example.org")
        try await account("bob@example.org")
        try await account("carol@example.net")
        try await store.addAlias(source: "info@example.org", targets: ["alice@example.org"])
        try await store.addAlias(source: "team@example.org", targets: ["alice@example.org", "bob@example.org", "carol@example.net"])
        try await store.addAlias(source: "team@example.org", targets: ["bob@example.org"])  // already there: kept once

        var r = try await store.resolveRecipient("alice@example.org")
        XCTAssertEqual(addresses(r), ["alice@example.org"])
        r = try await store.resolveRecipient("<ALICE@Example.ORG>")
        XCTAssertEqual(addresses(r), ["alice@example.org"], "case-insensitive, brackets dropped")
        r = try await store.resolveRecipient("info@example.org")
        XCTAssertEqual(addresses(r), ["alice@example.org"])
        r = try await store.resolveRecipient("team@example.org")
        XCTAssertEqual(addresses(r), ["alice@example.org", "bob@example.org", "carol@example.net"])
        r = try await store.resolveRecipient("alice+lists@example.org")
        XCTAssertEqual(addresses(r), ["alice@example.org"], "sub-address reaches the account")
        r = try await store.resolveRecipient("team+x@example.org")
        XCTAssertEqual(addresses(r), ["alice@example.org", "bob@example.org", "carol@example.net"], "then its alias")
        r = try await store.resolveRecipient("nobody@example.org")
        XCTAssertEqual(r, .unknownUser)
        r = try await store.resolveRecipient("+tag@example.org")
        XCTAssertEqual(r, .unknownUser)
        r = try await store.resolveRecipient("alice@elsewhere.test")
        XCTAssertEqual(r, .nonLocalDomain)

        try await store.addAlias(source: "@example.org", targets: ["bob@example.org"])
        r = try await store.resolveRecipient("nobody@example.org")
        XCTAssertEqual(addresses(r), ["bob@example.org"], "catch-all")
        r = try await store.resolveRecipient("alice@example.org")
        XCTAssertEqual(addresses(r), ["alice@example.org"], "an account beats the catch-all")
        r = try await store.resolveRecipient("nobody@example.net")
        XCTAssertEqual(r, .unknownUser, "catch-all is per domain")

        let all = try await store.aliases(domain: "example.org")
        XCTAssertEqual(all, [
            AliasRecord(source: "@example.org", targets: ["bob@example.org"]),
            AliasRecord(source: "info@example.org", targets: ["alice@example.org"]),
            AliasRecord(source: "team@example.org", targets: ["alice@example.org", "bob@example.org", "carol@example.net"]),
        ])
        try await store.removeAlias(source: "team@example.org", target: "bob@example.org")
        r = try await store.resolveRecipient("team@example.org")
        XCTAssertEqual(addresses(r), ["alice@example.org", "carol@example.net"])
        try await store.removeAlias(source: "team@example.org", target: nil)
        r = try await store.resolveRecipient("team@example.org")
        XCTAssertEqual(addresses(r), ["bob@example.org"], "now the catch-all")

        // Removing an account drops it from every alias.
        try await store.removeAccount(address: "alice@example.org")
        r = try await store.resolveRecipient("info@example.org")
        XCTAssertEqual(addresses(r), ["bob@example.org"], "info@ had only alice: catch-all")
    }

    func testAliasRules() async throws {
        try await account("alice@example.org")
        do {
            try await store.addAlias(source: "x@example.org", targets: ["ghost@example.org"])
            XCTFail("target must be a local account")
        } catch StoreError.notFound {}
        do {
            try await store.addAlias(source: "x@unknown.test", targets: ["alice@example.org"])
            XCTFail("source domain must be local")
        } catch StoreError.notFound {}
        do {
            try await store.addAlias(source: "alice@example.org", targets: ["alice@example.org"])
            XCTFail("source must not be an account")
        } catch StoreError.alreadyExists {}
        try await store.addAlias(source: "sales@example.org", targets: ["alice@example.org"])
        do {
            try await store.addAccount(address: "sales@example.org", credentials: Self.credentials, quota: .unlimited, isAdmin: false)
            XCTFail("account over an alias")
        } catch StoreError.alreadyExists {}
        do {
            try await store.removeAlias(source: "nothing@example.org", target: nil)
            XCTFail("remove a missing alias")
        } catch StoreError.notFound {}
    }

    /// Alias members in other organisations' domains are forwarded to; local ones still get it.
    func testAliasesWithExternalMembersForward() async throws {
        try await account("alice@example.org")
        try await store.addAlias(source: "team@example.org", targets: ["alice@example.org", "Partner@Elsewhere.test"])
        try await store.addAlias(source: "away@example.org", targets: ["me@gmail.test"])
        var r = try await store.resolveRecipient("team@example.org")
        guard case .forwarded(let local, let external) = r else { return XCTFail("\(r)") }
        XCTAssertEqual(local.map(\.address), ["alice@example.org"])
        XCTAssertEqual(external, ["partner@elsewhere.test"])
        r = try await store.resolveRecipient("away+x@example.org")
        XCTAssertEqual(r, .forwarded(local: [], external: ["me@gmail.test"]), "sub-addressing reaches the alias")
        let listed = try await store.aliases(domain: "example.org")
        XCTAssertEqual(listed.first { $0.source == "team@example.org" }?.targets, ["alice@example.org", "partner@elsewhere.test"])
        try await store.removeAlias(source: "team@example.org", target: "partner@elsewhere.test")
        r = try await store.resolveRecipient("team@example.org")
        XCTAssertEqual(addresses(r), ["alice@example.org"], "back to local only")
        try await store.removeAlias(source: "away@example.org", target: nil)
        r = try await store.resolveRecipient("away@example.org")
        XCTAssertEqual(r, .unknownUser)
        do {
            try await store.addAlias(source: "x@example.org", targets: ["not-an-address"])
            XCTFail("a target needs local@domain")
        } catch StoreError.invalid {}
    }

    func testPostmasterAlwaysResolves() async throws {
        try await account("admin@example.org", admin: true)
        try await account("alice@example.org")
        try await account("bob@example.net")

        // No postmaster anywhere: the first admin account.
        var r = try await store.resolveRecipient("postmaster@example.net")
        XCTAssertEqual(addresses(r), ["admin@example.org"])
        r = try await store.resolveRecipient("Postmaster")
        XCTAssertEqual(addresses(r), ["admin@example.org"], "bare postmaster (RFC 5321 §4.1.1.3)")
        r = try await store.resolveRecipient("POSTMASTER+x@example.org")
        XCTAssertEqual(addresses(r), ["admin@example.org"])

        // A domain's own postmaster alias.
        try await store.addAlias(source: "postmaster@example.net", targets: ["bob@example.net"])
        r = try await store.resolveRecipient("postmaster@example.net")
        XCTAssertEqual(addresses(r), ["bob@example.net"])
        r = try await store.resolveRecipient("postmaster@example.org")
        XCTAssertEqual(addresses(r), ["admin@example.org"])

        // The configured target wins for every local domain.
        try await store.setPostmaster("alice@example.org")
        r = try await store.resolveRecipient("postmaster@example.net")
        XCTAssertEqual(addresses(r), ["alice@example.org"])
        r = try await store.resolveRecipient("postmaster@example.org")
        XCTAssertEqual(addresses(r), ["alice@example.org"])
        r = try await store.resolveRecipient("postmaster@elsewhere.test")
        XCTAssertEqual(r, .nonLocalDomain)

        // Its account removed: back to the defaults.
        try await store.removeAccount(address: "alice@example.org")
        r = try await store.resolveRecipient("postmaster@example.org")
        XCTAssertEqual(addresses(r), ["admin@example.org"])
        try await store.setPostmaster("bob@example.net")
        try await store.setPostmaster(nil)
        r = try await store.resolveRecipient("postmaster@example.org")
        XCTAssertEqual(addresses(r), ["admin@example.org"])
        do {
            try await store.setPostmaster("ghost@example.org")
            XCTFail("postmaster must be an account")
        } catch StoreError.notFound {}
    }

    func testDomainsAndAccounts() async throws {
        try await store.addDomain("Example.ORG")
        let isLocal = try await store.isLocalDomain("EXAMPLE.org")
        XCTAssertTrue(isLocal)
        do {
            try await store.addDomain("example.org")
            XCTFail("duplicate domain")
        } catch StoreError.alreadyExists {}
        do {
            try await store.addAccount(address: "x@nowhere.test", credentials: Self.credentials, quota: .unlimited, isAdmin: false)
            XCTFail("account in an unknown domain")
        } catch StoreError.notFound {}
        for bad in ["no-at-sign", "@example.org", "sp ace@example.org", "x@"] {
            do {
                try await store.addAccount(address: bad, credentials: Self.credentials, quota: .unlimited, isAdmin: false)
                XCTFail("accepted \(bad)")
            } catch StoreError.invalid {}
        }
        let alice = try await store.addAccount(address: "Alice@Example.org", credentials: Self.credentials, quota: .unlimited,
                                               isAdmin: true)
        XCTAssertEqual(alice.address, "alice@example.org")
        XCTAssertTrue(alice.isAdmin)
        do {
            try await store.addAccount(address: "ALICE@example.org", credentials: Self.credentials, quota: .unlimited, isAdmin: false)
            XCTFail("duplicate account")
        } catch StoreError.alreadyExists {}
        let byID = try await store.account(id: alice.id)
        XCTAssertEqual(byID, alice)
        let newCredentials = StoredCredentials(passwordHash: "$scrypt$new", scramSHA256: "SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5")
        try await store.setCredentials(address: "alice@example.org", newCredentials)
        let credentials = try await store.credentials(address: "ALICE@example.org")
        XCTAssertEqual(credentials, newCredentials)
        let unknown = try await store.credentials(address: "ghost@example.org")
        XCTAssertNil(unknown)

        try await store.addDomain("example.net")
        try await account("bob@example.net")
        let inOrg = try await store.accounts(domain: "example.org").map(\.address)
        XCTAssertEqual(inOrg, ["alice@example.org"])
        let all = try await store.accounts(domain: nil).map(\.address)
        XCTAssertEqual(all, ["alice@example.org", "bob@example.net"])

        // A domain with accounts cannot go; its aliases go with it once empty.
        do {
            try await store.removeDomain("example.net")
            XCTFail("removed a domain with accounts")
        } catch StoreError.invalid {}
        try await store.addAlias(source: "@example.net", targets: ["alice@example.org"])
        try await store.removeAccount(address: "bob@example.net")
        try await store.removeDomain("example.net")
        let domains = try await store.domains().map(\.name)
        XCTAssertEqual(domains, ["example.org"])
        let aliases = try await store.aliases(domain: nil)
        XCTAssertEqual(aliases, [])
    }

    func testRemoveAccountDeletesItsMailboxesAndMessages() async throws {
        let alice = try await account("alice@example.org")
        let bob = try await account("bob@example.org")
        try await deliver(Self.message("x"), to: [alice, bob])
        let before = try await store.rowCount(.mailbox)
        XCTAssertEqual(before, 12)
        try await store.removeAccount(address: "alice@example.org")
        let mailboxes = try await store.rowCount(.mailbox)
        let messages = try await store.rowCount(.message)
        XCTAssertEqual(mailboxes, 6)
        XCTAssertEqual(messages, 1)
        let gone = try await store.account(address: "alice@example.org")
        XCTAssertNil(gone)
        // The recipient's account id no longer has a mailbox: the outcome says so.
        let late = try await deliver(Self.message("late"), to: [alice, bob])
        XCTAssertEqual(late.outcomes[0], .mailboxMissing)
        XCTAssertNotNil(storedUID(late.outcomes[1]))
    }
}
