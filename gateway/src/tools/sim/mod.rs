//! `trackgate sim`: simulated devices for all four protocols. Each device logs in the way
//! its protocol does, reports positions (and heartbeats) at an interval, optionally sends
//! damaged frames, and checks every reply it gets against the one it must get, byte for
//! byte, and answers the commands the gateway sends. The report says what was sent, what
//! was acknowledged and how fast.
//!
//! The device side ([`Device`], with one file of firmware per protocol) is plain code:
//! frames out, the exact replies they call for. The tokio driver here only connects,
//! writes, reads and times.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use trackgate_codecs::record::Timestamp;
use trackgate_codecs::Protocol;

use self::device::Accepted;
use self::device::FromGateway;
pub use self::device::{Device, Exchange};
use crate::protocol::Transport;

mod device;
mod gt06;
mod jt808;
mod nmea;
mod teltonika;
#[cfg(test)]
mod tests;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub protocol: Protocol,
    pub transport: Transport,
    pub target: SocketAddr,
    pub devices: usize,
    /// Time between a device's reports.
    pub interval: Duration,
    /// How long devices keep reporting.
    pub duration: Duration,
    /// Device starts are spread evenly over this time.
    pub ramp: Duration,
    /// After logging in, devices stay connected and send nothing until this long after the
    /// run's start; then they report for `duration`. A login storm's cost can then be read
    /// apart from the reports' and the hang-ups' (`scripts/load.sh` with `HOLD`).
    pub hold: Duration,
    /// Frames per report, written together (devices that buffer send several at once).
    pub batch: usize,
    /// Probability that a frame is sent damaged (the gateway must not acknowledge it).
    pub damage: f64,
    /// How long a device waits for a reply before counting it missing.
    pub ack_timeout: Duration,
    /// Seeds positions and damage, so a run can be repeated.
    pub seed: u64,
    /// Device ids are numbered from here.
    pub first_id: u64,
    /// Local address the devices connect from (any port). Loopback connections to one
    /// gateway address run out of ephemeral ports near 28,000; sims on 127.0.0.2, 127.0.0.3,
    /// ... each get a port range of their own.
    pub source: Option<IpAddr>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            protocol: Protocol::Gt06,
            transport: Transport::Tcp,
            target: ([127, 0, 0, 1], 5023).into(),
            devices: 1,
            interval: Duration::from_secs(1),
            duration: Duration::from_secs(10),
            ramp: Duration::from_secs(1),
            hold: Duration::ZERO,
            batch: 1,
            damage: 0.0,
            ack_timeout: Duration::from_secs(10),
            seed: 1,
            first_id: 0,
            source: None,
        }
    }
}

/// `[yy, mo, dd, hh, mi, ss]` of a UTC time.
fn utc_fields(unix_ms: i64) -> [u8; 6] {
    let (date, h, m, sec) = Timestamp::from_unix_ms(unix_ms, false).date_time();
    [(date.year() - 2000) as u8, date.month(), date.day(), h, m, sec]
}

/// What a run did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SimReport {
    pub protocol: String,
    pub transport: String,
    pub devices: usize,
    pub connected: u64,
    pub connect_failures: u64,
    pub logged_in: u64,
    pub frames_sent: u64,
    pub damaged_sent: u64,
    pub acks_expected: u64,
    pub acks_ok: u64,
    pub acks_wrong: u64,
    pub acks_missing: u64,
    /// Connections the gateway closed while a device waited for a reply (a cap reached,
    /// junk detection, a takeover).
    pub closed_by_gateway: u64,
    /// Records the gateway should have stored for what was sent undamaged.
    pub records_expected: u64,
    /// Of those, the ones the logins gave (one per login frame: a JT808 device's registration
    /// and authentication are two; Teltonika over UDP has no login).
    pub login_records: u64,
    pub elapsed_s: f64,
    pub frames_per_s: f64,
    /// From the start until the last device had logged in (the ramp included).
    pub login_phase_s: f64,
    /// Devices logged in per second of the login phase.
    pub logins_per_s: f64,
    /// Commands from the gateway the devices answered (each answer is one more record in
    /// `records_expected`).
    pub commands_answered: u64,
    /// Commands that arrived after a device had finished (TCP: read at its hang-up).
    pub commands_unanswered: u64,
    pub ack_latency_ms: Latency,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl SimReport {
    /// Every expected reply arrived, exactly.
    pub fn all_acked(&self) -> bool {
        self.connect_failures == 0
            && self.acks_wrong == 0
            && self.acks_missing == 0
            && self.acks_ok == self.acks_expected
    }

    fn add(&mut self, d: &DeviceResult) {
        self.connected += u64::from(d.connected);
        self.connect_failures += u64::from(!d.connected);
        self.logged_in += u64::from(d.logged_in_after.is_some());
        self.frames_sent += d.frames;
        self.damaged_sent += d.damaged;
        self.acks_expected += d.expected;
        self.acks_ok += d.ok;
        self.acks_wrong += d.wrong;
        self.acks_missing += d.missing;
        self.closed_by_gateway += d.closed;
        self.records_expected += d.records;
        self.login_records += d.login_records;
        self.commands_answered += d.commands_answered;
        self.commands_unanswered += d.commands_unanswered;
        if let Some(t) = d.logged_in_after {
            self.login_phase_s = self.login_phase_s.max(t.as_secs_f64());
        }
    }
}

#[derive(Debug, Default)]
struct DeviceResult {
    connected: bool,
    frames: u64,
    damaged: u64,
    expected: u64,
    ok: u64,
    wrong: u64,
    missing: u64,
    closed: u64,
    records: u64,
    latencies_us: Vec<u32>,
    /// When the login finished, from the start of the run (`None`: it did not).
    logged_in_after: Option<Duration>,
    login_records: u64,
    commands_answered: u64,
    commands_unanswered: u64,
}

impl DeviceResult {
    fn sent(&mut self, x: &Exchange) {
        self.frames += x.frames;
        self.damaged += x.damaged;
        self.expected += x.expect.len() as u64;
    }
}

/// Runs the simulation on the calling thread and reports.
pub fn run(config: SimConfig) -> std::io::Result<SimReport> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(run_async(config))
}

pub async fn run_async(config: SimConfig) -> std::io::Result<SimReport> {
    let config = Arc::new(config);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..config.devices {
        let config = config.clone();
        let delay = config.ramp.mul_f64(i as f64 / config.devices.max(1) as f64);
        tasks.spawn(async move {
            tokio::time::sleep(delay).await;
            let mut device =
                Device::new(config.protocol, config.transport, config.first_id + i as u64, config.seed, config.damage);
            let mut result = DeviceResult::default();
            match config.transport {
                Transport::Tcp => tcp_device(&config, &mut device, &mut result, started).await,
                Transport::Udp => udp_device(&config, &mut device, &mut result, started).await,
            }
            result
        });
    }
    let mut report = SimReport {
        protocol: config.protocol.to_string(),
        transport: config.transport.as_str().into(),
        devices: config.devices,
        ..SimReport::default()
    };
    let mut latencies = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let r = r.map_err(std::io::Error::other)?;
        report.add(&r);
        latencies.extend_from_slice(&r.latencies_us);
    }
    report.elapsed_s = started.elapsed().as_secs_f64();
    report.frames_per_s = report.frames_sent as f64 / report.elapsed_s.max(1e-9);
    report.logins_per_s = report.logged_in as f64 / report.login_phase_s.max(1e-9);
    latencies.sort_unstable();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    report.ack_latency_ms =
        Latency { p50: pick(0.5), p99: pick(0.99), max: latencies.last().copied().unwrap_or(0) as f64 / 1000.0 };
    Ok(report)
}

/// Reads the expected replies in order, exactly; false when the stream is out of step.
/// Commands from the gateway may come before or between them (a command is written after
/// the acks of a read, or whenever it arrives while the device is quiet): each is answered
/// at once, as firmware does. `inbox` keeps what was read and not used yet (the start of a
/// command split over reads) for the next call.
async fn read_replies(
    stream: &mut TcpStream,
    device: &mut Device,
    x: &Exchange,
    timeout: Duration,
    r: &mut DeviceResult,
    sent_at: Instant,
    inbox: &mut Vec<u8>,
) -> bool {
    let mut expected = x.expect.iter().peekable();
    loop {
        if !take_replies(stream, device, &mut expected, r, sent_at, inbox).await {
            return false;
        }
        if expected.peek().is_none() {
            // Whatever else is there (the start of a command) waits for the next exchange.
            return true;
        }
        let wanted = expected.clone().map(|w| w.len()).sum::<usize>();
        if !read_more(stream, inbox, wanted, timeout, r).await {
            r.missing += expected.len() as u64;
            return false;
        }
    }
}

/// Uses what `inbox` holds: the whole commands at the front (answered), then the replies
/// expected next, until it holds neither. False when the stream is out of step.
async fn take_replies(
    stream: &mut TcpStream,
    device: &mut Device,
    expected: &mut std::iter::Peekable<std::slice::Iter<'_, Vec<u8>>>,
    r: &mut DeviceResult,
    sent_at: Instant,
    inbox: &mut Vec<u8>,
) -> bool {
    loop {
        let front = match answer_commands(stream, device, inbox, r).await {
            Ok(front) => front,
            Err(Unanswered::Wrong) => return false,
            Err(Unanswered::NotWritten) => {
                r.missing += expected.len() as u64;
                return false;
            }
        };
        if !matches!(front, FromGateway::Other) {
            return true;
        }
        let Some(want) = expected.peek() else { return true };
        match device.accept(want, inbox) {
            Accepted::Took(n) => {
                inbox.drain(..n);
                expected.next();
                r.ok += 1;
                r.latencies_us.push(sent_at.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
            }
            Accepted::Need => return true,
            Accepted::Wrong => {
                r.wrong += 1;
                return false;
            }
        }
    }
}

/// One read into `inbox`, with room for the `wanted` bytes of replies still expected (a
/// `Vec` grows by 64 bytes a read otherwise). False when nothing came: the connection
/// closed or failed (counted in `r.closed` when the peer ended it), or `timeout` passed.
async fn read_more(
    stream: &mut TcpStream,
    inbox: &mut Vec<u8>,
    wanted: usize,
    timeout: Duration,
    r: &mut DeviceResult,
) -> bool {
    inbox.reserve(wanted.max(256));
    match tokio::time::timeout(timeout, stream.read_buf(inbox)).await {
        Ok(Ok(n)) if n > 0 => true,
        Ok(Ok(_)) => {
            r.closed += 1;
            false
        }
        Ok(Err(e)) => {
            if matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted) {
                r.closed += 1;
            }
            false
        }
        Err(_) => false,
    }
}

/// Why a command at the front of the input was not answered.
enum Unanswered {
    /// It could not be read as the command it looked like (counted as a wrong reply).
    Wrong,
    /// The answer could not be written: the connection is gone.
    NotWritten,
}

/// Answers the whole commands at the front of `inbox`, taking them out, as firmware
/// answers: at once. Returns what the front holds then: the start of a command, or no
/// command.
async fn answer_commands(
    stream: &mut TcpStream,
    device: &mut Device,
    inbox: &mut Vec<u8>,
    r: &mut DeviceResult,
) -> Result<FromGateway, Unanswered> {
    loop {
        let n = match device.command_at(inbox) {
            FromGateway::Command(n) => n,
            front => return Ok(front),
        };
        let command: Vec<u8> = inbox.drain(..n).collect();
        let Some(answer) = device.answer(&command, SystemTime::now()) else {
            r.wrong += 1;
            return Err(Unanswered::Wrong);
        };
        stream.write_all(&answer).await.map_err(|_| Unanswered::NotWritten)?;
        r.commands_answered += 1;
        r.records += 1;
    }
}

/// Waits until `deadline` as a device does between reports: reading, and answering the
/// commands that come meanwhile. Anything else read stays in `inbox` for the next exchange
/// to judge; a connection that ends (or a command that cannot be read) is left for it to
/// find too, so a quiet device counts a lost connection as it always has.
async fn idle_until(
    stream: &mut TcpStream,
    device: &mut Device,
    inbox: &mut Vec<u8>,
    r: &mut DeviceResult,
    deadline: tokio::time::Instant,
) {
    loop {
        inbox.reserve(256);
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            // Cancel-safe: when the sleep wins, nothing was read.
            read = stream.read_buf(inbox) => {
                let answered = match read {
                    Ok(n) if n > 0 => answer_commands(stream, device, inbox, r).await.is_ok(),
                    _ => false,
                };
                if !answered {
                    tokio::time::sleep_until(deadline).await;
                    return;
                }
            }
        }
    }
}

async fn connect(config: &SimConfig) -> std::io::Result<TcpStream> {
    let Some(source) = config.source else { return TcpStream::connect(config.target).await };
    let socket = if config.target.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(config.target).await
}

async fn tcp_device(config: &SimConfig, device: &mut Device, r: &mut DeviceResult, started: Instant) {
    let Ok(Ok(mut stream)) = tokio::time::timeout(config.ack_timeout, connect(config)).await else {
        return;
    };
    r.connected = true;
    let _ = stream.set_nodelay(true);
    let mut inbox = Vec::new();
    let mut steps = device.login();
    while !steps.is_empty() {
        for x in steps {
            r.sent(&x);
            let at = Instant::now();
            if stream.write_all(&x.bytes).await.is_err()
                || !read_replies(&mut stream, device, &x, config.ack_timeout, r, at, &mut inbox).await
            {
                return;
            }
            r.records += x.records;
        }
        steps = device.login_more();
    }
    r.logged_in_after = Some(started.elapsed());
    r.login_records = r.records;
    idle_until(&mut stream, device, &mut inbox, r, (started + config.hold).into()).await;
    let end = Instant::now() + config.duration;
    let mut next = tokio::time::Instant::now();
    while Instant::now() < end {
        let x = device.report(config.batch, SystemTime::now());
        r.sent(&x);
        r.records += x.records;
        let at = Instant::now();
        if stream.write_all(&x.bytes).await.is_err()
            || !read_replies(&mut stream, device, &x, config.ack_timeout, r, at, &mut inbox).await
        {
            return;
        }
        next += config.interval;
        idle_until(&mut stream, device, &mut inbox, r, next).await;
    }
    // Nothing more must come but commands, which the device, done, leaves unanswered: an
    // ack for a damaged frame would show up here.
    let _ = stream.shutdown().await;
    if let Ok(Ok(_)) = tokio::time::timeout(config.ack_timeout, stream.read_to_end(&mut inbox)).await {
        while let FromGateway::Command(n) = device.command_at(&inbox) {
            inbox.drain(..n);
            r.commands_unanswered += 1;
        }
        if !inbox.is_empty() {
            r.wrong += 1;
        }
    }
}

async fn udp_device(config: &SimConfig, device: &mut Device, r: &mut DeviceResult, started: Instant) {
    let local: SocketAddr = match config.source {
        Some(ip) => SocketAddr::new(ip, 0),
        None if config.target.is_ipv4() => ([0, 0, 0, 0], 0).into(),
        None => "[::]:0".parse().expect("an address"),
    };
    let Ok(socket) = UdpSocket::bind(local).await else { return };
    if socket.connect(config.target).await.is_err() {
        return;
    }
    r.connected = true;
    let mut buf = vec![0u8; 2048];
    let mut steps = device.login();
    while !steps.is_empty() {
        for x in steps {
            r.sent(&x);
            if !udp_exchange(&socket, device, &x, config.ack_timeout, r, &mut buf).await {
                return;
            }
            r.records += x.records;
        }
        steps = device.login_more();
    }
    r.logged_in_after = Some(started.elapsed());
    r.login_records = r.records;
    udp_idle_until(&socket, device, r, &mut buf, (started + config.hold).into()).await;
    let end = Instant::now() + config.duration;
    let mut next = tokio::time::Instant::now();
    while Instant::now() < end {
        // One frame per datagram; a batch is several datagrams sent back to back.
        let xs: Vec<Exchange> = (0..config.batch.max(1)).map(|_| device.report(1, SystemTime::now())).collect();
        for x in xs {
            r.sent(&x);
            r.records += x.records;
            if !udp_exchange(&socket, device, &x, config.ack_timeout, r, &mut buf).await {
                return;
            }
        }
        next += config.interval;
        udp_idle_until(&socket, device, r, &mut buf, next).await;
    }
}

/// As `idle_until` for a UDP device: a command (which comes after the acks of the device's
/// last datagram) is answered at once; any other datagram now is one the gateway should
/// not have sent.
async fn udp_idle_until(
    socket: &UdpSocket,
    device: &mut Device,
    r: &mut DeviceResult,
    buf: &mut [u8],
    deadline: tokio::time::Instant,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            // Cancel-safe: when the sleep wins, no datagram was taken.
            received = socket.recv(buf) => match received {
                Ok(n) => answer_datagram(socket, device, r, &buf[..n]).await,
                Err(_) => {
                    tokio::time::sleep_until(deadline).await;
                    return;
                }
            },
        }
    }
}

/// Answers a datagram that should be a command; counts it wrong if it is not one.
async fn answer_datagram(socket: &UdpSocket, device: &mut Device, r: &mut DeviceResult, datagram: &[u8]) {
    let answer = match device.command_at(datagram) {
        FromGateway::Command(n) if n == datagram.len() => device.answer(datagram, SystemTime::now()),
        _ => None,
    };
    match answer {
        Some(answer) if socket.send(&answer).await.is_ok() => {
            r.commands_answered += 1;
            r.records += 1;
        }
        _ => r.wrong += 1,
    }
}

async fn udp_exchange(
    socket: &UdpSocket,
    device: &mut Device,
    x: &Exchange,
    timeout: Duration,
    r: &mut DeviceResult,
    buf: &mut [u8],
) -> bool {
    let at = Instant::now();
    if socket.send(&x.bytes).await.is_err() {
        r.missing += x.expect.len() as u64;
        return false;
    }
    let mut expected = x.expect.iter();
    let mut want = expected.next();
    while let Some(w) = want {
        match tokio::time::timeout(timeout, socket.recv(buf)).await {
            Ok(Ok(n)) if device.accept(w, &buf[..n]) == Accepted::Took(n) => {
                r.ok += 1;
                r.latencies_us.push(at.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                want = expected.next();
            }
            // A command (sent after the acks of an earlier datagram): answered, and the
            // reply is still awaited.
            Ok(Ok(n)) if device.command_at(&buf[..n]) == FromGateway::Command(n) => {
                answer_datagram(socket, device, r, &buf[..n]).await;
            }
            Ok(Ok(_)) => {
                r.wrong += 1;
                want = expected.next();
            }
            _ => {
                r.missing += 1;
                return false;
            }
        }
    }
    true
}
