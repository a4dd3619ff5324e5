// Reads the two things a server must know before choosing a certificate from a TLS ClientHello:
// the server name (SNI, RFC 6066 §3) and the offered application protocols (ALPN, RFC 7301 §3.1).
// The bytes are hostile: every length is checked against what is left, sizes are bounded, and
// anything unexpected gives up (`.notTLS` / `.malformed`) instead of trapping; the TLS library
// then sees the same bytes and refuses them itself.

/// What a ClientHello says about the name and protocols the client wants.
public struct TLSClientHelloInfo: Sendable, Equatable {
    /// The `host_name` entry of the server_name extension, lowercased; nil when absent.
    public var serverName: String?
    /// The ALPN protocol names offered, in the client's order (empty when the extension is absent).
    public var applicationProtocols: [String]

    public init(serverName: String?, applicationProtocols: [String]) {
        self.serverName = serverName
        self.applicationProtocols = applicationProtocols
    }
}

public enum TLSClientHelloParser {
    public enum Result: Sendable, Equatable {
        /// The first record header or handshake header is not complete yet.
        case needMoreData
        case clientHello(TLSClientHelloInfo)
        /// The bytes are not a TLS handshake record (plaintext, SSLv2, garbage).
        case notTLS
        /// Looked like TLS but a length or field is wrong, or it is bigger than `maxClientHelloLength`.
        case malformed
    }

    /// A ClientHello larger than this is refused (RFC 8446 §4.1.2 messages are a few KiB even with
    /// post-quantum key shares; the TLS library allows one record, 16 KiB).
    public static let maxClientHelloLength = 16 * 1024
    /// The handshake message may be split over several records; stop looking after this many bytes.
    public static let maxBufferedBytes = maxClientHelloLength + 8 * 5 + 1024

    private static let handshakeRecord: UInt8 = 22       // RFC 8446 §5.1 ContentType.handshake
    private static let clientHelloType: UInt8 = 1        // HandshakeType.client_hello
    private static let serverNameExtension: UInt16 = 0   // RFC 6066 §3
    private static let alpnExtension: UInt16 = 16        // RFC 7301 §3.1
    private static let maxRecordLength = 16_384 + 256    // TLSPlaintext.length limit plus slack

    /// Parses the start of a TLS connection: one or more handshake records carrying a ClientHello.
    public static func parse(_ bytes: [UInt8]) -> Result {
        // Reassemble the handshake message from consecutive records (RFC 8446 §5.1 allows fragmenting).
        var message: [UInt8] = []
        var offset = 0
        var expected: Int?
        while true {
            if let expected, message.count >= expected { break }
            guard bytes.count - offset >= 5 else { return offset == 0 && bytes.first.map({ $0 != handshakeRecord }) == true ? .notTLS : .needMoreData }
            guard bytes[offset] == handshakeRecord, bytes[offset + 1] == 3 else { return offset == 0 ? .notTLS : .malformed }
            let length = Int(bytes[offset + 3]) << 8 | Int(bytes[offset + 4])
            guard length > 0, length <= maxRecordLength else { return .malformed }
            let available = min(length, bytes.count - offset - 5)
            message.append(contentsOf: bytes[(offset + 5)..<(offset + 5 + available)])
            if expected == nil, message.count >= 4 {
                guard message[0] == clientHelloType else { return .malformed }
                let bodyLength = Int(message[1]) << 16 | Int(message[2]) << 8 | Int(message[3])
                guard bodyLength <= maxClientHelloLength else { return .malformed }
                expected = bodyLength + 4
            }
            if available < length {
                // The record is not complete yet; is what we have already enough?
                if let expected, message.count >= expected { break }
                return .needMoreData
            }
            offset += 5 + length
            if message.count > maxClientHelloLength + 4 { return .malformed }
        }
        guard let expected else { return .needMoreData }
        return parseClientHelloBody(message[4..<expected])
    }

    /// RFC 8446 §4.1.2 (and RFC 5246 §7.4.1.2, same layout up to the extensions):
    ///   legacy_version(2) random(32) legacy_session_id<0..32> cipher_suites<2..2^16-2>
    ///   legacy_compression_methods<1..2^8-1> extensions<8..2^16-1>
    static func parseClientHelloBody(_ body: ArraySlice<UInt8>) -> Result {
        var reader = Reader(body)
        guard reader.skip(2 + 32),
              let sessionID = reader.readLength8(), sessionID <= 32, reader.skip(sessionID),
              let suites = reader.readLength16(), reader.skip(suites),
              let compression = reader.readLength8(), reader.skip(compression)
        else { return .malformed }
        var info = TLSClientHelloInfo(serverName: nil, applicationProtocols: [])
        // A ClientHello without extensions (very old clients) has neither SNI nor ALPN.
        guard !reader.isAtEnd else { return .clientHello(info) }
        guard let extensionsLength = reader.readLength16(), var extensions = reader.subreader(extensionsLength) else { return .malformed }
        while !extensions.isAtEnd {
            guard let type = extensions.readUInt16(), let length = extensions.readLength16(),
                  var data = extensions.subreader(length) else { return .malformed }
            switch type {
            case serverNameExtension:
                // ServerNameList: server_name_list<1..2^16-1> of { name_type(1) HostName<1..2^16-1> }.
                guard let listLength = data.readLength16(), var list = data.subreader(listLength) else { return .malformed }
                while !list.isAtEnd {
                    guard let nameType = list.readUInt8(), let nameLength = list.readLength16(),
                          let name = list.read(nameLength) else { return .malformed }
                    // RFC 6066 §3: host_name(0) is the only type; at most one per type.
                    if nameType == 0, info.serverName == nil {
                        guard name.count <= 253, name.allSatisfy({ $0 > 32 && $0 < 127 }) else { return .malformed }
                        info.serverName = String(decoding: name, as: UTF8.self).lowercased()
                    }
                }
            case alpnExtension:
                // ProtocolNameList: protocol_name_list<2..2^16-1> of ProtocolName<1..2^8-1>.
                guard let listLength = data.readLength16(), var list = data.subreader(listLength) else { return .malformed }
                while !list.isAtEnd {
                    guard let nameLength = list.readLength8(), nameLength > 0, let name = list.read(nameLength) else { return .malformed }
                    if info.applicationProtocols.count < 32 {
                        info.applicationProtocols.append(String(decoding: name, as: UTF8.self))
                    }
                }
            default:
                break
            }
        }
        return .clientHello(info)
    }

    /// A bounds-checked cursor: every read returns nil rather than going past the end.
    struct Reader {
        private var bytes: ArraySlice<UInt8>

        init(_ bytes: ArraySlice<UInt8>) { self.bytes = bytes }

        var isAtEnd: Bool { bytes.isEmpty }

        mutating func skip(_ count: Int) -> Bool {
            guard count >= 0, count <= bytes.count else { return false }
            bytes = bytes.dropFirst(count)
            return true
        }

        mutating func read(_ count: Int) -> ArraySlice<UInt8>? {
            guard count >= 0, count <= bytes.count else { return nil }
            defer { bytes = bytes.dropFirst(count) }
            return bytes.prefix(count)
        }

        mutating func readUInt8() -> UInt8? { read(1)?.first }

        mutating func readUInt16() -> UInt16? {
            guard let two = read(2) else { return nil }
            return UInt16(two[two.startIndex]) << 8 | UInt16(two[two.startIndex + 1])
        }

        mutating func readLength8() -> Int? { readUInt8().map(Int.init) }
        mutating func readLength16() -> Int? { readUInt16().map(Int.init) }

        mutating func subreader(_ count: Int) -> Reader? { read(count).map(Reader.init) }
    }
}
