//! Running a node: open its data directory, start the node, and serve the
//! gRPC API on TCP and on a unix socket until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::{TcpListener, UnixListener};
use tonic::transport::Server;
use tower::util::MapResponseLayer;

use crate::health;
use crate::node::{Bootstrap, Node, NodeConfig, RaftOptions};
use crate::store::StoreOptions;
use crate::{admin, api, transport};

/// Everything `berth serve` needs to run a node.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// This node's id in the cluster.
    pub node_id: u64,
    /// Where the node keeps its state.
    pub data_dir: PathBuf,
    /// TCP address for clients and peers.
    pub listen: String,
    /// Address peers reach this node at.
    pub advertise: String,
    /// Unix socket for containerd clients; `<data-dir>/berth.sock` if unset.
    pub socket: Option<PathBuf>,
    /// sled page-cache size.
    pub cache_bytes: u64,
    /// What a fresh node does to form or join a cluster.
    pub bootstrap: Bootstrap,
    /// Raft timings.
    pub raft: RaftOptions,
    /// How long a write or linearizable read may take.
    pub request_timeout: Duration,
}

impl ServeConfig {
    /// The unix socket path in effect.
    pub fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| self.data_dir.join("berth.sock"))
    }
}

/// Runs a node until it is asked to stop.
pub async fn run(config: ServeConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let _lock = lock_data_dir(&config.data_dir)?;
    let uuid = load_or_create_uuid(&config.data_dir)?;
    // Bind before starting Raft, so that a port conflict fails fast.
    let tcp = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let node = Node::start(NodeConfig {
        id: config.node_id,
        advertise: config.advertise.clone(),
        data_dir: config.data_dir.clone(),
        store: StoreOptions {
            cache_bytes: config.cache_bytes,
        },
        bootstrap: config.bootstrap.clone(),
        raft: config.raft.clone(),
        request_timeout: config.request_timeout,
    })
    .await?;
    let (routes, health) = api::routes(&node, &uuid);
    let election_timeout = Duration::from_millis(config.raft.election_timeout_ms);
    tokio::spawn(health::report(node.clone(), health, election_timeout));
    tokio::spawn(admin::ensure_cluster_id(node.clone()));

    let tcp_addr: SocketAddr = tcp.local_addr()?;
    let socket_path = config.socket_path();
    let unix = bind_unix_socket(&socket_path).await?;
    tracing::info!(node_id = config.node_id, %tcp_addr, socket = %socket_path.display(), "berth serving");

    let shutdown = shutdown_signal();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let builder = || {
        Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .layer(MapResponseLayer::new(
                api::status::align_transport_status::<tonic::body::Body>,
            ))
    };
    let serve_tcp = builder()
        .add_routes(routes.clone())
        .serve_with_incoming_shutdown(transport::tcp_incoming(tcp), stopped(stop_rx.clone()));
    let serve_unix = builder()
        .add_routes(routes)
        .serve_with_incoming_shutdown(transport::unix_incoming(unix), stopped(stop_rx));
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        Ok::<(), tonic::transport::Error>(())
    };
    let result = tokio::try_join!(serve_tcp, serve_unix, signal);
    let _ = std::fs::remove_file(&socket_path);
    node.shutdown().await?;
    result.context("serving gRPC")?;
    Ok(())
}

/// Binds the unix socket, removing a stale socket file left by a crash, but
/// refusing to steal a socket another live process serves.
async fn bind_unix_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            bail!(
                "unix socket {} is in use by another process",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    UnixListener::bind(path).with_context(|| {
        format!(
            "binding unix socket {} (paths are limited to 107 bytes)",
            path.display()
        )
    })
}

/// Takes an exclusive lock on the data dir for the life of the process: two
/// nodes on one data dir would corrupt each other's Raft log.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = data_dir.join("LOCK");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            bail!(
                "data dir {} is in use by another berth process",
                data_dir.display()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// The server's UUID (shown by `ctr version`), created once per data dir.
fn load_or_create_uuid(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("uuid");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(existing.trim().to_string());
    }
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4: random
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    crate::fsutil::write_atomic(&path, uuid.as_bytes())?;
    Ok(uuid)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
