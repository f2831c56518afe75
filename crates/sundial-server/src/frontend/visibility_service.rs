//! Visibility RPCs: list, count and scan with Temporal's query language, the older open/closed
//! listings, search attribute names, task queue descriptions, cluster info, deletion, and
//! history in reverse.

use super::workflow_service::Frontend;
use crate::error::ServiceError;
use crate::matching::{QueueKey, TaskKind};
use prost::Message;
use sundial_engine::api::{
    common::v1::Payload,
    enums::v1::{IndexedValueType, TaskQueueType, WorkflowExecutionStatus},
    history::v1::History,
    taskqueue::v1::{PollerInfo, TaskQueueStats, TaskQueueTypeInfo, TaskQueueVersionInfo},
    workflow::v1::WorkflowExecutionInfo,
    workflowservice::v1::{
        count_workflow_executions_response::AggregationGroup,
        list_closed_workflow_executions_request, list_open_workflow_executions_request, *,
    },
};
use sundial_engine::time;
use sundial_store::list_query::{self, Expr, Op, Query, Value};
use sundial_store::{PageKey, VisibilityQuery, predicate};

/// Default and largest page of a list call.
const DEFAULT_PAGE: usize = 1000;
/// Pollers count as present for this long after their last poll.
const POLLER_TTL_MS: i64 = 5 * 60 * 1000;

fn offset_token(offset: usize) -> Vec<u8> {
    (offset as u64).to_be_bytes().to_vec()
}

/// The offset a reverse history page token names (an empty token is the newest page).
fn parse_offset(token: &[u8]) -> Result<usize, ServiceError> {
    if token.is_empty() {
        return Ok(0);
    }
    let invalid = || ServiceError::InvalidArgument("Invalid NextPageToken.".into());
    let bytes: [u8; 8] = token.try_into().map_err(|_| invalid())?;
    i64::try_from(u64::from_be_bytes(bytes))
        .ok()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(invalid)
}

/// The key a page token names, for a query whose sort key has `keys` values (an empty token
/// is the first page).
fn parse_page_token(token: &[u8], keys: usize) -> Result<Option<PageKey>, ServiceError> {
    if token.is_empty() {
        return Ok(None);
    }
    PageKey::decode(token, keys)
        .map(Some)
        .ok_or_else(|| ServiceError::InvalidArgument("Invalid NextPageToken.".into()))
}

/// The page a request asks for: unset, negative and oversized requests get the largest page,
/// as the reference server does (`frontend.visibilityMaxPageSize`, 1000).
fn page_limit(requested: i32) -> usize {
    match usize::try_from(requested) {
        Ok(n) if n > 0 => n.min(DEFAULT_PAGE),
        _ => DEFAULT_PAGE,
    }
}

fn and(a: Option<Expr>, b: Expr) -> Option<Expr> {
    Some(match a {
        Some(Expr::And(mut terms)) => {
            terms.push(b);
            Expr::And(terms)
        }
        Some(a) => Expr::And(vec![a, b]),
        None => b,
    })
}

/// The responses of the listing RPCs: each is one page of executions and the next page's
/// token (empty: the last page).
trait ExecutionsPage {
    fn page(executions: Vec<WorkflowExecutionInfo>, next_page_token: Vec<u8>) -> Self;
}

macro_rules! executions_page {
    ($($response:ty),* $(,)?) => {$(
        impl ExecutionsPage for $response {
            fn page(executions: Vec<WorkflowExecutionInfo>, next_page_token: Vec<u8>) -> Self {
                Self { executions, next_page_token }
            }
        }
    )*};
}

executions_page!(
    ListWorkflowExecutionsResponse,
    ScanWorkflowExecutionsResponse,
    ListOpenWorkflowExecutionsResponse,
    ListClosedWorkflowExecutionsResponse,
);

impl Frontend {
    fn resolve(&self, namespace: &str, query: &Query) -> Result<VisibilityQuery, ServiceError> {
        let resolver = self.history.visibility.resolver(namespace);
        predicate::resolve_query(query, &resolver)
            .map_err(|e| ServiceError::InvalidArgument(format!("invalid query: {e}")))
    }

    fn parse_query(&self, query: &str) -> Result<Query, ServiceError> {
        list_query::parse(query)
            .map_err(|e| ServiceError::InvalidArgument(format!("invalid query: {e}")))
    }

    /// One page of the executions `query` matches.
    async fn list<R: ExecutionsPage>(
        &self,
        page: ListPage<'_>,
        query: Query,
    ) -> Result<R, ServiceError> {
        let ListPage {
            namespace,
            size: page_size,
            token,
        } = page;
        self.namespaces.check(namespace)?;
        let query = self.resolve(namespace, &query)?;
        let limit = page_limit(page_size);
        let after = parse_page_token(token, query.sort_keys().len())?;
        let page = self
            .history
            .store()
            .list_visibility(namespace, &query, limit, after.as_ref())
            .await?;
        let infos = page
            .infos
            .iter()
            .map(|b| WorkflowExecutionInfo::decode(b.as_slice()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ServiceError::Internal(format!("corrupt visibility record: {e}")))?;
        let next = page.next.map(|key| key.encode()).unwrap_or_default();
        Ok(R::page(infos, next))
    }

    pub(super) async fn list_workflows(
        &self,
        req: ListWorkflowExecutionsRequest,
    ) -> Result<ListWorkflowExecutionsResponse, ServiceError> {
        let query = self.parse_query(&req.query)?;
        if let Some(field) = query.group_by.first() {
            return Err(ServiceError::InvalidArgument(format!(
                "invalid query: operation is not supported: 'GROUP BY' clause is not supported for search attribute {field}"
            )));
        }
        let page = ListPage::of(&req.namespace, req.page_size, &req.next_page_token);
        self.list(page, query).await
    }

    pub(super) async fn scan_workflows(
        &self,
        req: ScanWorkflowExecutionsRequest,
    ) -> Result<ScanWorkflowExecutionsResponse, ServiceError> {
        let query = self.parse_query(&req.query)?;
        self.list(
            ListPage::of(&req.namespace, req.page_size, &req.next_page_token),
            query,
        )
        .await
    }

    pub(super) async fn count_workflows(
        &self,
        req: CountWorkflowExecutionsRequest,
    ) -> Result<CountWorkflowExecutionsResponse, ServiceError> {
        self.namespaces.check(&req.namespace)?;
        let query = self.parse_query(&req.query)?;
        let by_status = match query.group_by.as_slice() {
            [] => false,
            [field] if field == "ExecutionStatus" => true,
            [field] => {
                return Err(ServiceError::InvalidArgument(format!(
                    "invalid query: operation is not supported: 'GROUP BY' clause is not supported for search attribute {field}"
                )));
            }
            _ => {
                return Err(ServiceError::InvalidArgument(
                    "invalid query: operation is not supported: 'GROUP BY' clause supports only a single field".into(),
                ));
            }
        };
        if !query.order_by.is_empty() {
            return Err(ServiceError::InvalidArgument(
                "invalid query: 'ORDER BY' clause is not supported in count".into(),
            ));
        }
        let query = self.resolve(&req.namespace, &query)?;
        let rows = self
            .history
            .store()
            .count_visibility(&req.namespace, query.filter.as_ref(), by_status)
            .await?;
        let count = rows.iter().map(|(_, n)| n).sum();
        let groups = if by_status {
            rows.into_iter()
                .map(|(status, count)| {
                    let name = WorkflowExecutionStatus::try_from(status)
                        .map(|s| status_name(s).to_string())
                        .unwrap_or_default();
                    AggregationGroup {
                        group_values: vec![json_payload(&format!("\"{name}\""))],
                        count,
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(CountWorkflowExecutionsResponse { count, groups })
    }

    pub(super) async fn list_open(
        &self,
        req: ListOpenWorkflowExecutionsRequest,
    ) -> Result<ListOpenWorkflowExecutionsResponse, ServiceError> {
        use list_open_workflow_executions_request::Filters;
        let extra = match req.filters {
            Some(Filters::ExecutionFilter(f)) => Some(id_filter(&f.workflow_id, &f.run_id)),
            Some(Filters::TypeFilter(f)) => Some(type_filter(&f.name)),
            None => None,
        };
        let page = ListPage::of(&req.namespace, req.maximum_page_size, &req.next_page_token);
        self.list_by_openness(Op::Eq, extra, req.start_time_filter.as_ref(), page)
            .await
    }

    pub(super) async fn list_closed(
        &self,
        req: ListClosedWorkflowExecutionsRequest,
    ) -> Result<ListClosedWorkflowExecutionsResponse, ServiceError> {
        use list_closed_workflow_executions_request::Filters;
        let extra = match req.filters {
            Some(Filters::ExecutionFilter(f)) => Some(id_filter(&f.workflow_id, &f.run_id)),
            Some(Filters::TypeFilter(f)) => Some(type_filter(&f.name)),
            Some(Filters::StatusFilter(f)) => Some(Expr::Cmp {
                field: "ExecutionStatus".into(),
                op: Op::Eq,
                value: Value::Int(i64::from(f.status)),
            }),
            None => None,
        };
        let page = ListPage::of(&req.namespace, req.maximum_page_size, &req.next_page_token);
        self.list_by_openness(Op::Ne, extra, req.start_time_filter.as_ref(), page)
            .await
    }

    /// The older ListOpen (`running` = Eq) / ListClosed (Ne) calls as a query on the same records.
    async fn list_by_openness<R: ExecutionsPage>(
        &self,
        running: Op,
        extra: Option<Expr>,
        start_time: Option<&sundial_engine::api::filter::v1::StartTimeFilter>,
        page: ListPage<'_>,
    ) -> Result<R, ServiceError> {
        let mut filter = Some(Expr::Cmp {
            field: "ExecutionStatus".into(),
            op: running,
            value: Value::Int(WorkflowExecutionStatus::Running as i64),
        });
        if let Some(extra) = extra {
            filter = and(filter, extra);
        }
        let filter = time_filter(filter, "StartTime", start_time);
        let query = Query {
            filter,
            ..Default::default()
        };
        self.list(page, query).await
    }

    pub(super) fn search_attribute_keys(
        &self,
        namespace: &str,
    ) -> std::collections::HashMap<String, i32> {
        let mut keys: std::collections::HashMap<String, i32> = crate::visibility::SYSTEM_ATTRIBUTES
            .iter()
            .map(|(n, t)| (n.to_string(), *t as i32))
            .collect();
        keys.extend(self.history.visibility.custom(namespace));
        keys
    }

    #[allow(deprecated)] // api_mode / task_queue_types: what the temporal CLI sends
    pub(super) fn describe_task_queue(
        &self,
        req: DescribeTaskQueueRequest,
    ) -> Result<DescribeTaskQueueResponse, ServiceError> {
        self.namespaces.check(&req.namespace)?;
        let name = req
            .task_queue
            .as_ref()
            .map(|q| q.name.clone())
            .unwrap_or_default();
        if name.is_empty() {
            return Err(ServiceError::InvalidArgument(
                "TaskQueue is not set on request.".into(),
            ));
        }
        if name.len() > sundial_engine::validate::MAX_ID_LENGTH {
            return Err(ServiceError::InvalidArgument(
                "TaskQueue length exceeds limit.".into(),
            ));
        }
        let since = self.history.clock().now_ms() - POLLER_TTL_MS;
        let describe = |kind: TaskKind| {
            let key = QueueKey {
                namespace: req.namespace.clone(),
                name: name.clone(),
                kind,
            };
            let matching = self.history.matching();
            let pollers: Vec<PollerInfo> = matching
                .pollers(&key, since)
                .into_iter()
                .map(|(identity, last)| PollerInfo {
                    last_access_time: Some(time::timestamp(last)),
                    identity,
                    rate_per_second: 100_000.0,
                    ..Default::default()
                })
                .collect();
            let stats = TaskQueueStats {
                approximate_backlog_count: matching.backlog(&key) as i64,
                ..Default::default()
            };
            (pollers, stats)
        };
        // DescribeTaskQueueMode ENHANCED (1): per-type information under the unversioned key.
        if req.api_mode == 1 {
            let types = if req.task_queue_types.is_empty() {
                vec![
                    TaskQueueType::Workflow as i32,
                    TaskQueueType::Activity as i32,
                ]
            } else {
                req.task_queue_types.clone()
            };
            let types_info = types
                .into_iter()
                .map(|t| {
                    let kind = if t == TaskQueueType::Activity as i32 {
                        TaskKind::Activity
                    } else {
                        TaskKind::Workflow
                    };
                    let (pollers, stats) = describe(kind);
                    let stats = req.report_stats.then_some(stats);
                    (t, TaskQueueTypeInfo { pollers, stats })
                })
                .collect();
            let mut versions_info = std::collections::HashMap::new();
            versions_info.insert(
                String::new(),
                TaskQueueVersionInfo {
                    types_info,
                    task_reachability: 0,
                },
            );
            return Ok(DescribeTaskQueueResponse {
                versions_info,
                ..Default::default()
            });
        }
        let kind = if req.task_queue_type == TaskQueueType::Activity as i32 {
            TaskKind::Activity
        } else {
            TaskKind::Workflow
        };
        let (pollers, stats) = describe(kind);
        Ok(DescribeTaskQueueResponse {
            pollers,
            stats: req.report_stats.then_some(stats),
            ..Default::default()
        })
    }

    pub(super) async fn delete_workflow(
        &self,
        req: DeleteWorkflowExecutionRequest,
    ) -> Result<DeleteWorkflowExecutionResponse, ServiceError> {
        let handle = self
            .run_of(&req.namespace, req.workflow_execution.as_ref())
            .await?;
        self.history.delete_run(&handle).await?;
        Ok(DeleteWorkflowExecutionResponse {})
    }

    pub(super) async fn history_reverse(
        &self,
        req: GetWorkflowExecutionHistoryReverseRequest,
    ) -> Result<GetWorkflowExecutionHistoryReverseResponse, ServiceError> {
        let handle = self.run_of(&req.namespace, req.execution.as_ref()).await?;
        let page = page_limit(req.maximum_page_size);
        let offset = parse_offset(&req.next_page_token)?;
        let (events, more) = self
            .history
            .read(&handle, |entry| {
                // Committed events only, as forward reads.
                let committed = usize::try_from(entry.committed_next_event_id() - 1).unwrap_or(0);
                let uncommitted = entry.events.len().saturating_sub(committed);
                let events = entry
                    .events
                    .decode_newest(offset.saturating_add(uncommitted), page)?;
                Ok::<_, ServiceError>((events, committed > offset.saturating_add(page)))
            })
            .await??;
        Ok(GetWorkflowExecutionHistoryReverseResponse {
            history: Some(History { events }),
            next_page_token: if more {
                offset_token(offset.saturating_add(page))
            } else {
                Vec::new()
            },
        })
    }
}

/// One page of a listing request: its namespace, page size and page token.
struct ListPage<'a> {
    namespace: &'a str,
    size: i32,
    token: &'a [u8],
}

impl<'a> ListPage<'a> {
    fn of(namespace: &'a str, size: i32, token: &'a [u8]) -> ListPage<'a> {
        ListPage {
            namespace,
            size,
            token,
        }
    }
}

fn id_filter(workflow_id: &str, run_id: &str) -> Expr {
    let id = Expr::Cmp {
        field: "WorkflowId".into(),
        op: Op::Eq,
        value: Value::Str(workflow_id.into()),
    };
    if run_id.is_empty() {
        id
    } else {
        let run = Expr::Cmp {
            field: "RunId".into(),
            op: Op::Eq,
            value: Value::Str(run_id.into()),
        };
        Expr::And(vec![id, run])
    }
}

fn type_filter(name: &str) -> Expr {
    Expr::Cmp {
        field: "WorkflowType".into(),
        op: Op::Eq,
        value: Value::Str(name.into()),
    }
}

fn time_filter(
    filter: Option<Expr>,
    field: &str,
    range: Option<&sundial_engine::api::filter::v1::StartTimeFilter>,
) -> Option<Expr> {
    let Some(range) = range else { return filter };
    let bounds = [
        (Op::Ge, range.earliest_time.as_ref()),
        (Op::Le, range.latest_time.as_ref()),
    ];
    let mut filter = filter;
    for (op, at) in bounds {
        if let Some(t) = at {
            let ns = time::timestamp_ms(t).saturating_mul(1_000_000);
            let bound = Expr::Cmp {
                field: field.into(),
                op,
                value: Value::Int(ns),
            };
            filter = and(filter, bound);
        }
    }
    filter
}

fn status_name(status: WorkflowExecutionStatus) -> &'static str {
    match status {
        WorkflowExecutionStatus::Running => "Running",
        WorkflowExecutionStatus::Completed => "Completed",
        WorkflowExecutionStatus::Failed => "Failed",
        WorkflowExecutionStatus::Canceled => "Canceled",
        WorkflowExecutionStatus::Terminated => "Terminated",
        WorkflowExecutionStatus::ContinuedAsNew => "ContinuedAsNew",
        WorkflowExecutionStatus::TimedOut => "TimedOut",
        _ => "Unspecified",
    }
}

fn json_payload(json: &str) -> Payload {
    let mut metadata = std::collections::HashMap::new();
    metadata.insert("encoding".to_string(), b"json/plain".to_vec());
    metadata.insert(
        "type".to_string(),
        format!("{:?}", IndexedValueType::Keyword).into_bytes(),
    );
    Payload {
        metadata,
        data: json.as_bytes().to_vec(),
        ..Default::default()
    }
}
