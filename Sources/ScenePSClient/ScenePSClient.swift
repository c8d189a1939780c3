/// Module `ScenePSClient`.
public enum ScenePSClientModule {}
