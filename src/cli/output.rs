//! Rendering results as tables (for people) or JSON (for scripts): one
//! function per kind of result.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Value, json};

use crate::cli::OutputFormat;
use crate::proto::containerd::services::containers::v1 as pb;

/// Prints one container.
pub fn container(format: OutputFormat, c: &pb::Container) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&container_json(c))?),
        OutputFormat::Table => {
            let runtime = c.runtime.clone().unwrap_or_default();
            let rows = [
                ("ID", c.id.clone()),
                ("Image", c.image.clone()),
                ("Runtime", runtime.name),
                ("Labels", join_labels(&c.labels)),
                ("Snapshotter", c.snapshotter.clone()),
                ("SnapshotKey", c.snapshot_key.clone()),
                ("Created", timestamp(c.created_at.as_ref())),
                ("Updated", timestamp(c.updated_at.as_ref())),
                (
                    "Spec",
                    c.spec.as_ref().map(describe_any).unwrap_or_default(),
                ),
                (
                    "Extensions",
                    c.extensions.keys().cloned().collect::<Vec<_>>().join(","),
                ),
            ];
            for (name, value) in rows {
                println!("{:<12} {value}", format!("{name}:"));
            }
        }
    }
    Ok(())
}

/// Prints a list of containers.
pub fn container_list(format: OutputFormat, containers: &[pb::Container]) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => {
            let all: Vec<Value> = containers.iter().map(container_json).collect();
            println!("{}", serde_json::to_string_pretty(&all)?);
        }
        OutputFormat::Table => {
            println!("{:<24} {:<40} RUNTIME", "CONTAINER", "IMAGE");
            for c in containers {
                let image = if c.image.is_empty() { "-" } else { &c.image };
                let runtime = c
                    .runtime
                    .as_ref()
                    .map(|r| r.name.as_str())
                    .unwrap_or_default();
                println!("{:<24} {:<40} {}", c.id, image, runtime);
            }
        }
    }
    Ok(())
}

/// Prints a label map.
pub fn labels(format: OutputFormat, labels: &BTreeMap<String, String>) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(labels)?),
        OutputFormat::Table => println!("{}", join_labels(labels)),
    }
    Ok(())
}

fn join_labels(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn container_json(c: &pb::Container) -> Value {
    let runtime = c.runtime.clone().unwrap_or_default();
    json!({
        "id": c.id,
        "labels": c.labels,
        "image": c.image,
        "runtime": { "name": runtime.name, "options": runtime.options.as_ref().map(any_json) },
        "spec": c.spec.as_ref().map(any_json),
        "snapshotter": c.snapshotter,
        "snapshot_key": c.snapshot_key,
        "created_at": timestamp(c.created_at.as_ref()),
        "updated_at": timestamp(c.updated_at.as_ref()),
        "extensions": c.extensions.iter().map(|(k, v)| (k.clone(), any_json(v))).collect::<BTreeMap<_, _>>(),
    })
}

/// An `Any` as JSON: its value inline when it is JSON (as OCI specs are),
/// base64 otherwise.
fn any_json(any: &prost_types::Any) -> Value {
    match serde_json::from_slice::<Value>(&any.value) {
        Ok(value) if !any.value.is_empty() => json!({ "type_url": any.type_url, "value": value }),
        _ => json!({
            "type_url": any.type_url,
            "value_base64": base64::engine::general_purpose::STANDARD.encode(&any.value),
        }),
    }
}

fn describe_any(any: &prost_types::Any) -> String {
    format!("{} ({} bytes)", any.type_url, any.value.len())
}

/// RFC 3339 in UTC with nanoseconds, or empty when unset.
pub fn timestamp(t: Option<&prost_types::Timestamp>) -> String {
    let Some(t) = t else { return String::new() };
    let Ok(seconds) = u64::try_from(t.seconds) else {
        return format!("{}s {}ns", t.seconds, t.nanos);
    };
    let time = std::time::UNIX_EPOCH
        + std::time::Duration::new(seconds, t.nanos.clamp(0, 999_999_999) as u32);
    humantime::format_rfc3339_nanos(time).to_string()
}

/// Prints the cluster's status.
pub fn cluster_status(
    format: OutputFormat,
    status: &crate::proto::berth::cluster::v1::StatusResponse,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => {
            let members: Vec<Value> = status
                .members
                .iter()
                .map(|m| {
                    json!({
                        "id": m.id, "address": m.address, "role": m.role, "leader": m.leader,
                        "reachable": m.reachable, "state": m.state, "term": m.term,
                        "last_log_index": m.last_log_index, "applied_index": m.applied_index, "lag": m.lag,
                        "snapshot_index": m.snapshot_index, "data_bytes": m.data_bytes, "error": m.error,
                    })
                })
                .collect();
            let all = json!({
                "cluster_id": status.cluster_id, "leader_id": status.leader_id, "term": status.term,
                "answered_by": status.answered_by, "members": members,
            });
            println!("{}", serde_json::to_string_pretty(&all)?);
        }
        OutputFormat::Table => {
            println!(
                "cluster {}  leader {}  term {}  (answered by node {})",
                if status.cluster_id.is_empty() {
                    "-"
                } else {
                    &status.cluster_id
                },
                status.leader_id,
                status.term,
                status.answered_by
            );
            println!(
                "{:>4}  {:<22} {:<8} {:<7} {:<10} {:>6} {:>9} {:>9} {:>6} {:>9} {:>10}",
                "ID",
                "ADDRESS",
                "ROLE",
                "LEADER",
                "STATE",
                "TERM",
                "LAST-LOG",
                "APPLIED",
                "LAG",
                "SNAPSHOT",
                "DATA"
            );
            for m in &status.members {
                if !m.reachable {
                    println!(
                        "{:>4}  {:<22} {:<8} unreachable: {}",
                        m.id, m.address, m.role, m.error
                    );
                    continue;
                }
                println!(
                    "{:>4}  {:<22} {:<8} {:<7} {:<10} {:>6} {:>9} {:>9} {:>6} {:>9} {:>10}",
                    m.id,
                    m.address,
                    m.role,
                    if m.leader { "*" } else { "" },
                    m.state,
                    m.term,
                    m.last_log_index,
                    m.applied_index,
                    m.lag,
                    m.snapshot_index,
                    human_bytes(m.data_bytes)
                );
            }
        }
    }
    Ok(())
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
