import CZeroMQ
import Foundation
import ScenePSCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One CURVE key pair (32-byte keys; Z85 text is 40 characters).
public struct CurveKeyPair: Sendable, Equatable {
    public let publicKey: [UInt8]
    public let secretKey: [UInt8]

    /// A fresh pair from libzmq (`zmq_curve_keypair`).
    public static func generate() throws -> CurveKeyPair {
        var pub = [CChar](repeating: 0, count: 41), sec = [CChar](repeating: 0, count: 41)
        try zmqCall("zmq_curve_keypair") { zmq_curve_keypair(&pub, &sec) }
        return CurveKeyPair(publicKey: try CurveKeys.decode(String(cString: pub), what: "generated public key"),
                            secretKey: try CurveKeys.decode(String(cString: sec), what: "generated secret key"))
    }

    /// The pair of a secret key (`zmq_curve_public`).
    public init(secretKey: [UInt8]) throws {
        precondition(secretKey.count == 32)
        let z = CurveKeys.encode(secretKey)
        var pub = [CChar](repeating: 0, count: 41)
        try zmqCall("zmq_curve_public") { zmq_curve_public(&pub, z) }
        self.publicKey = try CurveKeys.decode(String(cString: pub), what: "derived public key")
        self.secretKey = secretKey
    }

    init(publicKey: [UInt8], secretKey: [UInt8]) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }
}

/// What a client socket needs: its own pair and the server's public key.
public struct CurveClientKeys: Sendable, Equatable {
    public let client: CurveKeyPair
    public let serverPublicKey: [UInt8]
    public let role: PeerRole
    public init(client: CurveKeyPair, serverPublicKey: [UInt8], role: PeerRole) {
        self.client = client
        self.serverPublicKey = serverPublicKey
        self.role = role
    }
}

/// What a server socket (a parameter server, the coordinator) needs: its
/// pair and the public keys it accepts, each with its role.
public struct CurveServerKeys: Sendable, Equatable {
    public let server: CurveKeyPair
    /// Z85 text of an accepted public key → its role.
    public let authorized: [String: PeerRole]
    public init(server: CurveKeyPair, authorized: [String: PeerRole]) {
        self.server = server
        self.authorized = authorized
    }
}

/// A job's key directory, as `psctl keys --out DIR` writes it (every file
/// mode 0600):
///
///     server.key     the servers' and the coordinator's secret key (Z85, one line)
///     server.pub     its public key: clients need it to connect
///     admin.key      the admin client's secret key (supervisor, psctl, coordinator)
///     worker.key     the workers' secret key
///     authorized     accepted clients, one `ROLE Z85-PUBLIC-KEY` a line (lines starting with `#` are comments)
///
/// Each process reads only what its part needs: a worker host needs
/// `worker.key` and `server.pub`; a server needs `server.key` and
/// `authorized`. Every read checks the file exists, is readable, is not
/// readable by group or others, and holds a key that parses; the error
/// names the file (and line).
public enum CurveKeys {
    public static let serverSecretFile = "server.key"
    public static let serverPublicFile = "server.pub"
    public static let authorizedFile = "authorized"
    public static func secretFile(_ role: PeerRole) -> String { "\(role.rawValue).key" }

    /// True when the linked libzmq was built with CURVE (`zmq_has("curve")`).
    public static var available: Bool { zmq_has("curve") != 0 }

    static func requireCurve() throws {
        guard available else {
            throw ScenePSError.config("this libzmq (\(ZMQLibrary.version)) was built without CURVE security (zmq_has(\"curve\") is 0); install a libzmq with libsodium/tweetnacl support")
        }
    }

    /// Z85 text of a 32-byte key.
    public static func encode(_ key: [UInt8]) -> String {
        precondition(key.count == 32)
        var out = [CChar](repeating: 0, count: 41)
        _ = key.withUnsafeBufferPointer { zmq_z85_encode(&out, $0.baseAddress, 32) }
        return String(cString: out)
    }

    /// A 32-byte key from its 40-character Z85 text; throws naming `what`.
    public static func decode(_ text: String, what: String) throws -> [UInt8] {
        let t = text.trimmingCharacters(in: .whitespaces)
        guard t.utf8.count == 40 else {
            throw ScenePSError.config("\(what): not a CURVE key: expected 40 Z85 characters, got \(t.utf8.count)")
        }
        var out = [UInt8](repeating: 0, count: 32)
        guard zmq_z85_decode(&out, t) != nil else {
            throw ScenePSError.config("\(what): not a CURVE key: '\(t)' is not Z85 text")
        }
        return out
    }

    // MARK: reading

    /// The lines of a key file, after checking it exists, is readable and is
    /// private to its owner (no group/world permission bits).
    static func readPrivate(_ path: String) throws -> [Substring] {
        var st = stat()
        guard stat(path, &st) == 0 else {
            let why = String(cString: strerror(errno))
            throw ScenePSError.config("key file \(path): \(why) (make the job's keys with `psctl keys --out DIR`)")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw ScenePSError.config("key file \(path): not a regular file") }
        let loose = Int(st.st_mode) & 0o077
        guard loose == 0 else {
            throw ScenePSError.config(String(format: "key file %@: mode %04o lets group or others read it; run chmod 600 %@", path, Int(st.st_mode) & 0o7777, path))
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ScenePSError.config("key file \(path): cannot be read (permission denied?)")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw ScenePSError.config("key file \(path): not UTF-8 text") }
        return text.split(separator: "\n", omittingEmptySubsequences: false)
    }

    /// The one key of a single-key file (first non-empty line).
    static func readKey(_ path: String) throws -> [UInt8] {
        let lines = try readPrivate(path)
        guard let (n, line) = lines.enumerated().first(where: { !$0.element.trimmingCharacters(in: .whitespaces).isEmpty }) else {
            throw ScenePSError.config("key file \(path): empty (expected one 40-character Z85 key)")
        }
        return try decode(String(line), what: "key file \(path):\(n + 1)")
    }

    /// A client's keys for `role` from `dir`: `ROLE.key` and `server.pub`.
    public static func client(dir: String, role: PeerRole) throws -> CurveClientKeys {
        try requireCurve()
        let secret = try readKey(path(dir, secretFile(role)))
        let server = try readKey(path(dir, serverPublicFile))
        return CurveClientKeys(client: try CurveKeyPair(secretKey: secret), serverPublicKey: server, role: role)
    }

    /// A server's keys from `dir`: `server.key` and the `authorized` list.
    public static func server(dir: String) throws -> CurveServerKeys {
        try requireCurve()
        let secret = try readKey(path(dir, serverSecretFile))
        let file = path(dir, authorizedFile)
        var authorized: [String: PeerRole] = [:]
        for (i, raw) in try readPrivate(file).enumerated() {
            // Z85 keys may hold '#': only a line that starts with it is a comment.
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            let at = "\(file):\(i + 1)"
            guard fields.count == 2 else {
                throw ScenePSError.config("\(at): expected `ROLE PUBLIC-KEY` (ROLE admin or worker), got \(fields.count) fields")
            }
            guard let role = PeerRole(rawValue: String(fields[0])) else {
                throw ScenePSError.config("\(at): unknown role '\(fields[0])' (admin or worker)")
            }
            let key = try decode(String(fields[1]), what: at)
            authorized[encode(key)] = role
        }
        guard !authorized.isEmpty else { throw ScenePSError.config("\(file): lists no client key, so no client could connect") }
        return CurveServerKeys(server: try CurveKeyPair(secretKey: secret), authorized: authorized)
    }

    static func path(_ dir: String, _ name: String) -> String { (dir as NSString).appendingPathComponent(name) }

    // MARK: writing

    /// Writes a fresh key set into `dir` (created mode 0700 if missing);
    /// refuses to overwrite existing key files. Returns the files written.
    @discardableResult
    public static func generate(into dir: String) throws -> [String] {
        try requireCurve()
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let names = [serverSecretFile, serverPublicFile, secretFile(.admin), secretFile(.worker), authorizedFile]
        for n in names where fm.fileExists(atPath: path(dir, n)) {
            throw ScenePSError.config("\(path(dir, n)) exists: refusing to overwrite a job's keys (remove the directory's key files first)")
        }
        let server = try CurveKeyPair.generate(), admin = try CurveKeyPair.generate(), worker = try CurveKeyPair.generate()
        let contents: [(String, String)] = [
            (serverSecretFile, encode(server.secretKey) + "\n"),
            (serverPublicFile, encode(server.publicKey) + "\n"),
            (secretFile(.admin), encode(admin.secretKey) + "\n"),
            (secretFile(.worker), encode(worker.secretKey) + "\n"),
            (authorizedFile, "# ROLE PUBLIC-KEY: the clients the servers and the coordinator accept (docs/SECURITY.md)\n"
                + "admin \(encode(admin.publicKey))\nworker \(encode(worker.publicKey))\n"),
        ]
        var written: [String] = []
        for (name, text) in contents {
            let p = path(dir, name)
            let fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0o600)
            guard fd >= 0 else { throw ScenePSError.io("cannot create \(p): \(String(cString: strerror(errno)))") }
            let bytes = Array(text.utf8)
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            let synced = fsync(fd) == 0
            close(fd)
            guard n == bytes.count, synced else { throw ScenePSError.io("cannot write \(p): \(String(cString: strerror(errno)))") }
            written.append(p)
        }
        return written
    }
}
