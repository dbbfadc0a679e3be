//! The command line: `berth serve` runs a node; every other command is a
//! client of a running cluster. Flags may also come from `BERTH_*`
//! environment variables.

pub mod bench;
pub mod client;
pub mod cluster;
pub mod containers;
pub mod output;
pub mod snapshot;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::node::bootstrap::parse_members;
use crate::node::{Bootstrap, RaftOptions};
use crate::server::ServeConfig;

/// berth: a replicated metadata store for containers, speaking containerd's
/// containers API.
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about,
    propagate_version = true,
    args_override_self = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every client command takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Nodes to talk to, comma-separated: `host:port` or `unix:/path/to.sock`.
    /// Each is tried in turn until one answers.
    #[arg(
        long,
        global = true,
        env = "BERTH_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7070"
    )]
    pub endpoints: Vec<String>,
    /// containerd namespace of the objects.
    #[arg(
        long,
        short = 'n',
        global = true,
        env = "BERTH_NAMESPACE",
        default_value = "default"
    )]
    pub namespace: String,
    /// Output format.
    #[arg(long, short = 'o', global = true, env = "BERTH_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Read consistency: `linearizable` (default) or `serializable` (local,
    /// possibly stale, faster).
    #[arg(long, global = true, env = "BERTH_CONSISTENCY", value_enum, default_value_t = ConsistencyArg::Linearizable)]
    pub consistency: ConsistencyArg,
    /// Seconds to wait for a node to answer a call.
    #[arg(long, global = true, env = "BERTH_TIMEOUT", default_value_t = 10.0)]
    pub timeout: f64,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// Read consistency, as a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConsistencyArg {
    Linearizable,
    Serializable,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node.
    Serve(ServeArgs),
    /// Create, inspect, change and delete containers.
    #[command(subcommand, visible_alias = "c")]
    Containers(containers::ContainersCommand),
    /// See and change the cluster: status, health, add-node, remove-node.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Back up (save) and restore the whole store.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Generate load and report throughput and latency percentiles.
    Bench(bench::BenchArgs),
}

/// `berth serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// This node's id.
    #[arg(long, env = "BERTH_NODE_ID", default_value_t = 1)]
    pub node_id: u64,
    /// Directory for the node's state.
    #[arg(long, env = "BERTH_DATA_DIR", default_value = "./berth-data")]
    pub data_dir: PathBuf,
    /// TCP address for clients and peers.
    #[arg(long, env = "BERTH_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: String,
    /// Unix socket for containerd clients [default: <data-dir>/berth.sock].
    #[arg(long, env = "BERTH_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Address other nodes reach this one at [default: the --listen address].
    #[arg(long, env = "BERTH_ADVERTISE")]
    pub advertise: Option<String>,
    /// Members of a new cluster, `ID=HOST:PORT,…`; start every member with
    /// the same list. Ignored once the node has data.
    /// (An empty value, e.g. from an environment file, means none.)
    #[arg(long, env = "BERTH_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Start empty and wait to be added with `berth cluster add-node`.
    #[arg(long, env = "BERTH_JOIN")]
    pub join: bool,
    /// sled page-cache size in MiB.
    #[arg(long, env = "BERTH_CACHE_MB", default_value_t = 64)]
    pub cache_mb: u64,
    /// Threads that run requests and Raft (0: one per CPU). Nodes that
    /// share a machine (like `cluster/up.sh`'s) do better splitting its
    /// CPUs between them than each claiming all of them.
    #[arg(long, env = "BERTH_WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,
    /// Raft heartbeat interval in milliseconds.
    #[arg(long, env = "BERTH_HEARTBEAT_MS", default_value_t = 100)]
    pub heartbeat_ms: u64,
    /// Minimum election timeout in milliseconds (the maximum is twice it).
    #[arg(long, env = "BERTH_ELECTION_TIMEOUT_MS", default_value_t = 1000)]
    pub election_timeout_ms: u64,
    /// Log entries between snapshots.
    #[arg(long, env = "BERTH_SNAPSHOT_THRESHOLD", default_value_t = 10_000)]
    pub snapshot_threshold: u64,
    /// Seconds a write or a linearizable read may take before it fails.
    #[arg(long, env = "BERTH_REQUEST_TIMEOUT", default_value_t = 10.0)]
    pub request_timeout: f64,
}

impl ServeArgs {
    /// The server configuration these flags describe.
    pub fn into_config(self) -> anyhow::Result<ServeConfig> {
        // Checked here rather than by clap, which counts an environment
        // variable as given even when it says "none" (`BERTH_JOIN=false`,
        // an empty `BERTH_INITIAL_CLUSTER`).
        let initial_cluster = self
            .initial_cluster
            .as_deref()
            .filter(|l| !l.trim().is_empty());
        let bootstrap = match (initial_cluster, self.join) {
            (Some(_), true) => {
                anyhow::bail!("--initial-cluster and --join cannot be used together")
            }
            (Some(list), false) => Bootstrap::InitialCluster(parse_members(list)?),
            (None, true) => Bootstrap::Join,
            (None, false) => Bootstrap::SingleNode,
        };
        if self.node_id == 0 {
            anyhow::bail!("--node-id must be a positive integer");
        }
        Ok(ServeConfig {
            node_id: self.node_id,
            advertise: self.advertise.unwrap_or_else(|| self.listen.clone()),
            data_dir: self.data_dir,
            listen: self.listen,
            socket: self.socket,
            cache_bytes: self.cache_mb * 1024 * 1024,
            bootstrap,
            raft: RaftOptions {
                heartbeat_ms: self.heartbeat_ms,
                election_timeout_ms: self.election_timeout_ms,
                snapshot_threshold: self.snapshot_threshold,
                ..RaftOptions::default()
            },
            request_timeout: std::time::Duration::from_secs_f64(self.request_timeout.max(0.01)),
        })
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => crate::server::run(args.into_config()?).await,
        Command::Containers(command) => containers::run(&cli.global, command).await,
        Command::Cluster(command) => cluster::run(&cli.global, command).await,
        Command::Snapshot(command) => snapshot::run(&cli.global, command).await,
        Command::Bench(args) => bench::run(&cli.global, args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::bootstrap::Bootstrap;

    fn serve_config(args: &[&str]) -> anyhow::Result<ServeConfig> {
        let mut argv = vec![
            "berth",
            "serve",
            "--data-dir",
            "/tmp/x",
            "--listen",
            "127.0.0.1:1",
        ];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Serve(serve) => serve.into_config(),
            _ => unreachable!("parsed a serve command"),
        }
    }

    fn bootstrap_of(args: &[&str]) -> anyhow::Result<Bootstrap> {
        serve_config(args).map(|c| c.bootstrap)
    }

    #[test]
    fn bootstrap_flags_say_none_with_an_empty_value() {
        assert!(matches!(bootstrap_of(&[]).unwrap(), Bootstrap::SingleNode));
        assert!(matches!(
            bootstrap_of(&["--join"]).unwrap(),
            Bootstrap::Join
        ));
        assert!(matches!(
            bootstrap_of(&["--join", "--initial-cluster", ""]).unwrap(),
            Bootstrap::Join
        ));
        assert!(matches!(
            bootstrap_of(&["--initial-cluster", "1=127.0.0.1:1"]).unwrap(),
            Bootstrap::InitialCluster(_)
        ));
        let both = bootstrap_of(&["--join", "--initial-cluster", "1=127.0.0.1:1"]).unwrap_err();
        assert!(
            both.to_string().contains("cannot be used together"),
            "{both}"
        );
    }

    #[test]
    fn a_flag_given_twice_takes_its_last_value() {
        let config = serve_config(&["--cache-mb", "8", "--cache-mb", "16"]).unwrap();
        assert_eq!(config.cache_bytes, 16 << 20);
    }
}
