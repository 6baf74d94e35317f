//! telemetry: what both binaries tell about themselves.
//!
//! - Logs through `tracing` (`RUST_LOG`, default `info`), as text or, with
//!   `LOG_FORMAT=json`, one JSON object a line; a line logged inside a
//!   request's span carries that span's `request_id` and `trace_id` (in
//!   `spans`, the spans it is in, outermost first; `span` is the innermost).
//! - Metrics: the process-wide Prometheus recorder ([`metrics_handle`]).
//! - Traces ([`trace`]): W3C trace context for every request, and, only
//!   when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans exported over OTLP
//!   (HTTP, protobuf) by a batch exporter on its own thread. Without it no
//!   OpenTelemetry layer is installed at all: nothing is recorded for
//!   export and nothing slows down.

pub mod trace;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("LOG_FORMAT must be `text` or `json`, not {0:?}")]
    LogFormat(String),
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Keeps the span exporter; flushes what it holds when dropped (or at
/// [`Telemetry::shutdown`]).
#[must_use = "dropping it stops span export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered and stops the exporter.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                tracing::warn!(error = %e, "spans not all exported at shutdown");
            }
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The environment variables this crate reads (besides the other
/// `OTEL_*` variables the OpenTelemetry SDK and exporter read themselves).
pub const ENV_VARS: &[&str] = &["RUST_LOG", "LOG_FORMAT", "OTEL_EXPORTER_OTLP_ENDPOINT"];

/// The crates whose spans are exported (not the AMQP client's own).
const TRACED_TARGETS: &[&str] = &["gateway", "verifier_worker", "broker"];

/// Installs the log subscriber, the metrics recorder and, when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set, the OTLP span exporter for
/// `service` (its `service.name`). Call first thing, so no metric recorded
/// at startup is lost.
pub fn init(service: &'static str) -> Result<Telemetry, InitError> {
    let json = match std::env::var("LOG_FORMAT").as_deref() {
        Err(_) | Ok("") | Ok("text") => false,
        Ok("json") => true,
        Ok(other) => return Err(InitError::LogFormat(other.to_owned())),
    };
    let filter = log_filter();
    let provider = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => Some(otlp_provider(service)?),
        _ => None,
    };
    let otel = provider.as_ref().map(|provider| {
        let targets = TRACED_TARGETS.iter().fold(Targets::new(), |t, name| {
            t.with_target(*name, LevelFilter::INFO)
        });
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(service))
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_filter(targets)
    });
    let text = (!json).then(tracing_subscriber::fmt::layer);
    let json = json.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
    });
    // Fails only if a subscriber is already installed (tests running
    // several apps in one process).
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .with(otel)
        .try_init();
    trace::set_exporting(provider.is_some());
    metrics_handle();
    Ok(Telemetry { provider })
}

/// The `RUST_LOG` filter. A plain list of `target=level` directives (the
/// usual case) becomes a static [`Targets`] filter; only directives that
/// filter on spans or fields need [`EnvFilter`], which looks every span up
/// behind a lock each time it is entered or left: on the request path that
/// cost several microseconds a request.
///
/// [`EnvFilter`]: tracing_subscriber::EnvFilter
fn log_filter() -> Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync> {
    let directives = std::env::var("RUST_LOG").unwrap_or_default();
    let directives = if directives.trim().is_empty() {
        "info"
    } else {
        directives.as_str()
    };
    match directives.parse::<Targets>() {
        Ok(targets) => Box::new(targets),
        Err(_) => Box::new(tracing_subscriber::EnvFilter::new(directives)),
    }
}

/// A tracer provider exporting over OTLP/HTTP to the endpoint (and with
/// the headers, timeout, ...) the standard `OTEL_EXPORTER_OTLP_*`
/// variables name.
fn otlp_provider(service: &'static str) -> Result<SdkTracerProvider, InitError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Latency buckets in seconds, 1 ms to 30 s (the longest long-poll).
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed (tests running
            // several apps in one process); the handle still renders.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
