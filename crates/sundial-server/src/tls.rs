//! TLS and mutual TLS on the gRPC frontend.
//!
//! The server certificate, its key and the client CA bundle are read from files into a rustls
//! [`ServerConfig`]. A watcher re-reads them when their modification times change and swaps
//! the configuration in: connections accepted afterwards get the new one, open connections
//! keep theirs. A reload that fails (a half-written file, a key that does not match) is logged
//! and the previous configuration stays in force.
//!
//! Handshakes run on tasks of their own, so a slow or hostile client never holds up the accept
//! loop. A client that presents no valid certificate while certificates are required is refused
//! during the handshake and never reaches a service.

use crate::peer::{Conn, PeerIdentity};
use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use thiserror::Error;
use tokio::net::TcpStream;

/// How often the watcher looks at the files' modification times.
pub const RELOAD_POLL: Duration = Duration::from_secs(2);
/// Longest a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether clients must present a certificate signed by the client CA bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No client certificates are asked for.
    #[default]
    None,
    /// A client may present one; if it does, it must be valid.
    Optional,
    /// Every client must present a valid one (mutual TLS).
    Required,
}

/// Where the TLS material lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain of the server, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the server certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM bundle of the CAs that sign client certificates; required unless `client_auth` is
    /// [`ClientAuth::None`].
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

/// A TLS configuration that cannot be used; the message names the file and the problem.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path} holds no PEM certificate")]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("{what} {path}: {reason}")]
    BadPem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("the private key {key} does not match the certificate {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("client certificates are {0} but no client CA bundle is configured")]
    MissingClientCa(&'static str),
    #[error("client CA bundle {path}: {reason}")]
    BadClientCa { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            what,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The ALPN protocol of gRPC.
const H2: &[u8] = b"h2";
/// The ALPN protocol of the HTTP API and the web UI.
pub const HTTP1: &[u8] = b"http/1.1";

/// Builds the rustls configuration of the gRPC port from the files named in `settings`.
pub fn load(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    load_for(settings, &[H2])
}

/// Builds a rustls configuration that offers the ALPN protocols `alpn`.
fn load_for(settings: &TlsSettings, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates("server certificate", &settings.cert)?;
    let key_pem = read("server key", &settings.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::BadPem {
        what: "server key",
        path: settings.key.clone(),
        reason: e.to_string(),
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match settings.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        mode @ (ClientAuth::Optional | ClientAuth::Required) => {
            let word = if mode == ClientAuth::Required {
                "required"
            } else {
                "optional"
            };
            let path = settings
                .client_ca
                .as_ref()
                .ok_or(TlsError::MissingClientCa(word))?;
            let mut roots = RootCertStore::empty();
            for ca in certificates("client CA bundle", path)? {
                roots.add(ca).map_err(|e| TlsError::BadClientCa {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if mode == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|e| TlsError::BadClientCa {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert: settings.cert.clone(),
            key: settings.key.clone(),
        },
        other => TlsError::BadPem {
            what: "server key",
            path: settings.key.clone(),
            reason: other.to_string(),
        },
    })?;
    // gRPC runs over HTTP/2 only (the Go clients insist on the ALPN answer); the HTTP API
    // over HTTP/1.1.
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The current TLS configuration, swapped when the files change.
///
/// Invariant: `current` always holds a configuration that loaded completely.
pub struct ReloadingTls {
    settings: TlsSettings,
    alpn: &'static [&'static [u8]],
    current: RwLock<Arc<ServerConfig>>,
    stamps: parking_lot::Mutex<Vec<Option<SystemTime>>>,
}

impl ReloadingTls {
    /// Loads the files once; fails with the first problem found.
    pub fn new(settings: TlsSettings) -> Result<Arc<Self>, TlsError> {
        Self::with_alpn(settings, &[H2])
    }

    /// The same for a port that speaks the ALPN protocols `alpn` (the HTTP API: `http/1.1`).
    pub fn with_alpn(
        settings: TlsSettings,
        alpn: &'static [&'static [u8]],
    ) -> Result<Arc<Self>, TlsError> {
        let config = load_for(&settings, alpn)?;
        let stamps = stamps(&settings);
        Ok(Arc::new(ReloadingTls {
            settings,
            alpn,
            current: RwLock::new(config),
            stamps: parking_lot::Mutex::new(stamps),
        }))
    }

    /// The configuration new connections get.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.read().clone()
    }

    /// Reloads when a file's modification time changed. Returns whether a new configuration
    /// was installed.
    pub fn reload_if_changed(&self) -> bool {
        let now = stamps(&self.settings);
        let mut seen = self.stamps.lock();
        if *seen == now {
            return false;
        }
        match load_for(&self.settings, self.alpn) {
            Ok(config) => {
                *self.current.write() = config;
                *seen = now;
                tracing::info!(cert = %self.settings.cert.display(), "TLS certificates reloaded");
                true
            }
            Err(e) => {
                // Keep the stamps unchanged so that the next poll tries again (the files may
                // be in the middle of being replaced).
                tracing::warn!(error = %e, "TLS reload failed; keeping the previous certificates");
                false
            }
        }
    }

    /// Polls the files every `every` until the process ends.
    pub fn watch(self: &Arc<Self>, every: Duration) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(tls) = me.upgrade() else { return };
                let tls2 = tls.clone();
                // File reads are blocking; keep them off the async workers.
                let _ = tokio::task::spawn_blocking(move || tls2.reload_if_changed()).await;
            }
        });
    }

    /// Runs the handshake on `tcp` and returns the connection with the client's identity.
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<Conn> {
        let remote = tcp.peer_addr().ok();
        let acceptor = tokio_rustls::TlsAcceptor::from(self.current());
        let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake"))??;
        let identity = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|leaf| Arc::new(PeerIdentity::from_der(leaf.as_ref())));
        Ok(Conn::tls(tls, remote, identity))
    }
}

fn stamps(settings: &TlsSettings) -> Vec<Option<SystemTime>> {
    [
        Some(&settings.cert),
        Some(&settings.key),
        settings.client_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Files {
        dir: PathBuf,
    }

    impl Files {
        fn new(name: &str) -> Files {
            let dir =
                std::env::temp_dir().join(format!("sundial-tls-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Files { dir }
        }
        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        }
    }

    fn self_signed(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn loads_a_matching_pair_and_refuses_a_mismatched_key() {
        let files = Files::new("pair");
        let (cert, key) = self_signed("localhost");
        let (_, other_key) = self_signed("other");
        let settings = TlsSettings {
            cert: files.write("server.crt", &cert),
            key: files.write("server.key", &key),
            client_ca: None,
            client_auth: ClientAuth::None,
        };
        let config = load(&settings).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
        let bad = TlsSettings {
            key: files.write("other.key", &other_key),
            ..settings.clone()
        };
        let err = load(&bad).unwrap_err().to_string();
        assert!(err.contains("does not match"), "{err}");
    }

    #[test]
    fn names_missing_files_and_missing_client_ca() {
        let files = Files::new("missing");
        let settings = TlsSettings {
            cert: files.dir.join("nope.crt"),
            key: files.dir.join("nope.key"),
            client_ca: None,
            client_auth: ClientAuth::None,
        };
        let err = load(&settings).unwrap_err().to_string();
        assert!(err.contains("nope.crt"), "{err}");
        let (cert, key) = self_signed("localhost");
        let settings = TlsSettings {
            cert: files.write("s.crt", &cert),
            key: files.write("s.key", &key),
            client_ca: None,
            client_auth: ClientAuth::Required,
        };
        let err = load(&settings).unwrap_err().to_string();
        assert!(err.contains("no client CA"), "{err}");
        let not_pem = TlsSettings {
            cert: files.write("garbage.crt", "hello"),
            ..settings
        };
        let err = load(&not_pem).unwrap_err().to_string();
        assert!(err.contains("garbage.crt"), "{err}");
    }

    #[test]
    fn reload_swaps_only_on_change_and_keeps_old_config_on_error() {
        let files = Files::new("reload");
        let (cert, key) = self_signed("localhost");
        let settings = TlsSettings {
            cert: files.write("server.crt", &cert),
            key: files.write("server.key", &key),
            client_ca: None,
            client_auth: ClientAuth::None,
        };
        let tls = ReloadingTls::new(settings.clone()).unwrap();
        assert!(!tls.reload_if_changed());
        let before = tls.current();
        // A key that does not match: refused, the old configuration stays.
        let (_, other_key) = self_signed("x");
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&settings.key, other_key).unwrap();
        assert!(!tls.reload_if_changed());
        assert!(Arc::ptr_eq(&before, &tls.current()));
        // A complete new pair: swapped in.
        let (cert2, key2) = self_signed("localhost");
        std::fs::write(&settings.cert, cert2).unwrap();
        std::fs::write(&settings.key, key2).unwrap();
        assert!(tls.reload_if_changed());
        assert!(!Arc::ptr_eq(&before, &tls.current()));
    }
}
