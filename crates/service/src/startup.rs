//! `Application`: build the server from `Settings` (connect, migrate, bind) and run it until
//! stopped. Tests bind port 0 and read the chosen port back.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::{from_fn, Compat, Condition};
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use persistence::Store;

use crate::audit::{self, Auditor};
use crate::auth::{self, Authenticator};
use crate::config::Settings;
use crate::export::Exporter;
use crate::jobs::Jobs;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::subscriptions::dispatch::Dispatcher;
use crate::subscriptions::Matcher;
use crate::{hardening, routes, telemetry, timeout};

/// A built, bound, not yet running server, and its background jobs.
pub struct Application {
    port: u16,
    server: Server,
    audit: audit::Drain,
    jobs: Jobs,
    /// The overdue job on its timer, when enabled; stopped with the server.
    overdue: Option<tokio::task::JoinHandle<()>>,
    dispatcher: Dispatcher,
    /// The notification dispatcher on its timer, when enabled; stopped with the server.
    dispatching: Option<tokio::task::JoinHandle<()>>,
    exporter: Exporter,
    /// The bulk exporter on its timer, when enabled; stopped with the server.
    exporting: Option<tokio::task::JoinHandle<()>>,
    metrics: web::Data<Metrics>,
}

impl Application {
    /// Connect to the database (failing fast if it is unreachable), apply migrations unless
    /// told not to, and bind the listener.
    pub async fn build(mut settings: Settings) -> anyhow::Result<Self> {
        let matcher = Matcher::default();
        let wake = matcher.committed.clone();
        settings.database.statement_timeout = Some(settings.statement_timeout());
        settings.search_limits = settings.search_limits.capped();
        let store = Store::connect(&settings.database)
            .await
            .with_context(|| format!("cannot connect to the database {}", settings.database.redacted_url()))?
            .with_announcer(std::sync::Arc::new(matcher));
        if settings.migrate {
            store.migrate().await.context("cannot apply database migrations")?;
        }
        let listener =
            TcpListener::bind(&settings.addr).with_context(|| format!("cannot listen on {}", settings.addr))?;
        let port = listener.local_addr()?.port();
        let workers = settings.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
        let request_timeout = settings.request_timeout;
        let max_body = settings.max_body_bytes;
        let authenticator = web::Data::new(Authenticator::new(&settings.auth).await?);
        let (auditor, audit) = Auditor::start(store.clone(), &settings.audit);
        let auditor = web::Data::from(auditor);
        let limiter = settings.hardening.rate_limit.map(|limit| web::Data::from(hardening::Limiter::new(limit)));
        let header_limit = web::Data::new(hardening::HeaderLimit(settings.hardening.max_header_bytes));
        let hardening = settings.hardening.clone();
        let jobs = Jobs::new(store.clone(), settings.provenance);
        let notify_base = settings.base_url.clone().unwrap_or_else(|| format!("http://127.0.0.1:{port}/fhir"));
        let dispatcher = Dispatcher::new(store.clone(), settings.subscriptions.clone(), notify_base, wake)?;
        let exports = std::sync::Arc::new(tokio::sync::Notify::new());
        let exporter = Exporter::new(store.clone(), settings.export.clone(), settings.search_limits, exports.clone());
        let metrics = web::Data::new(Metrics::new(&store)?);
        let shutdown_grace = settings.shutdown_grace;
        let overdue_interval = settings.overdue_interval;
        let state = web::Data::new(AppState { store, settings, capabilities: Default::default(), exports });
        if let Some(base) = &state.settings.base_url {
            // Rendered now, so the first client does not pay for it.
            crate::capabilities::rendered(&state, base.trim_end_matches('/'));
        }
        // What changes only with the build is rendered once, beside start-up rather than in it.
        std::thread::spawn(|| {
            crate::openapi::prerender();
            crate::capabilities::prerender();
            crate::subscriptions::operations::prerender();
        });
        let app_metrics = metrics.clone();
        let server = HttpServer::new(move || {
            let cors = hardening::cors(&hardening);
            // Innermost first: the last `wrap` sees the request first.
            let mut app = App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(max_body))
                .app_data(authenticator.clone())
                .app_data(auditor.clone())
                .app_data(header_limit.clone())
                .app_data(app_metrics.clone());
            if let Some(limiter) = &limiter {
                app = app.app_data(limiter.clone());
            }
            app.wrap(Compat::new(from_fn(timeout::limit)))
                .wrap(from_fn(hardening::rate_limit))
                .wrap(from_fn(auth::authenticate))
                .wrap(from_fn(hardening::header_limit))
                .wrap(from_fn(audit::record))
                .wrap(from_fn(telemetry::observe))
                .wrap(Condition::new(cors.is_some(), cors.unwrap_or_default()))
                .wrap(from_fn(hardening::headers))
                .app_data(web::Data::new(timeout::Limit(request_timeout)))
                .configure(routes::configure)
        })
        .workers(workers)
        .client_request_timeout(Duration::from_secs(10))
        // SIGTERM: stop accepting, let requests in flight finish (their transactions commit)
        // for up to the grace period, then stop.
        .shutdown_timeout(shutdown_grace.as_secs())
        .listen(listener)?
        .run();
        tracing::info!(port, workers, "careplan listening");
        // Started last, so a build that fails leaves no job behind.
        let overdue = jobs.spawn(overdue_interval);
        let dispatching = dispatcher.spawn();
        let exporting = exporter.spawn();
        Ok(Self { port, server, audit, jobs, overdue, dispatcher, dispatching, exporter, exporting, metrics })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The application's background jobs, to run on demand.
    pub fn jobs(&self) -> Jobs {
        self.jobs.clone()
    }

    /// The notification dispatcher, to run a pass on demand.
    pub fn dispatcher(&self) -> Dispatcher {
        self.dispatcher.clone()
    }

    /// The bulk exporter, to run a job on demand.
    pub fn exporter(&self) -> Exporter {
        self.exporter.clone()
    }

    /// Serve until the process is told to stop (SIGTERM: gracefully, requests in flight
    /// finish within the grace period; SIGINT: at once); then stop the background jobs, write
    /// the queued audit records and push the last metrics.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let served = self.server.await.context("the HTTP server failed");
        tracing::info!("careplan stopping");
        if let Some(overdue) = self.overdue {
            overdue.abort();
        }
        if let Some(dispatching) = self.dispatching {
            dispatching.abort();
        }
        if let Some(exporting) = self.exporting {
            exporting.abort();
        }
        self.audit.finish(Duration::from_secs(10)).await;
        // The OTLP reader's last push blocks on HTTP: off the async threads.
        let metrics = self.metrics.clone();
        let _ = tokio::task::spawn_blocking(move || metrics.shutdown()).await;
        served
    }
}
