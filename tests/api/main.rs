//! The integration-test binary: each test spawns the real server on a random port, on a fresh
//! SQLite file, or on a fresh PostgreSQL schema when `TEST_DATABASE_URL` is set, and drives it
//! over HTTP.

mod architecture;
mod bad_input;
mod bounds;
mod capabilities;
mod concurrency;
mod coordination;
mod crud;
mod examples;
mod export;
mod goal;
mod helpers;
mod history;
mod http_semantics;
mod lifecycle;
mod limits;
mod observability;
mod openapi;
mod scenario;
mod search;
mod security;
mod subscriptions;
mod templates;
mod transactions;
mod worklist;
