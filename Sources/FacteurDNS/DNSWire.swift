// FacteurDNS: the DNS wire format, RFC 1035 §4.1 (header, question, resource records), §4.1.4 (name
// compression: followed on decode, never produced on encode), §3.3 RDATA, RFC 6891 §6.1 (the OPT
// record) and RFC 4035 §3.2 (AD, CD). Decoding hostile bytes throws `DNSWireError`; it never traps,
// never loops (pointers must go backwards, jumps are counted) and allocates only for bytes present.

/// Why a message could not be decoded or encoded.
public enum DNSWireError: Error, Equatable, Sendable {
    /// The message ended in the middle of a field.
    case truncated
    /// A compression pointer pointed forwards, at itself, or outside the message.
    case badPointer
    /// More compression jumps than a name can need (RFC 1035 §4.1.4).
    case pointerLoop
    /// A label type other than 00 (normal) and 11 (pointer): RFC 6891 §5 retired the others.
    case badLabelType
    /// A decoded name broke the RFC 1035 §2.3.4 limits.
    case badName(DNSNameError)
    /// An RDATA did not have the length its type requires, or its fields did not fill it exactly.
    case badRData(DNSRecordType)
    /// A section announced more records than FacteurDNS accepts.
    case tooManyRecords
    /// More than one OPT record, or one outside the additional section (RFC 6891 §6.1.1).
    case badOPT
    /// Bytes left over after the last section.
    case trailingBytes
    /// Encoding would exceed 65535 octets, or a field would exceed its width.
    case messageTooLarge
}

// MARK: - Decoding

extension DNSMessage {
    /// Decodes a whole message.
    public init(decoding bytes: [UInt8]) throws(DNSWireError) {
        var reader = DNSReader(bytes: bytes)
        let id = try reader.readUInt16()
        let flags = try reader.readUInt16()
        let counts = [try reader.readUInt16(), try reader.readUInt16(), try reader.readUInt16(), try reader.readUInt16()]
        // RFC 1035 §4.1.1 flag layout: QR Opcode(4) AA TC RD RA Z AD CD RCODE(4).
        let header = DNSHeader(
            id: id,
            isResponse: flags & 0x8000 != 0,
            opcode: UInt8((flags >> 11) & 0x0F),
            authoritativeAnswer: flags & 0x0400 != 0,
            truncated: flags & 0x0200 != 0,
            recursionDesired: flags & 0x0100 != 0,
            recursionAvailable: flags & 0x0080 != 0,
            authenticData: flags & 0x0020 != 0,
            checkingDisabled: flags & 0x0010 != 0,
            rcodeLow: UInt8(flags & 0x000F))
        for count in counts where Int(count) > DNSLimits.maxRecordsPerSection {
            throw .tooManyRecords
        }
        var questions: [DNSQuestion] = []
        for _ in 0..<counts[0] {
            let name = try reader.readName()
            let type = DNSRecordType(rawValue: try reader.readUInt16())
            let dnsClass = DNSClass(rawValue: try reader.readUInt16())
            questions.append(DNSQuestion(name: name, type: type, dnsClass: dnsClass))
        }
        var edns: EDNSOptions?
        var sections: [[DNSResourceRecord]] = [[], [], []]
        for section in 0..<3 {
            for _ in 0..<counts[section + 1] {
                let record = try reader.readRecord()
                switch record {
                case .record(let rr):
                    sections[section].append(rr)
                case .opt(let options):
                    guard section == 2, edns == nil else { throw .badOPT }
                    edns = options
                }
            }
        }
        guard reader.isAtEnd else { throw .trailingBytes }
        self.init(header: header, questions: questions, answers: sections[0], authority: sections[1],
                  additional: sections[2], edns: edns)
    }
}

/// A cursor over a message's bytes; every read checks the bounds first.
struct DNSReader {
    let bytes: [UInt8]
    private(set) var offset = 0

    init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    var isAtEnd: Bool { offset == bytes.count }

    mutating func readUInt8() throws(DNSWireError) -> UInt8 {
        guard offset < bytes.count else { throw .truncated }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func readUInt16() throws(DNSWireError) -> UInt16 {
        guard bytes.count - offset >= 2 else { throw .truncated }
        defer { offset += 2 }
        return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    mutating func readUInt32() throws(DNSWireError) -> UInt32 {
        guard bytes.count - offset >= 4 else { throw .truncated }
        defer { offset += 4 }
        return bytes[offset..<(offset + 4)].reduce(0) { $0 << 8 | UInt32($1) }
    }

    mutating func readBytes(_ count: Int) throws(DNSWireError) -> [UInt8] {
        guard count >= 0, bytes.count - offset >= count else { throw .truncated }
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }

    /// A possibly compressed name (RFC 1035 §4.1.4). A pointer must point strictly before the
    /// position it was read at, so each jump goes backwards and decoding always ends; the jump
    /// count is capped as well, and the name's length is checked as labels accumulate.
    mutating func readName() throws(DNSWireError) -> DNSName {
        var labels: [[UInt8]] = []
        var wireLength = 1
        var position = offset
        var resumeAt: Int? // where the reader continues once the name is done, after the first jump
        var jumps = 0
        while true {
            guard position < bytes.count else { throw .truncated }
            let length = bytes[position]
            switch length & 0xC0 {
            case 0x00:
                if length == 0 {
                    offset = resumeAt ?? (position + 1)
                    do {
                        return try DNSName(labels: labels)
                    } catch {
                        throw .badName(error)
                    }
                }
                let start = position + 1
                let end = start + Int(length)
                guard end <= bytes.count else { throw .truncated }
                wireLength += 1 + Int(length)
                guard wireLength <= DNSLimits.maxNameLength else { throw .badName(.nameTooLong) }
                labels.append(Array(bytes[start..<end]))
                position = end
            case 0xC0:
                guard position + 1 < bytes.count else { throw .truncated }
                let target = Int(length & 0x3F) << 8 | Int(bytes[position + 1])
                guard target < position else { throw .badPointer }
                jumps += 1
                guard jumps <= DNSLimits.maxCompressionJumps else { throw .pointerLoop }
                if resumeAt == nil { resumeAt = position + 2 }
                position = target
            default:
                throw .badLabelType
            }
        }
    }

    enum DecodedRecord {
        case record(DNSResourceRecord)
        case opt(EDNSOptions)
    }

    mutating func readRecord() throws(DNSWireError) -> DecodedRecord {
        let name = try readName()
        let type = DNSRecordType(rawValue: try readUInt16())
        let classValue = try readUInt16()
        let ttl = try readUInt32()
        let rdLength = Int(try readUInt16())
        guard bytes.count - offset >= rdLength else { throw .truncated }
        let end = offset + rdLength

        if type == .opt {
            // RFC 6891 §6.1.2: owner is the root; CLASS is the payload size; TTL holds the extended
            // RCODE, the version and the DO bit; RDATA is a list of {code, length, data}.
            guard name.isRoot else { throw .badOPT }
            var options: [EDNSOption] = []
            while offset < end {
                let code = try readUInt16()
                let length = Int(try readUInt16())
                guard end - offset >= length else { throw .badRData(.opt) }
                options.append(EDNSOption(code: code, data: try readBytes(length)))
            }
            return .opt(EDNSOptions(udpPayloadSize: classValue, extendedRCode: UInt8(ttl >> 24),
                                    version: UInt8((ttl >> 16) & 0xFF), dnssecOK: ttl & 0x8000 != 0,
                                    options: options))
        }

        let data = try readRData(type: type, end: end)
        guard offset == end else { throw .badRData(type) }
        // RFC 2181 §8: a TTL with the most significant bit set is treated as zero.
        let effectiveTTL = ttl > DNSLimits.maxTTL ? 0 : ttl
        return .record(DNSResourceRecord(name: name, ttl: effectiveTTL, data: data,
                                         dnsClass: DNSClass(rawValue: classValue)))
    }

    /// Reads one RDATA ending at `end`; names inside it may point anywhere earlier in the message.
    private mutating func readRData(type: DNSRecordType, end: Int) throws(DNSWireError) -> DNSRecordData {
        let length = end - offset
        func name(_ reader: inout DNSReader) throws(DNSWireError) -> DNSName {
            let result = try reader.readName()
            guard reader.offset <= end else { throw .badRData(type) }
            return result
        }
        switch type {
        case .a:
            guard length == 4, let address = IPv4Address(bytes: try readBytes(4)) else { throw .badRData(type) }
            return .a(address)
        case .aaaa:
            guard length == 16, let address = IPv6Address(bytes: try readBytes(16)) else { throw .badRData(type) }
            return .aaaa(address)
        case .ns:
            return .ns(try name(&self))
        case .cname:
            return .cname(try name(&self))
        case .ptr:
            return .ptr(try name(&self))
        case .mx:
            guard length >= 3 else { throw .badRData(type) }
            let preference = try readUInt16()
            return .mx(MXRecord(preference: preference, exchange: try name(&self)))
        case .txt:
            var strings: [[UInt8]] = []
            while offset < end {
                let count = Int(try readUInt8())
                guard end - offset >= count else { throw .badRData(type) }
                strings.append(try readBytes(count))
            }
            return .txt(TXTRecord(strings: strings))
        case .soa:
            let mname = try name(&self)
            let rname = try name(&self)
            guard end - offset == 20 else { throw .badRData(type) }
            return .soa(SOARecord(mname: mname, rname: rname, serial: try readUInt32(), refresh: try readUInt32(),
                                  retry: try readUInt32(), expire: try readUInt32(), minimum: try readUInt32()))
        case .tlsa:
            guard length >= 3 else { throw .badRData(type) }
            return .tlsa(TLSARecord(certificateUsage: try readUInt8(), selector: try readUInt8(),
                                    matchingType: try readUInt8(), certificateAssociationData: try readBytes(length - 3)))
        default:
            return .unknown(type: type, rdata: try readBytes(length))
        }
    }
}

// MARK: - Encoding

extension DNSMessage {
    /// Encodes the message without name compression (RFC 1035 §4.1.4 allows either).
    public func encoded() throws(DNSWireError) -> [UInt8] {
        var writer = DNSWriter()
        writer.writeUInt16(header.id)
        var flags: UInt16 = 0
        if header.isResponse { flags |= 0x8000 }
        flags |= UInt16(header.opcode & 0x0F) << 11
        if header.authoritativeAnswer { flags |= 0x0400 }
        if header.truncated { flags |= 0x0200 }
        if header.recursionDesired { flags |= 0x0100 }
        if header.recursionAvailable { flags |= 0x0080 }
        if header.authenticData { flags |= 0x0020 }
        if header.checkingDisabled { flags |= 0x0010 }
        flags |= UInt16(header.rcodeLow & 0x0F)
        writer.writeUInt16(flags)
        let additionalCount = additional.count + (edns == nil ? 0 : 1)
        for count in [questions.count, answers.count, authority.count, additionalCount] {
            guard count <= Int(UInt16.max) else { throw .messageTooLarge }
            writer.writeUInt16(UInt16(count))
        }
        for question in questions {
            writer.writeName(question.name)
            writer.writeUInt16(question.type.rawValue)
            writer.writeUInt16(question.dnsClass.rawValue)
        }
        for record in answers + authority + additional {
            try writer.writeRecord(record)
        }
        if let edns {
            try writer.writeOPT(edns)
        }
        guard writer.bytes.count <= DNSLimits.maxMessageSize else { throw .messageTooLarge }
        return writer.bytes
    }
}

struct DNSWriter {
    var bytes: [UInt8] = []

    mutating func writeUInt16(_ value: UInt16) {
        bytes.append(UInt8(value >> 8))
        bytes.append(UInt8(value & 0xFF))
    }

    mutating func writeUInt32(_ value: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) {
            bytes.append(UInt8((value >> UInt32(shift)) & 0xFF))
        }
    }

    /// Names are valid by construction (DNSName checks the limits), so this cannot fail.
    mutating func writeName(_ name: DNSName) {
        for label in name.labels {
            bytes.append(UInt8(label.count))
            bytes.append(contentsOf: label)
        }
        bytes.append(0)
    }

    mutating func writeRecord(_ record: DNSResourceRecord) throws(DNSWireError) {
        writeName(record.name)
        writeUInt16(record.type.rawValue)
        writeUInt16(record.dnsClass.rawValue)
        writeUInt32(record.ttl)
        try writeWithLength(type: record.type) { (writer: inout DNSWriter) throws(DNSWireError) in
            switch record.data {
            case .a(let address): writer.bytes += address.bytes
            case .aaaa(let address): writer.bytes += address.bytes
            case .ns(let name), .cname(let name), .ptr(let name): writer.writeName(name)
            case .mx(let mx):
                writer.writeUInt16(mx.preference)
                writer.writeName(mx.exchange)
            case .txt(let txt):
                for string in txt.strings {
                    guard string.count <= 255 else { throw .badRData(.txt) }
                    writer.bytes.append(UInt8(string.count))
                    writer.bytes += string
                }
            case .soa(let soa):
                writer.writeName(soa.mname)
                writer.writeName(soa.rname)
                for value in [soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum] {
                    writer.writeUInt32(value)
                }
            case .tlsa(let tlsa):
                writer.bytes += [tlsa.certificateUsage, tlsa.selector, tlsa.matchingType]
                writer.bytes += tlsa.certificateAssociationData
            case .unknown(_, let rdata):
                writer.bytes += rdata
            }
        }
    }

    /// RFC 6891 §6.1.2-6.1.3: the OPT pseudo-record.
    mutating func writeOPT(_ edns: EDNSOptions) throws(DNSWireError) {
        writeName(.root)
        writeUInt16(DNSRecordType.opt.rawValue)
        writeUInt16(edns.udpPayloadSize)
        var ttl = UInt32(edns.extendedRCode) << 24 | UInt32(edns.version) << 16
        if edns.dnssecOK { ttl |= 0x8000 }
        writeUInt32(ttl)
        try writeWithLength(type: .opt) { (writer: inout DNSWriter) throws(DNSWireError) in
            for option in edns.options {
                guard option.data.count <= Int(UInt16.max) else { throw .messageTooLarge }
                writer.writeUInt16(option.code)
                writer.writeUInt16(UInt16(option.data.count))
                writer.bytes += option.data
            }
        }
    }

    /// Writes a 2-octet RDLENGTH, then the RDATA, then patches the length.
    private mutating func writeWithLength(type: DNSRecordType,
                                          _ body: (inout DNSWriter) throws(DNSWireError) -> Void) throws(DNSWireError) {
        let lengthAt = bytes.count
        writeUInt16(0)
        try body(&self)
        let length = bytes.count - lengthAt - 2
        guard length <= Int(UInt16.max) else { throw .messageTooLarge }
        bytes[lengthAt] = UInt8(length >> 8)
        bytes[lengthAt + 1] = UInt8(length & 0xFF)
    }
}
