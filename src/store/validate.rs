//! containerd's validation rules for identifiers, labels and container
//! records (spec §5), with containerd's exact error texts, so that clients
//! see the same messages from berth as from containerd.
//!
//! The rules are pure functions: the API layer runs them before proposing a
//! command (bad input never reaches the log), and `apply` runs them again on
//! the merged record of an update, where the outcome depends on stored state.

use crate::error::{Error, Result};
use crate::store::model::Container;

/// Longest identifier containerd accepts, in bytes.
pub const MAX_IDENTIFIER_BYTES: usize = 76;

/// Largest `len(key) + len(value)` of one label, in bytes.
pub const MAX_LABEL_BYTES: usize = 4096;

/// The identifier grammar as containerd prints it in error messages.
const IDENTIFIER_PATTERN: &str = r"^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$";

/// Checks a container id or namespace name: alphanumeric runs joined by
/// single `.`, `_` or `-`, at most 76 bytes.
pub fn identifier(s: &str) -> Result<()> {
    if s.is_empty() {
        return Err(Error::invalid("identifier must not be empty"));
    }
    if s.len() > MAX_IDENTIFIER_BYTES {
        return Err(Error::invalid(format!(
            "identifier {} greater than maximum length ({MAX_IDENTIFIER_BYTES} characters)",
            go_quote(s)
        )));
    }
    if !matches_identifier_grammar(s) {
        return Err(Error::invalid(format!(
            "identifier {} must match {IDENTIFIER_PATTERN}",
            go_quote(s)
        )));
    }
    Ok(())
}

/// Hand-written matcher for `IDENTIFIER_PATTERN`: a separator must sit
/// between two alphanumerics.
fn matches_identifier_grammar(s: &str) -> bool {
    let mut previous_was_alnum = false;
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() {
            previous_was_alnum = true;
        } else if matches!(b, b'.' | b'_' | b'-') && previous_was_alnum {
            previous_was_alnum = false;
        } else {
            return false;
        }
    }
    previous_was_alnum
}

/// Checks one label against the size rule (key and value together at most
/// 4096 bytes). An empty key with a value is refused too: containerd fails
/// it later, at its storage layer, with UNKNOWN; berth says InvalidArgument
/// up front. (An empty key with an empty value is a deletion of nothing.)
pub fn label(key: &str, value: &str) -> Result<()> {
    if key.len() + value.len() > MAX_LABEL_BYTES {
        let shown = String::from_utf8_lossy(&key.as_bytes()[..key.len().min(10)]).into_owned();
        return Err(Error::invalid(format!(
            "label key and value greater than maximum size ({MAX_LABEL_BYTES} bytes), key: {shown}"
        )));
    }
    if key.is_empty() && !value.is_empty() {
        return Err(Error::invalid(format!(
            "label key must not be empty (value {})",
            go_quote(value)
        )));
    }
    Ok(())
}

/// Checks every label of a map, in key order.
pub fn labels<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> Result<()> {
    labels.into_iter().try_for_each(|(k, v)| label(k, v))
}

/// Checks a whole container record in containerd's order (spec §5.3).
/// Labels are checked as given, before empty values are dropped, as
/// containerd does.
pub fn container(c: &Container) -> Result<()> {
    identifier(&c.id).map_err(|e| e.context("container.ID"))?;
    if c.extensions.contains_key("") {
        return Err(Error::invalid(
            "container.Extension keys must not be zero-length",
        ));
    }
    labels(&c.labels).map_err(|e| e.context("containers.Labels"))?;
    if c.runtime.name.is_empty() {
        return Err(Error::invalid("container.Runtime.Name must be set"));
    }
    if c.spec.is_none() {
        return Err(Error::invalid("container.Spec must be set"));
    }
    if !c.snapshot_key.is_empty() && c.snapshotter.is_empty() {
        return Err(Error::invalid(
            "container.Snapshotter must be set if container.SnapshotKey is set",
        ));
    }
    Ok(())
}

/// Quotes a string the way Go's `%q` does, so messages match containerd's.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::{AnyValue, Runtime};

    #[test]
    fn identifiers_accepted() {
        for ok in [
            "a",
            "A",
            "0",
            "Aa-1.b_c",
            "a.b.c",
            "x-y_z.0",
            &"a".repeat(76),
        ] {
            assert_eq!(identifier(ok), Ok(()), "{ok:?} should be accepted");
        }
    }

    #[test]
    fn identifiers_rejected_with_containerd_messages() {
        let pattern = IDENTIFIER_PATTERN;
        let cases = [
            (
                "",
                "identifier must not be empty: invalid argument".to_string(),
            ),
            (
                "a..b",
                format!("identifier \"a..b\" must match {pattern}: invalid argument"),
            ),
            (
                "-a",
                format!("identifier \"-a\" must match {pattern}: invalid argument"),
            ),
            (
                "a-",
                format!("identifier \"a-\" must match {pattern}: invalid argument"),
            ),
            (
                ".a",
                format!("identifier \".a\" must match {pattern}: invalid argument"),
            ),
            (
                "a_",
                format!("identifier \"a_\" must match {pattern}: invalid argument"),
            ),
            (
                "a-_b",
                format!("identifier \"a-_b\" must match {pattern}: invalid argument"),
            ),
            (
                "a/b",
                format!("identifier \"a/b\" must match {pattern}: invalid argument"),
            ),
            (
                "a:b",
                format!("identifier \"a:b\" must match {pattern}: invalid argument"),
            ),
            (
                "é",
                format!("identifier \"é\" must match {pattern}: invalid argument"),
            ),
            (
                "a b",
                format!("identifier \"a b\" must match {pattern}: invalid argument"),
            ),
        ];
        for (input, message) in cases {
            assert_eq!(
                identifier(input),
                Err(Error::InvalidArgument(message)),
                "{input:?}"
            );
        }
        let long = "a".repeat(77);
        assert_eq!(
            identifier(&long),
            Err(Error::InvalidArgument(format!(
                "identifier \"{long}\" greater than maximum length (76 characters): invalid argument"
            )))
        );
    }

    #[test]
    fn label_size_boundary() {
        let key = "k".repeat(96);
        assert_eq!(label(&key, &"v".repeat(4000)), Ok(()));
        assert_eq!(
            label(&key, &"v".repeat(4001)),
            Err(Error::InvalidArgument(
                "label key and value greater than maximum size (4096 bytes), key: kkkkkkkkkk: invalid argument"
                    .into()
            ))
        );
        assert!(label("", "x").is_err());
        assert_eq!(label("", ""), Ok(()));
        // A short key is shown whole, and an oversized empty value still counts.
        assert!(label("ab", &"v".repeat(4095)).is_err());
    }

    fn valid() -> Container {
        Container {
            id: "c1".into(),
            runtime: Runtime {
                name: "io.containerd.runc.v2".into(),
                options: None,
            },
            spec: Some(AnyValue::default()),
            ..Default::default()
        }
    }

    #[test]
    fn container_rules_in_order() {
        assert_eq!(container(&valid()), Ok(()));
        let with = |f: fn(&mut Container)| {
            let mut c = valid();
            f(&mut c);
            container(&c).unwrap_err().to_string()
        };
        assert!(with(|c| c.id = "a..b".into()).starts_with("container.ID: identifier \"a..b\""));
        assert_eq!(
            with(|c| {
                c.extensions.insert(String::new(), AnyValue::default());
            }),
            "container.Extension keys must not be zero-length: invalid argument"
        );
        assert!(
            with(|c| {
                c.labels.insert("k".into(), "v".repeat(5000));
            })
            .starts_with("containers.Labels: label key and value greater than maximum size")
        );
        assert_eq!(
            with(|c| c.runtime.name.clear()),
            "container.Runtime.Name must be set: invalid argument"
        );
        assert_eq!(
            with(|c| c.spec = None),
            "container.Spec must be set: invalid argument"
        );
        assert_eq!(
            with(|c| c.snapshot_key = "k".into()),
            "container.Snapshotter must be set if container.SnapshotKey is set: invalid argument"
        );
        // The id rule wins over every later rule.
        assert!(
            with(|c| {
                c.id.clear();
                c.spec = None;
            })
            .starts_with("container.ID: identifier must not be empty")
        );
    }

    #[test]
    fn go_quote_escapes() {
        assert_eq!(go_quote("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\x01\"");
        assert_eq!(go_quote("é"), "\"é\"");
    }
}
