//! Authorization: which client identity may call which RPC on which namespace.
//!
//! A [`Policy`] maps a client certificate's identity (any of its subject common names or
//! subject alternative names) to the namespaces it may use and whether it may administer them
//! (register or update the namespace, add or remove search attributes). Every RPC is
//! classified from the generated method table ([`sundial_proto::METHODS`]), so none can be
//! missed: health checks are open, cluster-wide reads (GetSystemInfo, GetClusterInfo,
//! ListNamespaces, GetSearchAttributes) need any grant, namespaced calls need a grant on the
//! request's `namespace` (and on the namespace inside its task token, if it carries one), and
//! cluster-wide operator calls need an administrator grant on `*`.
//!
//! The check runs as a tower layer in front of the services, before a request is decoded by
//! them: a refused request answers `PermissionDenied` and reaches no handler, so it changes
//! nothing.

use crate::peer::{ConnInfo, PeerIdentity};
use crate::request_filter::{BoxFuture, FilterLayer, RequestFilter};
use crate::tokens::TaskToken;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::sync::Arc;
use sundial_proto::Method;
use tonic::body::Body;

/// The namespace pattern that matches every namespace.
pub const ANY_NAMESPACE: &str = "*";
/// The message of every refusal, as the reference server words it.
const DENIED: &str = "Request unauthorized.";

/// One entry of the authorization table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// A subject common name or subject alternative name of the client certificate.
    pub identity: String,
    /// Namespaces this identity may use; `*` for all.
    pub namespaces: Vec<String>,
    /// Whether it may also administer them (namespace registration and updates, search
    /// attributes); with `*`, also the cluster-wide operator calls.
    pub admin: bool,
}

/// What an RPC needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone who completed the TLS handshake (health checks).
    Open,
    /// Any identity with at least one grant (cluster-wide reads every SDK makes).
    Cluster,
    /// An administrator of `*`.
    ClusterAdmin,
    /// A grant on the request's namespace.
    Namespace,
    /// An administrator grant on the request's namespace.
    NamespaceAdmin,
}

/// Cluster-wide read calls every client makes (no namespace in the request).
const CLUSTER_READS: &[&str] = &[
    "GetSystemInfo",
    "GetClusterInfo",
    "ListNamespaces",
    "GetSearchAttributes",
];
/// Namespaced calls that administer the namespace.
const NAMESPACE_ADMIN_WORKFLOW_SERVICE: &[&str] =
    &["RegisterNamespace", "UpdateNamespace", "DeprecateNamespace"];
/// Operator calls that only read.
const OPERATOR_READS: &[&str] = &["ListSearchAttributes"];

/// The access an RPC needs.
pub fn classify(method: &Method) -> Access {
    let service = method
        .path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    let namespaced = method.namespace_field.is_some();
    match service {
        "grpc.health.v1.Health" => Access::Open,
        "temporal.api.operatorservice.v1.OperatorService" => {
            match (namespaced, OPERATOR_READS.contains(&method.name)) {
                (true, true) => Access::Namespace,
                (true, false) => Access::NamespaceAdmin,
                (false, _) => Access::ClusterAdmin,
            }
        }
        _ if CLUSTER_READS.contains(&method.name) && !namespaced => Access::Cluster,
        _ if NAMESPACE_ADMIN_WORKFLOW_SERVICE.contains(&method.name) => Access::NamespaceAdmin,
        _ if namespaced => Access::Namespace,
        _ => Access::ClusterAdmin,
    }
}

/// The authorization table.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    grants: Vec<Grant>,
}

impl Policy {
    pub fn new(grants: Vec<Grant>) -> Policy {
        Policy { grants }
    }

    fn grants_of<'a>(
        &'a self,
        identity: Option<&'a PeerIdentity>,
    ) -> impl Iterator<Item = &'a Grant> {
        let names: &[String] = identity.map_or(&[], |i| i.names.as_slice());
        self.grants
            .iter()
            .filter(move |g| names.contains(&g.identity))
    }

    /// Whether `identity` may make a call needing `access` on `namespace` (ignored for the
    /// cluster-wide kinds).
    pub fn allows(&self, identity: Option<&PeerIdentity>, access: Access, namespace: &str) -> bool {
        let covers =
            |g: &Grant, ns: &str| g.namespaces.iter().any(|n| n == ANY_NAMESPACE || n == ns);
        let mut grants = self.grants_of(identity);
        match access {
            Access::Open => true,
            Access::Cluster => grants.next().is_some(),
            Access::ClusterAdmin => {
                grants.any(|g| g.admin && g.namespaces.iter().any(|n| n == ANY_NAMESPACE))
            }
            Access::Namespace => grants.any(|g| covers(g, namespace)),
            Access::NamespaceAdmin => grants.any(|g| g.admin && covers(g, namespace)),
        }
    }

    /// Whether `identity` holds `access` on every namespace (so the request needs no reading).
    fn allows_everywhere(&self, identity: Option<&PeerIdentity>, access: Access) -> bool {
        let admin = access == Access::NamespaceAdmin;
        self.grants_of(identity)
            .any(|g| (g.admin || !admin) && g.namespaces.iter().any(|n| n == ANY_NAMESPACE))
    }
}

#[derive(Debug, Clone, Copy)]
struct Rule {
    access: Access,
    namespace_field: Option<u32>,
    task_token_field: Option<u32>,
}

/// The policy and the per-RPC rules, shared by every connection.
struct Authorizer {
    policy: Policy,
    rules: HashMap<&'static str, Rule>,
    max_message: usize,
}

/// The [`RequestFilter`] that enforces a [`Policy`], or lets everything through without one.
#[derive(Clone)]
pub struct Authz {
    auth: Option<Arc<Authorizer>>,
}

impl Authz {
    /// The layer that enforces `policy` when there is one. `max_message` bounds the request
    /// bodies read for their namespace.
    pub fn layer(policy: Option<Policy>, max_message: usize) -> FilterLayer<Authz> {
        let Some(policy) = policy else {
            return FilterLayer::new(Authz { auth: None });
        };
        let rules = sundial_proto::METHODS
            .iter()
            .map(|m| {
                let rule = Rule {
                    access: classify(m),
                    namespace_field: m.namespace_field,
                    task_token_field: m.task_token_field,
                };
                (m.path, rule)
            })
            .collect();
        FilterLayer::new(Authz {
            auth: Some(Arc::new(Authorizer {
                policy,
                rules,
                max_message,
            })),
        })
    }
}

impl RequestFilter for Authz {
    fn wants(&self, _: &http::Request<Body>) -> bool {
        self.auth.is_some()
    }

    fn filter(
        &self,
        request: http::Request<Body>,
    ) -> BoxFuture<Result<http::Request<Body>, tonic::Status>> {
        let auth = self.auth.clone();
        Box::pin(async move {
            match auth {
                Some(auth) => auth.check(request).await,
                None => Ok(request),
            }
        })
    }
}

fn denied() -> tonic::Status {
    tonic::Status::permission_denied(DENIED)
}

impl Authorizer {
    /// Returns the request (rebuilt if its body was read) when allowed.
    async fn check(
        &self,
        request: http::Request<Body>,
    ) -> Result<http::Request<Body>, tonic::Status> {
        let Some(rule) = self.rules.get(request.uri().path()).copied() else {
            return Err(denied());
        };
        let identity = request
            .extensions()
            .get::<ConnInfo>()
            .and_then(|c| c.identity.clone());
        let identity = identity.as_deref();
        let policy = &self.policy;
        match rule.access {
            Access::Open | Access::Cluster | Access::ClusterAdmin => {
                return if policy.allows(identity, rule.access, "") {
                    Ok(request)
                } else {
                    Err(denied())
                };
            }
            Access::Namespace | Access::NamespaceAdmin => {}
        }
        if policy.allows_everywhere(identity, rule.access) {
            return Ok(request);
        }
        if !policy.allows(identity, Access::Cluster, "") {
            // No grant at all: nothing to read.
            return Err(denied());
        }
        let (parts, body) = request.into_parts();
        let body = http_body_util::Limited::new(body, self.max_message + 5)
            .collect()
            .await
            .map_err(|_| denied())?
            .to_bytes();
        let message = grpc_message(&body, self.max_message).ok_or_else(denied)?;
        let namespace = match rule.namespace_field {
            Some(field) => string_field(&message, field).ok_or_else(denied)?,
            None => String::new(),
        };
        if !policy.allows(identity, rule.access, &namespace) {
            return Err(denied());
        }
        if let Some(field) = rule.task_token_field {
            let token = bytes_field(&message, field).ok_or_else(denied)?;
            if let Some(token) = TaskToken::decode_bytes(&token)
                && !policy.allows(identity, rule.access, &token.namespace)
            {
                return Err(denied());
            }
        }
        Ok(http::Request::from_parts(
            parts,
            Body::new(http_body_util::Full::new(body)),
        ))
    }
}

/// The protobuf message of a unary gRPC request body (one length-prefixed, uncompressed
/// frame: [`crate::gzip_requests`] has inflated compressed ones before this layer). `None` when
/// the body is not one such frame.
fn grpc_message(body: &Bytes, max: usize) -> Option<Bytes> {
    let (&flag, rest) = body.split_first()?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let payload = rest.get(4..)?;
    (flag == 0 && payload.len() == len && len <= max).then(|| body.slice(5..))
}

/// Reads a varint at `at`, returning it and the position after it.
fn varint(buf: &[u8], mut at: usize) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(at)?;
        at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value, at));
        }
    }
    None
}

/// The last occurrence of top-level length-delimited field `field` (protobuf: the last value
/// of a singular field wins), or an empty slice when absent. `None` for a malformed message.
fn length_delimited_field(message: &[u8], field: u32) -> Option<&[u8]> {
    let mut at = 0;
    let mut found: &[u8] = &[];
    while at < message.len() {
        let (key, next) = varint(message, at)?;
        at = next;
        let number = key >> 3;
        match key & 7 {
            0 => at = varint(message, at)?.1,
            1 => at = at.checked_add(8)?,
            2 => {
                let (len, next) = varint(message, at)?;
                let end = next.checked_add(usize::try_from(len).ok()?)?;
                let value = message.get(next..end)?;
                if number == u64::from(field) {
                    found = value;
                }
                at = end;
            }
            5 => at = at.checked_add(4)?,
            _ => return None,
        }
        if at > message.len() {
            return None;
        }
    }
    Some(found)
}

fn string_field(message: &[u8], field: u32) -> Option<String> {
    let raw = length_delimited_field(message, field)?;
    std::str::from_utf8(raw).ok().map(str::to_string)
}

fn bytes_field(message: &[u8], field: u32) -> Option<Vec<u8>> {
    length_delimited_field(message, field).map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use sundial_engine::api::workflowservice::v1::{
        RespondActivityTaskCompletedRequest, StartWorkflowExecutionRequest,
    };

    fn identity(name: &str) -> PeerIdentity {
        PeerIdentity {
            names: vec![name.to_string()],
        }
    }

    fn policy() -> Policy {
        Policy::new(vec![
            Grant {
                identity: "client-a".into(),
                namespaces: vec!["ns-a".into()],
                admin: true,
            },
            Grant {
                identity: "client-b".into(),
                namespaces: vec!["ns-b".into()],
                admin: false,
            },
            Grant {
                identity: "ops".into(),
                namespaces: vec!["*".into()],
                admin: true,
            },
        ])
    }

    fn method(name: &str) -> &'static Method {
        sundial_proto::METHODS
            .iter()
            .find(|m| m.name == name)
            .unwrap()
    }

    #[test]
    fn every_rpc_is_classified_and_namespaced_ones_name_their_namespace() {
        assert!(sundial_proto::METHODS.len() > 100);
        for m in sundial_proto::METHODS {
            let access = classify(m);
            match access {
                Access::Namespace | Access::NamespaceAdmin => {
                    assert!(m.namespace_field.is_some(), "{}", m.path)
                }
                Access::Cluster => assert!(CLUSTER_READS.contains(&m.name), "{}", m.path),
                Access::Open => assert!(m.path.starts_with("/grpc.health.v1."), "{}", m.path),
                Access::ClusterAdmin => {}
            }
        }
        assert_eq!(
            classify(method("StartWorkflowExecution")),
            Access::Namespace
        );
        // Operator actions on activities need a grant on the workflow's namespace.
        for name in [
            "PauseActivity",
            "PauseActivityExecution",
            "UnpauseActivity",
            "UnpauseActivityExecution",
            "ResetActivity",
            "ResetActivityExecution",
            "UpdateActivityOptions",
            "UpdateActivityExecutionOptions",
        ] {
            assert_eq!(classify(method(name)), Access::Namespace, "{name}");
        }
        assert_eq!(
            classify(method("RegisterNamespace")),
            Access::NamespaceAdmin
        );
        assert_eq!(classify(method("UpdateNamespace")), Access::NamespaceAdmin);
        assert_eq!(
            classify(method("AddSearchAttributes")),
            Access::NamespaceAdmin
        );
        assert_eq!(
            classify(method("RemoveSearchAttributes")),
            Access::NamespaceAdmin
        );
        assert_eq!(classify(method("ListSearchAttributes")), Access::Namespace);
        for name in [
            "ResetWorkflowExecution",
            "UpdateWorkflowExecutionOptions",
            "StartBatchOperation",
            "StopBatchOperation",
            "DescribeBatchOperation",
            "ListBatchOperations",
        ] {
            assert_eq!(classify(method(name)), Access::Namespace, "{name}");
        }
        assert_eq!(classify(method("GetSystemInfo")), Access::Cluster);
        assert_eq!(classify(method("Check")), Access::Open);
        assert!(
            method("RespondActivityTaskCompleted")
                .task_token_field
                .is_some()
        );
    }

    #[test]
    fn table_decides_per_identity_namespace_and_admin() {
        let p = policy();
        let a = identity("client-a");
        let b = identity("client-b");
        let ops = identity("ops");
        let nobody = identity("stranger");
        assert!(p.allows(Some(&a), Access::Namespace, "ns-a"));
        assert!(!p.allows(Some(&a), Access::Namespace, "ns-b"));
        assert!(p.allows(Some(&a), Access::NamespaceAdmin, "ns-a"));
        assert!(p.allows(Some(&b), Access::Namespace, "ns-b"));
        assert!(!p.allows(Some(&b), Access::NamespaceAdmin, "ns-b"));
        assert!(p.allows(Some(&b), Access::Cluster, ""));
        assert!(!p.allows(Some(&b), Access::ClusterAdmin, ""));
        assert!(p.allows(Some(&ops), Access::ClusterAdmin, ""));
        assert!(p.allows(Some(&ops), Access::NamespaceAdmin, "anything"));
        assert!(!p.allows(Some(&nobody), Access::Cluster, ""));
        assert!(!p.allows(None, Access::Cluster, ""));
        assert!(p.allows(None, Access::Open, ""));
        assert!(p.allows_everywhere(Some(&ops), Access::NamespaceAdmin));
        assert!(!p.allows_everywhere(Some(&a), Access::Namespace));
    }

    #[test]
    fn finds_the_namespace_in_encoded_requests() {
        let start = StartWorkflowExecutionRequest {
            namespace: "ns-a".into(),
            workflow_id: "wf".into(),
            ..Default::default()
        };
        let bytes = start.encode_to_vec();
        let field = method("StartWorkflowExecution").namespace_field.unwrap();
        assert_eq!(string_field(&bytes, field).as_deref(), Some("ns-a"));
        assert_eq!(string_field(&[], field).as_deref(), Some(""));
        assert_eq!(string_field(&[0x0a, 0x05, b'x'], field), None);

        let token = TaskToken {
            namespace: "ns-b".into(),
            run_id: "r".into(),
            ..Default::default()
        };
        let complete = RespondActivityTaskCompletedRequest {
            task_token: token.encode_bytes(),
            namespace: "ns-a".into(),
            ..Default::default()
        };
        let m = method("RespondActivityTaskCompleted");
        let bytes = complete.encode_to_vec();
        let raw = bytes_field(&bytes, m.task_token_field.unwrap()).unwrap();
        assert_eq!(TaskToken::decode_bytes(&raw).unwrap().namespace, "ns-b");
    }

    #[test]
    fn reads_one_plain_frame() {
        let msg = b"hello".to_vec();
        let mut plain = vec![0, 0, 0, 0, 5];
        plain.extend(&msg);
        assert_eq!(
            grpc_message(&Bytes::from(plain.clone()), 100).unwrap(),
            &msg[..]
        );
        assert!(grpc_message(&Bytes::from(plain.clone()), 2).is_none());
        plain[0] = 1;
        assert!(grpc_message(&Bytes::from(plain), 100).is_none());
        assert!(grpc_message(&Bytes::from_static(&[0, 0, 0, 0, 9, 1]), 100).is_none());
    }
}
