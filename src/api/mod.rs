//! The gRPC edge: containerd's services and berth's own (the peer service)
//! on one router, served on TCP and on a unix socket.
//!
//! Handlers are thin: they read the request's namespace and consistency,
//! validate input, build a `Command` for writes or pass a read barrier for
//! reads, and convert errors to `tonic::Status` (in `status`, only there).

pub mod cluster;
pub mod containers;
pub mod convert;
pub mod events;
pub mod info;
pub mod leases;
pub mod listing;
pub mod peer;
pub mod request;
pub mod status;

use tonic::service::Routes;
use tonic_health::server::HealthReporter;

use crate::node::Node;
use crate::proto::berth::cluster::v1::cluster_server::ClusterServer;
use crate::proto::berth::raft::v1::raft_server::RaftServer;
use crate::proto::containerd::services::containers::v1::containers_server::ContainersServer;
use crate::proto::containerd::services::events::v1::events_server::EventsServer;
use crate::proto::containerd::services::introspection::v1::introspection_server::IntrospectionServer;
use crate::proto::containerd::services::leases::v1::leases_server::LeasesServer;
use crate::proto::containerd::services::snapshots::v1::snapshots_server::SnapshotsServer;
use crate::proto::containerd::services::version::v1::version_server::VersionServer;
use crate::raft::network::MAX_PEER_MESSAGE_BYTES;
use status::MAX_MESSAGE_BYTES;

/// Applies berth's message limits to a generated tonic server.
macro_rules! limited {
    ($server:ident, $service:expr) => {
        $server::new($service)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    };
}

/// Every service a node serves, on one router. `uuid` identifies the server
/// to containerd clients.
pub fn routes(node: &Node, uuid: &str) -> (Routes, HealthReporter) {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let info = info::InfoService::new(uuid.to_string());
    let routes = Routes::new(limited!(
        ContainersServer,
        containers::ContainersService::new(node.clone())
    ))
    .add_service(limited!(
        LeasesServer,
        leases::LeasesService::new(node.clone())
    ))
    .add_service(limited!(
        EventsServer,
        events::EventsService::new(node.clone())
    ))
    .add_service(limited!(VersionServer, info.clone()))
    .add_service(limited!(IntrospectionServer, info.clone()))
    .add_service(limited!(SnapshotsServer, info))
    .add_service(limited!(
        ClusterServer,
        cluster::ClusterService::new(node.clone())
    ))
    .add_service(health_service)
    .add_service(
        RaftServer::new(peer::PeerService::new(node.clone()))
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES),
    );
    (routes, health_reporter)
}
