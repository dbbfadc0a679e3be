//! Test harness: real `berth` processes on loopback, each in its own
//! temporary data dir, killed by pid when the test ends (pass or fail).

#![allow(dead_code)]

pub mod history;

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth::proto::berth::cluster::v1::HealthRequest;
use berth::proto::berth::cluster::v1::cluster_client::ClusterClient;
use berth::proto::containerd::services::containers::v1::container::Runtime as PbRuntime;
use berth::proto::containerd::services::containers::v1::containers_client::ContainersClient;
use berth::proto::containerd::services::containers::v1::{
    Container as PbContainer, CreateContainerRequest, ListContainersRequest,
};
use berth::proto::containerd::services::version::v1::version_client::VersionClient;
use tonic::Request;
use tonic::transport::{Channel, Endpoint};

/// Upper bound for any single test.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs a test body with a deadline, so a hang fails instead of blocking CI.
pub async fn bounded<F: Future<Output = T>, T>(body: F) -> T {
    tokio::time::timeout(TEST_TIMEOUT, body)
        .await
        .expect("test exceeded its time bound")
}

/// A free TCP port on loopback (bound, then released for the node to take),
/// from below the kernel's ephemeral range: a node dialing a peer that has
/// not bound yet could otherwise get that very port for its own outgoing
/// connection (a TCP self-connect) and keep the peer from binding.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(32768);
    let span = low.saturating_sub(10_000).max(1);
    // Spread processes (test binaries run in parallel) and calls apart.
    let start = std::process::id().wrapping_mul(7919);
    for _ in 0..span {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = 10_000 + (start.wrapping_add(n.wrapping_mul(37)) % span);
        if TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    panic!("no free loopback port below the ephemeral range");
}

/// One `berth serve` process.
pub struct TestNode {
    pub id: u64,
    pub addr: String,
    pub socket: PathBuf,
    pub data_dir: PathBuf,
    pub extra_args: Vec<String>,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

impl TestNode {
    /// Starts a single node in a fresh temporary directory and waits until it answers.
    pub async fn start_single() -> TestNode {
        let tmp = tempfile::Builder::new()
            .prefix("berth-test")
            .tempdir()
            .unwrap();
        let mut node = TestNode::new(1, tmp.path(), format!("127.0.0.1:{}", free_port()), vec![]);
        node._tmp = Some(tmp);
        node.spawn();
        node.wait_ready().await;
        node
    }

    /// A node description; `spawn` starts it.
    pub fn new(id: u64, base: &Path, addr: String, extra_args: Vec<String>) -> TestNode {
        let data_dir = base.join(format!("node{id}"));
        TestNode {
            id,
            addr,
            socket: data_dir.join("berth.sock"),
            data_dir,
            extra_args,
            child: None,
            _tmp: None,
        }
    }

    /// Starts the process (its output goes to `<data-dir>.log`).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "node {} already running", self.id);
        std::fs::create_dir_all(&self.data_dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.with_extension("log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("serve")
            .arg("--node-id")
            .arg(self.id.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(&self.addr)
            .args(&self.extra_args)
            .env("BERTH_LOG", "info,berth=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawning berth");
        self.child = Some(child);
    }

    /// The node's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Waits until the node answers a Version call over TCP.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                self.is_running(),
                "node {} exited; log:\n{}",
                self.id,
                self.log()
            );
            if let Ok(channel) = self.channel().await
                && VersionClient::new(channel).version(()).await.is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} not ready; log:\n{}",
                self.id,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILLs the node and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILLs the node, leaves it down for `down`, starts it again on
    /// its data and waits until it answers.
    pub async fn crash_and_restart(&mut self, down: Duration) {
        self.kill();
        tokio::time::sleep(down).await;
        self.spawn();
        self.wait_ready().await;
    }

    /// Stops the process (SIGSTOP) for `paused`, then lets it go on.
    pub async fn pause_for(&self, paused: Duration) {
        self.signal(libc::SIGSTOP);
        tokio::time::sleep(paused).await;
        self.signal(libc::SIGCONT);
    }

    /// Sends a signal to the running node (e.g. SIGSTOP, SIGCONT, SIGTERM).
    pub fn signal(&self, signal: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
            unsafe { libc::kill(pid as i32, signal) };
        }
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }

    /// A channel over TCP.
    pub async fn channel(&self) -> Result<Channel, tonic::transport::Error> {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await
    }

    /// A channel over the unix socket.
    pub async fn unix_channel(&self) -> Channel {
        Endpoint::from_shared(format!("unix://{}", self.socket.display()))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// A containers client over TCP.
    pub async fn containers(&self) -> ContainersClient<Channel> {
        containers_client(self.channel().await.unwrap())
    }

    /// A containers client over the unix socket.
    pub async fn unix_containers(&self) -> ContainersClient<Channel> {
        containers_client(self.unix_channel().await)
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        // Resume a paused process first so that it can die.
        self.signal(libc::SIGCONT);
        self.kill();
    }
}

/// A request in a containerd namespace.
pub fn in_ns<T>(namespace: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("containerd-namespace", namespace.parse().unwrap());
    request
}

/// A containers client whose own limits exceed the server's, so that the
/// server's limits are what a test sees.
pub fn containers_client(channel: Channel) -> ContainersClient<Channel> {
    ContainersClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20)
}

/// Raft timings for tests: quick elections, but not so quick that a loaded
/// two-core machine trips them by accident.
pub const TEST_RAFT_FLAGS: &[&str] = &[
    "--heartbeat-ms",
    "100",
    "--election-timeout-ms",
    "700",
    "--request-timeout",
    "5",
];

/// Addresses for `n` nodes on free loopback ports, and the matching
/// `--initial-cluster` list (ids 1..=n).
pub fn loopback_members(n: u64) -> (Vec<String>, String) {
    let addrs: Vec<String> = (0..n)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let initial: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect();
    (addrs, initial.join(","))
}

/// A cluster of `berth serve` processes on loopback.
pub struct TestCluster {
    pub nodes: Vec<TestNode>,
    pub dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts `n` nodes with the same `--initial-cluster` and waits for a leader.
    pub async fn start(n: u64, extra: &[&str]) -> TestCluster {
        let cluster = TestCluster::spawn(n, extra).await;
        cluster.wait_for_leader(&[]).await;
        cluster
    }

    /// Starts `n` nodes with the same `--initial-cluster` and waits only
    /// until each answers (a leader may not be elected yet).
    pub async fn spawn(n: u64, extra: &[&str]) -> TestCluster {
        let all: Vec<u64> = (1..=n).collect();
        TestCluster::spawn_members(n, &all, extra).await
    }

    /// Like [`TestCluster::spawn`], but only the members in `started` are
    /// started; the others get their address and flags and can be started
    /// later with [`TestNode::spawn`].
    pub async fn spawn_members(n: u64, started: &[u64], extra: &[&str]) -> TestCluster {
        let dir = tempfile::Builder::new()
            .prefix("berth-cluster")
            .tempdir()
            .unwrap();
        let (addrs, initial) = loopback_members(n);
        let mut nodes = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            let mut args: Vec<String> = vec!["--initial-cluster".into(), initial.clone()];
            args.extend(TEST_RAFT_FLAGS.iter().chain(extra).map(|s| s.to_string()));
            let mut node = TestNode::new(i as u64 + 1, dir.path(), addr.clone(), args);
            if started.contains(&node.id) {
                node.spawn();
            }
            nodes.push(node);
        }
        for node in nodes.iter_mut().filter(|n| started.contains(&n.id)) {
            node.wait_ready().await;
        }
        TestCluster { nodes, dir }
    }

    /// Adds a node started with `--join` (not yet a member).
    pub async fn spawn_joiner(&mut self, id: u64, extra: &[&str]) -> usize {
        let mut args: Vec<String> = vec!["--join".into()];
        args.extend(TEST_RAFT_FLAGS.iter().chain(extra).map(|s| s.to_string()));
        let mut node = TestNode::new(
            id,
            self.dir.path(),
            format!("127.0.0.1:{}", free_port()),
            args,
        );
        node.spawn();
        node.wait_ready().await;
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// The node with id `id`.
    pub fn node(&mut self, id: u64) -> &mut TestNode {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .expect("no such node")
    }

    /// The id of some member other than `leader`.
    pub fn a_follower(&self, leader: u64) -> u64 {
        self.nodes
            .iter()
            .find(|n| n.id != leader)
            .expect("a cluster of one has no follower")
            .id
    }

    /// Waits until a node other than those in `excluding` is leader and
    /// healthy, as seen from a running node; returns its id.
    pub async fn wait_for_leader(&self, excluding: &[u64]) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for node in self.nodes.iter().filter(|n| n.child.is_some()) {
                let Ok(channel) = node.channel().await else {
                    continue;
                };
                let mut client = ClusterClient::new(channel);
                if let Ok(health) = client.health(HealthRequest {}).await {
                    let health = health.into_inner();
                    if health.healthy
                        && health.leader_id != 0
                        && !excluding.contains(&health.leader_id)
                    {
                        return health.leader_id;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no healthy leader within 30s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The ids of all containers of `namespace` on a node, read at `consistency`.
pub async fn list_ids(
    node: &TestNode,
    namespace: &str,
    serializable: bool,
) -> Result<Vec<String>, tonic::Status> {
    let mut request = in_ns(namespace, ListContainersRequest { filters: vec![] });
    if serializable {
        request
            .metadata_mut()
            .insert("berth-consistency", "serializable".parse().unwrap());
    }
    let channel = node
        .channel()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let listed = containers_client(channel).list(request).await?.into_inner();
    Ok(listed.containers.into_iter().map(|c| c.id).collect())
}

/// A minimal valid container.
pub fn container(id: &str) -> PbContainer {
    PbContainer {
        id: id.into(),
        runtime: Some(PbRuntime {
            name: "io.containerd.runc.v2".into(),
            options: None,
        }),
        spec: Some(prost_types::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
            value: b"{}".to_vec(),
        }),
        ..Default::default()
    }
}

/// Creates a container through `node`.
pub async fn create_on(node: &TestNode, namespace: &str, id: &str) -> Result<(), tonic::Status> {
    let channel = node
        .channel()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let request = in_ns(
        namespace,
        CreateContainerRequest {
            container: Some(container(id)),
        },
    );
    containers_client(channel).create(request).await.map(|_| ())
}
