// FacteurDNS: from a response message to an outcome. Follows CNAME chains inside a response and across
// responses (RFC 1034 §3.6.2, §4.3.2 step 3a), applies the RCODE to the end of the chain (RFC 6604 §2),
// tells NXDOMAIN from no data (RFC 2308 §2.1, §2.2) and derives the negative TTL from the SOA in the
// authority section (RFC 2308 §5). Shared by `DNSClient` and `StaticResolver`, so both behave alike.

enum DNSResponseInterpreter {
    /// What one response says about the question.
    enum Step {
        /// Records found (at the end of any chain inside this response).
        case answer(canonicalName: DNSName, records: [DNSResourceRecord])
        /// The response followed CNAMEs to a name it holds nothing for, and gave no SOA to say
        /// there is nothing: ask again for that name.
        case follow(DNSName)
    }

    /// Resolves `name`/`type` by asking `fetch` as often as the CNAME chain requires (at most
    /// `DNSLimits.maxCNAMEChain` links in all). `trustAuthenticData` false reports every answer
    /// as not authenticated, whatever the AD bit said.
    static func resolve(name: DNSName, type: DNSRecordType, trustAuthenticData: Bool,
                        fetch: (DNSQuestion) async throws(DNSError) -> DNSMessage) async throws(DNSError) -> DNSAnswer {
        var chain: [DNSResourceRecord] = []
        var seen: Set<DNSName> = [name]
        var authenticated = true
        var current = name
        // Each round either ends or adds at least one CNAME link, so the chain limit bounds the rounds.
        while true {
            let question = DNSQuestion(name: current, type: type)
            let message = try await fetch(question)
            authenticated = authenticated && message.header.authenticData && trustAuthenticData
            let step = try interpret(message, question: question, originalName: name, chain: &chain, seen: &seen,
                                     authenticated: authenticated)
            switch step {
            case .answer(let canonicalName, let records):
                return DNSAnswer(name: name, type: type, canonicalName: canonicalName, cnameChain: chain,
                                 records: records, authenticData: authenticated)
            case .follow(let target):
                current = target
            }
        }
    }

    /// Reads one response to `question`. Appends the CNAMEs it follows to `chain`; throws the
    /// negative outcomes and the RCODE errors.
    static func interpret(_ message: DNSMessage, question: DNSQuestion, originalName: DNSName,
                          chain: inout [DNSResourceRecord], seen: inout Set<DNSName>,
                          authenticated: Bool) throws(DNSError) -> Step {
        let rcode = message.responseCode
        switch rcode {
        case .noError, .nameError:
            break
        case .serverFailure:
            throw .serverFailure(question)
        case .refused:
            throw .refused(question)
        default:
            throw .otherResponseCode(question, rcode)
        }

        var current = question.name
        while true {
            let records = message.answers.filter {
                $0.dnsClass == question.dnsClass && $0.type == question.type && $0.name == current
            }
            if !records.isEmpty {
                // RFC 6604 §3: an answer present means the name exists, whatever the RCODE claimed.
                return .answer(canonicalName: current, records: records)
            }
            guard question.type != .cname,
                  let link = message.answers.first(where: { $0.type == .cname && $0.name == current }),
                  case .cname(let target) = link.data else {
                break
            }
            if seen.contains(target) {
                throw .cnameLoop(DNSQuestion(name: originalName, type: question.type))
            }
            chain.append(link)
            if chain.count > DNSLimits.maxCNAMEChain {
                throw .cnameChainTooLong(DNSQuestion(name: originalName, type: question.type))
            }
            seen.insert(target)
            current = target
        }

        let negative = DNSNegativeAnswer(name: originalName, type: question.type, canonicalName: current,
                                         negativeTTL: negativeTTL(message), authenticData: authenticated)
        if rcode == .nameError {
            throw .nxdomain(negative)
        }
        // NOERROR without the records. If a CNAME led to a name this response says nothing about
        // (no SOA), the server did not finish the chain: ask for the target ourselves.
        if current != question.name && negative.negativeTTL == nil {
            return .follow(current)
        }
        throw .noData(negative)
    }

    /// RFC 2308 §5: a negative answer lives min(SOA's own TTL, SOA MINIMUM) seconds.
    static func negativeTTL(_ message: DNSMessage) -> UInt32? {
        for record in message.authority {
            if case .soa(let soa) = record.data {
                return min(record.ttl, soa.minimum)
            }
        }
        return nil
    }
}
