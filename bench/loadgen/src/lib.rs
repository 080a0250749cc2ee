//! Shared code of Switchyard's benchmark tools (`sy-upstream`, `sy-loadgen`, `sy-report`).
//!
//! See `bench/README.md` for what each tool does and how `bench/run` drives them.

pub mod fixtures;
pub mod procstat;
pub mod report;
pub mod sse;
pub mod util;
