//! Switchyard, the AI model gateway: the binary's library half, so tests can drive the app
//! in-process. See ARCHITECTURE.md for the codemap.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod cost;
pub mod error;
pub mod handlers;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod pipeline;
pub mod relay;
pub mod routing;
pub mod server;
pub mod services;
pub mod telemetry;
pub mod tokens;
pub mod upstream;
pub mod usage;
