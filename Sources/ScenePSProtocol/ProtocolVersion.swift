import ScenePSWire

/// The wire protocol's version, carried in every envelope.
public enum WireProtocol {
    public static let version: UInt32 = UInt32(SCENEPS__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT.rawValue)
}
