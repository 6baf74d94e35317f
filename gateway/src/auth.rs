//! API tokens, tenants and rate limits for `/api/*`.
//!
//! Invariants: with `API_TOKENS_FILE` set, every `/api/*` call names a
//! known token (`Authorization: Bearer <token>`) or is answered 401 before
//! anything else runs; the token's name is the caller's tenant, and a
//! request (its status, its timeline, its `Idempotency-Key`) belongs to
//! the tenant that submitted it. Tokens are kept only as SHA-256 digests
//! and compared in constant time, every known digest each time. Without
//! the file the gateway is open: every caller is the one anonymous tenant.
//! With `RATE_LIMIT` set, each tenant gets that many calls a second (bursts
//! of `RATE_BURST`); the call over it is answered 429 before it runs.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::http::error::ApiError;

/// Who is calling: the name of the caller's token, or the anonymous tenant
/// of an open gateway (`""`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tenant(pub Arc<str>);

static ANONYMOUS: std::sync::LazyLock<Tenant> = std::sync::LazyLock::new(|| Tenant(Arc::from("")));

impl Tenant {
    /// The caller of an open gateway (shared: no allocation per call).
    pub fn anonymous() -> Self {
        ANONYMOUS.clone()
    }

    pub fn name(&self) -> &str {
        &self.0
    }
}

/// A token file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read the token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("token file line {line}: {reason} (expected `name:token` or `name:sha256:<64 lowercase hex digits>`)")]
    Line { line: usize, reason: &'static str },
    #[error("the token file names no token")]
    Empty,
}

/// The known tokens: a name and the SHA-256 of the token each.
pub struct Tokens {
    entries: Vec<(Arc<str>, [u8; 32])>,
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Self, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.to_owned(),
            source,
        })?;
        Tokens::parse(&text)
    }

    /// One token a line: `name:token`, or `name:sha256:<hex>` so the file
    /// need not hold the token in clear. Blank lines and `#` comments are
    /// skipped.
    pub fn parse(text: &str) -> Result<Self, TokensError> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let bad = |reason| TokensError::Line {
                line: line_no,
                reason,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, secret) = line.split_once(':').ok_or(bad("no `:`"))?;
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_graphic() && c != ':') {
                return Err(bad("the name must be visible ASCII characters"));
            }
            let digest = match secret.strip_prefix("sha256:") {
                Some(hex_digest) => {
                    if hex_digest.len() != 64
                        || !hex_digest
                            .bytes()
                            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                    {
                        return Err(bad("a sha256 digest is 64 lowercase hex digits"));
                    }
                    let mut digest = [0u8; 32];
                    hex::decode_to_slice(hex_digest, &mut digest)
                        .map_err(|_| bad("a sha256 digest is 64 lowercase hex digits"))?;
                    digest
                }
                None if secret.len() < 16 => {
                    return Err(bad("a token must be at least 16 characters"))
                }
                None => Sha256::digest(secret.as_bytes()).into(),
            };
            if entries.iter().any(|(n, _): &(Arc<str>, _)| &**n == name) {
                return Err(bad("the name is used twice"));
            }
            entries.push((Arc::from(name), digest));
        }
        if entries.is_empty() {
            return Err(TokensError::Empty);
        }
        Ok(Tokens { entries })
    }

    /// The tenant a presented token belongs to. Every known digest is
    /// compared, in constant time, whatever matches.
    pub fn tenant(&self, presented: &str) -> Option<Tenant> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (name, known) in &self.entries {
            if bool::from(known.ct_eq(&digest)) {
                found = Some(Tenant(name.clone()));
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What `/api/*` checks before a call runs.
pub struct Guard {
    /// `None`: the gateway is open.
    tokens: Option<Tokens>,
    limiter: Option<DefaultKeyedRateLimiter<Arc<str>>>,
}

impl Guard {
    pub fn new(tokens: Option<Tokens>, rate: Option<(NonZeroU32, NonZeroU32)>) -> Self {
        let limiter = rate.map(|(per_second, burst)| {
            RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
        });
        Guard { tokens, limiter }
    }

    pub fn is_open(&self) -> bool {
        self.tokens.is_none()
    }

    /// Whether it admits every call as it is (no tokens, no rate limit):
    /// then `/api/*` runs without the middleware.
    pub fn admits_all(&self) -> bool {
        self.tokens.is_none() && self.limiter.is_none()
    }

    /// The caller's tenant, or why the call may not run.
    pub fn admit(&self, headers: &HeaderMap) -> Result<Tenant, ApiError> {
        let tenant = match &self.tokens {
            None => Tenant::anonymous(),
            Some(tokens) => bearer(headers)
                .and_then(|token| tokens.tenant(token))
                .ok_or(ApiError::Unauthorized)?,
        };
        if let Some(limiter) = &self.limiter {
            if let Err(not_until) = limiter.check_key(&tenant.0) {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                return Err(ApiError::RateLimited {
                    retry_after: wait.max(Duration::from_secs(1)),
                });
            }
        }
        Ok(tenant)
    }

    /// Forgets rate-limit state of tenants idle long enough to be full again.
    pub fn sweep(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// A handler's caller: the tenant [`require`] admitted, or the anonymous
/// caller where the middleware does not run (an open gateway).
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Tenant {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Tenant>()
            .cloned()
            .unwrap_or_else(Tenant::anonymous))
    }
}

/// Middleware for `/api/*`: admits the call (401, 429) and hands its
/// [`Tenant`] to the handler.
pub async fn require(
    State(guard): State<Arc<Guard>>,
    mut request: Request,
    next: Next,
) -> Response {
    match guard.admit(request.headers()) {
        Ok(tenant) => {
            request.extensions_mut().insert(tenant);
            next.run(request).await
        }
        Err(refused) => refused.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "alice-token-0123456789";

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, authorization.parse().unwrap());
        headers
    }

    #[test]
    fn tokens_in_clear_or_as_digests() {
        let bob_digest = hex::encode(Sha256::digest(b"bob-token-abcdefghijkl"));
        let file = format!("# comment\n\nalice:{ALICE}\nbob:sha256:{bob_digest}\n");
        let tokens = Tokens::parse(&file).unwrap();
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens.tenant(ALICE).unwrap().name(), "alice");
        assert_eq!(
            tokens.tenant("bob-token-abcdefghijkl").unwrap().name(),
            "bob"
        );
        assert_eq!(
            tokens.tenant(&bob_digest),
            None,
            "the digest is not the token"
        );
        assert_eq!(tokens.tenant(""), None);
        assert_eq!(tokens.tenant("alice"), None);
    }

    #[test]
    fn bad_token_files_name_the_line() {
        for (file, line) in [
            ("alice", 1),
            ("ok:0123456789abcdef\n:0123456789abcdef", 2),
            ("a:short", 1),
            ("a:sha256:ABCD", 1),
            ("a:0123456789abcdef\na:0123456789abcdeg", 2),
        ] {
            match Tokens::parse(file) {
                Err(TokensError::Line { line: l, .. }) => assert_eq!(l, line, "{file:?}"),
                other => panic!("{file:?}: {:?}", other.map(|t| t.len())),
            }
        }
        assert!(matches!(Tokens::parse("# none\n"), Err(TokensError::Empty)));
    }

    #[test]
    fn the_guard_wants_a_known_bearer_token_and_counts_per_tenant() {
        let tokens = Tokens::parse(&format!("alice:{ALICE}\n")).unwrap();
        let one = NonZeroU32::new(1).unwrap();
        let guard = Guard::new(Some(tokens), Some((one, one)));
        let ok = headers(&format!("Bearer {ALICE}"));
        assert_eq!(guard.admit(&ok).unwrap().name(), "alice");
        // The second call within the second is over the limit.
        assert!(matches!(
            guard.admit(&ok),
            Err(ApiError::RateLimited { retry_after }) if retry_after >= Duration::from_secs(1)
        ));
        for bad in ["Bearer nope-nope-nope-nope", "Basic abc", "Bearer", ALICE] {
            assert!(
                matches!(guard.admit(&headers(bad)), Err(ApiError::Unauthorized)),
                "{bad}"
            );
        }
        assert!(matches!(
            guard.admit(&HeaderMap::new()),
            Err(ApiError::Unauthorized)
        ));
        let open = Guard::new(None, None);
        assert_eq!(open.admit(&HeaderMap::new()).unwrap(), Tenant::anonymous());
    }
}
