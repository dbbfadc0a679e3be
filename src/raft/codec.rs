//! The binary encoding of everything Raft moves between nodes and to disk:
//! postcard over serde. Compact (a spec's bytes stay bytes, unlike JSON) and
//! self-contained; the payload types' field order is their format.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Encodes a value.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(value)
        .map_err(|e| Error::Internal(format!("encoding {}: {e}", std::any::type_name::<T>())))
}

/// Decodes a value; malformed input is an `InvalidArgument`, never a panic.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| {
        Error::InvalidArgument(format!("malformed {}: {e}", std::any::type_name::<T>()))
    })
}
