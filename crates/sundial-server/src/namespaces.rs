//! The namespace registry: all namespaces in memory, every change committed first.

use crate::error::ServiceError;
use parking_lot::RwLock;
use prost::Message;
use std::collections::BTreeMap;
use std::sync::Arc;
use sundial_engine::{api, time};
use sundial_store::{NamespaceRow, Store, WriteBatch};

use api::enums::v1::NamespaceState;
use api::namespace::v1::{NamespaceConfig, NamespaceInfo, namespace_info::Capabilities};
use api::replication::v1::{ClusterReplicationConfig, NamespaceReplicationConfig};
use api::workflowservice::v1::{
    DescribeNamespaceResponse, RegisterNamespaceRequest, UpdateNamespaceRequest,
};

/// Retention of closed workflows when a namespace names none (Temporal's dev server: 1 day).
pub const DEFAULT_RETENTION_MS: i64 = 24 * 3600 * 1000;
/// The cluster name every namespace reports as active.
pub const CLUSTER_NAME: &str = "active";

pub struct Namespaces {
    /// Shared with the detached task that installs a committed change.
    by_name: Arc<RwLock<BTreeMap<String, DescribeNamespaceResponse>>>,
    store: Arc<dyn Store>,
}

fn describe(
    name: &str,
    description: &str,
    owner: &str,
    retention_ms: i64,
) -> DescribeNamespaceResponse {
    DescribeNamespaceResponse {
        namespace_info: Some(NamespaceInfo {
            name: name.to_string(),
            state: NamespaceState::Registered as i32,
            description: description.to_string(),
            owner_email: owner.to_string(),
            id: uuid::Uuid::new_v4().to_string(),
            capabilities: Some(Capabilities {
                eager_workflow_start: true,
                sync_update: false,
                async_update: false,
                ..Default::default()
            }),
            supports_schedules: false,
            ..Default::default()
        }),
        config: Some(NamespaceConfig {
            workflow_execution_retention_ttl: Some(time::duration(retention_ms)),
            history_archival_state: 1,
            visibility_archival_state: 1,
            ..Default::default()
        }),
        replication_config: Some(NamespaceReplicationConfig {
            active_cluster_name: CLUSTER_NAME.into(),
            clusters: vec![ClusterReplicationConfig {
                cluster_name: CLUSTER_NAME.into(),
                ..Default::default()
            }],
            state: 1,
        }),
        failover_version: 0,
        is_global_namespace: false,
        ..Default::default()
    }
}

impl Namespaces {
    pub async fn load(store: Arc<dyn Store>) -> Result<Self, ServiceError> {
        let mut by_name = BTreeMap::new();
        for row in store.load_namespaces().await? {
            let ns = DescribeNamespaceResponse::decode(row.data.as_slice()).map_err(|e| {
                ServiceError::Internal(format!("corrupt namespace {}: {e}", row.name))
            })?;
            by_name.insert(row.name, ns);
        }
        Ok(Namespaces {
            by_name: Arc::new(RwLock::new(by_name)),
            store,
        })
    }

    async fn save(&self, ns: DescribeNamespaceResponse) -> Result<(), ServiceError> {
        let name = ns
            .namespace_info
            .as_ref()
            .map(|i| i.name.clone())
            .unwrap_or_default();
        let batch = WriteBatch {
            namespaces: vec![NamespaceRow {
                name: name.clone(),
                data: ns.encode_to_vec(),
            }],
            ..Default::default()
        };
        let receipt = self.store.commit(batch);
        let by_name = self.by_name.clone();
        crate::detached::run_detached(async move {
            receipt
                .await
                .map_err(|_| ServiceError::Unavailable("storage shut down".into()))??;
            by_name.write().insert(name, ns);
            Ok(())
        })
        .await
    }

    /// Registers `name` unless it exists (start-up namespaces). With `retention_ms`, the
    /// namespace's retention is set to it, also when it exists (configured namespaces).
    pub async fn ensure(&self, name: &str, retention_ms: Option<i64>) -> Result<(), ServiceError> {
        let existing = self.get(name);
        match (existing, retention_ms) {
            (None, retention) => {
                let retention = retention.unwrap_or(DEFAULT_RETENTION_MS);
                self.save(describe(name, "", "", retention)).await
            }
            (Some(mut ns), Some(retention)) => {
                let wanted = time::duration(retention);
                let config = ns.config.get_or_insert_with(Default::default);
                if config.workflow_execution_retention_ttl.as_ref() == Some(&wanted) {
                    return Ok(());
                }
                config.workflow_execution_retention_ttl = Some(wanted);
                self.save(ns).await
            }
            (Some(_), None) => Ok(()),
        }
    }

    pub fn get(&self, name: &str) -> Option<DescribeNamespaceResponse> {
        self.by_name.read().get(name).cloned()
    }

    /// Fails with NotFound, in the reference server's words, unless the namespace exists.
    pub fn check(&self, name: &str) -> Result<(), ServiceError> {
        if name.is_empty() {
            return Err(ServiceError::InvalidArgument(
                "Namespace not set on request.".into(),
            ));
        }
        if self.by_name.read().contains_key(name) {
            Ok(())
        } else {
            Err(ServiceError::NamespaceNotFound(name.to_string()))
        }
    }

    pub fn list(&self) -> Vec<DescribeNamespaceResponse> {
        self.by_name.read().values().cloned().collect()
    }

    pub async fn register(&self, req: RegisterNamespaceRequest) -> Result<(), ServiceError> {
        if req.namespace.is_empty() {
            return Err(ServiceError::InvalidArgument(
                "Namespace not set on request.".into(),
            ));
        }
        if req.namespace.len() > 1000 {
            return Err(ServiceError::InvalidArgument(
                "Namespace length exceeds limit.".into(),
            ));
        }
        if self.by_name.read().contains_key(&req.namespace) {
            return Err(ServiceError::NamespaceAlreadyExists);
        }
        if time::is_negative(req.workflow_execution_retention_period.as_ref()) {
            return Err(ServiceError::InvalidArgument(
                "Invalid retention period.".into(),
            ));
        }
        let mut retention = time::duration_ms(req.workflow_execution_retention_period.as_ref());
        if retention == 0 {
            retention = DEFAULT_RETENTION_MS;
        }
        let mut ns = describe(
            &req.namespace,
            &req.description,
            &req.owner_email,
            retention,
        );
        if let Some(info) = ns.namespace_info.as_mut() {
            info.data = req.data;
        }
        self.save(ns).await
    }

    pub async fn update(
        &self,
        req: UpdateNamespaceRequest,
    ) -> Result<DescribeNamespaceResponse, ServiceError> {
        let mut ns = self
            .get(&req.namespace)
            .ok_or_else(|| ServiceError::NamespaceNotFound(req.namespace.clone()))?;
        if let (Some(update), Some(info)) = (req.update_info, ns.namespace_info.as_mut()) {
            if !update.description.is_empty() {
                info.description = update.description;
            }
            if !update.owner_email.is_empty() {
                info.owner_email = update.owner_email;
            }
            info.data.extend(update.data);
        }
        if let (Some(update), Some(config)) = (req.config, ns.config.as_mut())
            && let Some(retention) = update.workflow_execution_retention_ttl
        {
            if retention.seconds < 0 || retention.nanos < 0 {
                return Err(ServiceError::InvalidArgument(
                    "Invalid retention period.".into(),
                ));
            }
            config.workflow_execution_retention_ttl = Some(retention);
        }
        self.save(ns.clone()).await?;
        Ok(ns)
    }
}
