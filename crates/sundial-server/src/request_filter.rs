//! A tower layer that lets a [`RequestFilter`] look at (and rewrite) each gRPC request before
//! the services see it, or answer it with an error status instead.
//!
//! Authorization and the inflating of gzip requests are such filters; a request a filter does
//! not claim goes straight to the services without a boxed future of the filter's own.

use crate::around_layer::{AroundCall, AroundLayer, GrpcRoutes};
use tonic::body::Body;

pub use crate::around_layer::BoxFuture;

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
pub type FilterLayer<F> = AroundLayer<F>;

impl<F: RequestFilter> AroundCall for F {
    fn call<S: GrpcRoutes>(
        &self,
        mut inner: S,
        request: http::Request<Body>,
    ) -> BoxFuture<Result<http::Response<Body>, S::Error>> {
        if !self.wants(&request) {
            return Box::pin(inner.call(request));
        }
        let filtered = self.filter(request);
        Box::pin(async move {
            match filtered.await {
                Ok(request) => inner.call(request).await,
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}
