//! The schedule RPCs of `WorkflowService`: validation, namespace resolution and the
//! translation to and from the scheduler role.

use super::workflow_service::Frontend;
use crate::error::ServiceError;
use sundial_engine::api::schedule::v1::schedule_action::Action;
use sundial_engine::api::workflowservice::v1::*;
use sundial_engine::time;
use sundial_schedule::{NewSchedule, ScheduleMachine};
use sundial_store::list_query;
use sundial_store::predicate::{self, Attr, AttrType, Column, RowValue};

/// Longest schedule id accepted (Temporal's id length limit).
const MAX_ID_LENGTH: usize = 1000;
/// Page size when a ListSchedules request gives none, and the largest one (Temporal's
/// `frontend.visibilityMaxPageSize`).
const DEFAULT_PAGE_SIZE: usize = 1000;

fn check_schedule_id(id: &str) -> Result<(), ServiceError> {
    if id.is_empty() {
        return Err(ServiceError::InvalidArgument(
            "ScheduleId is not set on request.".into(),
        ));
    }
    if id.len() > MAX_ID_LENGTH {
        return Err(ServiceError::InvalidArgument(
            "ScheduleId exceeds length limit.".into(),
        ));
    }
    Ok(())
}

impl Frontend {
    /// The checks every RPC naming one schedule makes first: its namespace, then its id.
    fn check_schedule_ref(&self, namespace: &str, schedule_id: &str) -> Result<(), ServiceError> {
        self.namespaces.check(namespace)?;
        check_schedule_id(schedule_id)
    }

    /// Validates what a schedule starts: payload sizes and the action's search attributes
    /// (stamped with their types, as a workflow start's are).
    fn check_action(
        &self,
        namespace: &str,
        schedule: &mut sundial_engine::api::schedule::v1::Schedule,
    ) -> Result<(), ServiceError> {
        sundial_schedule::schedule::validate(schedule)?;
        if let Some(Action::StartWorkflow(start)) =
            schedule.action.as_mut().and_then(|a| a.action.as_mut())
        {
            self.check_start_input(
                namespace,
                start.input.as_ref(),
                start.search_attributes.as_mut(),
            )?;
            // As the reference stores it: a task queue without a kind is a normal one.
            if let Some(queue) = start.task_queue.as_mut()
                && queue.kind == 0
            {
                queue.kind = sundial_engine::api::enums::v1::TaskQueueKind::Normal as i32;
            }
        }
        Ok(())
    }

    /// The checks CreateSchedule and UpdateSchedule share: namespace, schedule id, the
    /// schedule's action, and the schedule's own search attributes (stamped with their types).
    fn checked_schedule(
        &self,
        namespace: &str,
        schedule_id: &str,
        schedule: Option<sundial_engine::api::schedule::v1::Schedule>,
        search_attributes: Option<&mut sundial_engine::api::common::v1::SearchAttributes>,
    ) -> Result<sundial_engine::api::schedule::v1::Schedule, ServiceError> {
        self.check_schedule_ref(namespace, schedule_id)?;
        let mut schedule = schedule.unwrap_or_default();
        self.check_action(namespace, &mut schedule)?;
        self.history
            .visibility
            .validate(namespace, search_attributes)?;
        Ok(schedule)
    }

    pub(super) async fn create_schedule_rpc(
        &self,
        mut req: CreateScheduleRequest,
    ) -> Result<CreateScheduleResponse, ServiceError> {
        let schedule = self.checked_schedule(
            &req.namespace,
            &req.schedule_id,
            req.schedule.take(),
            req.search_attributes.as_mut(),
        )?;
        if self
            .schedules
            .get(&req.namespace, &req.schedule_id)
            .is_some()
        {
            return Err(ServiceError::ScheduleAlreadyExists(req.schedule_id));
        }
        let machine = ScheduleMachine::create(
            NewSchedule {
                namespace: req.namespace.clone(),
                schedule_id: req.schedule_id.clone(),
                schedule,
                memo: req.memo,
                search_attributes: req.search_attributes,
                incarnation: uuid::Uuid::new_v4().to_string(),
            },
            self.history.clock().now_ms(),
        )?;
        let token = machine.conflict_token_bytes();
        self.schedules.create(machine, req.initial_patch).await?;
        Ok(CreateScheduleResponse {
            conflict_token: token,
        })
    }

    pub(super) async fn describe_schedule_rpc(
        &self,
        req: DescribeScheduleRequest,
    ) -> Result<DescribeScheduleResponse, ServiceError> {
        self.check_schedule_ref(&req.namespace, &req.schedule_id)?;
        self.schedules
            .read(&req.namespace, &req.schedule_id, |m| {
                DescribeScheduleResponse {
                    schedule: m.record.schedule.clone(),
                    info: Some(m.describe_info()),
                    memo: m.record.memo.clone(),
                    search_attributes: m.record.search_attributes.clone(),
                    conflict_token: m.conflict_token_bytes(),
                }
            })
            .await
    }

    pub(super) async fn update_schedule_rpc(
        &self,
        mut req: UpdateScheduleRequest,
    ) -> Result<UpdateScheduleResponse, ServiceError> {
        let schedule = self.checked_schedule(
            &req.namespace,
            &req.schedule_id,
            req.schedule.take(),
            req.search_attributes.as_mut(),
        )?;
        let token = match req.conflict_token.len() {
            0 => None,
            8 => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&req.conflict_token);
                Some(i64::from_be_bytes(bytes))
            }
            _ => {
                return Err(ServiceError::InvalidArgument(
                    "Invalid conflict token.".into(),
                ));
            }
        };
        let memo = req.memo.take();
        self.schedules
            .modify(&req.namespace, &req.schedule_id, |m, now| {
                m.update(schedule, req.search_attributes, token, now)?;
                if memo.is_some() {
                    m.record.memo = memo;
                }
                Ok(())
            })
            .await?;
        Ok(UpdateScheduleResponse {})
    }

    pub(super) async fn patch_schedule_rpc(
        &self,
        req: PatchScheduleRequest,
    ) -> Result<PatchScheduleResponse, ServiceError> {
        self.check_schedule_ref(&req.namespace, &req.schedule_id)?;
        let patch = req.patch.unwrap_or_default();
        for backfill in &patch.backfill_request {
            if backfill.start_time.is_none() || backfill.end_time.is_none() {
                return Err(ServiceError::InvalidArgument(
                    "Backfill request needs a start time and an end time.".into(),
                ));
            }
        }
        self.schedules
            .modify(&req.namespace, &req.schedule_id, |m, now| {
                m.patch(&patch, now);
                Ok(())
            })
            .await?;
        Ok(PatchScheduleResponse {})
    }

    pub(super) async fn delete_schedule_rpc(
        &self,
        req: DeleteScheduleRequest,
    ) -> Result<DeleteScheduleResponse, ServiceError> {
        self.check_schedule_ref(&req.namespace, &req.schedule_id)?;
        self.schedules
            .delete(&req.namespace, &req.schedule_id)
            .await?;
        Ok(DeleteScheduleResponse {})
    }

    pub(super) async fn list_schedule_matching_times_rpc(
        &self,
        req: ListScheduleMatchingTimesRequest,
    ) -> Result<ListScheduleMatchingTimesResponse, ServiceError> {
        self.check_schedule_ref(&req.namespace, &req.schedule_id)?;
        let (Some(start), Some(end)) = (&req.start_time, &req.end_time) else {
            return Err(ServiceError::InvalidArgument(
                "missing or invalid query: start and end times are required".into(),
            ));
        };
        let (start, end) = (time::timestamp_ms(start), time::timestamp_ms(end));
        let times = self
            .schedules
            .read(&req.namespace, &req.schedule_id, |m| {
                m.matching_times(start, end)
            })
            .await??;
        Ok(ListScheduleMatchingTimesResponse {
            start_time: times.into_iter().map(time::timestamp).collect(),
        })
    }

    /// The namespace's schedules matching `query`, newest first. The query means what it
    /// means for workflows (`sundial_store::predicate`), over the attributes a schedule has.
    async fn matching_schedules(
        &self,
        namespace: &str,
        query: &str,
    ) -> Result<Vec<sundial_engine::api::schedule::v1::ScheduleListEntry>, ServiceError> {
        let invalid = |e: String| ServiceError::InvalidArgument(format!("invalid query: {e}"));
        let custom = self.history.visibility.custom(namespace);
        let resolve = |name: &str| schedule_attribute(name, &custom);
        let filter = list_query::parse(query)
            .map_err(invalid)?
            .filter
            .map(|expr| predicate::resolve(&expr, &resolve))
            .transpose()
            .map_err(invalid)?;
        let mut rows = Vec::new();
        for handle in self.schedules.in_namespace(namespace) {
            let Ok((created, entry)) = self
                .schedules
                .read(namespace, &handle.schedule_id, |m| {
                    let created = m.info().create_time.as_ref().map_or(0, time::timestamp_ms);
                    (created, m.list_entry())
                })
                .await
            else {
                continue;
            };
            if filter
                .as_ref()
                .is_none_or(|f| f.matches(&|attr| schedule_value(&entry, attr)))
            {
                rows.push((created, entry));
            }
        }
        rows.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then_with(|| a.1.schedule_id.cmp(&b.1.schedule_id))
        });
        Ok(rows.into_iter().map(|(_, e)| e).collect())
    }

    pub(super) async fn list_schedules_rpc(
        &self,
        req: ListSchedulesRequest,
    ) -> Result<ListSchedulesResponse, ServiceError> {
        self.namespaces.check(&req.namespace)?;
        // As the reference: unset, negative or larger than the visibility page limit means
        // the limit.
        let page_size = match usize::try_from(req.maximum_page_size) {
            Ok(n) if n > 0 => n.min(DEFAULT_PAGE_SIZE),
            _ => DEFAULT_PAGE_SIZE,
        };
        let offset = if req.next_page_token.is_empty() {
            0
        } else {
            std::str::from_utf8(&req.next_page_token)
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or_else(|| ServiceError::InvalidArgument("Invalid next page token.".into()))?
        };
        let all = self.matching_schedules(&req.namespace, &req.query).await?;
        let end = offset.saturating_add(page_size).min(all.len());
        let page = all.get(offset..end).map(<[_]>::to_vec).unwrap_or_default();
        let next_page_token = if end < all.len() {
            end.to_string().into_bytes()
        } else {
            Vec::new()
        };
        Ok(ListSchedulesResponse {
            schedules: page,
            next_page_token,
        })
    }

    pub(super) async fn count_schedules_rpc(
        &self,
        req: CountSchedulesRequest,
    ) -> Result<CountSchedulesResponse, ServiceError> {
        self.namespaces.check(&req.namespace)?;
        let all = self.matching_schedules(&req.namespace, &req.query).await?;
        Ok(CountSchedulesResponse {
            count: all.len() as i64,
            groups: Vec::new(),
        })
    }
}

/// The attributes a schedule list query may name: the schedule's id, paused state and
/// workflow type, and the namespace's custom search attributes.
fn schedule_attribute(
    name: &str,
    custom: &std::collections::BTreeMap<String, i32>,
) -> Option<(Column, AttrType)> {
    Some(match name {
        "ScheduleId" => (Column::System("schedule_id"), AttrType::Keyword),
        "TemporalSchedulePaused" => (Column::System("paused"), AttrType::Bool),
        "WorkflowType" => (Column::System("workflow_type"), AttrType::Keyword),
        _ => (
            Column::Custom(name.to_string()),
            AttrType::from_indexed(*custom.get(name)?)?,
        ),
    })
}

/// A schedule's stored value of an attribute [`schedule_attribute`] resolved.
fn schedule_value(
    entry: &sundial_engine::api::schedule::v1::ScheduleListEntry,
    attr: &Attr,
) -> RowValue {
    match &attr.column {
        Column::System("schedule_id") => RowValue::Text(entry.schedule_id.clone()),
        Column::System("paused") => {
            RowValue::Int(i64::from(entry.info.as_ref().is_some_and(|i| i.paused)))
        }
        Column::System("workflow_type") => RowValue::Text(
            entry
                .info
                .as_ref()
                .and_then(|i| i.workflow_type.as_ref())
                .map(|t| t.name.clone())
                .unwrap_or_default(),
        ),
        Column::System(_) => RowValue::Null,
        Column::Custom(name) => entry
            .search_attributes
            .as_ref()
            .and_then(|s| s.indexed_fields.get(name))
            .map_or(RowValue::Null, |p| {
                crate::visibility::stored_value(attr.ty, p)
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sundial_engine::api::common::v1::{Payload, SearchAttributes, WorkflowType};
    use sundial_engine::api::schedule::v1::{ScheduleListEntry, ScheduleListInfo};

    fn entry() -> ScheduleListEntry {
        let json = |v: &str| Payload {
            data: v.as_bytes().to_vec(),
            ..Default::default()
        };
        ScheduleListEntry {
            schedule_id: "nightly-report".into(),
            info: Some(ScheduleListInfo {
                paused: true,
                workflow_type: Some(WorkflowType {
                    name: "Report".into(),
                }),
                ..Default::default()
            }),
            search_attributes: Some(SearchAttributes {
                indexed_fields: [
                    ("Tags".to_string(), json(r#"["a","b"]"#)),
                    ("Priority".to_string(), json("3")),
                ]
                .into_iter()
                .collect(),
            }),
            ..Default::default()
        }
    }

    fn matches(query: &str) -> Result<bool, String> {
        let custom = [
            ("Tags".to_string(), 7),
            ("Priority".to_string(), 3),
            ("Missing".to_string(), 2),
        ]
        .into_iter()
        .collect();
        let resolve = |name: &str| schedule_attribute(name, &custom);
        let expr = list_query::parse(query)?.filter.expect("a filter");
        let entry = entry();
        Ok(predicate::resolve(&expr, &resolve)?.matches(&|a| schedule_value(&entry, a)))
    }

    #[test]
    fn filters_schedules_like_visibility() {
        for (query, want) in [
            ("ScheduleId = 'nightly-report'", true),
            ("ScheduleId != 'nightly-report'", false),
            ("ScheduleId STARTS_WITH 'nightly'", true),
            ("TemporalSchedulePaused = true AND Tags = 'b'", true),
            ("WorkflowType = 'Report' AND Priority >= 3", true),
            ("ScheduleId IN ('x', 'nightly-report')", true),
            ("Missing IS NULL OR Tags = 'z'", true),
            ("NOT (TemporalSchedulePaused = true)", false),
            // As in SQL: a comparison with an unset attribute is neither true nor false.
            ("Missing != 'x'", false),
            ("NOT (Missing = 'x')", false),
            ("Tags = 'a' AND Tags = 'b' AND Tags = 'c'", false),
        ] {
            assert_eq!(matches(query), Ok(want), "{query}");
        }
        assert_eq!(
            matches("Nope = 1"),
            Err("invalid search attribute: Nope".into())
        );
        assert!(matches("Priority = 'high'").is_err());
    }
}
