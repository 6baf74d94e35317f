//! Validation of `POST /api/signature` bodies: every way a body can be wrong
//! becomes a 400 with its own code, before anything reaches the broker.

use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;
use verify_core::{now_ms, Algorithm, KeyId, RequestId, VerifyRequest, SCHEMA_VERSION};

use super::error::ApiError;

/// The JSON body as clients send it (field names of the original system).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubmitBody {
    pub hex_signature: Option<String>,
    pub text: Option<String>,
    pub text_base64: Option<String>,
    pub text_file: Option<String>,
    pub algorithm: Option<String>,
    pub key_id: Option<String>,
}

/// Longest accepted `keyId` (key ids are file names).
const MAX_KEY_ID_LEN: usize = 255;

/// Is this `Content-Type` JSON? (`application/json`, any parameters.)
pub fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Turns a body into a request ready to publish.
pub async fn parse(
    body: &[u8],
    docs_dir: Option<&Path>,
    body_limit: usize,
) -> Result<VerifyRequest, ApiError> {
    let body: SubmitBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("the body is not a valid request: {e}"),
        )
    })?;

    let hex_signature = body
        .hex_signature
        .ok_or_else(|| ApiError::bad_request("missing_field", "hexSignature is required"))?;
    if hex_signature.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_signature",
            "hexSignature is empty",
        ));
    }
    let signature = hex::decode(&hex_signature).map_err(|e| {
        ApiError::bad_request(
            "invalid_signature",
            format!("hexSignature must be an even number of hex digits: {e}"),
        )
    })?;

    let algorithm = match &body.algorithm {
        None => Algorithm::DEFAULT,
        Some(name) => Algorithm::parse(name).ok_or_else(|| {
            let known: Vec<&str> = Algorithm::ALL.iter().map(|a| a.name()).collect();
            ApiError::bad_request(
                "unknown_algorithm",
                format!(
                    "unknown algorithm {name:?}; supported: {}",
                    known.join(", ")
                ),
            )
        })?,
    };

    let key_id = match body.key_id {
        None => None,
        Some(id) if id.is_empty() || id.len() > MAX_KEY_ID_LEN => {
            return Err(ApiError::bad_request(
                "invalid_key_id",
                format!("keyId must be 1 to {MAX_KEY_ID_LEN} characters"),
            ))
        }
        Some(id) => Some(KeyId::new(id)),
    };

    let document = match (body.text, body.text_base64, body.text_file) {
        (Some(text), None, None) => text.into_bytes(),
        (None, Some(b64), None) => base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|e| {
                ApiError::bad_request(
                    "invalid_base64",
                    format!("textBase64 is not standard base64: {e}"),
                )
            })?,
        (None, None, Some(path)) => read_text_file(docs_dir, &path, body_limit).await?,
        (None, None, None) => {
            return Err(ApiError::bad_request(
                "missing_field",
                "one of text, textBase64 or textFile is required",
            ))
        }
        _ => {
            return Err(ApiError::bad_request(
                "conflicting_fields",
                "give exactly one of text, textBase64 or textFile",
            ))
        }
    };

    Ok(VerifyRequest {
        v: SCHEMA_VERSION,
        id: RequestId::new(),
        document,
        signature,
        algorithm,
        key_id,
        submitted_at_ms: now_ms(),
        traceparent: None,
    })
}

fn bad_file(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_text_file", message)
}

/// Reads `textFile` under `DOCS_DIR`, refusing anything that could leave it.
async fn read_text_file(
    docs_dir: Option<&Path>,
    path: &str,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let docs_dir = docs_dir.ok_or_else(|| {
        bad_file("textFile is disabled on this gateway (no DOCS_DIR configured); send text or textBase64")
    })?;
    let relative = Path::new(path);
    if path.is_empty() || relative.is_absolute() {
        return Err(bad_file("textFile must be a relative path inside DOCS_DIR"));
    }
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(bad_file("textFile must not contain '..' or a root"));
    }
    // Canonicalising resolves symlinks, so a link pointing outside is caught too.
    let root = tokio::fs::canonicalize(docs_dir)
        .await
        .map_err(|_| bad_file("DOCS_DIR is not readable"))?;
    let full: PathBuf = tokio::fs::canonicalize(root.join(relative))
        .await
        .map_err(|_| bad_file(format!("textFile {path:?} does not exist")))?;
    if !full.starts_with(&root) {
        return Err(bad_file(format!(
            "textFile {path:?} leads outside DOCS_DIR"
        )));
    }
    let metadata = tokio::fs::metadata(&full)
        .await
        .map_err(|_| bad_file(format!("textFile {path:?} does not exist")))?;
    if !metadata.is_file() {
        return Err(bad_file(format!("textFile {path:?} is not a regular file")));
    }
    if metadata.len() > limit as u64 {
        return Err(bad_file(format!(
            "textFile {path:?} is larger than {limit} bytes"
        )));
    }
    tokio::fs::read(&full).await.map_err(|e| {
        // The OS's words stay in the log, not in the answer.
        tracing::warn!(path, error = %e, "textFile could not be read");
        bad_file(format!("textFile {path:?} cannot be read"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("application/json; charset=utf-8")));
        assert!(is_json(Some("Application/JSON")));
        assert!(!is_json(Some("text/plain")));
        assert!(!is_json(Some("application/jsonx")));
        assert!(!is_json(None));
    }

    async fn code_of(body: &str) -> &'static str {
        match parse(body.as_bytes(), None, 1 << 20).await {
            Err(ApiError::BadRequest { code, .. }) => code,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[tokio::test]
    async fn bad_bodies_get_their_codes() {
        assert_eq!(code_of("{").await, "invalid_json");
        assert_eq!(code_of(r#"{"text":"x"}"#).await, "missing_field");
        assert_eq!(
            code_of(r#"{"hexSignature":"abc","text":"x"}"#).await,
            "invalid_signature"
        );
        assert_eq!(
            code_of(r#"{"hexSignature":"zz","text":"x"}"#).await,
            "invalid_signature"
        );
        assert_eq!(code_of(r#"{"hexSignature":"ab"}"#).await, "missing_field");
        assert_eq!(
            code_of(r#"{"hexSignature":"ab","text":"x","textBase64":"eA=="}"#).await,
            "conflicting_fields"
        );
        assert_eq!(
            code_of(r#"{"hexSignature":"ab","textBase64":"!!"}"#).await,
            "invalid_base64"
        );
        assert_eq!(
            code_of(r#"{"hexSignature":"ab","text":"x","algorithm":"RSA"}"#).await,
            "unknown_algorithm"
        );
        assert_eq!(
            code_of(r#"{"hexSignature":"ab","textFile":"a.txt"}"#).await,
            "invalid_text_file"
        );
        assert_eq!(
            code_of(r#"{"hexSignature":"ab","textfile":"a.txt"}"#).await,
            "invalid_json"
        );
    }

    #[tokio::test]
    async fn good_body() {
        let r = parse(br#"{"hexSignature":"ABcd","text":"h\u00e9","algorithm":"sha256withrsa/pss","keyId":"k"}"#, None, 100)
            .await
            .unwrap();
        assert_eq!(r.signature, vec![0xab, 0xcd]);
        assert_eq!(r.document, "hé".as_bytes());
        assert_eq!(r.algorithm, Algorithm::Sha256WithRsaPss);
        assert_eq!(r.key_id, Some(KeyId::new("k")));
    }

    #[tokio::test]
    async fn text_files_stay_inside_docs_dir() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
        let docs = tempfile::tempdir().unwrap();
        std::fs::write(docs.path().join("doc.txt"), "signed").unwrap();
        std::fs::create_dir(docs.path().join("sub")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.txt"),
            docs.path().join("link.txt"),
        )
        .unwrap();
        let read = |p: &str| {
            let body = serde_json::json!({"hexSignature": "ab", "textFile": p}).to_string();
            let dir = docs.path().to_owned();
            async move { parse(body.as_bytes(), Some(&dir), 1 << 20).await }
        };
        assert_eq!(read("doc.txt").await.unwrap().document, b"signed");
        assert_eq!(read("./doc.txt").await.unwrap().document, b"signed");
        for bad in [
            "../secret.txt",
            "/etc/passwd",
            "link.txt",
            "sub",
            "missing.txt",
            "sub/../doc.txt",
            "",
        ] {
            assert!(
                matches!(
                    read(bad).await,
                    Err(ApiError::BadRequest {
                        code: "invalid_text_file",
                        ..
                    })
                ),
                "{bad:?} was accepted"
            );
        }
    }
}
