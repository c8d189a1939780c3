/// Module `ScenePSData`.
public enum ScenePSDataModule {}
