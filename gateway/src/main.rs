//! The `trackgate` binary: `serve`, `decode`, `corpus verify|bless` (docs/operations.md, docs/tools.md).

use std::io::{self, BufWriter, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use trackgate::config::ListenSpec;
use trackgate::config::{parse_duration, parse_fsync, Overrides, ServeConfig};
use trackgate::config::{FsyncPolicy, SinkSpec};
use trackgate::protocol::default_port;
use trackgate::protocol::{self, parse_utc_offset, Listens, StreamOptions, Transport};
use trackgate::sink::{self, RecordSink};
use trackgate::tools::corpus;
use trackgate::tools::decode::{decode_reader, decode_to, parse_hex, parse_hex_header, DecodeError, DecodeSummary};
use trackgate::tools::sim::{self, SimConfig};
use trackgate_codecs::gt06::CrcPolicy;
use trackgate_codecs::Protocol;

/// Exit codes (docs/tools.md): 0 clean, 1 something rejected or failed, 2 usage.
const EXIT_REJECTED: u8 = 1;
const EXIT_USAGE: u8 = 2;

#[derive(Parser, Debug)]
#[command(name = "trackgate", version, about = "A gateway for GPS trackers: JT808, GT06, Teltonika and NMEA 0183")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway: accept devices, decode, write records to the sinks, acknowledge.
    Serve {
        /// A TOML file with listeners, sinks, limits and per-listener options (docs/configuration.md).
        /// Flags given here win over the file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// PROTO=ADDR, repeatable (nmea=0.0.0.0:5005; auto=0.0.0.0:5000 serves every protocol on
        /// one port). Default: every protocol on 0.0.0.0 at its usual port (gt06 5023, jt808
        /// 5015, teltonika 5027, nmea 5005).
        #[arg(long = "listen", value_name = "PROTO=ADDR")]
        listen: Vec<ListenSpec>,
        /// Where records go: jsonl:PATH (appended) or jsonl:- (standard output, the default).
        #[arg(long = "sink", value_name = "KIND:TARGET")]
        sink: Vec<SinkSpec>,
        /// Close a connection (forget a UDP peer) after this long without data: seconds, or
        /// 90s, 10m, 1h (default 10m).
        #[arg(long = "idle-timeout", value_name = "DURATION", value_parser = parse_duration)]
        idle_timeout: Option<Duration>,
        /// fsync file sinks on every commit (every-commit, the default) or never (flush only).
        #[arg(long, value_parser = parse_fsync)]
        fsync: Option<FsyncPolicy>,
        /// Shards (threads with their own listeners); default: one per core.
        #[arg(long)]
        shards: Option<usize>,
        /// Serve Prometheus metrics at http://ADDR/metrics.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<SocketAddr>,
        /// Join the nodes on this NATS: nats://HOST[:PORT][,HOST[:PORT]…] (docs/cluster.md).
        #[arg(long, value_name = "URL")]
        cluster: Option<String>,
        /// This node's name in the cluster (default: host name and process id).
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
    },
    /// Decode what one device sent on one connection and print one JSON record per line.
    Decode {
        /// gt06, jt808, teltonika, nmea, or auto (the first bytes, or with udp each
        /// datagram's, name the protocol).
        #[arg(long, value_parser = parse_listens)]
        protocol: Listens,
        /// tcp (one byte stream) or udp (with --hex, one datagram per line).
        #[arg(long, value_parser = parse_transport)]
        transport: Option<Transport>,
        /// The input is hex text; whitespace and # comments are ignored.
        #[arg(long)]
        hex: bool,
        /// JT808 device-local time zone (default +08:00).
        #[arg(long = "jt808-tz", value_parser = parse_utc_offset, allow_hyphen_values = true)]
        jt808_tz: Option<i32>,
        /// GT06 frames with a wrong CRC: strict (rejected, the default) or lenient (decoded
        /// with crc_ok false).
        #[arg(long = "gt06-crc")]
        gt06_crc: Option<CrcPolicy>,
        /// At the end, print one line to stderr counting the frames, records and rejections
        /// (by reason). Standard output stays exactly the records.
        #[arg(long)]
        summary: bool,
        /// The capture to read; - or nothing for standard input.
        file: Option<PathBuf>,
    },
    /// Simulate devices against a gateway: log in, report, check every ack byte for byte,
    /// and print a JSON report. Exits 1 if any ack was wrong or missing.
    Sim(SimArgs),
    /// Scale harness: many sessions in this process over an in-memory transport, through
    /// the real session and codec code. Prints a JSON report.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
    /// Check or bless the decode corpus.
    Corpus {
        #[command(subcommand)]
        action: CorpusAction,
    },
}

/// `sim`'s options, as given.
#[derive(Args, Debug)]
struct SimArgs {
    /// gt06, jt808, teltonika or nmea.
    #[arg(long, value_parser = parse_protocol)]
    protocol: Protocol,
    /// The gateway's address (default: 127.0.0.1 at the protocol's usual port).
    #[arg(long)]
    target: Option<SocketAddr>,
    /// tcp (default) or udp (not gt06).
    #[arg(long, value_parser = parse_transport, default_value = "tcp")]
    transport: Transport,
    /// Simulated devices.
    #[arg(long, default_value_t = 1)]
    devices: usize,
    /// Time between one device's reports (250ms, 1s, 1m).
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    interval: Duration,
    /// How long devices keep reporting.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    duration: Duration,
    /// Device starts are spread over this time.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    ramp: Duration,
    /// After logging in, devices stay connected and silent until this long after the
    /// start, then report for --duration (so a login storm can be measured on its own).
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    hold: Duration,
    /// Frames per report, written at once.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Probability (0 to 1) that a frame is sent damaged; it must not be acked.
    #[arg(long, default_value_t = 0.0)]
    damage: f64,
    /// How long to wait for an ack before counting it missing.
    #[arg(long = "ack-timeout", value_parser = parse_duration, default_value = "10s")]
    ack_timeout: Duration,
    /// Seed for positions and damage.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of the first device (ids are derived from it), so several sims can run
    /// side by side without sharing ids.
    #[arg(long = "first-id", default_value_t = 0)]
    first_id: u64,
    /// Connect from this local address (127.0.0.2, ...): loopback connections to one
    /// gateway address run out of ephemeral ports near 28,000 per source address.
    #[arg(long)]
    source: Option<IpAddr>,
}

#[derive(Subcommand, Debug)]
enum BenchWhat {
    /// N sessions log in, then report round after round: memory per idle session, set-up
    /// rate, records per second on one core.
    Sessions {
        #[arg(long, value_parser = parse_protocol)]
        protocol: Protocol,
        #[arg(long, default_value_t = 100_000)]
        sessions: usize,
        /// Report rounds after the logins (one frame per session each).
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// Also serialise every record to JSON, as the JSONL sink does.
        #[arg(long)]
        serialize: bool,
    },
}

#[derive(Subcommand, Debug)]
enum CorpusAction {
    /// Decode every case under DIR and compare it with its expectation.
    Verify {
        /// The corpus directory.
        #[arg(default_value = "corpus")]
        dir: PathBuf,
    },
    /// Write the expectation of each case from its current decode (after reading it!).
    Bless {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    s.parse()
}

fn parse_listens(s: &str) -> Result<Listens, String> {
    s.parse()
}

fn parse_transport(s: &str) -> Result<Transport, String> {
    s.parse()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, listen, sink, idle_timeout, fsync, shards, metrics, cluster, node } => {
            let overrides = Overrides { listen, sinks: sink, idle_timeout, fsync, shards, metrics, cluster, node };
            match ServeConfig::load(config.as_deref(), overrides) {
                Ok(config) => run_serve(&config),
                Err(e) => usage_error(e),
            }
        }
        Command::Decode { protocol, transport, hex, jt808_tz, gt06_crc, summary, file } => {
            let options = DecodeArgs { transport, hex, jt808_tz, gt06_crc, summary };
            run_decode(protocol, options, file)
        }
        Command::Sim(args) => match sim_config(args) {
            Ok(config) => run_sim(config),
            Err(e) => usage_error(e),
        },
        Command::Bench { what: BenchWhat::Sessions { protocol, sessions, rounds, serialize } } => {
            let report = trackgate::tools::bench::run_sessions(&trackgate::tools::bench::SessionBench {
                protocol,
                sessions,
                rounds,
                serialize,
            });
            println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Command::Corpus { action: CorpusAction::Verify { dir } } => run_verify(&dir),
        Command::Corpus { action: CorpusAction::Bless { files } } => run_bless(&files),
    }
}

/// What `sim` runs, when the options make sense together.
fn sim_config(a: SimArgs) -> Result<SimConfig, String> {
    if !protocol::serves(a.protocol, a.transport) {
        return Err(format!("{} devices do not use {}", a.protocol, a.transport.as_str()));
    }
    if !(0.0..=1.0).contains(&a.damage) {
        return Err("--damage is a probability between 0 and 1".into());
    }
    let target = a.target.unwrap_or_else(|| ([127, 0, 0, 1], default_port(a.protocol)).into());
    if let Some(ip) = a.source.filter(|ip| ip.is_ipv4() != target.is_ipv4()) {
        // Otherwise every device would fail to connect, reported only as a count.
        return Err(format!("--source {ip} and --target {target} are not the same IP version"));
    }
    Ok(SimConfig {
        protocol: a.protocol,
        transport: a.transport,
        target,
        devices: a.devices,
        interval: a.interval.max(Duration::from_millis(1)),
        duration: a.duration,
        ramp: a.ramp,
        hold: a.hold,
        batch: a.batch.max(1),
        damage: a.damage,
        ack_timeout: a.ack_timeout,
        seed: a.seed,
        first_id: a.first_id,
        source: a.source,
    })
}

fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("trackgate: {msg}");
    ExitCode::from(EXIT_USAGE)
}

/// `decode`'s options, as given.
struct DecodeArgs {
    transport: Option<Transport>,
    hex: bool,
    jt808_tz: Option<i32>,
    gt06_crc: Option<CrcPolicy>,
    summary: bool,
}

fn run_decode(protocol: Listens, args: DecodeArgs, file: Option<PathBuf>) -> ExitCode {
    let DecodeArgs { transport, hex, jt808_tz, gt06_crc, summary } = args;
    let mut input: Box<dyn Read> = match file.as_deref() {
        None => Box::new(io::stdin().lock()),
        Some(p) if p.as_os_str() == "-" => Box::new(io::stdin().lock()),
        Some(p) => match std::fs::File::open(p) {
            Ok(f) => Box::new(f),
            Err(e) => return usage_error(format!("cannot open {}: {e}", p.display())),
        },
    };
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut options = StreamOptions::default();
    let result = if hex {
        let mut text = String::new();
        if let Err(e) = input.read_to_string(&mut text) {
            return usage_error(format!("cannot read hex input: {e}"));
        }
        // A case file's header sets options the command line leaves open.
        let header = match parse_hex_header(&text) {
            Ok(h) => h,
            Err(e) => return usage_error(e),
        };
        options.transport = transport.or(header.transport).unwrap_or_default();
        options.jt808_tz_minutes = jt808_tz.or(header.jt808_tz_minutes).unwrap_or(options.jt808_tz_minutes);
        options.gt06_crc = gt06_crc.or(header.gt06_crc).unwrap_or_default();
        let chunks = match parse_hex(&text, options.transport == Transport::Udp) {
            Ok(c) => c,
            Err(e) => return usage_error(e),
        };
        decode_to(protocol, &options, chunks, &mut out)
    } else {
        options.transport = transport.unwrap_or_default();
        options.jt808_tz_minutes = jt808_tz.unwrap_or(options.jt808_tz_minutes);
        options.gt06_crc = gt06_crc.unwrap_or_default();
        if options.transport == Transport::Udp {
            // Raw UDP input is one datagram.
            let mut bytes = Vec::new();
            if let Err(e) = input.read_to_end(&mut bytes) {
                return usage_error(format!("cannot read input: {e}"));
            }
            decode_to(protocol, &options, [bytes], &mut out)
        } else {
            decode_reader(protocol, &options, input, &mut out)
        }
    };
    let flushed = out.flush();
    if let (true, Ok(counts)) = (summary, &result) {
        eprintln!("trackgate: {counts}");
    }
    match (result, flushed) {
        (Ok(DecodeSummary { rejected: 0, .. }), Ok(())) => ExitCode::SUCCESS,
        (Ok(_), Ok(())) => ExitCode::from(EXIT_REJECTED),
        // A closed pipe (`| head`) is the reader's choice, not a failure.
        (Err(DecodeError::Io(e)), _) | (_, Err(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        (Err(e), _) => usage_error(e),
        (_, Err(e)) => usage_error(e),
    }
}

fn run_sim(config: SimConfig) -> ExitCode {
    match sim::run(config) {
        Ok(report) => {
            println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            if report.all_acked() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_REJECTED)
            }
        }
        Err(e) => usage_error(format!("simulation failed: {e}")),
    }
}

fn run_verify(dir: &std::path::Path) -> ExitCode {
    let results = match corpus::verify_dir(dir) {
        Ok(r) => r,
        Err(e) => return usage_error(format!("cannot read corpus {}: {e}", dir.display())),
    };
    let mut failed = 0;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    for r in &results {
        let _ = match &r.failure {
            None => writeln!(out, "ok     {}", r.path.display()),
            Some(why) => {
                failed += 1;
                writeln!(out, "FAILED {}: {why}", r.path.display())
            }
        };
    }
    let _ = writeln!(out, "{} passed, {} failed", results.len() - failed, failed);
    if failed > 0 || results.is_empty() {
        if results.is_empty() {
            eprintln!("trackgate: no .hex cases under {}", dir.display());
        }
        ExitCode::from(EXIT_REJECTED)
    } else {
        ExitCode::SUCCESS
    }
}

fn run_bless(files: &[PathBuf]) -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    for f in files {
        match corpus::bless_case(f) {
            Ok(n) => println!("blessed {} ({n} lines) -> {}", f.display(), corpus::expectation_path(f).display()),
            Err(e) => {
                eprintln!("trackgate: {}: {e}", f.display());
                code = ExitCode::from(EXIT_REJECTED);
            }
        }
    }
    code
}

fn init_logging() {
    // Logs go to standard error; RUST_LOG overrides the level. Device identifiers and
    // coordinates are never logged at info level (privacy by default).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .with_target(false)
        .try_init();
}

fn run_serve(config: &ServeConfig) -> ExitCode {
    init_logging();
    let mut opened: Vec<Box<dyn RecordSink>> = Vec::new();
    for spec in &config.sinks {
        match sink::open(spec, config.fsync) {
            Ok(s) => opened.push(s),
            Err(e) => return usage_error(format!("cannot open sink {spec}: {e}")),
        }
    }
    let (handle, sink_thread) = match sink::start(opened, config.limits.sink_queue) {
        Ok(x) => x,
        Err(e) => return usage_error(format!("cannot start the sink: {e}")),
    };
    let served = trackgate::server::run(config, handle, wait_for_signal());
    // Every connection has returned and dropped its handle: the sink drains and commits.
    let flushed = sink_thread.join();
    match (served, flushed) {
        (Ok(()), Ok(())) => ExitCode::SUCCESS,
        (Err(e), _) => usage_error(e),
        (_, Err(e)) => {
            eprintln!("trackgate: sink failed: {e}");
            ExitCode::from(EXIT_REJECTED)
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(term_error) => {
                if let Err(int_error) = tokio::signal::ctrl_c().await {
                    // Without handlers the signals keep their default action (the process
                    // ends without flushing); returning here would shut down at once.
                    tracing::error!(%term_error, %int_error, "cannot handle SIGTERM or SIGINT; serving on without them");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
