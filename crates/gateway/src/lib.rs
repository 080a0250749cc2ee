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

/// `future` on the heap, written into `slot`: pass `Box::new_uninit()`, which (arguments being
/// evaluated in order) is allocated before the future is made, so the compiler builds the future
/// in place. `Box::pin(future)` builds it on the stack and then copies every byte of its largest
/// state into the box: several KiB for the pipeline's future, ~1.4% of a proxied request's CPU in
/// perf (as `memmove`).
#[inline(always)]
pub(crate) fn box_in_place<F>(
    slot: Box<std::mem::MaybeUninit<F>>,
    future: F,
) -> std::pin::Pin<Box<F>> {
    Box::into_pin(Box::write(slot, future))
}
