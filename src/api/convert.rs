//! Conversions between containerd's protobuf messages and the store's model:
//! every protobuf <-> domain mapping lives here.

use crate::events::{Event, EventKind};
use crate::proto::containerd::events as pb_events;
use crate::proto::containerd::services::containers::v1 as pb;
use crate::proto::containerd::services::leases::v1 as pb_leases;
use crate::store::model::{AnyValue, Container, Lease, Runtime, Timestamp};
use prost::Name;

impl From<prost_types::Any> for AnyValue {
    fn from(any: prost_types::Any) -> Self {
        AnyValue {
            type_url: any.type_url,
            value: any.value,
        }
    }
}

impl From<AnyValue> for prost_types::Any {
    fn from(any: AnyValue) -> Self {
        prost_types::Any {
            type_url: any.type_url,
            value: any.value,
        }
    }
}

impl From<Timestamp> for prost_types::Timestamp {
    fn from(t: Timestamp) -> Self {
        prost_types::Timestamp {
            seconds: t.seconds,
            nanos: t.nanos,
        }
    }
}

impl From<prost_types::Timestamp> for Timestamp {
    fn from(t: prost_types::Timestamp) -> Self {
        Timestamp {
            seconds: t.seconds,
            nanos: t.nanos,
        }
    }
}

impl From<pb::container::Runtime> for Runtime {
    fn from(r: pb::container::Runtime) -> Self {
        Runtime {
            name: r.name,
            options: r.options.map(Into::into),
        }
    }
}

impl From<Runtime> for pb::container::Runtime {
    fn from(r: Runtime) -> Self {
        pb::container::Runtime {
            name: r.name,
            options: r.options.map(Into::into),
        }
    }
}

/// A container from a request. Client timestamps are dropped: the server
/// sets them (ctr 1.6 sends year 1 in both).
impl From<pb::Container> for Container {
    fn from(c: pb::Container) -> Self {
        Container {
            id: c.id,
            labels: c.labels,
            image: c.image,
            runtime: c.runtime.map(Into::into).unwrap_or_default(),
            spec: c.spec.map(Into::into),
            snapshotter: c.snapshotter,
            snapshot_key: c.snapshot_key,
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
            extensions: c
                .extensions
                .into_iter()
                .map(|(k, v)| (k, v.into()))
                .collect(),
            sandbox: c.sandbox,
        }
    }
}

impl From<Container> for pb::Container {
    fn from(c: Container) -> Self {
        pb::Container {
            id: c.id,
            labels: c.labels,
            image: c.image,
            runtime: Some(c.runtime.into()),
            spec: c.spec.map(Into::into),
            snapshotter: c.snapshotter,
            snapshot_key: c.snapshot_key,
            created_at: Some(c.created_at.into()),
            updated_at: Some(c.updated_at.into()),
            extensions: c
                .extensions
                .into_iter()
                .map(|(k, v)| (k, v.into()))
                .collect(),
            sandbox: c.sandbox,
        }
    }
}

impl From<Lease> for pb_leases::Lease {
    fn from(l: Lease) -> Self {
        pb_leases::Lease {
            id: l.id,
            created_at: Some(l.created_at.into()),
            labels: l.labels,
        }
    }
}

impl From<pb_leases::Lease> for Lease {
    fn from(l: pb_leases::Lease) -> Self {
        Lease {
            id: l.id,
            created_at: l.created_at.map(Into::into).unwrap_or_default(),
            labels: l.labels,
        }
    }
}

/// Packs a message as an `Any` with containerd's *bare* type URL (the full
/// message name, no `type.googleapis.com/` prefix): ctr 1.6 resolves type
/// URLs by exact string.
fn bare_any<M: Name>(message: &M) -> prost_types::Any {
    prost_types::Any {
        type_url: M::full_name(),
        value: message.encode_to_vec(),
    }
}

/// The event's payload as containerd encodes it.
pub fn event_payload(event: &Event) -> prost_types::Any {
    match &event.kind {
        EventKind::ContainerCreate { id, image, runtime } => {
            bare_any(&pb_events::ContainerCreate {
                id: id.clone(),
                image: image.clone(),
                runtime: Some(pb_events::container_create::Runtime {
                    name: runtime.name.clone(),
                    options: runtime.options.clone().map(Into::into),
                }),
            })
        }
        EventKind::ContainerUpdate {
            id,
            image,
            labels,
            snapshot_key,
        } => bare_any(&pb_events::ContainerUpdate {
            id: id.clone(),
            image: image.clone(),
            labels: labels.clone(),
            snapshot_key: snapshot_key.clone(),
        }),
        EventKind::ContainerDelete { id } => {
            bare_any(&pb_events::ContainerDelete { id: id.clone() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_urls_are_bare_names() {
        let event = Event {
            timestamp: Timestamp::default(),
            namespace: "ns".into(),
            kind: EventKind::ContainerDelete { id: "c".into() },
        };
        let any = event_payload(&event);
        assert_eq!(any.type_url, "containerd.events.ContainerDelete");
        assert_eq!(any.value, vec![0x0a, 0x01, b'c']);
    }

    #[test]
    fn request_timestamps_are_ignored_and_runtime_defaults() {
        let request = pb::Container {
            id: "c".into(),
            created_at: Some(prost_types::Timestamp {
                seconds: -62135596800,
                nanos: 0,
            }),
            ..Default::default()
        };
        let model = Container::from(request);
        assert_eq!(model.created_at, Timestamp::default());
        assert_eq!(model.runtime, Runtime::default());
        let back = pb::Container::from(model);
        assert!(back.runtime.is_some(), "responses always carry runtime");
    }
}
