#!/usr/bin/env python3
"""Turns the benches' output into the figures of BENCHMARKS.md: one table and one chart per
protocol (trackgate's rows beside the peers', throughput on the same bytes), and the gateway's
records per core-second by frames per write.

  cargo bench -p trackgate-benches --bench nmea      # (and teltonika, gt06, jt808, corpus)
  scripts/gateway-curve.sh                           # writes benches/results/gateway.csv
  scripts/bench-report.py                            # tables on stdout, charts in docs/bench/

Reads criterion's `target/criterion/<group>/<bench>/new/estimates.json` (the mean) and
`benchmark.json` (the bytes per iteration); writes `benches/results/codecs.csv` with every
row it read, and `docs/bench/<chart>.svg`. Python's standard library only.
"""
import csv
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRITERION = ROOT / "target" / "criterion"
RESULTS = ROOT / "benches" / "results"
CHARTS = ROOT / "docs" / "bench"

# Each chart: its file, its title, and its rows as (group, bench, label, the rows it is
# measured against). A row compared with nothing is a peer's (or a floor's); a trackgate row
# is compared with the fastest of the peer rows that do the same work on the same bytes.
# The work each row does is said in the bench's own doc comment (benches/benches/*.rs).
P = None  # a peer's row
CHARTS_SPEC = [
    ("nmea", "NMEA 0183: 10,000 sentences", [
        ("nmea_rmc", "trackgate_typed", "RMC trackgate typed", ["nmeasis_26.4", "nmea_0.8"]),
        ("nmea_rmc", "nmeasis_26.4", "RMC nmeasis 26.4", P),
        ("nmea_rmc", "nmea_0.8", "RMC nmea 0.8", P),
        ("nmea_gga", "trackgate_typed", "GGA trackgate typed", ["nmeasis_26.4", "nmea_0.8"]),
        ("nmea_gga", "nmeasis_26.4", "GGA nmeasis 26.4", P),
        ("nmea_gga", "nmea_0.8", "GGA nmea 0.8", P),
    ]),
    ("teltonika", "Teltonika: 10,000 TCP packets", [
        ("teltonika_codec8", "trackgate_validate", "Codec 8 trackgate validate", ["nom_teltonika_validate"]),
        ("teltonika_codec8", "nom_teltonika_validate", "Codec 8 nom-teltonika validate", P),
        ("teltonika_codec8", "trackgate_views", "Codec 8 trackgate views", ["nom_teltonika_views"]),
        ("teltonika_codec8", "trackgate_views_iter", "Codec 8 trackgate views (iterator)", ["nom_teltonika_views"]),
        ("teltonika_codec8", "nom_teltonika_views", "Codec 8 nom-teltonika views", P),
        ("teltonika_codec8", "trackgate_owned", "Codec 8 trackgate owned", ["nom_teltonika_owned", "teltonika_rs_owned"]),
        ("teltonika_codec8", "nom_teltonika_owned", "Codec 8 nom-teltonika owned", P),
        ("teltonika_codec8", "teltonika_rs_owned", "Codec 8 teltonika-rs owned", P),
        ("teltonika_codec8e", "trackgate_validate", "Codec 8E trackgate validate", ["nom_teltonika_validate"]),
        ("teltonika_codec8e", "nom_teltonika_validate", "Codec 8E nom-teltonika validate", P),
        ("teltonika_codec8e", "trackgate_views", "Codec 8E trackgate views", ["nom_teltonika_views"]),
        ("teltonika_codec8e", "trackgate_views_iter", "Codec 8E trackgate views (iterator)", ["nom_teltonika_views"]),
        ("teltonika_codec8e", "nom_teltonika_views", "Codec 8E nom-teltonika views", P),
        ("teltonika_codec8e", "trackgate_owned", "Codec 8E trackgate owned", ["nom_teltonika_owned"]),
        ("teltonika_codec8e", "nom_teltonika_owned", "Codec 8E nom-teltonika owned", P),
    ]),
    ("gt06", "GT06: 10,000 frames", [
        ("gt06_0x12", "trackgate_views", "0x12 trackgate views", ["gt06_push", "gt06_parse_packet"]),
        ("gt06_0x12", "gt06_push", "0x12 gt06 0.4 push", P),
        ("gt06_0x12", "gt06_parse_packet", "0x12 gt06 0.4 parse_packet", P),
        ("gt06_0x12", "crc_only", "0x12 the CRC alone (a floor)", P),
        ("gt06_0x22", "trackgate_views", "0x22 trackgate views", ["gt06_push", "gt06_parse_packet"]),
        ("gt06_0x22", "gt06_push", "0x22 gt06 0.4 push", P),
        ("gt06_0x22", "gt06_parse_packet", "0x22 gt06 0.4 parse_packet", P),
    ]),
    ("jt808", "JT808: 10,000 0x0200 frames", [
        ("jt808_0200", "trackgate_views", "trackgate views", ["jt808_location"]),
        ("jt808_0200", "jt808_location", "jt808 0.1.1 location", P),
        ("jt808_0200", "jt808_header", "jt808 0.1.1 header only", P),
    ]),
    ("records", "Records: the stream decoders building normalized records", [
        ("nmea_rmc", "trackgate_records", "NMEA RMC records", ["trackgate_typed"]),
        ("nmea_gga", "trackgate_records", "NMEA GGA records", ["trackgate_typed"]),
        ("teltonika_codec8", "trackgate_records", "Teltonika Codec 8 records", ["trackgate_views"]),
        ("teltonika_codec8e", "trackgate_records", "Teltonika Codec 8E records", ["trackgate_views"]),
        ("gt06_0x12", "trackgate_records", "GT06 0x12 records", ["trackgate_views"]),
        ("gt06_0x22", "trackgate_records", "GT06 0x22 records", ["trackgate_views"]),
        ("jt808_0200", "trackgate_records", "JT808 0x0200 records", ["trackgate_views"]),
    ]),
    ("corpus", "The corpus mix: real device traffic", [
        ("corpus_nmea", "trackgate_views_on_nmeasis_frames", "NMEA trackgate views", ["nmeasis_26.4"]),
        ("corpus_nmea", "nmeasis_26.4", "NMEA nmeasis 26.4", P),
        ("corpus_gt06", "trackgate_views_on_gt06_frames", "GT06 trackgate views", ["gt06_0.4"]),
        ("corpus_gt06", "gt06_0.4", "GT06 gt06 0.4", P),
        ("corpus_jt808", "trackgate_views_on_jt808_frames", "JT808 trackgate views", ["jt808_0.1.1"]),
        ("corpus_jt808", "jt808_0.1.1", "JT808 jt808 0.1.1", P),
    ]),
]


def read_row(group, bench):
    base = CRITERION / group / bench / "new"
    try:
        mean_ns = json.loads((base / "estimates.json").read_text())["mean"]["point_estimate"]
        info = json.loads((base / "benchmark.json").read_text())
    except FileNotFoundError:
        return None
    throughput = info.get("throughput") or {}
    nbytes = throughput.get("Bytes")
    mib_s = nbytes / mean_ns * 1e9 / (1 << 20) if nbytes else None
    return {"group": group, "bench": bench, "mean_ns": mean_ns, "mib_s": mib_s}


def svg_bars(title, rows, unit, path):
    """A horizontal bar chart: trackgate's rows in one colour, the peers' in another."""
    width, label_w, bar_w, row_h, top = 760, 300, 360, 22, 40
    height = top + row_h * len(rows) + 30
    peak = max(v for _, v, _ in rows) or 1
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="22" font-size="15" font-weight="bold">{title}</text>',
    ]
    for i, (label, value, peer) in enumerate(rows):
        y = top + i * row_h
        w = max(1, bar_w * value / peak)
        colour = "#9aa5b1" if peer else "#1f6feb"
        out.append(f'<text x="{label_w - 8}" y="{y + 14}" text-anchor="end">{label}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{colour}"/>')
        out.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 14}">{value:,.0f} {unit}</text>')
    legend_y = height - 12
    out.append(f'<rect x="{label_w}" y="{legend_y - 10}" width="12" height="12" fill="#1f6feb"/>')
    out.append(f'<text x="{label_w + 18}" y="{legend_y}">trackgate</text>')
    if any(peer for _, _, peer in rows):
        out.append(f'<rect x="{label_w + 100}" y="{legend_y - 10}" width="12" height="12" fill="#9aa5b1"/>')
        out.append(f'<text x="{label_w + 118}" y="{legend_y}">peer crates (same bytes, same run)</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def codec_charts():
    RESULTS.mkdir(parents=True, exist_ok=True)
    CHARTS.mkdir(parents=True, exist_ok=True)
    every = []
    for name, title, spec in CHARTS_SPEC:
        rows = []
        print(f"\n{title}\n\n| row | MiB/s | µs a pass over the set | × the rows it is measured against |")
        print("|---|---:|---:|---:|")
        for group, bench, label, against in spec:
            r = read_row(group, bench)
            if r is None or r["mib_s"] is None:
                print(f"| {label} | (not run) | | |")
                continue
            every.append(r)
            rows.append((label, r["mib_s"], against is None))
            ratio = ""
            others = [read_row(group, b) for b in against or []]
            others = [o["mib_s"] for o in others if o and o["mib_s"]]
            if others:
                ratio = f"{r['mib_s'] / max(others):.2f}×"
            print(f"| {label} | {r['mib_s']:,.0f} | {r['mean_ns'] / 1000:,.0f} | {ratio} |")
        if rows:
            svg_bars(title, rows, "MiB/s", CHARTS / f"{name}.svg")
    with (RESULTS / "codecs.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["group", "bench", "mean_ns", "mib_s"])
        w.writeheader()
        for r in every:
            w.writerow({k: (f"{v:.1f}" if isinstance(v, float) else v) for k, v in r.items()})


def gateway_chart():
    path = RESULTS / "gateway.csv"
    if not path.exists():
        print(f"\n(no {path.relative_to(ROOT)}: run scripts/gateway-curve.sh for the gateway chart)")
        return
    rows = list(csv.DictReader(path.open()))
    print("\nGateway: records per gateway CPU-second\n\n| frames per write | records/s per core |\n|---:|---:|")
    bars = []
    for r in rows:
        value = float(r["records_per_cpu_s"])
        print(f"| {r['frames_per_write']} | {value:,.0f} |")
        bars.append((f"{r['frames_per_write']} frame(s) per write", value, False))
    svg_bars("Gateway: records acked per gateway CPU-second (GT06, fsync)", bars, "/s", CHARTS / "gateway.svg")


if __name__ == "__main__":
    if not CRITERION.exists():
        sys.exit("no target/criterion: run the benches first (see this script's doc)")
    codec_charts()
    gateway_chart()
