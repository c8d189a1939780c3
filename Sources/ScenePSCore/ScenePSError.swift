/// The one error type of ScenePS: a code that callers can switch on, plus the
/// context a person needs to act (file, line, key, peer, what was expected).
///
/// Cases are added as static members, so adding one never breaks a caller
/// (swift-service-lifecycle's `ServiceGroupError` pattern).
public struct ScenePSError: Error, CustomStringConvertible, Equatable, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        public static let config = Code("config")
        public static let data = Code("data")
        public static let io = Code("io")
        public static let protocolError = Code("protocol")
        public static let transport = Code("transport")
        public static let timeout = Code("timeout")
        public static let remote = Code("remote")
        public static let invalidArgument = Code("invalid-argument")
        public static let checkpoint = Code("checkpoint")
        public static let training = Code("training")
        public static let internalError = Code("internal")
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

extension ScenePSError {
    public static func config(_ message: String) -> ScenePSError { .init(.config, message) }
    public static func data(_ message: String) -> ScenePSError { .init(.data, message) }
    public static func io(_ message: String) -> ScenePSError { .init(.io, message) }
    public static func invalidArgument(_ message: String) -> ScenePSError { .init(.invalidArgument, message) }
}
