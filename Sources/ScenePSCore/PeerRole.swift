/// What a peer may ask for, decided by the CURVE key it connected with
/// (docs/SECURITY.md; the policy per message is `Body.allowed(for:)`).
/// Without CURVE every peer is `.admin` (one machine's loopback, trusted).
public enum PeerRole: String, Sendable, CaseIterable {
    /// Pull, push, and a member's own registration, leases and beats.
    case worker
    /// Everything, including Shutdown, snapshots, checkpoints, restores, scaling and recovery.
    case admin
}
