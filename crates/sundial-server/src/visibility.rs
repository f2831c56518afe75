//! Visibility: the per-run records that list and count queries run on, and the namespaces'
//! custom search attributes. Records are written in the same commit as the run's start, close,
//! or search attribute / memo change, so a listed state is always a committed one.

use crate::error::ServiceError;
use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use sundial_engine::api::{
    common::v1::{Payload, WorkflowExecution, WorkflowType},
    enums::v1::IndexedValueType,
    workflow::v1::WorkflowExecutionInfo,
};
use sundial_engine::{ExecutionState, time};
use sundial_store::predicate::{self, AttrType, Column, RowValue};
use sundial_store::{SearchAttributeRow, Store, VisibilityRow, WriteBatch};

/// Most custom search attributes one namespace may register.
pub const MAX_CUSTOM_ATTRIBUTES: usize = 100;

/// System search attributes and their types, as GetSearchAttributes / ListSearchAttributes
/// report them.
pub const SYSTEM_ATTRIBUTES: [(&str, IndexedValueType); 18] = [
    ("WorkflowId", IndexedValueType::Keyword),
    ("RunId", IndexedValueType::Keyword),
    ("WorkflowType", IndexedValueType::Keyword),
    ("TaskQueue", IndexedValueType::Keyword),
    ("ExecutionStatus", IndexedValueType::Keyword),
    ("StartTime", IndexedValueType::Datetime),
    ("ExecutionTime", IndexedValueType::Datetime),
    ("CloseTime", IndexedValueType::Datetime),
    ("HistoryLength", IndexedValueType::Int),
    ("ExecutionDuration", IndexedValueType::Int),
    ("ParentWorkflowId", IndexedValueType::Keyword),
    ("ParentRunId", IndexedValueType::Keyword),
    ("RootRunId", IndexedValueType::Keyword),
    ("RootWorkflowId", IndexedValueType::Keyword),
    ("TemporalScheduledStartTime", IndexedValueType::Datetime),
    ("TemporalScheduledById", IndexedValueType::Keyword),
    ("TemporalSchedulePaused", IndexedValueType::Bool),
    ("TemporalPauseInfo", IndexedValueType::KeywordList),
];

/// System attributes kept in the run's attribute document rather than in a column of their
/// own: set by the server (the scheduler on the runs it starts, the engine on runs with paused
/// activities).
fn document_attribute(name: &str) -> Option<(Column, AttrType)> {
    let ty = match name {
        "TemporalScheduledStartTime" => AttrType::Datetime,
        "TemporalScheduledById" => AttrType::Keyword,
        "TemporalSchedulePaused" => AttrType::Bool,
        "TemporalPauseInfo" => AttrType::KeywordList,
        _ => return None,
    };
    Some((Column::Custom(name.to_string()), ty))
}

/// The value an attribute of type `ty` is stored (and queried) as, from its payload: as in a
/// run's attribute document (Datetime as Unix ms, Bool as 0/1), for evaluation in memory.
pub fn stored_value(ty: AttrType, payload: &Payload) -> RowValue {
    match serde_json::from_slice::<serde_json::Value>(&payload.data) {
        Ok(serde_json::Value::String(s)) if ty == AttrType::Datetime => {
            predicate::parse_time(&s).map_or(RowValue::Text(s), RowValue::Int)
        }
        Ok(serde_json::Value::String(s)) => RowValue::Text(s),
        Ok(serde_json::Value::Bool(b)) => RowValue::Int(i64::from(b)),
        Ok(serde_json::Value::Number(n)) => match n.as_i64() {
            Some(i) => RowValue::Int(i),
            None => n.as_f64().map_or(RowValue::Null, RowValue::Float),
        },
        Ok(serde_json::Value::Array(items)) => RowValue::List(
            items
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        ),
        _ => RowValue::Null,
    }
}

/// Custom search attributes registered per namespace.
pub struct SearchAttributes {
    /// Shared with the detached task that installs a committed change.
    by_namespace: Arc<RwLock<HashMap<String, BTreeMap<String, i32>>>>,
    store: Arc<dyn Store>,
}

impl SearchAttributes {
    pub async fn load(store: Arc<dyn Store>) -> Result<Self, ServiceError> {
        let mut by_namespace: HashMap<String, BTreeMap<String, i32>> = HashMap::new();
        for (namespace, name, value_type) in store.load_search_attributes().await? {
            by_namespace
                .entry(namespace)
                .or_default()
                .insert(name, value_type);
        }
        Ok(SearchAttributes {
            by_namespace: Arc::new(RwLock::new(by_namespace)),
            store,
        })
    }

    pub fn custom(&self, namespace: &str) -> BTreeMap<String, i32> {
        self.by_namespace
            .read()
            .get(namespace)
            .cloned()
            .unwrap_or_default()
    }

    fn type_of(&self, namespace: &str, name: &str) -> Option<i32> {
        self.by_namespace
            .read()
            .get(namespace)
            .and_then(|m| m.get(name).copied())
    }

    /// Resolves a query's attribute name for `namespace`.
    pub fn resolver(&self, namespace: &str) -> impl Fn(&str) -> Option<(Column, AttrType)> + use<> {
        let custom = self.custom(namespace);
        move |name: &str| {
            predicate::system_attribute(name)
                .or_else(|| document_attribute(name))
                .or_else(|| {
                    let ty = AttrType::from_indexed(*custom.get(name)?)?;
                    Some((Column::Custom(name.to_string()), ty))
                })
        }
    }

    pub async fn add(
        &self,
        namespace: &str,
        attributes: &HashMap<String, i32>,
    ) -> Result<(), ServiceError> {
        let existing = self.custom(namespace);
        let mut rows = Vec::new();
        for (name, value_type) in attributes {
            if name.is_empty() {
                return Err(ServiceError::InvalidArgument(
                    "Search attribute name is empty.".into(),
                ));
            }
            if SYSTEM_ATTRIBUTES.iter().any(|(n, _)| n == name) || name.starts_with("Temporal") {
                return Err(ServiceError::InvalidArgument(format!(
                    "Search attribute {name} is reserved by system."
                )));
            }
            if AttrType::from_indexed(*value_type).is_none() {
                return Err(ServiceError::InvalidArgument(format!(
                    "Unknown search attribute type {value_type} for {name}."
                )));
            }
            match existing.get(name) {
                Some(t) if t == value_type => continue,
                Some(_) => {
                    return Err(ServiceError::AlreadyExistsPlain(format!(
                        "Search attribute {name} already exists with a different type."
                    )));
                }
                None => {}
            }
            rows.push(SearchAttributeRow {
                namespace: namespace.to_string(),
                name: name.clone(),
                value_type: Some(*value_type),
            });
        }
        if existing.len() + rows.len() > MAX_CUSTOM_ATTRIBUTES {
            return Err(ServiceError::InvalidArgument(format!(
                "Unable to create search attributes: cannot have more than {MAX_CUSTOM_ATTRIBUTES} custom search attributes."
            )));
        }
        self.commit(rows).await
    }

    pub async fn remove(&self, namespace: &str, names: &[String]) -> Result<(), ServiceError> {
        let existing = self.custom(namespace);
        let mut rows = Vec::new();
        for name in names {
            if SYSTEM_ATTRIBUTES.iter().any(|(n, _)| n == name) {
                return Err(ServiceError::InvalidArgument(format!(
                    "Unable to remove non-custom search attributes: {name}."
                )));
            }
            if !existing.contains_key(name) {
                return Err(ServiceError::NotFound(format!(
                    "Search attribute {name} doesn't exist."
                )));
            }
            rows.push(SearchAttributeRow {
                namespace: namespace.to_string(),
                name: name.clone(),
                value_type: None,
            });
        }
        self.commit(rows).await
    }

    async fn commit(&self, rows: Vec<SearchAttributeRow>) -> Result<(), ServiceError> {
        if rows.is_empty() {
            return Ok(());
        }
        let batch = WriteBatch {
            search_attributes: rows.clone(),
            ..Default::default()
        };
        let receipt = self.store.commit(batch);
        let by_namespace = self.by_namespace.clone();
        crate::detached::run_detached(async move {
            receipt
                .await
                .map_err(|_| ServiceError::Unavailable("storage is shut down".into()))??;
            let mut map = by_namespace.write();
            for row in rows {
                let entry = map.entry(row.namespace).or_default();
                match row.value_type {
                    Some(t) => entry.insert(row.name, t),
                    None => entry.remove(&row.name),
                };
            }
            Ok(())
        })
        .await
    }

    /// Checks search attributes given on start (registered names, values of the registered
    /// type) and stamps each payload with its type, as the reference server does.
    pub fn validate(
        &self,
        namespace: &str,
        attributes: Option<&mut sundial_engine::api::common::v1::SearchAttributes>,
    ) -> Result<(), ServiceError> {
        let Some(attributes) = attributes else {
            return Ok(());
        };
        // The count first, as the reference server checks it (sizes are checked again with
        // every start by the engine, which also sees starts that never pass through here).
        sundial_engine::validate::search_attributes(Some(attributes))
            .map_err(ServiceError::InvalidArgument)?;
        for (name, payload) in attributes.indexed_fields.iter_mut() {
            if SYSTEM_ATTRIBUTES.iter().any(|(n, _)| n == name) {
                return Err(ServiceError::InvalidArgument(format!(
                    "{name} attribute can't be set in SearchAttributes"
                )));
            }
            let Some(value_type) = self.type_of(namespace, name) else {
                return Err(ServiceError::InvalidArgument(format!(
                    "Namespace {namespace} has no mapping defined for search attribute {name}"
                )));
            };
            let ty = AttrType::from_indexed(value_type).unwrap_or(AttrType::Keyword);
            let value: serde_json::Value =
                serde_json::from_slice(&payload.data).unwrap_or(serde_json::Value::Null);
            let fits = |v: &serde_json::Value| match ty {
                AttrType::Keyword | AttrType::Text | AttrType::KeywordList => v.is_string(),
                AttrType::Int | AttrType::Duration | AttrType::Status => v.is_i64() || v.is_u64(),
                AttrType::Double => v.is_number(),
                AttrType::Bool => v.is_boolean(),
                AttrType::Datetime => v
                    .as_str()
                    .is_some_and(|t| predicate::parse_time(t).is_some()),
            };
            let ok = match (&value, ty) {
                (serde_json::Value::Null, _) => true,
                (serde_json::Value::Array(items), AttrType::KeywordList) => {
                    items.iter().all(|i| i.is_string())
                }
                // The reference also takes a list of values of the attribute's type (untyped
                // search attributes as older SDKs send them).
                (serde_json::Value::Array(items), _) => items.iter().all(fits),
                (v, _) => fits(v),
            };
            if !ok {
                let shown = match &value {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                return Err(ServiceError::InvalidArgument(format!(
                    "invalid value for search attribute {name} of type {}: {shown}",
                    type_name(value_type)
                )));
            }
            payload
                .metadata
                .insert("type".into(), type_name(value_type).as_bytes().to_vec());
        }
        Ok(())
    }

    /// The JSON document of a run's custom search attributes (Datetime values as Unix ms).
    fn document(&self, namespace: &str, attributes: &HashMap<String, Payload>) -> String {
        let mut doc = serde_json::Map::new();
        for (name, payload) in attributes {
            let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&payload.data) else {
                continue;
            };
            let declared = self.type_of(namespace, name);
            let is_datetime = declared == Some(IndexedValueType::Datetime as i32)
                || payload
                    .metadata
                    .get("type")
                    .is_some_and(|t| t.as_slice() == b"Datetime");
            if is_datetime && let Some(ms) = value.as_str().and_then(predicate::parse_time) {
                value = ms.into();
            }
            if let serde_json::Value::Bool(b) = value {
                value = i64::from(b).into();
            }
            doc.insert(name.clone(), value);
        }
        serde_json::Value::Object(doc).to_string()
    }

    /// The visibility record of a run as it is in `state`.
    pub fn row(&self, state: &ExecutionState) -> VisibilityRow {
        let info = execution_info(state);
        let attributes = state
            .search_attributes
            .as_ref()
            .map(|s| s.indexed_fields.clone())
            .unwrap_or_default();
        VisibilityRow {
            namespace: state.namespace.clone(),
            run_id: state.run_id.clone(),
            workflow_id: state.workflow_id.clone(),
            workflow_type: state.workflow_type.clone(),
            task_queue: state.task_queue.clone(),
            status: state.status,
            start_time_ms: state.start_time_ms,
            execution_time_ms: state.execution_time_ms.max(state.start_time_ms),
            close_time_ms: (!state.is_running()).then_some(state.close_time_ms),
            history_length: state.next_event_id - 1,
            execution_duration_ns: (!state.is_running()).then(|| {
                (state.close_time_ms - state.execution_time_ms.max(state.start_time_ms)).max(0)
                    * 1_000_000
            }),
            parent_workflow_id: state.parent.as_ref().map(|p| p.workflow_id.clone()),
            parent_run_id: state.parent.as_ref().map(|p| p.run_id.clone()),
            root_run_id: state.parent.as_ref().map(|p| p.root_run_id.clone()),
            root_workflow_id: state.parent.as_ref().map(|p| p.root_workflow_id.clone()),
            search_attributes_json: self.document(&state.namespace, &attributes),
            info: prost::Message::encode_to_vec(&info),
        }
    }
}

/// The name Temporal gives a search attribute type in payload metadata.
fn type_name(value_type: i32) -> &'static str {
    match value_type {
        1 => "Text",
        2 => "Keyword",
        3 => "Int",
        4 => "Double",
        5 => "Bool",
        6 => "Datetime",
        7 => "KeywordList",
        _ => "Unspecified",
    }
}

/// The WorkflowExecutionInfo of a run, from its state alone.
pub fn execution_info(st: &ExecutionState) -> WorkflowExecutionInfo {
    let closed = !st.is_running();
    let execution = WorkflowExecution {
        workflow_id: st.workflow_id.clone(),
        run_id: st.run_id.clone(),
    };
    WorkflowExecutionInfo {
        execution: Some(execution.clone()),
        r#type: Some(WorkflowType {
            name: st.workflow_type.clone(),
        }),
        start_time: Some(time::timestamp(st.start_time_ms)),
        close_time: closed.then(|| time::timestamp(st.close_time_ms)),
        status: st.status,
        history_length: st.next_event_id - 1,
        execution_time: Some(time::timestamp(st.execution_time_ms.max(st.start_time_ms))),
        memo: st.memo.clone(),
        search_attributes: st.search_attributes.clone(),
        task_queue: st.task_queue.clone(),
        state_transition_count: st.state_transition_count,
        history_size_bytes: st.history_size_bytes,
        execution_duration: closed.then(|| time::duration(st.close_time_ms - st.start_time_ms)),
        first_run_id: st.first_execution_run_id.clone(),
        parent_namespace_id: st
            .parent
            .as_ref()
            .map(|p| p.namespace.clone())
            .unwrap_or_default(),
        parent_execution: st.parent.as_ref().map(|p| WorkflowExecution {
            workflow_id: p.workflow_id.clone(),
            run_id: p.run_id.clone(),
        }),
        root_execution: Some(match &st.parent {
            Some(p) => WorkflowExecution {
                workflow_id: p.root_workflow_id.clone(),
                run_id: p.root_run_id.clone(),
            },
            None => execution,
        }),
        ..Default::default()
    }
}
