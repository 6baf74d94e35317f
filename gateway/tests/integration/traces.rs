//! Trace context end to end: a POST's `traceparent` (or a new trace) is
//! answered, carried in the request to the worker, continued there, and
//! named by the GET body, every timeline step and the JSON log lines of
//! both binaries; with `OTEL_EXPORTER_OTLP_ENDPOINT` set, both export their
//! spans over OTLP and one request's spans share its trace id.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use axum::body::Bytes;
use lapin::BasicProperties;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use serde_json::Value;

const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// `(trace id, span id)` of a `traceparent`.
fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[0], "00", "{traceparent}");
    assert_eq!((parts[1].len(), parts[2].len()), (32, 16), "{traceparent}");
    (parts[1].to_owned(), parts[2].to_owned())
}

async fn post_traced(gw: &Gateway, body: &Value, traceparent: Option<&str>) -> (String, String) {
    let headers: Vec<(&str, &str)> = traceparent
        .map(|t| ("traceparent", t))
        .into_iter()
        .collect();
    let (status, answered, json) = gw
        .post_raw(
            Some("application/json"),
            body.to_string().into_bytes(),
            &headers,
        )
        .await;
    assert_eq!(status, 202, "{json}");
    let traceparent = answered
        .get("traceparent")
        .unwrap_or_else(|| panic!("no traceparent answered: {answered:?}"))
        .clone();
    (json["id"].as_str().unwrap().to_owned(), traceparent)
}

/// The JSON log lines of `log` logged inside the span of the request `id`
/// (which names `trace_id`).
fn lines_of_request(log: &str, id: &str, trace_id: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| {
            line["spans"].as_array().is_some_and(|spans| {
                spans
                    .iter()
                    .any(|s| s["request_id"] == id && s["trace_id"] == trace_id)
            })
        })
        .collect()
}

#[tokio::test]
async fn the_trace_goes_from_post_to_worker_and_back_and_into_the_logs() {
    let env = TestEnv::new();
    let json_logs = [
        ("LOG_FORMAT", "json".to_owned()),
        (
            "RUST_LOG",
            "info,gateway=debug,verifier_worker=debug".to_owned(),
        ),
    ];
    let (_worker, _) = env.ready_worker("worker-traced", &json_logs).await;
    let gw = env.gateway(&json_logs).await;
    let signer = Signer2048::new();

    // The caller's trace is continued: same trace id, the gateway's own span.
    let (id, answered) = post_traced(&gw, &body_for(&signer, "traced", false), Some(CALLER)).await;
    let (trace_id, span_id) = ids(&answered);
    assert_eq!(trace_id, CALLER_TRACE);
    assert_ne!(span_id, "00f067aa0ba902b7");
    let result = gw.result(&id, Duration::from_secs(20)).await;
    assert_eq!(result["valid"], true, "{result}");
    assert_eq!(result["traceId"], CALLER_TRACE, "{result}");
    let (status, _, timeline) = gw.get(&format!("/api/signature/{id}/events")).await;
    assert_eq!(status, 200, "{timeline}");
    let steps = timeline["events"].as_array().unwrap();
    let types: Vec<&str> = steps.iter().map(|s| s["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["accepted", "completed"], "{timeline}");
    for step in steps {
        assert_eq!(step["traceId"], CALLER_TRACE, "{timeline}");
    }

    // Both binaries log inside the request's span, in JSON, naming it.
    wait_for(
        "the worker's log line on the request",
        Duration::from_secs(10),
        || async {
            lines_of_request(&env.log("worker-traced"), &id, CALLER_TRACE)
                .iter()
                .any(|line| line["message"] == "verified" && line["valid"] == true)
        },
    )
    .await;
    let gateway_log = env.log(&gateway_log_name(&gw));
    assert!(
        lines_of_request(&gateway_log, &id, CALLER_TRACE)
            .iter()
            .any(|line| line["message"] == "accepted"),
        "no gateway line names the request and its trace: {gateway_log}"
    );

    // No traceparent, or a malformed one: a new trace, answered all the same.
    let mut seen = Vec::new();
    for given in [None, Some("00-zz-00f067aa0ba902b7-01")] {
        let (id, answered) = post_traced(&gw, &body_for(&signer, "fresh", true), given).await;
        let (trace_id, _) = ids(&answered);
        assert_ne!(trace_id, "0".repeat(32));
        assert!(!seen.contains(&trace_id), "a trace id given twice");
        let result = gw.result(&id, Duration::from_secs(20)).await;
        assert_eq!(result["valid"], false, "{result}");
        assert_eq!(result["traceId"], trace_id.as_str(), "{result}");
        seen.push(trace_id);
    }
}

fn gateway_log_name(gw: &Gateway) -> String {
    let port = gw.base.rsplit(':').next().unwrap();
    format!("gateway-{port}")
}

/// A message holding one request may carry its trace as an AMQP header
/// instead of inside the item: the worker continues it all the same.
#[tokio::test]
async fn a_single_request_message_may_carry_its_trace_as_a_header() {
    let env = TestEnv::new();
    let (_worker, _) = env.ready_worker("worker-header", &[]).await;
    let gw = env.gateway(&[]).await;
    let signer = Signer2048::new();
    let id = uuid::Uuid::now_v7().hyphenated().to_string();
    let item = wire_request(&id, "by header", &signer.sign_hex(b"by header"), now_ms());
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(headers(&[("traceparent", text_header(CALLER))]));
    publish_to(
        &env.amqp_url,
        &env.queue,
        item.to_string().as_bytes(),
        properties,
    )
    .await
    .unwrap();
    let result = gw.result(&id, Duration::from_secs(20)).await;
    assert_eq!(result["valid"], true, "{result}");
    assert_eq!(result["traceId"], CALLER_TRACE, "{result}");
}

/// One span as the collector received it.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

/// A small OTLP/HTTP receiver: every span posted to `/v1/traces`.
async fn otlp_receiver() -> (String, Arc<Mutex<Vec<Span>>>) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let store = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let store = store.clone();
            async move {
                let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                    return axum::http::StatusCode::BAD_REQUEST;
                };
                let mut store = store.lock().unwrap();
                for resource in request.resource_spans {
                    let service = resource
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|kv| kv.key == "service.name")
                        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                        .map(|v| match v {
                            AnyValue::StringValue(s) => s.clone(),
                            other => format!("{other:?}"),
                        })
                        .unwrap_or_default();
                    for scope in resource.scope_spans {
                        for span in scope.spans {
                            store.push(Span {
                                service: service.clone(),
                                name: span.name,
                                trace_id: hex::encode(span.trace_id),
                                span_id: hex::encode(span.span_id),
                                parent_span_id: hex::encode(span.parent_span_id),
                            });
                        }
                    }
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, spans)
}

#[tokio::test]
async fn spans_are_exported_over_otlp_and_share_the_request_trace() {
    let (endpoint, spans) = otlp_receiver().await;
    let env = TestEnv::new();
    let otlp = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned()),
    ];
    let (_worker, _) = env.ready_worker("worker-otlp", &otlp).await;
    let gw = env.gateway(&otlp).await;
    let signer = Signer2048::new();
    let (id, answered) =
        post_traced(&gw, &body_for(&signer, "exported", false), Some(CALLER)).await;
    let (trace_id, gateway_span) = ids(&answered);
    assert_eq!(trace_id, CALLER_TRACE);
    let result = gw.result(&id, Duration::from_secs(20)).await;
    assert_eq!(result["valid"], true, "{result}");

    let of_trace = || -> Vec<Span> {
        spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == CALLER_TRACE)
            .cloned()
            .collect()
    };
    let expected = [
        ("gateway", "receive"),
        ("gateway", "publish"),
        ("gateway", "confirm"),
        ("verifier-worker", "consume"),
        ("verifier-worker", "verify"),
        ("verifier-worker", "publish_result"),
        ("verifier-worker", "ack"),
    ];
    wait_for(
        "every span of the request exported",
        Duration::from_secs(20),
        || async {
            let got = of_trace();
            expected
                .iter()
                .all(|(service, name)| got.iter().any(|s| s.service == *service && s.name == *name))
        },
    )
    .await;
    let got = of_trace();
    let span = |service: &str, name: &str| {
        got.iter()
            .find(|s| s.service == service && s.name == name)
            .unwrap()
            .clone()
    };
    // The gateway's span is the one it answered with, child of the caller's;
    // the worker's continues it; the steps nest in each process.
    let receive = span("gateway", "receive");
    assert_eq!(receive.span_id, gateway_span, "{got:?}");
    assert_eq!(receive.parent_span_id, "00f067aa0ba902b7", "{got:?}");
    let publish = span("gateway", "publish");
    assert_eq!(publish.parent_span_id, receive.span_id, "{got:?}");
    assert_eq!(span("gateway", "confirm").parent_span_id, publish.span_id);
    let consume = span("verifier-worker", "consume");
    assert_eq!(consume.parent_span_id, receive.span_id, "{got:?}");
    for step in ["verify", "publish_result", "ack"] {
        assert_eq!(
            span("verifier-worker", step).parent_span_id,
            consume.span_id,
            "{step}: {got:?}"
        );
    }
}
