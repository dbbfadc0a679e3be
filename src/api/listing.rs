//! What List-style RPCs share: namespace and filter checks, the read
//! barrier, and producing the results from a blocking store scan, either as
//! one size-bounded message or as a stream.

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status};

use crate::api::request;
use crate::api::status::MAX_MESSAGE_BYTES;
use crate::error::{Error, Result};
use crate::node::Node;
use crate::store::filter::{Adaptor, FilterSet};

/// Messages a stream may run ahead of its client.
pub const STREAM_BUFFER: usize = 64;

/// A checked list request, ready to scan.
pub struct Listing {
    pub namespace: String,
    filters: FilterSet,
}

impl Listing {
    /// Checks the namespace and the filters (in that order, as containerd),
    /// then waits for the read barrier the request asks for.
    pub async fn prepare<T>(
        node: &Node,
        request: &Request<T>,
        filters: &[String],
    ) -> Result<Listing> {
        let namespace = request::namespace(request)?;
        let filters = FilterSet::parse(filters)
            .map_err(|e| Error::InvalidArgument(e.containerd_message()))?;
        node.read_barrier(request::consistency(request)?).await?;
        Ok(Listing { namespace, filters })
    }

    /// Whether a scanned item belongs in the result (errors always do, so
    /// that they reach the client).
    pub fn keep<T: Adaptor>(&self, item: &Result<T>) -> bool {
        item.as_ref()
            .map_or(true, |value| self.filters.matches(value))
    }
}

/// Runs a store scan on the blocking pool and collects its results into
/// one response, refusing with RESOURCE_EXHAUSTED rather than building a
/// message over the 16 MiB limit.
pub async fn collect_bounded<M, I, F>(scan: F) -> Result<Vec<M>>
where
    F: FnOnce() -> I + Send + 'static,
    I: Iterator<Item = Result<M>>,
    M: prost::Message + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let mut total = 0usize;
        let mut out = Vec::new();
        for item in scan() {
            let message = item?;
            // Each repeated element costs its length plus a tag and a length prefix.
            total += message.encoded_len() + 6;
            if total > MAX_MESSAGE_BYTES {
                return Err(Error::ResourceExhausted(format!(
                    "the result exceeds the {MAX_MESSAGE_BYTES}-byte message limit; use the streaming RPC (ListStream) or filters"
                )));
            }
            out.push(message);
        }
        Ok(out)
    })
    .await
    .map_err(|e| Error::Internal(format!("list task: {e}")))?
}

/// Runs a store scan on the blocking pool and streams its results; an
/// error ends the stream with that status.
pub fn stream<M, I, F>(scan: F) -> ReceiverStream<Result<M, Status>>
where
    F: FnOnce() -> I + Send + 'static,
    I: Iterator<Item = Result<M>>,
    M: Send + 'static,
{
    let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
    tokio::task::spawn_blocking(move || {
        for item in scan() {
            let failed = item.is_err();
            if sender.blocking_send(item.map_err(Status::from)).is_err() || failed {
                break; // the client went away, or the error ended the stream
            }
        }
    });
    ReceiverStream::new(receiver)
}
