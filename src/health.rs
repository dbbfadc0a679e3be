//! The standard `grpc.health.v1.Health` status of a node (service ""):
//! SERVING while it is a member of a cluster that has a leader it can
//! believe in, NOT_SERVING otherwise (still joining, no leader, removed, or
//! a leader that has not heard from a quorum for an election timeout).
//! Orchestrators' readiness probes use it.
//!
//! Metrics change on every Raft event, but a leader cut off from its
//! followers produces none: the status is therefore also re-evaluated on a
//! timer, so that such a leader turns NOT_SERVING within about an election
//! timeout.

use std::time::Duration;

use openraft::ServerState;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::node::Node;

/// How often the status is re-evaluated without a metrics change.
const RECHECK: Duration = Duration::from_millis(500);

/// Keeps the health status in step with the node until it stops.
pub async fn report(node: Node, reporter: HealthReporter, election_timeout: Duration) {
    let mut metrics = node.raft().metrics();
    let mut last = None;
    loop {
        let status = {
            let m = metrics.borrow();
            let member = m.membership_config.membership().get_node(&m.id).is_some();
            let leader_believable = match m.state {
                // A leader must have heard from a quorum recently.
                ServerState::Leader => m
                    .millis_since_quorum_ack
                    .is_some_and(|ms| u128::from(ms) <= election_timeout.as_millis()),
                _ => m.current_leader.is_some(),
            };
            if member && leader_believable && !node.is_retired() {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            }
        };
        if last != Some(status) {
            reporter.set_service_status("", status).await;
            last = Some(status);
        }
        // A closed metrics channel means the node stopped.
        if let Ok(Err(_)) = tokio::time::timeout(RECHECK, metrics.changed()).await {
            reporter
                .set_service_status("", ServingStatus::NotServing)
                .await;
            return;
        }
    }
}
