import ScenePSCore

extension Body {
    /// The one access policy of the servers and the coordinator
    /// (docs/SECURITY.md): a worker key may pull, push, declare and read the
    /// tables, and talk to the coordinator about membership and leases; every
    /// request that stops, rewinds or reshapes the job (Shutdown, snapshots,
    /// checkpoints, scaling, recovery) needs the admin key. Replies are never
    /// requests, whoever sends them (the receivers refuse them anyway).
    public func allowed(for role: PeerRole) -> Bool {
        switch role {
        case .admin: return true
        case .worker:
            switch self {
            case .hello, .declare, .pull, .push, .stats, .heartbeat,
                 .register, .leaseRequest, .memberBeat, .leave, .status:
                return true
            case .shutdown, .snapshot, .checkpoint, .coordinatorCheckpoint, .scale, .recovery:
                return false
            case .helloReply, .pullReply, .ack, .error, .statsReply, .registerReply, .leaseReply, .memberBeatReply,
                 .statusReply, .checkpointReply, .coordinatorCheckpointReply, .recoveryReply:
                return true
            }
        }
    }

    /// Why `role` may not send this (for the refusal's message).
    public func refusal(for role: PeerRole?) -> String {
        guard let role else {
            return "a \(kindName) from a connection without a role (CURVE is on and the handshake named none): refused"
        }
        return "a \(kindName) needs the admin key; this connection authenticated with the \(role.rawValue) key: refused, nothing changed"
    }
}
