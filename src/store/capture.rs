//! Point-in-time images of the store, read while applies go on.
//!
//! sled iterators are not snapshots: a scan sees some changes made while it
//! runs and misses others. Copying the store with applies stopped is
//! consistent but stalls every write for as long as the copy takes (about
//! half a second per 50k containers here). Instead, a [`Capture`] marks a
//! *capture point* between two applies; from then on, the first change an
//! apply makes to any data key also records, in the same transaction, the
//! value the key had at the capture point (its *preimage*,
//! `schema::PREIMAGES_TREE`). A key's value at the capture point is
//! therefore its preimage if it has one, else its current value. The reader
//! relies on two facts: a preimage never changes once written, and it is
//! written no later than the change it describes.
//!
//! Reading a tree takes two passes. The first walks the live tree and, for
//! each key, reads the value and *then* looks for a preimage: no preimage
//! means no change yet, so the value read is the capture-point value. The
//! second walks the preimages and emits the keys that were present at the
//! capture point but that the first pass did not emit from a preimage
//! (typically: deleted before the walk reached them). A key changed after
//! the first pass emitted it is emitted again with the same value; restore
//! overwrites, so the repeat is harmless.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use sled::IVec;

use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::image::{DataTree, ImageRecord};
use crate::store::schema;

/// An image capture under way; dropping it ends the capture.
pub struct Capture {
    store: Arc<Store>,
}

impl Store {
    /// Begins a capture of the current state. Call it only between applies
    /// (the Raft state machine calls it serially with apply), so that the
    /// capture point is a log position.
    pub fn begin_capture(self: &Arc<Self>) -> Result<Capture> {
        if self.capturing.load(Ordering::Acquire) {
            return Err(Error::FailedPrecondition(
                "a snapshot image is already being captured".into(),
            ));
        }
        // Left over from a capture that a crash (or an apply racing its end)
        // interrupted.
        self.preimages.clear()?;
        self.capturing.store(true, Ordering::Release);
        Ok(Capture {
            store: self.clone(),
        })
    }
}

impl Capture {
    /// Every record of every data tree as of the capture point, tree by
    /// tree (a key may repeat, with the same value; see the module doc).
    pub fn records(&self) -> impl Iterator<Item = Result<ImageRecord>> + '_ {
        DataTree::ALL
            .into_iter()
            .flat_map(move |tree| self.tree_records(tree))
    }

    fn tree_records(&self, tree: DataTree) -> impl Iterator<Item = Result<ImageRecord>> + '_ {
        let store = &self.store;
        let preimages = &store.preimages;
        // Keys the first pass emitted from their preimage.
        let emitted = std::rc::Rc::new(std::cell::RefCell::new(HashSet::<IVec>::new()));
        let first_emitted = emitted.clone();
        let live = store.data_tree(tree).iter().filter_map(move |item| {
            let step = || -> Result<Option<ImageRecord>> {
                let (key, value) = item?;
                let Some(preimage) = preimages.get(schema::preimage_key(tree as u8, &key))? else {
                    return Ok(Some((tree, key, value)));
                };
                first_emitted.borrow_mut().insert(key.clone());
                Ok(schema::decode_preimage(&preimage)?.map(|old| (tree, key, IVec::from(old))))
            };
            step().transpose()
        });
        let changed = preimages.scan_prefix([tree as u8]).filter_map(move |item| {
            let step = || -> Result<Option<ImageRecord>> {
                let (preimage_key, preimage) = item?;
                let key = IVec::from(&preimage_key[1..]);
                if emitted.borrow().contains(&key) {
                    return Ok(None);
                }
                Ok(schema::decode_preimage(&preimage)?.map(|old| (tree, key, IVec::from(old))))
            };
            step().transpose()
        });
        live.chain(changed)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.store.capturing.store(false, Ordering::Release);
        // An apply that read the flag just before may still add a preimage
        // after this; the next capture clears it.
        if let Err(e) = self.store.preimages.clear() {
            tracing::warn!("clearing snapshot preimages: {e}");
        }
    }
}
