//! Linearizability of a history recorded by concurrent clients on every
//! node while leaders crash (and come back at once, or after an election),
//! a follower crashes, and leaders and followers are paused past the
//! election timeout; the checker itself is shown to catch
//! stale reads, both on hand-written histories and on real serializable
//! reads from a node cut off from its cluster.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth::proto::containerd::services::containers::v1 as pb;
use berth::raft::network::never_sent;
use common::history::{self, History, Op, Outcome, build};
use common::{TestCluster, bounded, containers_client, create_on, in_ns};
use rand::Rng;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

/// The registers: one label of each of these containers.
const KEYS: &[&str] = &["r0", "r1", "r2"];
const NAMESPACE: &str = "lin";
const LABEL: &str = "v";
/// A client gives up waiting for an answer after this long (a paused node
/// never answers); the write is then indeterminate.
const OP_TIMEOUT: Duration = Duration::from_secs(4);

fn lazy_channel(addr: &str) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_millis(300))
        .connect_lazy()
}

/// Sets `key`'s register to `value`.
async fn write(channel: Channel, key: &str, value: &str) -> Result<(), tonic::Status> {
    let mut container = pb::Container {
        id: key.into(),
        ..Default::default()
    };
    container.labels.insert(LABEL.into(), value.into());
    let request = in_ns(
        NAMESPACE,
        pb::UpdateContainerRequest {
            container: Some(container),
            update_mask: Some(prost_types::FieldMask {
                paths: vec![format!("labels.{LABEL}")],
            }),
        },
    );
    containers_client(channel).update(request).await.map(|_| ())
}

/// Reads `key`'s register, linearizably unless `serializable`.
async fn read(
    channel: Channel,
    key: &str,
    serializable: bool,
) -> Result<Option<String>, tonic::Status> {
    let mut request = in_ns(NAMESPACE, pb::GetContainerRequest { id: key.into() });
    if serializable {
        request
            .metadata_mut()
            .insert("berth-consistency", "serializable".parse().unwrap());
    }
    match containers_client(channel).get(request).await {
        Ok(response) => Ok(response
            .into_inner()
            .container
            .and_then(|c| c.labels.get(LABEL).cloned())),
        // No container is an answer too: the register reads as absent. The
        // containers are created before any history starts, so a read that
        // finds none is checked like any other (a node that lost its
        // applies in a crash and serves a serializable read can answer so).
        Err(status) if status.code() == Code::NotFound => Ok(None),
        Err(status) => Err(status),
    }
}

/// Runs one operation against `addr` and records it; returns whether it
/// was answered (acknowledged, or read), or why not.
async fn run_op(
    history: &History,
    client: usize,
    addr: &str,
    key: &str,
    value: Option<String>,
    serializable: bool,
) -> Result<(), String> {
    let channel = lazy_channel(addr);
    let invoked = history.now();
    let answer = match &value {
        Some(v) => tokio::time::timeout(OP_TIMEOUT, write(channel, key, v))
            .await
            .map(|r| r.map(|()| None)),
        None => tokio::time::timeout(OP_TIMEOUT, read(channel, key, serializable))
            .await
            .map(|r| r.map(Some)),
    };
    let returned = history.now();
    let (outcome, unanswered) = match (answer, value.is_some()) {
        (Ok(Ok(Some(seen))), false) => (Outcome::Read(seen), None),
        // A read that failed had no effect: leave it out.
        (Ok(Err(status)), false) => return Err(format!("read failed: {status:?}")),
        (Err(_elapsed), false) => return Err("read timed out".into()),
        (Ok(Ok(None)), false) => unreachable!("an answered read carries its value"),
        (Ok(Ok(_)), true) => (Outcome::Written, None),
        (Ok(Err(status)), true) if never_sent(&status) => {
            return Err(format!("write never sent: {status:?}"));
        }
        (Ok(Err(status)), true) => {
            assert!(
                matches!(
                    status.code(),
                    Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
                ),
                "client {client}: a write failed for a reason other than a fault: {status:?}"
            );
            let why = format!("write outcome unknown: {status:?}");
            (Outcome::Indeterminate, Some(why))
        }
        (Err(_elapsed), true) => (
            Outcome::Indeterminate,
            Some("write timed out: outcome unknown".into()),
        ),
    };
    history.record(Op {
        client,
        key: key.to_string(),
        value,
        outcome,
        invoked,
        returned,
    });
    unanswered.map_or(Ok(()), Err)
}

/// Repeats an operation until it is answered: a step a test needs to have
/// happened. Unanswered tries stay in the history, as any client's would.
/// A write's value gets the try's number (`old#0`, `old#1`, ...): the
/// checker needs every written value to be unique, and a try whose outcome
/// is unknown may still take effect, later than the one acknowledged.
async fn until_answered(
    history: &History,
    client: usize,
    addr: &str,
    key: &str,
    value: Option<&str>,
    serializable: bool,
) {
    let mut last_failure = String::new();
    for attempt in 0..50 {
        let value = value.map(|v| format!("{v}#{attempt}"));
        match run_op(history, client, addr, key, value, serializable).await {
            Ok(()) => return,
            Err(why) => last_failure = why,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("client {client}: no answer from {addr} in 50 tries; the last: {last_failure}");
}

/// A client bound to one node: random reads and writes of random keys
/// until `stop`.
fn spawn_client(
    history: Arc<History>,
    client: usize,
    addr: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seq = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let (key, is_write) = {
                let mut rng = rand::rng();
                (KEYS[rng.random_range(0..KEYS.len())], rng.random_bool(0.5))
            };
            seq += 1;
            let value = is_write.then(|| format!("c{client}-{seq}"));
            if run_op(&history, client, &addr, key, value, false)
                .await
                .is_err()
            {
                // Failed: do not spin against a dead node.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    })
}

/// Fails the test with the offending key's operations if `ops` has no
/// linearization, keeping the nodes' logs (the cluster's directory goes
/// away with the test).
fn assert_linearizable(ops: &[Op], cluster: &TestCluster) {
    if let Err(violation) = history::check(ops) {
        let kept =
            std::env::temp_dir().join(format!("berth-linearizability-{}", std::process::id()));
        std::fs::create_dir_all(&kept).unwrap();
        for node in &cluster.nodes {
            let log = node.data_dir.with_extension("log");
            let _ = std::fs::copy(&log, kept.join(log.file_name().unwrap()));
        }
        let listing: Vec<String> = violation.ops.iter().map(|op| format!("{op:?}")).collect();
        panic!(
            "the history of key {} is not linearizable (node logs kept in {}):\n{}",
            violation.key,
            kept.display(),
            listing.join("\n")
        );
    }
}

/// The cluster tests take turns: each loads both CPUs of the CI machine.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn histories_under_crashes_and_pauses_are_linearizable() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    bounded(nemesis_history(3)).await
}

/// With five voters, a write caught by a leader change is not retried (a
/// copy cut from the old leader's log may survive on a minority): those
/// come back as outcome unknown.
#[tokio::test]
async fn five_node_histories_under_crashes_and_pauses_are_linearizable() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    bounded(nemesis_history(5)).await
}

/// Runs clients (two per node) against an `n`-node cluster through the
/// nemesis schedule, then checks the history.
async fn nemesis_history(n: u64) {
    let mut cluster = TestCluster::start(n, &["--snapshot-threshold", "200"]).await;
    for key in KEYS {
        create_on(&cluster.nodes[0], NAMESPACE, key).await.unwrap();
    }
    let history = Arc::new(History::default());
    let stop = Arc::new(AtomicBool::new(false));
    let nodes = cluster.nodes.len();
    let clients: Vec<_> = (0..2 * nodes)
        .map(|client| {
            let addr = cluster.nodes[client % nodes].addr.clone();
            spawn_client(history.clone(), client, addr, stop.clone())
        })
        .collect();

    let ms = Duration::from_millis;
    let calm = || tokio::time::sleep(ms(1500));
    calm().await;
    // A leader that crashes and is back at once, before the others
    // could elect anyone: they still follow it.
    let leader = cluster.wait_for_leader(&[]).await;
    cluster.node(leader).crash_and_restart(ms(200)).await;
    calm().await;
    // A crashed leader that stays down long enough for an election.
    let leader = cluster.wait_for_leader(&[]).await;
    cluster.node(leader).crash_and_restart(ms(3000)).await;
    calm().await;
    // A leader paused past the election timeout: it comes back still
    // believing it leads, and must not answer from its stale view.
    let leader = cluster.wait_for_leader(&[]).await;
    cluster.node(leader).pause_for(ms(2500)).await;
    calm().await;
    // A paused follower, which resumes behind.
    let follower = cluster.a_follower(cluster.wait_for_leader(&[]).await);
    cluster.node(follower).pause_for(ms(1500)).await;
    calm().await;
    // A crashed follower, back at once: its store may have lost its
    // last applies, which it must replay before answering.
    let follower = cluster.a_follower(cluster.wait_for_leader(&[]).await);
    cluster
        .node(follower)
        .crash_and_restart(Duration::ZERO)
        .await;
    calm().await;

    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    // Final reads of every key on every node join the history: the
    // replicas must agree with each other and with what came before.
    cluster.wait_for_leader(&[]).await;
    for node in &cluster.nodes {
        for key in KEYS {
            // One that fails is left out, as any failed read.
            let _unanswered = run_op(
                &history,
                100 + node.id as usize,
                &node.addr,
                key,
                None,
                false,
            )
            .await;
        }
    }
    let ops = history.ops();
    let count = |f: fn(&Outcome) -> bool| ops.iter().filter(|op| f(&op.outcome)).count();
    let (acked, unknown, reads) = (
        count(|o| *o == Outcome::Written),
        count(|o| *o == Outcome::Indeterminate),
        count(|o| matches!(o, Outcome::Read(_))),
    );
    eprintln!("history: {acked} acknowledged writes, {unknown} indeterminate, {reads} reads");
    assert!(acked >= 30 && reads >= 30, "too little happened to check");
    let final_reads = ops.iter().filter(|op| op.client >= 100).count();
    assert_eq!(final_reads, nodes * KEYS.len(), "a final read failed");
    let started = std::time::Instant::now();
    assert_linearizable(&ops, &cluster);
    eprintln!("checked in {:?}", started.elapsed());
}

#[tokio::test]
async fn the_checker_catches_serializable_reads_from_a_node_cut_off() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    bounded(async {
        let mut cluster = TestCluster::start(3, &[]).await;
        let key = KEYS[0];
        create_on(&cluster.nodes[0], NAMESPACE, key).await.unwrap();
        let leader = cluster.wait_for_leader(&[]).await;
        let behind = cluster.a_follower(leader);
        let other = cluster
            .nodes
            .iter()
            .find(|n| n.id != leader && n.id != behind)
            .unwrap()
            .id;
        let history = History::default();
        let addr = |cluster: &mut TestCluster, id| cluster.node(id).addr.clone();

        // The first value reaches every node (`behind` answers a
        // linearizable read of it).
        let leader_addr = addr(&mut cluster, leader);
        until_answered(&history, 0, &leader_addr, key, Some("old"), false).await;
        let behind_addr = addr(&mut cluster, behind);
        until_answered(&history, 1, &behind_addr, key, None, false).await;
        // `behind` misses the second (it is down: a paused node would still
        // find the leader's messages in its socket buffers when resumed),
        // then comes back alone with its stale state.
        cluster.node(behind).kill();
        until_answered(&history, 0, &leader_addr, key, Some("new"), false).await;
        cluster.node(leader).signal(libc::SIGSTOP);
        cluster.node(other).signal(libc::SIGSTOP);
        cluster.node(behind).spawn();
        cluster.node(behind).wait_ready().await;

        // Linearizable reads there refuse to answer ...
        let refused = read(lazy_channel(&behind_addr), key, false)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
        // ... serializable ones answer from the stale state ...
        // (its store holds "old", or nothing, not even the container, if
        // the crash took its last applies from sled's buffers: stale
        // either way)
        until_answered(&history, 1, &behind_addr, key, None, true).await;
        let ops = history.ops();
        assert!(
            matches!(
                ops.last().map(|op| &op.outcome),
                Some(Outcome::Read(seen)) if !seen.as_deref().is_some_and(|v| v.starts_with("new#"))
            ),
            "the cut-off node's serializable read: {ops:?}"
        );
        // ... and the checker says so.
        let violation = history::check(&ops).expect_err("a stale read passed the checker");
        assert_eq!(violation.key, key);
        cluster.node(leader).signal(libc::SIGCONT);
        cluster.node(other).signal(libc::SIGCONT);
    })
    .await
}

#[test]
fn the_checker_accepts_and_refuses_what_it_should() {
    use build::{lost_write, read, write};
    let verdict = |ops: Vec<Op>| history::check(&ops).is_ok();

    // Sequential: a read sees the last completed write.
    assert!(verdict(vec![
        write(0, "a", 0, 10),
        read(1, Some("a"), 20, 30)
    ]));
    // Nothing written yet: the label is absent.
    assert!(verdict(vec![read(1, None, 0, 5), write(0, "a", 10, 20)]));
    // A read after a completed write that returns the older value is stale.
    assert!(!verdict(vec![
        write(0, "a", 0, 10),
        write(0, "b", 20, 30),
        read(1, Some("a"), 40, 50),
    ]));
    // Overlapping the second write, either value is fine.
    for seen in ["a", "b"] {
        assert!(verdict(vec![
            write(0, "a", 0, 10),
            write(0, "b", 20, 60),
            read(1, Some(seen), 40, 50),
        ]));
    }
    // Once a read saw the new value, a later read may not see the old one.
    assert!(!verdict(vec![
        write(0, "a", 0, 10),
        write(0, "b", 20, 100),
        read(1, Some("b"), 30, 40),
        read(2, Some("a"), 50, 60),
    ]));
    // A value nobody wrote.
    assert!(!verdict(vec![
        write(0, "a", 0, 10),
        read(1, Some("x"), 20, 30)
    ]));
    // A read may not see a write invoked after it returned.
    assert!(!verdict(vec![
        read(1, Some("a"), 0, 10),
        write(0, "a", 20, 30)
    ]));
    // An indeterminate write may take effect late, or never.
    assert!(verdict(vec![
        write(0, "a", 0, 10),
        lost_write(0, "b", 20),
        read(1, Some("a"), 40, 50),
        read(1, Some("b"), 60, 70),
    ]));
    assert!(verdict(vec![
        write(0, "a", 0, 10),
        lost_write(0, "b", 20),
        read(1, Some("a"), 60, 70),
    ]));
    // But not before it was sent, and not undone once seen.
    assert!(!verdict(vec![
        read(1, Some("b"), 0, 10),
        lost_write(0, "b", 20),
    ]));
    assert!(!verdict(vec![
        write(0, "a", 0, 10),
        lost_write(0, "b", 20),
        read(1, Some("b"), 30, 40),
        read(1, Some("a"), 50, 60),
    ]));
    // Keys are independent: a stale read on one is found among others.
    let mut ops = vec![write(0, "a", 0, 10), read(1, Some("a"), 20, 30)];
    let mut stale = vec![
        write(0, "a", 0, 10),
        write(0, "b", 20, 30),
        read(1, Some("a"), 40, 50),
    ];
    for op in &mut stale {
        op.key = "other".into();
    }
    ops.extend(stale);
    assert_eq!(history::check(&ops).unwrap_err().key, "other");
}

#[test]
fn the_checker_handles_long_concurrent_histories_quickly() {
    // Six clients with overlapping operations on one key, 3,000 operations,
    // a third of the writes indeterminate and never seen.
    use build::{lost_write, read, write};
    let mut ops = Vec::new();
    let mut current = String::new();
    let mut t = 0u64;
    for i in 0..3000u64 {
        let client = (i % 6) as usize;
        t += 7;
        match i % 3 {
            0 => {
                current = format!("v{i}");
                ops.push(write(client, &current, t, t + 15));
            }
            1 if i % 9 == 1 => ops.push(lost_write(client, &format!("lost{i}"), t)),
            _ => ops.push(read(
                client,
                Some(current.as_str()).filter(|c| !c.is_empty()),
                t + 16,
                t + 30,
            )),
        }
    }
    let started = std::time::Instant::now();
    assert!(history::check(&ops).is_ok());
    eprintln!(
        "checked {} operations in {:?}",
        ops.len(),
        started.elapsed()
    );
}
