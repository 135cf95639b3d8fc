//! The `trackgate` binary: `serve`, `decode`, `corpus verify|bless` (contract §2, §3).

use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use trackgate::corpus;
use trackgate::decode::{decode_reader, decode_to, parse_hex, parse_hex_header, DecodeError, DecodeSummary};
use trackgate::protocols::{parse_utc_offset, StreamOptions, Transport};
use trackgate::serve::{bind_all, default_port, ListenSpec, ServeLimits};
use trackgate::sink::{self, FsyncPolicy, JsonlSink, RecordSink, SinkSpec};
use trackgate_codecs::gt06::CrcPolicy;
use trackgate_codecs::Protocol;

/// Exit codes of the contract: 0 clean, 1 something rejected or failed, 2 usage.
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
        /// PROTO=ADDR, repeatable (nmea=0.0.0.0:5005). Default: every protocol on 0.0.0.0 at
        /// its usual port (gt06 5023, jt808 5015, teltonika 5027, nmea 5005).
        #[arg(long = "listen", value_name = "PROTO=ADDR")]
        listen: Vec<ListenSpec>,
        /// Where records go: jsonl:PATH (appended) or jsonl:- (standard output, the default).
        #[arg(long = "sink", value_name = "KIND:TARGET")]
        sink: Vec<SinkSpec>,
        /// Close a connection (forget a UDP peer) after this many seconds without data.
        #[arg(long = "idle-timeout", value_name = "SECONDS", default_value_t = 600)]
        idle_timeout: u64,
        /// fsync file sinks on every commit (every-commit, the default) or never (flush only).
        #[arg(long, value_parser = parse_fsync, default_value = "every-commit")]
        fsync: FsyncPolicy,
    },
    /// Decode what one device sent on one connection and print one JSON record per line.
    Decode {
        /// gt06, jt808, teltonika or nmea.
        #[arg(long, value_parser = parse_protocol)]
        protocol: Protocol,
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
        /// The capture to read; - or nothing for standard input.
        file: Option<PathBuf>,
    },
    /// Check or bless the decode corpus.
    Corpus {
        #[command(subcommand)]
        action: CorpusAction,
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

fn parse_transport(s: &str) -> Result<Transport, String> {
    s.parse()
}

fn parse_fsync(s: &str) -> Result<FsyncPolicy, String> {
    match s {
        "every-commit" => Ok(FsyncPolicy::EveryCommit),
        "never" => Ok(FsyncPolicy::Never),
        _ => Err(format!("unknown fsync policy {s:?} (expected every-commit or never)")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { listen, sink, idle_timeout, fsync } => run_serve(listen, sink, idle_timeout, fsync),
        Command::Decode { protocol, transport, hex, jt808_tz, gt06_crc, file } => {
            run_decode(protocol, transport, hex, jt808_tz, gt06_crc, file)
        }
        Command::Corpus { action: CorpusAction::Verify { dir } } => run_verify(&dir),
        Command::Corpus { action: CorpusAction::Bless { files } } => run_bless(&files),
    }
}

fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("trackgate: {msg}");
    ExitCode::from(EXIT_USAGE)
}

fn run_decode(
    protocol: Protocol,
    transport: Option<Transport>,
    hex: bool,
    jt808_tz: Option<i32>,
    gt06_crc: Option<CrcPolicy>,
    file: Option<PathBuf>,
) -> ExitCode {
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
    match (result, flushed) {
        (Ok(DecodeSummary { rejected: 0, .. }), Ok(())) => ExitCode::SUCCESS,
        (Ok(_), Ok(())) => ExitCode::from(EXIT_REJECTED),
        // A closed pipe (`| head`) is the reader's choice, not a failure.
        (Err(DecodeError::Io(e)), _) | (_, Err(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        (Err(e), _) => usage_error(e),
        (_, Err(e)) => usage_error(e),
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

fn run_serve(listen: Vec<ListenSpec>, sinks: Vec<SinkSpec>, idle_timeout: u64, fsync: FsyncPolicy) -> ExitCode {
    init_logging();
    let specs = if listen.is_empty() {
        // Defaults: every protocol this build can decode, on its field port.
        Protocol::ALL
            .into_iter()
            .map(|protocol| ListenSpec { protocol, addr: ([0, 0, 0, 0], default_port(protocol)).into() })
            .collect()
    } else {
        listen
    };
    let sinks = if sinks.is_empty() { vec![SinkSpec::JsonlStdout] } else { sinks };
    let mut opened: Vec<Box<dyn RecordSink>> = Vec::new();
    for spec in &sinks {
        match JsonlSink::open(spec, fsync) {
            Ok(s) => opened.push(Box::new(s)),
            Err(e) => return usage_error(format!("cannot open sink {spec:?}: {e}")),
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return usage_error(format!("cannot start the runtime: {e}")),
    };
    let (handle, sink_thread) = match sink::start(opened, 1024) {
        Ok(x) => x,
        Err(e) => return usage_error(format!("cannot start the sink: {e}")),
    };
    let served = runtime.block_on(async move {
        let bound = bind_all(&specs).await?;
        for b in &bound {
            eprintln!("{}", b.listening_line()?);
        }
        tracing::info!(listeners = bound.len(), "trackgate serving");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: no new connections, flushing the sink");
            let _ = stop_tx.send(true);
        });
        let limits =
            ServeLimits { idle_timeout: std::time::Duration::from_secs(idle_timeout.max(1)), ..ServeLimits::default() };
        trackgate::serve::serve(bound, handle, limits, stop_rx).await;
        Ok::<(), io::Error>(())
    });
    drop(runtime);
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
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
