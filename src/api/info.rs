//! The small containerd services clients call besides the stores:
//! `Version` (`ctr version`), `Introspection.Server` (the server's UUID;
//! ctr 2.x calls it first thing) and `Snapshots.Remove` (`ctr c rm` of a
//! container with a snapshot key; berth keeps no snapshots).

use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::proto::containerd::services::introspection::v1::ServerResponse;
use crate::proto::containerd::services::introspection::v1::introspection_server::Introspection;
use crate::proto::containerd::services::snapshots::v1::RemoveSnapshotRequest;
use crate::proto::containerd::services::snapshots::v1::snapshots_server::Snapshots;
use crate::proto::containerd::services::version::v1::VersionResponse;
use crate::proto::containerd::services::version::v1::version_server::Version;
use crate::store::validate::go_quote;

/// berth's version, as `ctr version` shows it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit berth was built from (`unknown` outside a git checkout).
pub const REVISION: &str = env!("BERTH_REVISION");

/// Answers `Version`, `Introspection.Server` and `Snapshots.Remove`.
#[derive(Clone)]
pub struct InfoService {
    /// This server's identity, stable across restarts.
    uuid: String,
}

impl InfoService {
    pub fn new(uuid: String) -> Self {
        InfoService { uuid }
    }
}

#[tonic::async_trait]
impl Version for InfoService {
    async fn version(&self, _request: Request<()>) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: format!("berth {VERSION}"),
            revision: REVISION.to_string(),
        }))
    }
}

#[tonic::async_trait]
impl Introspection for InfoService {
    async fn server(&self, _request: Request<()>) -> Result<Response<ServerResponse>, Status> {
        Ok(Response::new(ServerResponse {
            uuid: self.uuid.clone(),
            pid: u64::from(std::process::id()),
            pidns: 0,
        }))
    }
}

#[tonic::async_trait]
impl Snapshots for InfoService {
    async fn remove(
        &self,
        request: Request<RemoveSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let key = &request.get_ref().key;
        Err(Error::not_found(format!(
            "snapshot {} does not exist (berth stores no snapshots)",
            go_quote(key)
        ))
        .into())
    }
}
