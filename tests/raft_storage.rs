//! berth's Raft storage (the WAL-backed log store and the sled state
//! machine) against openraft's storage conformance suite, plus restart
//! checks of the state machine's apply position.

use std::sync::Arc;

use berth::events::EventBus;
use berth::raft::log_store::LogStore;
use berth::raft::snapshot::SnapshotDir;
use berth::raft::state_machine::StateMachine;
use berth::raft::{Batch, Entry, LogId, StorageError, TypeConfig};
use berth::store::command::Command;
use berth::store::model::{AnyValue, Container, Runtime};
use berth::store::{Store, StoreOptions};
use berth::wal::{Wal, WalOptions};
use openraft::storage::RaftStateMachine;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload};

/// Builds stores for the suite; `cache_budget` sizes the log store's cache
/// of recent entries (`None`: the default).
struct Builder {
    cache_budget: Option<usize>,
}

fn open_all(dir: &std::path::Path) -> (LogStore, StateMachine) {
    open_with_cache(dir, None)
}

fn open_with_cache(dir: &std::path::Path, cache_budget: Option<usize>) -> (LogStore, StateMachine) {
    let wal = Arc::new(Wal::open(dir.join("wal"), WalOptions::default()).unwrap());
    let store = Arc::new(Store::open(&dir.join("state"), &StoreOptions::default()).unwrap());
    let snapshots = Arc::new(SnapshotDir::open(&dir.join("snapshots")).unwrap());
    let sm = StateMachine::open(store, snapshots, EventBus::default()).unwrap();
    let log = match cache_budget {
        Some(budget) => LogStore::with_cache_budget(wal, budget),
        None => LogStore::new(wal),
    };
    (log, sm)
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().unwrap();
        let (log, sm) = open_with_cache(dir.path(), self.cache_budget);
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_conformance_suite() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("openraft=info")
        .with_test_writer()
        .try_init();
    // Reads served from the cache of recent entries (every entry the
    // suite writes fits)...
    Suite::test_all(Builder { cache_budget: None }).unwrap();
    // ...and, with a cache that keeps only the newest entry, from the WAL.
    Suite::test_all(Builder {
        cache_budget: Some(1),
    })
    .unwrap();
}

fn create_entry(index: u64) -> Entry {
    let container = Container {
        id: format!("c{index}"),
        runtime: Runtime {
            name: "io.containerd.runc.v2".into(),
            options: None,
        },
        spec: Some(AnyValue::default()),
        ..Default::default()
    };
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Batch {
            commands: vec![Command::CreateContainer {
                namespace: "ns".into(),
                container,
            }]
            .into(),
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apply_position_survives_a_restart_so_nothing_is_applied_twice() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_log, mut sm) = open_all(dir.path());
        let responses = sm.apply((1..=5).map(create_entry)).await.unwrap();
        assert_eq!(responses.len(), 5);
        sm.store().flush_durably().unwrap();
    }
    let (_log, mut sm) = open_all(dir.path());
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(
        applied.map(|l| l.index),
        Some(5),
        "openraft replays only what follows this"
    );
    assert_eq!(sm.store().containers("ns").count(), 5);
    sm.apply((6..=7).map(create_entry)).await.unwrap();
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(7));
    let ids: Vec<String> = sm.store().containers("ns").map(|c| c.unwrap().id).collect();
    assert_eq!(ids, ["c1", "c2", "c3", "c4", "c5", "c6", "c7"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_won_election_of_this_node_is_forgotten_at_restart() {
    use berth::raft::Vote;
    use openraft::storage::RaftLogStorage;

    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // (saved vote, what this node (id 1) finds after forgetting)
        (Vote::new_committed(4, 1), Vote::new(4, 1)),
        (Vote::new_committed(4, 2), Vote::new_committed(4, 2)),
        (Vote::new(5, 1), Vote::new(5, 1)),
        (Vote::new(6, 3), Vote::new(6, 3)),
    ];
    let open_log = || {
        LogStore::new(Arc::new(
            Wal::open(dir.path(), WalOptions::default()).unwrap(),
        ))
    };
    for (saved, expected) in cases {
        let mut log = open_log();
        log.save_vote(&saved).await.unwrap();
        let forgot = log.forget_leadership(1).unwrap();
        assert_eq!(forgot, (saved != expected).then_some(saved), "{saved}");
        drop(log);
        // Durably: a reopened log reads the demoted vote.
        let mut log = open_log();
        assert_eq!(log.read_vote().await.unwrap(), Some(expected), "{saved}");
    }
}
