//! Log level names and formats, shared by the command line and the configuration file.

use anyhow::bail;
use clap::ValueEnum;

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Pretty,
    Json,
}

impl LogFormat {
    pub fn parse(text: &str) -> anyhow::Result<LogFormat> {
        match text {
            "text" => Ok(LogFormat::Text),
            "pretty" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            other => bail!("unknown log format {other:?} (expected text, pretty or json)"),
        }
    }
}

/// The tracing filter for a log level name.
pub fn log_filter(level: &str) -> anyhow::Result<String> {
    Ok(match level {
        "debug" | "info" | "warn" | "error" | "trace" => {
            format!("{level},h2=warn,tower=warn,hyper=warn,rustls=warn")
        }
        "fatal" | "panic" => "error".to_string(),
        other => bail!("unknown log level {other:?} (expected debug, info, warn or error)"),
    })
}

pub fn init_logging(level: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = log_filter(level)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text | LogFormat::Pretty => builder.init(),
    }
    Ok(())
}
