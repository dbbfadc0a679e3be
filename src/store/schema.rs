//! Everything berth writes to sled, declared in one place: tree names, key
//! encodings and the versioned record encoding.
//!
//! | tree         | key                      | value                                   |
//! |--------------|--------------------------|-----------------------------------------|
//! | `containers` | namespace `0x00` id      | record(`Container`)                     |
//! | `leases`     | namespace `0x00` id      | record(`Lease`)                         |
//! | `namespaces` | namespace                | container count, u64 big-endian         |
//! | `cluster`    | `id`                     | the cluster's id (UTF-8)                |
//! | `sm_meta`    | `format`, `applied`, …   | store format version; Raft apply state  |
//! | `snapshot_preimages` | tag byte, data key | `0` (absent) or `1` value, at the capture point |
//!
//! Identifiers cannot contain `0x00` (the identifier grammar allows only
//! `[A-Za-z0-9._-]`), so `namespace 0x00 id` keys sort by namespace, then by
//! id in byte order: a namespace's containers are one contiguous prefix
//! range, already in the order List must return.
//!
//! A record is one format byte followed by the postcard encoding of the
//! value. A reader refuses formats it does not know instead of misreading
//! them.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Containers, keyed by `namespace 0x00 id`.
pub const CONTAINERS_TREE: &str = "containers";
/// Leases, keyed by `namespace 0x00 id`.
pub const LEASES_TREE: &str = "leases";
/// Per-namespace container counts: containerd distinguishes "namespace has
/// no containers" from "no such container" in Update/Delete errors, and a
/// transaction cannot scan a prefix, so the count is kept alongside.
pub const NAMESPACES_TREE: &str = "namespaces";
/// Cluster-wide facts that are part of the replicated state (and so of
/// snapshots and backups): the cluster id.
pub const CLUSTER_TREE: &str = "cluster";
/// `cluster` key of the cluster id.
pub const CLUSTER_ID_KEY: &[u8] = b"id";
/// State-machine metadata: the store format and, under Raft, the last
/// applied log id and membership, written in the same transaction as the
/// data they describe.
pub const META_TREE: &str = "sm_meta";

/// While a snapshot image is captured: the value each data key had at the
/// capture point, recorded by the first change to that key after it (see
/// `store::capture`). Empty otherwise; not part of snapshots.
pub const PREIMAGES_TREE: &str = "snapshot_preimages";

/// `sm_meta` key of the store format version.
pub const FORMAT_KEY: &[u8] = b"format";

/// `sm_meta` key present while a restore (snapshot install) is under way;
/// its value names the restore's source.
pub const RESTORING_KEY: &[u8] = b"restoring";

/// The current record and layout format.
pub const FORMAT_VERSION: u8 = 1;

/// Key of an object (container or lease) in its namespace.
pub fn object_key(namespace: &str, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(namespace.len() + 1 + id.len());
    key.extend_from_slice(namespace.as_bytes());
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    key
}

/// Prefix of every object key of a namespace.
pub fn namespace_prefix(namespace: &str) -> Vec<u8> {
    object_key(namespace, "")
}

/// Splits an object key into (namespace, id).
pub fn split_object_key(key: &[u8]) -> Result<(&str, &str)> {
    let zero = key
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| Error::Internal("storage: object key without separator".into()))?;
    Ok((utf8(&key[..zero])?, utf8(&key[zero + 1..])?))
}

fn utf8(bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes)
        .map_err(|_| Error::Internal("storage: object key is not UTF-8".into()))
}

/// Encodes a record: format byte, then postcard.
pub fn encode_record<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut out = vec![FORMAT_VERSION];
    postcard::to_io(value, &mut out)
        .map_err(|e| Error::Internal(format!("storage: encoding a record: {e}")))?;
    Ok(out)
}

/// Decodes a record written by `encode_record`.
pub fn decode_record<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    match bytes.split_first() {
        Some((&FORMAT_VERSION, body)) => postcard::from_bytes(body)
            .map_err(|e| Error::Internal(format!("storage: decoding a record: {e}"))),
        Some((format, _)) => Err(Error::Internal(format!(
            "storage: record format {format} is not supported (this berth reads format {FORMAT_VERSION})"
        ))),
        None => Err(Error::Internal("storage: empty record".into())),
    }
}

/// Key of a preimage: the data tree's image tag, then the key in that tree.
pub fn preimage_key(tree_tag: u8, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + key.len());
    out.push(tree_tag);
    out.extend_from_slice(key);
    out
}

/// Encodes a preimage: whether the key was present, and its value then.
pub fn encode_preimage(value: Option<&[u8]>) -> Vec<u8> {
    match value {
        None => vec![0],
        Some(value) => {
            let mut out = Vec::with_capacity(1 + value.len());
            out.push(1);
            out.extend_from_slice(value);
            out
        }
    }
}

/// Decodes a preimage written by `encode_preimage`: `None` if the key was
/// absent at the capture point.
pub fn decode_preimage(bytes: &[u8]) -> Result<Option<&[u8]>> {
    match bytes.split_first() {
        Some((0, [])) => Ok(None),
        Some((1, value)) => Ok(Some(value)),
        _ => Err(Error::Internal(
            "storage: malformed snapshot preimage".into(),
        )),
    }
}

/// Encodes a namespace's container count.
pub fn encode_count(count: u64) -> [u8; 8] {
    count.to_be_bytes()
}

/// Decodes a namespace's container count.
pub fn decode_count(bytes: &[u8]) -> Result<u64> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::Internal("storage: namespace count is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(array))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::Container;

    #[test]
    fn keys_sort_by_namespace_then_id() {
        let mut keys = [
            object_key("b", "a"),
            object_key("a", "b-2"),
            object_key("a", "b"),
            object_key("ab", "a"),
            object_key("a", "B"),
        ];
        keys.sort();
        let split: Vec<_> = keys.iter().map(|k| split_object_key(k).unwrap()).collect();
        assert_eq!(
            split,
            [
                ("a", "B"),
                ("a", "b"),
                ("a", "b-2"),
                ("ab", "a"),
                ("b", "a")
            ]
        );
        assert!(object_key("a", "x").starts_with(&namespace_prefix("a")));
        assert!(!object_key("ab", "x").starts_with(&namespace_prefix("a")));
    }

    #[test]
    fn records_round_trip_and_reject_unknown_formats() {
        let c = Container {
            id: "x".into(),
            image: "img".into(),
            ..Default::default()
        };
        let bytes = encode_record(&c).unwrap();
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode_record::<Container>(&bytes).unwrap(), c);
        let mut future = bytes.clone();
        future[0] = 9;
        assert!(
            decode_record::<Container>(&future)
                .unwrap_err()
                .to_string()
                .contains("format 9")
        );
        assert!(decode_record::<Container>(&[]).is_err());
        assert!(decode_record::<Container>(&[FORMAT_VERSION, 0xff]).is_err());
    }
}
