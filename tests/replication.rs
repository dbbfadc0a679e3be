//! Three real nodes on loopback: writes through any node, linearizable
//! reads on every node, leader failure, catch-up by snapshot, stale-read
//! and partition checks, full restarts, and hostile peer messages.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth::proto::berth::cluster::v1::LocalStatusRequest;
use berth::proto::berth::cluster::v1::cluster_client::ClusterClient;
use berth::proto::berth::raft::v1::RaftRequest;
use berth::proto::berth::raft::v1::raft_client::RaftClient;
use berth::proto::containerd::events::ContainerCreate;
use berth::proto::containerd::services::containers::v1 as pb;
use berth::proto::containerd::services::events::v1::SubscribeRequest;
use berth::proto::containerd::services::events::v1::events_client::EventsClient;
use common::{TestCluster, TestNode, bounded, containers_client, create_on, in_ns, list_ids};
use futures::StreamExt;
use prost::Message;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// Each member's (id, term, known leader), from its own status.
async fn terms_and_leaders(cluster: &TestCluster) -> Vec<(u64, u64, u64)> {
    let mut seen = Vec::new();
    for node in &cluster.nodes {
        let mut client = ClusterClient::new(node.channel().await.unwrap());
        let status = client
            .local_status(LocalStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        seen.push((node.id, status.term, status.known_leader));
    }
    seen
}

#[tokio::test]
async fn a_fresh_cluster_elects_once_and_forms_without_its_first_member() {
    bounded(async {
        // Only the lowest id initializes: one election, at term 1, which
        // stays (every member used to initialize, and their crossing term-1
        // candidacies forced a second election about every other start).
        // Long election timeouts: member 1's first vote request may wait for
        // a peer still opening its store, and must not time out meanwhile.
        let cluster = TestCluster::start(3, &["--election-timeout-ms", "3000"]).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        for (id, term, leader) in terms_and_leaders(&cluster).await {
            assert_eq!(
                (term, leader),
                (1, 1),
                "node {id}: term {term}, leader {leader}"
            );
        }
        drop(cluster);

        // Without member 1, member 2 initializes after its fallback delay
        // (3 election timeouts: 2.1 s here) and the cluster serves.
        let started = Instant::now();
        let mut cluster = TestCluster::spawn_members(3, &[2, 3], &[]).await;
        let leader = cluster.wait_for_leader(&[]).await;
        assert!([2, 3].contains(&leader), "leader {leader}");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(1500),
            "formed after {waited:?}: before member 2's fallback delay?"
        );
        create_on(&cluster.nodes[2], "fallback", "c1")
            .await
            .unwrap();
        // Member 1, started late and empty, joins as a member and catches up.
        cluster.node(1).spawn();
        cluster.node(1).wait_ready().await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ids = list_ids(&cluster.nodes[0], "fallback", false).await;
            if ids.as_ref().is_ok_and(|ids| ids == &vec!["c1".to_string()]) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "member 1 never served c1: {ids:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_restarted_leader_campaigns_for_a_new_term_instead_of_resuming_its_old_one() {
    bounded(async {
        // Long election timeouts: the followers do not elect anyone while
        // the leader is down, so it comes back to a cluster that still
        // follows it. openraft 0.9 would let it resume its old term at once,
        // without a blank entry of its own, serving reads at a commit index
        // that may lack what it acknowledged before the crash.
        let mut cluster = TestCluster::start(3, &["--election-timeout-ms", "3000"]).await;
        let leader = cluster.wait_for_leader(&[]).await;
        create_on(cluster.node(leader), "restart-leader", "before")
            .await
            .unwrap();
        let old_term = terms_and_leaders(&cluster)
            .await
            .into_iter()
            .find(|(id, _, _)| *id == leader)
            .unwrap()
            .1;
        cluster.node(leader).crash_and_restart(Duration::ZERO).await;
        let new_leader = cluster.wait_for_leader(&[]).await;
        let seen = terms_and_leaders(&cluster).await;
        let (_, term, _) = seen.iter().find(|(id, _, _)| *id == new_leader).unwrap();
        assert!(
            *term > old_term,
            "node {new_leader} leads in term {term}, the term node {leader} led before its restart ({old_term}): {seen:?}"
        );
        for node in &cluster.nodes {
            assert_eq!(
                list_ids(node, "restart-leader", false).await.unwrap(),
                ["before"]
            );
        }
    })
    .await;
}

#[tokio::test]
async fn a_write_to_a_follower_is_readable_from_every_node() {
    bounded(async {
        let cluster = TestCluster::start(3, &[]).await;
        let leader = cluster.wait_for_leader(&[]).await;
        let follower = cluster.nodes.iter().find(|n| n.id != leader).unwrap();
        let other = cluster
            .nodes
            .iter()
            .find(|n| n.id != leader && n.id != follower.id)
            .unwrap();
        // Every node publishes the events of the entries it applies.
        let mut subscriptions = Vec::new();
        for node in &cluster.nodes {
            let mut events = EventsClient::new(node.channel().await.unwrap());
            subscriptions.push(
                events
                    .subscribe(SubscribeRequest { filters: vec![] })
                    .await
                    .unwrap()
                    .into_inner(),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        create_on(follower, "default", "via-follower")
            .await
            .unwrap();
        create_on(other, "default", "via-other").await.unwrap();
        for (node, events) in cluster.nodes.iter().zip(&mut subscriptions) {
            for id in ["via-follower", "via-other"] {
                let envelope = events.message().await.unwrap().unwrap();
                let payload = ContainerCreate::decode(&envelope.event.unwrap().value[..]).unwrap();
                assert_eq!(
                    (envelope.topic.as_str(), payload.id.as_str()),
                    ("/containers/create", id),
                    "node {}",
                    node.id
                );
            }
        }
        for node in &cluster.nodes {
            // Linearizable by default: each node must see the acknowledged write at once.
            assert_eq!(
                list_ids(node, "default", false).await.unwrap(),
                ["via-follower", "via-other"],
                "node {}",
                node.id
            );
            let got = containers_client(node.channel().await.unwrap())
                .get(in_ns(
                    "default",
                    pb::GetContainerRequest {
                        id: "via-follower".into(),
                    },
                ))
                .await
                .unwrap();
            assert_eq!(got.into_inner().container.unwrap().id, "via-follower");
        }
    })
    .await
}

/// Writes unique ids through all nodes until `stop`, recording the ids
/// whose creation was acknowledged.
fn spawn_writers(
    cluster: &TestCluster,
    acked: Arc<Mutex<BTreeSet<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<u64>> {
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.addr.clone()).collect();
    (0..6)
        .map(|worker| {
            let (acked, stop, addr) = (
                acked.clone(),
                stop.clone(),
                addrs[worker % addrs.len()].clone(),
            );
            tokio::spawn(async move {
                let mut errors = 0u64;
                let mut seq = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    seq += 1;
                    let id = format!("w{worker}-{seq}");
                    let endpoint =
                        tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
                    let result = async {
                        let channel = endpoint
                            .connect_timeout(Duration::from_millis(500))
                            .connect()
                            .await
                            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
                        let mut request = in_ns(
                            "load",
                            pb::CreateContainerRequest {
                                container: Some(common::container(&id)),
                            },
                        );
                        request.set_timeout(Duration::from_secs(8));
                        containers_client(channel).create(request).await
                    }
                    .await;
                    match result {
                        Ok(_) => {
                            acked.lock().unwrap().insert(id);
                        }
                        Err(status) => {
                            // Only retriable or indeterminate errors are acceptable.
                            assert!(
                                matches!(
                                    status.code(),
                                    Code::Unavailable
                                        | Code::DeadlineExceeded
                                        | Code::Cancelled
                                        | Code::Unknown
                                ),
                                "unexpected error during failover: {status:?}"
                            );
                            errors += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                errors
            })
        })
        .collect()
}

#[tokio::test]
async fn killing_the_leader_under_load_loses_no_acknowledged_write() {
    bounded(async {
        let mut cluster = TestCluster::start(3, &[]).await;
        let leader = cluster.wait_for_leader(&[]).await;
        let acked = Arc::new(Mutex::new(BTreeSet::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers = spawn_writers(&cluster, acked.clone(), stop.clone());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before_kill = acked.lock().unwrap().len();
        assert!(before_kill > 0, "no write succeeded before the failure");

        // --- kill -9 the leader mid-load
        let killed_at = Instant::now();
        cluster.node(leader).kill();
        let new_leader = cluster.wait_for_leader(&[leader]).await;
        let failover = killed_at.elapsed();
        assert!(
            failover < Duration::from_secs(10),
            "failover took {failover:?}"
        );
        let at_failover = acked.lock().unwrap().len();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            acked.lock().unwrap().len() > at_failover,
            "writes did not resume under leader {new_leader}"
        );

        // --- the old leader comes back and catches up
        cluster.node(leader).spawn();
        cluster.node(leader).wait_ready().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for writer in writers {
            writer.await.unwrap();
        }
        let acked = acked.lock().unwrap().clone();
        eprintln!(
            "acknowledged {} writes; failover took {failover:?}",
            acked.len()
        );
        for node in &cluster.nodes {
            let present: BTreeSet<String> = list_ids(node, "load", false)
                .await
                .unwrap()
                .into_iter()
                .collect();
            let missing: Vec<_> = acked.difference(&present).collect();
            assert!(
                missing.is_empty(),
                "node {} lost acknowledged writes: {missing:?}",
                node.id
            );
        }
        // Every replica converged to the same state.
        let first = list_ids(&cluster.nodes[0], "load", false).await.unwrap();
        for node in &cluster.nodes[1..] {
            assert_eq!(
                list_ids(node, "load", false).await.unwrap(),
                first,
                "node {} diverged",
                node.id
            );
        }
    })
    .await
}

#[tokio::test]
async fn a_follower_that_missed_a_snapshot_worth_of_log_catches_up_by_snapshot() {
    bounded(async {
        let mut cluster = TestCluster::start(3, &["--snapshot-threshold", "40"]).await;
        let leader = cluster.wait_for_leader(&[]).await;
        let lagging = cluster.a_follower(leader);
        cluster.node(lagging).kill();
        // Write well past the snapshot threshold so the leader purges its
        // log; eight writers at once, with deletes, so that snapshots are
        // captured while applies go on.
        let target = cluster.nodes.iter().find(|n| n.id == leader).unwrap();
        futures::stream::iter(0..300)
            .for_each_concurrent(8, |i| async move {
                let id = format!("s{i:03}");
                create_on(target, "snap", &id).await.unwrap();
                if i % 7 == 0 {
                    let delete = pb::DeleteContainerRequest { id };
                    containers_client(target.channel().await.unwrap())
                        .delete(in_ns("snap", delete))
                        .await
                        .unwrap();
                }
            })
            .await;
        cluster.node(lagging).spawn();
        cluster.node(lagging).wait_ready().await;
        let expected = list_ids(cluster.node(leader), "snap", false).await.unwrap();
        let kept: Vec<String> = (0..300)
            .filter(|i| i % 7 != 0)
            .map(|i| format!("s{i:03}"))
            .collect();
        assert_eq!(expected, kept);
        // A linearizable read on the restarted node waits for it to catch up.
        assert_eq!(
            list_ids(cluster.node(lagging), "snap", false)
                .await
                .unwrap(),
            expected
        );
        assert!(
            cluster.node(lagging).log().contains("installed snapshot"),
            "node {lagging} caught up without installing a snapshot"
        );
    })
    .await
}

#[tokio::test]
async fn a_paused_follower_never_answers_stale_data() {
    bounded(async {
        let mut cluster = TestCluster::start(3, &[]).await;
        let leader = cluster.wait_for_leader(&[]).await;
        let follower = cluster.a_follower(leader);
        create_on(cluster.node(leader), "stale", "c").await.unwrap();
        // Make sure the follower has the old value applied before it is paused.
        assert_eq!(
            list_ids(cluster.node(follower), "stale", false)
                .await
                .unwrap(),
            ["c"]
        );

        cluster.node(follower).signal(libc::SIGSTOP);
        let mut edit = pb::Container {
            id: "c".into(),
            image: "new-image".into(),
            ..Default::default()
        };
        edit.labels.insert("version".into(), "2".into());
        let update = pb::UpdateContainerRequest {
            container: Some(edit),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["image".into(), "labels.version".into()],
            }),
        };
        containers_client(cluster.node(leader).channel().await.unwrap())
            .update(in_ns("stale", update))
            .await
            .unwrap();
        cluster.node(follower).signal(libc::SIGCONT);

        // Read from the follower at once: it must return the new value.
        let channel = cluster.node(follower).channel().await.unwrap();
        let got = containers_client(channel)
            .get(in_ns("stale", pb::GetContainerRequest { id: "c".into() }))
            .await
            .unwrap()
            .into_inner()
            .container
            .unwrap();
        assert_eq!(got.image, "new-image");
        assert_eq!(got.labels.get("version").map(String::as_str), Some("2"));
    })
    .await
}

#[tokio::test]
async fn reads_during_an_election_wait_for_the_new_leader() {
    bounded(async {
        // Followers notice a dead leader only after 1.5-3 s without
        // heartbeats; reads sent before that reach a leader that is gone.
        let mut cluster = TestCluster::start(
            3,
            &["--election-timeout-ms", "1500", "--request-timeout", "15"],
        )
        .await;
        create_on(&cluster.nodes[0], "election", "before")
            .await
            .unwrap();
        let old_leader = cluster.wait_for_leader(&[]).await;
        cluster.node(old_leader).kill();
        let followers: Vec<&TestNode> = cluster
            .nodes
            .iter()
            .filter(|n| n.id != old_leader)
            .collect();
        for node in &followers {
            let mut admin = ClusterClient::new(node.channel().await.unwrap());
            let local = admin.local_status(LocalStatusRequest {}).await.unwrap();
            assert_eq!(
                local.into_inner().known_leader,
                old_leader,
                "node {} no longer follows the killed leader; the test's premise failed",
                node.id
            );
        }
        let reads = followers
            .iter()
            .map(|node| list_ids(node, "election", false));
        for (node, read) in followers.iter().zip(futures::future::join_all(reads).await) {
            assert_eq!(read.unwrap(), ["before"], "node {}", node.id);
        }
        create_on(followers[0], "election", "after").await.unwrap();
        for node in &followers {
            assert_eq!(
                list_ids(node, "election", false).await.unwrap(),
                ["after", "before"]
            );
        }
    })
    .await
}

#[tokio::test]
async fn a_node_cut_off_from_the_others_refuses_linearizable_reads() {
    bounded(async {
        let mut cluster = TestCluster::start(3, &[]).await;
        create_on(&cluster.nodes[0], "cut", "before").await.unwrap();
        for node in &cluster.nodes {
            assert_eq!(list_ids(node, "cut", false).await.unwrap(), ["before"]);
        }
        cluster.node(2).kill();
        let mut health = HealthClient::new(cluster.node(1).channel().await.unwrap());
        let serving = |r: Result<tonic::Response<HealthCheckResponse>, tonic::Status>| {
            r.map(|r| r.into_inner().status == ServingStatus::Serving as i32)
                .unwrap_or(false)
        };
        assert!(serving(
            health
                .check(HealthCheckRequest {
                    service: String::new()
                })
                .await
        ));
        cluster.node(3).kill();
        let started = Instant::now();
        let status = list_ids(cluster.node(1), "cut", false).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        // Its health turns NOT_SERVING too (it may have been the leader: a leader
        // without quorum acknowledgements is not believable either).
        let deadline = Instant::now() + Duration::from_secs(10);
        while serving(
            health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await,
        ) {
            assert!(
                Instant::now() < deadline,
                "node 1 still reports SERVING without a quorum"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(started.elapsed() < Duration::from_secs(15));
        // An explicitly serializable read still answers from local state.
        assert_eq!(
            list_ids(cluster.node(1), "cut", true).await.unwrap(),
            ["before"]
        );
        // And a write fails rather than hanging past its timeout.
        let status = create_on(cluster.node(1), "cut", "after")
            .await
            .unwrap_err();
        assert!(
            matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded),
            "{status:?}"
        );
    })
    .await
}

#[tokio::test]
async fn all_nodes_killed_and_restarted_keep_every_acknowledged_write() {
    bounded(async {
        let mut cluster = TestCluster::start(3, &["--snapshot-threshold", "100"]).await;
        let mut expected = Vec::new();
        for i in 0..150 {
            let id = format!("r{i:03}");
            create_on(&cluster.nodes[i % 3], "restart", &id)
                .await
                .unwrap();
            expected.push(id);
        }
        for node in &mut cluster.nodes {
            node.kill();
        }
        for node in &mut cluster.nodes {
            node.spawn();
        }
        for node in &mut cluster.nodes {
            node.wait_ready().await;
        }
        cluster.wait_for_leader(&[]).await;
        for node in &cluster.nodes {
            assert_eq!(
                list_ids(node, "restart", false).await.unwrap(),
                expected,
                "node {}",
                node.id
            );
        }
        create_on(&cluster.nodes[1], "restart", "after-restart")
            .await
            .unwrap();
        // Restart once more: nothing is applied twice (a create applied twice would fail or duplicate).
        for node in &mut cluster.nodes {
            node.kill();
            node.spawn();
        }
        for node in &mut cluster.nodes {
            node.wait_ready().await;
        }
        cluster.wait_for_leader(&[]).await;
        expected.insert(0, "after-restart".into());
        for node in &cluster.nodes {
            assert_eq!(
                list_ids(node, "restart", false).await.unwrap(),
                expected,
                "node {}",
                node.id
            );
        }
    })
    .await
}

#[tokio::test]
async fn hostile_peer_messages_do_not_crash_a_node() {
    bounded(async {
        let mut cluster = TestCluster::start(3, &[]).await;
        let mut raft = RaftClient::new(cluster.nodes[0].channel().await.unwrap());
        let garbage = RaftRequest {
            target: 1,
            source: 9,
            payload: vec![0xff; 64],
        };
        let status = raft.append_entries(garbage.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(
            raft.vote(garbage.clone()).await.unwrap_err().code(),
            Code::InvalidArgument
        );
        assert_eq!(
            raft.install_snapshot(garbage.clone())
                .await
                .unwrap_err()
                .code(),
            Code::InvalidArgument
        );
        assert_eq!(
            raft.forward_write(garbage.clone())
                .await
                .unwrap_err()
                .code(),
            Code::InvalidArgument
        );
        let wrong_target = RaftRequest {
            target: 2,
            ..garbage.clone()
        };
        assert_eq!(
            raft.vote(wrong_target).await.unwrap_err().code(),
            Code::FailedPrecondition
        );
        let empty = RaftRequest {
            target: 1,
            source: 1,
            payload: vec![],
        };
        assert_eq!(
            raft.append_entries(empty).await.unwrap_err().code(),
            Code::InvalidArgument
        );
        // A well-formed vote from an unknown node with a stale term is simply refused.
        let vote = openraft::raft::VoteRequest::<u64>::new(openraft::Vote::new(0, 42), None);
        let request = RaftRequest {
            target: 1,
            source: 42,
            payload: berth::raft::codec::encode(&vote).unwrap(),
        };
        raft.vote(request).await.unwrap();

        assert!(cluster.node(1).is_running(), "node 1 died");
        create_on(&cluster.nodes[0], "default", "still-fine")
            .await
            .unwrap();
        assert_eq!(
            list_ids(&cluster.nodes[2], "default", false).await.unwrap(),
            ["still-fine"]
        );
    })
    .await
}
