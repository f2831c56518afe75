//! The Prometheus scrape endpoint: `GET /metrics` over HTTP/1.1 on its own port.
//!
//! Slow or silent clients cannot pile up: a request's headers must arrive within
//! [`HEADER_TIMEOUT`], a connection lives at most [`CONNECTION_TIMEOUT`], and at most
//! [`MAX_CONNECTIONS`] are served at once (the loop stops accepting while that many are open).

use crate::metrics::Metrics;
use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

/// Longest a client may take to send a request's headers (also the longest a kept-alive
/// connection waits for its next request).
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Longest one connection is served, however busy.
pub const CONNECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 64;

/// The content type of Prometheus' text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Binds `addr` and returns the bound address; the endpoint serves until `shutdown` resolves.
pub async fn start(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for metrics"))?;
    let bound = listener.local_addr()?;
    serve(
        listener,
        metrics,
        shutdown,
        HEADER_TIMEOUT,
        CONNECTION_TIMEOUT,
    );
    Ok(bound)
}

/// The accept loop of [`start`], with its timeouts as parameters.
fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    header_timeout: std::time::Duration,
    connection_timeout: std::time::Duration,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        loop {
            let slot = tokio::select! {
                _ = &mut shutdown => return,
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => return,
                },
            };
            let accepted = tokio::select! {
                _ = &mut shutdown => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((stream, _)) = accepted else { continue };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let metrics = metrics.clone();
                    async move { Ok::<_, Infallible>(answer(&request, &metrics)) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(connection_timeout, connection).await;
                drop(slot);
            });
        }
    });
}

fn answer<B>(request: &http::Request<B>, metrics: &Metrics) -> http::Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&http::Method::GET, "/metrics") => (http::StatusCode::OK, TEXT_FORMAT, metrics.render()),
        (&http::Method::GET, _) => (
            http::StatusCode::NOT_FOUND,
            "text/plain",
            b"not found; metrics are at /metrics\n".to_vec(),
        ),
        _ => (
            http::StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            b"only GET\n".to_vec(),
        ),
    };
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The whole HTTP answer to `GET /metrics` on `addr`.
    async fn get_metrics(addr: SocketAddr) -> String {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        conn.read_to_string(&mut text).await.unwrap();
        text
    }

    #[tokio::test]
    async fn serves_metrics_and_stops_on_shutdown() {
        let metrics = Arc::new(Metrics::new().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let addr = start("127.0.0.1:0".parse().unwrap(), metrics, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
        let text = get_metrics(addr).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("sundial_workflows_started_total 0"));
        let _ = stop.send(());
    }

    #[tokio::test]
    async fn silent_and_slow_clients_are_cut_off() {
        use std::time::Duration;
        let metrics = Arc::new(Metrics::new().unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let header_timeout = Duration::from_millis(300);
        serve(
            listener,
            metrics,
            std::future::pending(),
            header_timeout,
            Duration::from_secs(2),
        );
        // A client that sends half a request line and then nothing.
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /metr").await.unwrap();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
        assert!(
            read.is_ok(),
            "the server kept a silent client past the header timeout"
        );
        // One that trickles header lines forever is cut off too.
        let mut trickle = tokio::net::TcpStream::connect(addr).await.unwrap();
        let started = std::time::Instant::now();
        let _ = trickle.write_all(b"GET /metrics HTTP/1.1\r\n").await;
        let cut = async {
            for _ in 0..100 {
                if trickle.write_all(b"X-A: b\r\n").await.is_err() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        };
        assert!(cut.await, "a trickling client was served for 10 s");
        assert!(started.elapsed() < Duration::from_secs(5));
        // The endpoint still answers.
        let text = get_metrics(addr).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    }
}
