//! Generates the gRPC code for containerd's services (written here from the
//! wire contract) and berth's own. protoc comes from `protoc-bin-vendored`, so
//! building needs no system packages.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/containerd/services/containers/v1/containers.proto",
    "proto/containerd/services/leases/v1/leases.proto",
    "proto/containerd/services/events/v1/events.proto",
    "proto/containerd/services/version/v1/version.proto",
    "proto/containerd/services/introspection/v1/introspection.proto",
    "proto/containerd/services/snapshots/v1/snapshots.proto",
    "proto/containerd/events/container.proto",
    "proto/berth/raft/v1/raft.proto",
    "proto/berth/cluster/v1/cluster.proto",
];

/// etcd's KV API (a subset), for `berth bench --system etcd`.
const ETCD_PROTO: &str = "proto/etcd/kv.proto";

/// A prost configuration that runs the vendored protoc.
fn prost_config() -> Result<tonic_prost_build::Config, Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    Ok(config)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_config()?;
    let well_known = protoc_bin_vendored::include_path()?;
    // BTreeMaps keep map fields in key order: deterministic output, and no
    // re-sorting when converting to the store's model.
    config.btree_map(["."]);
    // `prost::Name` gives event payloads their bare type URLs.
    config.enable_type_names();
    let protos: Vec<PathBuf> = PROTOS.iter().map(PathBuf::from).collect();
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("berth_descriptor.bin"))
        .compile_with_config(config, &protos, &[PathBuf::from("proto"), well_known])?;
    let revision = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    // etcd's KV API, client side only and outside the descriptor set: the
    // bench loads etcd with it for comparison; berth does not serve it.
    tonic_prost_build::configure()
        .build_server(false)
        .compile_with_config(
            prost_config()?,
            &[PathBuf::from(ETCD_PROTO)],
            &[PathBuf::from("proto")],
        )?;
    println!("cargo:rustc-env=BERTH_REVISION={revision}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    for proto in PROTOS.iter().chain([&ETCD_PROTO]) {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
