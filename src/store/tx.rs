//! The transaction every command runs in: the store's trees opened
//! together in one sled transaction, with the small helpers the command
//! implementations share.

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::IVec;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use crate::error::Error;
use crate::store::image::DataTree;
use crate::store::schema;

/// A transaction step's result: `Err` aborts the whole transaction (storage
/// failure or a record that cannot be decoded), while refusals of the
/// command itself are `Ok(Err(..))` outcomes.
pub(crate) type TxResult<T> = Result<T, ConflictableTransactionError<Error>>;

/// The trees of one store transaction.
pub(crate) struct Tx<'a> {
    pub containers: DataTx<'a>,
    pub leases: DataTx<'a>,
    pub namespaces: DataTx<'a>,
    pub cluster: DataTx<'a>,
    pub meta: &'a TransactionalTree,
}

/// A data tree (one that snapshots hold) inside a store transaction. While
/// a snapshot image is being captured, the first change to a key also
/// records the value it had at the capture point, in the same transaction,
/// so the image builder can see past every later change.
pub(crate) struct DataTx<'a> {
    tree: &'a TransactionalTree,
    tag: DataTree,
    /// The preimage tree, while a capture is under way.
    preimages: Option<&'a TransactionalTree>,
}

impl<'a> DataTx<'a> {
    pub fn new(
        tree: &'a TransactionalTree,
        tag: DataTree,
        preimages: Option<&'a TransactionalTree>,
    ) -> Self {
        DataTx {
            tree,
            tag,
            preimages,
        }
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> TxResult<Option<IVec>> {
        Ok(self.tree.get(key)?)
    }

    pub fn insert(&self, key: impl AsRef<[u8]>, value: impl Into<IVec>) -> TxResult<()> {
        self.preserve(key.as_ref())?;
        self.tree.insert(key.as_ref(), value)?;
        Ok(())
    }

    /// Removes `key`, returning the value it had.
    pub fn remove(&self, key: impl AsRef<[u8]>) -> TxResult<Option<IVec>> {
        self.preserve(key.as_ref())?;
        Ok(self.tree.remove(key.as_ref())?)
    }

    /// Records the key's value at the capture point, unless an earlier
    /// change already did.
    fn preserve(&self, key: &[u8]) -> TxResult<()> {
        let Some(preimages) = self.preimages else {
            return Ok(());
        };
        let preimage_key = schema::preimage_key(self.tag as u8, key);
        if preimages.get(&preimage_key)?.is_none() {
            let current = self.tree.get(key)?;
            preimages.insert(preimage_key, schema::encode_preimage(current.as_deref()))?;
        }
        Ok(())
    }
}

impl Tx<'_> {
    /// Encodes a record, aborting the transaction if that fails.
    pub fn encode<T: Serialize>(&self, value: &T) -> TxResult<Vec<u8>> {
        schema::encode_record(value).map_err(ConflictableTransactionError::Abort)
    }

    /// Decodes a record, aborting the transaction if it is unreadable.
    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> TxResult<T> {
        schema::decode_record(bytes).map_err(ConflictableTransactionError::Abort)
    }

    /// Whether containers were ever created in `namespace` (containerd's
    /// "namespace has a containers bucket"): a namespace whose containers
    /// were all deleted is still known.
    pub fn namespace_known(&self, namespace: &str) -> TxResult<bool> {
        Ok(self.namespaces.get(namespace.as_bytes())?.is_some())
    }

    /// Adds `delta` to a namespace's container count.
    pub fn adjust_namespace_count(&self, namespace: &str, delta: i64) -> TxResult<()> {
        let current = match self.namespaces.get(namespace.as_bytes())? {
            Some(bytes) => {
                schema::decode_count(&bytes).map_err(ConflictableTransactionError::Abort)?
            }
            None => 0,
        };
        let next = current.checked_add_signed(delta).ok_or_else(|| {
            ConflictableTransactionError::Abort(Error::Internal(format!(
                "storage: container count of namespace {namespace:?} would leave range ({current} {delta:+})"
            )))
        })?;
        self.namespaces
            .insert(namespace.as_bytes(), &schema::encode_count(next))?;
        Ok(())
    }
}
