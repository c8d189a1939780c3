import Foundation
import XCTest

/// Every command the README shows parses: the commands are read from the
/// README's `sh` code blocks, and for each executable (and `psctl`
/// subcommand) the test runs its `--help` and checks that every flag the
/// README gives it appears there. A renamed or removed flag, a removed
/// subcommand or a README command this test does not know fails here, so the
/// guide cannot drift from the code. Nothing but `--help` is run (no ports).
final class ReadmeCommandTests: XCTestCase {
    /// One command as the README writes it.
    struct Command: Hashable {
        var program: String        // cluster/local.sh, psctl, tools/test.sh, ...
        var subcommand: String?    // psctl's
        var flags: [String]
        var line: Int              // in README.md
    }

    /// Programs the README may show that are not this project's (not checked).
    static let external: Set<String> = ["swift", "git", "sudo", "apt-get", "cd", "export", "kill", "python3", "pip", "sbatch", "kubectl"]

    /// The `sh`/`bash` code blocks' commands: continuation lines joined,
    /// comments dropped, `&&`, `||`, `|`, `;` and `$(…)` split into separate
    /// commands, leading `VAR=value` assignments skipped.
    static func commands(inReadme text: String) -> [Command] {
        var out: [Command] = []
        var inBlock = false
        var pending = "", pendingLine = 0
        for (i, raw) in text.components(separatedBy: "\n").enumerated() {
            let trimmed = raw.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("```") {
                inBlock = !inBlock && (trimmed == "```sh" || trimmed == "```bash")
                continue
            }
            guard inBlock else { continue }
            if pending.isEmpty { pendingLine = i + 1 }
            let noComment = stripComment(raw)
            if noComment.hasSuffix("\\") { pending += String(noComment.dropLast()) + " "; continue }
            let full = pending + noComment
            pending = ""
            let flat = full.replacingOccurrences(of: "$(", with: " ; ").replacingOccurrences(of: ")", with: " ; ")
            for part in flat.components(separatedBy: CharacterSet(charactersIn: ";|&")) {
                var words = tokens(part)
                while let w = words.first, w.range(of: #"^[A-Za-z_][A-Za-z0-9_]*="#, options: .regularExpression) != nil {
                    words.removeFirst()
                }
                guard let program = words.first else { continue }
                var rest = Array(words.dropFirst())
                var sub: String?
                if program == "psctl", let s = rest.first, !s.hasPrefix("-") { sub = s; rest.removeFirst() }
                let flags = rest.compactMap(flagName)
                out.append(Command(program: program, subcommand: sub, flags: flags, line: pendingLine))
            }
        }
        return out
    }

    /// The line without a `#` comment (one outside quotes, at the start or after a space).
    static func stripComment(_ line: String) -> String {
        var quote: Character?
        var prev: Character = " "
        var out = ""
        for c in line {
            if let q = quote { if c == q { quote = nil } }
            else if c == "'" || c == "\"" { quote = c }
            else if c == "#" && prev.isWhitespace { break }
            out.append(c)
            prev = c
        }
        return out.trimmingCharacters(in: .whitespaces)
    }

    /// Whitespace-separated words; quoted words kept whole, quotes removed.
    static func tokens(_ s: String) -> [String] {
        var out: [String] = [], cur = "", quote: Character?
        for c in s {
            if let q = quote { if c == q { quote = nil } else { cur.append(c) } }
            else if c == "'" || c == "\"" { quote = c }
            else if c.isWhitespace { if !cur.isEmpty { out.append(cur); cur = "" } }
            else { cur.append(c) }
        }
        if !cur.isEmpty { out.append(cur) }
        return out
    }

    /// `--flag` of a word such as `[--items`, `--out=DIR`, `--resume]`; nil for anything else.
    static func flagName(_ word: String) -> String? {
        let w = word.trimmingCharacters(in: CharacterSet(charactersIn: "[](),"))
        guard w.hasPrefix("--"), w.count > 2 else { return nil }
        return String(w.split(separator: "=", maxSplits: 1)[0])
    }

    /// Whether `help` mentions `flag` as a whole word (`--items` is not found in `--items-file`).
    static func helpMentions(_ help: String, _ flag: String) -> Bool {
        let pattern = NSRegularExpression.escapedPattern(for: flag) + #"(?![A-Za-z0-9_-])"#
        return help.range(of: pattern, options: .regularExpression) != nil
    }

    /// The executable and the arguments that print the help of `c`'s program; nil for an external one.
    static func helpInvocation(_ c: Command) -> (path: String, args: [String])? {
        switch c.program {
        case "psctl", "ps-server", "worker", "coordinator":
            return (Harness.bin.appendingPathComponent(c.program).path, (c.subcommand.map { [$0] } ?? []) + ["--help"])
        case let p where p.hasPrefix("cluster/") || p.hasPrefix("tools/"):
            return (Harness.root.appendingPathComponent(p).path, ["--help"])
        default:
            return nil
        }
    }

    /// What is wrong with the README's commands, one line each (empty: nothing).
    static func problems(readme text: String) throws -> [String] {
        let all = commands(inReadme: text)
        var problems: [String] = []
        var byProgram: [String: (Command, Set<String>)] = [:]   // program + subcommand → flags used
        for c in all {
            if external.contains(c.program) { continue }
            guard helpInvocation(c) != nil else {
                problems.append("README.md:\(c.line): '\(c.program)' is not an executable of this project this test knows (add it to ReadmeCommandTests)")
                continue
            }
            let key = c.program + " " + (c.subcommand ?? "")
            var e = byProgram[key] ?? (c, [])
            e.1.formUnion(c.flags)
            byProgram[key] = e
        }
        for (_, (c, flags)) in byProgram.sorted(by: { $0.key < $1.key }) {
            let (path, args) = helpInvocation(c)!
            let name = ([c.program] + (c.subcommand.map { [$0] } ?? [])).joined(separator: " ")
            guard FileManager.default.isExecutableFile(atPath: path) else {
                problems.append("README.md:\(c.line): \(name): \(path) is not an executable")
                continue
            }
            // A program the README shows without flags need not have a --help (tools/fetch-minilm.sh).
            if flags.isEmpty && c.subcommand == nil { continue }
            let r = try Harness.run(path, args, timeout: 60)
            guard r.status == 0 else {
                problems.append("README.md:\(c.line): `\(name) --help` exited with \(r.status): \(r.output.suffix(300))")
                continue
            }
            // An unknown subcommand's --help is the parent's help (exit 0): its usage line says which.
            if let sub = c.subcommand, !r.output.contains("USAGE: \(c.program) \(sub)") {
                problems.append("README.md:\(c.line): `\(name)`: \(c.program) has no subcommand '\(sub)' (its --help is \(c.program)'s)")
                continue
            }
            for f in flags.sorted() where !helpMentions(r.output, f) {
                problems.append("README.md:\(c.line): `\(name)` is shown with \(f), which its --help does not mention")
            }
        }
        return problems
    }

    func testEveryCommandInTheReadmeParses() throws {
        try Harness.requireBinaries()
        let text = try String(contentsOf: Harness.root.appendingPathComponent("README.md"), encoding: .utf8)
        let cmds = Self.commands(inReadme: text)
        // The README's first two commands stay what they are.
        XCTAssertEqual(cmds.prefix(2).map(\.program), ["cluster/local.sh", "tools/test.sh"])
        XCTAssertGreaterThanOrEqual(Set(cmds.map(\.program)).count, 4, "the commands were found: \(cmds.map(\.program))")
        let problems = try Self.problems(readme: text)
        XCTAssertEqual(problems, [], problems.joined(separator: "\n"))
    }

    /// The check itself fails on a renamed flag, a removed subcommand and an unknown program.
    func testTheCheckCatchesARenamedFlagAMissingSubcommandAndAnUnknownProgram() throws {
        try Harness.requireBinaries()
        let readme = """
        ```sh
        cluster/local.sh --run-dir DIR --resume-form latest-good   # a typo of --resume-from
        psctl scale --run-dir DIR --scene shop \\
              --worker 3
        psctl rescale --run-dir DIR
        SCENEPS_BIN=$(swift build --show-bin-path) sceneps-run --fast
        ```
        """
        let cmds = Self.commands(inReadme: readme)
        XCTAssertEqual(cmds.map(\.program), ["cluster/local.sh", "psctl", "psctl", "swift", "sceneps-run"])
        XCTAssertEqual(cmds[1].flags, ["--run-dir", "--scene", "--worker"], "continuation lines joined")
        let p = try Self.problems(readme: readme)
        XCTAssertTrue(p.contains { $0.contains("cluster/local.sh") && $0.contains("--resume-form") }, "\(p)")
        XCTAssertTrue(p.contains { $0.contains("`psctl scale` is shown with --worker,") }, "a flag is a whole word (--workers exists): \(p)")
        XCTAssertFalse(p.contains { $0.contains("--run-dir") }, "flags that exist are not reported: \(p)")
        XCTAssertTrue(p.contains { $0.contains("psctl has no subcommand 'rescale'") }, "\(p)")
        XCTAssertTrue(p.contains { $0.contains("'sceneps-run'") }, "\(p)")
        XCTAssertEqual(p.count, 4, "\(p)")
    }
}
