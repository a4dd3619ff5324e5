// What a first start sets up so that `facteur serve` works with no configuration at all:
// the primary domain and an admin account whose password is printed once.

import FacteurIdentity
import FacteurStore
import Foundation

enum FirstStart {
    static func ensureDefaults(store: any MailStore, configuration: ServerConfiguration) async throws {
        let domain = configuration.primaryDomain
        if try await store.domains().isEmpty {
            try await store.addDomain(domain)
        }
        if try await store.accounts(domain: nil).isEmpty {
            let password = randomPassword()
            let credentials = try Credentials.make(password: password)
            try await store.addAccount(address: "admin@\(domain)", credentials: credentials, quota: .unlimited, isAdmin: true)
            FacteurServer.announce("admin account: admin@\(domain)")
            FacteurServer.announce("admin password: \(password)")
            FacteurServer.announce("(shown once; change it with `facteur account passwd admin@\(domain)`)")
        }
        try await store.setPostmaster(configuration.postmaster)
    }

    /// 20 characters from a 56-letter alphabet without look-alikes: about 116 bits.
    static func randomPassword() -> String {
        let alphabet = Array("abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
        var generator = SystemRandomNumberGenerator()
        return String((0..<20).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] })
    }
}
