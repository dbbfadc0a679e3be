//! The one place where berth's errors become gRPC statuses, and where
//! tonic's own transport-level statuses are aligned with containerd's.

use tonic::codegen::http::{HeaderMap, HeaderValue, Response};
use tonic::{Code, Status};

use crate::error::Error;

/// Largest request or response message, as containerd's 16 MiB.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match err {
            Error::InvalidArgument(m) => Status::invalid_argument(m),
            Error::NotFound(m) => Status::not_found(m),
            Error::AlreadyExists(m) => Status::already_exists(m),
            Error::FailedPrecondition(m) => Status::failed_precondition(m),
            Error::ResourceExhausted(m) => Status::resource_exhausted(m),
            Error::Unavailable(m) => Status::unavailable(m),
            Error::DeadlineExceeded(m) => Status::deadline_exceeded(m),
            Error::Internal(m) => Status::internal(m),
        }
    }
}

/// Rewrites two statuses tonic produces before a handler runs, so clients
/// see containerd's codes:
/// - an over-size message is OUT_OF_RANGE in tonic, RESOURCE_EXHAUSTED in
///   grpc-go (containerd);
/// - undecodable bytes (e.g. invalid UTF-8 in a string) are INTERNAL in
///   tonic, but they are the client's fault: INVALID_ARGUMENT.
///
/// Both arrive as "trailers-only" responses, with the status in the headers.
pub fn align_transport_status<B>(mut response: Response<B>) -> Response<B> {
    rewrite_status(response.headers_mut());
    response
}

fn rewrite_status(headers: &mut HeaderMap) {
    let code = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok());
    let Some(code) = code.map(Code::from_i32) else {
        return;
    };
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    let replacement = match code {
        Code::OutOfRange if message.contains("message length too large") => Code::ResourceExhausted,
        Code::Internal if message.starts_with("failed to decode Protobuf message") => {
            Code::InvalidArgument
        }
        _ => return,
    };
    headers.insert("grpc-status", HeaderValue::from(replacement as i32));
}

/// Undoes gRPC's percent-encoding of `grpc-message` (enough to match the
/// prefixes above; the header itself is left as it was).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(code: Code, message: &str) -> i32 {
        let status = Status::new(code, message);
        let mut headers = HeaderMap::new();
        status.add_header(&mut headers).unwrap();
        rewrite_status(&mut headers);
        headers["grpc-status"].to_str().unwrap().parse().unwrap()
    }

    #[test]
    fn transport_statuses_follow_containerd() {
        let too_large = "Error, decoded message length too large: found 17000000 bytes, the limit is: 16777216 bytes";
        assert_eq!(
            rewritten(Code::OutOfRange, too_large),
            Code::ResourceExhausted as i32
        );
        let undecodable =
            "failed to decode Protobuf message: invalid string value: data is not UTF-8 encoded";
        assert_eq!(
            rewritten(Code::Internal, undecodable),
            Code::InvalidArgument as i32
        );
        assert_eq!(
            rewritten(Code::Internal, "storage: disk"),
            Code::Internal as i32
        );
        assert_eq!(rewritten(Code::NotFound, too_large), Code::NotFound as i32);
    }

    #[test]
    fn errors_keep_their_category() {
        let status = Status::from(Error::not_found("container \"x\""));
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "container \"x\": not found");
    }
}
