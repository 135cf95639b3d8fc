//! The gateway as a library, run the way a program that embeds it runs it: its own
//! `RecordSink` in place of the JSONL file, listeners bound with `serve::bind_all` (so `:0`
//! ports are known before any device comes), `serve::Gateway::start`, and a shutdown that
//! hands the sink every record before the sink thread is joined. Devices are `trackgate
//! sim`'s, over real loopback sockets.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use trackgate::codecs::{Protocol, Record};
use trackgate::config::ServeLimits;
use trackgate::config::{ListenerConfig, ServeConfig};
use trackgate::ops::metrics::Metrics;
use trackgate::protocol::Transport;
use trackgate::registry::Registry;
use trackgate::server::{bind_all, Gateway};
use trackgate::sink::{self, RecordSink};
use trackgate::tools::sim::{self, SimConfig};

/// An embedder's store: records count as stored only once committed, as a database's
/// transaction would make them. With `failing`, every commit fails (a lost database).
#[derive(Clone, Default)]
struct Store {
    pending: Arc<Mutex<Vec<Record>>>,
    stored: Arc<Mutex<Vec<Record>>>,
    commits: Arc<Mutex<u64>>,
    failing: bool,
}

impl RecordSink for Store {
    fn write(&mut self, records: &[Record]) -> std::io::Result<()> {
        self.pending.lock().unwrap().extend_from_slice(records);
        Ok(())
    }

    fn commit(&mut self) -> std::io::Result<()> {
        if self.failing {
            return Err(std::io::Error::other("the database is gone"));
        }
        let mut pending = self.pending.lock().unwrap();
        self.stored.lock().unwrap().append(&mut pending);
        *self.commits.lock().unwrap() += 1;
        Ok(())
    }
}

fn devices(protocol: Protocol, transport: Transport, target: std::net::SocketAddr, first_id: u64) -> SimConfig {
    SimConfig {
        protocol,
        transport,
        target,
        devices: 30,
        interval: Duration::from_millis(100),
        duration: Duration::from_millis(1000),
        ramp: Duration::from_millis(200),
        batch: 3,
        damage: 0.05,
        ack_timeout: Duration::from_secs(20),
        seed: first_id,
        first_id,
        ..SimConfig::default()
    }
}

#[test]
fn an_embedding_program_runs_the_gateway_with_its_own_store() {
    let localhost = |p| ListenerConfig::new(p, ([127, 0, 0, 1], 0).into());
    let config = ServeConfig {
        shards: 2,
        listeners: vec![localhost(Protocol::Gt06), localhost(Protocol::Jt808), localhost(Protocol::Teltonika)],
        ..ServeConfig::default()
    };
    let store = Store::default();
    let (handle, sink_thread) = sink::start(vec![Box::new(store.clone())], 64).unwrap();
    let bound = bind_all(&config).unwrap();
    let addr =
        |p: Protocol, t: Transport| bound.iter().find(|b| b.protocol == p.into() && b.transport == t).unwrap().addr;
    let runs = [
        (Protocol::Gt06, Transport::Tcp, 0),
        (Protocol::Jt808, Transport::Tcp, 10_000),
        (Protocol::Teltonika, Transport::Tcp, 20_000),
        (Protocol::Teltonika, Transport::Udp, 30_000),
    ]
    .map(|(p, t, first_id)| devices(p, t, addr(p, t), first_id));
    let metrics = Metrics::new(config.shards);
    let registry = Registry::new();
    let gateway =
        Gateway::start(bound, config.shards, handle, ServeLimits::default(), metrics.clone(), registry.clone())
            .unwrap();

    let sims: Vec<_> = runs.into_iter().map(|c| std::thread::spawn(move || sim::run(c).unwrap())).collect();
    let mut expected = 0;
    for s in sims {
        let report = s.join().unwrap();
        // Every undamaged frame acknowledged byte for byte, no damaged one.
        assert!(report.all_acked(), "{report:#?}");
        assert!(report.damaged_sent > 0, "{report:#?}");
        expected += report.records_expected;
    }
    // Every acknowledged record was committed to the store before its ack went out.
    let stored_before_shutdown = store.stored.lock().unwrap().len() as u64;
    assert_eq!(stored_before_shutdown, expected);
    // The embedder's metrics and registry are the gateway's own.
    let text = metrics.render(trackgate::ops::http::gauges(&registry));
    assert!(text.contains("trackgate_records_total{protocol=\"teltonika\",transport=\"udp\"}"), "{text}");

    gateway.shutdown();
    sink_thread.join().unwrap();
    let stored = store.stored.lock().unwrap();
    assert_eq!(stored.len() as u64, expected, "nothing more, nothing less after the shutdown");
    assert!(store.pending.lock().unwrap().is_empty(), "nothing written and left uncommitted");
    // Commits come a batch at a time (every frame of a read, and every read waiting when
    // the sink thread wakes), not a record at a time.
    assert!(*store.commits.lock().unwrap() < expected, "{} commits", store.commits.lock().unwrap());
    for p in [Protocol::Gt06, Protocol::Jt808, Protocol::Teltonika] {
        assert!(stored.iter().any(|r| r.protocol == p && r.received_at.is_some()), "{p}");
    }
}

/// A store that fails stops the embedded gateway by itself, as it stops `trackgate serve`:
/// nothing is acknowledged, `stopping()` turns true without the owner asking, and the sink
/// thread's join gives the store's error.
#[test]
fn a_failing_store_stops_the_embedded_gateway() {
    let config = ServeConfig {
        shards: 2,
        listeners: vec![ListenerConfig::new(Protocol::Gt06, ([127, 0, 0, 1], 0).into())],
        ..ServeConfig::default()
    };
    let store = Store { failing: true, ..Store::default() };
    let (handle, sink_thread) = sink::start(vec![Box::new(store.clone())], 64).unwrap();
    let bound = bind_all(&config).unwrap();
    let target = bound[0].addr;
    let gateway =
        Gateway::start(bound, config.shards, handle, ServeLimits::default(), Metrics::new(2), Registry::new()).unwrap();
    let stopping = gateway.stopping();
    assert!(!*stopping.borrow());

    let mut one = devices(Protocol::Gt06, Transport::Tcp, target, 0);
    (one.devices, one.damage, one.ack_timeout) = (1, 0.0, Duration::from_secs(5));
    let report = sim::run(one).unwrap();
    assert_eq!((report.acks_ok, report.logged_in), (0, 0), "{report:#?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !*stopping.borrow() {
        assert!(std::time::Instant::now() < deadline, "the gateway goes on with a failed store");
        std::thread::sleep(Duration::from_millis(20));
    }
    gateway.shutdown();
    let error = sink_thread.join().unwrap_err();
    assert!(error.to_string().contains("the database is gone"), "{error}");
    assert!(store.stored.lock().unwrap().is_empty());
}
