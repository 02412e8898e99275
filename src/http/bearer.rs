//! `Authorization: Bearer <token>`, for alert webhooks and `/metrics`.

use axum::http::{HeaderMap, header};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Constant-time token check. Hashing first makes the comparison
/// independent of the token's length too.
pub fn token_ok(headers: &HeaderMap, expected: &SecretString) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.expose_secret().as_bytes());
    !given.is_empty() && bool::from(a.ct_eq(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let secret = SecretString::from("t0ken".to_string());
        let mut h = HeaderMap::new();
        assert!(!token_ok(&h, &secret));
        h.insert(header::AUTHORIZATION, "Bearer t0ken".parse().unwrap());
        assert!(token_ok(&h, &secret));
        h.insert(header::AUTHORIZATION, "Bearer t0ke".parse().unwrap());
        assert!(!token_ok(&h, &secret));
        h.insert(header::AUTHORIZATION, "t0ken".parse().unwrap());
        assert!(!token_ok(&h, &secret));
    }
}
