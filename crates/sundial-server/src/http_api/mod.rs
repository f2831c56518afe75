//! Temporal's HTTP/JSON API (`/api/v1/...`): every `google.api.http` binding of the served
//! services, answered by the gRPC services themselves.
//!
//! A request is matched to its RPC ([`routes`]), its JSON turned into the request message
//! ([`codec`]), and the message sent in-process through the same service stack as the gRPC
//! port ([`grpc`]: metrics, authorization with the connection's client certificate, the
//! services). The reply comes back as JSON; an error as `google.rpc.Status` JSON with the HTTP
//! status the reference's gateway gives its gRPC code.

pub mod codec;
pub mod grpc;
pub mod payloads;
pub mod routes;

use crate::peer::ConnInfo;
use crate::tls::ReloadingTls;
use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_stream::StreamExt;

/// The largest request body read (JSON is larger than the protobuf it becomes).
const MAX_BODY: usize = 2 * crate::frontend::MAX_MESSAGE_SIZE;

/// The HTTP API: routes, codec and the gRPC stack behind them.
pub struct HttpApi {
    router: routes::Router,
    /// Built on the first request: the decoded descriptors of the whole API hold some 28 MB,
    /// which a server nobody calls over HTTP should not pay for.
    codec: std::sync::OnceLock<Result<codec::Codec, String>>,
    grpc: grpc::Grpc,
}

/// The HTTP status the reference's gateway answers for a gRPC code.
pub fn http_status(code: tonic::Code) -> http::StatusCode {
    use http::StatusCode as H;
    use tonic::Code as C;
    match code {
        C::Ok => H::OK,
        C::Cancelled => H::from_u16(499).unwrap_or(H::BAD_REQUEST),
        C::Unknown | C::Internal | C::DataLoss => H::INTERNAL_SERVER_ERROR,
        C::InvalidArgument | C::FailedPrecondition | C::OutOfRange => H::BAD_REQUEST,
        C::DeadlineExceeded => H::GATEWAY_TIMEOUT,
        C::NotFound => H::NOT_FOUND,
        C::AlreadyExists | C::Aborted => H::CONFLICT,
        C::PermissionDenied => H::FORBIDDEN,
        C::Unauthenticated => H::UNAUTHORIZED,
        C::ResourceExhausted => H::TOO_MANY_REQUESTS,
        C::Unimplemented => H::NOT_IMPLEMENTED,
        C::Unavailable => H::SERVICE_UNAVAILABLE,
    }
}

fn json_response(status: http::StatusCode, body: Vec<u8>) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

impl HttpApi {
    /// The API over `grpc` (the service stack of the gRPC port).
    pub fn new(grpc: grpc::Grpc) -> anyhow::Result<HttpApi> {
        let router = routes::Router::new(sundial_proto::HTTP_ROUTES)
            .map_err(|e| anyhow::anyhow!("HTTP routes: {e}"))?;
        Ok(HttpApi {
            router,
            codec: std::sync::OnceLock::new(),
            grpc,
        })
    }

    fn codec(&self) -> Result<&codec::Codec, tonic::Status> {
        self.codec
            .get_or_init(|| codec::Codec::new().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| tonic::Status::internal(e.clone()))
    }

    fn error(&self, status: &tonic::Status) -> http::Response<Full<Bytes>> {
        let body = match self.codec() {
            Ok(codec) => codec.status_json(status),
            Err(_) => {
                serde_json::json!({ "code": status.code() as i32, "message": status.message() })
                    .to_string()
                    .into_bytes()
            }
        };
        json_response(http_status(status.code()), body)
    }

    /// Answers one request that came on a connection described by `conn`.
    pub async fn handle(
        &self,
        request: http::Request<hyper::body::Incoming>,
        conn: ConnInfo,
    ) -> http::Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let (route, bindings) = match self.router.find(parts.method.as_str(), parts.uri.path()) {
            routes::Match::Found { route, bindings } => (route, bindings),
            routes::Match::NotFound => {
                return self.error(&tonic::Status::not_found("Not Found"));
            }
            routes::Match::MethodNotAllowed => {
                return self.error(&tonic::Status::unimplemented("Method Not Allowed"));
            }
        };
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                return self.error(&tonic::Status::invalid_argument(format!(
                    "reading the request body: {e}"
                )));
            }
        };
        let codec = match self.codec() {
            Ok(codec) => codec,
            Err(status) => return self.error(&status),
        };
        let message = match codec.request(route, &bindings, parts.uri.query(), &body) {
            Ok(message) => message,
            Err(codec::BadRequest(reason)) => {
                return self.error(&tonic::Status::invalid_argument(reason));
            }
        };
        let timeout = parts.headers.get("grpc-timeout").cloned();
        let reply = match self
            .grpc
            .unary(route.grpc_path, message, conn, timeout)
            .await
        {
            Ok(reply) => reply,
            Err(status) => return self.error(&status),
        };
        match codec.to_json(route.output, &reply) {
            Ok(json) => json_response(http::StatusCode::OK, json),
            Err(e) => self.error(&tonic::Status::internal(format!("{e:#}"))),
        }
    }
}

/// Where and how long an HTTP port (the HTTP API's, the web UI's) is served: on `addr`, with
/// TLS when `tls` is given, until `stop` turns true.
pub struct HttpListen {
    pub addr: SocketAddr,
    pub tls: Option<Arc<ReloadingTls>>,
    pub stop: watch::Receiver<bool>,
}

/// Serves an HTTP port as `listen` says; returns the bound address. `on_request` answers
/// every request, so a caller can put other pages beside the API (the web UI does).
pub async fn serve<F, Fut>(
    listen: HttpListen,
    what: &'static str,
    on_request: F,
) -> anyhow::Result<SocketAddr>
where
    F: Fn(http::Request<hyper::body::Incoming>, ConnInfo) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = http::Response<Full<Bytes>>> + Send + 'static,
{
    let HttpListen { addr, tls, stop } = listen;
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the {what}"))?;
    let bound = tcp.local_addr()?;
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut incoming = crate::listener::incoming(tcp, tls, stopped(stop.clone()));
    tokio::spawn(async move {
        while let Some(conn) = incoming.next().await {
            let Ok(conn) = conn else { continue };
            let info = tonic::transport::server::Connected::connect_info(&conn);
            let on_request = on_request.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let on_request = on_request.clone();
                    let info = info.clone();
                    async move { Ok::<_, Infallible>(on_request(request, info).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(conn), service);
                tokio::pin!(connection);
                tokio::select! {
                    _ = connection.as_mut() => {}
                    _ = stopped(stop) => {
                        connection.as_mut().graceful_shutdown();
                        let _ = connection.await;
                    }
                }
            });
        }
    });
    Ok(bound)
}

/// Whether a request is a browser's write sent from a page of another origin: one with an
/// `Origin` header that does not name the host it was sent to. Programs (curl, SDKs) send no
/// `Origin`; such a request from a browser is a cross-site request forgery, since this port
/// grants no CORS.
pub fn cross_origin_write<B>(request: &http::Request<B>) -> bool {
    if matches!(
        *request.method(),
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    ) {
        return false;
    }
    let Some(origin) = request.headers().get(http::header::ORIGIN) else {
        return false;
    };
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest);
    !matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// Serves the HTTP API alone, as `listen` says.
pub async fn start(listen: HttpListen, api: Arc<HttpApi>) -> anyhow::Result<SocketAddr> {
    serve(listen, "HTTP API", move |request, conn| {
        let api = api.clone();
        async move {
            if cross_origin_write(&request) {
                let status = tonic::Status::permission_denied("cross-origin requests are refused");
                return api.error(&status);
            }
            api.handle(request, conn).await
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, origin: Option<&str>) -> http::Request<()> {
        let mut builder = http::Request::builder()
            .method(method)
            .uri("/api/v1/namespaces")
            .header(http::header::HOST, "127.0.0.1:7243");
        if let Some(origin) = origin {
            builder = builder.header(http::header::ORIGIN, origin);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn writes_from_other_origins_are_recognized() {
        assert!(!cross_origin_write(&request("POST", None)));
        assert!(!cross_origin_write(&request(
            "POST",
            Some("http://127.0.0.1:7243")
        )));
        assert!(!cross_origin_write(&request(
            "GET",
            Some("https://evil.example")
        )));
        assert!(cross_origin_write(&request(
            "POST",
            Some("https://evil.example")
        )));
        assert!(cross_origin_write(&request("DELETE", Some("null"))));
    }

    #[test]
    fn grpc_codes_map_to_the_gateway_statuses() {
        assert_eq!(
            http_status(tonic::Code::NotFound),
            http::StatusCode::NOT_FOUND
        );
        assert_eq!(
            http_status(tonic::Code::Unimplemented),
            http::StatusCode::NOT_IMPLEMENTED
        );
        assert_eq!(
            http_status(tonic::Code::AlreadyExists),
            http::StatusCode::CONFLICT
        );
        assert_eq!(http_status(tonic::Code::Cancelled).as_u16(), 499);
        assert_eq!(
            http_status(tonic::Code::PermissionDenied),
            http::StatusCode::FORBIDDEN
        );
    }
}
