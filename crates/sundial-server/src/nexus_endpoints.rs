//! The cluster's Nexus endpoint registry: every endpoint in memory, every change committed
//! first (a reply means committed), with the reference server's rules and messages for the
//! OperatorService's endpoint RPCs.
//!
//! An endpoint is stored as its encoded `temporal.api.nexus.v1.Endpoint`, one store row per
//! name (a rename deletes the old name's row and writes the new one in one batch). Changes run
//! one at a time, each checked against the registry as the one before left it, and detached
//! from the request ([`crate::detached`]): once started, a change is committed and installed
//! whether or not its caller still waits.
//!
//! Where the reference server (1.32) is inconsistent, the registry keeps its own data whole:
//! an update keeps the endpoint's `created_time` (the reference drops it), refuses a rename to
//! a name another endpoint holds (the reference accepts it and then has two endpoints of one
//! name), and frees the old name of a rename (the reference holds it until it restarts); a
//! delete must name the endpoint's current version (the reference only requires a positive
//! one); a page token the server did not write is InvalidArgument (the reference answers
//! Internal).

use crate::clock::Clock;
use crate::error::ServiceError;
use crate::namespaces::Namespaces;
use base64::Engine;
use parking_lot::RwLock;
use prost::Message;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use sundial_engine::api::nexus::v1::{Endpoint, EndpointSpec, endpoint_target::Variant};
use sundial_engine::api::operatorservice::v1::{
    CreateNexusEndpointRequest, DeleteNexusEndpointRequest, GetNexusEndpointRequest,
    ListNexusEndpointsRequest, ListNexusEndpointsResponse, UpdateNexusEndpointRequest,
};
use sundial_engine::time;
use sundial_store::{NexusEndpointRow, Store, StoreError, WriteBatch};

/// Longest endpoint name, in bytes (`limit.endpointNameMaxLength`).
pub const MAX_NAME_LENGTH: usize = 200;
/// Longest target task queue name, in bytes (`limit.maxIDLength`).
pub const MAX_TASK_QUEUE_LENGTH: usize = sundial_engine::validate::MAX_ID_LENGTH;
/// Largest description, as the encoded size of its payload with metadata
/// (`limit.endpointDescriptionMaxSize`).
pub const MAX_DESCRIPTION_SIZE: usize = 20_000;
/// Longest external target URL, in bytes (`limit.endpointExternalURLMaxLength`).
pub const MAX_URL_LENGTH: usize = 4 * 1024;
/// A list's page size when the request names none (`limit.endpointListDefaultPageSize`).
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest page a list may ask for (`limit.endpointListMaxPageSize`).
pub const MAX_PAGE_SIZE: usize = 1000;
/// What an endpoint name must match, as the reference's messages spell it.
pub const NAME_PATTERN: &str = r"^[a-zA-Z][a-zA-Z0-9\-]*[a-zA-Z0-9]$";
/// Task queue names reserved for the server's own queues.
const RESERVED_TASK_QUEUE_PREFIX: &str = "/_sys/";

/// The Nexus endpoints of the cluster.
pub struct NexusEndpoints {
    inner: Arc<Inner>,
    /// A worker target's namespace must exist.
    namespaces: Arc<Namespaces>,
}

/// What a detached change needs (it outlives the request).
struct Inner {
    store: Arc<dyn Store>,
    clock: Clock,
    registry: RwLock<Registry>,
    /// Held by the change in progress, from its checks until it is installed.
    writes: tokio::sync::Mutex<()>,
}

/// The endpoints in memory.
#[derive(Debug, Default)]
struct Registry {
    /// By id (a lowercase hyphenated UUID, so this is the order of the ids' bytes: the
    /// reference's list order).
    by_id: BTreeMap<String, Endpoint>,
    /// Endpoint name to id.
    by_name: HashMap<String, String>,
}

/// A committed change, as the registry installs it.
#[derive(Debug)]
enum Change {
    /// The endpoint, new or replacing the one of its id (under its old name or a new one).
    Put(Box<Endpoint>),
    /// The endpoint of this id is gone.
    Remove(String),
}

fn name_of(endpoint: &Endpoint) -> &str {
    endpoint.spec.as_ref().map_or("", |s| s.name.as_str())
}

impl Registry {
    fn insert(&mut self, endpoint: Endpoint) {
        self.remove(&endpoint.id);
        self.by_name
            .insert(name_of(&endpoint).to_string(), endpoint.id.clone());
        self.by_id.insert(endpoint.id.clone(), endpoint);
    }

    fn remove(&mut self, id: &str) -> Option<Endpoint> {
        let old = self.by_id.remove(id)?;
        if self.by_name.get(name_of(&old)).map(String::as_str) == Some(id) {
            self.by_name.remove(name_of(&old));
        }
        Some(old)
    }

    fn named(&self, name: &str) -> Option<&Endpoint> {
        self.by_id.get(self.by_name.get(name)?)
    }

    /// The store rows that make `change` durable (a rename also deletes the old name's row).
    fn rows(&self, change: &Change) -> Vec<NexusEndpointRow> {
        let mut rows = Vec::new();
        let (id, new_name) = match change {
            Change::Put(endpoint) => (endpoint.id.as_str(), Some(name_of(endpoint))),
            Change::Remove(id) => (id.as_str(), None),
        };
        if let Some(old) = self.by_id.get(id)
            && Some(name_of(old)) != new_name
        {
            rows.push(NexusEndpointRow {
                name: name_of(old).to_string(),
                data: None,
            });
        }
        if let Change::Put(endpoint) = change {
            rows.push(NexusEndpointRow {
                name: name_of(endpoint).to_string(),
                data: Some(endpoint.encode_to_vec()),
            });
        }
        rows
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::Put(endpoint) => self.insert(*endpoint),
            Change::Remove(id) => {
                self.remove(&id);
            }
        }
    }

    /// Up to `size` endpoints whose ids' bytes come after `after` (from the first when
    /// `None`), in id order, and the last one's id bytes when the page is full (the
    /// reference's token: a next page that may be empty).
    fn page(&self, after: Option<&[u8]>, size: usize) -> (Vec<Endpoint>, Option<[u8; 16]>) {
        let page: Vec<Endpoint> = self
            .by_id
            .values()
            .filter(|e| after.is_none_or(|after| id_bytes(&e.id).as_slice() > after))
            .take(size)
            .cloned()
            .collect();
        let next = (page.len() == size)
            .then(|| page.last().map(|e| id_bytes(&e.id)))
            .flatten();
        (page, next)
    }
}

/// The 16 bytes of an id the registry holds (always a UUID it made).
fn id_bytes(id: &str) -> [u8; 16] {
    uuid::Uuid::parse_str(id).map_or([0; 16], |u| *u.as_bytes())
}

impl NexusEndpoints {
    /// The registry as the store holds it.
    pub async fn load(
        store: Arc<dyn Store>,
        namespaces: Arc<Namespaces>,
        clock: Clock,
    ) -> Result<Self, ServiceError> {
        let mut registry = Registry::default();
        for row in store.load_nexus_endpoints().await? {
            let endpoint =
                Endpoint::decode(row.data.unwrap_or_default().as_slice()).map_err(|e| {
                    ServiceError::Internal(format!("corrupt Nexus endpoint {}: {e}", row.name))
                })?;
            registry.insert(endpoint);
        }
        Ok(NexusEndpoints {
            inner: Arc::new(Inner {
                store,
                clock,
                registry: RwLock::new(registry),
                writes: tokio::sync::Mutex::new(()),
            }),
            namespaces,
        })
    }

    /// The endpoint named `name`.
    pub fn by_name(&self, name: &str) -> Option<Endpoint> {
        self.inner.registry.read().named(name).cloned()
    }

    /// The endpoint of id `id` (a UUID in any case).
    pub fn by_id(&self, id: &str) -> Option<Endpoint> {
        let id = uuid::Uuid::parse_str(id).ok()?.hyphenated().to_string();
        self.inner.registry.read().by_id.get(&id).cloned()
    }

    /// Every endpoint, in id order.
    pub fn all(&self) -> Vec<Endpoint> {
        self.inner.registry.read().by_id.values().cloned().collect()
    }

    /// CreateNexusEndpoint: a new endpoint of a new id, at version 1.
    pub async fn create(&self, req: CreateNexusEndpointRequest) -> Result<Endpoint, ServiceError> {
        let spec = req.spec.unwrap_or_default();
        self.check_spec(&spec)?;
        self.change(move |registry, now| {
            if registry.by_name.contains_key(&spec.name) {
                return Err(ServiceError::AlreadyExistsPlain(format!(
                    "error creating Nexus endpoint. Endpoint with name {} already registered",
                    spec.name
                )));
            }
            let id = uuid::Uuid::new_v4().hyphenated().to_string();
            Ok(Endpoint {
                version: 1,
                url_prefix: url_prefix(&id),
                id,
                spec: Some(spec),
                created_time: Some(time::timestamp(now)),
                last_modified_time: None,
            })
        })
        .await
    }

    /// UpdateNexusEndpoint: the endpoint of the request's id, at the request's version,
    /// gets the new spec and the next version.
    pub async fn update(&self, req: UpdateNexusEndpointRequest) -> Result<Endpoint, ServiceError> {
        let spec = req.spec.unwrap_or_default();
        self.check_spec(&spec)?;
        let (id, version) = (req.id, req.version);
        self.change(move |registry, now| {
            let Some(previous) = registry.by_id.get(&id) else {
                return Err(ServiceError::NotFound(format!(
                    "error updating Nexus endpoint. endpoint ID {id} not found"
                )));
            };
            check_version(version, previous.version)?;
            if let Some(holder) = registry.by_name.get(&spec.name)
                && *holder != id
            {
                return Err(ServiceError::AlreadyExistsPlain(format!(
                    "error updating Nexus endpoint. Endpoint with name {} already registered",
                    spec.name
                )));
            }
            Ok(Endpoint {
                version: previous.version + 1,
                spec: Some(spec),
                last_modified_time: Some(time::timestamp(now)),
                ..previous.clone()
            })
        })
        .await
    }

    /// DeleteNexusEndpoint: the endpoint of the request's id, at the request's version.
    pub async fn delete(&self, req: DeleteNexusEndpointRequest) -> Result<(), ServiceError> {
        let mut issues = Vec::new();
        id_issues(&req.id, &mut issues);
        if req.version <= 0 {
            issues.push("endpoint version is non-positive".to_string());
        }
        refuse(issues)?;
        let DeleteNexusEndpointRequest { id, version } = req;
        let inner = self.inner.clone();
        crate::detached::run_detached(async move {
            let _turn = inner.writes.lock().await;
            let planned = {
                let registry = inner.registry.read();
                let Some(current) = registry.by_id.get(&id) else {
                    return Err(ServiceError::NotFound(format!(
                        "error deleting nexus endpoint with ID: {id}"
                    )));
                };
                check_version(version, current.version)?;
                let change = Change::Remove(id);
                (registry.rows(&change), change)
            };
            inner.commit(planned).await
        })
        .await
    }

    /// GetNexusEndpoint: by id (any form of UUID the reference parses).
    pub fn get(&self, req: &GetNexusEndpointRequest) -> Result<Endpoint, ServiceError> {
        let mut issues = Vec::new();
        let parsed = id_issues(&req.id, &mut issues);
        refuse(issues)?;
        let id = parsed
            .map(|u| u.hyphenated().to_string())
            .unwrap_or_default();
        self.inner
            .registry
            .read()
            .by_id
            .get(&id)
            .cloned()
            .ok_or_else(|| {
                ServiceError::NotFound(format!("Nexus endpoint with ID `{}` not found", req.id))
            })
    }

    /// ListNexusEndpoints: a page in id order, or with `name`, that endpoint alone (page size
    /// and token then do not matter, as in the reference).
    pub fn list(
        &self,
        req: &ListNexusEndpointsRequest,
    ) -> Result<ListNexusEndpointsResponse, ServiceError> {
        let registry = self.inner.registry.read();
        if !req.name.is_empty() {
            return Ok(ListNexusEndpointsResponse {
                next_page_token: Vec::new(),
                endpoints: registry.named(&req.name).cloned().into_iter().collect(),
            });
        }
        let size = page_size(req.page_size)?;
        let after = match req.next_page_token.as_slice() {
            [] => None,
            token => Some(decode_page_token(token)?),
        };
        let (endpoints, next) = registry.page(after.as_deref(), size);
        Ok(ListNexusEndpointsResponse {
            next_page_token: next.map(|id| encode_page_token(&id)).unwrap_or_default(),
            endpoints,
        })
    }

    /// The reference's checks of a spec to create or update with, in its order and words.
    fn check_spec(&self, spec: &EndpointSpec) -> Result<(), ServiceError> {
        check_spec(spec, |namespace| self.namespaces.get(namespace).is_some())
    }

    /// Runs `plan` against the registry in turn with every other change, then commits and
    /// installs the endpoint it returns, detached from the caller.
    async fn change(
        &self,
        plan: impl FnOnce(&Registry, i64) -> Result<Endpoint, ServiceError> + Send + 'static,
    ) -> Result<Endpoint, ServiceError> {
        let inner = self.inner.clone();
        crate::detached::run_detached(async move {
            let _turn = inner.writes.lock().await;
            let now = inner.clock.now_ms();
            let (planned, endpoint) = {
                let registry = inner.registry.read();
                let endpoint = plan(&registry, now)?;
                let change = Change::Put(Box::new(endpoint.clone()));
                ((registry.rows(&change), change), endpoint)
            };
            inner.commit(planned).await?;
            Ok(endpoint)
        })
        .await
    }
}

impl Inner {
    /// Commits the rows of a change and, once committed, installs it. The caller holds
    /// `writes`.
    async fn commit(
        &self,
        (rows, change): (Vec<NexusEndpointRow>, Change),
    ) -> Result<(), ServiceError> {
        let batch = WriteBatch {
            nexus_endpoints: rows,
            ..Default::default()
        };
        self.store
            .commit(batch)
            .await
            .map_err(|_| ServiceError::Unavailable("storage is shut down".into()))?
            .map_err(store_error)?;
        self.registry.write().apply(change);
        Ok(())
    }
}

/// A refused write of the registry's rows. A conflict cannot come from another writer (there
/// is one per database) and means nothing was written: the request may be retried.
fn store_error(e: StoreError) -> ServiceError {
    match e {
        StoreError::Conflict(m) => ServiceError::Unavailable(format!(
            "the Nexus endpoint registry could not be written: {m}"
        )),
        other => other.into(),
    }
}

/// The path under which the endpoint's operations are served.
fn url_prefix(id: &str) -> String {
    format!("/nexus/endpoints/{id}/services")
}

fn check_version(received: i64, expected: i64) -> Result<(), ServiceError> {
    if received != expected {
        return Err(ServiceError::FailedPrecondition(format!(
            "nexus endpoint version mismatch. received: {received} expected {expected}"
        )));
    }
    Ok(())
}

/// InvalidArgument with every issue, as the reference joins them.
fn refuse(issues: Vec<String>) -> Result<(), ServiceError> {
    if issues.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::InvalidArgument(issues.join(", ")))
    }
}

/// A request's page size: 0 means the default.
fn page_size(requested: i32) -> Result<usize, ServiceError> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n < 0 => Err(ServiceError::InvalidArgument(
            "page_size is negative".into(),
        )),
        n if n as usize > MAX_PAGE_SIZE => Err(ServiceError::InvalidArgument(format!(
            "page_size exceeds limit of {MAX_PAGE_SIZE}"
        ))),
        n => Ok(n as usize),
    }
}

/// The token of the page after the endpoint of id bytes `last`: the reference's own form,
/// `{"LastID":"<base64 of the id's bytes>"}`.
fn encode_page_token(last: &[u8]) -> Vec<u8> {
    let id = base64::engine::general_purpose::STANDARD.encode(last);
    serde_json::json!({ "LastID": id }).to_string().into_bytes()
}

/// The id bytes a page token names (any bytes: the page starts after them).
fn decode_page_token(token: &[u8]) -> Result<Vec<u8>, ServiceError> {
    let invalid = || ServiceError::InvalidArgument("Invalid NextPageToken.".into());
    let value: serde_json::Value = serde_json::from_slice(token).map_err(|_| invalid())?;
    let id = value
        .get("LastID")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(invalid)?;
    base64::engine::general_purpose::STANDARD
        .decode(id)
        .map_err(|_| invalid())
}

/// The reference's checks of an endpoint spec: the name, then the target, then the
/// description, every issue reported together; a worker target's namespace that does not
/// exist fails alone with FailedPrecondition, and a missing target ends the checks.
pub fn check_spec(
    spec: &EndpointSpec,
    namespace_exists: impl Fn(&str) -> bool,
) -> Result<(), ServiceError> {
    let mut issues = name_issues(&spec.name);
    let Some(variant) = spec.target.as_ref().and_then(|t| t.variant.as_ref()) else {
        issues.push("empty target variant".into());
        return refuse(issues);
    };
    match variant {
        Variant::Worker(worker) => {
            if worker.namespace.is_empty() {
                issues.push("target namespace not set".into());
            } else if !namespace_exists(&worker.namespace) {
                return Err(ServiceError::FailedPrecondition(format!(
                    "could not verify namespace referenced by target exists: {}",
                    ServiceError::NamespaceNotFound(worker.namespace.clone())
                )));
            }
            if let Some(issue) = task_queue_issue(&worker.task_queue) {
                issues.push(format!(
                    "invalid target task queue: {}",
                    go_quote(issue.as_bytes())
                ));
            }
        }
        Variant::External(external) => {
            if let Some(issue) = url_issue(&external.url) {
                issues.push(issue);
            }
        }
    }
    if let Some(description) = &spec.description
        && description.encoded_len() > MAX_DESCRIPTION_SIZE
    {
        issues.push(format!(
            "description size exceeds limit of {MAX_DESCRIPTION_SIZE}"
        ));
    }
    refuse(issues)
}

/// What is wrong with an endpoint name: unset, too long, not of [`NAME_PATTERN`].
pub fn name_issues(name: &str) -> Vec<String> {
    if name.is_empty() {
        return vec!["endpoint name not set".into()];
    }
    let mut issues = Vec::new();
    if name.len() > MAX_NAME_LENGTH {
        issues.push(format!(
            "endpoint name exceeds length limit of {MAX_NAME_LENGTH}"
        ));
    }
    if !matches_name_pattern(name) {
        issues.push(format!(
            "endpoint name must match the regex: {}",
            go_quote(NAME_PATTERN.as_bytes())
        ));
    }
    issues
}

/// Whether `name` matches [`NAME_PATTERN`]: an ASCII letter, then letters, digits and
/// hyphens, ending with a letter or digit (two characters at least).
fn matches_name_pattern(name: &str) -> bool {
    let bytes = name.as_bytes();
    match bytes {
        [first, middle @ .., last] => {
            first.is_ascii_alphabetic()
                && last.is_ascii_alphanumeric()
                && middle
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        }
        _ => false,
    }
}

/// The reference's task queue name check (`tqid` validation of a root partition's name).
fn task_queue_issue(task_queue: &str) -> Option<String> {
    if task_queue.is_empty() {
        return Some("taskQueue is not set".into());
    }
    if task_queue.len() > MAX_TASK_QUEUE_LENGTH {
        return Some("taskQueue length exceeds limit".into());
    }
    if task_queue.starts_with(RESERVED_TASK_QUEUE_PREFIX) {
        return Some(format!(
            "task queue name cannot start with reserved prefix {RESERVED_TASK_QUEUE_PREFIX}"
        ));
    }
    None
}

/// What is wrong with an external target's URL: unset, too long, not a URL as Go's
/// `net/url` parses it, or not http(s).
fn url_issue(url: &str) -> Option<String> {
    if url.is_empty() {
        return Some("empty target URL".into());
    }
    if url.len() > MAX_URL_LENGTH {
        return Some(format!(
            "target URL length exceeds limit of {MAX_URL_LENGTH}"
        ));
    }
    match go_url_scheme(url) {
        Err(e) => Some(format!("invalid target URL: {e}")),
        Ok(scheme) if scheme == "http" || scheme == "https" => None,
        Ok(scheme) => Some(format!(
            "invalid target URL scheme: {}, expected http or https",
            go_quote(scheme.as_bytes())
        )),
    }
}

/// The scheme (lowercased) of `raw` as Go's `url.Parse` reads it, or its error
/// (`parse "<url>": <reason>`). Covers what decides whether Go accepts a URL: control
/// characters, the scheme, a colon in a scheme-less first segment, the authority's userinfo,
/// host characters and port, and percent escapes.
fn go_url_scheme(raw: &str) -> Result<String, String> {
    let (url, fragment) = match raw.split_once('#') {
        Some((url, fragment)) => (url, Some(fragment)),
        None => (raw, None),
    };
    let failed =
        |url: &str, reason: String| format!("parse {}: {reason}", go_quote(url.as_bytes()));
    let scheme = parse_without_fragment(url).map_err(|reason| failed(url, reason))?;
    if let Some(fragment) = fragment {
        unescape_issue(fragment, false).map_err(|reason| failed(raw, reason))?;
    }
    Ok(scheme)
}

fn parse_without_fragment(url: &str) -> Result<String, String> {
    if url.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("net/url: invalid control character in URL".into());
    }
    let (scheme, rest) = split_scheme(url)?;
    let scheme = scheme.to_ascii_lowercase();
    let rest = if rest.ends_with('?') && rest.matches('?').count() == 1 {
        &rest[..rest.len() - 1]
    } else {
        rest.split_once('?').map_or(rest, |(before, _)| before)
    };
    if !rest.starts_with('/') {
        if !scheme.is_empty() {
            // Opaque (`mailto:x`): nothing more is parsed.
            return Ok(scheme);
        }
        let segment = rest.split_once('/').map_or(rest, |(first, _)| first);
        if segment.contains(':') {
            return Err("first path segment in URL cannot contain colon".into());
        }
    }
    let mut path = rest;
    if (!scheme.is_empty() || !rest.starts_with("///")) && rest.starts_with("//") {
        let after = &rest[2..];
        let (authority, tail) = match after.find('/') {
            Some(i) => (&after[..i], &after[i..]),
            None => (after, ""),
        };
        check_authority(authority)?;
        path = tail;
    }
    unescape_issue(path, false)?;
    Ok(scheme)
}

/// Go's `getScheme`: letters, then letters, digits, `+-.` up to a colon.
fn split_scheme(url: &str) -> Result<(&str, &str), String> {
    for (i, b) in url.bytes().enumerate() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return Err("missing protocol scheme".into()),
            b':' => return Ok((&url[..i], &url[i + 1..])),
            _ => return Ok(("", url)),
        }
    }
    Ok(("", url))
}

/// Go's `parseAuthority`: the host, then the userinfo before the last `@`.
fn check_authority(authority: &str) -> Result<(), String> {
    let (userinfo, host) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    check_host(host)?;
    if let Some(userinfo) = userinfo {
        let valid = userinfo
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:~!$&'()*+,;=%@".contains(&b));
        if !valid {
            return Err("net/url: invalid userinfo".into());
        }
        unescape_issue(userinfo, false)?;
    }
    Ok(())
}

/// Go's `parseHost`: a bracketed address needs its `]`, a port is digits, and the host holds
/// only what a host may.
fn check_host(host: &str) -> Result<(), String> {
    let port = if host.starts_with('[') {
        let Some(i) = host.rfind(']') else {
            return Err("missing ']' in host".into());
        };
        Some(&host[i + 1..])
    } else {
        host.rfind(':').map(|i| &host[i..])
    };
    if let Some(port) = port
        && !(port.is_empty()
            || port.starts_with(':') && port[1..].bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "invalid port {} after host",
            go_quote(port.as_bytes())
        ));
    }
    unescape_issue(host, true)
}

/// Go's `unescape` checks: every `%` starts two hex digits; in a host (`host`), an escape
/// below `%80` other than `%25` and any ASCII character a host cannot hold are refused.
fn unescape_issue(s: &str, host: bool) -> Result<(), String> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let escape = &bytes[i..bytes.len().min(i + 3)];
                let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
                if !(hex(i + 1) && hex(i + 2)) {
                    return Err(format!("invalid URL escape {}", go_quote(escape)));
                }
                if host && bytes[i + 1] < b'8' && escape != b"%25" {
                    return Err(format!("invalid URL escape {}", go_quote(escape)));
                }
                i += 3;
            }
            b if host && b < 0x80 && !host_may_hold(b) => {
                return Err(format!(
                    "invalid character {} in host name",
                    go_quote(&bytes[i..=i])
                ));
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// The ASCII characters Go leaves unescaped in a host.
fn host_may_hold(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.~!$&'()*+,;=:[]<>\"".contains(&b)
}

/// `bytes` quoted as Go's `%q` does: in double quotes, with `"` and `\` escaped, control and
/// other unprintable characters as escapes, and bytes that are not UTF-8 as `\xNN`.
pub fn go_quote(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    let mut rest = bytes;
    while !rest.is_empty() {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(all) => (all, 0),
            Err(e) => {
                let valid = std::str::from_utf8(&rest[..e.valid_up_to()]).unwrap_or_default();
                (valid, e.error_len().unwrap_or(rest.len() - e.valid_up_to()))
            }
        };
        for c in valid.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\x0c' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\x0b' => out.push_str("\\v"),
                c if (c as u32) < 0x20 || c == '\x7f' => {
                    out.push_str(&format!("\\x{:02x}", c as u32))
                }
                c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                    if (c as u32) < 0x10000 {
                        out.push_str(&format!("\\u{:04x}", c as u32))
                    } else {
                        out.push_str(&format!("\\U{:08x}", c as u32))
                    }
                }
                c => out.push(c),
            }
        }
        let consumed = valid.len();
        for b in &rest[consumed..consumed + bad] {
            out.push_str(&format!("\\x{b:02x}"));
        }
        rest = &rest[consumed + bad..];
    }
    out.push('"');
    out
}

/// Adds what is wrong with an endpoint id to `issues` (unset, or not a UUID as the reference
/// parses them); the UUID when it is one.
fn id_issues(id: &str, issues: &mut Vec<String>) -> Option<uuid::Uuid> {
    if id.is_empty() {
        issues.push("endpoint ID not set".into());
        return None;
    }
    match parse_go_uuid(id) {
        Ok(parsed) => Some(parsed),
        Err(e) => {
            issues.push(format!("malformed endpoint ID: {}", go_quote(e.as_bytes())));
            None
        }
    }
}

/// A UUID in the forms Go's `uuid.Parse` reads (36 characters with hyphens, 32 hex digits,
/// the 36 inside two more characters such as braces, or after `urn:uuid:`), with its errors.
pub fn parse_go_uuid(s: &str) -> Result<uuid::Uuid, String> {
    let bytes = s.as_bytes();
    let format = || "invalid UUID format".to_string();
    let hex_pair = |pair: &[u8]| -> Option<u8> {
        let digit = |b: u8| (b as char).to_digit(16);
        Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
    };
    let canonical = match bytes.len() {
        36 => bytes,
        38 => &bytes[1..37],
        45 => {
            if !bytes[..9].eq_ignore_ascii_case(b"urn:uuid:") {
                return Err(format!("invalid urn prefix: {}", go_quote(&bytes[..9])));
            }
            &bytes[9..]
        }
        32 => {
            let mut out = [0u8; 16];
            for (i, pair) in bytes.chunks(2).enumerate() {
                out[i] = hex_pair(pair).ok_or_else(format)?;
            }
            return Ok(uuid::Uuid::from_bytes(out));
        }
        n => return Err(format!("invalid UUID length: {n}")),
    };
    if [8, 13, 18, 23].iter().any(|&i| canonical[i] != b'-') {
        return Err(format());
    }
    let mut out = [0u8; 16];
    let starts = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    for (i, start) in starts.into_iter().enumerate() {
        out[i] = hex_pair(&canonical[start..start + 2]).ok_or_else(format)?;
    }
    Ok(uuid::Uuid::from_bytes(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sundial_engine::api::common::v1::Payload;
    use sundial_engine::api::nexus::v1::{EndpointTarget, endpoint_target};

    const REGEX_ISSUE: &str =
        r#"endpoint name must match the regex: "^[a-zA-Z][a-zA-Z0-9\\-]*[a-zA-Z0-9]$""#;

    fn worker(namespace: &str, task_queue: &str) -> Option<EndpointTarget> {
        Some(EndpointTarget {
            variant: Some(Variant::Worker(endpoint_target::Worker {
                namespace: namespace.into(),
                task_queue: task_queue.into(),
            })),
        })
    }

    fn external(url: &str) -> Option<EndpointTarget> {
        Some(EndpointTarget {
            variant: Some(Variant::External(endpoint_target::External {
                url: url.into(),
            })),
        })
    }

    fn spec(name: &str, target: Option<EndpointTarget>) -> EndpointSpec {
        EndpointSpec {
            name: name.into(),
            description: None,
            target,
        }
    }

    /// The message `spec` is refused with ("" when accepted); namespace "default" exists.
    fn refusal(spec: &EndpointSpec) -> String {
        match check_spec(spec, |ns| ns == "default") {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn names_follow_the_reference_pattern_and_length() {
        for good in ["ab", "a--b", "A-1", "myEndpoint9", &"x".repeat(200)] {
            assert!(name_issues(good).is_empty(), "{good}");
        }
        for bad in ["a", "1abc", "a_b", "a-", "-a", "a b", "a.b", "é", "_x"] {
            assert_eq!(name_issues(bad), [REGEX_ISSUE], "{bad}");
        }
        assert_eq!(name_issues(""), ["endpoint name not set"]);
        assert_eq!(
            name_issues(&"x".repeat(201)),
            ["endpoint name exceeds length limit of 200"]
        );
        assert_eq!(
            name_issues(&format!("{}-", "x".repeat(201))),
            ["endpoint name exceeds length limit of 200", REGEX_ISSUE]
        );
    }

    #[test]
    fn specs_are_checked_in_the_reference_order_and_words() {
        assert_eq!(refusal(&spec("ok-name", worker("default", "tq"))), "");
        assert_eq!(
            refusal(&EndpointSpec::default()),
            "endpoint name not set, empty target variant"
        );
        assert_eq!(
            refusal(&spec("a_b", None)),
            format!("{REGEX_ISSUE}, empty target variant")
        );
        assert_eq!(
            refusal(&spec("a_b", worker("", ""))),
            format!(
                "{REGEX_ISSUE}, target namespace not set, invalid target task queue: \"taskQueue is not set\""
            )
        );
        // A namespace that does not exist fails alone, whatever else is wrong.
        assert_eq!(
            refusal(&spec("a_b", worker("nope", ""))),
            "could not verify namespace referenced by target exists: Namespace nope is not found."
        );
        assert!(matches!(
            check_spec(&spec("ok", worker("nope", "tq")), |_| false),
            Err(ServiceError::FailedPrecondition(_))
        ));
        assert_eq!(
            refusal(&spec("ok", worker("default", &"q".repeat(1001)))),
            "invalid target task queue: \"taskQueue length exceeds limit\""
        );
        assert_eq!(
            refusal(&spec("ok", worker("default", &"q".repeat(1000)))),
            ""
        );
        assert_eq!(
            refusal(&spec("ok", worker("default", "/_sys/x"))),
            "invalid target task queue: \"task queue name cannot start with reserved prefix /_sys/\""
        );
        // The description's encoded size, metadata included.
        let described = |data: usize| EndpointSpec {
            description: Some(Payload {
                data: vec![b'x'; data],
                ..Default::default()
            }),
            ..spec("ok", worker("default", "tq"))
        };
        assert_eq!(refusal(&described(19_996)), "");
        assert_eq!(
            refusal(&described(19_997)),
            "description size exceeds limit of 20000"
        );
        assert_eq!(
            refusal(&EndpointSpec {
                description: Some(Payload {
                    data: vec![b'x'; 20_001],
                    ..Default::default()
                }),
                ..spec("a_b", external("ftp://x"))
            }),
            format!(
                "{REGEX_ISSUE}, invalid target URL scheme: \"ftp\", expected http or https, description size exceeds limit of 20000"
            )
        );
    }

    #[test]
    fn external_urls_are_read_as_go_reads_them() {
        let issue = |url: &str| refusal(&spec("ok", external(url)));
        for good in [
            "http://localhost:1234/p",
            "https://x.example/y?q=%zz#f",
            "HTTP://x",
            "http://",
            "http:x",
            "http://user:pw@host:80/a%20b",
            "http://[::1]:8080/",
        ] {
            assert_eq!(issue(good), "", "{good}");
        }
        let cases = [
            ("", "empty target URL"),
            (
                "not a url",
                r#"invalid target URL scheme: "", expected http or https"#,
            ),
            (
                "//x/y",
                r#"invalid target URL scheme: "", expected http or https"#,
            ),
            (
                "x:y",
                r#"invalid target URL scheme: "x", expected http or https"#,
            ),
            (
                "mailto:a@b",
                r#"invalid target URL scheme: "mailto", expected http or https"#,
            ),
            (
                ":foo",
                r#"invalid target URL: parse ":foo": missing protocol scheme"#,
            ),
            (
                "https://exa mple.com",
                r#"invalid target URL: parse "https://exa mple.com": invalid character " " in host name"#,
            ),
            (
                "http://[::1",
                r#"invalid target URL: parse "http://[::1": missing ']' in host"#,
            ),
            (
                "1http://x",
                r#"invalid target URL: parse "1http://x": first path segment in URL cannot contain colon"#,
            ),
            (
                "h%tp://x",
                r#"invalid target URL: parse "h%tp://x": first path segment in URL cannot contain colon"#,
            ),
            (
                "http://x/%zz",
                r#"invalid target URL: parse "http://x/%zz": invalid URL escape "%zz""#,
            ),
            (
                "http://x/\x7f",
                r#"invalid target URL: parse "http://x/\x7f": net/url: invalid control character in URL"#,
            ),
            (
                "http://x\ny",
                r#"invalid target URL: parse "http://x\ny": net/url: invalid control character in URL"#,
            ),
            (
                "http://x:ab",
                r#"invalid target URL: parse "http://x:ab": invalid port ":ab" after host"#,
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(issue(url), expected, "{url:?}");
        }
        assert_eq!(issue(&format!("http://{}", "a".repeat(4089))), "");
        assert_eq!(
            issue(&format!("http://{}", "a".repeat(4090))),
            "target URL length exceeds limit of 4096"
        );
    }

    #[test]
    fn ids_parse_as_go_parses_uuids() {
        let id = "2f31d463-c438-4483-8df5-4e9630d0984e";
        let parsed = uuid::Uuid::parse_str(id).unwrap();
        for form in [
            id.to_string(),
            id.to_uppercase(),
            id.replace('-', ""),
            format!("{{{id}}}"),
            format!("({id})"),
            format!("URN:uuid:{id}"),
        ] {
            assert_eq!(parse_go_uuid(&form), Ok(parsed), "{form}");
        }
        assert_eq!(parse_go_uuid("abc"), Err("invalid UUID length: 3".into()));
        assert_eq!(
            parse_go_uuid(&format!("zzzzzzzz{}", &id[8..])),
            Err("invalid UUID format".into())
        );
        assert_eq!(
            parse_go_uuid(&format!("urn:uuix:{id}")),
            Err(r#"invalid urn prefix: "urn:uuix:""#.into())
        );
        // Multi-byte characters count in bytes and are never split into a panic.
        assert!(parse_go_uuid(&"é".repeat(18)).is_err());
        assert!(parse_go_uuid(&format!("ééééé{}", &id[1..])).is_err());
        let mut issues = Vec::new();
        id_issues(&format!("urn:uuix:{id}"), &mut issues);
        assert_eq!(
            issues,
            [r#"malformed endpoint ID: "invalid urn prefix: \"urn:uuix:\"""#]
        );
    }

    #[test]
    fn go_quoting_escapes_what_go_escapes() {
        assert_eq!(go_quote(b"a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote(b"\n\x01\x7f"), r#""\n\x01\x7f""#);
        assert_eq!(go_quote("é\u{a0}".as_bytes()), "\"é\\u00a0\"");
        assert_eq!(go_quote(b"ok\xffyes"), r#""ok\xffyes""#);
    }

    fn endpoint(id: u8, name: &str, version: i64) -> Endpoint {
        let id = uuid::Uuid::from_bytes([id; 16]).hyphenated().to_string();
        Endpoint {
            version,
            url_prefix: url_prefix(&id),
            id,
            spec: Some(spec(name, worker("default", "tq"))),
            ..Default::default()
        }
    }

    #[test]
    fn a_rename_moves_the_name_and_its_row() {
        let mut registry = Registry::default();
        registry.apply(Change::Put(Box::new(endpoint(1, "first", 1))));
        let renamed = endpoint(1, "second", 2);
        let rows = registry.rows(&Change::Put(Box::new(renamed.clone())));
        assert_eq!(
            rows.iter()
                .map(|r| (r.name.as_str(), r.data.is_some()))
                .collect::<Vec<_>>(),
            [("first", false), ("second", true)]
        );
        registry.apply(Change::Put(Box::new(renamed)));
        assert!(registry.named("first").is_none());
        assert_eq!(registry.named("second").map(|e| e.version), Some(2));
        // Same name: one row.
        assert_eq!(
            registry
                .rows(&Change::Put(Box::new(endpoint(1, "second", 3))))
                .len(),
            1
        );
        let id = endpoint(1, "", 0).id;
        let rows = registry.rows(&Change::Remove(id.clone()));
        assert_eq!(
            rows,
            [NexusEndpointRow {
                name: "second".into(),
                data: None
            }]
        );
        registry.apply(Change::Remove(id));
        assert!(registry.by_id.is_empty() && registry.by_name.is_empty());
    }

    #[test]
    fn pages_follow_id_order_and_a_full_page_names_the_next() {
        let mut registry = Registry::default();
        for i in [3u8, 1, 2] {
            registry.apply(Change::Put(Box::new(endpoint(i, &format!("e{i}"), 1))));
        }
        let names = |page: &[Endpoint]| page.iter().map(name_of).collect::<Vec<_>>().join(",");
        let (first, next) = registry.page(None, 2);
        assert_eq!(names(&first), "e1,e2");
        let next = next.unwrap();
        assert_eq!(next, [2; 16]);
        let (second, after) = registry.page(Some(&next), 2);
        assert_eq!((names(&second).as_str(), after), ("e3", None));
        // Exactly full: a token, then an empty page.
        let (all, token) = registry.page(None, 3);
        assert_eq!((all.len(), token), (3, Some([3; 16])));
        assert!(registry.page(Some(&[3; 16]), 3).0.is_empty());
        // Any bytes start a page: those after them.
        assert_eq!(names(&registry.page(Some(&[1, 1]), 10).0), "e1,e2,e3");
        assert_eq!(names(&registry.page(Some(&[1, 2]), 10).0), "e2,e3");
        // The token is the reference's JSON and reads back.
        let token = encode_page_token(&[2; 16]);
        assert_eq!(
            String::from_utf8(token.clone()).unwrap(),
            r#"{"LastID":"AgICAgICAgICAgICAgICAg=="}"#
        );
        assert_eq!(decode_page_token(&token).unwrap(), vec![2; 16]);
        for bad in [
            &b"garbage"[..],
            b"{}",
            br#"{"LastID":"zz"}"#,
            br#"{"LastID":1}"#,
        ] {
            assert!(decode_page_token(bad).is_err());
        }
    }

    /// A registry over an in-memory store behind a fault injector.
    async fn registry() -> (NexusEndpoints, Arc<sundial_store::FaultyStore>) {
        let inner: Arc<dyn Store> = Arc::new(sundial_store::SqliteStore::open(None).unwrap());
        let faulty = sundial_store::FaultyStore::new(inner);
        let store: Arc<dyn Store> = faulty.clone();
        let namespaces = Arc::new(Namespaces::load(store.clone()).await.unwrap());
        let registry = NexusEndpoints::load(store, namespaces, Clock::Wall)
            .await
            .unwrap();
        (registry, faulty)
    }

    fn create_request(name: &str) -> CreateNexusEndpointRequest {
        CreateNexusEndpointRequest {
            spec: Some(spec(name, external("https://nexus.example/"))),
        }
    }

    /// A change committed after its caller gave up is installed all the same; one the store
    /// refuses installs nothing; changes of one name made together create it once.
    #[tokio::test]
    async fn changes_are_installed_once_committed_and_only_then() {
        use sundial_store::testing::Fault;
        let (registry, faulty) = registry().await;
        faulty.inject(
            1,
            Fault::DelayReply(std::time::Duration::from_millis(300)),
            |b| !b.nexus_endpoints.is_empty(),
        );
        let abandoned = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            registry.create(create_request("given-up")),
        )
        .await;
        assert!(abandoned.is_err(), "{abandoned:?}");
        for _ in 0..200 {
            if registry.by_name("given-up").is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let installed = registry
            .by_name("given-up")
            .expect("installed once committed");
        assert_eq!(
            registry.by_id(&installed.id.to_uppercase()),
            Some(installed)
        );

        faulty.inject(
            1,
            Fault::Fail(StoreError::Unavailable("down".into())),
            |_| true,
        );
        let refused = registry.create(create_request("refused")).await;
        assert!(
            matches!(refused, Err(ServiceError::Unavailable(_))),
            "{refused:?}"
        );
        assert!(registry.by_name("refused").is_none());

        let (a, b) = tokio::join!(
            registry.create(create_request("twice")),
            registry.create(create_request("twice"))
        );
        assert!(a.is_ok() != b.is_ok(), "{a:?} {b:?}");
        assert!(matches!(a.and(b), Err(ServiceError::AlreadyExistsPlain(_))));
        assert_eq!(registry.all().len(), 2);
    }

    #[test]
    fn page_sizes_default_and_are_bounded() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(1000).unwrap(), 1000);
        assert_eq!(
            page_size(-1).unwrap_err().to_string(),
            "page_size is negative"
        );
        assert_eq!(
            page_size(1001).unwrap_err().to_string(),
            "page_size exceeds limit of 1000"
        );
    }
}
