//! berth: a replicated metadata store for containers.
//!
//! It serves containerd's containers API (so containerd's own `ctr` works
//! against it) and keeps the data in sled. Data flows top to bottom:
//!
//! - [`api`]: the gRPC edge (containerd's services), thin handlers;
//! - [`node`]: orders writes (as [`store::command::Command`]s) through
//!   [`raft`] and gates reads with read barriers;
//! - [`raft`]: openraft glue; its log lives in [`wal`];
//! - [`store`]: the state machine on sled, knowing nothing of gRPC or Raft.
//!
//! See ARCHITECTURE.md for a write and a read walked through the code.

pub mod admin;
pub mod api;
pub mod cli;
pub mod error;
pub mod events;
pub mod fsutil;
pub mod health;
pub mod node;
pub mod proto;
pub mod raft;
pub mod server;
pub mod store;
pub mod transport;
pub mod wal;
