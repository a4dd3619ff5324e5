import FacteurQueue
@testable import FacteurServer
import XCTest

final class ConfigurationTests: XCTestCase {
    func testDefaultsMatchTheDesign() {
        let configuration = ServerConfiguration()
        XCTAssertEqual(configuration.dataDirectory, "./facteur-data")
        XCTAssertEqual(configuration.primaryDomain, "localhost")
        XCTAssertEqual(configuration.listeners.map { "\($0.proto.rawValue)=\($0.address):\($0.port)" },
                       ["smtp=127.0.0.1:2525", "submission=127.0.0.1:2587", "submissions=127.0.0.1:2465", "imap=127.0.0.1:1143",
                        "imaps=127.0.0.1:1993", "pop3=127.0.0.1:1110", "pop3s=127.0.0.1:1995"])
        XCTAssertNoThrow(try configuration.validateListeners())
    }

    func testFullFile() throws {
        let configuration = try ServerConfiguration.parse("""
        hostname = "mx.example.org"
        primary_domain = "Example.org"
        postmaster = "Alice@example.org"
        data = "/var/lib/facteur"
        log_level = "debug"

        [tls]
        certificate = "c.pem"
        key = "/etc/k.pem"
        generate_self_signed = false
        [tls.domains."Mail.Example.net"]
        certificate = "n.pem"
        key = "n.key"

        [limits]
        max_message_size = 2048
        max_recipients = 5
        max_errors = 3
        max_connections = 10
        max_connections_per_ip = 2
        idle_timeout = 60
        shutdown_grace = 5

        [[listener]]
        protocol = "smtp"
        address = "0.0.0.0"
        port = 25

        [[listener]]
        protocol = "submissions"
        port = 465
        """, file: "test.toml")
        XCTAssertEqual(configuration.hostname, "mx.example.org")
        XCTAssertEqual(configuration.primaryDomain, "example.org")
        XCTAssertEqual(configuration.postmaster, "alice@example.org")
        XCTAssertEqual(configuration.resolve(configuration.certificate), "/var/lib/facteur/c.pem")
        XCTAssertEqual(configuration.resolve(configuration.key), "/etc/k.pem")
        XCTAssertFalse(configuration.generateSelfSigned)
        XCTAssertEqual(configuration.domainCertificates["mail.example.net"]?.certificate, "n.pem")
        XCTAssertEqual(configuration.maxMessageSize, 2048)
        XCTAssertEqual(configuration.maxConnectionsPerAddress, 2)
        XCTAssertEqual(configuration.shutdownGraceSeconds, 5)
        XCTAssertEqual(configuration.listeners, [
            ListenerConfiguration(proto: .smtp, address: "0.0.0.0", port: 25, tls: .starttls),
            ListenerConfiguration(proto: .submissions, address: "127.0.0.1", port: 465, tls: .implicit),
        ])
    }

    private func error(_ text: String) -> String {
        do {
            _ = try ServerConfiguration.parse(text, file: "f.toml")
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    func testErrorsNameTheFileTheKeyAndTheProblem() {
        XCTAssertEqual(error("hostnme = \"x\""), "f.toml: hostnme: unknown key")
        XCTAssertEqual(error("[limits]\nmax_recipients = \"ten\""), "f.toml: limits.max_recipients: must be an integer")
        XCTAssertEqual(error("[limits]\nmax_recipients = 0"), "f.toml: limits.max_recipients: must be between 1 and \(Int.max)")
        XCTAssertEqual(error("[limits]\nmax_recipent = 3"), "f.toml: limits.max_recipent: unknown key")
        XCTAssertEqual(error("[[listener]]\nprotocol = \"smtp\"\nport = 70000"), "f.toml: listener[0].port: must be between 0 and 65535")
        XCTAssertEqual(error("[[listener]]\nprotocol = \"gopher\"\nport = 70"),
                       "f.toml: listener[0].protocol: unknown protocol \"gopher\" (one of smtp, submission, submissions, imap, imaps, pop3, pop3s, http, https)")
        XCTAssertEqual(error("[[listener]]\nport = 25"), "f.toml: listener[0].protocol: missing")
        XCTAssertEqual(error("[[listener]]\nprotocol = \"smtp\"\nport = 25\ntls = \"maybe\""), "f.toml: listener[0].tls: must be none, starttls or implicit")
        XCTAssertEqual(error("hostname = \"bad host\""), "f.toml: hostname: \"bad host\" is not a host name")
        XCTAssertEqual(error("postmaster = \"nobody\""), "f.toml: postmaster: \"nobody\" is not an address")
        XCTAssertEqual(error("[tls.domains.\"a.example\"]\ncertificate = \"x\""), "f.toml: tls.domains.a.example: needs both certificate and key")
        XCTAssertTrue(error("[limits\n").hasPrefix("f.toml: line 1, column"), error("[limits\n"))
    }

    func testListenOptions() throws {
        XCTAssertEqual(try ListenerConfiguration.parse("smtp=127.0.0.1:0"), ListenerConfiguration(proto: .smtp, address: "127.0.0.1", port: 0))
        XCTAssertEqual(try ListenerConfiguration.parse("IMAPS=[::1]:993"), ListenerConfiguration(proto: .imaps, address: "::1", port: 993))
        XCTAssertEqual(try ListenerConfiguration.parse("smtp=:25").address, "0.0.0.0")
        XCTAssertThrowsError(try ListenerConfiguration.parse("smtp127.0.0.1:25"))
        XCTAssertThrowsError(try ListenerConfiguration.parse("smtp=127.0.0.1"))
        XCTAssertThrowsError(try ListenerConfiguration.parse("smtp=127.0.0.1:99999"))
        XCTAssertThrowsError(try ListenerConfiguration.parse("ftp=127.0.0.1:21"))
        var configuration = ServerConfiguration()
        try configuration.replaceListeners(with: ["smtp=127.0.0.1:0", "smtp=[::1]:0"])
        XCTAssertEqual(configuration.listeners.count, 2)
    }

    func testProtocolsNotBuiltYetAreRefused() throws {
        var configuration = ServerConfiguration()
        try configuration.replaceListeners(with: ["smtp=127.0.0.1:0"])
        XCTAssertNoThrow(try configuration.validateListeners())
        let unbuilt = ListenerProtocol.allCases.filter { !ListenerProtocol.implemented.contains($0) }
        for proto in unbuilt {
            try configuration.replaceListeners(with: ["\(proto.rawValue)=127.0.0.1:0"])
            XCTAssertThrowsError(try configuration.validateListeners()) { error in
                XCTAssertTrue("\(error)".contains("not available"), "\(error)")
            }
        }
    }
}

final class QuickstartTests: XCTestCase {
    func testQuickstartConfigurationLoadsWithTheStandardPorts() throws {
        let text = Quickstart.configuration(domain: "example.org", hostname: "mail.example.org", dataDirectory: "/var/lib/facteur")
        let configuration = try ServerConfiguration.parse(text, file: "quickstart.toml")
        XCTAssertEqual(configuration.hostname, "mail.example.org")
        XCTAssertEqual(configuration.primaryDomain, "example.org")
        XCTAssertFalse(configuration.allowPlaintextAuthOnLoopback)
        XCTAssertEqual(Set(configuration.listeners.map { "\($0.proto.rawValue):\($0.port):\($0.tls.rawValue)" }),
                       ["smtp:25:starttls", "submission:587:starttls", "submissions:465:implicit", "imap:143:starttls",
                        "imaps:993:implicit", "pop3:110:starttls", "pop3s:995:implicit", "http:80:none", "https:443:implicit"])
        XCTAssertNoThrow(try configuration.validateListeners())
    }

    func testDNSRecordsNameTheHost() {
        let records = Quickstart.dnsRecords(domain: "example.org", hostname: "mail.example.org")
        XCTAssertTrue(records.contains("example.org.                 IN MX    10 mail.example.org."))
        XCTAssertTrue(records.contains("\"v=spf1 mx -all\""))
        XCTAssertTrue(records.contains("_dmarc.example.org."))
    }

    func testMailAuthDeliveryAndRoutes() throws {
        let configuration = try ServerConfiguration.parse("""
        dns_servers = ["127.0.0.1:5353", "[::1]:53", "192.0.2.53"]
        sent_copies = true
        [mail_auth]
        trusted_networks = ["10.0.0.0/8"]
        dmarc_enforce = false
        organizational_domain = "psl"
        public_suffix_list = "psl.dat"
        trusted_forwarders = ["192.0.2.0/24", "Lists.Example.net"]
        arc_trusted_sealers = ["Google.com"]
        arc_seal = true
        dmarc_report_address = "Reports@example.org"
        [delivery]
        mx_port = 2525
        source_ipv4 = "192.0.2.10"
        [delivery.source."Brand.example"]
        ipv4 = "192.0.2.11"
        ipv6 = "2001:db8::11"
        [[route]]
        domain = "partner.example"
        relay = "smtp.partner.example:587"
        username = "facteur"
        password = "secret"
        [[route]]
        domain = "intranet.example"
        deliver = "local"
        [[route]]
        domain = "*"
        relay = "relay.isp.example"
        """, file: "t.toml")
        XCTAssertEqual(configuration.dnsServers.count, 3)
        XCTAssertTrue(configuration.sentCopies)
        XCTAssertEqual(configuration.mailAuth.trustedNetworks, ["10.0.0.0/8"])
        XCTAssertFalse(configuration.mailAuth.dmarcEnforce)
        XCTAssertEqual(configuration.mailAuth.organizationalDomain, "psl")
        XCTAssertEqual(configuration.mailAuth.arcTrustedSealers, ["google.com"])
        XCTAssertTrue(configuration.mailAuth.arcSeal)
        XCTAssertEqual(configuration.mailAuth.dmarcReportAddress, "reports@example.org")
        XCTAssertEqual(configuration.deliveryMXPort, 2525)
        XCTAssertEqual(configuration.deliverySourceByDomain["brand.example"]?.ipv6, "2001:db8::11")
        XCTAssertEqual(configuration.routes, [
            RouteConfiguration(domain: "partner.example", target: .relay(host: "smtp.partner.example", port: 587, username: "facteur",
                                                                          password: "secret", requireTLS: false)),
            RouteConfiguration(domain: "intranet.example", target: .local),
            RouteConfiguration(domain: "*", target: .relay(host: "relay.isp.example", port: 25, username: nil, password: nil, requireTLS: false)),
        ])
        var queue = QueueConfiguration(hostname: "mx")
        configuration.applyDelivery(to: &queue)
        XCTAssertEqual(queue.mxPort, 2525)
        XCTAssertEqual(queue.source(for: "a@brand.example").ipv4, "192.0.2.11")
        XCTAssertEqual(queue.source(for: "a@other.example").ipv4, "192.0.2.10")
        if case .relay(let relay) = queue.defaultRoute { XCTAssertEqual(relay.host, "relay.isp.example") } else { XCTFail("default route") }
        if case .relay(let relay) = queue.routes["partner.example"] { XCTAssertTrue(relay.requireTLS, "credentials imply TLS") } else { XCTFail() }
    }

    func testMailAuthAndRouteErrorsNameTheKey() {
        for (text, location) in [
            ("[mail_auth]\ntrusted_networks = [\"nope\"]", "mail_auth.trusted_networks"),
            ("[mail_auth]\norganizational_domain = \"psl\"", "mail_auth.public_suffix_list"),
            ("[mail_auth]\nunknown = 1", "mail_auth.unknown"),
            ("[delivery]\nsource_ipv4 = \"2001:db8::1\"", "delivery.source_ipv4"),
            ("[[route]]\nrelay = \"x\"", "route[0].domain"),
            ("[[route]]\ndomain = \"a.example\"\nrelay = \"x\"\ndeliver = \"local\"", "route[0]"),
            ("[[route]]\ndomain = \"a.example\"\nrelay = \"x\"\nusername = \"u\"", "route[0].password"),
            ("dns_servers = [\"nothing\"]", "dns_servers"),
        ] {
            XCTAssertThrowsError(try ServerConfiguration.parse(text, file: "t.toml"), text) { error in
                XCTAssertEqual((error as? ConfigurationError)?.location, location, "\(text): \(error)")
            }
        }
    }
}
