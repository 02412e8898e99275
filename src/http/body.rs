//! Reading a request body, the one way handlers do it: at most `limit`
//! bytes, the whole of it within `timeout` of the call (tower-http's body
//! timeout only bounds the gap between two chunks, so a client trickling a
//! byte at a time would otherwise hold the connection for hours). Handlers
//! call this only after whatever can be decided from the headers alone.

use std::time::Duration;

use axum::body::{Body, Bytes};

use crate::error::EdgeError;

pub async fn read(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, EdgeError> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Err(_) => Err(EdgeError::BodyTimeout),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(classify(&e)),
    }
}

/// Too large, too slow (tower-http's timeout between chunks), or broken.
fn classify(e: &axum::Error) -> EdgeError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return EdgeError::TooLarge;
        }
        if s.is::<tower_http::timeout::TimeoutError>() {
            return EdgeError::BodyTimeout;
        }
        source = s.source();
    }
    EdgeError::BadRequest(format!("reading the body failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limits_and_errors_are_told_apart() {
        let ok = read(Body::from("abc"), 10, Duration::from_secs(1)).await.unwrap();
        assert_eq!(&ok[..], b"abc");
        let big = read(Body::from("abcdef"), 3, Duration::from_secs(1)).await;
        assert!(matches!(big, Err(EdgeError::TooLarge)), "{big:?}");
        let timed_out = tower_http::timeout::TimeoutBody::new(
            Duration::from_millis(10),
            Body::from_stream(futures_util::stream::pending::<Result<Bytes, std::io::Error>>()),
        );
        let slow = read(Body::new(timed_out), 10, Duration::from_secs(5)).await;
        assert!(matches!(slow, Err(EdgeError::BodyTimeout)), "{slow:?}");
        let never = Body::from_stream(futures_util::stream::pending::<Result<Bytes, std::io::Error>>());
        let total = read(never, 10, Duration::from_millis(20)).await;
        assert!(matches!(total, Err(EdgeError::BodyTimeout)), "{total:?}");
    }
}
