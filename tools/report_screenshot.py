#!/usr/bin/env python3
"""Opens an HTML file in headless Chromium, takes a screenshot, and describes its pixels.

    tools/report_screenshot.py REPORT.html OUT.png [--size 1024x2600] [--colour '#1f77b4' ...]

Prints one JSON object: width, height, pixels, non_white (fraction of pixels that are not near-white),
distinct (distinct colours), colours ({"#rrggbb": pixels within 24 per channel of it}). Exit status 2 when
chromium is missing or fails (tools/install-deps.sh installs Debian's chromium), 3 when the PNG cannot be
decoded. Used by ReportTests (the report's pictures seen by a real browser). The PNG is decoded here with
zlib alone (8-bit RGB or RGBA, non-interlaced: what Chromium writes), so no imaging package is needed.
"""
import argparse, json, os, shutil, struct, subprocess, sys, tempfile, zlib


def decode_png(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    w, h, depth, ctype, _, _, interlace = ihdr
    if depth != 8 or ctype not in (2, 6) or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {ctype}, interlace {interlace}")
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(h):
        f = raw[i]; line = bytearray(raw[i + 1:i + 1 + stride]); i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1: line[x] = (line[x] + a) & 255
            elif f == 2: line[x] = (line[x] + b) & 255
            elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line)); prev = line
    return w, h, bpp, rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("html"); ap.add_argument("png")
    ap.add_argument("--size", default="1024x2600")
    ap.add_argument("--colour", action="append", default=[])
    ap.add_argument("--timeout", type=float, default=90)
    a = ap.parse_args()
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        print("report_screenshot: chromium is not installed (tools/install-deps.sh installs Debian's chromium)", file=sys.stderr)
        return 2
    w, h = a.size.split("x")
    with tempfile.TemporaryDirectory(prefix="sceneps-chromium-") as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               f"--user-data-dir={profile}", f"--window-size={w},{h}", f"--screenshot={os.path.abspath(a.png)}",
               "file://" + os.path.abspath(a.html)]
        try:
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=a.timeout,
                               env=dict(os.environ, HOME=profile))
        except subprocess.TimeoutExpired:
            print(f"report_screenshot: chromium did not finish within {a.timeout:.0f} s", file=sys.stderr)
            return 2
    if r.returncode != 0 or not os.path.exists(a.png):
        print(f"report_screenshot: chromium failed (status {r.returncode}): {r.stdout.decode(errors='replace')[-2000:]}", file=sys.stderr)
        return 2
    try:
        width, height, bpp, rows = decode_png(a.png)
    except Exception as e:  # a damaged or unexpected PNG
        print(f"report_screenshot: {a.png}: {e}", file=sys.stderr)
        return 3
    wanted = {c.lower(): tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in a.colour}
    counts = {c: 0 for c in wanted}
    non_white, distinct = 0, set()
    for line in rows:
        for x in range(0, len(line), bpp):
            p = (line[x], line[x + 1], line[x + 2])
            distinct.add(p)
            if min(p) < 235:
                non_white += 1
                for c, q in wanted.items():
                    if abs(p[0] - q[0]) <= 24 and abs(p[1] - q[1]) <= 24 and abs(p[2] - q[2]) <= 24:
                        counts[c] += 1
    n = width * height
    print(json.dumps({"width": width, "height": height, "pixels": n, "non_white": non_white / n,
                      "distinct": len(distinct), "colours": counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
