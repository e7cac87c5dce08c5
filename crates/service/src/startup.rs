//! `Application`: build the server from `Settings` (connect, migrate, bind) and run it until
//! stopped. Tests bind port 0 and read the chosen port back.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::{from_fn, Compat};
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use persistence::Store;

use crate::config::Settings;
use crate::state::AppState;
use crate::{routes, telemetry, timeout};

/// A built, bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Connect to the database (failing fast if it is unreachable), apply migrations unless
    /// told not to, and bind the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = Store::connect(&settings.database).await.context("cannot connect to the database")?;
        if settings.migrate {
            store.migrate().await.context("cannot apply database migrations")?;
        }
        let listener =
            TcpListener::bind(&settings.addr).with_context(|| format!("cannot listen on {}", settings.addr))?;
        let port = listener.local_addr()?.port();
        let workers = settings.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
        let request_timeout = settings.request_timeout;
        let max_body = settings.max_body_bytes;
        let state = web::Data::new(AppState { store, settings });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(max_body))
                .wrap(Compat::new(from_fn(timeout::limit)))
                .wrap(from_fn(telemetry::log_request))
                .app_data(web::Data::new(timeout::Limit(request_timeout)))
                .configure(routes::configure)
        })
        .workers(workers)
        .client_request_timeout(Duration::from_secs(10))
        .shutdown_timeout(30)
        .listen(listener)?
        .run();
        tracing::info!(port, workers, "careplan listening");
        Ok(Self { port, server })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serve until the process is told to stop (SIGINT/SIGTERM stop gracefully).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.server.await.context("the HTTP server failed")
    }
}
