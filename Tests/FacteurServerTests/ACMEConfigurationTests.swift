import FacteurServer
import XCTest

final class ACMEConfigurationTests: XCTestCase {
    func testDefaultsAndParsing() throws {
        let defaults = try ServerConfiguration.parse("hostname = \"mail.example.org\"", file: "f.toml")
        XCTAssertFalse(defaults.acme.enabled)
        XCTAssertEqual(defaults.acmeDomains(localDomains: ["example.org", "other.org"]),
                       ["mail.example.org", "mta-sts.example.org", "mta-sts.other.org"])
        XCTAssertEqual(defaults.mtaSTSPolicy.text, "version: STSv1\r\nmode: testing\r\nmx: mail.example.org\r\nmax_age: 604800\r\n")

        let configured = try ServerConfiguration.parse("""
            hostname = "mail.example.org"
            [acme]
            enabled = true
            directory = "https://localhost:14000/dir"
            contact = ["mailto:ops@example.org"]
            domains = ["MAIL.example.org"]
            challenge = "tls-alpn-01"
            trust_roots = "pebble.pem"
            [mta_sts]
            mode = "enforce"
            max_age = 86400
            mx = ["mail.example.org", "*.example.net"]
            """, file: "f.toml")
        XCTAssertTrue(configured.acme.enabled)
        XCTAssertEqual(configured.acme.directory, "https://localhost:14000/dir")
        XCTAssertEqual(configured.acme.contact, ["mailto:ops@example.org"])
        XCTAssertEqual(configured.acmeDomains(localDomains: ["example.org"]), ["mail.example.org"])
        XCTAssertEqual(configured.acme.challenge.rawValue, "tls-alpn-01")
        XCTAssertEqual(configured.acme.trustRoots, "pebble.pem")
        XCTAssertEqual(configured.mtaSTSPolicy.text, "version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\nmx: *.example.net\r\nmax_age: 86400\r\n")
    }

    func testMistakesAreRefused() {
        for (text, fragment) in [
            ("[acme]\nchallenge = \"dns-01\"", "acme.challenge"),
            ("[acme]\ncontact = [\"ops@example.org\"]", "acme.contact"),
            ("[acme]\ndirectory = \"ftp://x\"", "acme.directory"),
            ("[acme]\nenable = true", "acme.enable: unknown key"),
            ("[mta_sts]\nmode = \"strict\"", "mta_sts.mode"),
            ("[mta_sts]\nmax_age = 99999999", "mta_sts.max_age"),
            ("[mta_sts]\nmx = []", "mta_sts.mx"),
        ] {
            XCTAssertThrowsError(try ServerConfiguration.parse(text, file: "f.toml"), text) { error in
                XCTAssertTrue("\(error)".contains(fragment), "\(error)")
            }
        }
    }

    func testDNSRecordsNameEveryRecord() throws {
        var configuration = ServerConfiguration()
        configuration.hostname = "mail.example.org"
        configuration.primaryDomain = "example.org"
        configuration.dataDirectory = "/nonexistent-facteur-test"
        let zone = DNSRecords.zone(domain: "example.org", configuration: configuration, dkim: [(name: "s1._domainkey.example.org", text: "\"v=DKIM1; p=AAAA\"")])
        XCTAssertTrue(zone.contains("example.org. 3600 IN MX 10 mail.example.org."))
        XCTAssertTrue(zone.contains("example.org. 3600 IN TXT \"v=spf1 mx -all\""))
        XCTAssertTrue(zone.contains("s1._domainkey.example.org. 3600 IN TXT \"v=DKIM1; p=AAAA\""))
        XCTAssertTrue(zone.contains("_dmarc.example.org. 3600 IN TXT \"v=DMARC1;"))
        XCTAssertTrue(zone.contains("_mta-sts.example.org. 3600 IN TXT \"v=STSv1; id=\(configuration.mtaSTSPolicy.id);\""))
        XCTAssertTrue(zone.contains("_smtp._tls.example.org. 3600 IN TXT \"v=TLSRPTv1; rua=mailto:tls-reports@example.org\""))
        XCTAssertTrue(zone.contains("; TLSA: no certificate"))
    }
}
