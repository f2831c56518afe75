//! The accept loop of the gRPC frontend.
//!
//! Accepted sockets get TCP_NODELAY (Nagle's algorithm with delayed ACKs adds ~40 ms to small
//! request/response exchanges) and, with TLS, a handshake on a task of their own; the
//! connections that come through are handed to the gRPC server in accept order. The loop, and
//! with it the listening socket, ends when `stop` resolves, so a shutting-down server refuses
//! new connections at once.
//!
//! At most [`MAX_HANDSHAKES`] TLS handshakes run at once (each is also bounded in time, see
//! [`crate::tls`]): while that many are under way the loop stops accepting, and further
//! clients wait in the kernel's backlog instead of each costing a task and a handshake's
//! cryptography.

use crate::peer::Conn;
use crate::tls::ReloadingTls;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;

/// Connections waiting for the gRPC server to take them.
const BACKLOG: usize = 128;
/// Most TLS handshakes in progress at once.
pub const MAX_HANDSHAKES: usize = 256;

/// The stream of ready connections from `listener`.
pub fn incoming(
    listener: TcpListener,
    tls: Option<Arc<ReloadingTls>>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> ReceiverStream<std::io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(BACKLOG);
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        tokio::pin!(stop);
        loop {
            // A handshake slot first (plain TCP needs none), then the next connection.
            let permit = match &tls {
                Some(_) => tokio::select! {
                    _ = &mut stop => return,
                    permit = handshakes.clone().acquire_owned() => match permit {
                        Ok(permit) => Some(permit),
                        Err(_) => return,
                    },
                },
                None => None,
            };
            let accepted = tokio::select! {
                _ = &mut stop => return,
                accepted = listener.accept() => accepted,
            };
            let tcp = match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Running out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            match &tls {
                None => {
                    if tx.send(Ok(Conn::plain(tcp))).await.is_err() {
                        return;
                    }
                }
                Some(tls) => {
                    let tls = tls.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let handshake = tls.accept(tcp).await;
                        drop(permit);
                        match handshake {
                            Ok(conn) => {
                                let _ = tx.send(Ok(conn)).await;
                            }
                            Err(e) => tracing::debug!(error = %e, "TLS handshake refused"),
                        }
                    });
                }
            }
        }
    });
    ReceiverStream::new(rx)
}
