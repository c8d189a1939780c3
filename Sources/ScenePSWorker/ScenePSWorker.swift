/// Module `ScenePSWorker`.
public enum ScenePSWorkerModule {}
