//! `berth snapshot save|restore`: backups of the whole state machine, and
//! preparing a new cluster's data dirs from one.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use crate::admin::restore;
use crate::cli::client::{Client, status_error};
use crate::cli::{GlobalArgs, OutputFormat};
use crate::node::bootstrap::parse_members;
use crate::proto::berth::cluster::v1::SaveSnapshotRequest;
use crate::raft::snapshot;

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Stream a consistent snapshot of all namespaces, containers and leases
    /// from a node into FILE (with a checksum and the log position).
    Save { file: PathBuf },
    /// Offline: check FILE and prepare an empty data dir for one member of a
    /// new cluster holding exactly its data. Run it for every member with
    /// the same FILE and --initial-cluster, then start each with `berth serve`.
    Restore {
        file: PathBuf,
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        node_id: u64,
        /// The new cluster's members, `ID=HOST:PORT,…`.
        #[arg(long)]
        initial_cluster: String,
    },
}

/// Runs a snapshot command.
pub async fn run(global: &GlobalArgs, command: SnapshotCommand) -> anyhow::Result<()> {
    match command {
        SnapshotCommand::Save { file } => save(global, file).await,
        SnapshotCommand::Restore {
            file,
            data_dir,
            node_id,
            initial_cluster,
        } => {
            let members = parse_members(&initial_cluster)?;
            let restored = tokio::task::spawn_blocking(move || {
                restore::restore(&file, &data_dir, node_id, &members)
            })
            .await??;
            match global.output {
                OutputFormat::Json => println!(
                    "{}",
                    serde_json::json!({
                        "records": restored.records, "log_index": restored.log_index, "cluster_id": restored.cluster_id,
                    })
                ),
                OutputFormat::Table => println!(
                    "restored {} records at log index {}; new cluster id {}",
                    restored.records, restored.log_index, restored.cluster_id
                ),
            }
            Ok(())
        }
    }
}

/// Downloads a snapshot into a temporary file next to `file`, checks it,
/// and only then renames it into place.
async fn save(global: &GlobalArgs, file: PathBuf) -> anyhow::Result<()> {
    let client = Client::connect(global).await?;
    let mut request = client.request(SaveSnapshotRequest {});
    request.set_timeout(std::time::Duration::from_secs(3600));
    let mut stream = client
        .cluster()
        .save_snapshot(request)
        .await
        .map_err(status_error)?
        .into_inner();
    let mut temp_name = file.file_name().unwrap_or_default().to_os_string();
    temp_name.push(".part");
    let temp = file.with_file_name(temp_name);
    let mut out =
        std::fs::File::create(&temp).with_context(|| format!("creating {}", temp.display()))?;
    let mut bytes = 0u64;
    let received = async {
        while let Some(chunk) = stream.message().await.map_err(status_error)? {
            out.write_all(&chunk.data)?;
            bytes += chunk.data.len() as u64;
        }
        out.sync_all()?;
        anyhow::Ok(())
    }
    .await;
    let checked = received.and_then(|()| {
        let mut reopened = std::fs::File::open(&temp)?;
        Ok(snapshot::verify(&mut reopened)?)
    });
    let (meta, records) = match checked {
        Ok(checked) => checked,
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            return Err(e.context("saving the snapshot"));
        }
    };
    std::fs::rename(&temp, &file)?;
    let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
    match global.output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::json!({
                "file": file, "bytes": bytes, "records": records, "log_index": index,
            })
        ),
        OutputFormat::Table => {
            println!(
                "saved {} ({bytes} bytes, {records} records, log index {index}, checksum verified)",
                file.display()
            )
        }
    }
    Ok(())
}
