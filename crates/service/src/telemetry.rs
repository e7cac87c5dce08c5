//! Telemetry: log lines, traces and metrics. None of them ever carries PHI: no body, query
//! string, concrete path or identifier; requests are named by their route pattern
//! (`/fhir/Task/{id}`), method, resource type and status.
//!
//! - Logs: JSON lines (or text) on stderr, one per request and one per notable event; with
//!   tracing on, each line carries the current `openTelemetry.traceId`/`spanId`.
//! - Traces: a server span per request (`observe`), spans for the domain checks (service) and
//!   each database call (persistence). Exported over OTLP/HTTP only when the standard
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set; otherwise no span is
//!   even created (the spans' callsites are disabled), so tracing costs nothing.
//! - Metrics: `metrics.rs`.

use std::time::Instant;

use crate::config::{otlp_configured, Signal};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::field::Empty;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::metrics::{Metrics, RequestLabels};

/// What `init` set up and `shutdown` flushes: the OTLP trace pipeline, when configured.
#[must_use = "call shutdown() before exiting, or the last spans are lost"]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flush and stop the trace exporter (spans still queued are sent).
    pub fn shutdown(self) {
        if let Some(provider) = self.tracer {
            if let Err(err) = provider.shutdown() {
                tracing::warn!(error = %err, "the trace exporter did not shut down cleanly");
            }
        }
    }
}

/// Install the global subscriber (once; later calls are ignored) and, when the `OTEL_*`
/// variables ask for it, the OTLP trace exporter. The log filter comes from `CAREPLAN_LOG`
/// (default `info`), the format from `CAREPLAN_LOG_FORMAT` (`json` or `text`).
pub fn init() -> Telemetry {
    let tracer = if otlp_configured(Signal::Traces) {
        match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
            Ok(exporter) => Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(crate::metrics::resource())
                    .build(),
            ),
            Err(err) => {
                // No subscriber yet: say it on stderr, once, and run without traces.
                eprintln!("careplan: traces are not exported: cannot build the OTLP exporter: {err}");
                None
            }
        }
    } else {
        None
    };
    let text = crate::config::log_as_text();
    let filter = crate::config::log_directives()
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    install(filter, std::io::stderr, text, tracer.as_ref().map(|provider| provider.tracer("careplan")));
    Telemetry { tracer }
}

/// The subscriber: log lines filtered by `filter` into `writer`, and, with a tracer, spans into
/// it. Returns false when a subscriber was already installed.
///
/// Every filter is global (none per layer): tracing-subscriber's per-layer filters lose track
/// of which layer wants a span when another span on the same thread was refused by all of
/// them (sea-orm's trace spans are, constantly), and then drop ours at random.
fn install<W>(filter: EnvFilter, writer: W, text: bool, tracer: Option<SdkTracer>) -> bool
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // sea-orm's own spans and events carry statements with their values: PHI. Never below
    // info, whatever CAREPLAN_LOG says.
    let filter = ["sea_orm=info", "sea_orm_migration=info"]
        .into_iter()
        .filter_map(|directive| directive.parse().ok())
        .fold(filter, EnvFilter::add_directive);
    let logs = if text {
        tracing_subscriber::fmt::layer().with_writer(writer).boxed()
    } else {
        json_subscriber::fmt::layer()
            .with_writer(writer)
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_opentelemetry_ids(true)
            .boxed()
    };
    // Without tracing, no span is ever built: their callsites are disabled, so they cost
    // nothing. With tracing, the log lines name the current trace and span.
    let events_only = tracer.is_none().then(|| filter_fn(|metadata| metadata.is_event()));
    let spans = tracer.map(|tracer| {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        // Parents come from the tracing span tree, not a thread-local OpenTelemetry context
        // (which async tasks interleaving on one worker thread would mix up).
        tracing_opentelemetry::layer().with_tracer(tracer).with_context_activation(false)
    });
    tracing_subscriber::registry().with(filter).with(events_only).with(logs).with(spans).try_init().is_ok()
}

/// Reads the W3C `traceparent`/`tracestate` headers of a request.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// Middleware: the request's server span (child of the caller's `traceparent`, if any), its
/// metrics, and one log line; all named by the route pattern, never the concrete path.
pub(crate) async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    // The route table entry, looked up once (matching the path costs regex work): the
    // authentication, audit and header middleware read it from the request extensions.
    let matched = crate::route::Matched::of(req.request());
    req.extensions_mut().insert(matched);
    let route = matched.name();
    let resource_type = matched.at.map_or("none", crate::route::Route::telemetry_type);
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let span = tracing::info_span!(
        target: "careplan::http",
        "request",
        otel.name = Empty,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = Empty,
        fhir.resource_type = %resource_type,
    );
    if !span.is_disabled() {
        span.record("otel.name", format!("{method} {route}"));
        let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(req.headers())));
        // A malformed or absent traceparent leaves the span a root: nothing to report.
        let _ = span.set_parent(parent);
    }
    let result = next.call(req).instrument(span.clone()).await;
    let status = match &result {
        Ok(response) => response.status(),
        Err(err) => err.as_response_error().status_code(),
    };
    let elapsed = started.elapsed();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    if let Some(metrics) = metrics {
        metrics
            .record(&RequestLabels { method: method.as_str(), route, resource_type, status: status.as_u16() }, elapsed);
    }
    span.in_scope(|| {
        tracing::info!(
            target: "careplan::http",
            method = %method,
            route = %route,
            status = status.as_u16(),
            elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            "request"
        );
    });
    result
}

/// For tests (feature `testing`): spans into an in-memory exporter and log lines into a buffer,
/// so a test can look at everything the server emitted. Installed once per process; every
/// server in the process reports into it.
#[cfg(feature = "testing")]
pub mod testing {
    use std::io::Write;
    use std::sync::{Arc, Mutex, OnceLock};

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::EnvFilter;

    /// What the process emitted since `capture()` was first called.
    pub struct Capture {
        spans: InMemorySpanExporter,
        logs: Logs,
        _provider: SdkTracerProvider,
    }

    impl Capture {
        /// Every finished span.
        pub fn spans(&self) -> Vec<SpanData> {
            self.spans.get_finished_spans().unwrap_or_default()
        }

        /// Every log line, JSON.
        pub fn logs(&self) -> String {
            String::from_utf8_lossy(&self.logs.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
        }
    }

    /// Install the capturing subscriber (at `info`, as in production), or return the one
    /// installed. Panics if another subscriber was installed first.
    pub fn capture() -> &'static Capture {
        static CAPTURE: OnceLock<Capture> = OnceLock::new();
        CAPTURE.get_or_init(|| {
            let spans = InMemorySpanExporter::default();
            // Simple processor: a span is in the exporter as soon as it ends.
            let provider = SdkTracerProvider::builder()
                .with_simple_exporter(spans.clone())
                .with_resource(crate::metrics::resource())
                .build();
            let logs = Logs::default();
            let installed =
                super::install(EnvFilter::new("info"), logs.clone(), false, Some(provider.tracer("careplan")));
            assert!(installed, "another tracing subscriber was installed first");
            Capture { spans, logs, _provider: provider }
        })
    }

    /// A shared, growing log buffer.
    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);

    impl Write for Logs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Logs {
        type Writer = Logs;

        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }
}
