//! Leases inside a store transaction (spec §9): enough of containerd's lease
//! manager for clients that take a lease around `ctr c create`. Leases are
//! stored per namespace like containers; berth runs no garbage collector, so
//! a lease has no effect beyond being listed.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::store::command::{Applied, Outcome};
use crate::store::containers::present;
use crate::store::filter::Adaptor;
use crate::store::model::Lease;
use crate::store::schema;
use crate::store::tx::{Tx, TxResult};
use crate::store::validate;

/// Longest lease id berth accepts, in bytes. containerd sets no limit; ctr's
/// generated ids are about 20 bytes.
pub const MAX_LEASE_ID_BYTES: usize = 256;

/// Checks a lease before it is proposed: a non-empty id of bounded size
/// without NUL (the key separator), and labels within the label size rule.
pub fn validate(lease: &Lease) -> Result<()> {
    if lease.id.is_empty() {
        return Err(Error::invalid("lease id must be provided"));
    }
    if lease.id.len() > MAX_LEASE_ID_BYTES {
        return Err(Error::invalid(format!(
            "lease id greater than maximum length ({MAX_LEASE_ID_BYTES} bytes)"
        )));
    }
    if lease.id.contains('\0') {
        return Err(Error::invalid("lease id must not contain NUL"));
    }
    validate::labels(&lease.labels).map_err(|e| e.context("lease labels"))
}

/// Creates a lease whose `created_at` the proposer set.
pub(crate) fn create(tx: &Tx, namespace: &str, lease: &Lease) -> TxResult<Outcome> {
    if let Err(e) = validate(lease) {
        return Ok(Err(e));
    }
    let key = schema::object_key(namespace, &lease.id);
    if tx.leases.get(&key)?.is_some() {
        return Ok(Err(Error::already_exists(format!(
            "lease {}",
            validate::go_quote(&lease.id)
        ))));
    }
    let mut stored = lease.clone();
    stored.labels.retain(|_, v| !v.is_empty());
    tx.leases.insert(key, tx.encode(&stored)?)?;
    Ok(Ok(Applied::Lease(stored)))
}

/// Deletes a lease.
pub(crate) fn delete(tx: &Tx, namespace: &str, id: &str) -> TxResult<Outcome> {
    if tx
        .leases
        .remove(schema::object_key(namespace, id))?
        .is_none()
    {
        return Ok(Err(Error::not_found(format!(
            "lease {}",
            validate::go_quote(id)
        ))));
    }
    Ok(Ok(Applied::LeaseDeleted))
}

/// Lease fields a filter can name: `id` and `labels.<key>`, as containerd's.
impl Adaptor for Lease {
    fn field(&self, path: &[String]) -> Option<Cow<'_, str>> {
        match path {
            [field] if field == "id" => present(&self.id),
            [labels, key @ ..] if labels == "labels" && !key.is_empty() => self
                .labels
                .get(&key.join("."))
                .map(|v| Cow::Borrowed(v.as_str())),
            _ => None,
        }
    }
}
