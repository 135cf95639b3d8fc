//! Counters, and their Prometheus text (served by [`crate::ops::http`]).
//!
//! Each shard writes only its own block of relaxed atomics (no lock, no cache line shared
//! with another shard's frames); a scrape adds the blocks up.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use trackgate_codecs::framing::RejectKind;
use trackgate_codecs::Protocol;

use crate::close::CloseReason;
use crate::protocol::{self, Transport};

const REJECT_KINDS: [RejectKind; 8] = [
    RejectKind::Checksum,
    RejectKind::Length,
    RejectKind::TooLong,
    RejectKind::Garbage,
    RejectKind::Truncated,
    RejectKind::Malformed,
    RejectKind::Unsupported,
    RejectKind::Unauthenticated,
];

/// Upper bounds of the sink latency histogram, in microseconds.
const SINK_BUCKETS_US: [u64; 12] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 500_000, 1_000_000];

fn protocol_index(p: Protocol) -> usize {
    Protocol::ALL.iter().position(|&q| q == p).unwrap_or(0)
}

fn transport_index(t: Transport) -> usize {
    match t {
        Transport::Tcp => 0,
        Transport::Udp => 1,
    }
}

const TRANSPORTS: [Transport; 2] = [Transport::Tcp, Transport::Udp];

/// Why a connection was turned away at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The shard holds its maximum of connections.
    ShardFull,
    /// The source address holds its maximum of connections.
    IpFull,
}

const REFUSALS: [Refusal; 2] = [Refusal::ShardFull, Refusal::IpFull];

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::ShardFull => "shard_full",
            Refusal::IpFull => "ip_full",
        }
    }
}

/// One protocol on one transport, in one shard.
#[derive(Debug, Default)]
pub struct Listener {
    /// TCP connections accepted, or UDP peers first heard.
    opened: AtomicU64,
    /// TCP connections open, or UDP peers remembered.
    active: AtomicI64,
    closed: [AtomicU64; CloseReason::ALL.len()],
    refused: [AtomicU64; REFUSALS.len()],
    bytes_in: AtomicU64,
    /// Frames taken whole and sound; the rejected ones are in `rejects`.
    frames: AtomicU64,
    records: AtomicU64,
    replies: AtomicU64,
    rejects: [AtomicU64; REJECT_KINDS.len() + 1],
    rejected_bytes: AtomicU64,
    /// Commands written to devices, and refused by their protocol ([`COMMAND_RESULTS`]).
    commands: [AtomicU64; 2],
    takeovers_refused: AtomicU64,
}

const COMMAND_RESULTS: [&str; 2] = ["written", "refused"];

impl Listener {
    pub fn opened(&self) {
        self.opened.fetch_add(1, Relaxed);
        self.active.fetch_add(1, Relaxed);
    }

    pub fn closed(&self, why: CloseReason) {
        self.active.fetch_sub(1, Relaxed);
        let i = CloseReason::ALL.iter().position(|&c| c == why).unwrap_or(0);
        self.closed[i].fetch_add(1, Relaxed);
    }

    pub fn refused(&self, why: Refusal) {
        let i = REFUSALS.iter().position(|&r| r == why).unwrap_or(0);
        self.refused[i].fetch_add(1, Relaxed);
    }

    pub fn bytes_in(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Relaxed);
    }

    pub fn decoded(&self, frames: u64) {
        if frames > 0 {
            self.frames.fetch_add(frames, Relaxed);
        }
    }

    pub fn delivered(&self, records: usize, replies: usize) {
        self.records.fetch_add(records as u64, Relaxed);
        self.replies.fetch_add(replies as u64, Relaxed);
    }

    pub fn rejected(&self, kind: RejectKind) {
        let i = REJECT_KINDS.iter().position(|&k| k == kind).unwrap_or(REJECT_KINDS.len());
        self.rejects[i].fetch_add(1, Relaxed);
    }

    pub fn rejected_bytes(&self, n: u64) {
        if n > 0 {
            self.rejected_bytes.fetch_add(n, Relaxed);
        }
    }

    /// A command was written to the device's socket, or its protocol refused it.
    pub fn command(&self, written: bool) {
        self.commands[usize::from(!written)].fetch_add(1, Relaxed);
    }

    /// A login for a device held by a live connection from another address was refused.
    pub fn takeover_refused(&self) {
        self.takeovers_refused.fetch_add(1, Relaxed);
    }
}

/// The rows of the listener counters: one per protocol, then `auto`: what `auto` listeners
/// counted before a connection's or datagram's protocol was told (refusals at accept,
/// connections closed undetected, datagrams rejected as no protocol's).
const ROWS: [&str; 5] = ["gt06", "jt808", "teltonika", "nmea", "auto"];
const AUTO_ROW: usize = 4;

/// One shard's counters.
#[derive(Debug, Default)]
pub struct ShardMetrics {
    listeners: [[Listener; 2]; ROWS.len()],
    accept_errors: AtomicU64,
    sink_buckets: [AtomicU64; SINK_BUCKETS_US.len()],
    sink_count: AtomicU64,
    sink_sum_us: AtomicU64,
    sink_failures: AtomicU64,
}

impl ShardMetrics {
    pub fn listener(&self, p: Protocol, t: Transport) -> &Listener {
        &self.listeners[protocol_index(p)][transport_index(t)]
    }

    /// What an `auto` listener counts before a protocol is told.
    pub fn undetected(&self, t: Transport) -> &Listener {
        &self.listeners[AUTO_ROW][transport_index(t)]
    }

    pub fn accept_error(&self) {
        self.accept_errors.fetch_add(1, Relaxed);
    }

    /// How long one hand-over to the sink took, until it answered.
    pub fn sink_latency(&self, took: Duration, ok: bool) {
        if !ok {
            self.sink_failures.fetch_add(1, Relaxed);
        }
        let us = took.as_micros().min(u128::from(u64::MAX)) as u64;
        if let Some(i) = SINK_BUCKETS_US.iter().position(|&b| us <= b) {
            self.sink_buckets[i].fetch_add(1, Relaxed);
        }
        self.sink_count.fetch_add(1, Relaxed);
        self.sink_sum_us.fetch_add(us, Relaxed);
    }
}

/// What the registry counts, read when the metrics are rendered.
#[derive(Debug, Clone, Copy, Default)]
pub struct RegistryGauges {
    /// Devices identified and connected.
    pub devices: usize,
    /// Devices not connected with commands held for them.
    pub holding: usize,
    /// Bytes held by partial frames, over every connection.
    pub partial_bytes: usize,
}

/// Every shard's counters.
#[derive(Debug)]
pub struct Metrics {
    shards: Box<[ShardMetrics]>,
}

/// A counter's value, in the type the per-listener lines sum.
fn load(a: &AtomicU64) -> i64 {
    a.load(Relaxed) as i64
}

impl Metrics {
    pub fn new(shards: usize) -> Arc<Self> {
        Arc::new(Metrics { shards: (0..shards.max(1)).map(|_| ShardMetrics::default()).collect() })
    }

    pub fn shard(&self, i: usize) -> &ShardMetrics {
        &self.shards[i % self.shards.len()]
    }

    fn sum(&self, f: impl Fn(&ShardMetrics) -> u64) -> u64 {
        self.shards.iter().map(f).sum()
    }

    fn sum_listener(&self, p: usize, t: usize, f: impl Fn(&Listener) -> u64) -> u64 {
        self.sum(|s| f(&s.listeners[p][t]))
    }

    /// A counter summed over shards, for tests and the simulator's report.
    pub fn records(&self, p: Protocol) -> u64 {
        (0..2).map(|t| self.sum_listener(protocol_index(p), t, |l| l.records.load(Relaxed))).sum()
    }

    /// Connections closed for `why`, summed over protocols and shards.
    pub fn closed(&self, why: CloseReason) -> u64 {
        let i = CloseReason::ALL.iter().position(|&c| c == why).unwrap_or(0);
        (0..ROWS.len())
            .flat_map(|p| (0..2).map(move |t| (p, t)))
            .map(|(p, t)| self.sum_listener(p, t, |l| l.closed[i].load(Relaxed)))
            .sum()
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, gauges: RegistryGauges) -> String {
        let mut out = String::with_capacity(8192);
        self.render_counts(&mut out);
        self.render_by_reason(&mut out);
        self.render_totals(&mut out, gauges);
        self.render_sink_latency(&mut out);
        let _ = writeln!(
            out,
            "# HELP trackgate_shards Shards serving.\n# TYPE trackgate_shards gauge\ntrackgate_shards {}",
            self.shards.len()
        );
        out
    }

    /// A metric with one line per listener (protocol and transport), summed over the
    /// shards.
    fn per_listener(&self, out: &mut String, name: &str, kind: &str, help: &str, value: &dyn Fn(&Listener) -> i64) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (pi, p) in Protocol::ALL.iter().enumerate() {
            for (ti, t) in TRANSPORTS.iter().enumerate() {
                if !protocol::serves(*p, *t) {
                    continue;
                }
                let v: i64 = self.shards.iter().map(|s| value(&s.listeners[pi][ti])).sum();
                let _ = writeln!(out, "{name}{{protocol=\"{p}\",transport=\"{}\"}} {v}", t.as_str());
            }
        }
    }

    /// A counter with one line per listener and value of `label` (`names`), the lines that
    /// are not zero.
    fn per_listener_labelled(
        &self,
        out: &mut String,
        name: &str,
        help: &str,
        label: &str,
        names: &[&str],
        value: &dyn Fn(&Listener, usize) -> u64,
    ) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (pi, p) in ROWS.iter().enumerate() {
            for (ti, t) in TRANSPORTS.iter().enumerate() {
                for (i, n) in names.iter().enumerate() {
                    let v: u64 = self.shards.iter().map(|s| value(&s.listeners[pi][ti], i)).sum();
                    if v > 0 {
                        let _ = writeln!(
                            out,
                            "{name}{{protocol=\"{p}\",transport=\"{}\",{label}=\"{n}\"}} {v}",
                            t.as_str()
                        );
                    }
                }
            }
        }
    }

    /// The listeners' connection, byte, frame, record and reply counts.
    fn render_counts(&self, out: &mut String) {
        self.per_listener(
            out,
            "trackgate_connections_opened_total",
            "counter",
            "TCP connections accepted and UDP peers first heard.",
            &|l| load(&l.opened),
        );
        self.per_listener(
            out,
            "trackgate_connections_active",
            "gauge",
            "TCP connections open and UDP peers remembered.",
            &|l| l.active.load(Relaxed),
        );
        self.per_listener(out, "trackgate_bytes_received_total", "counter", "Bytes read from devices.", &|l| {
            load(&l.bytes_in)
        });
        self.per_listener(
            out,
            "trackgate_frames_total",
            "counter",
            "Frames decoded whole and sound (a packet of several records counts once; rejected frames are in trackgate_rejects_total).",
            &|l| load(&l.frames),
        );
        self.per_listener(out, "trackgate_records_total", "counter", "Records accepted by the sink.", &|l| {
            load(&l.records)
        });
        self.per_listener(
            out,
            "trackgate_takeovers_refused_total",
            "counter",
            "Logins for a device held by a live connection from another address, refused (the takeover policy).",
            &|l| load(&l.takeovers_refused),
        );
        self.per_listener(
            out,
            "trackgate_acks_total",
            "counter",
            "Replies (acks, handshake answers) sent after the sink accepted the records before them.",
            &|l| load(&l.replies),
        );
        self.per_listener(
            out,
            "trackgate_rejected_bytes_total",
            "counter",
            "Bytes skipped as not a valid frame.",
            &|l| load(&l.rejected_bytes),
        );
    }

    /// The listeners' rejects, closes, refusals and commands, by reason.
    fn render_by_reason(&self, out: &mut String) {
        let reject_names: Vec<&str> = REJECT_KINDS.iter().map(|k| k.label()).chain(["other"]).collect();
        self.per_listener_labelled(
            out,
            "trackgate_rejects_total",
            "Frames rejected, by reason (protocol=\"auto\": datagrams to an auto listener that no protocol begins as).",
            "reason",
            &reject_names,
            &|l, i| l.rejects[i].load(Relaxed),
        );
        let close_names: Vec<&str> = CloseReason::ALL.iter().map(|c| c.label()).collect();
        self.per_listener_labelled(
            out,
            "trackgate_connections_closed_total",
            "Connections closed (UDP peers forgotten), by reason (protocol=\"auto\": connections to an auto listener that ended before their first bytes named a protocol).",
            "reason",
            &close_names,
            &|l, i| l.closed[i].load(Relaxed),
        );
        let refusal_names: Vec<&str> = REFUSALS.iter().map(|r| r.label()).collect();
        self.per_listener_labelled(
            out,
            "trackgate_connections_refused_total",
            "Connections closed at accept, by the cap that was reached (protocol=\"auto\": at an auto listener).",
            "reason",
            &refusal_names,
            &|l, i| l.refused[i].load(Relaxed),
        );
        self.per_listener_labelled(
            out,
            "trackgate_commands_total",
            "Commands to devices: written to the socket, or refused by the protocol.",
            "result",
            &COMMAND_RESULTS,
            &|l, i| l.commands[i].load(Relaxed),
        );
    }

    /// The process-wide counts and gauges.
    fn render_totals(&self, out: &mut String, gauges: RegistryGauges) {
        let _ = writeln!(out, "# HELP trackgate_accept_errors_total Failed accepts (out of descriptors, resets in the queue).\n# TYPE trackgate_accept_errors_total counter\ntrackgate_accept_errors_total {}", self.sum(|s| s.accept_errors.load(Relaxed)));
        let _ = writeln!(out, "# HELP trackgate_devices Devices identified and connected (TCP, and UDP peers of JT808).\n# TYPE trackgate_devices gauge\ntrackgate_devices {}", gauges.devices);
        let _ = writeln!(out, "# HELP trackgate_devices_with_held_commands Devices not connected with commands held for them (hold=).\n# TYPE trackgate_devices_with_held_commands gauge\ntrackgate_devices_with_held_commands {}", gauges.holding);
        let _ = writeln!(out, "# HELP trackgate_partial_frame_bytes Read-buffer bytes held by frames begun and not finished, over all connections (limits.partial_bytes).\n# TYPE trackgate_partial_frame_bytes gauge\ntrackgate_partial_frame_bytes {}", gauges.partial_bytes);
        let _ = writeln!(out, "# HELP trackgate_sink_failures_total Hand-overs the sink refused.\n# TYPE trackgate_sink_failures_total counter\ntrackgate_sink_failures_total {}", self.sum(|s| s.sink_failures.load(Relaxed)));
    }

    /// The sink's commit latency, as a histogram.
    fn render_sink_latency(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP trackgate_sink_latency_seconds Time from handing records to the sink until it committed them.\n# TYPE trackgate_sink_latency_seconds histogram");
        let mut cumulative = 0;
        for (i, bound) in SINK_BUCKETS_US.iter().enumerate() {
            cumulative += self.sum(|s| s.sink_buckets[i].load(Relaxed));
            let _ =
                writeln!(out, "trackgate_sink_latency_seconds_bucket{{le=\"{}\"}} {cumulative}", *bound as f64 / 1e6);
        }
        let count = self.sum(|s| s.sink_count.load(Relaxed));
        let _ = writeln!(out, "trackgate_sink_latency_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "trackgate_sink_latency_seconds_sum {}",
            self.sum(|s| s.sink_sum_us.load(Relaxed)) as f64 / 1e6
        );
        let _ = writeln!(out, "trackgate_sink_latency_seconds_count {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_add_up_in_the_exposition() {
        let m = Metrics::new(2);
        m.shard(0).listener(Protocol::Gt06, Transport::Tcp).opened();
        m.shard(1).listener(Protocol::Gt06, Transport::Tcp).opened();
        m.shard(1).listener(Protocol::Gt06, Transport::Tcp).closed(CloseReason::Junk);
        m.shard(0).listener(Protocol::Jt808, Transport::Udp).decoded(2);
        m.shard(1).listener(Protocol::Jt808, Transport::Udp).decoded(1);
        m.shard(0).listener(Protocol::Jt808, Transport::Udp).delivered(3, 2);
        m.shard(1).listener(Protocol::Jt808, Transport::Udp).delivered(1, 1);
        m.shard(0).listener(Protocol::Nmea, Transport::Tcp).rejected(RejectKind::Checksum);
        m.shard(0).listener(Protocol::Nmea, Transport::Tcp).rejected_bytes(40);
        m.shard(0).sink_latency(Duration::from_micros(300), true);
        m.shard(1).sink_latency(Duration::from_millis(3), true);
        m.shard(0).listener(Protocol::Gt06, Transport::Tcp).command(true);
        m.shard(1).listener(Protocol::Gt06, Transport::Tcp).command(true);
        m.shard(1).listener(Protocol::Gt06, Transport::Tcp).command(false);
        m.shard(0).undetected(Transport::Tcp).closed(CloseReason::Junk);
        m.shard(1).undetected(Transport::Udp).rejected(RejectKind::Garbage);
        let text = m.render(RegistryGauges { devices: 5, holding: 1, partial_bytes: 8192 });
        for line in [
            "trackgate_connections_opened_total{protocol=\"gt06\",transport=\"tcp\"} 2",
            "trackgate_connections_active{protocol=\"gt06\",transport=\"tcp\"} 1",
            "trackgate_connections_closed_total{protocol=\"gt06\",transport=\"tcp\",reason=\"junk\"} 1",
            "trackgate_frames_total{protocol=\"jt808\",transport=\"udp\"} 3",
            "trackgate_records_total{protocol=\"jt808\",transport=\"udp\"} 4",
            "trackgate_acks_total{protocol=\"jt808\",transport=\"udp\"} 3",
            "trackgate_rejects_total{protocol=\"nmea\",transport=\"tcp\",reason=\"checksum\"} 1",
            "trackgate_commands_total{protocol=\"gt06\",transport=\"tcp\",result=\"written\"} 2",
            "trackgate_commands_total{protocol=\"gt06\",transport=\"tcp\",result=\"refused\"} 1",
            "trackgate_rejected_bytes_total{protocol=\"nmea\",transport=\"tcp\"} 40",
            "trackgate_sink_latency_seconds_bucket{le=\"0.00025\"} 0",
            "trackgate_sink_latency_seconds_bucket{le=\"0.0005\"} 1",
            "trackgate_sink_latency_seconds_bucket{le=\"0.005\"} 2",
            "trackgate_sink_latency_seconds_bucket{le=\"+Inf\"} 2",
            "trackgate_sink_latency_seconds_count 2",
            "trackgate_shards 2",
            "trackgate_devices 5",
            "trackgate_devices_with_held_commands 1",
            "trackgate_partial_frame_bytes 8192",
            "trackgate_connections_closed_total{protocol=\"auto\",transport=\"tcp\",reason=\"junk\"} 1",
            "trackgate_rejects_total{protocol=\"auto\",transport=\"udp\",reason=\"garbage\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // GT06 has no UDP listener, so no UDP series.
        assert!(!text.contains("protocol=\"gt06\",transport=\"udp\""));
        assert_eq!(m.records(Protocol::Jt808), 4);
        assert_eq!(m.closed(CloseReason::Junk), 2);
        let names: Vec<&str> = Protocol::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, ROWS[..AUTO_ROW], "the rows follow Protocol::ALL");
    }
}
