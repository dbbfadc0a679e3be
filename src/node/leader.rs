//! What a leader answers to a follower's forwarded request.

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The reply to a write or read-index request a follower forwarded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaderReply<T> {
    /// Done on the leader; here is the result.
    Done(T),
    /// The receiver is not the leader: nothing was done, ask again.
    NotLeader,
    /// The leader tried and failed.
    Failed(Error),
}
