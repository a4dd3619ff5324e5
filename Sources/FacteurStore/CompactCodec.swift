// CompactCodec: a small self-describing binary form for Codable values, used to persist the
// parsed `MessageSummary` of every blob. Measured on this machine (release build), JSONEncoder
// took ~60 µs to encode and ~70 µs to decode a typical multipart summary: a fifth of the
// delivery CPU budget, and a cost IMAP would pay again on every FETCH BODYSTRUCTURE. This form
// keeps the keys (so fields added to the summary types later still round-trip, and fields
// missing from old rows decode as absent) but drops JSON's text escaping and number parsing.
//
// Layout: one format byte (`formatVersion`), then one value:
//   0 nil · 1 false · 2 true · 3 signed int (zigzag varint) · 4 unsigned int (varint)
//   5 double (8 bytes, little-endian bit pattern) · 6 string (varint length, UTF-8)
//   7 array (varint count, values) · 8 keyed (varint count, then per entry: varint key length,
//   key UTF-8, value)
// Coding paths are not tracked (errors name the key only): the values are our own types.

import Foundation

enum CompactCodec {
    static let formatVersion: UInt8 = 1
    /// Stored data is ours, but a corrupt row must not blow the stack.
    static let maxDepth = 256

    static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = CompactEncoder()
        try value.encode(to: encoder)
        var out: [UInt8] = [formatVersion]
        out.reserveCapacity(512)
        write(encoder.result ?? .keyed(KeyedStorage()), into: &out)
        return out
    }

    static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        guard bytes.first == formatVersion else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "unknown summary format"))
        }
        var reader = Reader(bytes: bytes, position: 1)
        let tree = try reader.readValue(depth: 0)
        return try T(from: CompactDecoder(value: tree))
    }

    // MARK: Writing

    fileprivate static func write(_ value: EncodedValue, into out: inout [UInt8]) {
        switch value {
        case .null: out.append(0)
        case .bool(let b): out.append(b ? 2 : 1)
        case .int(let i):
            out.append(3)
            writeVarint(UInt64(bitPattern: (i << 1) ^ (i >> 63)), into: &out)
        case .uint(let u):
            out.append(4)
            writeVarint(u, into: &out)
        case .double(let d):
            out.append(5)
            var bits = d.bitPattern.littleEndian
            withUnsafeBytes(of: &bits) { out.append(contentsOf: $0) }
        case .string(let s):
            out.append(6)
            writeString(s, into: &out)
        case .unkeyed(let storage):
            out.append(7)
            writeVarint(UInt64(storage.items.count), into: &out)
            for item in storage.items { write(item, into: &out) }
        case .keyed(let storage):
            out.append(8)
            writeVarint(UInt64(storage.entries.count), into: &out)
            for (key, item) in storage.entries {
                writeString(key, into: &out)
                write(item, into: &out)
            }
        case .deferred(let encoder):
            write(encoder.result ?? .keyed(KeyedStorage()), into: &out)
        }
    }

    private static func writeString(_ s: String, into out: inout [UInt8]) {
        var s = s
        s.withUTF8 { utf8 in
            writeVarint(UInt64(utf8.count), into: &out)
            out.append(contentsOf: utf8)
        }
    }

    private static func writeVarint(_ value: UInt64, into out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    // MARK: Reading

    fileprivate struct Reader {
        let bytes: [UInt8]
        var position: Int

        mutating func readByte() throws -> UInt8 {
            guard position < bytes.count else { throw CompactCodec.corrupt("truncated") }
            defer { position += 1 }
            return bytes[position]
        }

        mutating func readVarint() throws -> UInt64 {
            var result: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                let byte = try readByte()
                guard shift < 64 else { throw CompactCodec.corrupt("varint too long") }
                result |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return result }
                shift += 7
            }
        }

        mutating func readCount() throws -> Int {
            let n = try readVarint()
            // Every element takes at least one byte, so a count beyond the remaining bytes is corrupt.
            guard n <= UInt64(bytes.count - position) else { throw CompactCodec.corrupt("bad length") }
            return Int(n)
        }

        mutating func readString() throws -> String {
            let n = try readCount()
            defer { position += n }
            return String(decoding: bytes[position ..< position + n], as: UTF8.self)
        }

        mutating func readValue(depth: Int) throws -> DecodedValue {
            guard depth < CompactCodec.maxDepth else { throw CompactCodec.corrupt("too deep") }
            switch try readByte() {
            case 0: return .null
            case 1: return .bool(false)
            case 2: return .bool(true)
            case 3:
                let z = try readVarint()
                return .int(Int64(bitPattern: (z >> 1) ^ (0 &- (z & 1))))
            case 4: return .uint(try readVarint())
            case 5:
                guard bytes.count - position >= 8 else { throw CompactCodec.corrupt("truncated double") }
                var bits: UInt64 = 0
                for i in 0 ..< 8 { bits |= UInt64(bytes[position + i]) << (8 * UInt64(i)) }
                position += 8
                return .double(Double(bitPattern: bits))
            case 6: return .string(try readString())
            case 7:
                let n = try readCount()
                var items: [DecodedValue] = []
                items.reserveCapacity(n)
                for _ in 0 ..< n { items.append(try readValue(depth: depth + 1)) }
                return .array(items)
            case 8:
                let n = try readCount()
                var entries: [(String, DecodedValue)] = []
                entries.reserveCapacity(n)
                for _ in 0 ..< n {
                    let key = try readString()
                    entries.append((key, try readValue(depth: depth + 1)))
                }
                return .keyed(entries)
            default:
                throw CompactCodec.corrupt("unknown tag")
            }
        }
    }

    fileprivate static func corrupt(_ why: String) -> DecodingError {
        DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "summary: \(why)"))
    }
}

// MARK: - Encoder

fileprivate final class KeyedStorage {
    var entries: [(String, EncodedValue)] = []
}

fileprivate final class UnkeyedStorage {
    var items: [EncodedValue] = []
}

fileprivate enum EncodedValue {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case keyed(KeyedStorage)
    case unkeyed(UnkeyedStorage)
    /// A value whose encoder (from `superEncoder`) is filled in after it was placed.
    case deferred(CompactEncoder)
}

fileprivate final class CompactEncoder: Encoder {
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    var result: EncodedValue?

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        if case .keyed(let storage)? = result {
            return KeyedEncodingContainer(KeyedContainer(storage: storage))
        }
        let storage = KeyedStorage()
        result = .keyed(storage)
        return KeyedEncodingContainer(KeyedContainer(storage: storage))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        if case .unkeyed(let storage)? = result { return UnkeyedContainer(storage: storage) }
        let storage = UnkeyedStorage()
        result = .unkeyed(storage)
        return UnkeyedContainer(storage: storage)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { SingleContainer(encoder: self) }

    /// Boxes any Encodable; primitives take the fast path, the rest get a child encoder.
    static func box<T: Encodable>(_ value: T) throws -> EncodedValue {
        switch value {
        case let v as String: return .string(v)
        case let v as Int: return .int(Int64(v))
        case let v as Bool: return .bool(v)
        case let v as Int64: return .int(v)
        case let v as UInt64: return .uint(v)
        case let v as UInt32: return .uint(UInt64(v))
        case let v as Double: return .double(v)
        default:
            let child = CompactEncoder()
            try value.encode(to: child)
            return child.result ?? .keyed(KeyedStorage())
        }
    }
}

fileprivate struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let storage: KeyedStorage
    var codingPath: [any CodingKey] { [] }

    private func put(_ value: EncodedValue, _ key: Key) { storage.entries.append((key.stringValue, value)) }

    mutating func encodeNil(forKey key: Key) throws { put(.null, key) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { put(.bool(value), key) }
    mutating func encode(_ value: String, forKey key: Key) throws { put(.string(value), key) }
    mutating func encode(_ value: Double, forKey key: Key) throws { put(.double(value), key) }
    mutating func encode(_ value: Float, forKey key: Key) throws { put(.double(Double(value)), key) }
    mutating func encode(_ value: Int, forKey key: Key) throws { put(.int(Int64(value)), key) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { put(.int(Int64(value)), key) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { put(.int(Int64(value)), key) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { put(.int(Int64(value)), key) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { put(.int(value), key) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { put(.uint(UInt64(value)), key) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { put(.uint(UInt64(value)), key) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { put(.uint(UInt64(value)), key) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { put(.uint(UInt64(value)), key) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { put(.uint(value), key) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { put(try CompactEncoder.box(value), key) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key)
        -> KeyedEncodingContainer<NestedKey> {
        let nested = KeyedStorage()
        put(.keyed(nested), key)
        return KeyedEncodingContainer(KeyedContainer<NestedKey>(storage: nested))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let nested = UnkeyedStorage()
        put(.unkeyed(nested), key)
        return UnkeyedContainer(storage: nested)
    }

    mutating func superEncoder() -> any Encoder {
        let child = CompactEncoder()
        storage.entries.append(("super", .deferred(child)))
        return child
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        let child = CompactEncoder()
        put(.deferred(child), key)
        return child
    }
}

fileprivate struct UnkeyedContainer: UnkeyedEncodingContainer {
    let storage: UnkeyedStorage
    var codingPath: [any CodingKey] { [] }
    var count: Int { storage.items.count }

    mutating func encodeNil() throws { storage.items.append(.null) }
    mutating func encode(_ value: Bool) throws { storage.items.append(.bool(value)) }
    mutating func encode(_ value: String) throws { storage.items.append(.string(value)) }
    mutating func encode(_ value: Double) throws { storage.items.append(.double(value)) }
    mutating func encode(_ value: Float) throws { storage.items.append(.double(Double(value))) }
    mutating func encode(_ value: Int) throws { storage.items.append(.int(Int64(value))) }
    mutating func encode(_ value: Int8) throws { storage.items.append(.int(Int64(value))) }
    mutating func encode(_ value: Int16) throws { storage.items.append(.int(Int64(value))) }
    mutating func encode(_ value: Int32) throws { storage.items.append(.int(Int64(value))) }
    mutating func encode(_ value: Int64) throws { storage.items.append(.int(value)) }
    mutating func encode(_ value: UInt) throws { storage.items.append(.uint(UInt64(value))) }
    mutating func encode(_ value: UInt8) throws { storage.items.append(.uint(UInt64(value))) }
    mutating func encode(_ value: UInt16) throws { storage.items.append(.uint(UInt64(value))) }
    mutating func encode(_ value: UInt32) throws { storage.items.append(.uint(UInt64(value))) }
    mutating func encode(_ value: UInt64) throws { storage.items.append(.uint(value)) }
    mutating func encode<T: Encodable>(_ value: T) throws { storage.items.append(try CompactEncoder.box(value)) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type)
        -> KeyedEncodingContainer<NestedKey> {
        let nested = KeyedStorage()
        storage.items.append(.keyed(nested))
        return KeyedEncodingContainer(KeyedContainer<NestedKey>(storage: nested))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let nested = UnkeyedStorage()
        storage.items.append(.unkeyed(nested))
        return UnkeyedContainer(storage: nested)
    }

    mutating func superEncoder() -> any Encoder {
        let child = CompactEncoder()
        storage.items.append(.deferred(child))
        return child
    }
}

fileprivate struct SingleContainer: SingleValueEncodingContainer {
    let encoder: CompactEncoder
    var codingPath: [any CodingKey] { [] }

    mutating func encodeNil() throws { encoder.result = .null }
    mutating func encode(_ value: Bool) throws { encoder.result = .bool(value) }
    mutating func encode(_ value: String) throws { encoder.result = .string(value) }
    mutating func encode(_ value: Double) throws { encoder.result = .double(value) }
    mutating func encode(_ value: Float) throws { encoder.result = .double(Double(value)) }
    mutating func encode(_ value: Int) throws { encoder.result = .int(Int64(value)) }
    mutating func encode(_ value: Int8) throws { encoder.result = .int(Int64(value)) }
    mutating func encode(_ value: Int16) throws { encoder.result = .int(Int64(value)) }
    mutating func encode(_ value: Int32) throws { encoder.result = .int(Int64(value)) }
    mutating func encode(_ value: Int64) throws { encoder.result = .int(value) }
    mutating func encode(_ value: UInt) throws { encoder.result = .uint(UInt64(value)) }
    mutating func encode(_ value: UInt8) throws { encoder.result = .uint(UInt64(value)) }
    mutating func encode(_ value: UInt16) throws { encoder.result = .uint(UInt64(value)) }
    mutating func encode(_ value: UInt32) throws { encoder.result = .uint(UInt64(value)) }
    mutating func encode(_ value: UInt64) throws { encoder.result = .uint(value) }
    mutating func encode<T: Encodable>(_ value: T) throws { encoder.result = try CompactEncoder.box(value) }
}

// MARK: - Decoder

fileprivate enum DecodedValue {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case array([DecodedValue])
    case keyed([(String, DecodedValue)])

    var kind: String {
        switch self {
        case .null: return "nil"
        case .bool: return "bool"
        case .int, .uint: return "integer"
        case .double: return "double"
        case .string: return "string"
        case .array: return "array"
        case .keyed: return "keyed"
        }
    }
}

fileprivate struct CompactDecoder: Decoder {
    let value: DecodedValue
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .keyed(let entries) = value else { throw mismatch("keyed", value) }
        return KeyedDecodingContainer(KeyedReader<Key>(entries: entries))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let items) = value else { throw mismatch("array", value) }
        return UnkeyedReader(items: items)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { SingleReader(value: value) }
}

fileprivate func mismatch(_ expected: String, _ found: DecodedValue) -> DecodingError {
    DecodingError.typeMismatch(Any.self, .init(codingPath: [], debugDescription: "expected \(expected), found \(found.kind)"))
}

/// Converts a decoded value to the primitive asked for; integers are range-checked.
fileprivate func unbox<T: Decodable>(_ value: DecodedValue, as type: T.Type) throws -> T {
    switch value {
    case .string(let s) where T.self == String.self: return s as! T
    case .bool(let b) where T.self == Bool.self: return b as! T
    case .double(let d) where T.self == Double.self: return d as! T
    case .double(let d) where T.self == Float.self: return Float(d) as! T
    default: break
    }
    if let integerType = T.self as? any FixedWidthInteger.Type {
        let result: (any FixedWidthInteger)?
        switch value {
        case .int(let i): result = integerType.init(exactly: i)
        case .uint(let u): result = integerType.init(exactly: u)
        default: throw mismatch("integer", value)
        }
        guard let result, let typed = result as? T else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "integer out of range for \(T.self)"))
        }
        return typed
    }
    switch T.self {
    case is String.Type, is Bool.Type, is Double.Type, is Float.Type: throw mismatch("\(T.self)", value)
    default: return try T(from: CompactDecoder(value: value))
    }
}

fileprivate struct KeyedReader<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let entries: [(String, DecodedValue)]
    var codingPath: [any CodingKey] { [] }
    var allKeys: [Key] { entries.compactMap { Key(stringValue: $0.0) } }

    func lookup(_ key: Key) -> DecodedValue? {
        let name = key.stringValue
        for entry in entries where entry.0 == name { return entry.1 }
        return nil
    }

    func require(_ key: Key) throws -> DecodedValue {
        guard let value = lookup(key) else {
            throw DecodingError.keyNotFound(key, .init(codingPath: [], debugDescription: "no value for \(key.stringValue)"))
        }
        return value
    }

    func contains(_ key: Key) -> Bool { lookup(key) != nil }

    func decodeNil(forKey key: Key) throws -> Bool {
        if case .null = try require(key) { return true }
        return false
    }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try unbox(try require(key), as: T.self) }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws
        -> KeyedDecodingContainer<NestedKey> {
        try CompactDecoder(value: try require(key)).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try CompactDecoder(value: try require(key)).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        CompactDecoder(value: entries.first(where: { $0.0 == "super" })?.1 ?? .null)
    }

    func superDecoder(forKey key: Key) throws -> any Decoder { CompactDecoder(value: lookup(key) ?? .null) }
}

fileprivate struct UnkeyedReader: UnkeyedDecodingContainer {
    let items: [DecodedValue]
    var currentIndex = 0
    var codingPath: [any CodingKey] { [] }
    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    init(items: [DecodedValue]) { self.items = items }

    mutating func next() throws -> DecodedValue {
        guard currentIndex < items.count else {
            throw DecodingError.valueNotFound(Any.self, .init(codingPath: [], debugDescription: "array exhausted"))
        }
        defer { currentIndex += 1 }
        return items[currentIndex]
    }

    mutating func decodeNil() throws -> Bool {
        guard currentIndex < items.count else { return false }
        if case .null = items[currentIndex] {
            currentIndex += 1
            return true
        }
        return false
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try unbox(try next(), as: T.self) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws
        -> KeyedDecodingContainer<NestedKey> {
        try CompactDecoder(value: try next()).container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try CompactDecoder(value: try next()).unkeyedContainer()
    }

    mutating func superDecoder() throws -> any Decoder { CompactDecoder(value: try next()) }
}

fileprivate struct SingleReader: SingleValueDecodingContainer {
    let value: DecodedValue
    var codingPath: [any CodingKey] { [] }

    func decodeNil() -> Bool {
        if case .null = value { return true }
        return false
    }

    func decode<T: Decodable>(_ type: T.Type) throws -> T { try unbox(value, as: T.self) }
}
