//! `trackgate bench sessions`: the scale harness's in-memory half. N sessions in one process,
//! driven through the gateway's real [`Session`] and the codecs' real decoders by simulated
//! devices over an in-memory transport (bytes handed straight to the session, no sockets):
//! every device logs in, then every device reports, round after round. Measures memory per
//! idle session, the session set-up rate and records per second on one core.
//!
//! Memory is read from the kernel (resident set size, `/proc/self/statm`), so it includes
//! allocator overhead and fragmentation, which is what a deployment pays.

use std::time::{Instant, SystemTime};

use serde::Serialize;
use trackgate_codecs::Protocol;

use crate::protocol::{StreamOptions, Transport};
use crate::session::{Output, Session, SessionSettings};
use crate::tools::sim::Device;

/// What to run.
#[derive(Debug, Clone)]
pub struct SessionBench {
    pub protocol: Protocol,
    pub sessions: usize,
    /// Report rounds after the logins: every session gets one position (or heartbeat) each.
    pub rounds: usize,
    /// Serialise every record to JSON as the JSONL sink would (into a reused buffer).
    pub serialize: bool,
}

/// What it measured.
#[derive(Debug, Clone, Serialize)]
pub struct SessionBenchReport {
    pub protocol: String,
    pub sessions: usize,
    /// Resident set before the sessions existed (the devices already made), MiB.
    pub rss_before_mib: f64,
    /// Resident set with every session logged in and idle, MiB.
    pub rss_idle_mib: f64,
    /// (idle − before) / sessions: what one idle, logged-in session costs.
    pub bytes_per_idle_session: f64,
    /// `size_of::<Session>()`: the part that is not on the heap.
    pub session_struct_bytes: usize,
    pub setup_s: f64,
    /// Sessions created and logged in (login frame decoded, record and reply made) per second.
    pub sessions_per_s: f64,
    pub rounds: usize,
    pub records: u64,
    pub replies: u64,
    pub report_s: f64,
    /// Records per second on this one core while reporting.
    pub records_per_s: f64,
    pub rss_after_reports_mib: f64,
    pub serialized: bool,
}

/// Resident set size in bytes, from `/proc/self/statm` (0 where there is none).
pub fn rss_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .unwrap_or(0);
    pages * 4096
}

fn mib(b: u64) -> f64 {
    (b as f64 / (1024.0 * 1024.0) * 10.0).round() / 10.0
}

/// Runs the harness on the calling thread.
pub fn run_sessions(b: &SessionBench) -> SessionBenchReport {
    let settings = SessionSettings {
        stream: StreamOptions { transport: Transport::Tcp, ..StreamOptions::default() },
        ..SessionSettings::new(StreamOptions::default())
    };
    // The devices are the far side of the transport: made first, so their memory is not
    // counted as the sessions'.
    let mut devices: Vec<Device> =
        (0..b.sessions).map(|i| Device::new(b.protocol, Transport::Tcp, i as u64, 1, 0.0)).collect();
    let logins = login_frames(&mut devices);
    let before = rss_bytes();
    let mut out = Output::default();
    // One instant for every step: the sessions never see time pass (no timeout fires).
    let (now, wall) = (Instant::now(), SystemTime::now());
    let started = Instant::now();
    let mut sessions = log_in(b.protocol, &settings, &logins, (now, wall), &mut out);
    let setup = started.elapsed();
    drop(logins);
    // The Vec's spare capacity is the harness's, not the sessions'.
    sessions.shrink_to_fit();
    out.shrink();
    let idle = rss_bytes();

    let started = Instant::now();
    let (records, replies) = report_rounds(b, &mut sessions, &mut devices, (now, wall), &mut out);
    let reporting = started.elapsed();
    SessionBenchReport {
        protocol: b.protocol.to_string(),
        sessions: b.sessions,
        rss_before_mib: mib(before),
        rss_idle_mib: mib(idle),
        bytes_per_idle_session: (idle.saturating_sub(before)) as f64 / b.sessions.max(1) as f64,
        session_struct_bytes: std::mem::size_of::<Session>(),
        setup_s: setup.as_secs_f64(),
        sessions_per_s: b.sessions as f64 / setup.as_secs_f64().max(1e-9),
        rounds: b.rounds,
        records,
        replies,
        report_s: reporting.as_secs_f64(),
        records_per_s: records as f64 / reporting.as_secs_f64().max(1e-9),
        rss_after_reports_mib: mib(rss_bytes()),
        serialized: b.serialize,
    }
}

/// Each device's whole login, its later steps included (with no gateway replying, a JT808
/// terminal authenticates with its number, which these sessions take).
fn login_frames(devices: &mut [Device]) -> Vec<Vec<Vec<u8>>> {
    let steps = |d: &mut Device| {
        let mut steps = d.login();
        steps.extend(d.login_more());
        steps.into_iter().map(|x| x.bytes).collect()
    };
    devices.iter_mut().map(steps).collect()
}

/// A session per device, each fed its device's login.
fn log_in(
    protocol: Protocol,
    settings: &SessionSettings,
    logins: &[Vec<Vec<u8>>],
    (now, wall): (Instant, SystemTime),
    out: &mut Output,
) -> Vec<Session> {
    let mut sessions = Vec::with_capacity(logins.len());
    for frames in logins {
        let mut s = Session::new(protocol, settings, now);
        for f in frames {
            out.clear();
            let step = s.receive(f, false, now, wall, out);
            debug_assert_eq!(step.used, f.len());
        }
        sessions.push(s);
    }
    sessions
}

/// `b.rounds` rounds of one report from every device to its session (each record written
/// as JSON too when `b.serialize`): the records and replies made.
fn report_rounds(
    b: &SessionBench,
    sessions: &mut [Session],
    devices: &mut [Device],
    (now, wall): (Instant, SystemTime),
    out: &mut Output,
) -> (u64, u64) {
    let (mut records, mut replies) = (0u64, 0u64);
    let mut json = Vec::with_capacity(4096);
    for _ in 0..b.rounds {
        for (s, d) in sessions.iter_mut().zip(devices.iter_mut()) {
            let x = d.report(1, wall);
            out.clear();
            let step = s.receive(&x.bytes, false, now, wall, out);
            debug_assert_eq!(step.used, x.bytes.len());
            records += out.records.len() as u64;
            replies += out.replies.len() as u64;
            if b.serialize {
                for r in &out.records {
                    json.clear();
                    r.write_json(&mut json);
                }
            }
        }
    }
    (records, replies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_logs_in_and_reports_in_memory() {
        for protocol in Protocol::ALL {
            let r = run_sessions(&SessionBench { protocol, sessions: 50, rounds: 3, serialize: true });
            assert_eq!(r.records, 150, "{protocol}: one record per report");
            // NMEA devices get no replies; the others one per report.
            let replies = if protocol == Protocol::Nmea { 0 } else { 150 };
            assert_eq!(r.replies, replies, "{protocol}");
        }
    }
}
