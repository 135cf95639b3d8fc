use super::bind::{capped_receive_buffer, reuseport_socket};
use super::stream::read_drained;
use super::tcp::{self, tcp_connection};
use super::udp::UdpPeer;
use super::*;
use crate::config::ListenerConfig;
use crate::config::UDP_RECEIVE_BUFFER;
use crate::session::{CloseReason, CLAIM_RETRY};
use crate::sink::{self, RecordSink};
use bytes::BytesMut;
use socket2::{Domain, Type};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::{Condvar, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use trackgate_codecs::Record;

/// Whether the gate is open, the records written, and the writes begun.
type Gate = (Mutex<(bool, Vec<Record>, usize)>, Condvar);

/// A sink whose writes wait until the test opens the gate.
#[derive(Clone, Default)]
struct GatedSink {
    state: Arc<Gate>,
}

impl GatedSink {
    fn open(&self) {
        self.state.0.lock().unwrap().0 = true;
        self.state.1.notify_all();
    }
    fn opened() -> Self {
        let gate = GatedSink::default();
        gate.open();
        gate
    }
    /// The message types of the records written.
    fn committed(&self) -> Vec<String> {
        self.state.0.lock().unwrap().1.iter().map(|r| r.message_type.to_string()).collect()
    }
    /// Waits for a record of `kind` to be written, and returns it.
    fn wait_for(&self, kind: trackgate_codecs::Kind) -> Record {
        let (lock, cv) = &*self.state;
        let (state, timeout) = cv
            .wait_timeout_while(lock.lock().unwrap(), Duration::from_secs(60), |s| !s.1.iter().any(|r| r.kind == kind))
            .unwrap();
        assert!(!timeout.timed_out(), "no {kind:?} record reached the sink");
        state.1.iter().find(|r| r.kind == kind).cloned().unwrap()
    }
    /// Waits until a write has begun (and is held at the gate, if it is closed).
    fn wait_for_a_write(&self) {
        let (lock, cv) = &*self.state;
        let (_guard, timeout) =
            cv.wait_timeout_while(lock.lock().unwrap(), Duration::from_secs(60), |s| s.2 == 0).unwrap();
        assert!(!timeout.timed_out(), "nothing reached the sink");
    }
}

impl RecordSink for GatedSink {
    fn write(&mut self, records: &[Record]) -> io::Result<()> {
        let (lock, cv) = &*self.state;
        let mut s = lock.lock().unwrap();
        s.2 += 1;
        cv.notify_all();
        let mut s = cv.wait_while(s, |s| !s.0).unwrap();
        s.1.extend_from_slice(records);
        cv.notify_all();
        Ok(())
    }
    fn commit(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Every open connection is one of these futures: its size is the gateway's memory per
/// connection before any heap, so it is held under a bound (`-- --nocapture` prints it).
#[test]
fn a_connection_task_stays_small() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (sink, sink_thread) = sink::start(vec![], 1).unwrap();
        let (_stop, stop_rx) = watch::channel(false);
        let registry = Registry::new();
        let slot = registry.admit([127, 0, 0, 1].into(), 0).unwrap();
        let shard = Arc::new(Shard {
            index: 0,
            sink,
            metrics: Metrics::new(1),
            registry,
            limits: ServeLimits::default(),
            stop: stop_rx,
        });
        let settings = Arc::new(SessionSettings::new(StreamOptions::default()));
        let peer = stream.local_addr().unwrap();
        let task =
            tcp_connection(shard, Protocol::Gt06.into(), settings, tcp::Socket { tcp: stream, peer, slot, tls: None });
        let size = std::mem::size_of_val(&task);
        eprintln!("a connection's future: {size} bytes");
        // And on the heap once the device identifies itself: the registry's way to it.
        eprintln!("an identified device's control: {} bytes in an Arc", std::mem::size_of::<Control>());
        assert!(size <= 1536, "a connection's future grew to {size} bytes");
        drop(task);
        drop(sink_thread);
    });
}

/// The gateway sets no TCP_NODELAY per connection on Linux, counting on accepted
/// sockets inheriting the listener's; this holds the kernel to that. (Elsewhere the
/// gateway sets it on each connection, so there is nothing to hold.)
#[cfg(target_os = "linux")]
#[test]
fn accepted_connections_inherit_nodelay_from_the_listener() {
    let socket = reuseport_socket(([127, 0, 0, 1], 0).into(), Transport::Tcp, UDP_RECEIVE_BUFFER).unwrap();
    let listener: std::net::TcpListener = socket.into();
    let _device = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    listener.set_nonblocking(false).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    assert!(accepted.nodelay().unwrap(), "an accepted socket did not inherit TCP_NODELAY");
}

/// A UDP peer whose device a TCP connection holds tries again for it once a second, not
/// on every datagram, and takes it once the TCP connection has gone.
#[test]
fn a_udp_peer_refused_its_device_tries_again_after_a_pause() {
    let registry = Registry::new();
    let tcp = Arc::new(Control::default());
    let tcp_conn = registry.next_conn();
    registry.claim(Protocol::Jt808, "14130567872", tcp_conn, 0, tcp.clone());
    let settings = SessionSettings::new(StreamOptions { transport: Transport::Udp, ..StreamOptions::default() });
    let start = Instant::now();
    let mut peer = UdpPeer::new(Session::new(Protocol::Jt808, &settings, start));
    // A heartbeat names the terminal.
    use trackgate_codecs::jt808;
    let terminal = jt808::Terminal::for_device_id("14130567872", jt808::Edition::V2013).unwrap();
    let heartbeat = jt808::encode(jt808::id::HEARTBEAT, &terminal, 1, &[]).unwrap();
    let mut out = Output::default();
    // Each try takes a connection id: the ids taken between two of our own count them.
    let before = registry.next_conn();
    let mut hear = |peer: &mut UdpPeer, at: Duration| {
        let now = start + at;
        if peer.receive(&heartbeat, now, &mut out).claim.is_some() {
            peer.claim(&registry, 0, Protocol::Jt808, now);
        }
    };
    hear(&mut peer, Duration::ZERO);
    assert_eq!(peer.session.device_id(), Some("14130567872"));
    hear(&mut peer, Duration::from_millis(500));
    assert!(peer.claim.is_none());
    assert_eq!(registry.next_conn() - before, 2, "one try in the first second");
    registry.release(Protocol::Jt808, "14130567872", tcp_conn, &tcp);
    hear(&mut peer, CLAIM_RETRY);
    assert!(peer.claim.is_some(), "taken once the TCP connection has gone");
    assert_eq!(registry.status(Protocol::Jt808, "14130567872").connected, Some("udp"));
}

/// UDP sockets ask for a receive buffer that holds a burst of datagrams, as much of it
/// as the kernel allows (Linux reports twice what it granted, up to `rmem_max`).
#[cfg(target_os = "linux")]
#[test]
fn udp_sockets_get_a_large_receive_buffer() {
    let socket = reuseport_socket(([127, 0, 0, 1], 0).into(), Transport::Udp, UDP_RECEIVE_BUFFER).unwrap();
    let granted = socket.recv_buffer_size().unwrap();
    let max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max").unwrap().trim().parse().unwrap();
    assert!(granted >= 2 * UDP_RECEIVE_BUFFER.min(max), "{granted} bytes (rmem_max {max})");
    // Asked for more than the kernel allows: the size granted is what is told (where
    // twice rmem_max still fits the kernel's `int`).
    if max > 1 << 29 {
        return;
    }
    let capped = reuseport_socket(([127, 0, 0, 1], 0).into(), Transport::Udp, 2 * max).unwrap();
    assert_eq!(capped_receive_buffer(&capped, 2 * max), Some(max));
    let modest = reuseport_socket(([127, 0, 0, 1], 0).into(), Transport::Udp, 64 << 10).unwrap();
    assert_eq!(capped_receive_buffer(&modest, 64 << 10), None);
}

/// A short read clears the stream's readiness (no read that finds nothing), and neither
/// bytes that arrive afterwards nor the peer's hang-up are missed for it.
#[test]
fn a_drained_read_loses_neither_later_bytes_nor_the_end() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut device = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let mut buf = BytesMut::with_capacity(4096);
        device.write_all(b"first").await.unwrap();
        stream.readable().await.unwrap();
        assert_eq!(read_drained(&stream, &mut buf).unwrap(), 5);
        // Drained: waiting again does not return at once.
        let again = tokio::time::timeout(Duration::from_millis(50), stream.readable()).await;
        assert!(again.is_err(), "readiness was not cleared by a short read");
        device.write_all(b"second").await.unwrap();
        stream.readable().await.unwrap();
        assert_eq!(read_drained(&stream, &mut buf).unwrap(), 6);
        assert_eq!(&buf[..], b"firstsecond");
        // Bytes and the hang-up together: the bytes, then the end.
        device.write_all(b"last").await.unwrap();
        device.shutdown().await.unwrap();
        drop(device);
        stream.readable().await.unwrap();
        let n = read_drained(&stream, &mut buf).unwrap();
        assert!(n == 4 || n == 0, "read {n}");
        if n == 4 {
            stream.readable().await.unwrap();
            assert_eq!(read_drained(&stream, &mut buf).unwrap(), 0);
        }
        assert_eq!(&buf[..], b"firstsecondlast");
        // A read that fills the room is not taken as drained: the rest follows.
        let mut small = BytesMut::with_capacity(4);
        let mut device = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        device.write_all(b"0123456789").await.unwrap();
        let mut got = Vec::new();
        while got.len() < 10 {
            stream.readable().await.unwrap();
            small.clear();
            small.reserve(4);
            match read_drained(&stream, &mut small) {
                Ok(n) => got.extend_from_slice(&small[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, b"0123456789");
    });
}

#[test]
fn the_ack_waits_for_the_sink() {
    let gate = GatedSink::default();
    let (gateway, sink_thread, addrs, ..) = serve_one(Protocol::Gt06, Box::new(gate.clone()), ServeLimits::default());
    let mut device = std::net::TcpStream::connect(addrs[&Transport::Tcp]).unwrap();
    device.write_all(&gt06_login()).unwrap();
    // The sink has not accepted the login: no ack may come.
    device.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut ack = [0u8; 10];
    let early = device.read(&mut ack);
    assert!(early.is_err(), "acked before the sink accepted: {early:?}");
    assert!(gate.committed().is_empty());
    gate.open();
    device.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    device.read_exact(&mut ack).unwrap();
    assert_eq!(ack.to_vec(), trackgate_codecs::gt06::ack(false, 0x01, 1));
    assert_eq!(gate.committed(), ["0x01"]);
    gateway.shutdown();
    sink_thread.join().unwrap();
}

/// A gateway serving `protocol` alone on loopback (every transport it has), with its
/// records going to `sink`. Returns the gateway, the sink's thread, the bound addresses
/// by transport, the metrics and the registry.
fn serve_one(
    protocol: Protocol,
    sink: Box<dyn RecordSink>,
    limits: ServeLimits,
) -> (Gateway, sink::SinkThread, HashMap<Transport, SocketAddr>, Arc<Metrics>, Arc<Registry>) {
    let (handle, sink_thread) = sink::start(vec![sink], 4).unwrap();
    let config = ServeConfig {
        shards: 1,
        listeners: vec![ListenerConfig::new(protocol, ([127, 0, 0, 1], 0).into())],
        limits,
        ..ServeConfig::default()
    };
    let bound = bind_all(&config).unwrap();
    let addrs = bound.iter().map(|b| (b.transport, b.addr)).collect();
    let (metrics, registry) = (Metrics::new(1), Registry::new());
    let gateway = Gateway::start(bound, 1, handle, config.limits.clone(), metrics.clone(), registry.clone()).unwrap();
    (gateway, sink_thread, addrs, metrics, registry)
}

/// A command goes through the registry to the connection holding the device and out
/// as the protocol's frame; the device's answer reaches the sink naming the command.
/// A command the protocol cannot carry is refused with the reason, and the connection
/// carries on.
#[test]
fn a_command_reaches_the_device_and_its_answer_names_it() {
    use trackgate_codecs::gt06;
    use trackgate_codecs::{Downlink, DownlinkError, Kind};
    let gate = GatedSink::opened();
    let (gateway, sink_thread, addrs, metrics, registry) =
        serve_one(Protocol::Gt06, Box::new(gate.clone()), ServeLimits::default());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let send =
        |text: &str| rt.block_on(registry.send_command(Protocol::Gt06, "123456789012345", Downlink::Text(text.into())));
    assert_eq!(send("WHERE#"), Err(SendError::NotConnected));
    let mut device = std::net::TcpStream::connect(addrs[&Transport::Tcp]).unwrap();
    device.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    device.write_all(&gt06_login()).unwrap();
    let mut ack = [0u8; 10];
    device.read_exact(&mut ack).unwrap();

    // The session's first command: server flag 1, serial 1; its answer will carry the flag.
    let sent = send("WHERE#").unwrap().unwrap();
    assert_eq!((sent.attribute, sent.value), ("server_flag", 1));
    let expected = gt06::encode_command(1, "WHERE#", None, 1).unwrap();
    let mut frame = vec![0u8; expected.len()];
    device.read_exact(&mut frame).unwrap();
    assert_eq!(frame, expected);
    assert!(matches!(send("Relé#"), Err(SendError::Refused(DownlinkError::Invalid(_)))));

    // The device answers (0x15: the command's length, its server flag, the text).
    let mut content = vec![4 + 12];
    content.extend_from_slice(&1u32.to_be_bytes());
    content.extend_from_slice(b"Lat:N22.5,E1\x00\x02");
    let mut answer = Vec::new();
    gt06::encode_frame(&mut answer, false, gt06::COMMAND_REPLY, &content, 2).unwrap();
    device.write_all(&answer).unwrap();
    let record = gate.wait_for(Kind::CommandResponse);
    assert_eq!(record.attributes.get("command").unwrap(), "WHERE#");
    assert_eq!(record.attributes.get(sent.attribute).unwrap(), sent.value);
    assert_eq!(record.attributes.get("text").unwrap(), "Lat:N22.5,E1");
    let text = metrics.render(crate::ops::http::gauges(&registry));
    for line in [
        "trackgate_commands_total{protocol=\"gt06\",transport=\"tcp\",result=\"written\"} 1",
        "trackgate_commands_total{protocol=\"gt06\",transport=\"tcp\",result=\"refused\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    gateway.shutdown();
    sink_thread.join().unwrap();
    // Once the connection is gone, so is the way to the device.
    assert_eq!(send("WHERE#"), Err(SendError::NotConnected));
}

/// A GT06 login (serial 1) of device 123456789012345.
fn gt06_login() -> Vec<u8> {
    let mut login = Vec::new();
    let mut content = trackgate_codecs::gt06::imei_to_bcd("123456789012345").unwrap().to_vec();
    content.extend_from_slice(&[0x36, 0x08, 0x32, 0x00]);
    trackgate_codecs::gt06::encode_frame(&mut login, false, 0x01, &content, 1).unwrap();
    login
}

/// A valid RMC sentence, its checksum computed.
fn rmc(second: u32) -> Vec<u8> {
    let body = format!("GPRMC,1200{second:02}.00,A,4807.0380,N,01131.0000,E,0.0,0.0,230394,,,A");
    let sum = body.bytes().fold(0u8, |a, b| a ^ b);
    format!("${body}*{sum:02X}\r\n").into_bytes()
}

/// Shuts `gateway` down on another thread, runs `once_begun` when the shutdown has
/// begun, and waits for the end, then for the sink's thread: a hang fails after a
/// minute instead of holding the suite.
fn shut_down(gateway: Gateway, sink_thread: sink::SinkThread, once_begun: impl FnOnce()) {
    let stopping = gateway.stopping();
    let (done_tx, done) = std::sync::mpsc::channel();
    thread::spawn(move || {
        gateway.shutdown();
        let _ = done_tx.send(());
    });
    while !*stopping.borrow() {
        thread::sleep(Duration::from_millis(5));
    }
    once_begun();
    done.recv_timeout(Duration::from_secs(60)).expect("the shutdown did not end");
    sink_thread.join().unwrap();
}

/// Bytes a device sent before the shutdown but the gateway had not yet read (it was
/// waiting for the sink) are read, decoded and delivered, not dropped with the socket:
/// the kernel had acknowledged them, and an NMEA device never sends them again.
#[test]
fn bytes_held_by_a_tcp_socket_at_shutdown_are_delivered() {
    let gate = GatedSink::default();
    let (gateway, sink_thread, addrs, ..) = serve_one(Protocol::Nmea, Box::new(gate.clone()), ServeLimits::default());
    let mut device = std::net::TcpStream::connect(addrs[&Transport::Tcp]).unwrap();
    device.write_all(b"$IMEI=123456789012345\r\n").unwrap();
    device.write_all(&rmc(1)).unwrap();
    // The gateway has read what came so far and waits for the sink: the rest stays in
    // the kernel's buffer until shutdown.
    gate.wait_for_a_write();
    for second in 2..=4 {
        device.write_all(&rmc(second)).unwrap();
    }
    // Half a sentence: judged at the close, as before.
    device.write_all(b"$GPRMC,1200").unwrap();
    shut_down(gateway, sink_thread, || gate.open());
    let committed = gate.committed();
    let positions = committed.iter().filter(|t| *t == "RMC").count();
    assert_eq!(positions, 4, "{committed:?}");
}

/// The same for datagrams held by a UDP socket at shutdown.
#[test]
fn datagrams_held_by_a_udp_socket_at_shutdown_are_delivered() {
    let gate = GatedSink::default();
    let (gateway, sink_thread, addrs, ..) = serve_one(Protocol::Nmea, Box::new(gate.clone()), ServeLimits::default());
    let device = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = addrs[&Transport::Udp];
    let mut first = b"$IMEI=123456789012345\r\n".to_vec();
    first.extend_from_slice(&rmc(1));
    device.send_to(&first, to).unwrap();
    gate.wait_for_a_write();
    for second in 2..=40 {
        let mut datagram = b"$IMEI=123456789012345\r\n".to_vec();
        datagram.extend_from_slice(&rmc(second));
        device.send_to(&datagram, to).unwrap();
    }
    shut_down(gateway, sink_thread, || gate.open());
    let committed = gate.committed();
    let positions = committed.iter().filter(|t| *t == "RMC").count();
    assert_eq!(positions, 40, "{committed:?}");
}

/// A GT06 device that logs in and then sends heartbeats without ever reading its acks,
/// until its writes would block: the gateway's writes of acks to it are stuck too.
fn device_that_never_reads(addr: SocketAddr) -> std::net::TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    // A small window, so the acks back up quickly.
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut device: std::net::TcpStream = socket.into();
    device.write_all(&gt06_login()).unwrap();
    let mut frames = Vec::new();
    for serial in 0..256u16 {
        trackgate_codecs::gt06::encode_frame(&mut frames, false, 0x13, &[0x44, 0x01, 0x04, 0x00, 0x01], serial)
            .unwrap();
    }
    device.set_nonblocking(true).unwrap();
    let mut at = 0;
    let mut idle_rounds = 0;
    // Writes stop being taken once the gateway has stopped reading (its ack write
    // waits) and both sockets' buffers between are full. Wait for a few seconds of
    // nothing taken to be sure it is not just slow.
    while idle_rounds < 200 {
        match device.write(&frames[at..]) {
            Ok(n) => {
                at = (at + n) % frames.len();
                idle_rounds = 0;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                idle_rounds += 1;
                thread::sleep(Duration::from_millis(10));
            }
            // The gateway closed it already (a short idle timeout).
            Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) => break,
            Err(e) => panic!("{e}"),
        }
    }
    device
}

/// A device that does not read its acks cannot hold the gateway's shutdown.
#[test]
fn a_device_that_never_reads_its_acks_does_not_hold_the_shutdown() {
    let (gateway, sink_thread, addrs, metrics, _) =
        serve_one(Protocol::Gt06, Box::new(GatedSink::opened()), ServeLimits::default());
    let _device = device_that_never_reads(addrs[&Transport::Tcp]);
    shut_down(gateway, sink_thread, || {});
    assert_eq!(metrics.closed(CloseReason::Shutdown), 1);
}

/// Nor can it hold its connection past the idle timeout: not reading is not talking.
#[test]
fn a_device_that_never_reads_its_acks_is_closed_at_the_idle_timeout() {
    let limits = ServeLimits { idle_timeout: Duration::from_secs(2), ..ServeLimits::default() };
    let (gateway, sink_thread, addrs, metrics, _) = serve_one(Protocol::Gt06, Box::new(GatedSink::opened()), limits);
    let _device = device_that_never_reads(addrs[&Transport::Tcp]);
    let mut waited = 0;
    while metrics.closed(CloseReason::Idle) == 0 {
        assert!(waited < 6000, "the stuck connection was never closed");
        thread::sleep(Duration::from_millis(10));
        waited += 1;
    }
    gateway.shutdown();
    sink_thread.join().unwrap();
    assert_eq!(metrics.closed(CloseReason::Shutdown), 0);
}
