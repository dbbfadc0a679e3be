//! The transaction every command runs in: the store's trees opened
//! together in one sled transaction, with the small helpers the command
//! implementations share.

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use crate::error::Error;
use crate::store::schema;

/// A transaction step's result: `Err` aborts the whole transaction (storage
/// failure or a record that cannot be decoded), while refusals of the
/// command itself are `Ok(Err(..))` outcomes.
pub(crate) type TxResult<T> = Result<T, ConflictableTransactionError<Error>>;

/// The trees of one store transaction.
pub(crate) struct Tx<'a> {
    pub containers: &'a TransactionalTree,
    pub leases: &'a TransactionalTree,
    pub namespaces: &'a TransactionalTree,
    pub cluster: &'a TransactionalTree,
    pub meta: &'a TransactionalTree,
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
