public enum ScenePSVersion {
    public static let string = "0.1.0"
}
