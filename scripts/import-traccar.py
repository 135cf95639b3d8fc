#!/usr/bin/env python3
"""Builds corpus/<protocol>/traccar/*.hex from shared/corpus/traccar/<protocol>.tsv.

One case per Traccar test method, rows in source order, because Traccar replays a method's
rows on one decoder and state (device id, last date, IMEI) carries between them. Each row
becomes its bytes (NMEA rows plus CR LF, as they are single lines without terminators),
preceded by a comment naming the row and what Traccar asserts. A method whose rows ran on a
connectionless (UDP) decoder gets `# transport: udp`, one datagram per row. Which methods
are taken, and why any are left out, is in corpus/<protocol>/traccar/README.md.
Expectations are written separately by `trackgate corpus bless` and read by a person before
they are committed.

usage: scripts/import-traccar.py nmea ../shared/corpus/traccar/nmea.tsv corpus/nmea/traccar
       scripts/import-traccar.py teltonika ../shared/corpus/traccar/teltonika.tsv corpus/teltonika/traccar
       scripts/import-traccar.py gt06 ../shared/corpus/traccar/gt06.tsv corpus/gt06/traccar
       scripts/import-traccar.py jt808 ../shared/corpus/traccar/jt808.tsv corpus/jt808/traccar

GT06 methods with a row whose CRC is wrong are written twice: as they are (strict decoding,
those rows are errors) and as `<case>-lenient.hex` with `# gt06-crc: lenient`.

JT808 protocol-decoder rows are frames after un-escaping (the TSV README says so): their inner
bytes are escaped again (7E -> 7D 02, 7D -> 7D 01) to give the bytes a terminal sends. Frame-
decoder rows are wire bytes already. The frame-encoder row (an encoder vector) and the JT/T 1078
media-stream rows (another protocol on another port) are left out.
"""
import csv
import os
import re
import sys

# NMEA: test methods whose rows reach a plain NMEA port: Traccar's generic NMEA decoder (T55, port
# 5005, the port trackgate's nmea listener takes over) and decoders whose rows are bare
# standard sentences. Other decoders wrap sentences in vendor envelopes.
TAKEN = {
    "T55ProtocolDecoderTest::testDecode",
    "T55ProtocolDecoderTest::testMaxonDecode",
    "T55ProtocolDecoderTest::testWmcsDecode",
    "GpsGateProtocolDecoderTest::testDecode",
    "ExtremTracProtocolDecoderTest::testDecode",
}


def unescape(s):
    out = bytearray()
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            if n in "\\rnt":
                out += {"\\": b"\\", "r": b"\r", "n": b"\n", "t": b"\t"}[n]
                i += 2
                continue
            if n == "x":
                out.append(int(s[i + 2 : i + 4], 16))
                i += 4
                continue
            if n == "u":
                out += chr(int(s[i + 2 : i + 6], 16)).encode("utf-8")
                i += 6
                continue
        out += c.encode("latin-1")
        i += 1
    return bytes(out)


def jt808_wire(data):
    """A Traccar JT808 message frame (un-escaped between its flags) as wire bytes."""
    if len(data) < 2 or data[0] != 0x7E or data[-1] != 0x7E:
        return data
    inner = data[1:-1].replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02")
    return b"\x7e" + inner + b"\x7e"


def main(protocol, tsv, outdir):
    rows = list(csv.DictReader(open(tsv, newline=""), delimiter="\t"))
    cases = {}
    for r in rows:
        method, n = r["source_test"].rsplit("#", 1)
        if protocol == "nmea" and method not in TAKEN:
            continue
        data = bytes.fromhex(r["payload"]) if r["encoding"] == "hex" else unescape(r["payload"])
        if protocol == "nmea" and not data.endswith(b"\n"):
            data += b"\r\n"
        if protocol == "jt808":
            if method.startswith("Jt1078") or method.startswith("Jt808FrameEncoder"):
                continue
            if method.startswith("Jt808ProtocolDecoder"):
                data = jt808_wire(data)
        cases.setdefault(method, []).append((int(n), r, data))
    os.makedirs(outdir, exist_ok=True)
    for method, items in cases.items():
        cls, meth = method.split("::")
        name = re.sub(r"(Protocol|Frame)DecoderTest$", lambda m: "-frame" if m.group(1) == "Frame" else "", cls).lower()
        name += "-" + re.sub(r"(?<!^)([A-Z])", r"-\1", meth).lower()
        udp = all(r["transport"] == "udp" for _, r, _ in items)
        variants = [(name, None)]
        if protocol == "gt06" and any("crc=BAD" in r["note"] for _, r, _ in items):
            variants.append((name + "-lenient", "# gt06-crc: lenient\n"))
        for case, header in variants:
            with open(os.path.join(outdir, case + ".hex"), "w") as f:
                if udp:
                    f.write("# transport: udp\n")
                if header:
                    f.write(header)
                f.write(f"# Traccar {method}, rows in source order (see README.md and NOTICE)\n")
                for n, r, data in sorted(items, key=lambda x: x[0]):
                    if protocol == "nmea":
                        what = r["payload"] if r["encoding"] == "ascii" else "(hex) " + r["payload"][:60]
                    else:
                        what = r["note"][:110]
                    f.write(f"\n# #{n} traccar expects {r['expect']}: {what}\n")
                    f.write(data.hex() + "\n")
            print(f"{case}.hex: {len(items)} rows")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
