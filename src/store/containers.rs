//! Containers inside a store transaction: create, update (field-mask merge)
//! and delete, with containerd's rules and messages (spec §6), plus the
//! filter adaptor for container fields (spec §7).
//!
//! Every function checks everything before it writes anything, so a refused
//! command leaves no trace even though the surrounding transaction commits
//! (it must: the Raft apply position advances either way).

use std::borrow::Cow;

use crate::error::Error;
use crate::store::command::{Applied, Outcome};
use crate::store::filter::Adaptor;
use crate::store::model::{Container, Timestamp};
use crate::store::schema;
use crate::store::tx::{Tx, TxResult};
use crate::store::validate;

/// The paths a full replace (empty update mask) sets, in containerd's order.
const FULL_REPLACE_PATHS: [&str; 5] = ["labels", "spec", "extensions", "image", "snapshotkey"];

/// Creates a container whose timestamps the proposer set.
pub(crate) fn create(tx: &Tx, namespace: &str, container: &Container) -> TxResult<Outcome> {
    if let Err(e) = validate_new(container) {
        return Ok(Err(e));
    }
    let key = schema::object_key(namespace, &container.id);
    if tx.containers.get(&key)?.is_some() {
        return Ok(Err(Error::already_exists(format!(
            "container {}",
            validate::go_quote(&container.id)
        ))));
    }
    let mut stored = container.clone();
    drop_empty_labels(&mut stored);
    tx.containers.insert(key, tx.encode(&stored)?)?;
    tx.adjust_namespace_count(namespace, 1)?;
    Ok(Ok(Applied::Container(Box::new(stored))))
}

/// Checks a container about to be created, with containerd's message.
pub fn validate_new(container: &Container) -> Result<(), Error> {
    validate::container(container).map_err(|e| e.context("create container failed validation"))
}

/// Updates a container along `mask` (spec §6.5).
pub(crate) fn update(
    tx: &Tx,
    namespace: &str,
    request: &Container,
    mask: &[String],
    now: Timestamp,
) -> TxResult<Outcome> {
    let id = &request.id;
    if id.is_empty() {
        // containerd's service says this without an error-class suffix.
        return Ok(Err(Error::InvalidArgument("Container.ID required".into())));
    }
    if !tx.namespace_known(namespace)? {
        return Ok(Err(Error::not_found(format!(
            "cannot update container {} in namespace {}",
            validate::go_quote(id),
            validate::go_quote(namespace)
        ))));
    }
    let key = schema::object_key(namespace, id);
    let Some(stored) = tx.containers.get(&key)? else {
        return Ok(Err(Error::not_found(format!(
            "container {}",
            validate::go_quote(id)
        ))));
    };
    let stored: Container = tx.decode(&stored)?;
    let mut updated = match merge(stored, request, mask) {
        Ok(updated) => updated,
        Err(e) => return Ok(Err(e)),
    };
    if let Err(e) = validate::container(&updated) {
        return Ok(Err(e.context("update failed validation")));
    }
    updated.updated_at = now;
    drop_empty_labels(&mut updated);
    tx.containers.insert(key, tx.encode(&updated)?)?;
    Ok(Ok(Applied::Container(Box::new(updated))))
}

/// Deletes a container.
pub(crate) fn delete(tx: &Tx, namespace: &str, id: &str) -> TxResult<Outcome> {
    if !tx.namespace_known(namespace)? {
        return Ok(Err(Error::not_found(format!(
            "cannot delete container {} in namespace {}",
            validate::go_quote(id),
            validate::go_quote(namespace)
        ))));
    }
    if tx
        .containers
        .remove(schema::object_key(namespace, id))?
        .is_none()
    {
        return Ok(Err(Error::not_found(format!("container {id}"))));
    }
    tx.adjust_namespace_count(namespace, -1)?;
    Ok(Ok(Applied::ContainerDeleted))
}

/// Applies an update mask to a stored record (spec §6.5). An empty mask is a
/// full replace of the mutable fields, after checking that the immutable
/// snapshotter and runtime name are unchanged. `id`, `created_at`, runtime
/// options and sandbox always stay as stored.
///
/// Unlike containerd 1.6, replacing `extensions` really replaces the map:
/// containerd never deletes extension keys from storage (its §6.5 quirk),
/// so old keys reappear on the next read there. berth stores what it answers.
pub fn merge(
    mut stored: Container,
    request: &Container,
    mask: &[String],
) -> Result<Container, Error> {
    let full_replace: Vec<String>;
    let paths = if mask.is_empty() {
        if stored.snapshotter != request.snapshotter {
            return Err(Error::invalid("container.Snapshotter field is immutable"));
        }
        if stored.runtime.name != request.runtime.name {
            return Err(Error::invalid("container.Runtime.Name field is immutable"));
        }
        full_replace = FULL_REPLACE_PATHS.iter().map(|p| p.to_string()).collect();
        &full_replace[..]
    } else {
        mask
    };
    for path in paths {
        if let Some(key) = path.strip_prefix("labels.") {
            let value = request.labels.get(key).cloned().unwrap_or_default();
            stored.labels.insert(key.to_string(), value);
            continue;
        }
        if let Some(key) = path.strip_prefix("extensions.") {
            let value = request.extensions.get(key).cloned().unwrap_or_default();
            stored.extensions.insert(key.to_string(), value);
            continue;
        }
        match path.as_str() {
            "labels" => stored.labels = request.labels.clone(),
            "spec" => stored.spec = request.spec.clone(),
            "extensions" => stored.extensions = request.extensions.clone(),
            "image" => stored.image = request.image.clone(),
            "snapshotkey" => stored.snapshot_key = request.snapshot_key.clone(),
            other => {
                return Err(Error::invalid(format!(
                    "cannot update {} field on {}",
                    validate::go_quote(other),
                    validate::go_quote(&request.id)
                )));
            }
        }
    }
    Ok(stored)
}

/// Labels with an empty value are deletions: they are never stored or
/// returned.
fn drop_empty_labels(container: &mut Container) {
    container.labels.retain(|_, v| !v.is_empty());
}

/// Container fields a filter can name (spec §7): `id`, `image`,
/// `runtime.name`, `labels.<key>` (components joined with `.`).
impl Adaptor for Container {
    fn field(&self, path: &[String]) -> Option<Cow<'_, str>> {
        match path {
            [] => None,
            [field] if field == "id" => present(&self.id),
            [field] if field == "image" => present(&self.image),
            [runtime, name] if runtime == "runtime" && name == "name" => {
                present(&self.runtime.name)
            }
            [labels, key @ ..] if labels == "labels" && !key.is_empty() => self
                .labels
                .get(&key.join("."))
                .map(|v| Cow::Borrowed(v.as_str())),
            _ => None,
        }
    }
}

/// A filter field is present when it is non-empty.
pub(crate) fn present(value: &str) -> Option<Cow<'_, str>> {
    (!value.is_empty()).then_some(Cow::Borrowed(value))
}
