import CRocksDB
import Foundation

/// A thin Swift face of RocksDB's C API: one database with named column families, atomic
/// write batches, prefix scans, snapshots. Keys and values are byte arrays.
/// @unchecked Sendable: the RocksDB handles are thread-safe by RocksDB's contract (concurrent
/// reads, writes and snapshots); `handles` is filled in init and only read afterwards.
public final class RocksDB: @unchecked Sendable {
    public let path: String
    private let db: OpaquePointer
    private let options: OpaquePointer
    private var handles: [String: OpaquePointer] = [:]
    private let syncWrites: OpaquePointer
    private let readOptions: OpaquePointer

    /// Opens (or, with `create`, creates) the database with exactly these column families besides "default".
    public init(path: String, families: [String], create: Bool) throws {
        self.path = path
        let options = rocksdb_options_create()!
        self.options = options
        rocksdb_options_set_create_if_missing(options, create ? 1 : 0)
        rocksdb_options_set_create_missing_column_families(options, 1)
        // Tensor records are checksummed and LZ4'd by the codec where it pays; RocksDB's own
        // compression would spend time on fp16 noise.
        rocksdb_options_set_compression(options, 0)
        let names = ["default"] + families
        var cfOptions = [OpaquePointer?](repeating: options, count: names.count)
        var handlesOut = [OpaquePointer?](repeating: nil, count: names.count)
        var err: UnsafeMutablePointer<CChar>?
        let cNames = names.map { strdup($0) }
        defer { cNames.forEach { free($0) } }
        var namePtrs = cNames.map { UnsafePointer<CChar>($0) }
        let opened = cfOptions.withUnsafeMutableBufferPointer { cfo in
            namePtrs.withUnsafeMutableBufferPointer { np in
                handlesOut.withUnsafeMutableBufferPointer { ho in
                    rocksdb_open_column_families(options, path, Int32(names.count), np.baseAddress, cfo.baseAddress, ho.baseAddress, &err)
                }
            }
        }
        if let e = err {
            let message = String(cString: e)
            rocksdb_free(e)
            rocksdb_options_destroy(options)
            throw StoreError.database(path: path, message: message)
        }
        db = opened!
        for (i, n) in names.enumerated() { handles[n] = handlesOut[i]! }
        syncWrites = rocksdb_writeoptions_create()
        rocksdb_writeoptions_set_sync(syncWrites, 1)  // an acknowledged write is on disk
        readOptions = rocksdb_readoptions_create()
        rocksdb_readoptions_set_verify_checksums(readOptions, 1)
    }

    deinit {
        for (_, h) in handles { rocksdb_column_family_handle_destroy(h) }
        rocksdb_close(db)
        rocksdb_options_destroy(options)
        rocksdb_writeoptions_destroy(syncWrites)
        rocksdb_readoptions_destroy(readOptions)
    }

    private func handle(_ family: String) -> OpaquePointer {
        guard let h = handles[family] else { preconditionFailure("unknown column family \(family)") }
        return h
    }

    private func check(_ err: UnsafeMutablePointer<CChar>?) throws {
        if let e = err {
            let message = String(cString: e)
            rocksdb_free(e)
            throw StoreError.database(path: path, message: message)
        }
    }

    public func get(_ family: String, _ key: [UInt8], snapshot: (any StoreSnapshot)? = nil) throws -> [UInt8]? {
        var err: UnsafeMutablePointer<CChar>?
        var len = 0
        let ro = (snapshot as? Snapshot)?.readOptions ?? readOptions
        let value = key.withUnsafeBufferPointer { k in
            k.withMemoryRebound(to: CChar.self) { rocksdb_get_cf(db, ro, handle(family), $0.baseAddress, k.count, &len, &err) }
        }
        try check(err)
        guard let v = value else { return nil }
        defer { rocksdb_free(v) }
        return [UInt8](UnsafeRawBufferPointer(start: v, count: len))
    }

    /// Applies every operation of the batch atomically, synced to the WAL before returning.
    public func write(_ batch: WriteBatch) throws {
        var err: UnsafeMutablePointer<CChar>?
        rocksdb_write(db, syncWrites, batch.pointer, &err)
        try check(err)
    }

    public func makeBatch() -> WriteBatch { WriteBatch(db: self) }

    /// Calls body for every key starting with `prefix`, in key order, until it returns false.
    public func scan(_ family: String, prefix: [UInt8], snapshot: (any StoreSnapshot)? = nil,
                     _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool) throws {
        let it = rocksdb_create_iterator_cf(db, (snapshot as? Snapshot)?.readOptions ?? readOptions, handle(family))!
        defer { rocksdb_iter_destroy(it) }
        prefix.withUnsafeBufferPointer { p in
            p.withMemoryRebound(to: CChar.self) { rocksdb_iter_seek(it, $0.baseAddress, p.count) }
        }
        while rocksdb_iter_valid(it) != 0 {
            var klen = 0, vlen = 0
            let k = UnsafeRawBufferPointer(start: rocksdb_iter_key(it, &klen), count: klen)
            guard klen >= prefix.count, prefix.isEmpty || prefix.withUnsafeBytes({ memcmp($0.baseAddress!, k.baseAddress!, prefix.count) == 0 }) else { break }
            let v = UnsafeRawBufferPointer(start: rocksdb_iter_value(it, &vlen), count: vlen)
            if try !body(k, v) { break }
            rocksdb_iter_next(it)
        }
        var err: UnsafeMutablePointer<CChar>?
        rocksdb_iter_get_error(it, &err)
        try check(err)
    }

    /// Keys (copied) under a prefix.
    public func keys(_ family: String, prefix: [UInt8], snapshot: (any StoreSnapshot)? = nil) throws -> [[UInt8]] {
        var out: [[UInt8]] = []
        try scan(family, prefix: prefix, snapshot: snapshot) { k, _ in out.append([UInt8](k)); return true }
        return out
    }

    /// Runs RocksDB's compaction over a whole column family so deleted data's space is returned.
    public func compact(_ family: String) {
        rocksdb_compact_range_cf(db, handle(family), nil, 0, nil, 0)
    }

    /// A consistent read view: reads through it see the database as of its creation.
    public func snapshot() -> Snapshot { Snapshot(db: self, raw: rocksdb_create_snapshot(db)) }

    /// @unchecked Sendable: a RocksDB snapshot is immutable and readable from any thread; it is
    /// released once, in deinit.
    public final class Snapshot: @unchecked Sendable {
        let db: RocksDB
        let raw: OpaquePointer
        let readOptions: OpaquePointer
        init(db: RocksDB, raw: OpaquePointer) {
            self.db = db
            self.raw = raw
            readOptions = rocksdb_readoptions_create()
            rocksdb_readoptions_set_verify_checksums(readOptions, 1)
            rocksdb_readoptions_set_snapshot(readOptions, raw)
        }
        deinit {
            rocksdb_readoptions_destroy(readOptions)
            rocksdb_release_snapshot(db.db, raw)
        }
    }

    public final class WriteBatch {
        let pointer: OpaquePointer
        private let db: RocksDB
        public private(set) var count = 0
        init(db: RocksDB) { self.db = db; pointer = rocksdb_writebatch_create() }
        deinit { rocksdb_writebatch_destroy(pointer) }

        public func put(_ family: String, _ key: [UInt8], _ value: [UInt8]) {
            key.withUnsafeBufferPointer { k in
                value.withUnsafeBufferPointer { v in
                    k.withMemoryRebound(to: CChar.self) { kc in
                        v.withMemoryRebound(to: CChar.self) { vc in
                            rocksdb_writebatch_put_cf(pointer, db.handle(family), kc.baseAddress, k.count, vc.baseAddress, v.count)
                        }
                    }
                }
            }
            count += 1
        }

        public func delete(_ family: String, _ key: [UInt8]) {
            key.withUnsafeBufferPointer { k in
                k.withMemoryRebound(to: CChar.self) { rocksdb_writebatch_delete_cf(pointer, db.handle(family), $0.baseAddress, k.count) }
            }
            count += 1
        }
    }
}
