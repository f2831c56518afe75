//! The web UI: a page and its script and style sheet, compiled into the binary, and the HTTP
//! API under `/api/v1/` on the same origin (the page is a client of that API, nothing else).
//!
//! Cross-site requests: every request that is not a read (anything but GET and HEAD) must
//! carry the `X-CSRF-Token` header equal to the `sundial-csrf` cookie the page was served with
//! (a cookie other sites can neither read nor set, and a header they cannot send without a
//! CORS preflight, which is never granted). A browser's `Sec-Fetch-Site: cross-site` is
//! refused outright. Pages may not be framed. With TLS the port asks for client certificates
//! like the gRPC port, and authorization applies to the API calls as on gRPC.

use crate::http_api::{HttpApi, HttpListen};
use crate::peer::ConnInfo;
use bytes::Bytes;
use http_body_util::Full;
use std::net::SocketAddr;
use std::sync::Arc;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

const CSRF_COOKIE: &str = "sundial-csrf";
const CSRF_HEADER: &str = "x-csrf-token";

/// What the UI serves.
struct Ui {
    api: Arc<HttpApi>,
    /// The token of this server's pages (one per process; the cookie carries it).
    csrf: String,
}

fn response(
    status: http::StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    headers.insert(
        http::header::X_FRAME_OPTIONS,
        http::HeaderValue::from_static("DENY"),
    );
    headers.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        http::header::REFERRER_POLICY,
        http::HeaderValue::from_static("no-referrer"),
    );
    response
}

fn refused(message: &str) -> http::Response<Full<Bytes>> {
    let body = serde_json::json!({ "code": 7, "message": message }).to_string();
    response(http::StatusCode::FORBIDDEN, "application/json", body)
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Compares without an early exit, so the time taken says nothing about the token.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Ui {
    /// Whether a request that changes something may go on.
    fn allowed<B>(&self, request: &http::Request<B>) -> Result<(), &'static str> {
        let headers = request.headers();
        if headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"cross-site")
        {
            return Err("cross-site requests are refused");
        }
        if matches!(*request.method(), http::Method::GET | http::Method::HEAD) {
            return Ok(());
        }
        let header = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        let cookie = cookie(headers, CSRF_COOKIE);
        match (header, cookie) {
            (Some(h), Some(c)) if same_token(h, c) && same_token(c, &self.csrf) => Ok(()),
            _ => Err("missing or wrong X-CSRF-Token (reload the page)"),
        }
    }

    async fn handle(
        &self,
        request: http::Request<hyper::body::Incoming>,
        conn: ConnInfo,
    ) -> http::Response<Full<Bytes>> {
        let path = request.uri().path().to_string();
        if path.starts_with("/api/") {
            if let Err(reason) = self.allowed(&request) {
                return refused(reason);
            }
            return self.api.handle(request, conn).await;
        }
        if !matches!(*request.method(), http::Method::GET | http::Method::HEAD) {
            return response(
                http::StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                "only GET\n",
            );
        }
        match path.as_str() {
            "/assets/app.js" => response(
                http::StatusCode::OK,
                "text/javascript; charset=utf-8",
                SCRIPT,
            ),
            "/assets/app.css" => response(http::StatusCode::OK, "text/css; charset=utf-8", STYLE),
            "/favicon.ico" => response(http::StatusCode::NOT_FOUND, "text/plain", ""),
            // Every other path is a page of the application (it routes by the URL itself).
            _ => {
                let mut page = response(http::StatusCode::OK, "text/html; charset=utf-8", INDEX);
                let headers = page.headers_mut();
                headers.insert(
                    http::header::CONTENT_SECURITY_POLICY,
                    http::HeaderValue::from_static(
                        "default-src 'self'; script-src 'self'; style-src 'self'; \
                         img-src 'self' data:; connect-src *; frame-ancestors 'none'; \
                         base-uri 'none'; form-action 'none'",
                    ),
                );
                headers.insert(
                    http::header::CACHE_CONTROL,
                    http::HeaderValue::from_static("no-store"),
                );
                if let Ok(value) = http::HeaderValue::from_str(&format!(
                    "{CSRF_COOKIE}={}; Path=/; SameSite=Strict",
                    self.csrf
                )) {
                    headers.insert(http::header::SET_COOKIE, value);
                }
                page
            }
        }
    }
}

/// Serves the UI as `listen` says; returns the bound address.
pub async fn start(listen: HttpListen, api: Arc<HttpApi>) -> anyhow::Result<SocketAddr> {
    let ui = Arc::new(Ui {
        api,
        csrf: uuid::Uuid::new_v4().simple().to_string(),
    });
    crate::http_api::serve(listen, "web UI", move |request, conn| {
        let ui = ui.clone();
        async move { ui.handle(request, conn).await }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            http::HeaderValue::from_static("a=1; sundial-csrf=tok; b=2"),
        );
        assert_eq!(cookie(&headers, CSRF_COOKIE), Some("tok"));
        assert_eq!(cookie(&headers, "c"), None);
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
    }
}
