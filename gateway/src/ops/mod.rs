//! What the operator sees: the counters ([`metrics`], a leaf that depends on no runtime
//! module) and the HTTP endpoint that serves them, the health check and device commands
//! ([`http`]), and what a command request means wherever it comes from ([`command`]). The
//! API itself is documented in docs/http-api.md.

pub mod command;
pub mod http;
pub mod metrics;
