//! A tower layer that counts every gRPC request and times it, per RPC and status code.
//!
//! The status is read from the response headers: tonic answers a failed unary call with a
//! trailers-only response that carries `grpc-status` there, and a successful one with the
//! status in the trailers, so a response without the header is counted as OK. Latency runs to
//! the response headers, which for unary calls follow the handler's completion.

use crate::metrics::Metrics;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::body::Body;

/// Wraps the gRPC routes with request metrics.
#[derive(Clone)]
pub struct RpcMetricsLayer {
    metrics: Arc<Metrics>,
}

impl RpcMetricsLayer {
    pub fn new(metrics: Arc<Metrics>) -> RpcMetricsLayer {
        RpcMetricsLayer { metrics }
    }
}

impl<S> tower_layer::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> RpcMetrics<S> {
        RpcMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`RpcMetricsLayer`] produces.
#[derive(Clone)]
pub struct RpcMetrics<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The gRPC status code of a response: its `grpc-status` header, or OK without one.
fn status_of(response: &http::Response<Body>) -> i32 {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl<S> tower_service::Service<http::Request<Body>> for RpcMetrics<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let metrics = self.metrics.clone();
        let rpc = metrics.rpc_index(request.uri().path());
        let started = Instant::now();
        Box::pin(async move {
            let result = inner.call(request).await;
            if let (Some(rpc), Ok(response)) = (rpc, &result) {
                metrics.rpc_done(rpc, status_of(response), started.elapsed());
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_comes_from_the_header_or_is_ok() {
        let ok = http::Response::new(Body::empty());
        assert_eq!(status_of(&ok), 0);
        let denied: http::Response<Body> = tonic::Status::permission_denied("no").into_http();
        assert_eq!(status_of(&denied), 7);
    }
}
