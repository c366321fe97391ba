import KVStore
import KnowledgeBase

extension KnowledgeBase {
    /// The embedded RocksDB store these tests build on (its snapshots and raw records).
    var rocks: KVStore { store as! KVStore }
}
