// FacteurDNS: the stub resolver on NIO. Sends recursive queries to the configured resolvers over UDP
// with EDNS0 (RFC 6891; 1232-octet payload, DO bit on request), retries over TCP when the reply is
// truncated (RFC 7766 §5), drops EDNS for a server that answers FORMERR to it (RFC 6891 §7), goes
// round the servers `attempts` times with a fresh random ID and source port per try (RFC 5452 §9.2),
// and caches outcomes by TTL (RFC 2308 for negative ones).

import Logging
import NIOCore
import NIOPosix

/// Where and how `DNSClient` asks.
public struct DNSClientConfiguration: Sendable {
    /// Recursive resolvers, tried in order (all on port 53 unless given otherwise).
    public var servers: [SocketAddress]
    /// Time to wait for one server's answer before trying the next.
    public var timeout: TimeAmount
    /// Rounds through the server list before giving up.
    public var attempts: Int
    /// Send an OPT record (RFC 6891). Off only for servers that cannot cope with EDNS at all.
    public var useEDNS: Bool
    /// EDNS UDP payload size; 1232 avoids fragmentation (DNS Flag Day 2020).
    public var udpPayloadSize: UInt16
    /// The DO bit (RFC 3225): ask for DNSSEC records. The AD bit does not need it (RFC 6840 §5.7).
    public var dnssecOK: Bool
    /// Set AD in queries, which asks a validating resolver to report AD in its answer (RFC 6840 §5.7).
    public var requestAuthenticData: Bool
    /// Believe the AD bit of answers. Only true when the path to the resolver cannot be tampered
    /// with — a validating resolver on loopback, or `options trust-ad` in resolv.conf (RFC 6698 §4.1,
    /// RFC 7672 §1.3). When false every answer reports `authenticData == false`.
    public var trustAuthenticData: Bool
    /// Cache sizes; nil turns the cache off.
    public var cache: DNSCacheConfiguration?
    /// Start each query at a random server instead of the first (resolv.conf `options rotate`).
    public var rotate: Bool

    public init(servers: [SocketAddress], timeout: TimeAmount = .seconds(Int64(DNSLimits.defaultTimeoutSeconds)),
                attempts: Int = DNSLimits.defaultAttempts, useEDNS: Bool = true,
                udpPayloadSize: UInt16 = DNSLimits.defaultEDNSPayloadSize, dnssecOK: Bool = false,
                requestAuthenticData: Bool = true, trustAuthenticData: Bool = false,
                cache: DNSCacheConfiguration? = DNSCacheConfiguration(), rotate: Bool = false) {
        self.servers = servers
        self.rotate = rotate
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.useEDNS = useEDNS
        // RFC 6891 §6.2.5: values below 512 are treated as 512.
        self.udpPayloadSize = max(UInt16(DNSLimits.classicUDPPayloadSize), udpPayloadSize)
        self.dnssecOK = dnssecOK
        self.requestAuthenticData = requestAuthenticData
        self.trustAuthenticData = trustAuthenticData
        self.cache = cache
    }

    /// Servers, timeout, attempts and trust-ad from a parsed resolv.conf. With no nameserver line the
    /// C library's default applies: the local host (resolv.conf(5)).
    public init(resolvConf: ResolvConf, port: Int = 53) throws {
        let addresses = resolvConf.nameservers.isEmpty ? [IPAddress.v4(IPv4Address("127.0.0.1")!)] : resolvConf.nameservers
        self.init(servers: try addresses.map { try $0.socketAddress(port: port) },
                  timeout: .seconds(Int64(resolvConf.timeoutSeconds)), attempts: resolvConf.attempts,
                  trustAuthenticData: resolvConf.trustAD, rotate: resolvConf.rotate)
    }

    /// The system's configuration, from /etc/resolv.conf.
    public static func system(path: String = "/etc/resolv.conf") throws -> DNSClientConfiguration {
        try DNSClientConfiguration(resolvConf: ResolvConf.load(path: path))
    }
}

/// The real resolver: talks to recursive resolvers over the network.
public final class DNSClient: DNSResolver {
    public let configuration: DNSClientConfiguration
    private let group: any EventLoopGroup
    private let cache: DNSCacheBox?
    private let logger: Logger

    public init(configuration: DNSClientConfiguration,
                eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                clock: any DNSClock = SystemDNSClock(),
                logger: Logger = Logger(label: "facteur.dns")) {
        self.configuration = configuration
        self.group = eventLoopGroup
        self.cache = configuration.cache.map { DNSCacheBox(cache: DNSCache(configuration: $0), clock: clock) }
        self.logger = logger
    }

    public func query(name: DNSName, type: DNSRecordType) async throws(DNSError) -> DNSAnswer {
        if let cache, let cached = await cache.lookup(name: name, type: type) {
            switch cached {
            case .answer(let answer): return answer
            case .negative(let error): throw error
            }
        }
        do {
            let answer = try await DNSResponseInterpreter.resolve(
                name: name, type: type, trustAuthenticData: configuration.trustAuthenticData
            ) { (question: DNSQuestion) async throws(DNSError) -> DNSMessage in
                try await self.exchange(question)
            }
            await cache?.store(.answer(answer), name: name, type: type)
            return answer
        } catch {
            if error.isNotFound {
                await cache?.store(.negative(error), name: name, type: type)
            }
            throw error
        }
    }

    /// Forgets every cached answer.
    public func flushCache() async {
        await cache?.removeAll()
    }

    /// Asks the servers one question until one gives a usable response (an answer, NXDOMAIN or no
    /// data). SERVFAIL, REFUSED and other RCODEs move on to the next server, as timeouts do.
    func exchange(_ question: DNSQuestion) async throws(DNSError) -> DNSMessage {
        guard !configuration.servers.isEmpty else { throw .transport("no DNS servers configured") }
        var rcodeFailure: DNSError?
        var otherFailure: DNSError = .timeout(question)
        var servers = configuration.servers
        if configuration.rotate, servers.count > 1 {
            let start = Int.random(in: 0..<servers.count)
            servers = Array(servers[start...] + servers[..<start])
        }
        for attempt in 0..<configuration.attempts {
            for server in servers {
                do {
                    let message = try await exchange(question, server: server, useEDNS: configuration.useEDNS)
                    switch message.responseCode {
                    case .noError, .nameError:
                        return message
                    case .serverFailure:
                        rcodeFailure = .serverFailure(question)
                    case .refused:
                        rcodeFailure = .refused(question)
                    default:
                        rcodeFailure = .otherResponseCode(question, message.responseCode)
                    }
                    logger.debug("DNS \(question) from \(server): \(message.responseCode)",
                                 metadata: ["attempt": "\(attempt + 1)"])
                } catch DNSTransportError.timeout {
                    otherFailure = .timeout(question)
                    logger.debug("DNS \(question) to \(server): timeout", metadata: ["attempt": "\(attempt + 1)"])
                } catch let error as DNSWireError {
                    otherFailure = .malformedResponse(question, "\(error)")
                } catch {
                    otherFailure = .transport("\(server): \(error)")
                    logger.debug("DNS \(question) to \(server): \(error)")
                }
            }
        }
        // A server's own word (SERVFAIL, REFUSED) says more than a silence.
        throw rcodeFailure ?? otherFailure
    }

    /// One question to one server: UDP, then TCP if truncated; without EDNS if the server rejects it.
    private func exchange(_ question: DNSQuestion, server: SocketAddress, useEDNS: Bool) async throws -> DNSMessage {
        let edns = useEDNS ? EDNSOptions(udpPayloadSize: configuration.udpPayloadSize, dnssecOK: configuration.dnssecOK) : nil
        // RFC 5452 §9.2: an unpredictable ID for every query, from the system's CSPRNG.
        let query = DNSMessage.query(id: UInt16.random(in: .min ... .max), question: question, edns: edns,
                                     authenticData: configuration.requestAuthenticData)
        var result = try await DNSTransport.udp(query: query, server: server, timeout: configuration.timeout, group: group)
        if result.truncated {
            logger.debug("DNS \(question) from \(server): truncated, retrying over TCP")
            var tcpQuery = query
            tcpQuery.header.id = UInt16.random(in: .min ... .max)
            result = try await DNSTransport.tcp(query: tcpQuery, server: server, timeout: configuration.timeout, group: group)
        }
        guard let message = result.message else { throw DNSTransportError.closedBeforeAnswer }
        // RFC 6891 §7: a server that does not understand EDNS may answer FORMERR (or NOTIMP) without an
        // OPT record; ask again without one.
        if useEDNS, message.edns == nil,
           message.responseCode == .formatError || message.responseCode == .notImplemented {
            return try await exchange(question, server: server, useEDNS: false)
        }
        return message
    }
}

/// The cache behind an actor, reading the injected clock.
actor DNSCacheBox {
    private var cache: DNSCache
    private let clock: any DNSClock

    init(cache: DNSCache, clock: any DNSClock) {
        self.cache = cache
        self.clock = clock
    }

    func lookup(name: DNSName, type: DNSRecordType) -> DNSCache.Outcome? {
        cache.lookup(name: name, type: type, now: clock.now())
    }

    func store(_ outcome: DNSCache.Outcome, name: DNSName, type: DNSRecordType) {
        cache.store(outcome, name: name, type: type, now: clock.now())
    }

    func removeAll() {
        cache.removeAll()
    }
}
