//! Routes. Where a request enters: [`submit`]; where its status is read:
//! [`status`]; what the dashboard (`/dashboard`) polls: [`stats`],
//! [`workers`], [`failures`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use verify_core::{Payload, RequestId};

use super::error::{ApiError, RETRY_AFTER_SECS};
use super::metrics::RequestCounters;
use super::submit;
use crate::amqp::events::Projection;
use crate::amqp::submit::{SubmitError, Submitter};
use crate::auth::{Guard, Tenant, Tokens};
use crate::idempotency::KeyLocks;
use crate::stats::LiveStats;
use crate::store::{KeyUse, Origin, Status, Store};
use crate::workers::Workers;

/// Health paths (compose.yaml's health checks use them; a test holds the two together).
pub const HEALTH_PATH: &str = "/healthz";
pub const READY_PATH: &str = "/readyz";

/// Longest long-poll a client may ask for, in seconds.
pub const MAX_WAIT_SECS: f64 = 30.0;

/// Everything the handlers share, behind one `Arc` (axum clones the state
/// for every call).
#[derive(Clone)]
pub struct AppState(Arc<App>);

impl AppState {
    pub fn new(app: App) -> Self {
        AppState(Arc::new(app))
    }
}

impl std::ops::Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

pub struct App {
    pub store: Arc<Store>,
    /// Live workers, from their heartbeats.
    pub workers: Arc<Workers>,
    /// Live figures for /api/stats.
    pub stats: Arc<LiveStats>,
    pub submitter: Submitter,
    pub projection: Arc<Projection>,
    pub docs_dir: Option<PathBuf>,
    pub body_limit: usize,
    /// Largest request message the broker takes.
    pub max_message_bytes: usize,
    /// Whether RSA and ECDSA requests travel as digests (`SEND_DIGESTS`).
    pub send_digests: bool,
    /// Idempotency keys whose first request is in flight here.
    pub idempotency: Arc<KeyLocks>,
    /// Longest a POST waits for another with its key (then 409).
    pub idempotency_wait: Duration,
    /// Cancelled at shutdown: long-polls answer at once.
    pub shutdown: CancellationToken,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Tokens and rate limits of `/api/*`.
    pub guard: Arc<Guard>,
    /// What `/metrics` requires, if anything.
    pub metrics_token: Option<Arc<Tokens>>,
    /// POSTs being submitted at once (`MAX_IN_FLIGHT` permits).
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// `MAX_IN_FLIGHT`: the permits `in_flight` was made with.
    pub max_in_flight: usize,
    /// Longest a client may take to send a body.
    pub body_timeout: Duration,
    /// Longest any call may take before it is answered 503 `timeout`.
    pub request_timeout: Duration,
}

impl App {
    /// The tenant whose requests a caller may see: `None` on an open
    /// gateway (every caller sees every request).
    fn owner<'a>(&self, tenant: &'a Tenant) -> Option<&'a str> {
        (!self.guard.is_open()).then(|| tenant.name())
    }
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.body_limit;
    // Every /api/* call is admitted first: its token (401), its rate (429).
    let api = Router::new()
        .route(
            "/api/signature",
            post(submit).layer(axum::middleware::from_fn_with_state(
                state.in_flight.clone(),
                limit_in_flight,
            )),
        )
        .route("/api/signature/{id}", get(status))
        .route("/api/signature/{id}/events", get(timeline))
        .route("/api/workers", get(workers))
        .route("/api/keys", get(keys))
        .route("/api/stats", get(stats))
        .route("/api/failures", get(failures));
    // An open gateway without rate limits admits every call as it is.
    let api = if state.guard.admits_all() {
        api
    } else {
        api.route_layer(axum::middleware::from_fn_with_state(
            state.guard.clone(),
            crate::auth::require,
        ))
    };
    Router::new()
        .merge(api)
        .route("/dashboard", get(super::dashboard::page))
        .route(HEALTH_PATH, get(|| async { "ok" }))
        .route(READY_PATH, get(ready))
        .route("/metrics", get(render_metrics))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            state.body_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Calls {
                limit: state.request_timeout,
                counters: Arc::default(),
            },
            time_limit_and_count,
        ))
        .with_state(state)
}

#[derive(serde::Serialize)]
struct Accepted {
    id: RequestId,
    status: &'static str,
}

/// The W3C trace context header, read and answered on POST.
const TRACEPARENT: &str = telemetry::trace::TRACEPARENT;

/// Header a client may set so a retried POST returns the first id.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Admits a POST while fewer than `MAX_IN_FLIGHT` are being submitted;
/// otherwise answers 503 `overloaded` before the body is read. The permit
/// is held until the answer is ready.
async fn limit_in_flight(
    State(in_flight): State<Arc<tokio::sync::Semaphore>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Ok(_permit) = in_flight.try_acquire() else {
        metrics::counter!("gateway_refused_total", "reason" => "overloaded").increment(1);
        return ApiError::Unavailable {
            code: "overloaded",
            message:
                "this gateway is submitting as many requests as it may (MAX_IN_FLIGHT); retry later"
                    .into(),
        }
        .into_response();
    };
    next.run(request).await
}

/// What every call goes through (one layer: each layer costs every call
/// a clone of the service beneath it).
#[derive(Clone)]
struct Calls {
    limit: Duration,
    counters: Arc<RequestCounters>,
}

/// A backstop: a call not answered within REQUEST_TIMEOUT is answered 503
/// `timeout` (every handler bounds its own waits well under the default,
/// long-polls at 30 s). A submission already under way still runs to its
/// end, so a POST answered this way may have been accepted: a retry with
/// the same `Idempotency-Key` finds out. Every call, answered either way,
/// is counted by its route and status.
async fn time_limit_and_count(
    State(calls): State<Calls>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let started = std::time::Instant::now();
    let limit = calls.limit;
    let response = match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("gateway_timed_out_total").increment(1);
            tracing::warn!(?limit, "call answered 503 timeout (REQUEST_TIMEOUT)");
            ApiError::Unavailable {
                code: "timeout",
                message: "the call took longer than this gateway allows (REQUEST_TIMEOUT); a POST may still have been accepted: retry it with the same Idempotency-Key".into(),
            }
            .into_response()
        }
    };
    calls.counters.count(
        route.as_ref().map(MatchedPath::as_str),
        response.status(),
        started.elapsed(),
    );
    response
}

/// `POST /api/signature`, in the request's `receive` span: it continues
/// the caller's `traceparent` (or starts a trace) and answers with its own.
async fn submit(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let span = tracing::info_span!(
        "receive",
        request_id = tracing::field::Empty,
        trace_id = tracing::field::Empty
    );
    let parent = headers.get(TRACEPARENT).and_then(|v| v.to_str().ok());
    // A new trace takes the request's id as its trace id (see the store).
    let id = RequestId::new();
    let trace = telemetry::trace::enter_or_start(&span, parent, Some(*id.as_uuid().as_bytes()));
    let traceparent = trace.traceparent();
    // A body refused unread (over the limit, or broken off) leaves the rest
    // of it on the connection, so hyper closes the connection after this
    // answer, whatever the answer (a 413, or a 415 checked first). Saying so
    // keeps keep-alive clients from sending their next request into it
    // (found by tests/integration/hostile.rs).
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let body = if submit::is_json(content_type) {
        submit::read_body(body, &headers, state.body_limit)
            .instrument(span.clone())
            .await
    } else {
        Err(ApiError::UnsupportedMediaType)
    };
    let body_unread = body.is_err();
    let mut response = match body {
        Ok(body) => accept(state, tenant, id, headers, body, &span, traceparent.clone())
            .instrument(span.clone())
            .await
            .into_response(),
        Err(refused) => refused.into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(&traceparent) {
        response.headers_mut().insert(TRACEPARENT, value);
    }
    if body_unread {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

#[allow(clippy::too_many_arguments)]
async fn accept(
    state: AppState,
    tenant: Tenant,
    id: RequestId,
    headers: HeaderMap,
    body: Bytes,
    span: &tracing::Span,
    traceparent: String,
) -> Result<Response, ApiError> {
    let idempotency_key = headers
        .get(IDEMPOTENCY_KEY)
        .map(|v| {
            v.to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .map(str::to_owned)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_idempotency_key",
                        "Idempotency-Key must be 1 to 255 visible ASCII characters",
                    )
                })
        })
        .transpose()?;

    let mut request = submit::parse(id, &body, state.docs_dir.as_deref(), state.body_limit).await?;
    drop(body);
    if state.send_digests {
        request = request.digested();
    }
    span.record("request_id", tracing::field::display(request.id));
    request.traceparent = Some(traceparent);
    let encoded = Bytes::from(request.encode());
    let fingerprint = request.fingerprint();
    // From here the payload travels in `encoded` only: a document's parsed
    // copy is freed before the message is handed to the broker client.
    request.payload = Payload::Document(Vec::new());
    // A message carries its requests in a JSON array: two more bytes.
    if encoded.len() + 2 > state.max_message_bytes {
        return Err(ApiError::MessageTooLarge {
            size: encoded.len() + 2,
            limit: state.max_message_bytes,
        });
    }
    let owner = state.owner(&tenant).map(str::to_owned);
    // A key is the tenant's own: the same key from two tokens is two keys.
    let idempotency_key = match (&owner, idempotency_key) {
        (Some(owner), Some(key)) => Some(format!("{owner}:{key}")),
        (_, key) => key,
    };
    // One request per key in flight on this gateway; the others wait for it.
    let key_guard = match &idempotency_key {
        None => None,
        Some(key) => {
            let guard = state
                .idempotency
                .lock(key, state.idempotency_wait)
                .await
                .ok_or(ApiError::IdempotencyConflict)?;
            match state.store.idempotency_key(key, &fingerprint) {
                KeyUse::Same(id) => return Ok(accepted(id)),
                KeyUse::Other(_) => return Err(ApiError::IdempotencyKeyReused),
                KeyUse::Unused => Some(guard),
            }
        }
    };
    // From here the submission runs to its end even if the client goes
    // away: once the request may be in the queue, its id, its key and its
    // `accepted` event must be recorded (a retry then finds the key).
    let id = request.id;
    // The spawned submission stays in the request's span (its log lines
    // name the request) or, when spans are exported, in `publish` inside it.
    let publish =
        telemetry::trace::step(|| tracing::info_span!(parent: span, "publish")).or_current();
    let submission = {
        let state = state.clone();
        tokio::spawn(
            async move {
                let _key_guard = key_guard;
                let event = state
                    .submitter
                    .submit(&request, encoded, fingerprint, idempotency_key, owner)
                    .await?;
                metrics::counter!("gateway_accepted_total").increment(1);
                tracing::debug!("accepted");
                // Read-your-write: this gateway knows the id (and the key) before
                // the stream echoes the event.
                state.store.apply(&event, Origin::Local);
                Ok::<_, SubmitError>(())
            }
            .instrument(publish),
        )
    };
    let refused = match submission.await {
        Ok(Ok(())) => return Ok(accepted(id)),
        Ok(Err(e)) => e,
        Err(aborted) => SubmitError::Aborted(aborted),
    };
    let (code, reason, why) = match &refused {
        SubmitError::QueueFull => ("queue_full", "queue_full", "the request queue is full"),
        SubmitError::Disconnected => (
            "broker_unavailable",
            "disconnected",
            "the gateway is not connected to the broker",
        ),
        SubmitError::Broker(_) | SubmitError::Aborted(_) => (
            "broker_unavailable",
            "broker_error",
            "the broker did not confirm the request",
        ),
    };
    metrics::counter!("gateway_refused_total", "reason" => reason).increment(1);
    // The details stay in the log (with the request id), not in the answer.
    tracing::warn!(error = %refused, "request not accepted");
    Err(ApiError::Unavailable {
        code,
        message: format!("the request was not accepted: {why}; retry after {RETRY_AFTER_SECS} s"),
    })
}

fn accepted(id: RequestId) -> Response {
    let location = format!("/api/signature/{id}");
    let mut response = (
        StatusCode::ACCEPTED,
        Json(Accepted {
            id,
            status: "pending",
        }),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// The id of a request path: a hyphenated UUID, else 400 `invalid_id`.
fn parse_id(id: &str) -> Result<RequestId, ApiError> {
    RequestId::parse(id).map_err(|e| ApiError::bad_request("invalid_id", e.to_string()))
}

#[derive(Deserialize)]
struct StatusQuery {
    wait: Option<String>,
}

async fn status(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
    Query(query): Query<StatusQuery>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let wait = match query.wait.as_deref() {
        None => 0.0,
        Some(s) => s
            .parse::<f64>()
            .ok()
            .filter(|w| w.is_finite() && (0.0..=MAX_WAIT_SECS).contains(w))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_wait",
                    format!("wait must be a number of seconds from 0 to {MAX_WAIT_SECS}"),
                )
            })?,
    };
    let owner = state.owner(&tenant);
    if owner.is_some() && state.store.contains(&id) && !state.store.belongs_to(&id, owner) {
        // Another tenant's request: answered exactly as an unknown id.
        if wait > 0.0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(wait)) => {}
                _ = state.shutdown.cancelled() => {}
            }
        }
        return Err(ApiError::NotFound);
    }
    let status = if wait > 0.0 {
        let stop = state.shutdown.clone();
        let _held = LongPoll::start();
        state
            .store
            .wait(&id, Duration::from_secs_f64(wait), async move {
                stop.cancelled().await
            })
            .await
    } else {
        state.store.get(&id)
    };
    let status = status
        .filter(|_| state.store.belongs_to(&id, owner))
        .ok_or(ApiError::NotFound)?;
    let trace_id = state.store.trace_id(&id);
    Ok(Json(StatusBody {
        id,
        status,
        trace_id,
    })
    .into_response())
}

/// Counts held long-polls in `gateway_long_polls`, also when the client
/// goes away mid-wait (the handler is dropped, and so is this guard).
struct LongPoll(metrics::Gauge);

impl LongPoll {
    fn start() -> Self {
        let gauge = metrics::gauge!("gateway_long_polls");
        gauge.increment(1.0);
        LongPoll(gauge)
    }
}

impl Drop for LongPoll {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusBody {
    id: RequestId,
    #[serde(flatten)]
    status: Status,
    /// The request's W3C trace id.
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
}

/// A request's steps, oldest first: who accepted it, who answered it, on
/// which delivery, after how long a wait; dead letters.
async fn timeline(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let events = state
        .store
        .timeline(&id)
        .filter(|_| state.store.belongs_to(&id, state.owner(&tenant)))
        .ok_or(ApiError::NotFound)?;
    Ok(Json(serde_json::json!({ "id": id, "events": events })).into_response())
}

/// Service-wide figures: rates, latencies, the queue, workers online.
async fn stats(State(state): State<AppState>) -> Response {
    Json(state.stats.snapshot(state.workers.online())).into_response()
}

/// The last failures and dead letters seen live, newest first.
/// Recent failures: with tokens, only the caller's own requests.
async fn failures(State(state): State<AppState>, tenant: Tenant) -> Response {
    let owner = state.owner(&tenant);
    let failures: Vec<_> = state
        .stats
        .recent_failures()
        .into_iter()
        .filter(|f| state.store.belongs_to(&f.id, owner))
        .collect();
    Json(serde_json::json!({ "failures": failures })).into_response()
}

/// Every worker heard of within the retention, online or not.
async fn workers(State(state): State<AppState>) -> Response {
    Json(serde_json::json!({ "workers": state.workers.list() })).into_response()
}

/// The keys the online workers serve, from their heartbeats.
async fn keys(State(state): State<AppState>) -> Response {
    Json(serde_json::json!({ "keys": state.workers.keys() })).into_response()
}

async fn ready(State(state): State<AppState>) -> Response {
    let publishing = state.submitter.is_ready();
    let consuming = state.projection.is_ready();
    let body = serde_json::json!({ "publishing": publishing, "consuming": consuming });
    let code = if publishing && consuming && !state.shutdown.is_cancelled() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn render_metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(tokens) = &state.metrics_token {
        if crate::auth::bearer(&headers)
            .and_then(|t| tokens.tenant(t))
            .is_none()
        {
            return ApiError::Unauthorized.into_response();
        }
    }
    metrics::gauge!("gateway_pending").set(state.store.pending() as f64);
    metrics::gauge!("gateway_store_entries").set(state.store.len() as f64);
    metrics::gauge!("gateway_workers_online").set(state.workers.online() as f64);
    // POSTs holding a MAX_IN_FLIGHT permit now, read at scrape time.
    let submitting = state
        .max_in_flight
        .saturating_sub(state.in_flight.available_permits());
    metrics::gauge!("gateway_submitting").set(submitting as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
