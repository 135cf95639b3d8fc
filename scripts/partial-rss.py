#!/usr/bin/env python3
"""Memory per connection holding a partial frame, per protocol (BENCHMARKS.md, "Partial frames").

For each protocol, a fresh release gateway (one shard, JSONL to /dev/null) takes N loopback
connections: first idle (nothing sent), then each sends the start of a frame and nothing
more (Teltonika: the IMEI handshake first, then the start of an AVL packet). Reported per
connection: the gateway's RSS growth (VmRSS, /proc) idle and holding the partial frame, and
what the gateway itself counts as held by partial frames (trackgate_partial_frame_bytes).
With TLS=1 a GT06 listener with TLS is measured too (certificates made with `openssl`).

    cargo build --release && scripts/partial-rss.py [N]      # N = 4000 by default
"""
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BINARY = os.path.join(ROOT, "target", "release", "trackgate")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 4000

# The start of a frame for each protocol: a header that promises more.
PARTIAL = {
    "gt06": bytes.fromhex("78781101"),  # a login, 17 bytes announced
    "jt808": bytes.fromhex("7e0200001c0141305678720001"),  # a position's header, no end flag
    "nmea": b"$GPRMC,120000.00,A,5000.0000,N,014",  # no line end
    "teltonika": bytes.fromhex("000000000000010008010000"),  # an AVL packet announcing 256 bytes
}


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def metric(endpoint, name):
    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return int(line.split()[1])
    return 0


def settle(pid, seconds=1.0):
    time.sleep(seconds)
    return rss_kib(pid)


def steady(endpoint, name):
    """The metric once it has stopped moving (the gateway has read what was sent)."""
    last, same, deadline = None, 0, time.time() + 60
    while same < 3 and time.time() < deadline:
        value = metric(endpoint, name)
        same = same + 1 if value == last and value > 0 else 0
        last = value
        time.sleep(0.5)
    return last


def start(args):
    """A release gateway with `args`; its pid and its listening addresses by protocol."""
    proc = subprocess.Popen(
        [BINARY, "serve", "--shards", "1", "--metrics", "127.0.0.1:0", "--sink", "jsonl:/dev/null"] + args,
        stderr=subprocess.PIPE, text=True)
    addrs = {}
    while "metrics" not in addrs:
        line = proc.stderr.readline()
        if not line:
            raise RuntimeError("the gateway stopped")
        if line.startswith("listening "):
            _, proto, transport, addr = line.split()
            if transport != "udp":
                addrs[proto] = addr
    return proc, addrs


def connect(addr, tls_context):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    if tls_context:
        s = tls_context.wrap_socket(s, server_hostname="127.0.0.1")
    return s


def measure(protocol, args, tls_context=None):
    """RSS growth per connection idle and holding a partial frame, and the partial bytes
    the gateway counts per connection."""
    proc, addrs = start(args)
    try:
        base = settle(proc.pid)
        conns = [connect(addrs[protocol], tls_context) for _ in range(N)]
        idle = settle(proc.pid)
        for i, c in enumerate(conns):
            if protocol == "teltonika":
                imei = f"35{i:013d}".encode()
                c.sendall(len(imei).to_bytes(2, "big") + imei)
                assert c.recv(1) == b"\x01"
            c.sendall(PARTIAL[protocol])
        counted = steady(addrs["metrics"], "trackgate_partial_frame_bytes")
        partial = settle(proc.pid)
        for c in conns:
            c.close()
        return (idle - base) * 1024 / N, (partial - base) * 1024 / N, counted / N
    finally:
        proc.kill()
        proc.wait()


def tls_setup(directory):
    cert, key = os.path.join(directory, "gw.pem"), os.path.join(directory, "gw.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key, ssl.create_default_context(cafile=cert)


def main():
    directory = tempfile.mkdtemp(prefix="trackgate-partial-rss-")
    limits = "[limits]\nmax_connections_per_ip = 0\nframe_timeout = \"10m\"\nidle_timeout = \"10m\"\n"
    config = os.path.join(directory, "trackgate.toml")
    with open(config, "w") as f:
        f.write(limits)
    print(f"{N} connections per protocol, one shard; bytes per connection")
    print("| protocol | RSS idle | RSS holding a partial frame | counted as partial |")
    print("|---|---:|---:|---:|")
    rows = [(p, p, ["--config", config, "--listen", f"{p}=127.0.0.1:0"], None)
            for p in ["gt06", "jt808", "nmea", "teltonika"]]
    if os.environ.get("TLS") == "1":
        cert, key, context = tls_setup(directory)
        tls_config = os.path.join(directory, "tls.toml")
        with open(tls_config, "w") as f:
            f.write(limits + f"[[listen]]\nprotocol = \"gt06\"\naddr = \"127.0.0.1:0\"\n"
                    f"tls_cert = \"{cert}\"\ntls_key = \"{key}\"\n")
        rows.append(("gt06 over TLS", "gt06", ["--config", tls_config], context))
    for name, protocol, args, context in rows:
        idle, partial, counted = measure(protocol, args, context)
        print(f"| {name} | {idle:,.0f} | {partial:,.0f} | {counted:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
