import FacteurAdmin
import XCTest

final class MTASTSPolicyTests: XCTestCase {
    func testPolicyTextIsRFC8461Format() {
        let policy = MTASTSPolicy(mode: .enforce, maxAge: 86_400, mx: ["mail.example.org", "*.backup.example.org"])
        XCTAssertEqual(policy.text, "version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\nmx: *.backup.example.org\r\nmax_age: 86400\r\n")
    }

    func testIDChangesWithThePolicyAndFitsTheRecordSyntax() {
        let testing = MTASTSPolicy(mode: .testing, mx: ["mail.example.org"])
        let enforce = MTASTSPolicy(mode: .enforce, mx: ["mail.example.org"])
        XCTAssertNotEqual(testing.id, enforce.id)
        XCTAssertEqual(testing.id, MTASTSPolicy(mode: .testing, mx: ["mail.example.org"]).id)
        // RFC 8461 §3.1: sts-id = 1*32(ALPHA / DIGIT).
        XCTAssertTrue((1...32).contains(testing.id.count))
        XCTAssertTrue(testing.id.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) })
        XCTAssertEqual(testing.txtRecord, "v=STSv1; id=\(testing.id);")
    }

    func testMaxAgeIsCapped() {
        XCTAssertEqual(MTASTSPolicy(maxAge: 99_999_999, mx: ["a"]).maxAge, MTASTSPolicy.maxAgeLimit)
        XCTAssertEqual(MTASTSPolicy(maxAge: -5, mx: ["a"]).maxAge, 0)
    }
}

final class PublicWebRouterTests: XCTestCase {
    let policy = MTASTSPolicy(mode: .testing, mx: ["mail.example.org"])

    func testPolicyOnlyForMTASTSHostOfALocalDomainOverHTTPS() {
        let router = PublicWebRouter(policy: policy, domains: ["example.org"])
        let ok = router.respond(method: "GET", path: "/.well-known/mta-sts.txt", host: "MTA-STS.Example.org:443", secure: true)
        XCTAssertEqual(ok.status, 200)
        XCTAssertEqual(ok.body, policy.text)
        XCTAssertEqual(ok.contentType, "text/plain")
        XCTAssertEqual(router.respond(method: "GET", path: "/.well-known/mta-sts.txt", host: "mta-sts.example.org", secure: false).status, 404)
        XCTAssertEqual(router.respond(method: "GET", path: "/.well-known/mta-sts.txt", host: "mta-sts.other.org", secure: true).status, 404)
        XCTAssertEqual(router.respond(method: "GET", path: "/.well-known/mta-sts.txt", host: "example.org", secure: true).status, 404)
        XCTAssertEqual(router.respond(method: "GET", path: "/.well-known/mta-sts.txt", host: nil, secure: true).status, 404)
        XCTAssertEqual(router.respond(method: "GET", path: "/", host: "mta-sts.example.org", secure: true).status, 404)
        XCTAssertEqual(router.respond(method: "POST", path: "/.well-known/mta-sts.txt", host: "mta-sts.example.org", secure: true).status, 405)
        router.setDomains(["other.org"])
        XCTAssertEqual(router.respond(method: "GET", path: "/.well-known/mta-sts.txt", host: "mta-sts.other.org", secure: true).status, 200)
        XCTAssertEqual(router.respond(method: "GET", path: "/.well-known/mta-sts.txt", host: "mta-sts.example.org", secure: true).status, 404)
    }

    func testChallengeTable() {
        let router = PublicWebRouter(policy: nil, domains: [])
        XCTAssertTrue(router.challenges.set(token: "abc_DEF-123", keyAuthorization: "abc_DEF-123.thumb"))
        XCTAssertFalse(router.challenges.set(token: "../etc/passwd", keyAuthorization: "x"))
        XCTAssertFalse(router.challenges.set(token: "", keyAuthorization: "x"))
        let answer = router.respond(method: "GET", path: "/.well-known/acme-challenge/abc_DEF-123", host: "anything", secure: false)
        XCTAssertEqual(answer.status, 200)
        XCTAssertEqual(answer.body, "abc_DEF-123.thumb")
        XCTAssertEqual(router.respond(method: "GET", path: "/.well-known/acme-challenge/nope", host: nil, secure: false).status, 404)
        router.challenges.remove(token: "abc_DEF-123")
        XCTAssertEqual(router.respond(method: "GET", path: "/.well-known/acme-challenge/abc_DEF-123", host: nil, secure: false).status, 404)
    }

    func testChallengeTableIsBounded() {
        let table = ACMEHTTPChallengeTable()
        for index in 0..<ACMEHTTPChallengeTable.maxEntries { XCTAssertTrue(table.set(token: "t\(index)", keyAuthorization: "k")) }
        XCTAssertFalse(table.set(token: "one-more", keyAuthorization: "k"))
        XCTAssertTrue(table.set(token: "t0", keyAuthorization: "replaced"), "replacing an existing token is allowed")
        XCTAssertEqual(table.count, ACMEHTTPChallengeTable.maxEntries)
    }
}
