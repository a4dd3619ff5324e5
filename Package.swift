// swift-tools-version:6.1
// Facteur: a complete mail server. See docs/ and README.md for the map of targets.
import PackageDescription

let package = Package(
    name: "Facteur",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "facteur", targets: ["facteur"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "5.0.1"),
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.5.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
    ],
    targets: [
        // RFC 5322 / MIME parsing. No NIO, no store.
        .target(name: "FacteurMIME"),
        // Asynchronous DNS client on NIO (RFC 1035, 7766, 6891, 2308); static resolver for tests.
        .target(name: "FacteurDNS", dependencies: [
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Shared listener plumbing: TLS contexts, line framing, connection limits.
        .target(name: "FacteurNet", dependencies: [
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOTLS", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "SwiftASN1", package: "swift-asn1"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The MailStore protocol and its SQLite implementation; blobs; change feed.
        .target(name: "FacteurStore", dependencies: [
            "FacteurMIME",
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Credentials: password hashing, SCRAM keys, SASL mechanisms.
        .target(name: "FacteurIdentity", dependencies: [
            "FacteurStore",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "_CryptoExtras", package: "swift-crypto"),
        ]),
        // SMTP: parser, session state machine, NIO adapter.
        .target(name: "FacteurSMTP", dependencies: [
            "FacteurNet", "FacteurStore", "FacteurIdentity", "FacteurMIME", "FacteurQueue",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOTLS", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // POP3: parser, session state machine, NIO adapter.
        .target(name: "FacteurPOP3", dependencies: [
            "FacteurNet", "FacteurStore", "FacteurIdentity",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOTLS", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // IMAP4rev2/IMAP4rev1: grammar, session state machine, NIO adapter.
        .target(name: "FacteurIMAP", dependencies: [
            "FacteurNet", "FacteurStore", "FacteurIdentity", "FacteurMIME",
            .product(name: "CompressNIO", package: "compress-nio"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOTLS", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // ACME (RFC 8555): certificates that obtain and renew themselves; HTTP-01 and TLS-ALPN-01
        // (RFC 8737) challenges, ACME Renewal Information (RFC 9773).
        .target(name: "FacteurACME", dependencies: [
            "FacteurNet",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "SwiftASN1", package: "swift-asn1"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // HTTP listeners. The public one: MTA-STS policy (RFC 8461 §3.2), ACME HTTP-01 answers.
        .target(name: "FacteurAdmin", dependencies: [
            "FacteurNet",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ]),
        // Composition root: config, store, listeners, lifecycle.
        .target(name: "FacteurServer", dependencies: [
            "FacteurNet", "FacteurStore", "FacteurIdentity", "FacteurSMTP", "FacteurPOP3", "FacteurIMAP", "FacteurMIME", "FacteurQueue", "FacteurDNS",
            "FacteurMailAuth", "FacteurACME", "FacteurAdmin",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "TOMLKit", package: "TOMLKit"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ]),
        // Outbound delivery: durable queue, SMTP client, MX routing, retries, DSNs (RFC 5321, 3461, 3464).
        .target(name: "FacteurQueue", dependencies: [
            "FacteurStore", "FacteurDNS", "FacteurMIME", "FacteurNet",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOTLS", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "facteur", dependencies: [
            "FacteurServer", "FacteurStore", "FacteurIdentity", "FacteurQueue", "FacteurMailAuth", "FacteurNet",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        // Mail authentication: SPF (RFC 7208), DKIM (RFC 6376, 8301, 8463), DMARC (RFC 7489, DMARCbis)
        // and its reports, ARC (RFC 8617), Authentication-Results (RFC 8601).
        .target(name: "FacteurMailAuth", dependencies: [
            "FacteurDNS", "FacteurMIME",
            .product(name: "CompressNIO", package: "compress-nio"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "_CryptoExtras", package: "swift-crypto"),
        ]),

        // Helpers shared by the tests only.
        .target(name: "FacteurTestSupport"),

        .testTarget(name: "FacteurMIMETests", dependencies: ["FacteurMIME", "FacteurTestSupport"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "FacteurDNSTests", dependencies: [
            "FacteurDNS", "FacteurTestSupport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        .testTarget(name: "FacteurIdentityTests", dependencies: ["FacteurIdentity", "FacteurStore", "FacteurTestSupport",
                                                               .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(name: "FacteurStoreTests", dependencies: ["FacteurStore", "FacteurMIME"]),
        .testTarget(name: "FacteurSMTPTests", dependencies: [
            "FacteurSMTP", "FacteurStore", "FacteurNet", "FacteurIdentity", "FacteurQueue", "FacteurTestSupport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
        ]),
        .testTarget(name: "FacteurQueueTests", dependencies: [
            "FacteurQueue", "FacteurStore", "FacteurDNS", "FacteurSMTP", "FacteurNet", "FacteurIdentity", "FacteurTestSupport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ]),
        .testTarget(name: "FacteurPOP3Tests", dependencies: [
            "FacteurTestSupport",
            "FacteurPOP3", "FacteurStore", "FacteurNet", "FacteurIdentity",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ]),
        .testTarget(name: "FacteurIMAPTests", dependencies: [
            "FacteurTestSupport",
            "FacteurIMAP", "FacteurStore", "FacteurIdentity", "FacteurMIME", "FacteurNet",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "_CryptoExtras", package: "swift-crypto"),
        ], resources: [.copy("Fixtures")]),
        .testTarget(name: "FacteurServerTests", dependencies: [
            "FacteurServer", "FacteurQueue", "FacteurNet",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOTLS", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "X509", package: "swift-certificates"),
        ]),
        .testTarget(name: "FacteurMailAuthTests", dependencies: [
            "FacteurMailAuth", "FacteurDNS", "FacteurMIME", "FacteurTestSupport",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "_CryptoExtras", package: "swift-crypto"),
            .product(name: "Yams", package: "Yams"),
        ], resources: [.copy("Fixtures")]),
        .testTarget(name: "FacteurACMETests", dependencies: [
            "FacteurACME", "FacteurNet", "FacteurTestSupport",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "SwiftASN1", package: "swift-asn1"),
        ]),
        .testTarget(name: "FacteurAdminTests", dependencies: [
            "FacteurAdmin", "FacteurNet", "FacteurTestSupport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "FacteurEndToEndTests", dependencies: ["FacteurStore", "FacteurTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
