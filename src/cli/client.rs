//! The client side of every CLI command: finding a node that answers among
//! `--endpoints`, and stamping requests with namespace, consistency and
//! deadline.

use std::time::Duration;

use anyhow::{Context, anyhow};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::api::request::{CONSISTENCY_HEADER, NAMESPACE_HEADER};
use crate::api::status::MAX_MESSAGE_BYTES;
use crate::cli::{ConsistencyArg, GlobalArgs};
use crate::proto::berth::cluster::v1::cluster_client::ClusterClient;
use crate::proto::containerd::services::containers::v1::containers_client::ContainersClient;
use crate::transport;

/// How long to wait for one endpoint to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A connection to one node of the cluster.
pub struct Client {
    channel: Channel,
    namespace: String,
    consistency: ConsistencyArg,
    timeout: Duration,
}

impl Client {
    /// Connects to the first endpoint that answers.
    pub async fn connect(global: &GlobalArgs) -> anyhow::Result<Client> {
        let mut failures = Vec::new();
        for address in &global.endpoints {
            match transport::connect_channel(endpoint(address)?, address).await {
                Ok(channel) => {
                    return Ok(Client {
                        channel,
                        namespace: global.namespace.clone(),
                        consistency: global.consistency,
                        timeout: Duration::from_secs_f64(global.timeout.max(0.001)),
                    });
                }
                Err(e) => failures.push(format!("{address}: {}", error_chain(&e))),
            }
        }
        Err(anyhow!("no endpoint answered ({})", failures.join("; ")))
    }

    /// A request carrying the namespace, consistency and deadline.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.timeout);
        let metadata = request.metadata_mut();
        if let Ok(namespace) = self.namespace.parse() {
            metadata.insert(NAMESPACE_HEADER, namespace);
        }
        if self.consistency == ConsistencyArg::Serializable {
            metadata.insert(
                CONSISTENCY_HEADER,
                MetadataValue::from_static("serializable"),
            );
        }
        request
    }

    /// The administration service.
    pub fn cluster(&self) -> ClusterClient<Channel> {
        ClusterClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// The containers service.
    pub fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// A tonic endpoint for `host:port`, `http://host:port` or `unix:/path`.
pub fn endpoint(address: &str) -> anyhow::Result<Endpoint> {
    let uri = if let Some(path) = address.strip_prefix("unix:") {
        format!("unix://{}", path.strip_prefix("//").unwrap_or(path))
    } else if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    Ok(Endpoint::from_shared(uri.clone())
        .with_context(|| format!("bad endpoint {address:?} ({uri})"))?
        .connect_timeout(CONNECT_TIMEOUT))
}

/// A failed call as one readable line: the server's message and the code.
pub fn status_error(status: Status) -> anyhow::Error {
    anyhow!("{} ({:?})", status.message(), status.code())
}

/// An error with its causes, on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
