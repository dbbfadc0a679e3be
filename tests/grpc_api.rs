//! containerd's API served by a real `berth serve` process, over loopback
//! TCP and the unix socket: every RPC, its error codes and messages, events,
//! leases, and bad input.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use berth::proto::containerd::events::{ContainerCreate, ContainerDelete, ContainerUpdate};
use berth::proto::containerd::services::containers::v1 as pb;
use berth::proto::containerd::services::containers::v1::containers_client::ContainersClient;
use berth::proto::containerd::services::events::v1::SubscribeRequest;
use berth::proto::containerd::services::events::v1::events_client::EventsClient;
use berth::proto::containerd::services::introspection::v1::introspection_client::IntrospectionClient;
use berth::proto::containerd::services::leases::v1 as leases;
use berth::proto::containerd::services::leases::v1::leases_client::LeasesClient;
use berth::proto::containerd::services::snapshots::v1::RemoveSnapshotRequest;
use berth::proto::containerd::services::snapshots::v1::snapshots_client::SnapshotsClient;
use berth::proto::containerd::services::version::v1::version_client::VersionClient;
use common::{TestNode, bounded, in_ns};
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;

fn spec() -> prost_types::Any {
    prost_types::Any {
        type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
        value: br#"{"ociVersion":"1.0.2"}"#.to_vec(),
    }
}

fn container(id: &str) -> pb::Container {
    pb::Container {
        id: id.into(),
        runtime: Some(pb::container::Runtime {
            name: "io.containerd.runc.v2".into(),
            options: Some(prost_types::Any {
                type_url: "containerd.runc.v1.Options".into(),
                value: vec![],
            }),
        }),
        spec: Some(spec()),
        // What ctr 1.6 sends: year 1. The server must ignore it.
        created_at: Some(prost_types::Timestamp {
            seconds: -62135596800,
            nanos: 0,
        }),
        updated_at: Some(prost_types::Timestamp {
            seconds: -62135596800,
            nanos: 0,
        }),
        ..Default::default()
    }
}

async fn create(
    client: &mut ContainersClient<Channel>,
    ns: &str,
    c: pb::Container,
) -> Result<pb::Container, tonic::Status> {
    let response = client
        .create(in_ns(ns, pb::CreateContainerRequest { container: Some(c) }))
        .await?;
    Ok(response
        .into_inner()
        .container
        .expect("responses carry the container"))
}

async fn list_ids(
    client: &mut ContainersClient<Channel>,
    ns: &str,
    filters: &[&str],
) -> Result<Vec<String>, tonic::Status> {
    let filters = filters.iter().map(|f| f.to_string()).collect();
    let listed = client
        .list(in_ns(ns, pb::ListContainersRequest { filters }))
        .await?
        .into_inner();
    Ok(listed.containers.into_iter().map(|c| c.id).collect())
}

async fn stream_ids(
    client: &mut ContainersClient<Channel>,
    ns: &str,
    filters: &[&str],
) -> Result<Vec<String>, tonic::Status> {
    let filters = filters.iter().map(|f| f.to_string()).collect();
    let mut stream = client
        .list_stream(in_ns(ns, pb::ListContainersRequest { filters }))
        .await?
        .into_inner();
    let mut ids = Vec::new();
    while let Some(message) = stream.message().await? {
        ids.push(
            message
                .container
                .expect("every ListContainerMessage carries its container")
                .id,
        );
    }
    Ok(ids)
}

fn assert_status(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code, message: &str) {
    let status = result.expect_err("the call should fail");
    assert_eq!((status.code(), status.message()), (code, message));
}

#[tokio::test]
async fn crud_over_tcp_and_unix_socket() {
    bounded(async {
        let node = TestNode::start_single().await;
        let mut tcp = node.containers().await;
        let mut unix = node.unix_containers().await;

        let mut c = container("c1");
        c.labels = BTreeMap::from([("a".into(), "1".into()), ("empty".into(), "".into())]);
        c.image = "docker.io/library/busybox:latest".into();
        c.extensions.insert(
            "ext".into(),
            prost_types::Any {
                type_url: "t".into(),
                value: b"v".to_vec(),
            },
        );
        let created = create(&mut tcp, "default", c.clone()).await.unwrap();
        assert_eq!(created.labels, BTreeMap::from([("a".into(), "1".into())]));
        assert_eq!(created.created_at, created.updated_at);
        let created_at = created.created_at.unwrap();
        assert!(
            created_at.seconds > 1_700_000_000,
            "server time, not the client's year 1"
        );
        assert_eq!(created.spec, Some(spec()));
        assert_eq!(created.runtime, c.runtime);

        // Read back over the unix socket.
        let got = unix
            .get(in_ns(
                "default",
                pb::GetContainerRequest { id: "c1".into() },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.container.unwrap(), created);

        let mut edit = pb::Container {
            id: "c1".into(),
            image: "alpine".into(),
            ..Default::default()
        };
        edit.labels.insert("b".into(), "2".into());
        let request = pb::UpdateContainerRequest {
            container: Some(edit),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["image".into(), "labels.b".into()],
            }),
        };
        let updated = unix
            .update(in_ns("default", request))
            .await
            .unwrap()
            .into_inner()
            .container
            .unwrap();
        assert_eq!(updated.image, "alpine");
        assert_eq!(
            updated.labels,
            BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())])
        );
        assert_eq!(updated.created_at, created.created_at);
        let stamp = |t: Option<prost_types::Timestamp>| t.map(|t| (t.seconds, t.nanos));
        assert!(stamp(updated.updated_at) > stamp(created.updated_at));

        for id in ["c3", "c0", "c2"] {
            create(&mut unix, "default", container(id)).await.unwrap();
        }
        assert_eq!(
            list_ids(&mut tcp, "default", &[]).await.unwrap(),
            ["c0", "c1", "c2", "c3"]
        );
        assert_eq!(
            stream_ids(&mut unix, "default", &[]).await.unwrap(),
            ["c0", "c1", "c2", "c3"]
        );
        assert!(list_ids(&mut tcp, "other", &[]).await.unwrap().is_empty());

        tcp.delete(in_ns(
            "default",
            pb::DeleteContainerRequest { id: "c1".into() },
        ))
        .await
        .unwrap();
        assert_eq!(
            stream_ids(&mut tcp, "default", &[]).await.unwrap(),
            ["c0", "c2", "c3"]
        );
        assert_status(
            tcp.get(in_ns(
                "default",
                pb::GetContainerRequest { id: "c1".into() },
            ))
            .await,
            Code::NotFound,
            "container \"c1\" in namespace \"default\": not found",
        );
    })
    .await
}

#[tokio::test]
async fn errors_carry_containerd_codes_and_messages() {
    bounded(async {
        let node = TestNode::start_single().await;
        let mut client = node.containers().await;
        let no_namespace = pb::GetContainerRequest { id: "x".into() };
        assert_status(
            client.get(tonic::Request::new(no_namespace.clone())).await,
            Code::FailedPrecondition,
            "namespace is required: failed precondition",
        );
        assert_status(
            client.get(in_ns("", no_namespace.clone())).await,
            Code::FailedPrecondition,
            "namespace is required: failed precondition",
        );
        assert_status(
            client.get(in_ns("bad..ns", no_namespace)).await,
            Code::InvalidArgument,
            "namespace validation: identifier \"bad..ns\" must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$: invalid argument",
        );
        assert_status(
            client.get(in_ns("default", pb::GetContainerRequest { id: String::new() })).await,
            Code::NotFound,
            "container \"\" in namespace \"default\": not found",
        );
        create(&mut client, "default", container("dup")).await.unwrap();
        assert_status(create(&mut client, "default", container("dup")).await, Code::AlreadyExists, "container \"dup\": already exists");

        let invalid = |edit: fn(&mut pb::Container)| {
            let mut c = container("v");
            edit(&mut c);
            c
        };
        let cases: Vec<(pb::Container, &str)> = vec![
            (invalid(|c| c.id = "a..b".into()), "create container failed validation: container.ID: identifier \"a..b\" must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$: invalid argument"),
            (invalid(|c| c.id = "a".repeat(77)), "create container failed validation: container.ID: identifier \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" greater than maximum length (76 characters): invalid argument"),
            (invalid(|c| c.runtime = None), "create container failed validation: container.Runtime.Name must be set: invalid argument"),
            (invalid(|c| c.spec = None), "create container failed validation: container.Spec must be set: invalid argument"),
            (invalid(|c| c.snapshot_key = "k".into()), "create container failed validation: container.Snapshotter must be set if container.SnapshotKey is set: invalid argument"),
            (invalid(|c| { c.labels.insert("k".repeat(10), "v".repeat(4087)); }), "create container failed validation: containers.Labels: label key and value greater than maximum size (4096 bytes), key: kkkkkkkkkk: invalid argument"),
            (invalid(|c| { c.extensions.insert(String::new(), prost_types::Any::default()); }), "create container failed validation: container.Extension keys must not be zero-length: invalid argument"),
        ];
        for (c, message) in cases {
            assert_status(create(&mut client, "default", c).await, Code::InvalidArgument, message);
        }
        // The label boundary: 4096 bytes together is fine.
        let mut edge = container("edge");
        edge.labels.insert("k".repeat(10), "v".repeat(4086));
        create(&mut client, "default", edge).await.unwrap();
        // An empty spec Any is "present".
        let mut empty_spec = container("empty-spec");
        empty_spec.spec = Some(prost_types::Any::default());
        create(&mut client, "default", empty_spec).await.unwrap();

        // Update: an empty id is refused before the namespace is looked at.
        let update = |ns: Option<&str>, c: pb::Container, paths: &[&str]| {
            let message = pb::UpdateContainerRequest {
                container: Some(c),
                update_mask: Some(prost_types::FieldMask { paths: paths.iter().map(|p| p.to_string()).collect() }),
            };
            match ns {
                Some(ns) => in_ns(ns, message),
                None => tonic::Request::new(message),
            }
        };
        assert_status(client.update(update(None, pb::Container::default(), &[])).await, Code::InvalidArgument, "Container.ID required");
        assert_status(
            client.update(update(Some("empty"), container("x"), &["image"])).await,
            Code::NotFound,
            "cannot update container \"x\" in namespace \"empty\": not found",
        );
        assert_status(client.update(update(Some("default"), container("x"), &["image"])).await, Code::NotFound, "container \"x\": not found");
        assert_status(
            client.update(update(Some("default"), container("dup"), &["snapshot_key"])).await,
            Code::InvalidArgument,
            "cannot update \"snapshot_key\" field on \"dup\": invalid argument",
        );
        let mut other_runtime = container("dup");
        other_runtime.runtime.as_mut().unwrap().name = "other".into();
        assert_status(
            client.update(update(Some("default"), other_runtime, &[])).await,
            Code::InvalidArgument,
            "container.Runtime.Name field is immutable: invalid argument",
        );
        assert_status(
            client.update(update(Some("default"), pb::Container { id: "dup".into(), ..Default::default() }, &["spec"])).await,
            Code::InvalidArgument,
            "update failed validation: container.Spec must be set: invalid argument",
        );

        assert_status(
            client.delete(in_ns("empty", pb::DeleteContainerRequest { id: "x".into() })).await,
            Code::NotFound,
            "cannot delete container \"x\" in namespace \"empty\": not found",
        );
        assert_status(
            client.delete(in_ns("default", pb::DeleteContainerRequest { id: "x".into() })).await,
            Code::NotFound,
            "container x: not found",
        );
        // Nothing refused was stored.
        assert_eq!(list_ids(&mut client, "default", &[]).await.unwrap(), ["dup", "edge", "empty-spec"]);
    })
    .await
}

#[tokio::test]
async fn list_filters_follow_containerd() {
    bounded(async {
        let node = TestNode::start_single().await;
        let mut client = node.containers().await;
        let mut f1 = container("f1");
        f1.image = "busybox".into();
        f1.labels = BTreeMap::from([
            ("env".into(), "prod".into()),
            ("io.x/y".into(), "a b".into()),
            ("app.name".into(), "web".into()),
        ]);
        let mut f2 = container("f2");
        f2.runtime.as_mut().unwrap().name = "runsc".into();
        f2.labels = BTreeMap::from([("env".into(), "dev".into())]);
        let mut f3 = container("f3");
        f3.image = "alpine:3".into();
        for c in [f1, f2, f3] {
            create(&mut client, "filters", c).await.unwrap();
        }
        let cases: &[(&[&str], &[&str])] = &[
            (&["labels.env"], &["f1", "f2"]),
            (&["labels.env!=prod"], &["f2", "f3"]),
            (&["image"], &["f1", "f3"]),
            (&["labels.app.name==web"], &["f1"]),
            (&[r#"labels."io.x/y"=="a b""#], &["f1"]),
            (&["runtime.name~=runsc"], &["f2"]),
            (&["id~=^f[12]$"], &["f1", "f2"]),
            (&["labels.env==prod,image~=busybox"], &["f1"]),
            (&["id==f1", "id==f2"], &["f1", "f2"]),
            (&["snapshotter==x"], &[]),
            (&["id==f1", ""], &["f1", "f2", "f3"]),
            (&["ID==f1"], &[]),
        ];
        for (filters, expected) in cases {
            assert_eq!(list_ids(&mut client, "filters", filters).await.unwrap(), *expected, "List {filters:?}");
            assert_eq!(stream_ids(&mut client, "filters", filters).await.unwrap(), *expected, "ListStream {filters:?}");
        }
        assert_status(
            list_ids(&mut client, "filters", &["id=="]).await,
            Code::InvalidArgument,
            "filters: parse error: [id==]: expected value or quoted: invalid argument: invalid argument",
        );
        assert_status(
            stream_ids(&mut client, "filters", &["id==f1,"]).await,
            Code::InvalidArgument,
            "filters: parse error: [id==f1,]: expected field or quoted: invalid argument: invalid argument",
        );
    })
    .await
}

#[tokio::test]
async fn leases_create_list_delete() {
    bounded(async {
        let node = TestNode::start_single().await;
        let mut client = LeasesClient::new(node.channel().await.unwrap());
        let request = leases::CreateRequest {
            id: "123-abc_DEF".into(),
            labels: BTreeMap::from([(
                "containerd.io/gc.expire".into(),
                "2030-01-01T00:00:00Z".into(),
            )]),
        };
        let lease = client
            .create(in_ns("default", request.clone()))
            .await
            .unwrap()
            .into_inner()
            .lease
            .unwrap();
        assert_eq!(lease.id, "123-abc_DEF");
        assert!(lease.created_at.unwrap().seconds > 1_700_000_000);
        assert_eq!(lease.labels, request.labels);
        assert_status(
            client.create(in_ns("default", request.clone())).await,
            Code::AlreadyExists,
            "lease \"123-abc_DEF\": already exists",
        );
        assert_status(
            client
                .create(in_ns("default", leases::CreateRequest::default()))
                .await,
            Code::InvalidArgument,
            "lease id must be provided: invalid argument",
        );
        assert_status(
            client.create(tonic::Request::new(request.clone())).await,
            Code::FailedPrecondition,
            "namespace is required: failed precondition",
        );
        client
            .create(in_ns(
                "default",
                leases::CreateRequest {
                    id: "other".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
        let list = |filters: Vec<String>| in_ns("default", leases::ListRequest { filters });
        let ids = |r: leases::ListResponse| r.leases.into_iter().map(|l| l.id).collect::<Vec<_>>();
        assert_eq!(
            ids(client.list(list(vec![])).await.unwrap().into_inner()),
            ["123-abc_DEF", "other"]
        );
        assert_eq!(
            ids(client
                .list(list(vec!["id==other".into()]))
                .await
                .unwrap()
                .into_inner()),
            ["other"]
        );
        assert_eq!(
            ids(client
                .list(list(vec![r#"labels."containerd.io/gc.expire""#.into()]))
                .await
                .unwrap()
                .into_inner()),
            ["123-abc_DEF"]
        );
        client
            .delete(in_ns(
                "default",
                leases::DeleteRequest {
                    id: "other".into(),
                    sync: false,
                },
            ))
            .await
            .unwrap();
        assert_status(
            client
                .delete(in_ns(
                    "default",
                    leases::DeleteRequest {
                        id: "other".into(),
                        sync: true,
                    },
                ))
                .await,
            Code::NotFound,
            "lease \"other\": not found",
        );
    })
    .await
}

#[tokio::test]
async fn events_stream_every_change_with_filters() {
    bounded(async {
        let node = TestNode::start_single().await;
        let mut events = EventsClient::new(node.channel().await.unwrap());
        let mut all = events
            .subscribe(SubscribeRequest { filters: vec![] })
            .await
            .unwrap()
            .into_inner();
        let mut deletes = events
            .subscribe(SubscribeRequest {
                filters: vec![
                    r#"topic=="/containers/delete""#.into(),
                    "event.id==never".into(),
                ],
            })
            .await
            .unwrap()
            .into_inner();
        let mut in_evt = events
            .subscribe(SubscribeRequest {
                filters: vec![r#"namespace==evt,topic~="^/containers/""#.into()],
            })
            .await
            .unwrap()
            .into_inner();
        // The subscriptions are live once their streams opened; give the server a moment to register them.
        tokio::time::sleep(Duration::from_millis(100)).await;

        let mut client = node.containers().await;
        let mut c = container("e1");
        c.image = "img".into();
        create(&mut client, "evt", c).await.unwrap();
        let mut edit = pb::Container {
            id: "e1".into(),
            ..Default::default()
        };
        edit.labels.insert("k".into(), "v".into());
        let mask = prost_types::FieldMask {
            paths: vec!["labels.k".into()],
        };
        client
            .update(in_ns(
                "evt",
                pb::UpdateContainerRequest {
                    container: Some(edit),
                    update_mask: Some(mask),
                },
            ))
            .await
            .unwrap();
        create(&mut client, "other", container("o1")).await.unwrap();
        client
            .delete(in_ns("evt", pb::DeleteContainerRequest { id: "e1".into() }))
            .await
            .unwrap();
        // A refused write publishes nothing.
        let _ = create(&mut client, "evt", container("o1..")).await;

        let mut seen = Vec::new();
        for _ in 0..4 {
            let envelope = all.message().await.unwrap().unwrap();
            let event = envelope.event.clone().unwrap();
            assert!(envelope.timestamp.unwrap().seconds > 1_700_000_000);
            seen.push((
                envelope.namespace.clone(),
                envelope.topic.clone(),
                event.type_url.clone(),
            ));
            match event.type_url.as_str() {
                "containerd.events.ContainerCreate" if envelope.namespace == "evt" => {
                    let payload = ContainerCreate::decode(&event.value[..]).unwrap();
                    assert_eq!((payload.id.as_str(), payload.image.as_str()), ("e1", "img"));
                    assert_eq!(payload.runtime.unwrap().name, "io.containerd.runc.v2");
                }
                "containerd.events.ContainerUpdate" => {
                    let payload = ContainerUpdate::decode(&event.value[..]).unwrap();
                    assert_eq!(payload.labels, BTreeMap::from([("k".into(), "v".into())]));
                }
                "containerd.events.ContainerDelete" => {
                    assert_eq!(ContainerDelete::decode(&event.value[..]).unwrap().id, "e1");
                }
                _ => {}
            }
        }
        let topics: Vec<_> = seen
            .iter()
            .map(|(ns, topic, _)| format!("{ns} {topic}"))
            .collect();
        assert_eq!(
            topics,
            [
                "evt /containers/create",
                "evt /containers/update",
                "other /containers/create",
                "evt /containers/delete"
            ]
        );

        let delete = deletes.message().await.unwrap().unwrap();
        assert_eq!(delete.topic, "/containers/delete");
        let mut evt_seen = Vec::new();
        for _ in 0..3 {
            evt_seen.push(in_evt.message().await.unwrap().unwrap().topic);
        }
        assert_eq!(
            evt_seen,
            [
                "/containers/create",
                "/containers/update",
                "/containers/delete"
            ]
        );

        let status = events
            .subscribe(SubscribeRequest {
                filters: vec!["topic==".into()],
            })
            .await;
        let status = match status {
            Ok(response) => response
                .into_inner()
                .message()
                .await
                .expect_err("a bad filter ends the stream"),
            Err(status) => status,
        };
        assert_eq!(status.code(), Code::Unknown);
        assert!(
            status.message().starts_with(
                "subscription error: failed parsing subscription filters: filters: parse error:"
            ),
            "{}",
            status.message()
        );
    })
    .await
}

#[tokio::test]
async fn version_introspection_and_snapshots() {
    bounded(async {
        let node = TestNode::start_single().await;
        let channel = node.unix_channel().await;
        let version = VersionClient::new(channel.clone())
            .version(())
            .await
            .unwrap()
            .into_inner();
        assert!(version.version.starts_with("berth "), "{}", version.version);
        let server = IntrospectionClient::new(channel.clone())
            .server(())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(server.uuid.len(), 36, "{}", server.uuid);
        let again = IntrospectionClient::new(channel.clone())
            .server(())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(server.uuid, again.uuid);
        let removed = SnapshotsClient::new(channel)
            .remove(in_ns(
                "default",
                RemoveSnapshotRequest {
                    snapshotter: "overlayfs".into(),
                    key: "k".into(),
                },
            ))
            .await;
        assert_eq!(removed.unwrap_err().code(), Code::NotFound);
    })
    .await
}

/// A GetContainerRequest whose `id` is raw bytes, to send invalid UTF-8.
#[derive(Clone, PartialEq, prost::Message)]
struct RawGetRequest {
    #[prost(bytes = "vec", tag = "1")]
    id: Vec<u8>,
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_the_node_keeps_serving() {
    bounded(async {
        let node = TestNode::start_single().await;
        let mut client = node.containers().await;

        // Over 16 MiB: RESOURCE_EXHAUSTED, as containerd; nothing stored.
        let mut huge = container("huge");
        huge.spec.as_mut().unwrap().value = vec![b' '; 17 << 20];
        let status = create(&mut client, "default", huge).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::ResourceExhausted,
            "{}",
            status.message()
        );
        // A 6 MiB spec is fine.
        let mut big = container("big");
        big.spec.as_mut().unwrap().value = vec![b' '; 6 << 20];
        create(&mut client, "default", big).await.unwrap();

        // Invalid UTF-8 in a string field: INVALID_ARGUMENT.
        let mut grpc = tonic::client::Grpc::new(node.channel().await.unwrap());
        grpc.ready().await.unwrap();
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(
            "/containerd.services.containers.v1.Containers/Get",
        );
        let response: Result<tonic::Response<pb::GetContainerResponse>, _> = grpc
            .unary(
                in_ns(
                    "default",
                    RawGetRequest {
                        id: vec![0xff, 0xfe],
                    },
                ),
                path,
                tonic_prost::ProstCodec::default(),
            )
            .await;
        assert_eq!(response.unwrap_err().code(), Code::InvalidArgument);

        // Garbage bytes on the unix socket and on TCP: the connection is dropped, nothing else.
        let mut raw = std::os::unix::net::UnixStream::connect(&node.socket).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        raw.write_all(b"GET / HTTP/1.1\r\n\r\n\x00\x01\x02garbage\xff\xff\xff\xff")
            .unwrap();
        let mut sink = Vec::new();
        let _ = raw.read_to_end(&mut sink);
        let mut raw = std::net::TcpStream::connect(&node.addr).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        raw.write_all(&[
            0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0,
        ])
        .unwrap();
        let _ = raw.read_to_end(&mut sink);

        assert_eq!(
            list_ids(&mut client, "default", &[]).await.unwrap(),
            ["big"]
        );
        let mut unix = node.unix_containers().await;
        assert_eq!(
            stream_ids(&mut unix, "default", &[]).await.unwrap(),
            ["big"]
        );
    })
    .await
}

#[tokio::test]
async fn cli_output_to_a_closed_pipe_ends_quietly() {
    bounded(async {
        let node = TestNode::start_single().await;
        let (reader, writer) = std::io::pipe().unwrap();
        // Nobody reads: the CLI's first write fails with EPIPE.
        drop(reader);
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["--endpoints", &node.addr, "cluster", "status"])
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");

        assert_eq!(output.status.signal(), Some(libc::SIGPIPE), "{stderr}");
    })
    .await
}
