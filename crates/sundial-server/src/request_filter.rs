//! A tower layer that lets a [`RequestFilter`] look at (and rewrite) each gRPC request before
//! the services see it, or answer it with an error status instead.
//!
//! Authorization and the inflating of gzip requests are such filters; a request a filter does
//! not claim goes straight to the services without a boxed future of the filter's own.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::body::Body;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Decides, per request, whether it goes on (possibly rebuilt) or is answered with a status.
pub trait RequestFilter: Clone + Send + Sync + 'static {
    /// Whether [`RequestFilter::filter`] must see `request`; `false` passes it on untouched.
    fn wants(&self, request: &http::Request<Body>) -> bool;

    /// The request to hand on, or the status to answer with (no service sees it then).
    fn filter(
        &self,
        request: http::Request<Body>,
    ) -> BoxFuture<Result<http::Request<Body>, tonic::Status>>;
}

/// The layer that puts `F` in front of a service.
#[derive(Clone)]
pub struct FilterLayer<F> {
    filter: F,
}

impl<F> FilterLayer<F> {
    pub fn new(filter: F) -> FilterLayer<F> {
        FilterLayer { filter }
    }
}

impl<F: Clone, S> tower_layer::Layer<S> for FilterLayer<F> {
    type Service = Filtered<F, S>;

    fn layer(&self, inner: S) -> Filtered<F, S> {
        Filtered {
            inner,
            filter: self.filter.clone(),
        }
    }
}

/// The service [`FilterLayer`] produces.
#[derive(Clone)]
pub struct Filtered<F, S> {
    inner: S,
    filter: F,
}

impl<F, S> tower_service::Service<http::Request<Body>> for Filtered<F, S>
where
    F: RequestFilter,
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
        // The clone that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !self.filter.wants(&request) {
            return Box::pin(inner.call(request));
        }
        let filtered = self.filter.filter(request);
        Box::pin(async move {
            match filtered.await {
                Ok(request) => inner.call(request).await,
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}
