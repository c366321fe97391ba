/// A Redis node's address as the cluster announces it.
public struct RedisNodeAddress: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public init(host: String, port: Int) { self.host = host; self.port = port }

    /// "host:port", "[v6]:port" or "v6:port" (MOVED and ASK replies give the last form).
    public init?(_ text: Substring) {
        var text = text
        if let at = text.firstIndex(of: "@") { text = text[..<at] }  // CLUSTER NODES' host:port@bus
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else { return nil }
        var host = text[..<colon]
        if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        self.host = String(host)
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Which node serves which hash slots: the masters and their replicas, from CLUSTER SLOTS.
public struct ClusterTopology: Sendable, Equatable {
    public struct SlotRange: Sendable, Equatable {
        public var slots: ClosedRange<Int>
        public var master: RedisNodeAddress
        public var replicas: [RedisNodeAddress]
    }

    /// Sorted by first slot, not overlapping.
    public private(set) var ranges: [SlotRange]

    public init(ranges: [SlotRange]) {
        self.ranges = ranges.sorted { $0.slots.lowerBound < $1.slots.lowerBound }
    }

    /// Parses a CLUSTER SLOTS reply: [[start, end, [host, port, id, ...], [replica...]...]...].
    /// An empty host means "the node you asked" (`asked`).
    public init(clusterSlots reply: RESPValue, asked: RedisNodeAddress) throws(RedisError) {
        guard case .array(let items?) = reply else { throw .protocolError("CLUSTER SLOTS did not answer an array") }
        var ranges: [SlotRange] = []
        for item in items {
            guard case .array(let fields?) = item, fields.count >= 3,
                  case .integer(let start) = fields[0], case .integer(let end) = fields[1],
                  0 <= start, start <= end, end < HashSlot.count else {
                throw .protocolError("CLUSTER SLOTS entry is not [start, end, node...]")
            }
            var nodes: [RedisNodeAddress] = []
            for node in fields[2...] {
                guard case .array(let n?) = node, n.count >= 2, case .integer(let port) = n[1], (1...65535).contains(port) else {
                    throw .protocolError("CLUSTER SLOTS node is not [host, port, ...]")
                }
                let host: String
                switch n[0] {
                case .bulkString(let b?): host = String(decoding: b, as: UTF8.self)
                case .simpleString(let s): host = s
                default: host = ""
                }
                nodes.append(RedisNodeAddress(host: host.isEmpty || host == "?" ? asked.host : host, port: Int(port)))
            }
            ranges.append(SlotRange(slots: Int(start)...Int(end), master: nodes[0], replicas: Array(nodes.dropFirst())))
        }
        self.init(ranges: ranges)
        for (a, b) in zip(self.ranges, self.ranges.dropFirst()) where a.slots.overlaps(b.slots) {
            throw .protocolError("CLUSTER SLOTS ranges \(a.slots) and \(b.slots) overlap")
        }
    }

    /// The range holding `slot`, nil where no node serves it.
    public func range(of slot: Int) -> SlotRange? {
        var lo = 0, hi = ranges.count - 1
        while lo <= hi {
            let mid = (lo + hi) / 2
            let r = ranges[mid].slots
            if slot < r.lowerBound { hi = mid - 1 } else if slot > r.upperBound { lo = mid + 1 } else { return ranges[mid] }
        }
        return nil
    }

    public func master(of slot: Int) -> RedisNodeAddress? { range(of: slot)?.master }

    /// Whether every one of the 16384 slots is served.
    public var coversAllSlots: Bool { ranges.reduce(0) { $0 + $1.slots.count } == HashSlot.count }

    public var masters: [RedisNodeAddress] {
        var seen = Set<RedisNodeAddress>()
        return ranges.map(\.master).filter { seen.insert($0).inserted }
    }

    public var nodes: [RedisNodeAddress] {
        var seen = Set<RedisNodeAddress>()
        return ranges.flatMap { [$0.master] + $0.replicas }.filter { seen.insert($0).inserted }
    }

    /// After a MOVED: `slot` now lives on `node` (the rest is refreshed in the background).
    mutating func move(slot: Int, to node: RedisNodeAddress) {
        guard let i = ranges.firstIndex(where: { $0.slots.contains(slot) }) else {
            ranges.append(SlotRange(slots: slot...slot, master: node, replicas: []))
            ranges.sort { $0.slots.lowerBound < $1.slots.lowerBound }
            return
        }
        let r = ranges[i]
        guard r.master != node else { return }
        var parts: [SlotRange] = []
        if r.slots.lowerBound < slot { parts.append(SlotRange(slots: r.slots.lowerBound...(slot - 1), master: r.master, replicas: r.replicas)) }
        parts.append(SlotRange(slots: slot...slot, master: node, replicas: []))
        if slot < r.slots.upperBound { parts.append(SlotRange(slots: (slot + 1)...r.slots.upperBound, master: r.master, replicas: r.replicas)) }
        ranges.replaceSubrange(i...i, with: parts)
    }
}
