#!/usr/bin/env python3
"""png_check.py: reads a PNG with the standard library only (8-bit RGB/RGBA, non-interlaced,
what Chromium's --screenshot writes) and checks that a page rendered:

  png_check.py stats FILE W H [RRGGBB]... fails unless the image is W x H, at least 2% of its pixels
                                         are not background, it holds at least 8 colours, and each
                                         colour listed covers at least 20 pixels (a plot's series
                                         drawn, not an error page)
  png_check.py band FILE Y0 Y1 MINFRAC   fails unless rows Y0..Y1 have at least MINFRAC non-white
                                         pixels (a part of the page is drawn, not blank)
  png_check.py crop FILE Y0 Y1 OUT       writes rows Y0..Y1 to OUT (to look at one part)
"""
import struct
import sys
import zlib


def read_png(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise SystemExit(f"{path}: not a PNG file")
    pos, idat = 8, b""
    w = h = ctype = None
    while pos < len(data):
        n, = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or ctype not in (2, 6) or interlace:
                raise SystemExit(f"{path}: only 8-bit RGB/RGBA non-interlaced PNGs are read here")
        elif kind == b"IDAT":
            idat += body
    bpp = 3 if ctype == 2 else 4
    raw, stride = zlib.decompress(idat), w * bpp
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(h):
        f = raw[i]
        line = bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, bpp, rows


def ink(rows, bpp, y0, y1):
    """Fraction of pixels in rows y0..y1 that are not near-white, and the set of colours seen."""
    n = drawn = 0
    colours = set()
    for r in rows[y0:y1]:
        for x in range(0, len(r), bpp * 2):  # every other pixel: enough for a fraction
            px = r[x:x + 3]
            n += 1
            if min(px) < 235:
                drawn += 1
            if len(colours) < 4096:
                colours.add(bytes(px))
    return drawn / max(n, 1), colours


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    w, h, bpp, rows = read_png(path)
    if cmd == "stats":
        ew, eh = int(sys.argv[3]), int(sys.argv[4])
        frac, colours = ink(rows, bpp, 0, h)
        print(f"{w}x{h}, {100 * frac:.1f}% drawn, {len(colours)} colours")
        if (w, h) != (ew, eh):
            raise SystemExit(f"FAIL: the screenshot is {w}x{h}, expected {ew}x{eh}")
        if frac < 0.02 or len(colours) < 8:
            raise SystemExit("FAIL: the screenshot is (nearly) blank")
        for hexc in sys.argv[5:]:
            want = bytes.fromhex(hexc)
            count = sum(r[x:x + 3] == want for r in rows for x in range(0, len(r), bpp))
            if count < 20:
                raise SystemExit(f"FAIL: colour #{hexc} covers {count} pixels: the plots did not render")
    elif cmd == "band":
        y0, y1, minfrac = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
        frac, _ = ink(rows, bpp, y0, y1)
        if frac < minfrac:
            raise SystemExit(f"FAIL: rows {y0}..{y1} are {100 * frac:.2f}% drawn, expected at least {100 * minfrac:.2f}%")
    elif cmd == "crop":
        y0, y1, out = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
        raw = b"".join(b"\0" + r for r in rows[y0:y1])

        def chunk(kind, body):
            return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xffffffff)
        hdr = struct.pack(">IIBBBBB", w, y1 - y0, 8, 2 if bpp == 3 else 6, 0, 0, 0)
        open(out, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", hdr) + chunk(b"IDAT", zlib.compress(raw)) +
                              chunk(b"IEND", b""))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
