// Helpers for the SQLiteMailStore tests: temporary directories, ready-made accounts, messages.

import FacteurMIME
@testable import FacteurStore
import Foundation
import XCTest

/// A store in a fresh temporary directory, removed when the test ends.
class StoreTestCase: XCTestCase {
    var directory = ""
    var store: SQLiteMailStore!

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "facteur-store-test-" + UUID().uuidString
        store = try SQLiteMailStore(directory: directory)
    }

    override func tearDownWithError() throws {
        try? store?.close()
        store = nil
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Closes the store and opens the same directory again.
    func reopen() throws {
        try store.close()
        store = try SQLiteMailStore(directory: directory)
    }

    static let credentials = StoredCredentials(passwordHash: "$scrypt$test", scramSHA256: nil)

    @discardableResult
    func account(_ address: String, quota: Quota = .unlimited, admin: Bool = false) async throws -> AccountRecord {
        if let domain = address.split(separator: "@").last, try await !store.isLocalDomain(String(domain)) {
            try await store.addDomain(String(domain))
        }
        return try await store.addAccount(address: address, credentials: Self.credentials, quota: quota, isAdmin: admin)
    }

    func inbox(_ account: AccountRecord) async throws -> MailboxRecord {
        let mailbox = try await store.mailbox(accountID: account.id, name: "INBOX")
        return try XCTUnwrap(mailbox)
    }

    /// A well-formed message of exactly `size` bytes (at least its header) with CRLF line
    /// endings; `tag` makes it unique.
    static func message(_ tag: String, size: Int = 1_000) -> [UInt8] {
        var bytes = Array("From: sender@example.net\r\nTo: rcpt@example.org\r\nSubject: test \(tag)\r\nMessage-ID: <\(tag)@example.net>\r\n\r\n".utf8)
        let line = Array("The quick brown fox jumps over the lazy dog, message \(tag).\r\n".utf8)
        while bytes.count < size {
            let remaining = size - bytes.count
            if remaining >= line.count {
                bytes += line
            } else if remaining >= 2 {
                bytes += Array(repeating: UInt8(ascii: "x"), count: remaining - 2) + [0x0D, 0x0A]
            } else {
                bytes.append(UInt8(ascii: "x"))
            }
        }
        return bytes
    }

    @discardableResult
    func deliver(_ bytes: [UInt8], to accounts: [AccountRecord], mailbox: String = "INBOX",
                 prefix: [UInt8] = []) async throws -> DeliveryResult {
        try await store.deliver(Delivery(message: .memory(bytes), recipients: accounts.map {
            DeliveryRecipient(accountID: $0.id, mailbox: mailbox, headerPrefix: prefix)
        }))
    }

    func storedUID(_ outcome: RecipientOutcome?, file: StaticString = #filePath, line: UInt = #line) -> UInt32? {
        guard case .stored(_, let uid)? = outcome else {
            XCTFail("expected .stored, got \(String(describing: outcome))", file: file, line: line)
            return nil
        }
        return uid
    }

    /// Writes `bytes` to a spool file of its own and returns the path.
    func spool(_ bytes: [UInt8]) throws -> String {
        let path = directory + "/spool-" + UUID().uuidString
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }
}
