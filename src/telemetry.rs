//! Logging through `tracing`: JSON lines in production, readable text locally, level from `RUST_LOG`.
//!
//! Job spans carry `scan_id` and `project_id`, so every line logged inside a job names them. Nothing that
//! holds a secret implements `Display`, and the secret key's `Debug` is redacted.

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::{EnvFilter, layer::SubscriberExt};

use crate::configuration::LogFormat;

/// Builds the subscriber; `default_filter` applies when `RUST_LOG` is unset.
pub fn subscriber<W>(format: LogFormat, default_filter: &str, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_writer(writer),
            ),
        ),
        LogFormat::Text => Box::new(registry.with(tracing_subscriber::fmt::layer().with_writer(writer))),
    }
}

/// Installs the process-wide subscriber writing to stderr (stdout is kept for command output).
pub fn init(format: LogFormat) {
    let subscriber = subscriber(format, "info", std::io::stderr);
    // A second call (tests) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber);
}
