//! Validation of `POST /api/signature` bodies: every way a body can be wrong
//! becomes a 400 with its own code, before anything reaches the broker.

use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;
use verify_core::{now_ms, Algorithm, KeyId, Payload, RequestId, VerifyRequest, SCHEMA_VERSION};

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

/// Reads a request body whole, refusing it (413) past `limit`. The buffer
/// is sized from `Content-Length` and each chunk is copied in and freed as
/// it arrives, so a body costs its own size once (collecting the chunks
/// first and then joining them held about twice that, and more in the
/// chunks' spare capacity). A body that breaks off or stalls past
/// BODY_TIMEOUT is a 400 `invalid_body`.
pub async fn read_body(
    body: axum::body::Body,
    headers: &axum::http::HeaderMap,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    use futures_util::StreamExt as _;
    let too_large = || ApiError::PayloadTooLarge { limit };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut buffer = bytes::BytesMut::with_capacity(declared.unwrap_or(0));
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| {
            tracing::debug!(error = %e, "request body not read");
            ApiError::bad_request("invalid_body", "the request body could not be read")
        })?;
        if buffer.len() + chunk.len() > limit {
            return Err(too_large());
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.freeze())
}

/// Turns a body into the request `id` names, ready to publish.
pub async fn parse(
    id: RequestId,
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
    let signature = verify_core::hex_text::decode(&hex_signature).map_err(|e| {
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
        id,
        payload: Payload::Document(document),
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
        match parse(RequestId::new(), body.as_bytes(), None, 1 << 20).await {
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
        let id = RequestId::new();
        let r = parse(id, br#"{"hexSignature":"ABcd","text":"h\u00e9","algorithm":"sha256withrsa/pss","keyId":"k"}"#, None, 100)
            .await
            .unwrap();
        assert_eq!(r.id, id, "the request carries the id the client is given");
        assert_eq!(r.signature, vec![0xab, 0xcd]);
        assert_eq!(r.payload, Payload::Document("hé".into()));
        assert_eq!(r.algorithm, Algorithm::Sha256WithRsaPss);
        assert_eq!(r.key_id, Some(KeyId::new("k")));
    }

    mod props {
        //! Arbitrary bodies through [`parse`]: bytes, JSON-like text, and
        //! JSON objects built from the body's own field names. Every body
        //! is either a request consistent with it or a 400 with one of the
        //! documented codes; none panics.

        use proptest::collection::vec;
        use proptest::prelude::*;
        use serde_json::Value;

        use super::*;

        /// Every code `parse` may answer (the README's list for 400s).
        const CODES: [&str; 8] = [
            "invalid_json",
            "missing_field",
            "invalid_signature",
            "unknown_algorithm",
            "invalid_key_id",
            "invalid_base64",
            "invalid_text_file",
            "conflicting_fields",
        ];

        const FIELDS: [&str; 6] = [
            "hexSignature",
            "text",
            "textBase64",
            "textFile",
            "algorithm",
            "keyId",
        ];

        /// The one file in the test's DOCS_DIR.
        const DOC: (&str, &[u8]) = ("doc.txt", b"signed text");

        /// Parses on a private runtime (parse is async for `textFile`).
        fn parse_now(body: &[u8], docs: &Path) -> Result<VerifyRequest, ApiError> {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(parse(RequestId::new(), body, Some(docs), 1 << 16))
        }

        fn docs_dir() -> tempfile::TempDir {
            let docs = tempfile::tempdir().unwrap();
            std::fs::write(docs.path().join(DOC.0), DOC.1).unwrap();
            docs
        }

        /// Any JSON value but a string: a wrong type for every field.
        fn wrong_type() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                vec(any::<u8>(), 0..4).prop_map(Value::from),
                Just(serde_json::json!({ "hexSignature": "ab" })),
            ]
        }

        /// A value for `field`: mostly of its kind (valid or nearly so),
        /// sometimes any string, sometimes another type.
        fn field_value(field: &'static str) -> BoxedStrategy<Value> {
            let own: BoxedStrategy<String> = match field {
                "hexSignature" => prop_oneof![
                    3 => "([0-9a-fA-F]{2}){0,24}",
                    1 => "[0-9a-fA-FxX ]{0,9}",
                ]
                .boxed(),
                "textBase64" => prop_oneof![
                    3 => vec(any::<u8>(), 0..24)
                        .prop_map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
                    1 => "[A-Za-z0-9+/=_-]{0,12}",
                ]
                .boxed(),
                "textFile" => prop::sample::select(vec![
                    "doc.txt",
                    "./doc.txt",
                    "../doc.txt",
                    "/etc/passwd",
                    "",
                    ".",
                    "missing.txt",
                    "doc.txt/",
                    "a/../doc.txt",
                ])
                .prop_map(str::to_owned)
                .boxed(),
                "algorithm" => prop_oneof![
                    3 => prop::sample::select(
                        Algorithm::ALL.iter().map(|a| a.name()).collect::<Vec<_>>()
                    )
                    // Some lower-cased: names match case-insensitively.
                    .prop_map(|n| if n.len() % 2 == 0 { n.to_lowercase() } else { n.to_owned() }),
                    1 => prop::sample::select(vec!["RSA", "SHA256withDSA", ""])
                        .prop_map(str::to_owned),
                ]
                .boxed(),
                "keyId" => prop_oneof![4 => "[a-z0-9._-]{0,12}", 1 => "[a-z]{250,260}"].boxed(),
                _ => any::<String>().boxed(),
            };
            prop_oneof![
                8 => own.prop_map(Value::from),
                1 => any::<String>().prop_map(Value::from),
                1 => wrong_type(),
            ]
            .boxed()
        }

        /// A body of the real fields, each present or not (the signature
        /// usually, one document source often), at times an unknown one.
        fn body_object() -> impl Strategy<Value = serde_json::Map<String, Value>> {
            let present = [0.9, 0.5, 0.25, 0.2, 0.5, 0.5];
            let fields: Vec<_> = FIELDS
                .iter()
                .zip(present)
                .map(|(&f, p)| proptest::option::weighted(p, field_value(f)))
                .collect();
            let unknown = proptest::option::weighted(0.1, ("[a-zA-Z]{1,12}", any::<String>()));
            (fields, unknown).prop_map(|(values, unknown)| {
                let mut body: serde_json::Map<String, Value> = FIELDS
                    .iter()
                    .zip(values)
                    .filter_map(|(f, v)| Some((f.to_string(), v?)))
                    .collect();
                if let Some((k, v)) = unknown {
                    body.insert(k, Value::from(v));
                }
                body
            })
        }

        /// What `parse` answered must be allowed by `body`.
        fn check(
            body: &[u8],
            answer: Result<VerifyRequest, ApiError>,
        ) -> Result<(), TestCaseError> {
            let request = match answer {
                Ok(request) => request,
                Err(ApiError::BadRequest { code, message }) => {
                    prop_assert!(CODES.contains(&code), "code {code}: {message}");
                    prop_assert!(!message.is_empty());
                    return Ok(());
                }
                Err(other) => return Err(TestCaseError::fail(format!("not a 400: {other:?}"))),
            };
            // Accepted: the body is an object of known fields, and the
            // request holds exactly what it says.
            let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
                return Err(TestCaseError::fail(
                    "accepted a body that is not a JSON object",
                ));
            };
            prop_assert!(fields.keys().all(|k| FIELDS.contains(&k.as_str())));
            let text = |k: &str| fields.get(k).and_then(Value::as_str);
            let hex_signature = text("hexSignature").unwrap();
            prop_assert_eq!(&request.signature, &hex::decode(hex_signature).unwrap());
            prop_assert!(!request.signature.is_empty());
            let document: Vec<u8> = match (text("text"), text("textBase64"), text("textFile")) {
                (Some(t), None, None) => t.as_bytes().to_vec(),
                (None, Some(b), None) => {
                    base64::engine::general_purpose::STANDARD.decode(b).unwrap()
                }
                (None, None, Some(_)) => DOC.1.to_vec(),
                other => return Err(TestCaseError::fail(format!("document from {other:?}"))),
            };
            prop_assert_eq!(request.payload, Payload::Document(document));
            let algorithm = text("algorithm").map_or(Some(Algorithm::DEFAULT), Algorithm::parse);
            prop_assert_eq!(Some(request.algorithm), algorithm);
            prop_assert_eq!(request.key_id.as_ref().map(KeyId::as_str), text("keyId"));
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1024))]

            #[test]
            fn arbitrary_bytes_are_a_request_or_a_400(body in vec(any::<u8>(), 0..256)) {
                let docs = docs_dir();
                check(&body, parse_now(&body, docs.path()))?;
            }

            #[test]
            fn json_like_text_is_a_request_or_a_400(
                tokens in vec(prop_oneof![
                    prop::sample::select(vec!["{", "}", "[", "]", ":", ",", "\"", "null", "1e999", "-", "\\u0000"])
                        .prop_map(str::to_owned),
                    prop::sample::select(FIELDS.to_vec()).prop_map(|f| format!("\"{f}\"")),
                    "[0-9a-f]{1,8}",
                ], 0..30)
            ) {
                let body = tokens.concat();
                let docs = docs_dir();
                check(body.as_bytes(), parse_now(body.as_bytes(), docs.path()))?;
            }

            #[test]
            fn field_combinations_are_a_request_or_a_400(
                fields in body_object(),
                cut in proptest::option::weighted(0.2, any::<prop::sample::Index>()),
            ) {
                let mut body = Value::Object(fields).to_string().into_bytes();
                if let Some(cut) = cut {
                    body.truncate(cut.index(body.len() + 1));
                }
                let docs = docs_dir();
                check(&body, parse_now(&body, docs.path()))?;
            }
        }
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
            async move { parse(RequestId::new(), body.as_bytes(), Some(&dir), 1 << 20).await }
        };
        let signed = Payload::Document(b"signed".to_vec());
        assert_eq!(read("doc.txt").await.unwrap().payload, signed);
        assert_eq!(read("./doc.txt").await.unwrap().payload, signed);
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
