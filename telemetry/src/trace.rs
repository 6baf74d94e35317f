//! W3C trace context (`traceparent`) for requests.
//!
//! Every request has a trace: the caller's (a `traceparent` header on the
//! POST) or a new one. Each process that handles the request opens a span
//! for it and passes its own `traceparent` on (gateway -> request item ->
//! worker -> result event), so the trace id is the same everywhere and
//! each span names its parent. The span's `trace_id` field is recorded, so
//! every log line inside it names the trace.
//!
//! When spans are exported (see [`crate::init`]), the ids are
//! OpenTelemetry's own for the span; otherwise they are made here with the
//! SDK's generator, so the ids the service shows and answers with are the
//! same either way. Parsing and formatting `traceparent` are the SDK's
//! [`TraceContextPropagator`]'s.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{SpanContext, TraceContextExt as _, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator as _, RandomIdGenerator};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The header (HTTP and AMQP) and the JSON field that carry the context.
pub const TRACEPARENT: &str = "traceparent";

static EXPORTING: AtomicBool = AtomicBool::new(false);

pub(crate) fn set_exporting(on: bool) {
    EXPORTING.store(on, Ordering::Relaxed);
}

/// Whether spans are exported (`OTEL_EXPORTER_OTLP_ENDPOINT` was set).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// A span for one step inside a request's span (`verify`, `ack`, ...):
/// made only when spans are exported. Otherwise the request's own span
/// (which names the request and the trace in the logs) is enough, and
/// every span a request does not need is a cost on the hot path: seven
/// spans a request cost 8 % of the throughput in the closed-loop benchmark.
pub fn step(make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if exporting() {
        make()
    } else {
        tracing::Span::none()
    }
}

/// The trace context of one request's span in this process.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace(SpanContext);

impl Trace {
    pub fn trace_id(&self) -> TraceId {
        self.0.trace_id()
    }

    /// The W3C `traceparent` naming this span as the parent of the next.
    pub fn traceparent(&self) -> String {
        let cx = Context::new().with_remote_span_context(self.0.clone());
        let mut carrier = Carrier(None);
        TraceContextPropagator::new().inject_context(&cx, &mut carrier);
        carrier.0.map(Cow::into_owned).unwrap_or_default()
    }
}

/// A carrier of the one header this module reads and writes: no map and
/// no copy of the value on the request path.
struct Carrier<'a>(Option<Cow<'a, str>>);

impl Extractor for Carrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0.as_deref()).flatten()
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

impl Injector for Carrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.0 = Some(Cow::Owned(value));
        }
    }
}

/// The span context a `traceparent` names; `None` when it is not a valid
/// one (then the request starts a new trace, as the W3C spec says).
pub fn parse(traceparent: &str) -> Option<SpanContext> {
    let carrier = Carrier(Some(Cow::Borrowed(traceparent)));
    let cx = TraceContextPropagator::new().extract(&carrier);
    let span = cx.span().span_context().clone();
    span.is_valid().then_some(span)
}

/// The trace id a `traceparent` carries, as a number (0: none).
pub fn trace_id_of(traceparent: &str) -> u128 {
    parse(traceparent).map_or(0, |span| u128::from_be_bytes(span.trace_id().to_bytes()))
}

/// Makes `span` the request's span in this process, continuing the trace
/// `parent` names (or starting one), and records its `trace_id` field
/// (declare it `tracing::field::Empty`).
pub fn enter(span: &tracing::Span, parent: Option<&str>) -> Trace {
    enter_or_start(span, parent, None)
}

/// [`enter`], starting a trace with the id `new_trace` (16 non-zero bytes,
/// random enough: a v7 UUID's are) when there is no parent to continue.
/// The gateway starts a request's trace with the request's id, so it need
/// not keep a second 16-byte id for most requests.
pub fn enter_or_start(
    span: &tracing::Span,
    parent: Option<&str>,
    new_trace: Option<[u8; 16]>,
) -> Trace {
    let parent = parent.and_then(parse);
    let context = exported_context(span, parent.as_ref()).unwrap_or_else(|| {
        let ids = RandomIdGenerator::default();
        let (trace_id, flags) = parent.as_ref().map_or_else(
            || {
                let id = new_trace
                    .map(TraceId::from_bytes)
                    .filter(|id| *id != TraceId::INVALID)
                    .unwrap_or_else(|| ids.new_trace_id());
                (id, TraceFlags::SAMPLED)
            },
            |p| (p.trace_id(), p.trace_flags()),
        );
        SpanContext::new(
            trace_id,
            ids.new_span_id(),
            flags,
            false,
            TraceState::default(),
        )
    });
    span.record("trace_id", tracing::field::display(context.trace_id()));
    Trace(context)
}

/// The span's OpenTelemetry context, when spans are exported.
fn exported_context(span: &tracing::Span, parent: Option<&SpanContext>) -> Option<SpanContext> {
    if !exporting() {
        return None;
    }
    if let Some(parent) = parent {
        let _ = span.set_parent(Context::new().with_remote_span_context(parent.clone()));
    }
    let context = span.context().span().span_context().clone();
    context.is_valid().then_some(context)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_a_valid_traceparent_and_starts_one_otherwise() {
        let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let trace = enter(&tracing::Span::none(), Some(given));
        assert_eq!(
            trace.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let ours = trace.traceparent();
        assert!(
            ours.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{ours}"
        );
        assert!(ours.ends_with("-01"), "{ours}");
        assert_ne!(ours, given, "a span of its own");
        assert_eq!(parse(&ours).map(|s| s.trace_id()), Some(trace.trace_id()));
        assert_eq!(trace_id_of(&ours), 0x4bf92f3577b34da6a3ce929d0e0e4736);

        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
            let fresh = enter(&tracing::Span::none(), Some(bad));
            assert_ne!(fresh.trace_id(), TraceId::INVALID);
            assert_eq!(trace_id_of(bad), 0);
        }
        let a = enter(&tracing::Span::none(), None);
        let b = enter(&tracing::Span::none(), None);
        assert_ne!(a.trace_id(), b.trace_id());
        // A new trace may take a given id; a parent wins over it.
        let id = [7u8; 16];
        let started = enter_or_start(&tracing::Span::none(), None, Some(id));
        assert_eq!(started.trace_id().to_bytes(), id);
        let continued = enter_or_start(&tracing::Span::none(), Some(given), Some(id));
        assert_eq!(
            continued.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }
}
