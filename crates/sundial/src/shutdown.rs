//! When a server process stops: on Ctrl-C or SIGTERM.

use anyhow::Context;
use std::future::Future;
use tokio::signal::unix::{SignalKind, signal};

/// A future that resolves on the first Ctrl-C or SIGTERM. The SIGTERM handler is installed
/// by this call (inside the runtime), so a SIGTERM that arrives before the future is first
/// polled is not lost.
pub fn interrupted() -> anyhow::Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    })
}
