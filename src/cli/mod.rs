//! The command line: `berth serve` runs a node; every other command is a
//! client of a running cluster. Flags may also come from `BERTH_*`
//! environment variables.

pub mod client;
pub mod containers;
pub mod output;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::server::ServeConfig;

/// berth: a replicated metadata store for containers, speaking containerd's
/// containers API.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about, propagate_version = true)]
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
    #[arg(long, global = true, env = "BERTH_ENDPOINTS", value_delimiter = ',', default_value = "127.0.0.1:7070")]
    pub endpoints: Vec<String>,
    /// containerd namespace of the objects.
    #[arg(long, short = 'n', global = true, env = "BERTH_NAMESPACE", default_value = "default")]
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
    /// sled page-cache size in MiB.
    #[arg(long, env = "BERTH_CACHE_MB", default_value_t = 64)]
    pub cache_mb: u64,
}

impl From<ServeArgs> for ServeConfig {
    fn from(args: ServeArgs) -> Self {
        ServeConfig {
            node_id: args.node_id,
            data_dir: args.data_dir,
            listen: args.listen,
            socket: args.socket,
            cache_bytes: args.cache_mb * 1024 * 1024,
        }
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => crate::server::run(args.into()).await,
        Command::Containers(command) => containers::run(&cli.global, command).await,
    }
}
