import Foundation

/// A small SVG chart renderer for `psctl report`: one plot with axes, "nice" ticks, polylines,
/// point markers, vertical event markers, shaded bands and a legend, written as plain SVG
/// (no script, no external resources), so a browser shows it inline in HTML and any XML parser reads it.
///
/// Every drawn series is one `<polyline>` (or, for points only, one `<g>` of `<circle>`s) carrying
/// `data-series="NAME"` and, for polylines, `data-points="N"`; every event marker is a `<g class="marker"
/// data-kind="KIND">` with a `<title>` (the browser's tooltip). Tests read the charts through these.
struct SVGChart {
    enum Style { case line, points, lineAndPoints }

    struct Series {
        var name: String
        var points: [(x: Double, y: Double)]
        var color: String
        /// SVG `stroke-dasharray`, e.g. "6 4"; nil: solid.
        var dash: String? = nil
        var style: Style = .line
        /// Tooltips for the points (same count as `points`), drawn only with points.
        var notes: [String]? = nil
    }

    /// A vertical line at `x` across the plot, with a short `label` at its top and `detail` as tooltip.
    struct Marker {
        var x: Double
        var label: String
        var detail: String
        var color: String
        var kind: String
        var dash: String? = "3 3"
    }

    /// A shaded span of x (an epoch on a time axis), with a label at its top.
    struct Band {
        var x0: Double, x1: Double
        var label: String
        var color: String
    }

    var id: String
    var title: String
    var xLabel: String
    var yLabel: String
    var series: [Series] = []
    var markers: [Marker] = []
    var bands: [Band] = []
    /// Fixed domains; nil: from the data (the y domain padded, the x domain exact).
    var xDomain: ClosedRange<Double>? = nil
    var yDomain: ClosedRange<Double>? = nil
    /// Category names for y (a timeline's lanes): lane i is drawn at y = i, top to bottom.
    var yCategories: [String]? = nil
    /// Integer ticks only on x (epochs).
    var integerX = false
    var width = 920.0
    var height = 340.0

    // Layout (pixels): the plot area inside the margins.
    var left: Double { yCategories == nil ? 64 : 110 }
    let right = 20.0, top = 44.0
    var legendRows: Int { legendLayout().rows }
    var bottom: Double { 46 + Double(legendRows) * 18 }
    var plotWidth: Double { width - left - right }
    var plotHeight: Double { height - top - bottom }

    /// Colours for series i (Tableau 10), distinguishable on white.
    static let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
    static func color(_ i: Int) -> String { palette[((i % palette.count) + palette.count) % palette.count] }

    func render() -> String {
        let (xd, yd) = domains()
        func px(_ x: Double) -> Double { left + (xd.upperBound == xd.lowerBound ? 0.5 : (x - xd.lowerBound) / (xd.upperBound - xd.lowerBound)) * plotWidth }
        func py(_ y: Double) -> Double {
            if yCategories != nil { return top + (y + 0.5) / Double(max(1, yCategories!.count)) * plotHeight }
            return top + (1 - (yd.upperBound == yd.lowerBound ? 0.5 : (y - yd.lowerBound) / (yd.upperBound - yd.lowerBound))) * plotHeight
        }
        var o = "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"\(esc(id))\" width=\"\(f(width))\" height=\"\(f(height))\" viewBox=\"0 0 \(f(width)) \(f(height))\" font-family=\"sans-serif\" font-size=\"11\">\n"
        o += "<title>\(esc(title))</title>\n"
        o += "<rect x=\"0\" y=\"0\" width=\"\(f(width))\" height=\"\(f(height))\" fill=\"#ffffff\"/>\n"
        o += "<text x=\"\(f(left))\" y=\"18\" font-size=\"14\" font-weight=\"bold\">\(esc(title))</text>\n"
        // Bands first (under everything), clipped to the domain.
        for b in bands {
            let x0 = px(max(xd.lowerBound, b.x0)), x1 = px(min(xd.upperBound, b.x1))
            guard x1 > x0 else { continue }
            o += "<g class=\"band\"><rect x=\"\(f(x0))\" y=\"\(f(top))\" width=\"\(f(x1 - x0))\" height=\"\(f(plotHeight))\" fill=\"\(b.color)\"/>"
            o += "<text x=\"\(f((x0 + x1) / 2))\" y=\"\(f(top + 11))\" text-anchor=\"middle\" fill=\"#777777\" font-size=\"10\">\(esc(b.label))</text></g>\n"
        }
        // Grid and ticks.
        o += "<g class=\"axes\" stroke=\"#dddddd\">\n"
        let xt = ticks(xd, count: 8, integer: integerX)
        for t in xt {
            o += "<line x1=\"\(f(px(t)))\" y1=\"\(f(top))\" x2=\"\(f(px(t)))\" y2=\"\(f(top + plotHeight))\"/>\n"
        }
        if let cats = yCategories {
            for i in cats.indices { o += "<line x1=\"\(f(left))\" y1=\"\(f(py(Double(i))))\" x2=\"\(f(left + plotWidth))\" y2=\"\(f(py(Double(i))))\"/>\n" }
        } else {
            for t in ticks(yd, count: 6, integer: false) {
                o += "<line x1=\"\(f(left))\" y1=\"\(f(py(t)))\" x2=\"\(f(left + plotWidth))\" y2=\"\(f(py(t)))\"/>\n"
            }
        }
        o += "</g>\n"
        o += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotWidth))\" height=\"\(f(plotHeight))\" fill=\"none\" stroke=\"#444444\"/>\n"
        o += "<g class=\"ticks\" fill=\"#333333\">\n"
        let xStep = xt.count > 1 ? xt[1] - xt[0] : 1
        for t in xt {
            o += "<text x=\"\(f(px(t)))\" y=\"\(f(top + plotHeight + 14))\" text-anchor=\"middle\">\(esc(label(t, step: xStep)))</text>\n"
        }
        if let cats = yCategories {
            for (i, c) in cats.enumerated() {
                o += "<text x=\"\(f(left - 6))\" y=\"\(f(py(Double(i)) + 4))\" text-anchor=\"end\">\(esc(c))</text>\n"
            }
        } else {
            let yt = ticks(yd, count: 6, integer: false)
            let yStep = yt.count > 1 ? yt[1] - yt[0] : 1
            for t in yt { o += "<text x=\"\(f(left - 6))\" y=\"\(f(py(t) + 4))\" text-anchor=\"end\">\(esc(label(t, step: yStep)))</text>\n" }
        }
        o += "</g>\n"
        o += "<text x=\"\(f(left + plotWidth / 2))\" y=\"\(f(top + plotHeight + 30))\" text-anchor=\"middle\" fill=\"#333333\">\(esc(xLabel))</text>\n"
        if yCategories == nil {
            o += "<text transform=\"translate(14 \(f(top + plotHeight / 2))) rotate(-90)\" text-anchor=\"middle\" fill=\"#333333\">\(esc(yLabel))</text>\n"
        }
        // Markers: a vertical line, its label at the top, its detail as a tooltip.
        for m in markers where xd.contains(m.x) {
            let x = px(m.x)
            o += "<g class=\"marker\" data-kind=\"\(esc(m.kind))\"><title>\(esc(m.detail))</title>"
            o += "<line x1=\"\(f(x))\" y1=\"\(f(top))\" x2=\"\(f(x))\" y2=\"\(f(top + plotHeight))\" stroke=\"\(m.color)\" stroke-width=\"1.5\""
                + (m.dash.map { " stroke-dasharray=\"\($0)\"" } ?? "") + "/>"
            o += "<text x=\"\(f(x + 2))\" y=\"\(f(top - 4))\" fill=\"\(m.color)\" font-size=\"10\">\(esc(m.label))</text></g>\n"
        }
        // Series, clipped to the plot area.
        o += "<clipPath id=\"\(esc(id))-clip\"><rect x=\"\(f(left))\" y=\"\(f(top - 4))\" width=\"\(f(plotWidth))\" height=\"\(f(plotHeight + 8))\"/></clipPath>\n"
        o += "<g clip-path=\"url(#\(esc(id))-clip)\">\n"
        for s in series {
            let pts = s.points.filter { $0.x.isFinite && $0.y.isFinite }
            if s.style != .points && !pts.isEmpty {
                let coords = pts.map { "\(f(px($0.x))),\(f(py($0.y)))" }.joined(separator: " ")
                o += "<polyline data-series=\"\(esc(s.name))\" data-points=\"\(pts.count)\" points=\"\(coords)\" fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"2\" stroke-linejoin=\"round\""
                    + (s.dash.map { " stroke-dasharray=\"\($0)\"" } ?? "") + "/>\n"
            }
            if s.style != .line && !pts.isEmpty {
                o += "<g data-series=\"\(esc(s.name))\" data-points=\"\(pts.count)\" fill=\"\(s.color)\">"
                for (i, p) in pts.enumerated() {
                    let note = s.notes.flatMap { i < $0.count ? $0[i] : nil }
                    o += "<circle cx=\"\(f(px(p.x)))\" cy=\"\(f(py(p.y)))\" r=\"\(s.style == .points ? 5 : 3)\">" + (note.map { "<title>\(esc($0))</title>" } ?? "") + "</circle>"
                }
                o += "</g>\n"
            }
        }
        o += "</g>\n"
        // Legend, below the axis label.
        let lay = legendLayout()
        for (i, s) in series.enumerated() {
            let (row, x) = lay.positions[i]
            let y = top + plotHeight + 48 + Double(row) * 18
            o += "<g class=\"legend\"><line x1=\"\(f(left + x))\" y1=\"\(f(y - 4))\" x2=\"\(f(left + x + 22))\" y2=\"\(f(y - 4))\" stroke=\"\(s.color)\" stroke-width=\"\(s.style == .points ? 8 : 2.5)\""
                + (s.dash.map { " stroke-dasharray=\"\($0)\"" } ?? "") + "/>"
            o += "<text x=\"\(f(left + x + 26))\" y=\"\(f(y))\">\(esc(s.name))</text></g>\n"
        }
        o += "</svg>\n"
        return o
    }

    /// Where each legend entry goes: rows of entries that fit the plot's width.
    func legendLayout() -> (rows: Int, positions: [(Int, Double)]) {
        var row = 0, x = 0.0
        var out: [(Int, Double)] = []
        for s in series {
            let w = 34 + Double(s.name.count) * 6.2
            if x > 0 && x + w > plotWidth { row += 1; x = 0 }
            out.append((row, x))
            x += w + 10
        }
        return (series.isEmpty ? 0 : row + 1, out)
    }

    func domains() -> (ClosedRange<Double>, ClosedRange<Double>) {
        let all = series.flatMap(\.points).filter { $0.x.isFinite && $0.y.isFinite }
        var xd = xDomain ?? {
            let xs = all.map(\.x) + markers.map(\.x) + bands.flatMap { [$0.x0, $0.x1] }
            guard let lo = xs.min(), let hi = xs.max() else { return 0...1 }
            return lo...hi
        }()
        if xd.upperBound == xd.lowerBound { xd = (xd.lowerBound - 1)...(xd.upperBound + 1) }
        if yCategories != nil { return (xd, 0...1) }
        var yd = yDomain ?? {
            guard let lo = all.map(\.y).min(), let hi = all.map(\.y).max() else { return 0...1 }
            let pad = max((hi - lo) * 0.08, abs(hi) * 0.01, 1e-9)
            return (lo - pad)...(hi + pad)
        }()
        if yd.upperBound == yd.lowerBound { yd = (yd.lowerBound - 1)...(yd.upperBound + 1) }
        return (xd, yd)
    }

    /// About `count` round tick values inside `d` (steps of 1, 2 or 5 times a power of ten).
    func ticks(_ d: ClosedRange<Double>, count: Int, integer: Bool) -> [Double] {
        let span = d.upperBound - d.lowerBound
        guard span > 0, span.isFinite else { return [d.lowerBound] }
        let raw = span / Double(max(1, count - 1))
        let mag = pow(10, floor(log10(raw)))
        var step = [1.0, 2, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? 10 * mag
        if integer { step = max(1, step.rounded()) }
        var t = (d.lowerBound / step).rounded(.up) * step
        var out: [Double] = []
        while t <= d.upperBound + step * 1e-9 && out.count < 50 { out.append(t); t += step }
        return out
    }

    func label(_ v: Double, step: Double) -> String {
        let decimals = max(0, min(6, Int(-floor(log10(step)))))
        let s = String(format: "%.\(decimals)f", v)
        return s == "-0" ? "0" : s
    }

    func f(_ v: Double) -> String { String(format: "%.1f", v) }
}

/// `s` safe in XML/HTML text and attribute values.
func esc(_ s: String) -> String {
    var o = ""
    o.reserveCapacity(s.count)
    for c in s {
        switch c {
        case "&": o += "&amp;"
        case "<": o += "&lt;"
        case ">": o += "&gt;"
        case "\"": o += "&quot;"
        case "'": o += "&#39;"
        default:
            // Control characters other than tab and newline are not allowed in XML 1.0.
            if let a = c.asciiValue, a < 0x20, a != 0x09, a != 0x0A { o += " " } else { o.append(c) }
        }
    }
    return o
}
