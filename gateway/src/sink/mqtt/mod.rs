//! The MQTT sink: every record published, QoS 1, to an MQTT 3.1.1 broker.
//!
//! The promise is the one the file sink keeps: `commit` returns only when the broker has
//! acknowledged (PUBACK) every record written since the last commit, so a device is acked only
//! for records the broker holds. Publishes are pipelined: a commit of a thousand records is a
//! thousand packets in a few writes, then the acks read back, not a round trip each.
//!
//! A lost connection is not an error by itself: the next commit connects again and re-sends
//! every record the broker had not acknowledged, marked DUP (at least once). Only when the
//! broker stays away for `reconnect` seconds does the commit fail, and the gateway stop as it
//! does for a full disk. Keep-alive is off: the sink thread sleeps while no records come, and
//! a connection found dead is simply made again. Settings and topics: docs/configuration.md.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use tracing::{info, warn};
use trackgate_codecs::Record;

use self::packet::{connect_packet, packet_type, publish};
use super::group::RecordSink;
use crate::config::mqtt::PASSWORD_VAR;
use crate::config::MqttTarget;

mod packet;

/// How long one connection attempt, or one wait for the broker's answer, may take.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Publishes written and not yet acknowledged before the sink waits for the broker: bounds the
/// memory kept for re-sending and keeps packet ids far from wrapping onto a waiting one.
const MAX_IN_FLIGHT: usize = 4096;
/// Bytes gathered before they are written to the socket.
const WRITE_CHUNK: usize = 64 * 1024;

fn broken(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// One connection to the broker.
struct Connection {
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
}

impl Connection {
    fn open(target: &MqttTarget) -> io::Result<Connection> {
        let mut last =
            io::Error::new(io::ErrorKind::NotFound, format!("{}:{} resolves to nothing", target.host, target.port));
        for addr in (target.host.as_str(), target.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
                Ok(stream) => return Connection::handshake(stream, target),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn handshake(stream: TcpStream, target: &MqttTarget) -> io::Result<Connection> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut c = Connection {
            reader: BufReader::with_capacity(16 * 1024, stream.try_clone()?),
            writer: BufWriter::with_capacity(WRITE_CHUNK, stream),
        };
        c.writer.write_all(&connect_packet(target))?;
        c.writer.flush()?;
        let (kind, body) = c.read_packet()?;
        if kind != packet_type::CONNACK || body.len() != 2 {
            return Err(broken(format!("the broker answered CONNECT with packet type {:#04x}", kind)));
        }
        match body[1] {
            0 => Ok(c),
            code => {
                let why = match code {
                    1 => "it does not speak MQTT 3.1.1",
                    2 => "it refused the client id",
                    3 => "it is unavailable",
                    4 => "bad user name or password",
                    5 => "not authorized",
                    _ => "an unknown reason",
                };
                Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("the broker refused the connection: {why}"),
                ))
            }
        }
    }

    /// Reads one control packet: its first byte and its body.
    fn read_packet(&mut self) -> io::Result<(u8, Vec<u8>)> {
        let mut first = [0u8; 1];
        self.reader.read_exact(&mut first)?;
        let mut len = 0usize;
        for shift in 0..4 {
            let mut b = [0u8; 1];
            self.reader.read_exact(&mut b)?;
            len |= usize::from(b[0] & 0x7F) << (7 * shift);
            if b[0] & 0x80 == 0 {
                // Nothing the broker sends this client is large; a huge length is a broken stream.
                if len > 64 * 1024 {
                    return Err(broken(format!("a {len}-byte packet from the broker")));
                }
                let mut body = vec![0u8; len];
                self.reader.read_exact(&mut body)?;
                return Ok((first[0], body));
            }
        }
        Err(broken("a remaining length of more than 4 bytes"))
    }
}

/// A publish written and not yet acknowledged.
struct InFlight {
    /// Order of writing, for sending again in the same order.
    seq: u64,
    packet: Vec<u8>,
}

/// Publishes records to an MQTT broker; see the module's notes.
pub struct MqttSink {
    target: MqttTarget,
    connection: Option<Connection>,
    in_flight: HashMap<u16, InFlight>,
    next_id: u16,
    next_seq: u64,
    topic: String,
    payload: Vec<u8>,
}

impl fmt::Debug for MqttSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttSink").field("target", &self.target).field("in_flight", &self.in_flight.len()).finish()
    }
}

impl MqttSink {
    /// Connects now, so a wrong address or refused login fails at start rather than at the
    /// first record. The password, if the URL names a user, comes from [`PASSWORD_VAR`].
    pub fn connect(target: &MqttTarget) -> io::Result<MqttSink> {
        let mut target = target.clone();
        if target.user.is_some() && target.password.is_none() {
            target.password = std::env::var(PASSWORD_VAR).ok();
        }
        let connection = Connection::open(&target)?;
        info!(broker = %format_args!("{}:{}", target.host, target.port), "MQTT sink connected");
        Ok(MqttSink {
            target,
            connection: Some(connection),
            in_flight: HashMap::new(),
            next_id: 1,
            next_seq: 0,
            topic: String::new(),
            payload: Vec::with_capacity(1024),
        })
    }

    /// A packet id no waiting publish has.
    fn take_id(&mut self) -> u16 {
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            if !self.in_flight.contains_key(&id) {
                return id;
            }
        }
    }

    /// Reads acks until nothing waits.
    fn read_acks(&mut self) -> io::Result<()> {
        let Some(c) = self.connection.as_mut() else { return Err(broken("not connected")) };
        c.writer.flush()?;
        loop {
            if self.in_flight.is_empty() {
                return Ok(());
            }
            let (kind, body) = c.read_packet()?;
            match kind & 0xF0 {
                packet_type::PUBACK if body.len() == 2 => {
                    // An ack for an id not waiting (a late one from before a re-send) is harmless.
                    self.in_flight.remove(&u16::from_be_bytes([body[0], body[1]]));
                }
                _ => return Err(broken(format!("unexpected packet type {kind:#04x} from the broker"))),
            }
        }
    }

    /// Connects again and writes every waiting publish, in its first order, marked DUP.
    fn reconnect_and_resend(&mut self) -> io::Result<()> {
        self.connection = None;
        let mut c = Connection::open(&self.target)?;
        let mut waiting: Vec<&mut InFlight> = self.in_flight.values_mut().collect();
        waiting.sort_by_key(|w| w.seq);
        for w in waiting {
            w.packet[0] |= packet_type::DUP;
            c.writer.write_all(&w.packet)?;
        }
        self.connection = Some(c);
        Ok(())
    }
}

impl RecordSink for MqttSink {
    fn write(&mut self, records: &[Record]) -> io::Result<()> {
        for r in records {
            if self.in_flight.len() >= MAX_IN_FLIGHT {
                // The broker catches up (connected again if need be) before more is taken: an
                // early commit is harmless, and it keeps packet ids from running out.
                self.commit()?;
            }
            self.target.topic.fill(r, &mut self.topic);
            self.payload.clear();
            r.write_json(&mut self.payload);
            let id = self.take_id();
            let packet = publish(&self.topic, id, &self.payload)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a record too large for MQTT"))?;
            if let Some(c) = self.connection.as_mut() {
                if c.writer.write_all(&packet).is_err() {
                    self.connection = None;
                }
            }
            self.in_flight.insert(id, InFlight { seq: self.next_seq, packet });
            self.next_seq += 1;
        }
        Ok(())
    }

    /// Returns once the broker has acknowledged everything written; connects again (and
    /// re-sends) as long as `reconnect` allows.
    fn commit(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + self.target.reconnect;
        let mut pause = Duration::from_millis(100);
        loop {
            let attempt = match self.connection {
                Some(_) => self.read_acks(),
                None => self.reconnect_and_resend().and_then(|()| self.read_acks()),
            };
            let e = match attempt {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            self.connection = None;
            if Instant::now() + pause > deadline {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "MQTT broker {}:{}: {e} ({} records unacknowledged)",
                        self.target.host,
                        self.target.port,
                        self.in_flight.len()
                    ),
                ));
            }
            warn!(error = %e, waiting = self.in_flight.len(), "MQTT broker lost; connecting again");
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

impl Drop for MqttSink {
    fn drop(&mut self) {
        if let Some(c) = self.connection.as_mut() {
            // A polite goodbye; the broker copes without it.
            let _ = c.writer.write_all(&[packet_type::DISCONNECT, 0]);
            let _ = c.writer.flush();
        }
    }
}
