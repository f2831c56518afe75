//! A tower layer that counts every gRPC request and times it, per RPC and status code.
//!
//! The status is read from the response headers: tonic answers a failed unary call with a
//! trailers-only response that carries `grpc-status` there, and a successful one with the
//! status in the trailers, so a response without the header is counted as OK. Latency runs to
//! the response headers, which for unary calls follow the handler's completion.

use crate::around_layer::{AroundCall, AroundLayer, BoxFuture, GrpcRoutes};
use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::Instant;
use tonic::body::Body;

/// Wraps the gRPC routes with request metrics.
pub type RpcMetricsLayer = AroundLayer<RpcMetrics>;

/// Counts and times each call ([`RpcMetricsLayer`]).
#[derive(Clone)]
pub struct RpcMetrics {
    metrics: Arc<Metrics>,
}

impl RpcMetrics {
    pub fn layer(metrics: Arc<Metrics>) -> RpcMetricsLayer {
        AroundLayer::new(RpcMetrics { metrics })
    }
}

/// The gRPC status code of a response: its `grpc-status` header, or OK without one.
fn status_of(response: &http::Response<Body>) -> i32 {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl AroundCall for RpcMetrics {
    fn call<S: GrpcRoutes>(
        &self,
        mut inner: S,
        request: http::Request<Body>,
    ) -> BoxFuture<Result<http::Response<Body>, S::Error>> {
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
