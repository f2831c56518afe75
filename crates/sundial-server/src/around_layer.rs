//! The tower plumbing the layers of the gRPC stack share: an [`AroundLayer`] puts an
//! [`AroundCall`] around every call of the service it wraps. Request metrics
//! (`metrics_layer`), authorization and the inflating of gzip requests (`request_filter`)
//! are such wrappers; each says only what it does with one call.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::body::Body;
use tower_service::Service;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

type HttpRequest = http::Request<Body>;
type HttpResponse = http::Response<Body>;

/// The gRPC routes (or a layer wrapping them) as the layers of this server see them: a
/// service from HTTP requests to HTTP responses that can be cloned and sent to other tasks,
/// whose calls are futures that can be sent too.
pub trait GrpcRoutes:
    Service<HttpRequest, Response = HttpResponse, Future: Send + 'static> + Clone + Send + 'static
{
}

impl<S> GrpcRoutes for S where
    S: Service<HttpRequest, Response = HttpResponse, Future: Send + 'static>
        + Clone
        + Send
        + 'static
{
}

/// What a layer does with one call.
pub trait AroundCall: Clone + Send + 'static {
    /// The answer to `request`; `inner` is the wrapped service, ready to take a call.
    fn call<S: GrpcRoutes>(
        &self,
        inner: S,
        request: HttpRequest,
    ) -> BoxFuture<Result<HttpResponse, S::Error>>;
}

/// The layer that puts `A` around every call.
#[derive(Clone)]
pub struct AroundLayer<A> {
    around: A,
}

impl<A> AroundLayer<A> {
    pub fn new(around: A) -> AroundLayer<A> {
        AroundLayer { around }
    }
}

impl<A: Clone, S> tower_layer::Layer<S> for AroundLayer<A> {
    type Service = Around<A, S>;

    fn layer(&self, inner: S) -> Around<A, S> {
        Around {
            inner,
            around: self.around.clone(),
        }
    }
}

/// The service [`AroundLayer`] produces.
#[derive(Clone)]
pub struct Around<A, S> {
    inner: S,
    around: A,
}

impl<A: AroundCall, S: GrpcRoutes> Service<HttpRequest> for Around<A, S> {
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = BoxFuture<Result<HttpResponse, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        // The clone that was polled ready serves this call (tower lets only a service that
        // answered `Ready` take one); a fresh clone stays for the next.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        self.around.call(ready, request)
    }
}
