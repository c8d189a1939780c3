import Yams

/// Walks a YAML document with a path, so that every error names the file,
/// the line, the key and what was expected; unknown keys are errors (a typo
/// must not silently fall back to a default).
struct ConfigReader {
    let file: String
    let node: Node
    let path: String

    init(file: String, node: Node, path: String = "") {
        self.file = file
        self.node = node
        self.path = path
    }

    func location(_ n: Node? = nil) -> String {
        if let mark = (n ?? node).mark { return "\(file):\(mark.line)" }
        return file
    }

    func error(_ key: String, _ expected: String, at n: Node? = nil) -> ScenePSError {
        let name = key.isEmpty ? (path.isEmpty ? "(top level)" : path) : qualified(key)
        return .config("\(location(n)): \(name): \(expected)")
    }

    func qualified(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// The mapping's keys, checked against the allowed set.
    func keys(allowed: Set<String>) throws -> [String: Node] {
        guard let mapping = node.mapping else {
            throw error("", "expected a mapping of keys to values")
        }
        var out: [String: Node] = [:]
        for (k, v) in mapping {
            guard let key = k.string else { throw error("", "keys must be strings", at: k) }
            guard allowed.contains(key) else {
                let known = allowed.sorted().joined(separator: ", ")
                throw error(key, "unknown key (known keys here: \(known))", at: k)
            }
            out[key] = v
        }
        return out
    }

    func child(_ key: String, _ n: Node) -> ConfigReader {
        ConfigReader(file: file, node: n, path: qualified(key))
    }

    func int(_ key: String, _ n: Node, min: Int = Int.min, max: Int = Int.max) throws -> Int {
        guard n.scalar != nil, let v = n.int else { throw error(key, "expected an integer, found '\(n.any)'", at: n) }
        guard v >= min && v <= max else {
            throw error(key, "expected an integer in \(min == Int.min ? "..." : "\(min)")...\(max == Int.max ? "" : "\(max)"), found \(v)", at: n)
        }
        return v
    }

    func double(_ key: String, _ n: Node, min: Double = -.infinity, max: Double = .infinity) throws -> Double {
        guard n.scalar != nil, let v = n.float, v.isFinite else { throw error(key, "expected a number, found '\(n.any)'", at: n) }
        guard v >= min && v <= max else { throw error(key, "expected a number in [\(min), \(max)], found \(v)", at: n) }
        return v
    }

    func bool(_ key: String, _ n: Node) throws -> Bool {
        guard n.scalar != nil, let v = n.bool else { throw error(key, "expected true or false, found '\(n.any)'", at: n) }
        return v
    }

    func string(_ key: String, _ n: Node, oneOf choices: [String]? = nil) throws -> String {
        guard n.scalar != nil, let v = n.string else { throw error(key, "expected a string", at: n) }
        if let choices, !choices.contains(v) {
            throw error(key, "expected one of \(choices.joined(separator: ", ")), found '\(v)'", at: n)
        }
        return v
    }

    func ints(_ key: String, _ n: Node, min: Int = 1) throws -> [Int] {
        guard let seq = n.sequence else { throw error(key, "expected a list of integers like [128, 64]", at: n) }
        return try seq.map { try int(key, $0, min: min) }
    }
}
