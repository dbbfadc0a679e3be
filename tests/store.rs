//! The store's command semantics (spec §5-§6), driven through
//! `Store::apply` on a real sled database in a temporary directory.

use std::collections::BTreeMap;

use berth::error::Error;
use berth::store::command::{Applied, Command, Outcome};
use berth::store::containers::merge;
use berth::store::model::{AnyValue, Container, Lease, Runtime, Timestamp};
use berth::store::{Store, StoreOptions};

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state"), &StoreOptions::default()).unwrap();
    (dir, store)
}

fn at(seconds: i64) -> Timestamp {
    Timestamp { seconds, nanos: 7 }
}

fn any(type_url: &str, value: &[u8]) -> AnyValue {
    AnyValue {
        type_url: type_url.into(),
        value: value.to_vec(),
    }
}

fn container(id: &str) -> Container {
    Container {
        id: id.into(),
        runtime: Runtime {
            name: "io.containerd.runc.v2".into(),
            options: Some(any("opts", b"o")),
        },
        spec: Some(any("spec", b"{}")),
        created_at: at(1),
        updated_at: at(1),
        ..Default::default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn apply(store: &Store, command: Command) -> Outcome {
    store.apply(&[&command], &[]).unwrap().pop().unwrap()
}

fn create(store: &Store, namespace: &str, c: Container) -> Outcome {
    apply(
        store,
        Command::CreateContainer {
            namespace: namespace.into(),
            container: c,
        },
    )
}

fn update(store: &Store, namespace: &str, c: Container, mask: &[&str]) -> Outcome {
    apply(
        store,
        Command::UpdateContainer {
            namespace: namespace.into(),
            container: c,
            mask: mask.iter().map(|p| p.to_string()).collect(),
            now: at(2),
        },
    )
}

fn delete(store: &Store, namespace: &str, id: &str) -> Outcome {
    apply(
        store,
        Command::DeleteContainer {
            namespace: namespace.into(),
            id: id.into(),
            now: at(3),
        },
    )
}

fn stored(outcome: Outcome) -> Container {
    match outcome {
        Ok(Applied::Container(c)) => *c,
        other => panic!("expected a container, got {other:?}"),
    }
}

fn ids(store: &Store, namespace: &str) -> Vec<String> {
    store.containers(namespace).map(|c| c.unwrap().id).collect()
}

#[test]
fn create_stores_the_record_and_drops_empty_labels() {
    let (_dir, store) = open();
    let mut c = container("c1");
    c.labels = labels(&[("a", "1"), ("gone", "")]);
    c.image = "docker.io/library/busybox:latest".into();
    c.extensions.insert("ext".into(), any("t", b"v"));
    let created = stored(create(&store, "default", c.clone()));
    assert_eq!(created.labels, labels(&[("a", "1")]));
    assert_eq!(
        store.container("default", "c1").unwrap(),
        Some(created.clone())
    );
    assert_eq!(created.runtime.options, Some(any("opts", b"o")));
    assert_eq!((created.created_at, created.updated_at), (at(1), at(1)));
}

#[test]
fn create_refuses_duplicates_and_invalid_records_without_writing() {
    let (_dir, store) = open();
    stored(create(&store, "default", container("c1")));
    assert_eq!(
        create(&store, "default", container("c1")),
        Err(Error::AlreadyExists(
            "container \"c1\": already exists".into()
        ))
    );
    let mut bad = container("c2");
    bad.spec = None;
    assert_eq!(
        create(&store, "default", bad),
        Err(Error::InvalidArgument(
            "create container failed validation: container.Spec must be set: invalid argument"
                .into()
        ))
    );
    let mut bad = container("c3");
    bad.labels = labels(&[("k", &"v".repeat(4096))]);
    let err = create(&store, "default", bad).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "create container failed validation: containers.Labels: label key and value"
        ),
        "{err}"
    );
    assert_eq!(ids(&store, "default"), ["c1"]);
}

#[test]
fn namespaces_are_isolated_and_lists_are_ordered_by_id() {
    let (_dir, store) = open();
    for id in ["b", "a-1", "A", "a", "c.0", "a_2"] {
        stored(create(&store, "one", container(id)));
    }
    stored(create(&store, "two", container("zz")));
    stored(create(&store, "one-x", container("q")));
    assert_eq!(ids(&store, "one"), ["A", "a", "a-1", "a_2", "b", "c.0"]);
    assert_eq!(ids(&store, "two"), ["zz"]);
    assert_eq!(ids(&store, "one-x"), ["q"]);
    assert!(ids(&store, "none").is_empty());
    assert_eq!(store.container("two", "a").unwrap(), None);
    // The same id may exist in two namespaces independently.
    stored(create(&store, "two", container("a")));
    stored(delete(&store, "one", "a").map(|_| Applied::Container(Box::new(container("x")))));
    assert!(store.container("two", "a").unwrap().is_some());
}

#[test]
fn update_and_delete_report_unknown_namespaces_and_ids_like_containerd() {
    let (_dir, store) = open();
    assert_eq!(
        update(&store, "ns", container("x"), &["image"]),
        Err(Error::NotFound(
            "cannot update container \"x\" in namespace \"ns\": not found".into()
        ))
    );
    assert_eq!(
        delete(&store, "ns", "x"),
        Err(Error::NotFound(
            "cannot delete container \"x\" in namespace \"ns\": not found".into()
        ))
    );
    stored(create(&store, "ns", container("c")));
    assert_eq!(
        update(&store, "ns", container("x"), &["image"]),
        Err(Error::NotFound("container \"x\": not found".into()))
    );
    assert_eq!(
        delete(&store, "ns", "x"),
        Err(Error::NotFound("container x: not found".into()))
    );
    assert_eq!(delete(&store, "ns", "c"), Ok(Applied::ContainerDeleted));
    // The namespace stays known once it held containers, as containerd's bucket does.
    assert_eq!(
        delete(&store, "ns", "c"),
        Err(Error::NotFound("container c: not found".into()))
    );
    assert_eq!(
        update(&store, "ns", Container::default(), &[]),
        Err(Error::InvalidArgument("Container.ID required".into()))
    );
}

/// One row per update path: (mask, request change, expected stored change).
#[test]
fn update_paths() {
    type Edit = fn(&mut Container);
    let base = || {
        let mut c = container("c");
        c.labels = labels(&[("keep", "1"), ("a.b", "2"), ("drop", "3")]);
        c.image = "old".into();
        c.snapshotter = "overlayfs".into();
        c.snapshot_key = "k-old".into();
        c.extensions.insert("e1".into(), any("t1", b"1"));
        c.extensions.insert("e2".into(), any("t2", b"2"));
        c
    };
    let cases: Vec<(&[&str], Edit, Edit)> = vec![
        (
            &["image"],
            |r| r.image = "new".into(),
            |s| s.image = "new".into(),
        ),
        (
            &["labels"],
            |r| r.labels = labels(&[("x", "y")]),
            |s| s.labels = labels(&[("x", "y")]),
        ),
        (&["labels"], |_| {}, |s| s.labels.clear()),
        (
            &["labels.a.b"],
            |r| r.labels = labels(&[("a.b", "new")]),
            |s| {
                s.labels.insert("a.b".into(), "new".into());
            },
        ),
        (
            &["labels.drop"],
            |_| {},
            |s| {
                s.labels.remove("drop");
            },
        ),
        (
            &["labels.drop"],
            |r| r.labels = labels(&[("drop", "")]),
            |s| {
                s.labels.remove("drop");
            },
        ),
        (
            &["labels.n1", "labels.n2"],
            |r| r.labels = labels(&[("n1", "1"), ("n2", "2"), ("n3", "3")]),
            |s| {
                s.labels.insert("n1".into(), "1".into());
                s.labels.insert("n2".into(), "2".into());
            },
        ),
        (
            &["spec"],
            |r| r.spec = Some(any("spec2", b"{\"x\":1}")),
            |s| s.spec = Some(any("spec2", b"{\"x\":1}")),
        ),
        (
            &["snapshotkey"],
            |r| r.snapshot_key = "k-new".into(),
            |s| s.snapshot_key = "k-new".into(),
        ),
        (
            &["extensions"],
            |r| r.extensions = [("e3".to_string(), any("t3", b"3"))].into(),
            |s| {
                s.extensions = [("e3".to_string(), any("t3", b"3"))].into();
            },
        ),
        (
            &["extensions.e1"],
            |r| r.extensions = [("e1".to_string(), any("t9", b"9"))].into(),
            |s| {
                s.extensions.insert("e1".into(), any("t9", b"9"));
            },
        ),
        // An extension path absent from the request stores an empty Any.
        (
            &["extensions.e4"],
            |_| {},
            |s| {
                s.extensions.insert("e4".into(), AnyValue::default());
            },
        ),
        // Duplicated paths are allowed.
        (
            &["image", "image"],
            |r| r.image = "twice".into(),
            |s| s.image = "twice".into(),
        ),
        // Fields outside the mask are untouched.
        (
            &["image"],
            |r| {
                r.image = "img".into();
                r.labels = labels(&[("ignored", "1")]);
                r.snapshot_key = "ignored".into();
            },
            |s| s.image = "img".into(),
        ),
    ];
    for (mask, edit_request, edit_expected) in cases {
        let (_dir, store) = open();
        stored(create(&store, "ns", base()));
        let mut request = Container {
            id: "c".into(),
            ..Default::default()
        };
        edit_request(&mut request);
        let mut expected = base();
        edit_expected(&mut expected);
        expected.updated_at = at(2);
        let updated = stored(update(&store, "ns", request, mask));
        assert_eq!(updated, expected, "mask {mask:?}");
        assert_eq!(
            store.container("ns", "c").unwrap(),
            Some(expected),
            "stored, mask {mask:?}"
        );
    }
}

#[test]
fn update_refuses_other_paths_and_invalid_results() {
    let base = container("c");
    for path in [
        "id",
        "runtime",
        "runtime.name",
        "snapshotter",
        "snapshot_key",
        "created_at",
        "sandbox",
        "Labels",
        "",
    ] {
        assert_eq!(
            merge(base.clone(), &base, &[path.to_string()]),
            Err(Error::InvalidArgument(format!(
                "cannot update \"{path}\" field on \"c\": invalid argument"
            ))),
            "{path}"
        );
    }
    let (_dir, store) = open();
    stored(create(&store, "ns", base.clone()));
    let request = Container {
        id: "c".into(),
        ..Default::default()
    };
    assert_eq!(
        update(&store, "ns", request.clone(), &["spec"]),
        Err(Error::InvalidArgument(
            "update failed validation: container.Spec must be set: invalid argument".into()
        ))
    );
    assert_eq!(
        update(&store, "ns", request, &["snapshotkey", "image"]).map(|_| ()),
        Ok(()),
        "clearing the snapshot key is valid"
    );
    let mut with_key = Container {
        id: "c".into(),
        snapshot_key: "k".into(),
        ..Default::default()
    };
    assert_eq!(
        update(&store, "ns", with_key.clone(), &["snapshotkey"]),
        Err(Error::InvalidArgument(
            "update failed validation: container.Snapshotter must be set if container.SnapshotKey is set: invalid argument"
                .into()
        ))
    );
    with_key
        .extensions
        .insert(String::new(), AnyValue::default());
    assert!(
        update(&store, "ns", with_key, &["extensions"])
            .unwrap_err()
            .to_string()
            .contains("zero-length")
    );
    // Nothing of the refused updates was stored.
    let now = store.container("ns", "c").unwrap().unwrap();
    assert_eq!(now.spec, base.spec);
}

#[test]
fn full_replace_keeps_immutables_and_replaces_extensions_for_real() {
    let (_dir, store) = open();
    let mut original = container("c");
    original.snapshotter = "overlayfs".into();
    original.labels = labels(&[("a", "1")]);
    original.extensions.insert("old".into(), any("t", b"o"));
    stored(create(&store, "ns", original.clone()));

    let mut request = original.clone();
    request.snapshotter = "native".into();
    assert_eq!(
        update(&store, "ns", request, &[]),
        Err(Error::InvalidArgument(
            "container.Snapshotter field is immutable: invalid argument".into()
        ))
    );
    let mut request = original.clone();
    request.runtime.name = "other".into();
    assert_eq!(
        update(&store, "ns", request, &[]),
        Err(Error::InvalidArgument(
            "container.Runtime.Name field is immutable: invalid argument".into()
        ))
    );

    let mut request = original.clone();
    request.labels = labels(&[("b", "2")]);
    request.image = "img2".into();
    request.snapshot_key = "key".into();
    request.extensions = [("new".to_string(), any("t", b"n"))].into();
    request.runtime.options = Some(any("ignored", b""));
    request.created_at = at(99);
    let updated = stored(update(&store, "ns", request, &[]));
    assert_eq!(updated.labels, labels(&[("b", "2")]));
    assert_eq!(updated.image, "img2");
    assert_eq!(updated.snapshot_key, "key");
    assert_eq!(
        updated.runtime.options, original.runtime.options,
        "runtime options never change"
    );
    assert_eq!((updated.created_at, updated.updated_at), (at(1), at(2)));
    // Unlike containerd 1.6, the old extension is really gone on the next read.
    let read = store.container("ns", "c").unwrap().unwrap();
    assert_eq!(read.extensions.keys().collect::<Vec<_>>(), ["new"]);
    assert_eq!(read, updated);
}

#[test]
fn leases_live_per_namespace() {
    let (_dir, store) = open();
    let lease = |id: &str| Lease {
        id: id.into(),
        created_at: at(5),
        labels: labels(&[("gc", "x"), ("empty", "")]),
    };
    let create = |ns: &str, id: &str| {
        apply(
            &store,
            Command::CreateLease {
                namespace: ns.into(),
                lease: lease(id),
            },
        )
    };
    let created = create("ns", "l1").unwrap();
    assert_eq!(
        created,
        Applied::Lease(Lease {
            labels: labels(&[("gc", "x")]),
            ..lease("l1")
        })
    );
    assert_eq!(
        create("ns", "l1"),
        Err(Error::AlreadyExists("lease \"l1\": already exists".into()))
    );
    assert_eq!(create("other", "l1").map(|_| ()), Ok(()));
    assert_eq!(
        create("ns", ""),
        Err(Error::InvalidArgument(
            "lease id must be provided: invalid argument".into()
        ))
    );
    let ids: Vec<_> = store.leases("ns").map(|l| l.unwrap().id).collect();
    assert_eq!(ids, ["l1"]);
    let delete = |ns: &str, id: &str| {
        apply(
            &store,
            Command::DeleteLease {
                namespace: ns.into(),
                id: id.into(),
                now: at(6),
            },
        )
    };
    assert_eq!(delete("ns", "l1"), Ok(Applied::LeaseDeleted));
    assert_eq!(
        delete("ns", "l1"),
        Err(Error::NotFound("lease \"l1\": not found".into()))
    );
    assert!(store.lease("other", "l1").unwrap().is_some());
}

#[test]
fn a_batch_applies_in_order_with_its_metadata_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    {
        let store = Store::open(&path, &StoreOptions::default()).unwrap();
        let create = Command::CreateContainer {
            namespace: "ns".into(),
            container: container("c"),
        };
        let again = create.clone();
        let mut edit = container("c");
        edit.image = "v2".into();
        let update = Command::UpdateContainer {
            namespace: "ns".into(),
            container: edit,
            mask: vec!["image".into()],
            now: at(2),
        };
        let outcomes = store
            .apply(&[&create, &again, &update], &[(b"applied", b"3")])
            .unwrap();
        assert!(matches!(outcomes[0], Ok(Applied::Container(_))));
        assert!(matches!(outcomes[1], Err(Error::AlreadyExists(_))));
        assert_eq!(stored(outcomes[2].clone()).image, "v2");
        store.flush_durably().unwrap();
    }
    let store = Store::open(&path, &StoreOptions::default()).unwrap();
    assert_eq!(store.container("ns", "c").unwrap().unwrap().image, "v2");
    assert_eq!(store.meta(b"applied").unwrap().as_deref(), Some(&b"3"[..]));
}

/// A store dropped and opened again at once, in the same process, opens:
/// sled's background threads can hold the dropped database's file lock for
/// a moment, and `Store::open` waits for them rather than failing. Each
/// round sees what the last one wrote.
#[test]
fn a_store_reopens_at_once_after_it_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    for round in 0..200u32 {
        let store = Store::open(&path, &StoreOptions::default())
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        if round > 0 {
            let previous = format!("c{}", round - 1);
            assert!(store.container("ns", &previous).unwrap().is_some());
        }
        let create = Command::CreateContainer {
            namespace: "ns".into(),
            container: container(&format!("c{round}")),
        };
        let applied = round.to_string();
        let outcomes = store
            .apply(&[&create], &[(b"applied", applied.as_bytes())])
            .unwrap();
        assert!(matches!(outcomes[0], Ok(Applied::Container(_))));
        store.flush_durably().unwrap();
    }
}

/// The records of an image, one value per key (a capture may repeat a key,
/// always with the same value).
fn image_of(
    records: impl Iterator<Item = berth::error::Result<berth::store::image::ImageRecord>>,
) -> BTreeMap<(u8, Vec<u8>), Vec<u8>> {
    let mut image = BTreeMap::new();
    for record in records {
        let (tree, key, value) = record.unwrap();
        if let Some(earlier) = image.insert((tree as u8, key.to_vec()), value.to_vec()) {
            assert_eq!(earlier, value.to_vec(), "a repeated key with another value");
        }
    }
    image
}

#[test]
fn a_capture_reads_the_capture_point_while_changes_go_on() {
    let (_dir, store) = open();
    let store = std::sync::Arc::new(store);
    for i in 0..200 {
        let mut c = container(&format!("c{i:03}"));
        c.image = "v1".into();
        assert!(create(&store, "ns", c).is_ok());
    }
    let expected = image_of(store.dump());
    let capture = store.begin_capture().unwrap();
    assert!(
        store.begin_capture().is_err(),
        "a second capture at the same time"
    );
    let mut records = capture.records();
    // Read part of the image, then change keys behind and ahead of the
    // reader: updates, deletes, re-creates and new keys.
    let mut read: Vec<_> = records.by_ref().take(100).collect();
    let change = |id: &str| {
        let mut c = container(id);
        c.image = "v2".into();
        update(&store, "ns", c, &["image"])
    };
    for i in [10, 150, 151] {
        assert!(change(&format!("c{i:03}")).is_ok());
    }
    for i in [20, 160, 199] {
        assert!(delete(&store, "ns", &format!("c{i:03}")).is_ok());
    }
    assert!(create(&store, "ns", container("c020")).is_ok());
    assert!(create(&store, "ns", container("new")).is_ok());
    assert!(create(&store, "other", container("x")).is_ok());
    assert!(change("c150").is_ok());
    read.extend(records);
    assert_eq!(image_of(read.into_iter()), expected);
    drop(capture);
    // Once the capture has ended, a new one sees the new state.
    let now = image_of(store.dump());
    assert_ne!(now, expected);
    let capture = store.begin_capture().unwrap();
    assert_eq!(image_of(capture.records()), now);
}
