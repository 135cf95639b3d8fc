//! `trackgate serve` as a child process of a test, its listening addresses read off its
//! standard error and its last words kept.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `trackgate serve`, killed when dropped.
pub struct Gateway {
    pub child: Child,
    /// `"gt06 tcp"`, `"nmea udp"`, `"metrics http"` → address.
    pub addrs: HashMap<String, SocketAddr>,
    /// What it printed after its listening lines.
    pub last_words: Arc<Mutex<Vec<String>>>,
}

impl Gateway {
    /// `trackgate serve` with a listener per protocol on a free loopback port, and `sinks`.
    /// The exit code and what it said, if it stopped before listening.
    pub fn start(listens: &[&str], sinks: &[String]) -> Result<Gateway, (Option<i32>, String)> {
        Gateway::start_with(listens, sinks, &[], &[])
    }

    /// As [`Gateway::start`], with more arguments and environment variables.
    pub fn start_with(
        listens: &[&str],
        sinks: &[String],
        args: &[String],
        env: &[(&str, &str)],
    ) -> Result<Gateway, (Option<i32>, String)> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_trackgate"));
        command.arg("serve");
        for l in listens {
            command.args(["--listen", &format!("{l}=127.0.0.1:0")]);
        }
        for s in sinks {
            command.args(["--sink", s]);
        }
        command.args(args).envs(env.iter().copied());
        let mut wanted = listens.iter().map(|p| if *p == "gt06" { 1 } else { 2 }).sum::<usize>();
        wanted += usize::from(args.iter().any(|a| a == "--metrics"));
        Gateway::spawn(command, wanted)
    }

    /// `trackgate serve --config FILE` with `args`, once it has printed `lines` listening
    /// lines (the file's listeners and endpoints).
    pub fn start_config(
        config: &std::path::Path,
        args: &[&str],
        lines: usize,
    ) -> Result<Gateway, (Option<i32>, String)> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_trackgate"));
        command.args(["serve", "--config"]).arg(config).args(args);
        Gateway::spawn(command, lines)
    }

    fn spawn(mut command: Command, wanted: usize) -> Result<Gateway, (Option<i32>, String)> {
        let mut child = command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("trackgate serve starts");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut addrs = HashMap::new();
        let mut line = String::new();
        let mut said = String::new();
        while addrs.len() < wanted {
            line.clear();
            if stderr.read_line(&mut line).unwrap() == 0 {
                return Err((child.wait().unwrap().code(), said));
            }
            said.push_str(&line);
            if let Some(listening) = line.trim().strip_prefix("listening ") {
                let (key, addr) = listening.rsplit_once(' ').unwrap();
                addrs.insert(key.to_owned(), addr.parse().unwrap());
            }
        }
        let last_words = Arc::new(Mutex::new(Vec::new()));
        let kept = last_words.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        Ok(Gateway { child, addrs, last_words })
    }

    /// SIGTERM, then the exit code.
    pub fn stop(mut self) -> Option<i32> {
        self.terminate()
    }

    /// As [`Gateway::stop`], for a gateway held inside something else.
    pub fn terminate(&mut self) -> Option<i32> {
        assert!(Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap().success());
        self.child.wait().unwrap().code()
    }

    /// Waits (up to `wait`) until a line it printed contains `what`.
    pub fn said(&self, what: &str, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            if self.last_words.lock().unwrap().iter().any(|l| l.contains(what)) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A connection to `to` from the loopback address `from` (127.0.0.2 is another address on
/// the same machine, as a device elsewhere would be).
pub fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    socket.into()
}

/// Whether the gateway closed the connection within `wait` (its end, or a reset), rather
/// than leaving it open and silent. Bytes before the end (a TLS alert) are read past.
pub fn closed_within(conn: &mut TcpStream, wait: Duration) -> bool {
    conn.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 64];
    for _ in 0..64 {
        match conn.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        }
    }
    false
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A path in the temporary directory no other test run uses.
pub fn temp_path(name: &str) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    std::env::temp_dir().join(format!("trackgate-{name}-{}-{nanos}", std::process::id()))
}

/// Reads one GT06 ack (10 bytes) or times out.
pub fn read_ack(device: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    device.set_read_timeout(Some(wait)).unwrap();
    let mut ack = vec![0u8; 10];
    device.read_exact(&mut ack).ok().map(|()| ack)
}

/// One HTTP request to the gateway's endpoint: the status code and the body.
pub fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\n\r\n{body}", body.len());
    c.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}
