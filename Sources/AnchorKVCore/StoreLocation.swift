import ClusterStore
import Digest
import Foundation
import KVStore
import RedisCluster

/// Where a knowledge base lives, as `--store`, ANCHORKV_STORE or the config's "store" name it:
/// a folder (the embedded RocksDB store) or a Redis Cluster, `redis://HOST:PORT[,HOST:PORT...][/NAME]`
/// (seed nodes, and the knowledge base's name on a shared cluster). Anything with a scheme is a
/// URL and is never taken for a folder (a folder named "redis:" is not what the user meant).
public enum StoreLocation: Equatable, Sendable {
    case folder(String)
    case redisCluster(RedisClusterAddress)

    public struct RedisClusterAddress: Equatable, Sendable {
        public struct Node: Equatable, Sendable {
            public var host: String
            public var port: Int
        }
        public var seeds: [Node]
        /// Keys of this knowledge base carry the name, so several can share one cluster.
        public var name: String
        /// The URL without a password (URLs never carry one here).
        public var description: String { "redis://" + seeds.map { "\($0.host.contains(":") ? "[\($0.host)]" : $0.host):\($0.port)" }.joined(separator: ",") + "/" + name }
    }

    public static let defaultName = "default"

    public static func parse(_ text: String) throws(CoreError) -> StoreLocation {
        guard let range = text.range(of: "://") else {
            guard !text.isEmpty else { throw .invalidConfig("the store is empty; name a folder or a redis:// URL") }
            return .folder(text)
        }
        let scheme = text[..<range.lowerBound].lowercased()
        guard scheme == "redis" else {
            throw .invalidConfig("store '\(text)': unknown scheme '\(scheme)://'; a store is a folder or redis://HOST:PORT[,HOST:PORT...][/NAME]")
        }
        var rest = Substring(text[range.upperBound...])
        var name = defaultName
        if let slash = rest.firstIndex(of: "/") {
            name = String(rest[rest.index(after: slash)...])
            rest = rest[..<slash]
            if name.isEmpty { name = defaultName }
        }
        guard name.count <= 64, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "_.-".contains($0)) }) else {
            throw .invalidConfig("store '\(text)': the knowledge-base name '\(name)' must be 1-64 letters, digits, '_', '.' or '-'")
        }
        if rest.contains("@") {
            throw .invalidConfig("store URL '\(text)' holds credentials; give the password in ANCHORKV_REDIS_PASSWORD or a file named by ANCHORKV_REDIS_PASSWORD_FILE (a URL shows in process lists and logs)")
        }
        var seeds: [RedisClusterAddress.Node] = []
        for part in rest.split(separator: ",", omittingEmptySubsequences: false) {
            seeds.append(try node(String(part), in: text))
        }
        guard !seeds.isEmpty, seeds.count <= 64 else { throw .invalidConfig("store '\(text)': give 1 to 64 seed nodes") }
        return .redisCluster(RedisClusterAddress(seeds: seeds, name: name))
    }

    /// HOST:PORT, [IPv6]:PORT.
    static func node(_ s: String, in text: String) throws(CoreError) -> RedisClusterAddress.Node {
        let host: String, portText: String
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]"), s[s.index(after: close)...].hasPrefix(":") else {
                throw .invalidConfig("store '\(text)': seed '\(s)' is not [IPv6]:PORT")
            }
            host = String(s[s.index(after: s.startIndex)..<close])
            portText = String(s[s.index(close, offsetBy: 2)...])
        } else {
            guard let colon = s.lastIndex(of: ":") else { throw .invalidConfig("store '\(text)': seed '\(s)' needs a port (HOST:PORT)") }
            host = String(s[..<colon])
            portText = String(s[s.index(after: colon)...])
        }
        guard !host.isEmpty, host.count <= 253, host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || ".-_:".contains($0)) }) else {
            throw .invalidConfig("store '\(text)': '\(host)' is not a host name or address")
        }
        guard let port = Int(portText), (1...65535).contains(port) else {
            throw .invalidConfig("store '\(text)': port '\(portText)' must be 1-65535")
        }
        return .init(host: host, port: port)
    }
}

extension AppConfig {
    /// The Redis password: ANCHORKV_REDIS_PASSWORD, or the first line of the file
    /// ANCHORKV_REDIS_PASSWORD_FILE names (URLs never carry one); nil when neither is set.
    public func redisPassword(environment: [String: String] = ProcessInfo.processInfo.environment) throws(CoreError) -> String? {
        if let p = environment["ANCHORKV_REDIS_PASSWORD"], !p.isEmpty { return p }
        guard let file = environment["ANCHORKV_REDIS_PASSWORD_FILE"], !file.isEmpty else { return nil }
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw .invalidConfig("ANCHORKV_REDIS_PASSWORD_FILE names \(file), which cannot be read")
        }
        return text.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
    }
}

extension AppConfig {
    /// Where writes to a cluster that reached too few replicas wait to be written again:
    /// data/outbox/NAME-HASH under the root (HASH: of the seed list, so that two clusters'
    /// knowledge bases of one name keep apart).
    func outboxPath(for address: StoreLocation.RedisClusterAddress) -> String {
        var h = SHA256()
        h.update(address.seeds.map { "\($0.host):\($0.port)" }.sorted().joined(separator: ","))
        let tag = h.finalize().prefix(4).map { String(format: "%02x", $0) }.joined()
        return root.appendingPathComponent("data/outbox/\(address.name)-\(tag)").path
    }
}

extension StoreLocation {
    /// Opens the store here: the RocksDB folder, or the knowledge base on the Redis Cluster.
    /// `modelFingerprint` nil opens it for whatever model it holds (no model loaded).
    func open(config: AppConfig, modelFingerprint: String?, modelName: String?, create: Bool, dtype: TensorDType = .f16,
              shape: ModelShape? = nil) throws -> any DocumentStore {
        switch self {
        case .folder(let path):
            return try KVStore(path: path, modelFingerprint: modelFingerprint, modelName: modelName, create: create, dtype: dtype, shape: shape)
        case .redisCluster(let address):
            return try RedisDocumentStore.open(seeds: address.seeds.map { RedisNodeAddress(host: $0.host, port: $0.port) }, name: address.name,
                                               password: try config.redisPassword(), modelFingerprint: modelFingerprint, modelName: modelName,
                                               create: create, dtype: dtype, shape: shape, location: address.description,
                                               outboxPath: config.outboxPath(for: address))
        }
    }
}
