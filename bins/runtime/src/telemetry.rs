//! The process's `tracing` subscriber: one JSON object per line on stdout by default.

use crate::Error;
use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (event fields flattened, current span included).
    #[default]
    Json,
    /// Human-readable text.
    Plain,
}

/// Installs the global subscriber writing to stdout.
///
/// `filter` is an `EnvFilter` directive such as `info` or `info,kube=warn`; a non-empty
/// `RUST_LOG` takes precedence so a running deployment can be turned up without new flags.
pub fn init_tracing(format: LogFormat, filter: &str) -> Result<(), Error> {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| filter.to_string());
    let filter = EnvFilter::try_new(&directives).map_err(|e| Error::Telemetry(e.to_string()))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Plain => builder.try_init(),
    };
    installed.map_err(|e| Error::Telemetry(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn formats_parse_from_flags() {
        assert_eq!(LogFormat::from_str("json", true), Ok(LogFormat::Json));
        assert_eq!(LogFormat::from_str("plain", true), Ok(LogFormat::Plain));
        assert!(LogFormat::from_str("xml", true).is_err());
        assert_eq!(LogFormat::default(), LogFormat::Json);
    }

    #[test]
    fn bad_filter_is_an_error() {
        // SAFETY-free: only reads RUST_LOG; an invalid directive must not panic.
        let got = init_tracing(LogFormat::Json, "info,[=");
        if std::env::var("RUST_LOG")
            .map(|v| v.trim().is_empty())
            .unwrap_or(true)
        {
            assert!(matches!(got, Err(Error::Telemetry(_))));
        }
    }
}
