//! The production configuration file of `sundial server start --config FILE` (TOML).
//!
//! Every table refuses keys it does not know, so a typo fails the start with the key's name
//! instead of being ignored. Paths are relative to the file's directory. Durations are written
//! as `"500ms"`, `"30s"`, `"15m"`, `"72h"` or `"30d"`.

use anyhow::{Context, bail};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use sundial_server::authz::{Grant, Policy};
use sundial_server::tls::{ClientAuth, TlsSettings};

/// The whole file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub storage: Storage,
    #[serde(default)]
    pub log: Log,
    pub tls: Option<Tls>,
    pub authorization: Option<Authorization>,
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
    #[serde(default)]
    pub limits: Limits,
    /// The web UI; not served when absent.
    pub ui: Option<Ui>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ui {
    /// Address of the web UI (with the server's TLS and authorization when configured).
    pub listen: SocketAddr,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// gRPC frontend address.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Prometheus endpoint address (`/metrics`); off when absent.
    pub metrics_listen: Option<SocketAddr>,
    /// Temporal's HTTP/JSON API (`/api/v1/...`, same TLS and authorization as gRPC); off when
    /// absent.
    pub http_listen: Option<SocketAddr>,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[serde(default = "default_grace")]
    pub shutdown_grace: String,
    /// How often closed runs past retention are looked for.
    #[serde(default = "default_retention_scan")]
    pub retention_scan_interval: String,
    /// How many runs stay in memory; idle running runs beyond it are evicted and loaded
    /// again on demand.
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: default_listen(),
            metrics_listen: None,
            http_listen: None,
            shutdown_grace: default_grace(),
            retention_scan_interval: default_retention_scan(),
            cache_size: default_cache_size(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7233))
}

fn default_cache_size() -> usize {
    sundial_server::history::DEFAULT_CACHE_SIZE
}

fn default_grace() -> String {
    "10s".into()
}

fn default_retention_scan() -> String {
    "60s".into()
}

/// Where state is kept.
pub enum StoreChoice {
    /// An SQLite file, or memory (`None`).
    Sqlite(Option<PathBuf>),
    Postgres(sundial_store::PostgresOptions),
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// SQLite file; in memory when absent (nothing survives a restart).
    pub path: Option<PathBuf>,
    /// PostgreSQL instead of SQLite: `postgres://user@host:5432/database` (exclusive with
    /// `path`).
    pub url: Option<String>,
    /// Read connections to PostgreSQL (the writer has one of its own).
    pub pool_size: Option<usize>,
    /// How long connecting to PostgreSQL may take, e.g. `"10s"`.
    pub connect_timeout: Option<String>,
    /// PEM file of the CA that signed PostgreSQL's certificate: TLS to the database, verified
    /// against it (without it, TLS is used when the URL says `sslmode=require`, verified against
    /// the system's roots).
    pub ca_file: Option<PathBuf>,
}

impl Storage {
    /// Which store the section names.
    pub fn choice(&self) -> anyhow::Result<StoreChoice> {
        match (&self.path, &self.url) {
            (Some(_), Some(_)) => {
                bail!("[storage] sets both path (SQLite) and url (PostgreSQL); choose one")
            }
            (_, Some(url)) => {
                let mut options = sundial_store::PostgresOptions::new(url.clone());
                if let Some(size) = self.pool_size {
                    if size == 0 {
                        bail!("[storage] pool_size must be at least 1");
                    }
                    options.pool_size = size;
                }
                if let Some(timeout) = &self.connect_timeout {
                    options.connect_timeout =
                        parse_duration(timeout).context("[storage] connect_timeout")?;
                }
                options.ca_file = self.ca_file.clone();
                Ok(StoreChoice::Postgres(options))
            }
            (path, None) => {
                if self.pool_size.is_some()
                    || self.connect_timeout.is_some()
                    || self.ca_file.is_some()
                {
                    bail!(
                        "[storage] pool_size, connect_timeout and ca_file apply to PostgreSQL (url) only"
                    );
                }
                Ok(StoreChoice::Sqlite(path.clone()))
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    #[serde(default = "default_level")]
    pub level: String,
    #[serde(default = "default_format")]
    pub format: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: default_level(),
            format: default_format(),
        }
    }
}

fn default_level() -> String {
    "info".into()
}

fn default_format() -> String {
    "text".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    /// `none`, `optional` or `required` (default `required` when `client_ca` is set).
    pub client_auth: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    #[serde(default, rename = "grant")]
    pub grants: Vec<GrantEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantEntry {
    pub identity: String,
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Namespace {
    pub name: String,
    /// Retention of closed runs (Temporal's default: 1 day).
    pub retention: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// History length at which continue-as-new is suggested.
    pub history_count_suggest_continue_as_new: Option<i64>,
    /// History size in bytes at which continue-as-new is suggested.
    pub history_size_suggest_continue_as_new: Option<i64>,
    /// History length past which a workflow is terminated (Temporal's default 51,200).
    pub history_count_error: Option<i64>,
    /// History size in bytes past which a workflow is terminated (default 50 MiB).
    pub history_size_error: Option<i64>,
    /// Largest payload field a request may carry, in bytes (default 2 MiB).
    pub blob_size_error: Option<i64>,
    /// Pending activities per workflow (default 2,000).
    pub pending_activities: Option<i64>,
    /// Pending child workflows per workflow (default 2,000).
    pub pending_child_executions: Option<i64>,
    /// Pending signals to other workflows per workflow (default 2,000).
    pub pending_signals: Option<i64>,
    /// Pending cancellation requests to other workflows per workflow (default 2,000).
    pub pending_cancel_requests: Option<i64>,
    /// Updates in flight (admitted or accepted, not completed) per workflow (default 10).
    pub max_in_flight_updates: Option<i64>,
    /// Updates one workflow run may receive (default 2,000).
    pub max_total_updates: Option<i64>,
    /// Whether workflows may reach other namespaces (children, signals, cancellations).
    pub cross_namespace_commands: Option<bool>,
}

/// Parses `"500ms"`, `"30s"`, `"15m"`, `"72h"`, `"30d"`.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .with_context(|| format!("duration {text:?} has no unit (ms, s, m, h or d)"))?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .with_context(|| format!("duration {text:?} does not start with a number"))?;
    let secs = |k: u64| {
        n.checked_mul(k)
            .map(Duration::from_secs)
            .with_context(|| format!("duration {text:?} is too long"))
    };
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86400),
        other => bail!("duration {text:?}: unknown unit {other:?} (ms, s, m, h or d)"),
    }
}

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        let mut config: Config = toml::from_str(&text)
            .with_context(|| format!("configuration file {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config
            .check()
            .with_context(|| format!("configuration file {}", path.display()))?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(path) = self.storage.path.as_mut() {
            resolve(path);
        }
        if let Some(path) = self.storage.ca_file.as_mut() {
            resolve(path);
        }
        if let Some(tls) = self.tls.as_mut() {
            resolve(&mut tls.cert);
            resolve(&mut tls.key);
            if let Some(ca) = tls.client_ca.as_mut() {
                resolve(ca);
            }
        }
    }

    /// Checks what the types do not: units, names, combinations.
    fn check(&self) -> anyhow::Result<()> {
        parse_duration(&self.server.shutdown_grace).context("server.shutdown_grace")?;
        let scan = parse_duration(&self.server.retention_scan_interval)
            .context("server.retention_scan_interval")?;
        if scan.is_zero() {
            bail!("server.retention_scan_interval must be more than zero");
        }
        crate::logging::log_filter(&self.log.level).context("log.level")?;
        crate::logging::LogFormat::parse(&self.log.format).context("log.format")?;
        self.tls_settings()?;
        for ns in &self.namespaces {
            if ns.name.is_empty() {
                bail!("namespaces: a namespace has an empty name");
            }
            if let Some(r) = &ns.retention {
                parse_duration(r).with_context(|| format!("namespace {}: retention", ns.name))?;
            }
        }
        if let Some(authz) = &self.authorization {
            match self.tls.as_ref().map(|t| self.client_auth(t)) {
                Some(Ok(ClientAuth::Optional | ClientAuth::Required)) => {}
                _ => bail!(
                    "authorization needs client certificates: set tls.client_ca (and tls.client_auth)"
                ),
            }
            for g in &authz.grants {
                if g.identity.is_empty() {
                    bail!("authorization.grant: identity must not be empty");
                }
                if g.namespaces.is_empty() {
                    bail!("authorization.grant {:?}: namespaces is empty", g.identity);
                }
            }
        }
        Ok(())
    }

    fn client_auth(&self, tls: &Tls) -> anyhow::Result<ClientAuth> {
        Ok(match (tls.client_auth.as_deref(), &tls.client_ca) {
            (None, None) | (Some("none"), _) => ClientAuth::None,
            (None, Some(_)) | (Some("required"), _) => ClientAuth::Required,
            (Some("optional"), _) => ClientAuth::Optional,
            (Some(other), _) => {
                bail!("tls.client_auth {other:?}: expected none, optional or required")
            }
        })
    }

    /// The TLS settings, if TLS is configured.
    pub fn tls_settings(&self) -> anyhow::Result<Option<TlsSettings>> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        let client_auth = self.client_auth(tls)?;
        if client_auth != ClientAuth::None && tls.client_ca.is_none() {
            bail!("tls.client_auth is {client_auth:?} but tls.client_ca is not set");
        }
        Ok(Some(TlsSettings {
            cert: tls.cert.clone(),
            key: tls.key.clone(),
            client_ca: tls.client_ca.clone(),
            client_auth,
        }))
    }

    /// The authorization table, if one is configured.
    pub fn policy(&self) -> Option<Policy> {
        self.authorization.as_ref().map(|a| {
            Policy::new(
                a.grants
                    .iter()
                    .map(|g| Grant {
                        identity: g.identity.clone(),
                        namespaces: g.namespaces.clone(),
                        admin: g.admin,
                    })
                    .collect(),
            )
        })
    }

    /// Namespaces to register, `default` first unless configured.
    pub fn namespace_specs(&self) -> anyhow::Result<Vec<sundial_server::NamespaceSpec>> {
        let mut specs = Vec::new();
        if !self.namespaces.iter().any(|n| n.name == "default") {
            specs.push(sundial_server::NamespaceSpec {
                name: "default".into(),
                retention_ms: None,
            });
        }
        for ns in &self.namespaces {
            let retention_ms = match &ns.retention {
                Some(r) => Some(i64::try_from(parse_duration(r)?.as_millis())?),
                None => None,
            };
            specs.push(sundial_server::NamespaceSpec {
                name: ns.name.clone(),
                retention_ms,
            });
        }
        Ok(specs)
    }

    pub fn engine_limits(&self) -> sundial_engine::Limits {
        let mut limits = sundial_engine::Limits::default();
        if let Some(n) = self.limits.history_count_suggest_continue_as_new {
            limits.suggest_continue_as_new_events = n;
        }
        if let Some(n) = self.limits.history_size_suggest_continue_as_new {
            limits.suggest_continue_as_new_bytes = n;
        }
        if let Some(n) = self.limits.history_count_error {
            limits.history_count_error = n;
        }
        if let Some(n) = self.limits.history_size_error {
            limits.history_size_error_bytes = n;
        }
        if let Some(n) = self.limits.blob_size_error {
            limits.blob_size_limit_bytes = n;
        }
        let l = &self.limits;
        for (value, slot) in [
            (l.pending_activities, &mut limits.pending_activities),
            (
                l.pending_child_executions,
                &mut limits.pending_child_executions,
            ),
            (l.pending_signals, &mut limits.pending_signals),
            (
                l.pending_cancel_requests,
                &mut limits.pending_cancel_requests,
            ),
            (l.max_in_flight_updates, &mut limits.max_in_flight_updates),
            (l.max_total_updates, &mut limits.max_total_updates),
        ] {
            if let Some(n) = value {
                *slot = n;
            }
        }
        if let Some(enabled) = l.cross_namespace_commands {
            limits.cross_namespace_commands = enabled;
        }
        limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(
            parse_duration("72h").unwrap(),
            Duration::from_secs(72 * 3600)
        );
        assert_eq!(
            parse_duration("2d").unwrap(),
            Duration::from_secs(2 * 86400)
        );
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("3w").is_err());
    }

    #[test]
    fn a_full_file_parses() {
        let config = parse(
            r#"
            [server]
            listen = "0.0.0.0:7233"
            metrics_listen = "127.0.0.1:9090"
            http_listen = "127.0.0.1:7243"
            shutdown_grace = "5s"
            [storage]
            path = "/var/lib/sundial/sundial.db"
            [log]
            level = "warn"
            format = "json"
            [tls]
            cert = "server.pem"
            key = "server.key"
            client_ca = "ca.pem"
            [[authorization.grant]]
            identity = "worker-a"
            namespaces = ["orders"]
            [[authorization.grant]]
            identity = "ops"
            namespaces = ["*"]
            admin = true
            [[namespaces]]
            name = "orders"
            retention = "72h"
            [limits]
            history_count_suggest_continue_as_new = 1000
            [ui]
            listen = "127.0.0.1:8233"
            "#,
        )
        .unwrap();
        let tls = config.tls_settings().unwrap().unwrap();
        assert_eq!(tls.client_auth, ClientAuth::Required);
        let specs = config.namespace_specs().unwrap();
        assert_eq!(specs[0].name, "default");
        assert_eq!(specs[1].retention_ms, Some(72 * 3600 * 1000));
        assert_eq!(config.engine_limits().suggest_continue_as_new_events, 1000);
        assert!(config.policy().is_some());
        assert_eq!(
            config.server.http_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 7243)))
        );
        assert_eq!(parse("").unwrap().server.http_listen, None);
        assert_eq!(
            config.ui.map(|ui| ui.listen),
            Some(SocketAddr::from(([127, 0, 0, 1], 8233)))
        );
        assert!(parse("").unwrap().ui.is_none());
    }

    #[test]
    fn unknown_keys_and_bad_combinations_are_named() {
        let err = parse("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        assert!(format!("{err:#}").contains("lisen"), "{err:#}");
        let err =
            parse("[tls]\ncert = \"a\"\nkey = \"b\"\nclient_auth = \"sometimes\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("sometimes"), "{err:#}");
        let err =
            parse("[[authorization.grant]]\nidentity = \"a\"\nnamespaces = [\"x\"]\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("client certificates"),
            "{err:#}"
        );
        let err = parse("[log]\nlevel = \"loud\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("loud"), "{err:#}");
        let err = parse("[[namespaces]]\nname = \"x\"\nretention = \"forever\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("retention"), "{err:#}");
    }
}
