//! What every handler reads from request metadata: the containerd namespace
//! and the read consistency berth's clients may ask for.

use tonic::Request;

use crate::error::{Error, Result};
use crate::node::Consistency;
use crate::store::validate;

/// The gRPC metadata key carrying the namespace, as containerd's clients send it.
pub const NAMESPACE_HEADER: &str = "containerd-namespace";

/// The gRPC metadata key selecting read consistency (berth's own).
pub const CONSISTENCY_HEADER: &str = "berth-consistency";

/// The request's namespace: required, and a valid identifier (spec §4).
pub fn namespace<T>(request: &Request<T>) -> Result<String> {
    let value = request.metadata().get(NAMESPACE_HEADER).map(|v| v.to_str());
    match value {
        None | Some(Ok("")) => Err(Error::failed_precondition("namespace is required")),
        Some(Err(_)) => Err(Error::invalid(
            "namespace validation: namespace is not valid ASCII",
        )),
        Some(Ok(namespace)) => {
            validate::identifier(namespace).map_err(|e| e.context("namespace validation"))?;
            Ok(namespace.to_string())
        }
    }
}

/// The read consistency the request asks for (`linearizable` by default).
pub fn consistency<T>(request: &Request<T>) -> Result<Consistency> {
    match request
        .metadata()
        .get(CONSISTENCY_HEADER)
        .map(|v| v.to_str())
    {
        None => Ok(Consistency::Linearizable),
        Some(Ok("linearizable")) => Ok(Consistency::Linearizable),
        Some(Ok("serializable")) => Ok(Consistency::Serializable),
        Some(other) => Err(Error::InvalidArgument(format!(
            "{CONSISTENCY_HEADER} must be \"linearizable\" or \"serializable\", not {:?}",
            other.unwrap_or("<not ASCII>")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_namespace(value: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(v) = value {
            request
                .metadata_mut()
                .insert(NAMESPACE_HEADER, v.parse().unwrap());
        }
        request
    }

    #[test]
    fn namespace_rules() {
        assert_eq!(
            namespace(&with_namespace(Some("default"))),
            Ok("default".to_string())
        );
        let missing = Err(Error::FailedPrecondition(
            "namespace is required: failed precondition".into(),
        ));
        assert_eq!(namespace(&with_namespace(None)), missing);
        assert_eq!(namespace(&with_namespace(Some(""))), missing);
        let bad = namespace(&with_namespace(Some("bad..ns")))
            .unwrap_err()
            .to_string();
        assert!(
            bad.starts_with("namespace validation: identifier \"bad..ns\" must match"),
            "{bad}"
        );
    }
}
