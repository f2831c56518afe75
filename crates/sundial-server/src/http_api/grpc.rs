//! Unary gRPC calls made in-process: an HTTP API request becomes an ordinary gRPC request
//! handed to the same service stack the gRPC port serves (metrics, gzip, authorization, then
//! the services), with the connection's [`ConnInfo`] attached as the gRPC server attaches it.

use crate::around_layer::{BoxFuture, GrpcRoutes};
use crate::peer::ConnInfo;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::sync::Arc;
use tonic::body::Body;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type CallFn =
    dyn Fn(http::Request<Body>) -> BoxFuture<Result<http::Response<Body>, BoxError>> + Send + Sync;

/// A handle on the gRPC service stack.
#[derive(Clone)]
pub struct Grpc {
    call: Arc<CallFn>,
}

impl Grpc {
    /// Wraps `service` (cloned for every call, as the gRPC server does per connection).
    pub fn new<S>(service: S) -> Grpc
    where
        S: GrpcRoutes,
        S::Error: Into<BoxError>,
    {
        let service = parking_lot::Mutex::new(service);
        Grpc {
            call: Arc::new(move |request| {
                let mut service = service.lock().clone();
                Box::pin(async move {
                    futures::future::poll_fn(|cx| service.poll_ready(cx))
                        .await
                        .map_err(Into::into)?;
                    service.call(request).await.map_err(Into::into)
                })
            }),
        }
    }

    /// Calls the RPC at `path` with the encoded `message`; returns the encoded reply.
    /// `timeout` is a `grpc-timeout` header value the caller asked for.
    pub async fn unary(
        &self,
        path: &str,
        message: Vec<u8>,
        conn: ConnInfo,
        timeout: Option<http::HeaderValue>,
    ) -> Result<Bytes, tonic::Status> {
        let length = u32::try_from(message.len())
            .map_err(|_| tonic::Status::resource_exhausted("request too large"))?;
        let mut frame = Vec::with_capacity(message.len() + 5);
        frame.push(0);
        frame.extend_from_slice(&length.to_be_bytes());
        frame.extend_from_slice(&message);
        let mut request = http::Request::builder()
            .method(http::Method::POST)
            .uri(path)
            .version(http::Version::HTTP_2)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers");
        if let Some(timeout) = timeout {
            request = request.header("grpc-timeout", timeout);
        }
        let mut request = request
            .body(Body::new(http_body_util::Full::new(Bytes::from(frame))))
            .map_err(|e| tonic::Status::internal(format!("building the gRPC request: {e}")))?;
        request.extensions_mut().insert(conn);
        let response = (self.call)(request)
            .await
            .map_err(|e| tonic::Status::internal(format!("gRPC service failed: {e}")))?;
        let (parts, body) = response.into_parts();
        if let Some(status) = tonic::Status::from_header_map(&parts.headers) {
            // A trailers-only answer: an error before any message.
            if status.code() != tonic::Code::Ok {
                return Err(status);
            }
        }
        let collected = body
            .collect()
            .await
            .map_err(|e| tonic::Status::internal(format!("reading the gRPC reply: {e}")))?;
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let data = collected.to_bytes();
        match tonic::Status::from_header_map(&trailers) {
            Some(status) if status.code() != tonic::Code::Ok => return Err(status),
            Some(_) => {}
            None => return Err(tonic::Status::internal("the gRPC reply has no status")),
        }
        match data.first() {
            Some(0) if data.len() >= 5 => {
                let mut len = [0u8; 4];
                len.copy_from_slice(&data[1..5]);
                let len = u32::from_be_bytes(len) as usize;
                if data.len() != len + 5 {
                    return Err(tonic::Status::internal("the gRPC reply is not one message"));
                }
                Ok(data.slice(5..))
            }
            _ => Err(tonic::Status::internal(
                "the gRPC reply is not one uncompressed message",
            )),
        }
    }
}
