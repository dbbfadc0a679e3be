//! Cluster administration against real nodes: growing and shrinking,
//! replacing a member, removing the leader, refusals, changes under load,
//! and backup / restore into a new cluster.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use berth::proto::berth::cluster::v1::cluster_client::ClusterClient;
use berth::proto::berth::cluster::v1::{
    AddNodeRequest, RemoveNodeRequest, SaveSnapshotRequest, StatusRequest,
};
use berth::proto::containerd::services::leases::v1 as leases;
use berth::proto::containerd::services::leases::v1::leases_client::LeasesClient;
use common::{TestCluster, TestNode, bounded, create_on, in_ns, list_ids};
use tonic::Code;

async fn cluster_client(node: &TestNode) -> ClusterClient<tonic::transport::Channel> {
    ClusterClient::new(node.channel().await.unwrap())
}

/// Adds node `id` (already started with --join) through `via`, draining the progress stream.
async fn add_node(via: &TestNode, id: u64, address: &str) -> Result<Vec<String>, tonic::Status> {
    let request = AddNodeRequest {
        id,
        address: address.into(),
        timeout_seconds: 30,
        max_lag: 0,
    };
    let mut stream = cluster_client(via)
        .await
        .add_node(request)
        .await?
        .into_inner();
    let mut phases = Vec::new();
    while let Some(progress) = stream.message().await? {
        phases.push(progress.phase);
    }
    Ok(phases)
}

/// Runs `berth snapshot restore` for one member.
fn restore(
    backup: &std::path::Path,
    data_dir: &std::path::Path,
    node_id: u64,
    initial_cluster: &str,
) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["snapshot", "restore"])
        .arg(backup)
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--node-id",
            &node_id.to_string(),
            "--initial-cluster",
            initial_cluster,
        ])
        .output()
        .unwrap()
}

async fn remove_node(via: &TestNode, id: u64, force: bool) -> Result<(), tonic::Status> {
    cluster_client(via)
        .await
        .remove_node(RemoveNodeRequest { id, force })
        .await
        .map(|_| ())
}

async fn voters(via: &TestNode) -> Vec<u64> {
    let status = cluster_client(via)
        .await
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    status
        .members
        .iter()
        .filter(|m| m.role == "voter")
        .map(|m| m.id)
        .collect()
}

/// Every running node lists exactly `expected`.
async fn assert_everywhere(cluster: &TestCluster, expected: &[String]) {
    for node in cluster.nodes.iter().filter(|n| n.pid().is_some()) {
        assert_eq!(
            list_ids(node, "m", false).await.unwrap(),
            expected,
            "node {}",
            node.id
        );
    }
}

#[tokio::test]
async fn grow_from_one_to_five_and_shrink_back_to_three() {
    bounded(async {
        let mut cluster = TestCluster::start(1, &[]).await;
        let mut expected: Vec<String> = Vec::new();
        let write = |expected: &mut Vec<String>, id: String| {
            expected.push(id.clone());
            expected.sort();
            id
        };
        for i in 0..20 {
            let id = write(&mut expected, format!("a{i:02}"));
            create_on(&cluster.nodes[0], "m", &id).await.unwrap();
        }
        for id in 2..=5 {
            let index = cluster.spawn_joiner(id, &[]).await;
            let address = cluster.nodes[index].addr.clone();
            let phases = add_node(&cluster.nodes[0], id, &address).await.unwrap();
            assert_eq!(phases.first().map(String::as_str), Some("learner-added"));
            assert_eq!(phases.last().map(String::as_str), Some("promoted"));
            let new_id = write(&mut expected, format!("b{id}"));
            create_on(&cluster.nodes[index], "m", &new_id)
                .await
                .unwrap();
            assert_everywhere(&cluster, &expected).await;
            if id == 3 {
                assert_eq!(voters(&cluster.nodes[0]).await, [1, 2, 3]);
            }
        }
        assert_eq!(voters(&cluster.nodes[2]).await, [1, 2, 3, 4, 5]);
        // Adding the same node again is a no-op.
        let address = cluster.node(5).addr.clone();
        assert_eq!(
            add_node(&cluster.nodes[1], 5, &address).await.unwrap(),
            ["already-member"]
        );

        // Shrink back to three: remove 4 and 5 (through other nodes; forwarded to the leader).
        for id in [5, 4] {
            remove_node(&cluster.nodes[0], id, false).await.unwrap();
            cluster.node(id).kill();
            let new_id = write(&mut expected, format!("c{id}"));
            create_on(&cluster.nodes[1], "m", &new_id).await.unwrap();
            assert_everywhere(&cluster, &expected).await;
        }
        assert_eq!(voters(&cluster.nodes[0]).await, [1, 2, 3]);
    })
    .await
}

#[tokio::test]
async fn replace_a_failed_member_with_a_fresh_node() {
    bounded(async {
        let mut cluster = TestCluster::start(3, &[]).await;
        create_on(&cluster.nodes[0], "m", "x1").await.unwrap();
        let leader = cluster.wait_for_leader(&[]).await;
        let failed = if leader == 3 { 2 } else { 3 };
        cluster.node(failed).kill();
        // The cluster still serves with two of three.
        create_on(cluster.node(leader), "m", "x2").await.unwrap();
        remove_node(cluster.node(leader), failed, false)
            .await
            .unwrap();
        create_on(cluster.node(leader), "m", "x3").await.unwrap();
        let index = cluster.spawn_joiner(4, &[]).await;
        let address = cluster.nodes[index].addr.clone();
        add_node(cluster.node(leader), 4, &address).await.unwrap();
        create_on(cluster.node(4), "m", "x4").await.unwrap();
        let mut expected: Vec<String> = ["x1", "x2", "x3", "x4"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        expected.sort();
        assert_everywhere(&cluster, &expected).await;
        let mut remaining = voters(cluster.node(4)).await;
        remaining.sort();
        let mut want: Vec<u64> = [1, 2, 3, 4]
            .into_iter()
            .filter(|id| *id != failed)
            .collect();
        want.sort();
        assert_eq!(remaining, want);
    })
    .await
}

#[tokio::test]
async fn removing_the_leader_elects_another_and_the_removed_node_refuses_clients() {
    bounded(async {
        let mut cluster = TestCluster::start(3, &[]).await;
        let leader = cluster.wait_for_leader(&[]).await;
        create_on(cluster.node(leader), "m", "before")
            .await
            .unwrap();
        let other = cluster.a_follower(leader);
        remove_node(cluster.node(other), leader, false)
            .await
            .unwrap();
        let new_leader = cluster.wait_for_leader(&[leader]).await;
        assert_ne!(new_leader, leader);
        create_on(cluster.node(new_leader), "m", "after")
            .await
            .unwrap();
        let status = list_ids(cluster.node(leader), "m", false)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert!(status.message().contains("removed"), "{}", status.message());
        let status = create_on(cluster.node(leader), "m", "nope")
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);
        // It stays removed across a restart, and does not disturb the others.
        cluster.node(leader).crash_and_restart(Duration::ZERO).await;
        assert_eq!(
            list_ids(cluster.node(leader), "m", false)
                .await
                .unwrap_err()
                .code(),
            Code::FailedPrecondition
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            cluster.wait_for_leader(&[leader]).await,
            new_leader,
            "the removed node disrupted the cluster"
        );
        let survivors: Vec<&TestNode> = cluster.nodes.iter().filter(|n| n.id != leader).collect();
        for node in survivors {
            assert_eq!(
                list_ids(node, "m", false).await.unwrap(),
                ["after", "before"]
            );
        }
    })
    .await
}

#[tokio::test]
async fn unsafe_or_invalid_changes_are_refused() {
    bounded(async {
        let mut cluster = TestCluster::start(3, &[]).await;
        let leader = cluster.wait_for_leader(&[]).await;
        let others: Vec<u64> = cluster
            .nodes
            .iter()
            .map(|n| n.id)
            .filter(|id| *id != leader)
            .collect();
        // Bad input.
        for (id, address) in [
            (0, "127.0.0.1:1"),
            (9, "no-port"),
            (9, "host:99999"),
            (9, ":80"),
        ] {
            let status = add_node(cluster.node(leader), id, address)
                .await
                .unwrap_err();
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{id} {address}: {status:?}"
            );
        }
        assert_eq!(
            remove_node(cluster.node(leader), 0, false)
                .await
                .unwrap_err()
                .code(),
            Code::InvalidArgument
        );
        assert_eq!(
            remove_node(cluster.node(leader), 42, false)
                .await
                .unwrap_err()
                .code(),
            Code::NotFound
        );
        // An existing id with another address.
        let status = add_node(cluster.node(leader), others[0], "127.0.0.1:1")
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");

        // With one voter down, removing another would leave no live quorum.
        cluster.node(others[0]).kill();
        let status = remove_node(cluster.node(leader), others[1], false)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert!(status.message().contains("--force"), "{}", status.message());
        // Removing the dead one is safe.
        remove_node(cluster.node(leader), others[0], false)
            .await
            .unwrap();
        create_on(cluster.node(leader), "m", "still-writable")
            .await
            .unwrap();

        // An unreachable learner never endangers quorum; the add times out and the learner can be removed.
        let request = AddNodeRequest {
            id: 7,
            address: format!("127.0.0.1:{}", common::free_port()),
            timeout_seconds: 2,
            max_lag: 0,
        };
        let mut stream = cluster_client(cluster.node(leader))
            .await
            .add_node(request)
            .await
            .unwrap()
            .into_inner();
        let status = loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("adding an unreachable node succeeded"),
                Err(status) => break status,
            }
        };
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        create_on(cluster.node(leader), "m", "with-learner")
            .await
            .unwrap();
        remove_node(cluster.node(leader), 7, false).await.unwrap();
        assert_eq!(
            list_ids(cluster.node(others[1]), "m", false).await.unwrap(),
            ["still-writable", "with-learner"]
        );
    })
    .await
}

#[tokio::test]
async fn membership_changes_under_write_load_lose_nothing() {
    bounded(async {
        let mut cluster = TestCluster::start(3, &[]).await;
        let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.addr.clone()).collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (addr, stop) = (addrs[w % 3].clone(), stop.clone());
                tokio::spawn(async move {
                    let node = TestNode::new(0, std::path::Path::new("/nonexistent"), addr, vec![]);
                    let (mut acked, mut seq) = (Vec::new(), 0);
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        seq += 1;
                        let id = format!("l{w}-{seq}");
                        match create_on(&node, "m", &id).await {
                            Ok(()) => acked.push(id),
                            Err(status) => {
                                assert!(
                                    matches!(
                                        status.code(),
                                        Code::Unavailable | Code::DeadlineExceeded
                                    ),
                                    "{status:?}"
                                );
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                    acked
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let index = cluster.spawn_joiner(4, &[]).await;
        let address = cluster.nodes[index].addr.clone();
        add_node(&cluster.nodes[0], 4, &address).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        remove_node(&cluster.nodes[1], 4, false).await.unwrap();
        let index = cluster.spawn_joiner(5, &[]).await;
        let address = cluster.nodes[index].addr.clone();
        add_node(&cluster.nodes[2], 5, &address).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut acked = Vec::new();
        for writer in writers {
            acked.extend(writer.await.unwrap());
        }
        assert!(!acked.is_empty());
        cluster.node(4).kill();
        for node in cluster.nodes.iter().filter(|n| n.pid().is_some()) {
            let present: std::collections::BTreeSet<String> = list_ids(node, "m", false)
                .await
                .unwrap()
                .into_iter()
                .collect();
            let missing: Vec<_> = acked.iter().filter(|id| !present.contains(*id)).collect();
            assert!(missing.is_empty(), "node {} lost {missing:?}", node.id);
        }
    })
    .await
}

#[tokio::test]
async fn backup_from_a_follower_restores_into_a_new_cluster_identically() {
    bounded(async {
        let cluster = TestCluster::start(3, &[]).await;
        let leader = cluster.wait_for_leader(&[]).await;
        for (ns, n) in [("alpha", 30), ("beta", 5)] {
            for i in 0..n {
                create_on(&cluster.nodes[i % 3], ns, &format!("{ns}-{i}"))
                    .await
                    .unwrap();
            }
        }
        let mut lease_client = LeasesClient::new(cluster.nodes[0].channel().await.unwrap());
        let lease = leases::CreateRequest {
            id: "lease-1".into(),
            labels: BTreeMap::from([("k".into(), "v".into())]),
        };
        lease_client.create(in_ns("alpha", lease)).await.unwrap();

        let follower = cluster.nodes.iter().find(|n| n.id != leader).unwrap();
        let mut stream = cluster_client(follower)
            .await
            .save_snapshot(SaveSnapshotRequest {})
            .await
            .unwrap()
            .into_inner();
        let backup = cluster.dir.path().join("backup.snap");
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.message().await.unwrap() {
            bytes.extend_from_slice(&chunk.data);
        }
        std::fs::write(&backup, &bytes).unwrap();

        // Restore into three fresh data dirs with the CLI, then start a new cluster on them.
        let new_dir = tempfile::tempdir().unwrap();
        let (addrs, initial) = common::loopback_members(3);
        let mut restored = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            let node = TestNode::new(
                i as u64 + 1,
                new_dir.path(),
                addr.clone(),
                common::TEST_RAFT_FLAGS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            );
            let out = restore(&backup, &node.data_dir, i as u64 + 1, &initial);
            assert!(
                out.status.success(),
                "restore failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            restored.push(node);
        }
        for node in &mut restored {
            node.spawn();
        }
        for node in &mut restored {
            node.wait_ready().await;
        }
        let restored_cluster = TestCluster {
            nodes: restored,
            dir: new_dir,
        };
        restored_cluster.wait_for_leader(&[]).await;
        for ns in ["alpha", "beta"] {
            let original = list_ids(&cluster.nodes[0], ns, false).await.unwrap();
            for node in &restored_cluster.nodes {
                assert_eq!(
                    list_ids(node, ns, false).await.unwrap(),
                    original,
                    "namespace {ns} on restored node {}",
                    node.id
                );
            }
        }
        let mut restored_leases =
            LeasesClient::new(restored_cluster.nodes[2].channel().await.unwrap());
        let listed = restored_leases
            .list(in_ns("alpha", leases::ListRequest { filters: vec![] }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.leases.len(), 1);
        assert_eq!(
            listed.leases[0].labels,
            BTreeMap::from([("k".into(), "v".into())])
        );
        // The restored cluster is a new cluster with its own id, and it takes writes.
        let old_id = cluster_client(&cluster.nodes[0])
            .await
            .status(StatusRequest {})
            .await
            .unwrap()
            .into_inner()
            .cluster_id;
        let new_id = cluster_client(&restored_cluster.nodes[0])
            .await
            .status(StatusRequest {})
            .await
            .unwrap()
            .into_inner()
            .cluster_id;
        assert!(
            !new_id.is_empty() && new_id != old_id,
            "{old_id} vs {new_id}"
        );
        create_on(&restored_cluster.nodes[1], "alpha", "after-restore")
            .await
            .unwrap();
        // Restoring into a non-empty data dir is refused.
        let out = restore(&backup, &restored_cluster.nodes[0].data_dir, 1, &initial);
        assert!(!out.status.success());
    })
    .await
}
