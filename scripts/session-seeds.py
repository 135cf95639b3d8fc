#!/usr/bin/env python3
"""Writes fuzz/seeds/session from the corpus: each case becomes one session input (the
configuration byte, the case's bytes as reads of up to 240 bytes or one datagram per line,
then the end of the stream). See fuzz/fuzz_targets/session.rs for the input format."""
import hashlib
import pathlib
import re

root = pathlib.Path(__file__).resolve().parent.parent
out = root / "fuzz" / "seeds" / "session"
out.mkdir(parents=True, exist_ok=True)
protocols = ["gt06", "jt808", "teltonika", "nmea"]

for index, protocol in enumerate(protocols):
    for case in sorted((root / "corpus" / protocol).glob("*/*.hex")):
        text = case.read_text()
        udp = re.search(r"^#\s*transport:\s*udp", text, re.M) is not None
        lines = [re.sub(r"#.*", "", l) for l in text.splitlines()]
        chunks = []
        if udp:
            chunks = [bytes.fromhex("".join(l.split())) for l in lines if l.strip()]
        else:
            data = bytes.fromhex("".join("".join(lines).split()))
            chunks = [data[i:i + 240] for i in range(0, len(data), 240)]
        # Junk limit 1984 (31 * 64), near the gateway's default of 2048.
        config = index | (4 if udp else 0) | (31 << 3)
        seed = bytearray([config])
        for c in chunks:
            for i in range(0, len(c), 240):
                piece = c[i:i + 240]
                if not piece:
                    continue
                seed.append(len(piece) - 1)
                seed += piece
        seed.append(0xF0)
        if len(seed) > 64 * 1024:
            continue
        name = hashlib.sha1(seed).hexdigest()[:16]
        (out / name).write_bytes(seed)
print(len(list(out.iterdir())), "seeds in", out)
