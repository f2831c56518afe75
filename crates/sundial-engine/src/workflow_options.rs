//! UpdateWorkflowExecutionOptions: a run's versioning override, as the reference server
//! keeps it.
//!
//! The request is checked without the run ([`check_request`]: options and update mask
//! present, mask paths known, the override well formed), then applied to the run
//! ([`Transition::update_workflow_options`]). An override changes nothing about dispatch in
//! this server (it has no worker deployments); it is recorded, written to history and shown.
//!
//! Forms of an override: the request may use the current form (the `override` oneof: pinned
//! with a version, auto-upgrade, one-time) or the deprecated one (`behavior` with `deployment`
//! or `pinned_version`). What the run keeps, and what the WorkflowExecutionOptionsUpdated
//! event records, is the current form only ([`normalized`]); DescribeWorkflowExecution adds
//! the deprecated fields back ([`described`]). The reply is the request's options merged into
//! the run's, in the request's form. An update that leaves the options as they are (the
//! merged options equal the kept ones) writes nothing.

use crate::api::{
    deployment::v1::WorkerDeploymentVersion,
    enums::v1::VersioningBehavior,
    history::v1::{WorkflowExecutionOptionsUpdatedEventAttributes, history_event::Attributes},
    workflow::v1::{
        VersioningOverride, WorkflowExecutionOptions,
        versioning_override::{Override, PinnedOverride, PinnedOverrideBehavior},
    },
};
use crate::{EngineError, Persist, Transition};

/// The message the reference server answers for an update of a closed run.
pub const WORKFLOW_COMPLETED: &str = "workflow execution already completed";

/// Fields of WorkflowExecutionOptions an update mask may name.
const OPTION_FIELDS: [&str; 3] = ["versioning_override", "priority", "time_skipping_config"];
/// Fields of VersioningOverride (a mask may name them, and is then refused: the override is
/// replaced as a whole).
const OVERRIDE_FIELDS: [&str; 6] = [
    "pinned",
    "auto_upgrade",
    "one_time",
    "behavior",
    "deployment",
    "pinned_version",
];

fn invalid(message: impl Into<String>) -> EngineError {
    EngineError::InvalidArgument(message.into())
}

/// An UpdateWorkflowExecutionOptions request, as the transition takes it.
#[derive(Debug, Clone, Default)]
pub struct OptionsUpdate {
    pub options: WorkflowExecutionOptions,
    /// The update mask's paths (checked by [`check_request`]).
    pub paths: Vec<String>,
    pub identity: String,
}

/// Checks a request before its run is looked at, with the reference server's messages:
/// options and an update mask are required (an empty mask changes nothing), each path must
/// name a field of WorkflowExecutionOptions, the override is replaced only as a whole, and an
/// override set must be well formed. Priority and time skipping are not supported here.
pub fn check_request(
    options: Option<&WorkflowExecutionOptions>,
    paths: Option<&[String]>,
) -> Result<(), EngineError> {
    let Some(options) = options else {
        return Err(invalid("WorkflowExecutionOptions is required"));
    };
    let Some(paths) = paths else {
        return Err(invalid("UpdateMask is required"));
    };
    for path in paths {
        let mut parts = path.split('.');
        let top = parts.next().unwrap_or_default();
        let sub = parts.next();
        let known = OPTION_FIELDS.contains(&top)
            && (top != "versioning_override" || sub.is_none_or(|f| OVERRIDE_FIELDS.contains(&f)));
        if !known {
            return Err(invalid(format!(
                "error parsing UpdateMask: proto:\u{a0}invalid path {path:?} for message \"temporal.api.workflow.v1.WorkflowExecutionOptions\""
            )));
        }
        if top == "versioning_override" && sub.is_some() {
            return Err(invalid(
                "error applying update_options: versioning_override doesn't support partial updates",
            ));
        }
        if top != "versioning_override" {
            return Err(EngineError::Unimplemented(format!(
                "updating {top} is not supported by this server"
            )));
        }
    }
    if paths.iter().any(|p| p == "versioning_override")
        && let Some(o) = &options.versioning_override
    {
        check_override(o)?;
    }
    Ok(())
}

/// An override must say what it does: the reference server's rules and messages.
#[allow(deprecated)] // behavior, deployment, pinned_version: the deprecated form, still accepted
pub fn check_override(o: &VersioningOverride) -> Result<(), EngineError> {
    match &o.r#override {
        Some(Override::AutoUpgrade(true)) => Ok(()),
        Some(Override::AutoUpgrade(false)) => Err(invalid("auto-upgrade override must be true")),
        Some(Override::Pinned(p)) => match PinnedOverrideBehavior::try_from(p.behavior) {
            Ok(PinnedOverrideBehavior::Pinned) => Ok(()),
            Ok(PinnedOverrideBehavior::Unspecified) => Err(invalid(
                "must specify pinned override behavior if override is pinned.",
            )),
            Err(_) => Err(invalid(format!(
                "pinned override behavior {} not recognized",
                p.behavior
            ))),
        },
        Some(Override::OneTime(t)) => match t.target_deployment_version {
            Some(_) => Ok(()),
            None => Err(invalid(
                "must provide target deployment version if override is one-time.",
            )),
        },
        None => match VersioningBehavior::try_from(o.behavior) {
            Ok(VersioningBehavior::Unspecified) => Err(invalid("override behavior is required")),
            Ok(VersioningBehavior::AutoUpgrade) => {
                if o.deployment.is_some() {
                    Err(invalid("only provide deployment if behavior is 'PINNED'"))
                } else if !o.pinned_version.is_empty() {
                    Err(invalid(
                        "only provide pinned version if behavior is 'PINNED'",
                    ))
                } else {
                    Ok(())
                }
            }
            Ok(VersioningBehavior::Pinned) => {
                if o.pinned_version.is_empty() && o.deployment.is_none() {
                    return Err(invalid(
                        "must provide deployment (deprecated) or pinned version if behavior is 'PINNED'",
                    ));
                }
                if !o.pinned_version.is_empty() {
                    parse_version(&o.pinned_version)?;
                }
                Ok(())
            }
            Err(_) => Err(invalid(format!(
                "override behavior {} not recognized",
                o.behavior
            ))),
        },
    }
}

/// A deprecated version string, `<deployment_name>.<build_id>`.
fn parse_version(version: &str) -> Result<WorkerDeploymentVersion, EngineError> {
    match version.split_once('.') {
        Some((deployment_name, build_id)) => Ok(WorkerDeploymentVersion {
            build_id: build_id.to_string(),
            deployment_name: deployment_name.to_string(),
        }),
        None => Err(invalid(format!(
            "invalid version string {version:?}, expected format is \"<deployment_name>.<build_id>\""
        ))),
    }
}

fn pinned(version: Option<WorkerDeploymentVersion>) -> VersioningOverride {
    VersioningOverride {
        r#override: Some(Override::Pinned(PinnedOverride {
            behavior: PinnedOverrideBehavior::Pinned as i32,
            version,
        })),
        ..Default::default()
    }
}

/// The current form of a (checked) override: the oneof when set, else the deprecated
/// behavior translated (a pinned version string before a deployment).
#[allow(deprecated)]
pub fn normalized(o: &VersioningOverride) -> VersioningOverride {
    if let Some(kind) = &o.r#override {
        return VersioningOverride {
            r#override: Some(kind.clone()),
            ..Default::default()
        };
    }
    if o.behavior == VersioningBehavior::AutoUpgrade as i32 {
        return VersioningOverride {
            r#override: Some(Override::AutoUpgrade(true)),
            ..Default::default()
        };
    }
    let version = if o.pinned_version.is_empty() {
        o.deployment.as_ref().map(|d| WorkerDeploymentVersion {
            build_id: d.build_id.clone(),
            deployment_name: d.series_name.clone(),
        })
    } else {
        parse_version(&o.pinned_version).ok()
    };
    pinned(version)
}

/// A kept override as DescribeWorkflowExecution shows it: the current form with the
/// deprecated `behavior` (and, when pinned, `pinned_version`) filled in.
#[allow(deprecated)]
pub fn described(o: &VersioningOverride) -> VersioningOverride {
    let mut out = o.clone();
    match &o.r#override {
        Some(Override::AutoUpgrade(_)) => out.behavior = VersioningBehavior::AutoUpgrade as i32,
        Some(Override::Pinned(p)) => {
            out.behavior = VersioningBehavior::Pinned as i32;
            if let Some(v) = &p.version {
                out.pinned_version = format!("{}.{}", v.deployment_name, v.build_id);
            }
        }
        _ => {}
    }
    out
}

/// The behavior an override gives a run (this server records no behavior of its own), by
/// the reference server's names.
fn behavior_name(o: Option<&VersioningOverride>) -> &'static str {
    match o.and_then(|o| o.r#override.as_ref()) {
        Some(Override::Pinned(_)) => "Pinned",
        Some(Override::AutoUpgrade(_)) => "AutoUpgrade",
        _ => "Unspecified",
    }
}

/// The versions an override asks workers of the run's task queue to have, which must have
/// polled it: a pinned version named in the current form, a one-time target, a deprecated
/// pinned version string without a deployment (the reference server checks no other).
#[allow(deprecated)]
fn version_to_check(o: &VersioningOverride) -> Option<WorkerDeploymentVersion> {
    match &o.r#override {
        Some(Override::Pinned(p)) => p.version.clone(),
        Some(Override::OneTime(t)) => t.target_deployment_version.clone(),
        Some(Override::AutoUpgrade(_)) => None,
        None if o.deployment.is_none() && !o.pinned_version.is_empty() => {
            parse_version(&o.pinned_version).ok()
        }
        None => None,
    }
}

/// Whether workers of a deployment version polled the run's workflow task queue: the caller
/// knows (matching), the engine does not.
pub type VersionPresent<'a> = &'a dyn Fn(&WorkerDeploymentVersion) -> bool;

impl Transition<'_> {
    /// A start that found this run running with USE_EXISTING and `on_conflict_options`
    /// attaches to it: WorkflowExecutionOptionsUpdated records the request id and the
    /// completion callbacks it asked to attach (and its links, on the event), and the callbacks
    /// are told of this run's chain's close like its own. A request id attached before
    /// attaches nothing again.
    pub fn attach_start(
        &mut self,
        req: &crate::api::workflowservice::v1::StartWorkflowExecutionRequest,
    ) -> Result<(), EngineError> {
        if !self.state.is_running() {
            return Err(EngineError::NotFound(WORKFLOW_COMPLETED.into()));
        }
        let options = req.on_conflict_options.unwrap_or_default();
        if !req.request_id.is_empty() && self.state.attached_request_ids.contains(&req.request_id) {
            self.persist = Persist::Nothing;
            return Ok(());
        }
        let callbacks = if options.attach_completion_callbacks {
            req.completion_callbacks.clone()
        } else {
            Vec::new()
        };
        let request_id = if options.attach_request_id {
            req.request_id.clone()
        } else {
            String::new()
        };
        let had_unwritten_task = self
            .state
            .workflow_task
            .as_ref()
            .is_some_and(|wt| wt.unwritten);
        let mut event =
            self.build_event(Attributes::WorkflowExecutionOptionsUpdatedEventAttributes(
                WorkflowExecutionOptionsUpdatedEventAttributes {
                    attached_request_id: request_id,
                    attached_completion_callbacks: callbacks.clone(),
                    identity: req.identity.clone(),
                    ..Default::default()
                },
            ));
        if options.attach_links {
            event.links = req.links.clone();
        }
        self.record_event(event);
        if had_unwritten_task {
            // The event replaced a task whose events were not written (see `record`).
            self.ensure_workflow_task();
        }
        if !req.request_id.is_empty() {
            self.state.attached_request_ids.push(req.request_id.clone());
        }
        self.state.completion_callbacks.extend(callbacks);
        Ok(())
    }

    /// UpdateWorkflowExecutionOptions on a checked request ([`check_request`]): replaces the
    /// run's versioning override (or removes it), writes WorkflowExecutionOptionsUpdated when
    /// that changes the options, and returns the options after the update.
    ///
    /// A pinned override without a version keeps the version the run is pinned to; a run
    /// not pinned is refused (FailedPrecondition). A version no worker of the run's task
    /// queue has polled with is refused (FailedPrecondition), as the reference server does.
    pub fn update_workflow_options(
        &mut self,
        request: &OptionsUpdate,
        version_present: VersionPresent<'_>,
    ) -> Result<WorkflowExecutionOptions, EngineError> {
        if !self.state.is_running() {
            return Err(EngineError::NotFound(WORKFLOW_COMPLETED.into()));
        }
        self.persist = Persist::Nothing;
        let current = WorkflowExecutionOptions {
            versioning_override: self.state.versioning_override.clone(),
            ..Default::default()
        };
        if !request.paths.iter().any(|p| p == "versioning_override") {
            return Ok(current);
        }
        let mut wanted = request.options.versioning_override.clone();
        if let Some(o) = wanted.as_mut() {
            if let Some(Override::Pinned(p)) = o.r#override.as_mut()
                && p.version.is_none()
            {
                let kept = match self.state.versioning_override.as_ref() {
                    Some(VersioningOverride {
                        r#override: Some(Override::Pinned(kept)),
                        ..
                    }) => kept.version.clone(),
                    _ => None,
                };
                let Some(kept) = kept else {
                    return Err(EngineError::FailedPrecondition(format!(
                        "must specify a specific pinned override version because workflow with id {} has behavior {} and is not yet pinned to any version",
                        self.state.workflow_id,
                        behavior_name(self.state.versioning_override.as_ref())
                    )));
                };
                p.version = Some(kept);
            } else if let Some(v) = version_to_check(o)
                && !version_present(&v)
            {
                return Err(EngineError::FailedPrecondition(format!(
                    "Pinned version '{}:{}' is not present in task queue '{}' of type 'Workflow'",
                    v.deployment_name, v.build_id, self.state.task_queue
                )));
            }
        }
        let merged = WorkflowExecutionOptions {
            versioning_override: wanted,
            ..Default::default()
        };
        if merged == current {
            return Ok(merged);
        }
        let kept = merged.versioning_override.as_ref().map(normalized);
        let had_unwritten_task = self
            .state
            .workflow_task
            .as_ref()
            .is_some_and(|wt| wt.unwritten);
        self.record(Attributes::WorkflowExecutionOptionsUpdatedEventAttributes(
            WorkflowExecutionOptionsUpdatedEventAttributes {
                unset_versioning_override: kept.is_none(),
                versioning_override: kept.clone(),
                identity: request.identity.clone(),
                ..Default::default()
            },
        ));
        if had_unwritten_task {
            // The event replaced a task whose events were not written (see `record`).
            self.ensure_workflow_task();
        }
        self.state.versioning_override = kept;
        self.persist = Persist::Synced;
        Ok(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExecutionState;

    fn running() -> ExecutionState {
        crate::tests::started_run().0
    }

    fn version(d: &str, b: &str) -> WorkerDeploymentVersion {
        WorkerDeploymentVersion {
            build_id: b.into(),
            deployment_name: d.into(),
        }
    }

    fn request(o: Option<VersioningOverride>) -> OptionsUpdate {
        OptionsUpdate {
            options: WorkflowExecutionOptions {
                versioning_override: o,
                ..Default::default()
            },
            paths: vec!["versioning_override".into()],
            identity: "me".into(),
        }
    }

    fn auto() -> VersioningOverride {
        VersioningOverride {
            r#override: Some(Override::AutoUpgrade(true)),
            ..Default::default()
        }
    }

    /// Applies `req`; returns the reply and the events written.
    fn apply(
        state: &mut ExecutionState,
        req: &OptionsUpdate,
        present: VersionPresent<'_>,
    ) -> (
        Result<WorkflowExecutionOptions, EngineError>,
        Vec<crate::api::history::v1::HistoryEvent>,
        Persist,
    ) {
        let mut t = Transition::new(state, 2_000);
        let r = t.update_workflow_options(req, present);
        (r, t.events, t.persist)
    }

    #[test]
    fn pinned_is_recorded_in_the_current_form_and_shown_with_the_deprecated_fields() {
        let mut state = running();
        let next = state.next_event_id;
        let pinned_req = pinned(Some(version("dep", "b1")));
        let (reply, events, persist) =
            apply(&mut state, &request(Some(pinned_req.clone())), &|v| {
                v == &version("dep", "b1")
            });
        assert_eq!(reply.unwrap().versioning_override, Some(pinned_req.clone()));
        assert_eq!(persist, Persist::Synced);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_id, next);
        assert!(events[0].worker_may_ignore);
        let Some(Attributes::WorkflowExecutionOptionsUpdatedEventAttributes(a)) =
            &events[0].attributes
        else {
            panic!("not an options event: {:?}", events[0]);
        };
        assert_eq!(a.versioning_override, Some(pinned_req.clone()));
        assert!(!a.unset_versioning_override);
        assert_eq!(a.identity, "me");
        assert_eq!(state.versioning_override, Some(pinned_req.clone()));
        #[allow(deprecated)]
        {
            let shown = described(&pinned_req);
            assert_eq!(shown.behavior, VersioningBehavior::Pinned as i32);
            assert_eq!(shown.pinned_version, "dep.b1");
        }
    }

    #[test]
    fn the_same_options_again_write_nothing_and_unset_writes_the_flag() {
        let mut state = running();
        let (_, events, _) = apply(&mut state, &request(Some(auto())), &|_| false);
        assert_eq!(events.len(), 1);
        let (reply, events, persist) = apply(&mut state, &request(Some(auto())), &|_| false);
        assert_eq!(reply.unwrap().versioning_override, Some(auto()));
        assert!(events.is_empty());
        assert_eq!(persist, Persist::Nothing);
        let (reply, events, _) = apply(&mut state, &request(None), &|_| false);
        assert_eq!(reply.unwrap().versioning_override, None);
        let Some(Attributes::WorkflowExecutionOptionsUpdatedEventAttributes(a)) =
            &events[0].attributes
        else {
            panic!("not an options event");
        };
        assert!(a.unset_versioning_override);
        assert_eq!(a.versioning_override, None);
        assert_eq!(state.versioning_override, None);
        // A mask without the override changes nothing.
        let mut none = request(Some(auto()));
        none.paths.clear();
        let (reply, events, _) = apply(&mut state, &none, &|_| false);
        assert_eq!(reply.unwrap().versioning_override, None);
        assert!(events.is_empty());
    }

    #[test]
    #[allow(deprecated)]
    fn the_deprecated_form_is_kept_translated() {
        let mut state = running();
        let old = VersioningOverride {
            behavior: VersioningBehavior::Pinned as i32,
            deployment: Some(crate::api::deployment::v1::Deployment {
                series_name: "dep".into(),
                build_id: "b1".into(),
            }),
            ..Default::default()
        };
        check_override(&old).unwrap();
        // A deployment is not checked against the queue (as the reference does).
        let (reply, _, _) = apply(&mut state, &request(Some(old.clone())), &|_| false);
        assert_eq!(reply.unwrap().versioning_override, Some(old));
        assert_eq!(
            state.versioning_override,
            Some(pinned(Some(version("dep", "b1"))))
        );
        let by_string = VersioningOverride {
            behavior: VersioningBehavior::Pinned as i32,
            pinned_version: "x.y.z".into(),
            ..Default::default()
        };
        assert_eq!(normalized(&by_string), pinned(Some(version("x", "y.z"))));
        let old_auto = VersioningOverride {
            behavior: VersioningBehavior::AutoUpgrade as i32,
            ..Default::default()
        };
        assert_eq!(normalized(&old_auto), auto());
    }

    #[test]
    fn pinned_without_a_version_needs_a_pinned_run_and_versions_must_be_present() {
        let mut state = running();
        let bare = pinned(None);
        let (reply, events, _) = apply(&mut state, &request(Some(bare.clone())), &|_| true);
        assert!(
            matches!(reply, Err(EngineError::FailedPrecondition(ref m)) if m.contains("has behavior Unspecified and is not yet pinned")),
            "{reply:?}"
        );
        assert!(events.is_empty());
        let (reply, _, _) = apply(
            &mut state,
            &request(Some(pinned(Some(version("dep", "b1"))))),
            &|_| false,
        );
        assert_eq!(
            reply,
            Err(EngineError::FailedPrecondition(format!(
                "Pinned version 'dep:b1' is not present in task queue '{}' of type 'Workflow'",
                state.task_queue
            )))
        );
        apply(
            &mut state,
            &request(Some(pinned(Some(version("dep", "b1"))))),
            &|_| true,
        )
        .0
        .unwrap();
        let (reply, events, _) = apply(&mut state, &request(Some(bare)), &|_| false);
        assert_eq!(
            reply.unwrap().versioning_override,
            Some(pinned(Some(version("dep", "b1"))))
        );
        assert!(events.is_empty(), "the kept override is unchanged");
    }

    #[test]
    fn a_closed_run_is_refused() {
        let mut state = running();
        state.status = crate::api::enums::v1::WorkflowExecutionStatus::Completed as i32;
        let (reply, events, _) = apply(&mut state, &request(Some(auto())), &|_| true);
        assert_eq!(reply, Err(EngineError::NotFound(WORKFLOW_COMPLETED.into())));
        assert!(events.is_empty());
    }

    #[test]
    fn requests_are_checked_with_the_reference_messages() {
        let opts = WorkflowExecutionOptions {
            versioning_override: Some(auto()),
            ..Default::default()
        };
        let paths = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let err = |o: Option<&WorkflowExecutionOptions>, p: Option<&[String]>| {
            check_request(o, p).unwrap_err().to_string()
        };
        assert_eq!(err(Some(&opts), None), "UpdateMask is required".to_string());
        assert_eq!(
            err(None, Some(&paths(&["versioning_override"]))),
            "WorkflowExecutionOptions is required"
        );
        assert!(err(Some(&opts), Some(&paths(&["versioningOverride"]))).contains("invalid path"));
        assert!(
            err(Some(&opts), Some(&paths(&["versioning_override.pinned"])))
                .contains("doesn't support partial updates")
        );
        assert!(matches!(
            check_request(Some(&opts), Some(&paths(&["priority"]))),
            Err(EngineError::Unimplemented(_))
        ));
        check_request(Some(&opts), Some(&[])).unwrap();
        check_request(Some(&opts), Some(&paths(&["versioning_override"]))).unwrap();
        let bad = |o: VersioningOverride| check_override(&o).unwrap_err().to_string();
        assert_eq!(
            bad(VersioningOverride::default()),
            "override behavior is required"
        );
        assert_eq!(
            bad(VersioningOverride {
                r#override: Some(Override::AutoUpgrade(false)),
                ..Default::default()
            }),
            "auto-upgrade override must be true"
        );
        assert_eq!(
            bad(VersioningOverride {
                r#override: Some(Override::Pinned(PinnedOverride::default())),
                ..Default::default()
            }),
            "must specify pinned override behavior if override is pinned."
        );
        assert_eq!(
            bad(VersioningOverride {
                r#override: Some(Override::OneTime(Default::default())),
                ..Default::default()
            }),
            "must provide target deployment version if override is one-time."
        );
        #[allow(deprecated)]
        {
            assert_eq!(
                bad(VersioningOverride {
                    behavior: VersioningBehavior::AutoUpgrade as i32,
                    pinned_version: "a.b".into(),
                    ..Default::default()
                }),
                "only provide pinned version if behavior is 'PINNED'"
            );
            assert_eq!(
                bad(VersioningOverride {
                    behavior: VersioningBehavior::Pinned as i32,
                    ..Default::default()
                }),
                "must provide deployment (deprecated) or pinned version if behavior is 'PINNED'"
            );
            assert_eq!(
                bad(VersioningOverride {
                    behavior: 42,
                    ..Default::default()
                }),
                "override behavior 42 not recognized"
            );
        }
    }
}
