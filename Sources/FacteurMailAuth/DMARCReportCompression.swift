// Compression containers DMARC aggregate reports travel in (RFC 7489 §7.2.1.1: gzip, RFC 1952; in
// practice also zip): gzip via zlib (compress-nio), and a minimal zip reader of our own (PKWARE
// APPNOTE 6.3 §4.3: end of central directory, central directory, local headers; methods 0 stored and
// 8 deflate, RFC 1951). Every decompression is capped at DMARCReportLimits.maxXMLBytes of output
// whatever the headers claim, so a zip or gzip bomb costs at most that much memory.

import CompressNIO
import NIOCore

public enum DMARCReportCompression {
    /// gzip (RFC 1952) of `bytes`, as attached to a report mail.
    public static func gzip(_ bytes: [UInt8]) -> [UInt8] {
        var input = ByteBuffer(bytes: bytes)
        // Compressing a complete in-memory buffer into a buffer of deflateBound size cannot fail short
        // of allocation failure; an empty result would only make the round-trip test fail loudly.
        guard let output = try? input.compress(with: ZlibAlgorithm.gzip) else { return [] }
        return Array(output.readableBytesView)
    }

    /// Whether `bytes` starts with the gzip magic (RFC 1952 §2.3.1: ID1 ID2 = 1f 8b).
    public static func isGzip(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B
    }

    /// Whether `bytes` starts with a zip local file header or an empty archive's end record.
    static func isZip(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 4 && bytes[0] == 0x50 && bytes[1] == 0x4B
            && ((bytes[2] == 3 && bytes[3] == 4) || (bytes[2] == 5 && bytes[3] == 6))
    }

    /// Decompresses gzip data. Several members back to back are concatenated (RFC 1952 §2.2, as
    /// `gzip -c a b` writes); bytes after the last member that are not another member are ignored, as
    /// gzip(1) does ("trailing garbage ignored"; Mimecast appends a CRLF).
    public static func gunzip(_ bytes: [UInt8], maxOutput: Int = DMARCReportLimits.maxXMLBytes) throws(DMARCReportError) -> [UInt8] {
        var input = ByteBuffer(bytes: bytes)
        var output: [UInt8] = []
        var members = 0
        while true {
            try inflate(&input, algorithm: .gzip, into: &output, maxOutput: maxOutput)
            members += 1
            let rest = input.readableBytesView
            guard members < 64, rest.count >= 2, rest.first == 0x1F, rest.dropFirst().first == 0x8B else { break }
        }
        return output
    }

    /// Decompresses a raw deflate stream (RFC 1951), as zip method 8 stores it.
    static func inflateRaw(_ bytes: ArraySlice<UInt8>, maxOutput: Int) throws(DMARCReportError) -> [UInt8] {
        var input = ByteBuffer(bytes: bytes)
        var output: [UInt8] = []
        try inflate(&input, algorithm: .deflate, into: &output, maxOutput: maxOutput)
        return output
    }

    /// Inflates one stream from `input` (consuming it up to the stream's end) and appends the result.
    /// zlib reports "needs more input" and "stream ended" differently only when asked once more, so a
    /// call that consumed all input without error is followed by one with none: Z_STREAM_END again
    /// means complete, Z_BUF_ERROR means the data was truncated.
    private static func inflate(_ input: inout ByteBuffer, algorithm: ZlibAlgorithm, into output: inout [UInt8],
                                maxOutput: Int) throws(DMARCReportError) {
        let decompressor: ZlibDecompressor
        do { decompressor = try ZlibDecompressor(algorithm: algorithm) } catch {
            throw .corruptCompressedData("zlib could not start: \(error)")
        }
        var window = ByteBufferAllocator().buffer(capacity: 64 * 1024)
        var probedEnd = false
        while true {
            window.clear()
            var outputFull = false
            do {
                try decompressor.inflate(from: &input, to: &window)
            } catch let error as CompressNIOError where error == .bufferOverflow {
                outputFull = true
            } catch let error as CompressNIOError where error == .inputBufferOverflow {
                output.append(contentsOf: window.readableBytesView)
                throw .corruptCompressedData("truncated \(algorithm) data")
            } catch {
                throw .corruptCompressedData("\(algorithm) data: \(error)")
            }
            guard output.count + window.readableBytes <= maxOutput else { throw .tooLarge(limit: maxOutput) }
            output.append(contentsOf: window.readableBytesView)
            if outputFull { continue }
            // No error: the stream ended, or all input was consumed mid-stream (see above).
            if input.readableBytes > 0 || probedEnd { return }
            probedEnd = true
        }
    }

    // MARK: zip

    /// One file in a zip archive.
    struct ZipEntry {
        var name: String
        var bytes: [UInt8]
    }

    /// The files of a zip archive (directories skipped), each decompressed and CRC-checked.
    static func unzip(_ bytes: [UInt8], maxOutput: Int = DMARCReportLimits.maxXMLBytes) throws(DMARCReportError) -> [ZipEntry] {
        // APPNOTE §4.3.16: the end of central directory record is the last thing in the file, after at
        // most a 65535-byte comment.
        let eocdSize = 22
        guard bytes.count >= eocdSize else { throw .badZip("too short for an end of central directory record") }
        var eocd: Int? = nil
        var i = bytes.count - eocdSize
        let lowest = max(0, bytes.count - eocdSize - 0xFFFF)
        while i >= lowest {
            if le32(bytes, i) == 0x0605_4B50 { eocd = i; break }
            i -= 1
        }
        guard let end = eocd else { throw .badZip("no end of central directory record") }
        let entryCount = Int(le16(bytes, end + 10))
        let directorySize = Int(le32(bytes, end + 12))
        let directoryOffset = Int(le32(bytes, end + 16))
        if entryCount == 0xFFFF || directorySize == 0xFFFF_FFFF || directoryOffset == 0xFFFF_FFFF {
            throw .badZip("zip64 archives are not supported")
        }
        guard entryCount <= DMARCReportLimits.maxZipEntries else { throw .badZip("more than \(DMARCReportLimits.maxZipEntries) entries") }
        guard directoryOffset <= end, directorySize <= end - directoryOffset else {
            throw .badZip("central directory outside the archive")
        }

        var entries: [ZipEntry] = []
        var total = 0
        var p = directoryOffset
        for _ in 0..<entryCount {
            // §4.3.12 central directory file header, 46 fixed bytes.
            guard p + 46 <= end, le32(bytes, p) == 0x0201_4B50 else { throw .badZip("bad central directory entry") }
            let flags = le16(bytes, p + 8)
            let method = le16(bytes, p + 10)
            let crc = le32(bytes, p + 16)
            let compressedSize = Int(le32(bytes, p + 20))
            let size = Int(le32(bytes, p + 24))
            let nameLength = Int(le16(bytes, p + 28))
            let extraLength = Int(le16(bytes, p + 30))
            let commentLength = Int(le16(bytes, p + 32))
            let localOffset = Int(le32(bytes, p + 42))
            guard p + 46 + nameLength <= end else { throw .badZip("entry name outside the directory") }
            let name = String(decoding: bytes[(p + 46)..<(p + 46 + nameLength)], as: UTF8.self)
            p += 46 + nameLength + extraLength + commentLength
            if name.hasSuffix("/") { continue }
            if flags & 1 != 0 { throw .badZip("\(name) is encrypted") }
            if compressedSize == 0xFFFF_FFFF || size == 0xFFFF_FFFF || localOffset == 0xFFFF_FFFF {
                throw .badZip("zip64 archives are not supported")
            }
            // §4.3.7 local file header, 30 fixed bytes; its own name/extra lengths locate the data
            // (sizes come from the central directory: with flag bit 3 the local ones are zero).
            guard localOffset + 30 <= bytes.count, le32(bytes, localOffset) == 0x0403_4B50 else {
                throw .badZip("bad local header for \(name)")
            }
            let dataStart = localOffset + 30 + Int(le16(bytes, localOffset + 26)) + Int(le16(bytes, localOffset + 28))
            guard dataStart <= bytes.count, compressedSize <= bytes.count - dataStart else {
                throw .badZip("\(name) extends past the end of the archive")
            }
            let data = bytes[dataStart..<(dataStart + compressedSize)]
            let remaining = maxOutput - total
            var content: [UInt8]
            switch method {
            case 0:
                guard compressedSize <= remaining else { throw .tooLarge(limit: maxOutput) }
                content = Array(data)
            case 8:
                content = try inflateRaw(data, maxOutput: remaining)
            default:
                throw .badZip("\(name) uses compression method \(method); only stored and deflate are read")
            }
            guard content.count == size, crc32(content) == crc else {
                throw .badZip("\(name) fails its size or CRC-32 check")
            }
            total += content.count
            entries.append(ZipEntry(name: name, bytes: content))
        }
        return entries
    }

    private static func le16(_ b: [UInt8], _ i: Int) -> UInt16 {
        guard i >= 0, i + 2 <= b.count else { return 0 }
        return UInt16(b[i]) | UInt16(b[i + 1]) << 8
    }

    private static func le32(_ b: [UInt8], _ i: Int) -> UInt32 {
        guard i >= 0, i + 4 <= b.count else { return 0 }
        return UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
    }

    /// CRC-32 (ISO 3309 / ITU-T V.42, reflected polynomial 0xEDB88320), as zip and gzip use it.
    static func crc32<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        crcTable.withUnsafeBufferPointer { table in
            for byte in bytes {
                crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
            }
        }
        return crc ^ 0xFFFF_FFFF
    }

    private static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }
}
