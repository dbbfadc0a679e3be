//! The state machine's storage: containers and leases on sled.
//!
//! `Store` is the bottom layer of berth. It knows nothing of Raft or gRPC: the
//! layers above hand it `Command`s to `apply` (in log order, one caller at a
//! time) and read from it directly. Each `apply` call is one sled
//! transaction over all trees, so a batch of commands and the metadata that
//! records how far the log has been applied land together or not at all.
//!
//! Durability: sled writes reach its page cache and log buffers; they are
//! durable only after `flush_durably`. Under Raft that is fine, because the
//! Raft log (fsynced before any acknowledgement) replays whatever the store
//! lost; the store is flushed durably before the log is purged past it.

pub mod capture;
pub mod command;
pub mod containers;
pub mod filter;
pub mod image;
pub mod leases;
pub mod model;
pub mod schema;
mod tx;
pub mod validate;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::{IVec, Transactional, Tree};

use crate::error::{Error, Result};
use command::{Command, Outcome};
use image::DataTree;
use model::{Container, Lease};
use tx::{DataTx, Tx};

/// Default size of sled's page cache (sled's own default is 1 GiB).
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// How the store is opened.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// sled page-cache capacity in bytes.
    pub cache_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_bytes: DEFAULT_CACHE_BYTES,
        }
    }
}

/// How long `open` waits for another handle of the same database in this
/// process to let go of its lock.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// Opens the sled database in `dir`. sled locks its file for the lifetime
/// of a database, and after the last handle is dropped its background
/// threads can keep the file (and so the lock) open for a moment; reopening
/// at once in the same process then fails with "could not acquire lock"
/// (sled 0.34). That error is retried for up to [`LOCK_WAIT`]. Another
/// berth process cannot be the holder: a server locks its whole data dir
/// before it opens the store, and a restore only writes into an empty one.
fn open_db(dir: &Path, options: &StoreOptions) -> sled::Result<sled::Db> {
    let config = sled::Config::new()
        .path(dir)
        .cache_capacity(options.cache_bytes);
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            opened => return opened,
        }
    }
}

/// A node's state-machine store: one sled database in its own directory.
pub struct Store {
    dir: PathBuf,
    db: sled::Db,
    containers: Tree,
    leases: Tree,
    namespaces: Tree,
    cluster: Tree,
    meta: Tree,
    /// Values at the capture point of the snapshot image being captured.
    preimages: Tree,
    /// Whether applies record preimages (a capture is under way).
    capturing: AtomicBool,
}

impl Store {
    /// Opens (or creates) the store in `dir`, checking its format version.
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<Store> {
        let db = open_db(dir, options)
            .map_err(|e| Error::Internal(format!("opening the store at {}: {e}", dir.display())))?;
        let store = Store {
            dir: dir.to_path_buf(),
            containers: db.open_tree(schema::CONTAINERS_TREE)?,
            leases: db.open_tree(schema::LEASES_TREE)?,
            namespaces: db.open_tree(schema::NAMESPACES_TREE)?,
            cluster: db.open_tree(schema::CLUSTER_TREE)?,
            meta: db.open_tree(schema::META_TREE)?,
            preimages: db.open_tree(schema::PREIMAGES_TREE)?,
            capturing: AtomicBool::new(false),
            db,
        };
        match store.meta.get(schema::FORMAT_KEY)? {
            None => {
                store
                    .meta
                    .insert(schema::FORMAT_KEY, &[schema::FORMAT_VERSION])?;
            }
            Some(v) if v.as_ref() == [schema::FORMAT_VERSION] => {}
            Some(v) => {
                return Err(Error::Internal(format!(
                    "the store at {} has format {:?}; this berth reads format {}",
                    dir.display(),
                    v.as_ref(),
                    schema::FORMAT_VERSION
                )));
            }
        }
        Ok(store)
    }

    /// Applies `commands` in order, and writes `meta` (key, value) pairs into
    /// the metadata tree, all in one transaction. Returns one outcome per
    /// command. `Err` means the storage itself failed: nothing was applied,
    /// and the caller must not carry on as if it had.
    pub fn apply(&self, commands: &[&Command], meta: &[(&[u8], &[u8])]) -> Result<Vec<Outcome>> {
        let trees = (
            &self.containers,
            &self.leases,
            &self.namespaces,
            &self.cluster,
            &self.meta,
            &self.preimages,
        );
        // Read once: a capture begins only between applies.
        let capturing = self.capturing.load(Ordering::Acquire);
        let result = trees.transaction(
            |(containers, leases, namespaces, cluster, meta_tree, preimages)| {
                let preimages = capturing.then_some(preimages);
                let tx = Tx {
                    containers: DataTx::new(containers, DataTree::Containers, preimages),
                    leases: DataTx::new(leases, DataTree::Leases, preimages),
                    namespaces: DataTx::new(namespaces, DataTree::Namespaces, preimages),
                    cluster: DataTx::new(cluster, DataTree::Cluster, preimages),
                    meta: meta_tree,
                };
                let mut outcomes = Vec::with_capacity(commands.len());
                for command in commands {
                    outcomes.push(apply_one(&tx, command)?);
                }
                for (key, value) in meta {
                    tx.meta.insert(*key, *value)?;
                }
                Ok(outcomes)
            },
        );
        match result {
            Ok(outcomes) => Ok(outcomes),
            Err(TransactionError::Abort(e)) => Err(e.context("applying commands")),
            Err(TransactionError::Storage(e)) => Err(Error::from(e).context("applying commands")),
        }
    }

    /// The container `id` of `namespace`, if stored.
    pub fn container(&self, namespace: &str, id: &str) -> Result<Option<Container>> {
        self.containers
            .get(schema::object_key(namespace, id))?
            .map(|v| schema::decode_record(&v))
            .transpose()
    }

    /// All containers of `namespace` in id order, read lazily (the caller
    /// streams them).
    pub fn containers(
        &self,
        namespace: &str,
    ) -> impl Iterator<Item = Result<Container>> + Send + use<> {
        decode_all(
            self.containers
                .scan_prefix(schema::namespace_prefix(namespace)),
        )
    }

    /// The lease `id` of `namespace`, if stored.
    pub fn lease(&self, namespace: &str, id: &str) -> Result<Option<Lease>> {
        self.leases
            .get(schema::object_key(namespace, id))?
            .map(|v| schema::decode_record(&v))
            .transpose()
    }

    /// All leases of `namespace` in id order.
    pub fn leases(&self, namespace: &str) -> impl Iterator<Item = Result<Lease>> + Send + use<> {
        decode_all(self.leases.scan_prefix(schema::namespace_prefix(namespace)))
    }

    /// The cluster's id, once a leader has given it one.
    pub fn cluster_id(&self) -> Result<Option<String>> {
        Ok(self
            .cluster
            .get(schema::CLUSTER_ID_KEY)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// A value of the metadata tree.
    pub fn meta(&self, key: &[u8]) -> Result<Option<IVec>> {
        Ok(self.meta.get(key)?)
    }

    /// Makes everything written so far durable: sled's flush, then an fsync
    /// of its data file, because on Linux sled's flush uses
    /// `sync_file_range`, which syncs neither metadata nor the device cache
    /// (sled#1452). Blocking: call it off the async threads.
    pub fn flush_durably(&self) -> Result<()> {
        self.db.flush()?;
        let data_file = self.dir.join("db");
        File::open(&data_file)
            .and_then(|f| f.sync_all())
            .map_err(|e| {
                Error::Internal(format!(
                    "fsync of the store's data file {}: {e}",
                    data_file.display()
                ))
            })
    }
}

/// Decodes each value of a sled scan.
fn decode_all<T: serde::de::DeserializeOwned>(
    iter: sled::Iter,
) -> impl Iterator<Item = Result<T>> + Send + use<T> {
    iter.map(|item| {
        item.map_err(Error::from)
            .and_then(|(_, v)| schema::decode_record(&v))
    })
}

/// Applies one command inside a transaction.
fn apply_one(tx: &Tx, command: &Command) -> Result<Outcome, ConflictableTransactionError<Error>> {
    match command {
        Command::CreateContainer {
            namespace,
            container,
        } => containers::create(tx, namespace, container),
        Command::UpdateContainer {
            namespace,
            container,
            mask,
            now,
        } => containers::update(tx, namespace, container, mask, *now),
        Command::DeleteContainer { namespace, id, .. } => containers::delete(tx, namespace, id),
        Command::CreateLease { namespace, lease } => leases::create(tx, namespace, lease),
        Command::DeleteLease { namespace, id, .. } => leases::delete(tx, namespace, id),
        Command::InitCluster { cluster_id } => {
            let id = match tx.cluster.get(schema::CLUSTER_ID_KEY)? {
                Some(existing) => String::from_utf8_lossy(&existing).into_owned(),
                None => {
                    tx.cluster
                        .insert(schema::CLUSTER_ID_KEY, cluster_id.as_bytes())?;
                    cluster_id.clone()
                }
            };
            Ok(Ok(command::Applied::ClusterId(id)))
        }
    }
}
