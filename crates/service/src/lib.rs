//! The HTTP surface of the care-plan service: FHIR REST interactions over actix-web.
//!
//! Only this crate knows HTTP. Handlers are generic over `domain::Resource` and a few lines
//! each: extractors parse the request, the domain checks, the store persists, a responder renders.

mod audit;
mod auth;
mod bundle;
pub mod capabilities;
pub mod cli;
pub mod config;
pub mod coordination;
mod docs;
mod engine;
mod entry;
mod error;
pub mod export;
mod extract;
mod hardening;
mod headers;
mod health;
mod interactions;
pub mod jobs;
mod metrics;
pub mod openapi;
mod outcome;
mod plan_summary;
mod responder;
mod route;
mod routes;
mod search;
pub mod startup;
mod state;
pub mod subscriptions;
pub mod telemetry;
pub mod templates;
mod timeout;
mod transaction;
mod visible;

pub use config::Settings;
pub use error::ApiError;
pub use startup::Application;
