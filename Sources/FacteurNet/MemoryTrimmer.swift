// Gives freed heap memory back to the system after many connections have gone idle. glibc's
// malloc returns memory to the kernel only from the top of each arena; the working buffers a
// connection frees when it starts to idle (zlib states, command buffers) sit between blocks
// that stay in use, so without a trim they stay resident. malloc_trim(0) releases every whole
// free page (madvise), which brings an idle IMAP connection with COMPRESS back to what it holds.

#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import NIOConcurrencyHelpers

public enum MemoryTrimmer {
    /// Requests are coalesced: one trim runs this long after the first request since the last trim.
    static let delay = DispatchTimeInterval.seconds(1)
    private static let scheduled = NIOLockedValueBox(false)

    /// Schedules a trim (on a background queue) unless one is already pending.
    public static func requestTrim() {
        #if canImport(Glibc)
        let schedule = scheduled.withLockedValue { pending -> Bool in
            defer { pending = true }
            return !pending
        }
        guard schedule else { return }
        DispatchQueue.global(qos: .utility).asyncAfter(deadline: .now() + delay) {
            scheduled.withLockedValue { $0 = false }
            _ = trim?(0)
        }
        #endif
    }

    /// Serves allocations of `bytes` or more from their own mappings (glibc's M_MMAP_THRESHOLD)
    /// instead of the heap: pages of such a buffer that are never written are never resident.
    /// Each TLS connection holds a 32 KiB plaintext buffer (swift-nio-ssl) of which an idle
    /// connection touches a page or two; from the heap, the rest is memory earlier buffers
    /// dirtied. Returns whether the setting took.
    @discardableResult
    public static func mapAllocations(atLeast bytes: Int32) -> Bool {
        #if canImport(Glibc)
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return false }
        let mallopt = unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)
        let mmapThreshold: Int32 = -3  // M_MMAP_THRESHOLD in <malloc.h>
        return mallopt(mmapThreshold, bytes) == 1
        #else
        return false
        #endif
    }

    #if canImport(Glibc)
    /// glibc's malloc_trim, looked up at run time: Swift's Glibc module does not import
    /// <malloc.h>, and another C library may not have it (then nothing is trimmed).
    private static let trim: (@convention(c) (Int) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
    }()
    #endif
}
