//! `berth containers …` (alias `c`): create, get, list, update, label and
//! delete containers.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::cli::GlobalArgs;
use crate::cli::client::{Client, status_error};
use crate::cli::output;
use crate::proto::containerd::services::containers::v1 as pb;

/// The spec type URL containerd's clients use for an OCI runtime spec.
pub const OCI_SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/// The spec stored when `--spec-file` is not given.
const DEFAULT_SPEC: &str = r#"{"ociVersion":"1.1.0"}"#;

#[derive(Debug, Subcommand)]
pub enum ContainersCommand {
    /// Create a container.
    Create {
        id: String,
        /// Image reference.
        #[arg(long, default_value = "")]
        image: String,
        /// Runtime name.
        #[arg(long, default_value = "io.containerd.runc.v2")]
        runtime: String,
        /// A label, KEY=VALUE; repeat for more.
        #[arg(long = "label", short = 'l', value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// OCI runtime spec (JSON) to store [default: a minimal spec].
        #[arg(long)]
        spec_file: Option<PathBuf>,
        /// Snapshotter name.
        #[arg(long, default_value = "")]
        snapshotter: String,
        /// Snapshot key (needs --snapshotter).
        #[arg(long, default_value = "")]
        snapshot_key: String,
    },
    /// Show one container.
    Get { id: String },
    /// List containers matching any of the filters (containerd filter syntax).
    #[command(visible_alias = "ls")]
    List { filters: Vec<String> },
    /// Change a container: only the fields given are updated.
    Update {
        id: String,
        #[arg(long)]
        image: Option<String>,
        /// Set a label, KEY=VALUE (an empty VALUE removes it); repeat for more.
        #[arg(long = "label", short = 'l', value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Replace the spec with this file's JSON.
        #[arg(long)]
        spec_file: Option<PathBuf>,
        #[arg(long)]
        snapshot_key: Option<String>,
    },
    /// Set labels (KEY=VALUE) or remove them (KEY=); prints the labels after.
    Label {
        id: String,
        #[arg(required = true, value_name = "KEY=VALUE")]
        labels: Vec<String>,
    },
    /// Delete containers.
    #[command(visible_alias = "rm")]
    Delete {
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// Runs a containers command.
pub async fn run(global: &GlobalArgs, command: ContainersCommand) -> anyhow::Result<()> {
    let client = Client::connect(global).await?;
    let mut containers = client.containers();
    match command {
        ContainersCommand::Create {
            id,
            image,
            runtime,
            labels,
            spec_file,
            snapshotter,
            snapshot_key,
        } => {
            let container = pb::Container {
                id,
                labels: parse_labels(&labels)?,
                image,
                runtime: Some(pb::container::Runtime {
                    name: runtime,
                    options: None,
                }),
                spec: Some(read_spec(spec_file.as_ref())?),
                snapshotter,
                snapshot_key,
                ..Default::default()
            };
            let request = client.request(pb::CreateContainerRequest {
                container: Some(container),
            });
            let created = containers
                .create(request)
                .await
                .map_err(status_error)?
                .into_inner();
            output::container(global.output, &created.container.unwrap_or_default())
        }
        ContainersCommand::Get { id } => {
            let got = containers
                .get(client.request(pb::GetContainerRequest { id }))
                .await
                .map_err(status_error)?
                .into_inner();
            output::container(global.output, &got.container.unwrap_or_default())
        }
        ContainersCommand::List { filters } => {
            let mut stream = containers
                .list_stream(client.request(pb::ListContainersRequest { filters }))
                .await
                .map_err(status_error)?
                .into_inner();
            let mut all = Vec::new();
            while let Some(message) = stream.message().await.map_err(status_error)? {
                all.extend(message.container);
            }
            output::container_list(global.output, &all)
        }
        ContainersCommand::Update {
            id,
            image,
            labels,
            spec_file,
            snapshot_key,
        } => {
            let mut container = pb::Container {
                id,
                ..Default::default()
            };
            let mut mask = Vec::new();
            if let Some(image) = image {
                container.image = image;
                mask.push("image".to_string());
            }
            container.labels = parse_labels(&labels)?;
            mask.extend(container.labels.keys().map(|k| format!("labels.{k}")));
            if spec_file.is_some() {
                container.spec = Some(read_spec(spec_file.as_ref())?);
                mask.push("spec".to_string());
            }
            if let Some(key) = snapshot_key {
                container.snapshot_key = key;
                mask.push("snapshotkey".to_string());
            }
            if mask.is_empty() {
                bail!("nothing to update: give --image, --label, --spec-file or --snapshot-key");
            }
            let updated = update(&client, &mut containers, container, mask).await?;
            output::container(global.output, &updated)
        }
        ContainersCommand::Label { id, labels } => {
            let labels = parse_labels(&labels)?;
            let mask = labels.keys().map(|k| format!("labels.{k}")).collect();
            let container = pb::Container {
                id,
                labels,
                ..Default::default()
            };
            let updated = update(&client, &mut containers, container, mask).await?;
            output::labels(global.output, &updated.labels)
        }
        ContainersCommand::Delete { ids } => {
            for id in ids {
                containers
                    .delete(client.request(pb::DeleteContainerRequest { id: id.clone() }))
                    .await
                    .map_err(status_error)
                    .with_context(|| format!("deleting {id}"))?;
                println!("{id}");
            }
            Ok(())
        }
    }
}

async fn update(
    client: &Client,
    containers: &mut pb::containers_client::ContainersClient<tonic::transport::Channel>,
    container: pb::Container,
    paths: Vec<String>,
) -> anyhow::Result<pb::Container> {
    let request = client.request(pb::UpdateContainerRequest {
        container: Some(container),
        update_mask: Some(prost_types::FieldMask { paths }),
    });
    let updated = containers
        .update(request)
        .await
        .map_err(status_error)?
        .into_inner();
    Ok(updated.container.unwrap_or_default())
}

/// Parses `KEY=VALUE` arguments (an empty VALUE is kept: it removes the label).
fn parse_labels(args: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    args.iter()
        .map(|arg| match arg.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
            _ => bail!("label {arg:?} is not KEY=VALUE"),
        })
        .collect()
}

/// The spec to store: the file's JSON, checked to be JSON, or a minimal spec.
fn read_spec(path: Option<&PathBuf>) -> anyhow::Result<prost_types::Any> {
    let value = match path {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading spec {}", path.display()))?;
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .with_context(|| format!("spec {} is not JSON", path.display()))?;
            bytes
        }
        None => DEFAULT_SPEC.as_bytes().to_vec(),
    };
    Ok(prost_types::Any {
        type_url: OCI_SPEC_TYPE_URL.to_string(),
        value,
    })
}
