// OBJECTID (RFC 8474): MAILBOXID on SELECT, CREATE and STATUS, stable across RENAME; EMAILID
// stable across COPY and MOVE; THREADID NIL.

@testable import FacteurIMAP
import XCTest

final class IMAPObjectIDTests: IMAPStoreTestCase {
    func value(_ text: String, after marker: String) -> String? {
        guard let range = text.range(of: marker) else { return nil }
        return String(text[range.upperBound...].prefix { $0 != ")" })
    }

    func testMailboxIDSurvivesRenameAndEmailIDSurvivesCopyAndMove() async throws {
        var c = await loggedIn()
        XCTAssertTrue(c.session.capabilities().contains("OBJECTID"))
        let created = await c.send("c1 CREATE Projects\r\n")
        let mailboxID = try XCTUnwrap(value(created, after: "[MAILBOXID ("), created)
        XCTAssertTrue(mailboxID.hasPrefix("M"), created)
        let renamed = await c.send("c2 RENAME Projects Archive2026\r\nc3 STATUS Archive2026 (MAILBOXID MESSAGES)\r\n")
        XCTAssertEqual(value(renamed, after: "MAILBOXID ("), mailboxID, "RENAME keeps the id: \(renamed)")
        let inboxStatus = await c.send("c4 STATUS INBOX (MAILBOXID)\r\n")
        XCTAssertNotEqual(value(inboxStatus, after: "MAILBOXID ("), mailboxID)

        try await deliver(Self.simple)
        let selected = await c.send("s1 SELECT INBOX\r\n")
        XCTAssertNotNil(value(selected, after: "[MAILBOXID ("), selected)
        let fetched = await c.send("f1 FETCH 1 (EMAILID THREADID)\r\n")
        let emailID = try XCTUnwrap(value(fetched, after: "EMAILID ("), fetched)
        XCTAssertTrue(fetched.contains("THREADID NIL"), fetched)
        XCTAssertTrue(emailID.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }, emailID)
        _ = await c.send("m1 COPY 1 Archive2026\r\n")
        let copied = await c.send("s2 SELECT Archive2026\r\nf2 FETCH 1 (EMAILID)\r\n")
        XCTAssertEqual(value(copied, after: "EMAILID ("), emailID, "COPY keeps EMAILID: \(copied)")
    }
}
