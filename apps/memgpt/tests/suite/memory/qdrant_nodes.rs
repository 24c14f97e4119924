//! Qdrant servers started by the fault tests, from the binary `QDRANT_BIN` names (built
//! outside the project): one node or a cluster on loopback, each node in its own temporary
//! folder and on free ports, waited on through `/readyz`, and killed with SIGKILL on drop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Qdrant binary, or why the test is skipped.
pub fn qdrant_bin(test: &str) -> Option<PathBuf> {
    match std::env::var_os("QDRANT_BIN").map(PathBuf::from) {
        Some(bin) if bin.is_file() => Some(bin),
        _ => {
            eprintln!("{test}: skipped: set QDRANT_BIN to a Qdrant server binary (the tests start and kill their own nodes)");
            None
        }
    }
}

/// A port nothing listens on now (the listener is closed before Qdrant binds it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// One Qdrant process and what it needs to start again as the same node.
pub struct Node {
    bin: PathBuf,
    dir: PathBuf,
    http: u16,
    grpc: u16,
    p2p: u16,
    /// In a cluster: whether this node joins through another's p2p port.
    cluster: Option<Option<u16>>,
    child: Option<Child>,
}

impl Node {
    fn start(bin: &Path, dir: PathBuf, cluster: Option<Option<u16>>) -> Self {
        std::fs::create_dir_all(&dir).expect("node folder");
        let mut node = Self { bin: bin.to_path_buf(), dir, http: free_port(), grpc: free_port(), p2p: free_port(), cluster, child: None };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        let mut command = Command::new(&self.bin);
        command
            .current_dir(&self.dir)
            .env("QDRANT__SERVICE__HOST", "127.0.0.1")
            .env("QDRANT__SERVICE__HTTP_PORT", self.http.to_string())
            .env("QDRANT__SERVICE__GRPC_PORT", self.grpc.to_string())
            .env("QDRANT__STORAGE__STORAGE_PATH", self.dir.join("storage"))
            .env("QDRANT__STORAGE__SNAPSHOTS_PATH", self.dir.join("snapshots"))
            .env("QDRANT__TELEMETRY_DISABLED", "true")
            .env("QDRANT__LOG_LEVEL", "WARN")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("log")).map(Stdio::from).unwrap_or(Stdio::null()));
        if let Some(bootstrap) = self.cluster {
            command.env("QDRANT__CLUSTER__ENABLED", "true").env("QDRANT__CLUSTER__P2P__PORT", self.p2p.to_string());
            command.args(["--uri", &format!("http://127.0.0.1:{}", self.p2p)]);
            if let Some(peer) = bootstrap {
                command.args(["--bootstrap", &format!("http://127.0.0.1:{peer}")]);
            }
        }
        self.child = Some(command.spawn().expect("QDRANT_BIN starts"));
    }

    /// The gRPC URL the memory service is given.
    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc)
    }

    /// SIGKILL, and wait.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the same node again on its folder and ports, and waits until it is ready.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
        self.wait_ready(Duration::from_secs(120));
    }

    /// GET `path` on the REST port: the status code and the body.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.http));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let code = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Some((code, body))
    }

    /// Waits until `/readyz` answers 200 (in a cluster: consensus caught up).
    pub fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if matches!(self.get("/readyz"), Some((200, _))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("qdrant on port {} not ready within {within:?}:\n{}", self.http, std::fs::read_to_string(self.dir.join("log")).unwrap_or_default());
    }

    /// Peers this node's consensus knows.
    fn peers(&self) -> usize {
        let Some((200, body)) = self.get("/cluster") else { return 0 };
        serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["result"]["peers"].as_object().map(|p| p.len()))
            .unwrap_or(0)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One node, or several that form one cluster.
pub struct Qdrant {
    /// The nodes, the first one the bootstrap peer.
    pub nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl Qdrant {
    /// Starts `n` nodes (a cluster when `n` > 1) and waits until every node is ready and, in
    /// a cluster, knows every peer.
    pub fn start(bin: &Path, n: usize) -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let cluster = |bootstrap: Option<u16>| (n > 1).then_some(bootstrap);
        let first = Node::start(bin, dir.path().join("node0"), cluster(None));
        first.wait_ready(Duration::from_secs(120));
        let mut nodes = vec![first];
        for i in 1..n {
            let node = Node::start(bin, dir.path().join(format!("node{i}")), cluster(Some(nodes[0].p2p)));
            node.wait_ready(Duration::from_secs(120));
            nodes.push(node);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while n > 1 && nodes.iter().any(|node| node.peers() < n) {
            assert!(Instant::now() < deadline, "the {n} Qdrant nodes did not form one cluster within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { nodes, _dir: dir }
    }

    /// Every node's gRPC URL, comma-separated, as `--qdrant-url` takes them.
    pub fn urls(&self) -> String {
        self.nodes.iter().map(Node::grpc_url).collect::<Vec<_>>().join(",")
    }
}
