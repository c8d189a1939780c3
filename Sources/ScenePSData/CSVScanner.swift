import ScenePSCore

/// A fast CSV record scanner over bytes in memory (RFC 4180: comma
/// separated, optional double quotes with `""` escapes, LF, CRLF or a lone
/// CR as line end, an optional UTF-8 byte-order mark). It hands out byte
/// ranges, never Strings, so preparation can hash ids straight from the file.
///
/// Blank lines are skipped (as Python's `csv` module does); `lineNumber` is
/// the 1-based line of the file where the current record starts (header =
/// line 1), which is what every error message names.
///
/// Only valid inside the `MappedFile.withBytes` closure that produced `bytes`.
struct CSVScanner {
    struct Field {
        var start: Int
        var end: Int
        var quoted: Bool      // contains `""` escapes to undo
    }

    let bytes: UnsafeRawBufferPointer
    private(set) var position = 0
    private(set) var lineNumber = 0      // line of the current record
    private var nextLine = 1             // line at `position`
    var fields: [Field] = []
    private var scratch: [UInt8] = []
    /// Set when the last record had an unterminated quote.
    private(set) var unterminatedQuote = false

    init(bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
        fields.reserveCapacity(16)
        // Skip a UTF-8 byte-order mark.
        if bytes.count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF {
            position = 3
        }
    }

    var atEnd: Bool { position >= bytes.count }

    /// Reads the next non-blank record into `fields`. Returns false at the end.
    mutating func next() -> Bool {
        fields.removeAll(keepingCapacity: true)
        unterminatedQuote = false
        let n = bytes.count
        // Skip blank lines.
        while position < n {
            let b = bytes[position]
            if b == 10 { position += 1; nextLine += 1; continue }
            if b == 13 {   // CRLF: the LF counts the line; a lone CR (old Mac files) ends one itself
                if position + 1 >= n || bytes[position + 1] != 10 { nextLine += 1 }
                position += 1
                continue
            }
            break
        }
        guard position < n else { return false }
        lineNumber = nextLine
        var p = position
        while true {
            if p < n && bytes[p] == 34 {   // quoted field
                var q = p + 1
                var escaped = false
                var closed = false
                while q < n {
                    let b = bytes[q]
                    if b == 34 {
                        if q + 1 < n && bytes[q + 1] == 34 { escaped = true; q += 2; continue }
                        closed = true
                        break
                    }
                    if b == 10 || (b == 13 && (q + 1 >= n || bytes[q + 1] != 10)) { nextLine += 1 }
                    q += 1
                }
                if !closed { unterminatedQuote = true }
                fields.append(Field(start: p + 1, end: min(q, n), quoted: escaped))
                p = min(q + 1, n)
                // Anything up to the next separator or line end after the closing quote is kept out.
                while p < n && bytes[p] != 44 && bytes[p] != 10 && bytes[p] != 13 { p += 1 }
            } else {
                var q = p
                while q < n {
                    let b = bytes[q]
                    if b == 44 || b == 10 || b == 13 { break }
                    q += 1
                }
                fields.append(Field(start: p, end: q, quoted: false))
                p = q
            }
            if p >= n { position = n; break }
            if bytes[p] == 44 { p += 1; continue }
            // Line end: LF, CRLF or a lone CR.
            position = bytes[p] == 13 && p + 1 < n && bytes[p + 1] == 10 ? p + 2 : p + 1
            nextLine += 1
            break
        }
        return true
    }

    /// The bytes of field `i` of the current record, unescaped.
    mutating func withField<R>(_ i: Int, _ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
        let f = fields[i]
        let base = UnsafeMutableRawPointer(mutating: bytes.baseAddress!).bindMemory(to: UInt8.self, capacity: bytes.count)
        if !f.quoted {
            return try body(UnsafeBufferPointer(start: base + f.start, count: f.end - f.start))
        }
        scratch.removeAll(keepingCapacity: true)
        var k = f.start
        while k < f.end {
            let b = base[k]
            scratch.append(b)
            k += (b == 34 && k + 1 < f.end && base[k + 1] == 34) ? 2 : 1
        }
        return try scratch.withUnsafeBufferPointer { try body($0) }
    }

    mutating func string(_ i: Int) -> String {
        withField(i) { String(decoding: $0, as: UTF8.self) }
    }

    func isEmpty(_ i: Int) -> Bool { fields[i].end <= fields[i].start }

    /// Parses field `i` as a decimal integer (optional sign, optional
    /// surrounding spaces); nil when it is not one or overflows.
    func int64(_ i: Int) -> Int64? {
        let f = fields[i]
        var p = f.start
        var e = f.end
        while p < e && bytes[p] == 32 { p += 1 }
        while e > p && bytes[e - 1] == 32 { e -= 1 }
        guard p < e else { return nil }
        var negative = false
        if bytes[p] == 45 || bytes[p] == 43 {
            negative = bytes[p] == 45
            p += 1
            guard p < e else { return nil }
        }
        var v: Int64 = 0
        while p < e {
            let d = Int64(bytes[p]) - 48
            guard d >= 0 && d <= 9 else { return nil }
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(d)
            guard !o1 && !o2 else { return nil }
            v = s
            p += 1
        }
        return negative ? -v : v
    }

    /// Label: "0", "1", "0.0" or "1.0" (surrounding spaces allowed); nil otherwise.
    func label(_ i: Int) -> UInt8? {
        let f = fields[i]
        var p = f.start
        var e = f.end
        while p < e && bytes[p] == 32 { p += 1 }
        while e > p && bytes[e - 1] == 32 { e -= 1 }
        let len = e - p
        guard len == 1 || len == 3 else { return nil }
        let d = bytes[p]
        guard d == 48 || d == 49 else { return nil }
        if len == 3 { guard bytes[p + 1] == 46 && bytes[p + 2] == 48 else { return nil } }
        return d - 48
    }

    /// Field `i` as a Double; nil when it is not a number. "0.ddd…" (up to 15
    /// fraction digits) is parsed directly — one correctly rounded division,
    /// the same value as the standard parser — anything else by the standard library.
    mutating func double(_ i: Int) -> Double? {
        let f = fields[i]
        let len = f.end - f.start
        if len >= 3 && len <= 17 && bytes[f.start] == 48 && bytes[f.start + 1] == 46 {
            var frac: UInt64 = 0
            var scale: Double = 1
            var ok = true
            for k in (f.start + 2)..<f.end {
                let d = bytes[k] &- 48
                if d > 9 { ok = false; break }
                frac = frac * 10 + UInt64(d)
                scale *= 10
            }
            if ok { return Double(frac) / scale }
        }
        return slowDouble(i)
    }

    private mutating func slowDouble(_ i: Int) -> Double? {
        let s = string(i).trimmingSpaces
        return Double(s)
    }
}

/// A header row's columns found by name, in any order: the indices of the
/// columns a reader needs, and the names of those it does not use (ignored,
/// and said so), or an error naming the file and the missing column.
struct CSVHeader {
    /// Field index of each of `required`, in that order.
    var required: [Int]
    /// Field index of each of `optional`, nil when absent.
    var optional: [Int?]
    /// Header names that are none of the above.
    var ignored: [String]
    /// Fields a data row must have (the header's).
    var width: Int

    /// Reads the current record of `csv` (the header of `path`).
    init(_ csv: inout CSVScanner, path: String, required names: [String], optional optionalNames: [String] = []) throws {
        let header = (0..<csv.fields.count).map { csv.string($0).trimmingSpaces }
        var seen: [String: Int] = [:]
        for (i, name) in header.enumerated() where names.contains(name) || optionalNames.contains(name) {
            guard seen[name] == nil else {
                throw ScenePSError.data("\(path):1: column \(name) appears twice in the header")
            }
            seen[name] = i
        }
        let missing = names.filter { seen[$0] == nil }
        guard missing.isEmpty else {
            throw ScenePSError.data("\(path):1: missing column(s) \(missing.joined(separator: ", ")) in the header " +
                                    "(need \((names + optionalNames).joined(separator: ",")), in any order; found \(header.joined(separator: ",")))")
        }
        required = names.map { seen[$0]! }
        optional = optionalNames.map { seen[$0] }
        ignored = header.filter { seen[$0] == nil }
        width = header.count
    }

    /// The note printed for ignored columns, nil when there are none.
    func note(path: String) -> String? {
        ignored.isEmpty ? nil : "note: \(path):1: column(s) \(ignored.map { $0.isEmpty ? "\"\"" : $0 }.joined(separator: ", ")) not used, ignored"
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}
