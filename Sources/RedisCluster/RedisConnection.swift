import NIOCore
import NIOPosix

/// What can go wrong talking to one Redis node.
public enum RedisError: Error, Equatable, CustomStringConvertible {
    case connectionClosed(String)
    case timedOut(String)
    case protocolError(String)
    /// The node answered with an error reply (the reply's text: "MOVED 3999 host:port", ...).
    case reply(String)
    /// The node refused the credentials, or wants some (NOAUTH, WRONGPASS, NOPERM): not retried.
    case authenticationFailed(String)

    public var description: String {
        switch self {
        case .connectionClosed(let m): return "connection closed: \(m)"
        case .timedOut(let m): return "timed out: \(m)"
        case .protocolError(let m): return "protocol error: \(m)"
        case .reply(let m): return "Redis replied: \(m)"
        case .authenticationFailed(let m): return "authentication failed: \(m)"
        }
    }
}

/// One pipelined connection to one Redis node over swift-nio: commands are written in order,
/// replies matched to them in order (RESP2 has no request ids). A connection whose reply did
/// not come in time is closed: the replies after it could no longer be matched.
public final class RedisConnection: Sendable {
    public let host: String
    public let port: Int
    let channel: any Channel

    init(host: String, port: Int, channel: any Channel) {
        self.host = host
        self.port = port
        self.channel = channel
    }

    /// Connects (TCP, no delay) within `timeout`.
    public static func connect(host: String, port: Int, timeout: Duration = .seconds(5), limits: RESPDecoder.Limits = RESPDecoder.Limits(),
                               group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> RedisConnection {
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(timeAmount(timeout))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RESPReplyDecoder(RESPDecoder(limits: limits))))
                    try channel.pipeline.syncOperations.addHandler(RedisClientHandler())
                }
            }
        do {
            let channel = try await bootstrap.connect(host: host, port: port).get()
            return RedisConnection(host: host, port: port, channel: channel)
        } catch {
            if case ChannelError.connectTimeout = error { throw RedisError.timedOut("connecting to \(host):\(port)") }
            throw RedisError.connectionClosed("cannot connect to \(host):\(port): \(error)")
        }
    }

    public var isActive: Bool { channel.isActive }

    /// Sends the commands in one write and returns their replies in order (error replies are
    /// values here; `run` throws them).
    public func pipeline(_ commands: [[[UInt8]]], timeout: Duration = .seconds(5)) async throws -> [RESPValue] {
        guard !commands.isEmpty else { return [] }
        var bytes: [UInt8] = []
        for c in commands { RESPEncoder.command(c, into: &bytes) }
        let loop = channel.eventLoop
        let promises = (0..<commands.count).map { _ in loop.makePromise(of: RESPValue.self) }
        let request = RedisRequest(bytes: ByteBuffer(bytes: bytes), replies: promises)
        let channel = self.channel, name = "\(host):\(port)"
        let timer = loop.scheduleTask(in: timeAmount(timeout)) {
            for p in promises { p.fail(RedisError.timedOut("no reply from \(name) within \(timeout)")) }
            channel.close(promise: nil)
        }
        defer { timer.cancel() }
        channel.writeAndFlush(request).whenFailure { error in
            for p in promises { p.fail(RedisError.connectionClosed("writing to \(name): \(error)")) }
        }
        var replies: [RESPValue] = []
        replies.reserveCapacity(promises.count)
        for p in promises { replies.append(try await p.futureResult.get()) }
        return replies
    }

    /// One command; an error reply is thrown as `RedisError.reply`.
    @discardableResult
    public func run(_ parts: [String], timeout: Duration = .seconds(5)) async throws -> RESPValue {
        try await run(parts.map { Array($0.utf8) }, timeout: timeout)
    }

    @discardableResult
    public func run(_ parts: [[UInt8]], timeout: Duration = .seconds(5)) async throws -> RESPValue {
        let r = try await pipeline([parts], timeout: timeout)[0]
        if case .error(let m) = r { throw RedisError.reply(m) }
        return r
    }

    /// `error` as an authentication failure when it is one (a reply refusing the credentials).
    public static func authenticationFailure(_ error: any Error, node: String) -> RedisError? {
        if case .authenticationFailed? = error as? RedisError { return error as? RedisError }
        guard case .reply(let m)? = error as? RedisError,
              let code = m.split(separator: " ", maxSplits: 1).first, ["NOAUTH", "WRONGPASS", "NOPERM"].contains(code) else { return nil }
        return .authenticationFailed("\(node): \(m)")
    }

    public func close() async {
        try? await channel.close()
    }
}

func timeAmount(_ d: Duration) -> TimeAmount {
    .nanoseconds(d.components.seconds * 1_000_000_000 + d.components.attoseconds / 1_000_000_000)
}

/// Bytes to write and the promises of their replies, in order.
struct RedisRequest {
    var bytes: ByteBuffer
    var replies: [EventLoopPromise<RESPValue>]
}

/// RESP replies out of the byte stream, bounded by `RESPDecoder`'s limits.
struct RESPReplyDecoder: ByteToMessageDecoder {
    typealias InboundOut = RESPValue
    let decoder: RESPDecoder
    init(_ decoder: RESPDecoder) { self.decoder = decoder }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let (value, consumed) = try decoder.decode(buffer.readableBytesView) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: consumed)
        context.fireChannelRead(wrapInboundOut(value))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }
}

/// Matches replies to the requests written, first in first out; fails what is pending when the
/// connection breaks.
final class RedisClientHandler: ChannelDuplexHandler {
    typealias InboundIn = RESPValue
    typealias OutboundIn = RedisRequest
    typealias OutboundOut = ByteBuffer

    private var waiting = CircularBuffer<EventLoopPromise<RESPValue>>()

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        waiting.append(contentsOf: request.replies)
        context.write(wrapOutboundOut(request.bytes), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let value = unwrapInboundIn(data)
        guard let next = waiting.popFirst() else {
            // A reply nobody asked for: the stream is out of step, so nothing after it can be trusted.
            context.fireErrorCaught(RedisError.protocolError("a reply arrived with no request waiting"))
            return
        }
        next.succeed(value)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(error as? RedisError ?? .protocolError("\(error)"))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(.connectionClosed("the node closed the connection"))
        context.fireChannelInactive()
    }

    private func failAll(_ error: RedisError) {
        while let p = waiting.popFirst() { p.fail(error) }
    }
}
