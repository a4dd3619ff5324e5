// The delivery worker: claims due recipients from the durable queue, routes them (local store,
// smarthost, or MX per RFC 5321 §5.1), delivers with the SMTP client reusing one connection for
// several messages to the same destination, records each recipient's outcome, retries with
// exponential backoff (RFC 5321 §4.5.4.1), expires, and sends DSNs (RFC 3461, RFC 3464):
// failures and expiry to the envelope sender, a delay warning once, never to the null sender.

import FacteurDNS
import FacteurStore
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import X509

/// RFC 5321 §4.5.4.1: retry no sooner than 30 minutes apart in general; we start sooner (a
/// greylisting server asks for minutes) and double up to a ceiling.
public struct RetrySchedule: Sendable, Equatable {
    public var first: TimeInterval
    public var factor: Double
    public var maximum: TimeInterval
    public init(first: TimeInterval = 5 * 60, factor: Double = 2, maximum: TimeInterval = 4 * 3600) {
        self.first = first; self.factor = factor; self.maximum = maximum
    }

    /// The wait after the `attempts`-th failed attempt (1 = the first).
    public func delay(afterAttempts attempts: Int) -> TimeInterval {
        let exponent = Double(max(0, min(attempts - 1, 60)))
        return min(maximum, first * pow(factor, exponent))
    }
}

public struct QueueConfiguration: Sendable {
    /// Our hostname: EHLO name and Reporting-MTA.
    public var hostname: String
    /// Per-domain routes (keys lowercased); others take `defaultRoute`.
    public var routes: [String: QueueRoute]
    public var defaultRoute: QueueRoute
    /// The SMTP port of MX hosts: 25; tests use another.
    public var mxPort: Int
    public var ipv6Enabled: Bool
    public var sourceIPv4: String?
    public var sourceIPv6: String?
    /// Source addresses by sending domain (the envelope sender's, lowercased): an organisation
    /// that sends for several domains can keep their reputations apart.
    public var sourceBySenderDomain: [String: (ipv4: String?, ipv6: String?)] = [:]
    public var timeouts: SMTPClientTimeouts
    public var times: QueueTimes
    public var retry: RetrySchedule
    public var maxConcurrentDeliveries: Int
    public var maxConcurrentPerDestination: Int
    /// How often the worker looks at the queue when nothing wakes it.
    public var pollInterval: Duration
    /// How long a claim holds recipients (longer than the slowest attempt).
    public var claimLease: TimeInterval
    public var useStartTLS: Bool
    /// DANE, MTA-STS, per-domain overrides (TransportPolicy.swift).
    public var tls = OutboundTLSConfiguration()
    /// How long a connection stays open, idle, after a pass for the next pass to the same
    /// destination to reuse (RFC 5321 §3.3: several transactions per session); zero: no reuse
    /// across passes.
    public var connectionIdleTime: Duration = .seconds(5)

    public init(hostname: String, routes: [String: QueueRoute] = [:], defaultRoute: QueueRoute = .mx, mxPort: Int = 25,
                ipv6Enabled: Bool = true, sourceIPv4: String? = nil, sourceIPv6: String? = nil,
                timeouts: SMTPClientTimeouts = .init(), times: QueueTimes = .init(), retry: RetrySchedule = .init(),
                maxConcurrentDeliveries: Int = 20, maxConcurrentPerDestination: Int = 4, pollInterval: Duration = .seconds(30),
                claimLease: TimeInterval = 3600, useStartTLS: Bool = true) {
        self.hostname = hostname; self.routes = routes; self.defaultRoute = defaultRoute; self.mxPort = mxPort
        self.ipv6Enabled = ipv6Enabled; self.sourceIPv4 = sourceIPv4; self.sourceIPv6 = sourceIPv6
        self.timeouts = timeouts; self.times = times; self.retry = retry
        self.maxConcurrentDeliveries = max(1, maxConcurrentDeliveries)
        self.maxConcurrentPerDestination = max(1, maxConcurrentPerDestination)
        self.pollInterval = pollInterval; self.claimLease = claimLease; self.useStartTLS = useStartTLS
    }

    func route(for domain: String) -> QueueRoute {
        routes[domain.lowercased()] ?? defaultRoute
    }

    /// The source addresses for mail from `sender`.
    public func source(for sender: String) -> (ipv4: String?, ipv6: String?) {
        guard let at = sender.lastIndex(of: "@"),
              let specific = sourceBySenderDomain[String(sender[sender.index(after: at)...]).lowercased()] else {
            return (sourceIPv4, sourceIPv6)
        }
        return (specific.ipv4 ?? sourceIPv4, specific.ipv6 ?? sourceIPv6)
    }
}

/// What SMTP submission needs from the queue: hand over a message, durably.
public protocol OutboundQueue: Sendable {
    /// Returns once the message is on disk (blob durable, rows committed): then 250 may be sent.
    func enqueue(_ submission: QueueSubmission) async throws -> QueuedMessage
}

/// Signs what leaves (DKIM, RFC 6376): returns header fields (CRLF-terminated) to put before
/// everything else in the queued message, or nothing when no key covers the message's author.
public protocol OutboundMessageSigner: Sendable {
    func signatureFields(for submission: QueueSubmission) async -> [UInt8]
}

/// Runs delivery until cancelled (`run()`), or one pass at a time (`runOnce()`, for tests with
/// an injected clock). Conform it to ServiceLifecycle's `Service` where it is composed.
public final class QueueDeliveryService: OutboundQueue, Sendable {
    public let store: SQLiteMailStore
    public let configuration: QueueConfiguration
    let router: MXRouter
    let clock: @Sendable () -> Date
    let logger: Logger
    let owner = "worker-\(UUID().uuidString)"
    let wakeup = Wakeup()
    let group: any EventLoopGroup
    /// Signs every message queued here, DSNs included; nil: nothing is signed.
    let signer: (any OutboundMessageSigner)?
    /// Decides each destination's TLS (DANE, MTA-STS, overrides).
    let transportPolicy: TransportPolicyResolver
    /// Gets one outcome per TLS session or policy failure (RFC 8460 reporting).
    let tlsReportSink: (any TLSReportSink)?
    /// WebPKI roots: the system's plus `configuration.tls.trustRootsFile`.
    let trustRoots: CertificateStore?
    /// Sessions left open by one pass for the next.
    let connections: SMTPConnectionCache

    /// `mtaSTS`: where MTA-STS policies come from; nil builds the HTTPS fetcher with its durable
    /// cache from `configuration.tls`.
    public init(store: SQLiteMailStore, resolver: any DNSResolver, configuration: QueueConfiguration,
                group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, signer: (any OutboundMessageSigner)? = nil,
                tlsReportSink: (any TLSReportSink)? = nil, mtaSTS: (any MTASTSPolicySource)? = nil,
                logger: Logger = Logger(label: "facteur.queue"), clock: @escaping @Sendable () -> Date = { Date() }) {
        self.signer = signer
        self.tlsReportSink = tlsReportSink
        let tls = configuration.tls
        let source = mtaSTS ?? MTASTSPolicyCache(resolver: resolver, group: group, cacheFile: tls.mtaSTSCacheFile,
                                                 port: tls.mtaSTSPort, trustRootsFile: tls.trustRootsFile, logger: logger, clock: clock)
        self.transportPolicy = TransportPolicyResolver(resolver: resolver, configuration: tls, mtaSTS: source)
        var roots: CertificateStore?
        if let file = tls.trustRootsFile {
            do {
                roots = try WebPKIVerifier.roots(extraRootsPEM: try String(contentsOfFile: file, encoding: .utf8))
            } catch {
                logger.error("cannot read the trust roots \(file): \(error); using the system's only")
            }
        }
        self.trustRoots = roots
        self.store = store
        self.configuration = configuration
        self.router = MXRouter(resolver: resolver, ipv6Enabled: configuration.ipv6Enabled, port: configuration.mxPort)
        self.clock = clock
        self.logger = logger
        self.group = group
        self.connections = SMTPConnectionCache(idleLimit: configuration.connectionIdleTime,
                                               capacity: configuration.connectionIdleTime > .zero
                                                   ? configuration.maxConcurrentDeliveries : 0)
    }

    /// Queues a message (durably) and wakes the worker. Use this from SMTP submission.
    public func enqueue(_ submission: QueueSubmission) async throws -> QueuedMessage {
        let message = try await store.enqueue(await signed(submission), now: clock(), times: configuration.times)
        wakeup.signal()
        return message
    }

    /// The submission with its DKIM-Signature fields in front.
    func signed(_ submission: QueueSubmission) async -> QueueSubmission {
        guard let signer else { return submission }
        let fields = await signer.signatureFields(for: submission)
        guard !fields.isEmpty else { return submission }
        var signed = submission
        signed.headerPrefix = fields + submission.headerPrefix
        return signed
    }

    /// Wakes the worker (after `facteur queue retry` in the same process, for instance).
    public func wake() { wakeup.signal() }

    /// Delivers until the task is cancelled. Claims left by a previous run are released first:
    /// queued mail resumes after a restart.
    public func run() async throws {
        try await store.releaseQueueClaims()
        while !Task.isCancelled {
            do {
                _ = try await runOnce()
            } catch {
                logger.error("queue pass failed: \(error)")
            }
            var wait = configuration.pollInterval
            if let next = try? await store.nextQueueAttempt() {
                let seconds = max(0.05, next.timeIntervalSince(clock()))
                if seconds < Double(wait.components.seconds) { wait = .milliseconds(Int64(seconds * 1000)) }
            }
            await wakeup.wait(timeout: wait)
        }
        await connections.closeAll()
    }

    /// Says QUIT on the sessions kept open between passes (after `runOnce` in tests; `run()`
    /// does it when it stops).
    public func closeIdleConnections() async {
        await connections.closeAll()
    }

    /// One pass: claim what is due, deliver it, record outcomes, send DSNs, drop finished
    /// messages. Returns the number of (message, domain) groups attempted.
    @discardableResult
    public func runOnce() async throws -> Int {
        let now = clock()
        let claims = try await store.claimQueueWork(now: now, owner: owner, lease: configuration.claimLease,
                                                    limit: configuration.maxConcurrentDeliveries * 8)
        // One lane per destination, at most `maxConcurrentPerDestination` lanes per destination;
        // each lane delivers its messages one after the other over one connection.
        var byDestination: [String: [QueueClaim]] = [:]
        for claim in claims { byDestination[destinationKey(claim.domain), default: []].append(claim) }
        var lanes: [[QueueClaim]] = []
        for (_, list) in byDestination.sorted(by: { $0.key < $1.key }) {
            let count = min(configuration.maxConcurrentPerDestination, list.count)
            var split = [[QueueClaim]](repeating: [], count: count)
            for (i, claim) in list.enumerated() { split[i % count].append(claim) }
            lanes += split
        }
        let limit = configuration.maxConcurrentDeliveries
        await withTaskGroup(of: Void.self) { group in
            var running = 0
            for lane in lanes {
                if running >= limit {
                    await group.next()
                    running -= 1
                }
                group.addTask { await self.deliver(lane: lane) }
                running += 1
            }
            await group.waitForAll()
        }
        try await sendFailureReports()
        try await store.removeFinishedQueueMessages()
        return claims.count
    }

    private func destinationKey(_ domain: String) -> String {
        switch configuration.route(for: domain) {
        case .relay(let relay): return "relay:\(relay.host):\(relay.port)"
        case .local: return "local"
        case .mx: return "mx:\(domain)"
        }
    }

    // MARK: Delivering one lane

    private func deliver(lane: [QueueClaim]) async {
        guard let first = lane.first else { return }
        let domain = first.domain
        var remaining = lane
        // Expired messages fail without another attempt (RFC 5321 §4.5.4.1: give up after 4-5 days).
        let now = clock()
        var expired: [QueueClaim] = []
        remaining.removeAll { claim in
            if now >= claim.message.expires { expired.append(claim); return true }
            return false
        }
        for claim in expired {
            let days = Int(claim.message.expires.timeIntervalSince(claim.message.created) / 86400)
            let outcomes = claim.recipients.map { r in
                (r.id, QueueAttemptOutcome.failed(
                    reply: "450 4.4.7 delivery time expired after \(days) day(s); last reply: \(r.lastReply ?? "none")",
                    host: r.remoteHost))
            }
            await record(outcomes)
        }
        guard !remaining.isEmpty else { return }

        let route = configuration.route(for: domain)
        var isLocal = false
        if case .local = route { isLocal = true } else if (try? await store.isLocalDomain(domain)) == true { isLocal = true }
        if isLocal {
            for claim in remaining {
                let outcomes = await deliverLocally(claim)
                await record(outcomes)
                let delivered = Set(outcomes.compactMap { if case .delivered = $0.1 { return $0.0 } else { return nil } })
                await reportSuccess(claim.message, claim.recipients.filter { delivered.contains($0.id) }
                    .map { ($0, "250 2.0.0 delivered to the mailbox") }, action: .delivered, host: nil)
            }
            return
        }

        let targets: Result<RoutedTargets, RoutingFailure>
        var relayed = false
        var clientConfiguration = SMTPClientConfiguration(heloName: configuration.hostname, timeouts: configuration.timeouts,
                                                          sourceIPv4: configuration.sourceIPv4,
                                                          sourceIPv6: configuration.sourceIPv6,
                                                          useStartTLS: configuration.useStartTLS)
        switch route {
        case .relay(let relay):
            // A configured smarthost counts as an authenticated next hop (RFC 8689 §5 asks for its
            // certificate to be verified, which is done below for REQUIRETLS messages).
            targets = await router.targets(for: relay).map { RoutedTargets(targets: $0, mxAuthenticated: true) }
            relayed = true
            clientConfiguration.requireTLS = relay.requireTLS
            if let user = relay.username { clientConfiguration.authentication = (user, relay.password ?? "") }
        default:
            targets = await router.routedTargets(for: domain)
        }
        switch targets {
        case .failure(let failure):
            for claim in remaining {
                await record(claim.recipients.map { r in (r.id, failure.permanent
                    ? .failed(reply: failure.reply, host: nil)
                    : .deferred(reply: failure.reply, host: nil, nextAttempt: nextAttempt(for: r, message: claim.message))) })
            }
        case .success(let routed):
            let sts: MTASTSLookup = relayed ? .none : await transportPolicy.lookupMTASTS(domain: domain)
            // One connection per source address and per TLS demand: messages of senders with their
            // own source go apart, and so do REQUIRETLS messages (RFC 8689), which need stricter hosts.
            var bySource: [String: [QueueClaim]] = [:]
            var order: [String] = []
            for claim in remaining {
                let source = configuration.source(for: claim.message.sender)
                let key = "\(source.ipv4 ?? "")|\(source.ipv6 ?? "")|\(claim.message.tlsDemand)"
                if bySource[key] == nil { order.append(key) }
                bySource[key, default: []].append(claim)
            }
            for key in order {
                guard let claims = bySource[key], let first = claims.first else { continue }
                var client = clientConfiguration
                (client.sourceIPv4, client.sourceIPv6) = configuration.source(for: first.message.sender)
                let demand = first.message.tlsDemand
                let decision: TransportPolicyDecision
                if relayed {
                    let policy: HostTLSPolicy? = demand == .requireTLS ? HostTLSPolicy(requirement: .webPKI) : nil
                    decision = TransportPolicyDecision(targets: routed.targets.map {
                        PolicedTarget(target: $0, policy: policy ?? HostTLSPolicy(requirement: client.requireTLS ? .encrypted
                            : (client.useStartTLS ? .opportunistic : .plaintextOnly), enforced: client.requireTLS))
                    }, failureReply: nil, permanent: false, outcomes: [])
                } else {
                    decision = await transportPolicy.decide(domain: domain, routed: routed, sts: sts, demand: demand, now: clock())
                }
                for var outcome in decision.outcomes {
                    // RFC 8460 §4.4 wants sending-mta-ip even when policy stopped us before connecting.
                    if outcome.sendingMTAIP == nil, let peer = outcome.receivingIP {
                        outcome.sendingMTAIP = (peer.contains(":") ? client.sourceIPv6 : client.sourceIPv4) ?? SourceAddress.toward(peer)
                    }
                    logger.info("\(domain): TLS policy failure (\(outcome.policyType.rawValue), \(outcome.failure?.rawValue ?? "")): \(outcome.failureDetail ?? "")")
                    await tlsReportSink?.record(outcome)
                }
                guard !decision.targets.isEmpty else {
                    let reply = decision.failureReply ?? "451 4.7.5 no usable mail host for \(domain)"
                    logger.info("\(domain): \(reply)")
                    for claim in claims {
                        await record(claim.recipients.map { r in (r.id, decision.permanent
                            ? .failed(reply: reply, host: nil)
                            : .deferred(reply: reply, host: nil, nextAttempt: nextAttempt(for: r, message: claim.message))) })
                    }
                    continue
                }
                await deliver(claims, to: decision.targets, domain: domain, configuration: client)
            }
        }
    }

    private func deliver(_ claims: [QueueClaim], to targets: [PolicedTarget], domain: String,
                         configuration client: SMTPClientConfiguration) async {
        var endpoints: [(host: String, address: String, port: Int, policy: HostTLSPolicy)] = []
        for policed in targets {
            for address in policed.target.addresses {
                endpoints.append((policed.target.hostname, address, policed.target.port, policed.policy))
            }
        }
        var nextEndpoint = 0
        // A session the previous pass left open to the same hosts, the same way, comes first.
        let cacheKey = connectionKey(claims.first?.domain ?? "", endpoints: endpoints,
                                     demand: claims.first?.message.tlsDemand ?? .standard, configuration: client)
        var connection: SMTPClientConnection? = connections.take(cacheKey)
        var lastError = "451 4.4.1 no answer from any mail host"
        var allPermanent = true

        for claim in claims {
            let bytes: [UInt8]
            do {
                bytes = try await store.queuedMessageBytes(blobID: claim.message.blobID)
            } catch {
                logger.error("queued message \(claim.message.id): cannot read its bytes: \(error)")
                await record(claim.recipients.map { r in
                    (r.id, .deferred(reply: "451 4.3.0 local error reading the message", host: nil,
                                     nextAttempt: nextAttempt(for: r, message: claim.message))) })
                continue
            }
            let envelope = SMTPClientEnvelope(
                sender: claim.message.sender,
                recipients: claim.recipients.map { SMTPClientRecipient(address: $0.address, notify: $0.notify?.parameterValue,
                                                                       originalRecipient: $0.originalRecipient) },
                requiresSMTPUTF8: claim.message.requiresSMTPUTF8, has8BitData: claim.message.has8BitData,
                envelopeID: claim.message.envelopeID, ret: claim.message.ret?.rawValue,
                requireTLS: claim.message.tlsDemand == .requireTLS)
            var done = false
            while !done {
                var usable = false
                if let current = connection { usable = await current.isUsable }
                if !usable {
                    if let old = connection { await old.close() }
                    connection = nil
                    while connection == nil, nextEndpoint < endpoints.count {
                        let endpoint = endpoints[nextEndpoint]
                        nextEndpoint += 1
                        var hostClient = client
                        hostClient.tlsPolicy = endpoint.policy
                        hostClient.trustRoots = trustRoots
                        do {
                            let opened = try await SMTPClientConnection.open(hostname: endpoint.host, address: endpoint.address,
                                                                             port: endpoint.port, configuration: hostClient, group: group)
                            connection = opened
                            await reportTLS(domain: domain, host: endpoint.host, address: endpoint.address,
                                            policy: endpoint.policy, info: await opened.tlsInfo, source: opened.localAddress)
                        } catch let error as SMTPClientError {
                            if case .tlsPolicy(let type, let why) = error {
                                await reportTLS(domain: domain, host: endpoint.host, address: endpoint.address, policy: endpoint.policy,
                                                info: SMTPClientTLSInfo(version: nil, verification: .none, failure: type, failureDetail: why))
                            }
                            lastError = Self.replyText(error, host: endpoint.host)
                            if !error.isPermanent { allPermanent = false }
                            logger.info("\(endpoint.host) [\(endpoint.address)]: \(error)")
                        } catch {
                            lastError = "451 4.4.1 \(endpoint.host): \(error)"
                            allPermanent = false
                        }
                    }
                }
                guard let active = connection else {
                    // Every host failed: retry later (or fail if each one refused us for good).
                    let reply = lastError
                    let permanent = allPermanent && !endpoints.isEmpty
                    await record(claim.recipients.map { r in
                        (r.id, permanent ? .failed(reply: reply, host: nil)
                            : .deferred(reply: reply, host: nil, nextAttempt: nextAttempt(for: r, message: claim.message))) })
                    done = true
                    break
                }
                do {
                    let results = try await active.send(envelope, message: bytes)
                    var outcomes: [(Int64, QueueAttemptOutcome)] = []
                    for (recipient, result) in zip(claim.recipients, results) {
                        let text = result.reply.description
                        let host = active.remoteHost
                        if result.reply.isPositive {
                            outcomes.append((recipient.id, .delivered(reply: text, host: host)))
                        } else if result.reply.isPermanent {
                            outcomes.append((recipient.id, .failed(reply: text, host: host)))
                        } else {
                            outcomes.append((recipient.id, .deferred(reply: text, host: host,
                                                                     nextAttempt: nextAttempt(for: recipient, message: claim.message))))
                        }
                    }
                    await record(outcomes)
                    let tls = "policy=\(active.policyLabel) " + (await active.tlsInfo?.logText ?? "tls=none")
                    let delivered = results.filter(\.reply.isPositive).count
                    if delivered > 0 {
                        logger.info("delivered message \(claim.message.id) to \(active.remoteHost) [\(active.remoteAddress)] for \(delivered) recipient(s) \(tls)")
                    }
                    // RFC 3461 §5.2.2: a server without DSN cannot report success; we do, as "relayed".
                    if !(await active.extensions.has("DSN")) {
                        await reportSuccess(claim.message, zip(claim.recipients, results).filter { $0.1.reply.isPositive }
                            .map { ($0.0, $0.1.reply.description) }, action: .relayed, host: active.remoteHost)
                    }
                    done = true
                } catch {
                    // The connection died mid-transaction: no final reply was read, so nothing
                    // counts as delivered; try the next host with this message.
                    lastError = Self.replyText(error as? SMTPClientError ?? .connectionClosed("\(error)"), host: active.remoteHost)
                    allPermanent = false
                    logger.info("\(active.remoteHost): \(error)")
                    await active.close()
                    connection = nil
                }
            }
        }
        if let connection { await connections.park(connection, key: cacheKey) }
    }

    /// What a kept session must match to be reused: the destination (its route), every host and
    /// address it may have reached with the TLS policy each was held to (DANE, MTA-STS, overrides),
    /// the messages' own TLS demand (REQUIRETLS), the source addresses, and how it was set up (TLS
    /// required, credentials) — a session never carries a message with weaker TLS than it demands.
    func connectionKey(_ domain: String, endpoints: [(host: String, address: String, port: Int, policy: HostTLSPolicy)],
                       demand: MessageTLSDemand, configuration client: SMTPClientConfiguration) -> String {
        var key = destinationKey(domain) + "|\(demand.rawValue)"
        for endpoint in endpoints {
            key += "|\(endpoint.host)[\(endpoint.address)]:\(endpoint.port)/\(endpoint.policy.requirement)/\(endpoint.policy.enforced)"
        }
        key += "|\(client.sourceIPv4 ?? "")|\(client.sourceIPv6 ?? "")|\(client.useStartTLS)|\(client.requireTLS)"
        key += "|\(client.authentication?.username ?? "")"
        return key
    }

    /// One TLS-RPT outcome (RFC 8460 §4) for a session opened, or abandoned for its policy.
    private func reportTLS(domain: String, host: String, address: String, policy: HostTLSPolicy, info: SMTPClientTLSInfo?,
                           source: String? = nil) async {
        guard let sink = tlsReportSink, policy.requirement != .plaintextOnly else { return }
        var failure = info?.failure
        var detail = info?.failureDetail
        if info == nil, failure == nil {
            failure = .starttlsNotSupported
            detail = "\(host) does not offer STARTTLS"
        }
        let policyDomain = policy.policyType == .tlsa ? host : domain
        await sink.record(TLSSessionOutcome(recipientDomain: domain, policyType: policy.policyType, policyStrings: policy.policyStrings,
                                            policyDomain: policyDomain, mxHostPattern: policy.mxHostPattern, receivingMXHostname: host,
                                            receivingIP: address, sendingMTAIP: source, failure: failure, failureDetail: detail,
                                            date: clock()))
    }

    static func replyText(_ error: SMTPClientError, host: String) -> String {
        switch error {
        case .rejected(_, let reply): return "\(reply.description) (from \(host))"
        case .tlsPolicy(_, let why): return "451 4.7.5 \(host): TLS policy not met: \(why)"
        default: return "451 4.4.2 \(host): \(error)"
        }
    }

    func nextAttempt(for recipient: QueuedRecipient, message: QueuedMessage) -> Date {
        let delay = configuration.retry.delay(afterAttempts: recipient.attempts + 1)
        return min(clock().addingTimeInterval(delay), message.expires)
    }

    private func record(_ outcomes: [(Int64, QueueAttemptOutcome)]) async {
        guard !outcomes.isEmpty else { return }
        do {
            try await store.recordQueueAttempt(owner: owner, outcomes.map { (recipientID: $0.0, outcome: $0.1) }, now: clock())
        } catch {
            logger.error("cannot record delivery outcomes: \(error)")
        }
    }

    // MARK: Local delivery

    private func deliverLocally(_ claim: QueueClaim) async -> [(Int64, QueueAttemptOutcome)] {
        let message = claim.message
        var outcomes: [(Int64, QueueAttemptOutcome)] = []
        let bytes: [UInt8]
        do {
            bytes = try await store.queuedMessageBytes(blobID: message.blobID)
        } catch {
            return claim.recipients.map { ($0.id, .deferred(reply: "451 4.3.0 local error reading the message", host: nil,
                                                            nextAttempt: nextAttempt(for: $0, message: message))) }
        }
        for recipient in claim.recipients {
            let resolution: RecipientResolution
            do {
                resolution = try await store.resolveRecipient(recipient.address)
            } catch {
                outcomes.append((recipient.id, .deferred(reply: "451 4.3.0 local lookup failed", host: nil,
                                                         nextAttempt: nextAttempt(for: recipient, message: message))))
                continue
            }
            // An alias's external members are not reached from here: the queue delivers locally
            // what was routed to a local domain (a DSN to a local sender, say).
            var accounts: [AccountRecord] = []
            if case .local(let found) = resolution { accounts = found }
            if case .forwarded(let found, _) = resolution { accounts = found }
            guard !accounts.isEmpty else {
                outcomes.append((recipient.id, .failed(reply: "550 5.1.1 <\(recipient.address)>: no such local user", host: configuration.hostname)))
                continue
            }
            // RFC 5321 §4.4: the final delivery adds Return-Path.
            let prefix = Array("Return-Path: <\(message.sender)>\r\n".utf8)
            let delivery = Delivery(message: .memory(bytes),
                                    recipients: accounts.map { DeliveryRecipient(accountID: $0.id, headerPrefix: prefix) },
                                    internalDate: clock())
            do {
                let result = try await store.deliver(delivery)
                let stored = result.outcomes.contains { if case .stored = $0 { return true } else { return false } }
                if stored {
                    outcomes.append((recipient.id, .delivered(reply: "250 2.0.0 delivered locally", host: configuration.hostname)))
                } else if result.outcomes.contains(.overQuota) {
                    outcomes.append((recipient.id, .deferred(reply: "452 4.2.2 mailbox full", host: configuration.hostname,
                                                             nextAttempt: nextAttempt(for: recipient, message: message))))
                } else {
                    outcomes.append((recipient.id, .failed(reply: "550 5.2.0 mailbox unavailable", host: configuration.hostname)))
                }
            } catch {
                outcomes.append((recipient.id, .deferred(reply: "451 4.3.0 local delivery failed: \(error)", host: nil,
                                                         nextAttempt: nextAttempt(for: recipient, message: message))))
            }
        }
        return outcomes
    }

    // MARK: DSNs

    /// Failure DSNs for recipients that failed and were not reported yet, plus delay warnings
    /// for messages past their warning time.
    func sendFailureReports() async throws {
        let now = clock()
        let builder = DSNBuilder(reportingMTA: configuration.hostname)
        for message in try await store.unreportedFailures() {
            let failed = message.recipients.filter { $0.state == .failed && !$0.reported }
            // RFC 3461 §4.1: no NOTIFY means FAILURE (our choice within §4.1's latitude: also DELAY).
            let wanted = failed.filter { ($0.notify ?? [.failure, .delay]).contains(.failure) }
            if !message.sender.isEmpty, !wanted.isEmpty {
                await sendDSN(builder: builder, message: message, recipients: wanted.map {
                    DSNRecipient(finalRecipient: $0.address, originalRecipient: DSNParameterSyntax.reportedOriginalRecipient($0.originalRecipient), action: .failed,
                                 diagnostic: $0.lastReply ?? "550 5.0.0 failed", remoteMTA: $0.remoteHost, lastAttempt: $0.lastAttempt)
                }, now: now, willRetryUntil: nil)
            }
            try await store.markQueueRecipientsReported(failed.map(\.id))
        }
        for message in try await store.queuedMessagesDueForDelayWarning(now: now) {
            let delayed = message.recipients.filter { $0.state == .deferred }
            guard !delayed.isEmpty else { continue }
            let wanted = delayed.filter { ($0.notify ?? [.failure, .delay]).contains(.delay) }
            if !message.sender.isEmpty, !wanted.isEmpty {
                await sendDSN(builder: builder, message: message, recipients: wanted.map {
                    DSNRecipient(finalRecipient: $0.address, originalRecipient: DSNParameterSyntax.reportedOriginalRecipient($0.originalRecipient), action: .delayed,
                                 diagnostic: $0.lastReply ?? "451 4.0.0 not yet delivered", remoteMTA: $0.remoteHost,
                                 lastAttempt: $0.lastAttempt)
                }, now: now, willRetryUntil: message.expires)
            }
            try await store.clearQueueDelayWarning(messageID: message.id)
        }
    }

    /// RFC 3461 §4.1 NOTIFY=SUCCESS: a report for recipients that asked for one.
    private func reportSuccess(_ message: QueuedMessage, _ delivered: [(QueuedRecipient, String)], action: DSNAction,
                               host: String?) async {
        let wanted = delivered.filter { $0.0.notify?.contains(.success) == true }
        guard !message.sender.isEmpty, !wanted.isEmpty else { return }
        await sendDSN(builder: DSNBuilder(reportingMTA: configuration.hostname), message: message, recipients: wanted.map {
            DSNRecipient(finalRecipient: $0.0.address, originalRecipient: DSNParameterSyntax.reportedOriginalRecipient($0.0.originalRecipient), action: action,
                         diagnostic: $0.1, remoteMTA: host, lastAttempt: clock())
        }, now: clock(), willRetryUntil: nil)
    }

    private func sendDSN(builder: DSNBuilder, message: QueuedMessage, recipients: [DSNRecipient], now: Date,
                         willRetryUntil: Date?) async {
        do {
            let original = try await store.queuedMessageBytes(blobID: message.blobID)
            let bytes = builder.build(to: message.sender, envelopeID: message.envelopeID.flatMap(DSNParameterSyntax.parseEnvelopeID), arrival: message.created,
                                      recipients: recipients, original: original, ret: message.ret,
                                      willRetryUntil: willRetryUntil, now: now, utf8: message.requiresSMTPUTF8)
            // The null reverse-path: a DSN is never answered by another DSN (RFC 3461 §6.2).
            _ = try await store.enqueue(await signed(QueueSubmission(sender: "", recipients: [QueueRecipientInput(address: message.sender)],
                                                                     message: .memory(bytes),
                                                                     requiresSMTPUTF8: message.requiresSMTPUTF8)),
                                        now: now, times: QueueTimes(lifetime: configuration.times.lifetime, delayWarning: nil))
            logger.info("queued a DSN (\(recipients.first?.action.rawValue ?? "")) to \(message.sender) for message \(message.id)")
        } catch {
            logger.error("cannot queue a DSN for message \(message.id): \(error)")
        }
    }
}

/// Lets `run()` sleep until a timeout or a signal, whichever first.
final class Wakeup: Sendable {
    private struct State {
        var pending = false
        var waiter: (id: UInt64, continuation: CheckedContinuation<Void, Never>)?
        var nextID: UInt64 = 0
    }
    private let state = NIOLockedValueBox(State())

    func signal() {
        let waiter: CheckedContinuation<Void, Never>? = state.withLockedValue { s in
            if let w = s.waiter { s.waiter = nil; return w.continuation }
            s.pending = true
            return nil
        }
        waiter?.resume()
    }

    private func fire(_ id: UInt64?) {
        let waiter: CheckedContinuation<Void, Never>? = state.withLockedValue { s in
            guard let w = s.waiter, id == nil || w.id == id else { return nil }
            s.waiter = nil
            return w.continuation
        }
        waiter?.resume()
    }

    func wait(timeout: Duration) async {
        let id: UInt64 = state.withLockedValue { s in s.nextID += 1; return s.nextID }
        let sleeper = Task { [self] in
            try? await Task.sleep(for: timeout)
            fire(id)
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now: Bool = state.withLockedValue { s in
                    if s.pending { s.pending = false; return true }
                    s.waiter = (id, continuation)
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            fire(nil)
        }
        sleeper.cancel()
    }
}
