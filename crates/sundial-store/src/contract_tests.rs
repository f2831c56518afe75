//! The storage contract as one suite that every backend passes: each test is written once
//! against `&dyn Store` and runs on SQLite (in memory) and on PostgreSQL (a database of its
//! own on the machine's server, `SUNDIAL_TEST_POSTGRES` or
//! `postgres://postgres@127.0.0.1:5432/test`; an unreachable server fails the tests, it never
//! skips them).

use crate::predicate::{self, AttrType, Column};
use crate::{
    BATCH_JOB_RECORD, BatchJobRow, Durability, EventRow, ExecutionRow, NamespaceRow,
    NexusEndpointRow, PostgresOptions, PostgresStore, RUNNING_STATUS, ScheduleRow,
    SearchAttributeRow, ShardFence, SqliteStore, Store, StoreError, VisibilityQuery, VisibilityRow,
    WriteBatch,
};
use std::collections::BTreeMap;

/// The fence of the tests' writes: shard 0 as [`holding_the_shard`] takes it on a new store.
/// Every slot (the one shard of a new store).
pub(crate) const ALL_SLOTS: std::ops::RangeInclusive<u32> = 0..=crate::shard::SLOTS - 1;

pub(crate) const TEST_FENCE: Option<ShardFence> = Some(ShardFence { shard: 0, epoch: 1 });

/// `store`, a new one, after taking its one shard (the lease [`TEST_FENCE`] names).
pub(crate) async fn holding_the_shard<S: Store>(store: S) -> S {
    let fence = store
        .acquire_shard(0, "test", 0, i64::MAX / 4)
        .await
        .unwrap();
    assert_eq!(fence, TEST_FENCE);
    store
}

/// Every run [`Store::load_runs_to_resume`] gives for `slots`, read two to a page, checking
/// that pages come in run id order and never repeat a run.
pub(crate) async fn resume_all(
    store: &dyn Store,
    slots: std::ops::RangeInclusive<u32>,
) -> Vec<ExecutionRow> {
    let mut all: Vec<ExecutionRow> = Vec::new();
    loop {
        let after = all.last().map(|r| r.run_id.clone());
        let page = store
            .load_runs_to_resume(slots.clone(), after.as_deref(), 2)
            .await
            .unwrap();
        assert!(page.len() <= 2, "a page holds at most its limit");
        let done = page.len() < 2;
        for run in page {
            assert!(
                all.last().is_none_or(|last| run.run_id > last.run_id),
                "pages come in run id order without repeats"
            );
            all.push(run);
        }
        if done {
            return all;
        }
    }
}

/// The run ids of `store`'s running executions in every slot, sorted.
pub(crate) async fn running_run_ids(store: &dyn Store) -> Vec<String> {
    let mut runs: Vec<String> = resume_all(store, ALL_SLOTS)
        .await
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    runs.sort();
    runs
}

/// A new run `run` of workflow "wf" (version 1, one event).
pub(crate) fn row(run: &str, status: i32) -> ExecutionRow {
    ExecutionRow {
        namespace: "default".into(),
        workflow_id: "wf".into(),
        run_id: run.into(),
        status,
        next_event_id: 2,
        version: 1,
        previous: None,
        state: vec![status as u8],
        wake_at: Some(crate::RESUME_AT_START),
    }
}

/// The write of `row` that follows `before` (one more version and event).
pub(crate) fn next(before: &ExecutionRow, status: i32, state: u8) -> ExecutionRow {
    ExecutionRow {
        status,
        next_event_id: before.next_event_id + 1,
        version: before.version + 1,
        previous: Some(before.written_version()),
        state: vec![state],
        ..before.clone()
    }
}

pub(crate) fn only(row: ExecutionRow) -> WriteBatch {
    WriteBatch {
        executions: vec![row],
        fence: TEST_FENCE,
        ..Default::default()
    }
}

pub(crate) async fn a_run_closing_leaves_the_running_set_and_keeps_its_latest_state(
    store: &dyn Store,
) {
    let first = ExecutionRow {
        state: vec![10],
        ..row("r1", 1)
    };
    let second = next(&first, 1, 11);
    let third = next(&second, 2, 12);
    let exec = |row: ExecutionRow| WriteBatch {
        visibility: vec![VisibilityRow {
            run_id: "r1".into(),
            namespace: "default".into(),
            workflow_id: "wf".into(),
            workflow_type: "T".into(),
            status: row.status,
            start_time_ms: 5,
            close_time_ms: (row.status != RUNNING_STATUS).then_some(9),
            info: row.state.clone(),
            ..Default::default()
        }],
        executions: vec![row],
        fence: TEST_FENCE,
        ..Default::default()
    };
    for batch in [exec(first), exec(second), exec(third)] {
        store.commit(batch).await.unwrap().unwrap();
    }
    let latest = store
        .load_execution("default", "wf", Some("r1"))
        .await
        .unwrap();
    assert_eq!(latest.map(|r| (r.status, r.state)), Some((2, vec![12])));
    // By run id alone, the same row; an unknown id is no row.
    let by_id = store.load_run("r1").await.unwrap();
    assert_eq!(
        by_id.map(|r| (r.namespace, r.workflow_id, r.status, r.state)),
        Some(("default".into(), "wf".into(), 2, vec![12]))
    );
    assert!(store.load_run("no-such-run").await.unwrap().is_none());
    assert!(running_run_ids(store).await.is_empty());
    let all = VisibilityQuery::default();
    assert_eq!(
        store
            .list_visibility("default", &all, 10, None)
            .await
            .unwrap()
            .infos,
        vec![vec![12]]
    );
    assert_eq!(
        store.closed_runs_before("default", 10, 10).await.unwrap(),
        vec![("wf".to_string(), "r1".to_string())]
    );
    assert!(
        store
            .closed_runs_before("default", 9, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub(crate) async fn schedules_are_written_replaced_and_deleted(store: &dyn Store) {
    let put = |id: &str, data: Option<Vec<u8>>| WriteBatch {
        schedules: vec![ScheduleRow {
            namespace: "default".into(),
            schedule_id: id.into(),
            data,
        }],
        fence: TEST_FENCE,
        ..Default::default()
    };
    store
        .commit(put("a", Some(vec![1])))
        .await
        .unwrap()
        .unwrap();
    store
        .commit(put("b", Some(vec![2])))
        .await
        .unwrap()
        .unwrap();
    store
        .commit(put("a", Some(vec![3])))
        .await
        .unwrap()
        .unwrap();
    store.commit(put("b", None)).await.unwrap().unwrap();
    let rows = store.load_schedules().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].schedule_id, "a");
    assert_eq!(rows[0].data, Some(vec![3]));
}

/// A batch of Nexus endpoint rows, by name: `Some` writes, `None` deletes.
fn endpoints(rows: &[(&str, Option<&[u8]>)]) -> WriteBatch {
    WriteBatch {
        nexus_endpoints: rows
            .iter()
            .map(|(name, data)| NexusEndpointRow {
                name: name.to_string(),
                data: data.map(<[u8]>::to_vec),
            })
            .collect(),
        ..Default::default()
    }
}

/// Nexus endpoints are cluster-wide rows keyed by name: written without a fence (and with one,
/// next to shard-owned rows), overwritten, deleted (also a name that is not there), renamed
/// as a deletion and a write in one batch, and loaded by name; a refused batch writes none.
pub(crate) async fn nexus_endpoints_are_written_overwritten_and_deleted(store: &dyn Store) {
    assert!(store.load_nexus_endpoints().await.unwrap().is_empty());
    let commit = |batch: WriteBatch| async { store.commit(batch).await.unwrap() };
    commit(endpoints(&[
        ("b-endpoint", Some(b"b1")),
        ("a-endpoint", Some(b"a1")),
    ]))
    .await
    .unwrap();
    commit(endpoints(&[("c-endpoint", Some(b"c1"))]))
        .await
        .unwrap();
    // Overwrite, and delete one that exists and one that never did.
    commit(endpoints(&[
        ("a-endpoint", Some(b"a2")),
        ("c-endpoint", None),
        ("never", None),
    ]))
    .await
    .unwrap();
    // A rename: the old name goes, the new one comes, together.
    commit(endpoints(&[
        ("b-endpoint", None),
        ("d-endpoint", Some(b"b2")),
    ]))
    .await
    .unwrap();
    let loaded = |rows: Vec<NexusEndpointRow>| {
        rows.into_iter()
            .map(|r| (r.name, r.data))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        loaded(store.load_nexus_endpoints().await.unwrap()),
        [
            ("a-endpoint".to_string(), Some(b"a2".to_vec())),
            ("d-endpoint".to_string(), Some(b"b2".to_vec())),
        ]
    );
    // Under a fence, with a run; and a refused batch (its run conflicts) leaves the endpoints.
    let mut fenced = endpoints(&[("e-endpoint", Some(b"e1"))]);
    fenced.executions = vec![row("r1", RUNNING_STATUS)];
    fenced.fence = TEST_FENCE;
    commit(fenced).await.unwrap();
    let mut refused = endpoints(&[("a-endpoint", None), ("f-endpoint", Some(b"f1"))]);
    refused.executions = vec![row("r2", RUNNING_STATUS)];
    refused.fence = TEST_FENCE;
    assert!(matches!(
        commit(refused).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        loaded(store.load_nexus_endpoints().await.unwrap()),
        [
            ("a-endpoint".to_string(), Some(b"a2".to_vec())),
            ("d-endpoint".to_string(), Some(b"b2".to_vec())),
            ("e-endpoint".to_string(), Some(b"e1".to_vec())),
        ]
    );
}

pub(crate) async fn a_write_expecting_another_version_is_refused_and_fails_alone(
    store: &dyn Store,
) {
    let first = row("r1", 1);
    store.commit(only(first.clone())).await.unwrap().unwrap();
    let second = next(&first, 1, 7);
    store.commit(only(second.clone())).await.unwrap().unwrap();
    // Queued together, so usually one group: the stale write (it expects `first` again)
    // fails; the others commit.
    let stale = next(&first, 1, 8);
    let other = ExecutionRow {
        workflow_id: "wf-2".into(),
        ..row("r2", 1)
    };
    let receipts = [
        store.commit(only(stale)),
        store.commit(only(other)),
        store.commit(only(next(&second, 1, 9))),
    ];
    let mut results = Vec::new();
    for r in receipts {
        results.push(r.await.unwrap());
    }
    assert!(
        matches!(results[0], Err(StoreError::Conflict(_))),
        "{results:?}"
    );
    assert!(results[1].is_ok() && results[2].is_ok(), "{results:?}");
    let stored = store
        .load_execution("default", "wf", Some("r1"))
        .await
        .unwrap();
    assert_eq!(stored.map(|r| (r.version, r.state)), Some((3, vec![9])));
    assert!(store.healthy());
}

pub(crate) async fn a_workflow_id_has_at_most_one_running_run(store: &dyn Store) {
    let first = row("r1", 1);
    store.commit(only(first.clone())).await.unwrap().unwrap();
    let second = row("r2", 1);
    assert!(matches!(
        store.commit(only(second.clone())).await.unwrap(),
        Err(StoreError::Conflict(_))
    ));
    // Closing the first and creating the second in one batch (continue-as-new) works.
    let closes = WriteBatch {
        executions: vec![next(&first, 2, 2), second],
        fence: TEST_FENCE,
        ..Default::default()
    };
    store.commit(closes).await.unwrap().unwrap();
    let running = resume_all(store, ALL_SLOTS).await;
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].run_id, "r2");
    let current = || async {
        let run = store.load_execution("default", "wf", None).await;
        run.unwrap().map(|r| r.run_id)
    };
    assert_eq!(current().await.as_deref(), Some("r2"));
    // A run created after the current one closed becomes current; a refused one does not.
    store
        .commit(only(next(&row("r2", 1), 2, 3)))
        .await
        .unwrap()
        .unwrap();
    store.commit(only(row("r3", 1))).await.unwrap().unwrap();
    assert!(matches!(
        store.commit(only(row("r4", 1))).await.unwrap(),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(current().await.as_deref(), Some("r3"));
    // Deleting an older run leaves the current one; deleting the current one leaves none.
    let delete = |run: &str| WriteBatch {
        deleted_runs: vec![run.into()],
        fence: TEST_FENCE,
        ..Default::default()
    };
    store.commit(delete("r1")).await.unwrap().unwrap();
    assert_eq!(current().await.as_deref(), Some("r3"));
    store.commit(delete("r3")).await.unwrap().unwrap();
    assert_eq!(current().await, None);
    store.commit(only(row("r5", 1))).await.unwrap().unwrap();
    assert_eq!(current().await.as_deref(), Some("r5"));
}

/// An update of a run the store does not hold is NotFound, one of a run at another version a
/// Conflict; neither writes anything.
pub(crate) async fn a_write_of_a_missing_run_is_not_found(store: &dyn Store) {
    let ghost = next(&row("ghost", 1), 1, 1);
    assert!(matches!(
        store.commit(only(ghost)).await.unwrap(),
        Err(StoreError::NotFound(_))
    ));
    assert!(running_run_ids(store).await.is_empty());
}

/// Shard leases and fences: a write needs the fence of its shard at the lease's current epoch;
/// once another owner takes the shard, every write under the old fence is refused, and so is
/// the renewal of the old lease.
pub(crate) async fn writes_under_a_lost_fence_are_refused(store: &dyn Store) {
    assert_eq!(store.shard_count(), 1);
    let fence = TEST_FENCE.unwrap();
    let leases = store.load_shard_leases().await.unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!((leases[0].owner.as_str(), leases[0].epoch), ("test", 1));
    // Unfenced shard-owned rows are refused; cluster-wide rows need no fence.
    let unfenced = WriteBatch {
        executions: vec![row("r1", 1)],
        ..Default::default()
    };
    assert!(matches!(
        store.commit(unfenced).await.unwrap(),
        Err(StoreError::Backend(_))
    ));
    let namespace = WriteBatch {
        namespaces: vec![NamespaceRow {
            name: "default".into(),
            data: vec![1],
        }],
        ..Default::default()
    };
    store.commit(namespace).await.unwrap().unwrap();
    // A lease held and unexpired is not taken by another owner; an expired one is.
    let now = 1_000;
    store.renew_shard(fence, now, 500).await.unwrap();
    assert_eq!(
        store
            .acquire_shard(0, "other", now + 499, 500)
            .await
            .unwrap(),
        None
    );
    let taken = store
        .acquire_shard(0, "other", now + 500, 500)
        .await
        .unwrap()
        .expect("an expired lease is taken");
    assert_eq!(taken.epoch, fence.epoch + 1);
    let stale = only(row("r1", 1));
    assert!(matches!(
        store.commit(stale).await.unwrap(),
        Err(StoreError::OwnershipLost(_))
    ));
    assert!(matches!(
        store.renew_shard(fence, now, 500).await,
        Err(StoreError::OwnershipLost(_))
    ));
    let current = WriteBatch {
        executions: vec![row("r1", 1)],
        fence: Some(taken),
        ..Default::default()
    };
    store.commit(current).await.unwrap().unwrap();
    assert_eq!(resume_all(store, ALL_SLOTS).await, vec![row("r1", 1)]);
    // Running runs load by slot range: the run's own slot finds it, the others do not.
    let slot = crate::shard::slot_of("default", "wf");
    assert_eq!(resume_all(store, slot..=slot).await.len(), 1);
    let others = if slot == 0 {
        1..=crate::shard::SLOTS - 1
    } else {
        0..=slot - 1
    };
    assert!(resume_all(store, others).await.is_empty());
}

/// Batch operation jobs: a record part and target pages, read apart.
pub(crate) async fn batch_jobs_keep_a_record_and_pages_apart(store: &dyn Store) {
    let row = |job: &str, part: i64, data: Option<Vec<u8>>| BatchJobRow {
        namespace: "default".into(),
        job_id: job.into(),
        part,
        data,
    };
    let batch = |rows: Vec<BatchJobRow>| WriteBatch {
        batch_jobs: rows,
        fence: TEST_FENCE,
        ..Default::default()
    };
    let first = batch(vec![
        row("j1", BATCH_JOB_RECORD, Some(vec![1])),
        row("j1", 2, Some(vec![12])),
        row("j1", 1, Some(vec![11])),
        row("j2", BATCH_JOB_RECORD, Some(vec![2])),
    ]);
    store.commit(first).await.unwrap().unwrap();
    let progress = batch(vec![row("j1", BATCH_JOB_RECORD, Some(vec![3]))]);
    store.commit(progress).await.unwrap().unwrap();
    let records = store.load_batch_jobs().await.unwrap();
    assert_eq!(
        records,
        vec![
            row("j1", BATCH_JOB_RECORD, Some(vec![3])),
            row("j2", BATCH_JOB_RECORD, Some(vec![2]))
        ]
    );
    let pages = store.load_batch_job_pages("default", "j1").await.unwrap();
    assert_eq!(
        pages,
        vec![row("j1", 1, Some(vec![11])), row("j1", 2, Some(vec![12]))]
    );
    let dropped = batch(vec![row("j2", BATCH_JOB_RECORD, None)]);
    store.commit(dropped).await.unwrap().unwrap();
    assert_eq!(store.load_batch_jobs().await.unwrap().len(), 1);
    assert!(
        store
            .load_batch_job_pages("default", "j2")
            .await
            .unwrap()
            .is_empty()
    );
}

/// Commits, reads back, and refuses a batch with a duplicate event as a whole.
pub(crate) async fn commits_are_readable_and_a_bad_batch_is_rolled_back(store: &dyn Store) {
    let batch = WriteBatch {
        executions: vec![row("r1", 1)],
        events: vec![
            EventRow {
                run_id: "r1".into(),
                event_id: 1,
                data: vec![7],
            },
            EventRow {
                run_id: "r1".into(),
                event_id: 2,
                data: vec![8],
            },
        ],
        namespaces: vec![NamespaceRow {
            name: "default".into(),
            data: vec![1],
        }],
        search_attributes: vec![SearchAttributeRow {
            namespace: "default".into(),
            name: "Color".into(),
            value_type: Some(2),
        }],
        fence: TEST_FENCE,
        ..Default::default()
    };
    store.commit(batch).await.unwrap().unwrap();
    let second = WriteBatch {
        executions: vec![ExecutionRow {
            workflow_id: "wf2".into(),
            ..row("r2", 2)
        }],
        fence: TEST_FENCE,
        ..Default::default()
    };
    store.commit(second).await.unwrap().unwrap();
    assert_eq!(store.load_namespaces().await.unwrap().len(), 1);
    assert_eq!(
        store.load_search_attributes().await.unwrap(),
        vec![("default".to_string(), "Color".to_string(), 2)]
    );
    assert_eq!(resume_all(store, ALL_SLOTS).await, vec![row("r1", 1)]);
    let current = |workflow_id: &'static str| async move {
        let run = store.load_execution("default", workflow_id, None).await;
        run.unwrap().map(|r| r.run_id)
    };
    assert_eq!(current("wf").await.as_deref(), Some("r1"));
    assert_eq!(current("wf2").await.as_deref(), Some("r2"));
    assert_eq!(
        store.load_events("r1", 1).await.unwrap(),
        vec![vec![7], vec![8]]
    );
    assert_eq!(store.load_events("r1", 2).await.unwrap(), vec![vec![8]]);
    let bad = WriteBatch {
        executions: vec![ExecutionRow {
            workflow_id: "other".into(),
            ..row("r3", 1)
        }],
        events: vec![EventRow {
            run_id: "r1".into(),
            event_id: 1,
            data: vec![9],
        }],
        fence: TEST_FENCE,
        ..Default::default()
    };
    assert!(matches!(
        store.commit(bad).await.unwrap(),
        Err(StoreError::Conflict(_))
    ));
    assert!(
        store
            .load_execution("default", "other", Some("r3"))
            .await
            .unwrap()
            .is_none()
    );
    // Deleting a run takes its row, history and visibility record.
    let delete = WriteBatch {
        deleted_runs: vec!["r1".into()],
        search_attributes: vec![SearchAttributeRow {
            namespace: "default".into(),
            name: "Color".into(),
            value_type: None,
        }],
        fence: TEST_FENCE,
        ..Default::default()
    };
    store.commit(delete).await.unwrap().unwrap();
    assert!(store.load_events("r1", 1).await.unwrap().is_empty());
    assert!(running_run_ids(store).await.is_empty());
    assert!(store.load_search_attributes().await.unwrap().is_empty());
    assert!(store.healthy());
}

/// A batch committed without waiting for the disk is read back like any other and mixes with
/// synced ones in a group.
pub(crate) async fn written_batches_are_read_back(store: &dyn Store) {
    let written = |run: &str, workflow: &str, durability| WriteBatch {
        executions: vec![ExecutionRow {
            workflow_id: workflow.into(),
            ..row(run, 1)
        }],
        durability,
        fence: TEST_FENCE,
        ..Default::default()
    };
    let receipts = [
        store.commit(written("w1", "wf-w1", Durability::Written)),
        store.commit(written("w2", "wf-w2", Durability::Written)),
        store.commit(written("s1", "wf-s1", Durability::Synced)),
    ];
    for receipt in receipts {
        receipt.await.unwrap().unwrap();
    }
    assert_eq!(running_run_ids(store).await, ["s1", "w1", "w2"]);
}

/// A visibility record of run `run` of namespace "ns".
fn listed(run: &str, status: i32, start: i64, close: Option<i64>) -> VisibilityRow {
    VisibilityRow {
        namespace: "ns".into(),
        run_id: run.into(),
        workflow_id: format!("wf-{run}"),
        workflow_type: "T".into(),
        task_queue: "q".into(),
        status,
        start_time_ms: start,
        execution_time_ms: start,
        close_time_ms: close,
        history_length: 3,
        search_attributes_json: format!("{{\"Rank\":{}}}", start % 7),
        info: run.as_bytes().to_vec(),
        ..Default::default()
    }
}

async fn put(store: &dyn Store, rows: Vec<VisibilityRow>) {
    let batch = WriteBatch {
        visibility: rows,
        fence: TEST_FENCE,
        ..Default::default()
    };
    store.commit(batch).await.unwrap().unwrap();
}

/// Reads every page of `query` (`between` runs after each page), returning the runs listed.
async fn all_pages(
    store: &dyn Store,
    query: &VisibilityQuery,
    page: usize,
    mut between: impl AsyncFnMut(usize),
) -> Vec<String> {
    let mut seen = Vec::new();
    let mut after = None;
    for n in 0.. {
        let got = store
            .list_visibility("ns", query, page, after.as_ref())
            .await
            .unwrap();
        assert!(got.infos.len() <= page);
        seen.extend(got.infos.into_iter().map(|i| String::from_utf8(i).unwrap()));
        match got.next {
            // The key survives the trip through a page token.
            Some(key) => after = crate::PageKey::decode(&key.encode(), key.values.len()),
            None => break,
        }
        between(n).await;
    }
    seen
}

/// Pages are read by key: runs that start, or that were already listed and close, between two
/// pages make no other run skipped or repeated, in the default order and in a named one.
pub(crate) async fn pages_neither_skip_nor_repeat_while_runs_change(store: &dyn Store) {
    let mut rows = Vec::new();
    for i in 0..25i64 {
        let closed = i % 3 == 0;
        rows.push(listed(
            &format!("r{i:02}"),
            if closed { 2 } else { RUNNING_STATUS },
            1000 + i,
            closed.then_some(5000 + i % 4),
        ));
    }
    put(store, rows.clone()).await;
    let resolver = |name: &str| {
        predicate::system_attribute(name)
            .or_else(|| (name == "Rank").then(|| (Column::Custom("Rank".into()), AttrType::Int)))
    };
    let queries = [
        VisibilityQuery::default(),
        predicate::resolve_query(
            &crate::list_query::parse("ORDER BY Rank ASC, StartTime DESC").unwrap(),
            &resolver,
        )
        .unwrap(),
    ];
    for (q, query) in queries.iter().enumerate() {
        let before = all_pages(store, query, 100, async |_| {}).await;
        assert_eq!(before.len(), 25);
        let mut started = 0;
        let paged = all_pages(store, query, 4, async |n| {
            if n == 0 {
                // The first page's runs close; new runs start.
                let mut changed = Vec::new();
                for run in &before[..4] {
                    let mut row = rows.iter().find(|r| &r.run_id == run).unwrap().clone();
                    row.status = 3;
                    row.close_time_ms = Some(row.close_time_ms.unwrap_or(9000));
                    changed.push(row);
                }
                for i in 0..3 {
                    started += 1;
                    changed.push(listed(&format!("n{q}{i}"), RUNNING_STATUS, 2000 + i, None));
                }
                put(store, changed).await;
            }
        })
        .await;
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for run in &paged {
            *counts.entry(run.as_str()).or_default() += 1;
        }
        for run in &before[4..] {
            assert_eq!(counts.get(run.as_str()), Some(&1), "{run} in {paged:?}");
        }
        assert!(started > 0);
        // Undo for the next query.
        put(store, rows.clone()).await;
        let stale: Vec<String> = (0..3).map(|i| format!("n{q}{i}")).collect();
        let batch = WriteBatch {
            deleted_runs: stale,
            fence: TEST_FENCE,
            ..Default::default()
        };
        store.commit(batch).await.unwrap().unwrap();
    }
    // A total order: the default puts running runs first, then closed ones by close time.
    let order = all_pages(store, &VisibilityQuery::default(), 7, async |_| {}).await;
    let first_closed = order.iter().position(|r| {
        rows.iter()
            .find(|row| &row.run_id == r)
            .is_some_and(|row| row.close_time_ms.is_some())
    });
    assert_eq!(first_closed, Some(16), "{order:?}");
    let counts = store.count_visibility("ns", None, true).await.unwrap();
    assert_eq!(counts, vec![(1, 16), (2, 9)]);
    let total = store.count_visibility("ns", None, false).await.unwrap();
    assert_eq!(total, vec![(0, 25)]);
}

pub(crate) async fn the_query_language_means_the_same_on_every_backend(store: &dyn Store) {
    crate::predicate_tests::store_and_memory_find_the_same_rows(store).await;
}

/// A PostgreSQL database of one test's own, dropped when the test is done.
struct FreshPostgres {
    admin: tokio_postgres::Client,
    name: String,
    url: String,
}

impl FreshPostgres {
    async fn new() -> FreshPostgres {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let base = std::env::var("SUNDIAL_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let (admin, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!("PostgreSQL for the store contract tests is not reachable at {base}: {e}")
            });
        tokio::spawn(connection);
        let name = format!(
            "sundial_contract_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        // One statement per call: DROP/CREATE DATABASE refuse to run in a transaction.
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin
                .batch_execute(&sql)
                .await
                .expect("creating a test database");
        }
        let url = match base.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("SUNDIAL_TEST_POSTGRES must be a postgres:// URL"),
        };
        FreshPostgres { admin, name, url }
    }

    async fn open(&self) -> PostgresStore {
        PostgresStore::open(&PostgresOptions::new(self.url.clone()), None)
            .await
            .expect("opening the test database")
    }

    async fn drop_database(self) {
        let _ = self
            .admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await;
    }
}

/// One test per backend for each contract test named.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(
                #[tokio::test]
                async fn $name() {
                    let store = super::holding_the_shard(super::SqliteStore::open(None).unwrap()).await;
                    super::$name(&store).await;
                }
            )*
        }
        mod postgres_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = super::FreshPostgres::new().await;
                    let store = super::holding_the_shard(db.open().await).await;
                    super::$name(&store).await;
                    drop(store);
                    db.drop_database().await;
                }
            )*
        }
    };
}

/// The wake index: runs with work to hand out are loaded at start-up; the others come out of
/// the index in (time, run id) order, page by page, up to a time, from their slots only;
/// closed runs and runs that wait for a request are not in it; and a write that changes
/// only the state keeps the entry.
async fn the_wake_index_finds_runs_by_time_and_resumes_the_busy(store: &dyn Store) {
    let at = |run: &str, workflow_id: &str, wake_at: Option<i64>| ExecutionRow {
        workflow_id: workflow_id.into(),
        wake_at,
        ..row(run, 1)
    };
    let runs = vec![
        at("busy", "w-busy", Some(crate::RESUME_AT_START)),
        at("busy-3", "w-busy-3", Some(crate::RESUME_AT_START)),
        at("busy-2", "w-busy-2", Some(crate::RESUME_AT_START)),
        at("late", "w-late", Some(3_000)),
        at("b-early", "w-b", Some(1_000)),
        at("a-early", "w-a", Some(1_000)),
        at("middle", "w-middle", Some(2_000)),
        at("waiting", "w-waiting", None),
        at("closing", "w-closing", Some(1_500)),
    ];
    let batch = WriteBatch {
        executions: runs.clone(),
        fence: TEST_FENCE,
        ..Default::default()
    };
    store.commit(batch).await.unwrap().unwrap();
    // Closing a run takes it out of the index; a state-only write keeps the entry.
    let closing = runs.iter().find(|r| r.run_id == "closing").unwrap();
    let closed = ExecutionRow {
        wake_at: None,
        ..next(closing, 2, 9)
    };
    store.commit(only(closed)).await.unwrap().unwrap();
    let middle = runs.iter().find(|r| r.run_id == "middle").unwrap();
    store
        .commit(only(next(middle, 1, 8)))
        .await
        .unwrap()
        .unwrap();
    let resumed = resume_all(store, ALL_SLOTS).await;
    assert_eq!(
        resumed
            .iter()
            .map(|r| r.run_id.as_str())
            .collect::<Vec<_>>(),
        ["busy", "busy-2", "busy-3"]
    );
    assert_eq!(resumed[0].wake_at, Some(crate::RESUME_AT_START));
    let key = |at_ms, run: &str| crate::WakeKey {
        at_ms,
        run_id: run.into(),
    };
    let all = store
        .load_wakeups(ALL_SLOTS, None, i64::MAX, 100)
        .await
        .unwrap();
    assert_eq!(
        all,
        [
            key(1_000, "a-early"),
            key(1_000, "b-early"),
            key(2_000, "middle"),
            key(3_000, "late")
        ]
    );
    // Pages: after a key, up to a time, at most a limit.
    let first = store.load_wakeups(ALL_SLOTS, None, 2_000, 1).await.unwrap();
    assert_eq!(first, [key(1_000, "a-early")]);
    let rest = store
        .load_wakeups(ALL_SLOTS, first.last(), 2_000, 10)
        .await
        .unwrap();
    assert_eq!(rest, [key(1_000, "b-early"), key(2_000, "middle")]);
    let after_all = store
        .load_wakeups(ALL_SLOTS, rest.last(), 2_999, 10)
        .await
        .unwrap();
    assert!(after_all.is_empty(), "{after_all:?}");
    // Only the slots asked for.
    let slot = crate::shard::slot_of("default", "w-late");
    let own = store
        .load_wakeups(slot..=slot, None, i64::MAX, 10)
        .await
        .unwrap();
    assert_eq!(own, [key(3_000, "late")]);
    // The loaded row carries its entry.
    let late = store.load_run("late").await.unwrap().unwrap();
    assert_eq!(late.wake_at, Some(3_000));
}

contract!(
    nexus_endpoints_are_written_overwritten_and_deleted,
    batch_jobs_keep_a_record_and_pages_apart,
    the_wake_index_finds_runs_by_time_and_resumes_the_busy,
    commits_are_readable_and_a_bad_batch_is_rolled_back,
    written_batches_are_read_back,
    a_run_closing_leaves_the_running_set_and_keeps_its_latest_state,
    schedules_are_written_replaced_and_deleted,
    a_write_expecting_another_version_is_refused_and_fails_alone,
    a_workflow_id_has_at_most_one_running_run,
    a_write_of_a_missing_run_is_not_found,
    writes_under_a_lost_fence_are_refused,
    pages_neither_skip_nor_repeat_while_runs_change,
    the_query_language_means_the_same_on_every_backend,
);

/// PostgreSQL only: a second server on the same database is refused, and a database of a
/// newer schema too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refuses_a_second_writer_and_a_newer_schema() {
    let db = FreshPostgres::new().await;
    let first = db.open().await;
    assert_open_fails_with(
        &PostgresOptions::new(db.url.clone()),
        "in use by another Sundial server",
    )
    .await;
    drop(first);
    // The lock goes with the writer's connection.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(db.open().await);
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute("UPDATE sundial_schema SET version = version + 1")
        .await
        .unwrap();
    assert_open_fails_with(
        &PostgresOptions::new(db.url.clone()),
        "newer than this Sundial supports",
    )
    .await;
    drop(client);
    db.drop_database().await;
}

/// PostgreSQL only: an unreachable server fails the start naming where it was looked for.
#[tokio::test]
async fn postgres_unreachable_fails_naming_the_server() {
    let mut options = PostgresOptions::new("postgres://postgres@127.0.0.1:1/nothing");
    options.connect_timeout = std::time::Duration::from_secs(2);
    assert_open_fails_with(&options, "127.0.0.1:1/nothing").await;
}

/// Asserts that opening a PostgreSQL store with `options` fails with an error that mentions
/// `expected`.
async fn assert_open_fails_with(options: &PostgresOptions, expected: &str) {
    let error = PostgresStore::open(options, None)
        .await
        .err()
        .map(|e| e.to_string());
    assert!(
        error.as_deref().is_some_and(|m| m.contains(expected)),
        "{error:?}"
    );
}

/// PostgreSQL only: a database of schema 1 (before current-execution rows, slots and shard
/// leases) is brought to the current schema: the latest run of each workflow id becomes its
/// current one, running runs get their slots, and the shard can be taken and written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_upgrades_a_schema_1_database() {
    let db = FreshPostgres::new().await;
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(crate::postgres::MIGRATIONS[0])
        .await
        .unwrap();
    client
        .batch_execute(
            "CREATE TABLE sundial_schema (version BIGINT NOT NULL);
             INSERT INTO sundial_schema (version) VALUES (1);
             INSERT INTO executions (run_id, namespace, workflow_id, status, next_event_id, version, state)
                VALUES ('old', 'default', 'wf', 2, 2, 1, '\\x02'),
                       ('new', 'default', 'wf', 1, 2, 1, '\\x01');",
        )
        .await
        .unwrap();
    drop(client);
    let store = holding_the_shard(db.open().await).await;
    let current = store.load_execution("default", "wf", None).await.unwrap();
    assert_eq!(current.map(|r| r.run_id).as_deref(), Some("new"));
    let slot = crate::shard::slot_of("default", "wf");
    let running = resume_all(&store, slot..=slot).await;
    assert_eq!(running.len(), 1);
    // The upgraded run is written under the fence like any other.
    let closing = ExecutionRow {
        run_id: "new".into(),
        status: 2,
        next_event_id: 3,
        version: 2,
        previous: Some(crate::RowVersion {
            version: 1,
            next_event_id: 2,
            status: 1,
            wake_at: Some(crate::RESUME_AT_START),
        }),
        ..row("new", 2)
    };
    store.commit(only(closing)).await.unwrap().unwrap();
    store.commit(only(row("third", 1))).await.unwrap().unwrap();
    let current = store.load_execution("default", "wf", None).await.unwrap();
    assert_eq!(current.map(|r| r.run_id).as_deref(), Some("third"));
    // The Nexus endpoint registry (schema 4) is there too.
    store
        .commit(endpoints(&[("upgraded", Some(b"e"))]))
        .await
        .unwrap()
        .unwrap();
    let rows = store.load_nexus_endpoints().await.unwrap();
    assert_eq!(rows.len(), 1);
    drop(store);
    db.drop_database().await;
}

/// PostgreSQL only: a database of schema 3 (the release before the Nexus endpoint registry)
/// gains the registry on open, keeps its runs, and records the current schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_upgrades_a_schema_3_database_with_the_nexus_registry() {
    let db = FreshPostgres::new().await;
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    for migration in &crate::postgres::MIGRATIONS[..3] {
        client.batch_execute(migration).await.unwrap();
    }
    client
        .batch_execute(
            "CREATE TABLE sundial_schema (version BIGINT NOT NULL);
             INSERT INTO sundial_schema (version) VALUES (3);
             INSERT INTO executions (run_id, namespace, workflow_id, status, next_event_id, version, state, slot, wake_at)
                VALUES ('old', 'default', 'wf', 2, 2, 1, '\\x02', 0, NULL);",
        )
        .await
        .unwrap();
    let store = holding_the_shard(db.open().await).await;
    assert!(store.load_run("old").await.unwrap().is_some());
    store
        .commit(endpoints(&[("after-upgrade", Some(b"e"))]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.load_nexus_endpoints().await.unwrap(),
        [NexusEndpointRow {
            name: "after-upgrade".into(),
            data: Some(b"e".to_vec()),
        }]
    );
    let version: i64 = client
        .query_one("SELECT version FROM sundial_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 4);
    drop(client);
    drop(store);
    db.drop_database().await;
}
