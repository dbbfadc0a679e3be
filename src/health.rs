//! The standard `grpc.health.v1.Health` status of a node: SERVING while it
//! is a member of a cluster that has a leader, NOT_SERVING otherwise (still
//! joining, no quorum, removed). Orchestrators' probes use it.

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::node::Node;

/// Keeps the health status in step with the node's Raft metrics until the
/// node stops.
pub async fn report(node: Node, reporter: HealthReporter) {
    let mut metrics = node.raft().metrics();
    let mut last = None;
    loop {
        let status = {
            let m = metrics.borrow();
            let member = m.membership_config.membership().get_node(&m.id).is_some();
            if member && m.current_leader.is_some() {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            }
        };
        if last != Some(status) {
            reporter.set_service_status("", status).await;
            last = Some(status);
        }
        if metrics.changed().await.is_err() {
            reporter
                .set_service_status("", ServingStatus::NotServing)
                .await;
            return;
        }
    }
}
