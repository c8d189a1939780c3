/// Module `ScenePSServer`.
public enum ScenePSServerModule {}
