//! The store's whole data set as a stream of records, out (`dump`) and in
//! (`restore`): the substance of Raft snapshots and backups.
//!
//! sled iterators are not point-in-time snapshots, so `dump` gives a
//! consistent image only while no `apply` runs (an offline store); Raft
//! snapshots of a running node read a `capture` instead, which is consistent
//! while applies go on. `restore` replaces everything; a crash half-way
//! leaves a marker (`RESTORING_KEY`) so that the node redoes the restore
//! from the same source at start instead of serving a mix of old and new.

use sled::{Batch, IVec};

use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::schema::RESTORING_KEY;

/// How many records one restore batch writes.
const RESTORE_BATCH: usize = 10_000;

/// The data trees, with the tag each has in an image. Tags are part of the
/// snapshot and backup format: never reuse or renumber one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum DataTree {
    Containers = 1,
    Leases = 2,
    Namespaces = 3,
    Cluster = 4,
}

impl DataTree {
    /// Every data tree, in image order.
    pub const ALL: [DataTree; 4] = [
        DataTree::Containers,
        DataTree::Leases,
        DataTree::Namespaces,
        DataTree::Cluster,
    ];

    /// The tree with this tag.
    pub fn from_tag(tag: u8) -> Result<DataTree> {
        DataTree::ALL
            .into_iter()
            .find(|t| *t as u8 == tag)
            .ok_or_else(|| Error::InvalidArgument(format!("unknown data tree tag {tag} in image")))
    }
}

/// One record of an image.
pub type ImageRecord = (DataTree, IVec, IVec);

impl Store {
    pub(crate) fn data_tree(&self, tree: DataTree) -> &sled::Tree {
        match tree {
            DataTree::Containers => &self.containers,
            DataTree::Leases => &self.leases,
            DataTree::Namespaces => &self.namespaces,
            DataTree::Cluster => &self.cluster,
        }
    }

    /// Every record of every data tree, in tree then key order. Consistent
    /// only while nothing is applied concurrently.
    pub fn dump(&self) -> impl Iterator<Item = Result<ImageRecord>> + '_ {
        DataTree::ALL.into_iter().flat_map(move |tree| {
            self.data_tree(tree).iter().map(move |item| {
                let (key, value) = item?;
                Ok((tree, key, value))
            })
        })
    }

    /// Replaces all data with `records`, then writes `meta` (e.g. the applied
    /// log id the image reflects), durably. `source` names where the records
    /// come from; it is kept in the restore marker until the restore is
    /// complete, so an interrupted restore can be redone from it.
    pub fn restore(
        &self,
        source: &[u8],
        records: impl IntoIterator<Item = Result<ImageRecord>>,
        meta: &[(&[u8], &[u8])],
    ) -> Result<()> {
        self.meta.insert(RESTORING_KEY, source)?;
        self.flush_durably()?;
        for tree in DataTree::ALL {
            self.data_tree(tree).clear()?;
        }
        let mut batches: Vec<(DataTree, Batch, usize)> = DataTree::ALL
            .into_iter()
            .map(|t| (t, Batch::default(), 0))
            .collect();
        for record in records {
            let (tree, key, value) = record?;
            let slot = &mut batches[tree as usize - 1];
            slot.1.insert(key, value);
            slot.2 += 1;
            if slot.2 == RESTORE_BATCH {
                self.data_tree(tree)
                    .apply_batch(std::mem::take(&mut slot.1))?;
                slot.2 = 0;
            }
        }
        for (tree, batch, _) in batches {
            self.data_tree(tree).apply_batch(batch)?;
        }
        let mut finish = Batch::default();
        for (key, value) in meta {
            finish.insert(*key, *value);
        }
        finish.remove(RESTORING_KEY);
        self.meta.apply_batch(finish)?;
        self.flush_durably()
    }

    /// The source of a restore that did not complete, if any.
    pub fn interrupted_restore(&self) -> Result<Option<IVec>> {
        self.meta(RESTORING_KEY)
    }
}
