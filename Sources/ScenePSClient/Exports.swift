// The client's API speaks the protocol's value types (TableSpec, AdamConfig,
// HelloReply, …); re-export them so callers need only `import ScenePSClient`.
@_exported import ScenePSProtocol
