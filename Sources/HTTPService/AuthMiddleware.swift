import Hummingbird

/// `Authorization: Bearer TOKEN` on every endpoint but /health (when a token is configured).
struct BearerAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: [UInt8]
    static var openPaths: Set<String> { ["/health"] }

    init(token: String) { self.token = Array(token.utf8) }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if Self.openPaths.contains(request.uri.path) { return try await next(request, context) }
        guard let header = request.headers[.authorization] else {
            throw APIError(.unauthorized, "unauthorized", "missing 'Authorization: Bearer <token>' header",
                           headers: [.wwwAuthenticate: "Bearer realm=\"anchorkv\""])
        }
        let prefix = "bearer "
        guard header.count > prefix.count, header.prefix(prefix.count).lowercased() == prefix,
              Self.constantTimeEqual(Array(header.dropFirst(prefix.count).utf8), token) else {
            throw APIError(.unauthorized, "unauthorized", "the bearer token is not valid",
                           headers: [.wwwAuthenticate: "Bearer realm=\"anchorkv\", error=\"invalid_token\""])
        }
        return try await next(request, context)
    }

    /// Compares without an early exit, so timing does not reveal how much of a guess matched.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var diff = UInt8(a.count == b.count ? 0 : 1)
        for i in 0..<max(a.count, b.count) {
            diff |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0xFF)
        }
        return diff == 0
    }
}
