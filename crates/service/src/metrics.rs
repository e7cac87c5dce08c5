//! Metrics: requests (a counter and a latency histogram) by route pattern, method, resource
//! type and status, and the database pools' connections. Recorded through the OpenTelemetry
//! SDK; served as Prometheus text at `GET /metrics`, and pushed over OTLP/HTTP as well when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._METRICS_ENDPOINT`) is set. Labels are closed sets
//! (patterns, methods, types, statuses): no id, path, query or body ever becomes one.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use anyhow::Context;
use opentelemetry::metrics::{Counter, Histogram, MeterProvider as _, ObservableGauge};
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use persistence::Store;
use prometheus::{Encoder, TextEncoder};

use crate::config::{otlp_configured, Signal};
use crate::error::ApiError;

/// The instruments of one server, and where they are read.
pub(crate) struct Metrics {
    provider: SdkMeterProvider,
    registry: prometheus::Registry,
    requests: Counter<u64>,
    duration: Histogram<f64>,
    /// Observed at collection time; kept so their callbacks live as long as the server.
    _pools: [ObservableGauge<u64>; 2],
}

/// What a request is counted by.
pub(crate) struct RequestLabels<'a> {
    pub(crate) method: &'a str,
    /// The route pattern (`/fhir/Task/{id}`), or `unmatched`.
    pub(crate) route: &'a str,
    pub(crate) resource_type: &'a str,
    pub(crate) status: u16,
}

/// Latency buckets in seconds (the OpenTelemetry HTTP semantic conventions' advice).
const BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];

impl Metrics {
    /// The instruments, read by a Prometheus registry and, when configured, an OTLP exporter.
    pub(crate) fn new(store: &Store) -> anyhow::Result<Self> {
        let registry = prometheus::Registry::new();
        let prometheus = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()
            .context("cannot set up the Prometheus exporter")?;
        let mut builder = SdkMeterProvider::builder().with_resource(resource()).with_reader(prometheus);
        if otlp_configured(Signal::Metrics) {
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .build()
                .context("cannot build the OTLP metric exporter")?;
            // Every OTEL_METRIC_EXPORT_INTERVAL (default 60 s), on a thread of its own.
            builder = builder.with_reader(PeriodicReader::builder(exporter).build());
        }
        let provider = builder.build();
        let meter = provider.meter("careplan");
        let requests = meter
            .u64_counter("careplan.http.requests")
            .with_description("HTTP requests answered, by route pattern, method, resource type and status")
            .build();
        let duration = meter
            .f64_histogram("http.server.request.duration")
            .with_unit("s")
            .with_description("Time to answer an HTTP request, by route pattern, method, resource type and status")
            .with_boundaries(BUCKETS.to_vec())
            .build();
        let used = store.clone();
        let connections = meter
            .u64_observable_gauge("db.client.connection.count")
            .with_description("Open database connections by pool and state (idle or used)")
            .with_callback(move |observer| {
                for pool in used.pool_usage() {
                    let name = KeyValue::new("db.client.connection.pool.name", pool.name);
                    let idle = u64::from(pool.idle);
                    let busy = u64::from(pool.size.saturating_sub(pool.idle));
                    observer.observe(idle, &[name.clone(), KeyValue::new("db.client.connection.state", "idle")]);
                    observer.observe(busy, &[name, KeyValue::new("db.client.connection.state", "used")]);
                }
            })
            .build();
        let limits = store.clone();
        let max = meter
            .u64_observable_gauge("db.client.connection.max")
            .with_description("The most connections each database pool may open")
            .with_callback(move |observer| {
                for pool in limits.pool_usage() {
                    observer
                        .observe(u64::from(pool.max), &[KeyValue::new("db.client.connection.pool.name", pool.name)]);
                }
            })
            .build();
        Ok(Self { provider, registry, requests, duration, _pools: [connections, max] })
    }

    /// Count one answered request.
    pub(crate) fn record(&self, labels: &RequestLabels<'_>, elapsed: Duration) {
        let attributes = [
            KeyValue::new("http.request.method", labels.method.to_owned()),
            KeyValue::new("http.route", labels.route.to_owned()),
            KeyValue::new("fhir.resource_type", labels.resource_type.to_owned()),
            KeyValue::new("http.response.status_code", i64::from(labels.status)),
        ];
        self.requests.add(1, &attributes);
        self.duration.record(elapsed.as_secs_f64(), &attributes);
    }

    /// Everything in the Prometheus text exposition format.
    fn render(&self) -> anyhow::Result<String> {
        let mut text = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut text)?;
        Ok(String::from_utf8(text)?)
    }

    /// Push what is pending over OTLP and stop the readers.
    pub(crate) fn shutdown(&self) {
        if let Err(err) = self.provider.shutdown() {
            tracing::warn!(error = %err, "the metrics pipeline did not shut down cleanly");
        }
    }
}

/// `GET /metrics`: the Prometheus text exposition (version 0.0.4).
pub(crate) async fn serve(metrics: web::Data<Metrics>) -> Result<HttpResponse, ApiError> {
    let text = metrics.render().map_err(ApiError::Internal)?;
    Ok(HttpResponse::Ok().content_type(prometheus::TEXT_FORMAT).body(text))
}

/// The resource every signal is tagged with: `service.name` is `careplan` unless
/// `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` say otherwise.
pub(crate) fn resource() -> opentelemetry_sdk::Resource {
    let builder = opentelemetry_sdk::Resource::builder();
    if crate::config::otel_service_named() {
        builder.build()
    } else {
        builder.with_service_name("careplan").build()
    }
}
