//! `berth cluster …`: status, health, add-node, remove-node.

use anyhow::bail;
use clap::Subcommand;

use crate::cli::client::{Client, status_error};
use crate::cli::{GlobalArgs, OutputFormat, output};
use crate::proto::berth::cluster::v1::{
    AddNodeRequest, HealthRequest, RemoveNodeRequest, StatusRequest,
};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show every member: role, leader, reachability, term, log and apply
    /// positions, lag, snapshot, data size.
    Status,
    /// Exit 0 only when the cluster has a leader that confirms a live quorum.
    Health,
    /// Add a node started with `berth serve --join`: as a learner, then,
    /// once it has caught up, as a voter.
    AddNode {
        /// The new node's id.
        #[arg(long)]
        id: u64,
        /// The address the new node listens on (HOST:PORT).
        #[arg(long)]
        address: String,
        /// Seconds to wait for the new node to catch up.
        #[arg(long, default_value_t = 60)]
        wait: u32,
    },
    /// Remove a node (voter or learner, the leader included).
    RemoveNode {
        #[arg(long)]
        id: u64,
        /// Remove even if the remaining voters may not form a live quorum.
        #[arg(long)]
        force: bool,
    },
}

/// Runs a cluster command.
pub async fn run(global: &GlobalArgs, command: ClusterCommand) -> anyhow::Result<()> {
    let client = Client::connect(global).await?;
    let mut cluster = client.cluster();
    match command {
        ClusterCommand::Status => {
            let status = cluster
                .status(client.request(StatusRequest {}))
                .await
                .map_err(status_error)?
                .into_inner();
            output::cluster_status(global.output, &status)
        }
        ClusterCommand::Health => {
            let health = cluster
                .health(client.request(HealthRequest {}))
                .await
                .map_err(status_error)?
                .into_inner();
            match global.output {
                OutputFormat::Json => println!(
                    "{}",
                    serde_json::json!({
                        "healthy": health.healthy, "leader_id": health.leader_id, "reason": health.reason,
                    })
                ),
                OutputFormat::Table => {
                    println!(
                        "{}: {}",
                        if health.healthy {
                            "healthy"
                        } else {
                            "unhealthy"
                        },
                        health.reason
                    )
                }
            }
            if !health.healthy {
                bail!("cluster is unhealthy");
            }
            Ok(())
        }
        ClusterCommand::AddNode { id, address, wait } => {
            let request = AddNodeRequest {
                id,
                address,
                timeout_seconds: wait,
                max_lag: 0,
            };
            // The call lasts as long as the catch-up; allow for it.
            let mut request = client.request(request);
            request.set_timeout(std::time::Duration::from_secs(u64::from(wait) + 30));
            let mut progress = cluster
                .add_node(request)
                .await
                .map_err(status_error)?
                .into_inner();
            while let Some(update) = progress.message().await.map_err(status_error)? {
                match global.output {
                    OutputFormat::Json => println!(
                        "{}",
                        serde_json::json!({
                            "phase": update.phase, "learner_applied": update.learner_applied,
                            "leader_applied": update.leader_applied, "message": update.message,
                        })
                    ),
                    OutputFormat::Table => println!("{:<14} {}", update.phase, update.message),
                }
            }
            Ok(())
        }
        ClusterCommand::RemoveNode { id, force } => {
            let removed = cluster
                .remove_node(client.request(RemoveNodeRequest { id, force }))
                .await
                .map_err(status_error)?
                .into_inner();
            for warning in &removed.warnings {
                eprintln!("warning: {warning}");
            }
            println!("{}", removed.message);
            Ok(())
        }
    }
}
