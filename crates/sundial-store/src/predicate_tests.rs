//! One table of (query, rows that match), run against every evaluator of the list query
//! language: the SQL each backend runs (through its `Store`, `contract_tests.rs`) and
//! [`Predicate::matches`](crate::predicate::Predicate::matches) in memory. All must find
//! exactly the expected rows.

use crate::contract_tests::TEST_FENCE;
use crate::list_query::parse;
use crate::predicate::{self, Attr, AttrType, Column, RowValue, system_attribute};
use crate::{Store, VisibilityRow, WriteBatch};
use std::collections::BTreeSet;

/// One visibility row: system columns plus custom attributes (stored values).
struct Row {
    run_id: &'static str,
    workflow_id: &'static str,
    workflow_type: &'static str,
    status: i64,
    start_time: i64,
    close_time: Option<i64>,
    history_length: i64,
    execution_duration: Option<i64>,
    custom: Vec<(&'static str, RowValue)>,
}

fn rows() -> Vec<Row> {
    use RowValue::{Float, Int, List, Text};
    let list = |items: &[&str]| List(items.iter().map(|s| s.to_string()).collect());
    vec![
        Row {
            run_id: "r1",
            workflow_id: "order-1",
            workflow_type: "Order",
            status: 1,
            start_time: 1000,
            close_time: None,
            history_length: 5,
            execution_duration: None,
            custom: vec![
                ("Priority", Int(3)),
                ("Tags", list(&["red", "blue"])),
                ("Note", Text("Hello World".into())),
                ("Score", Float(1.5)),
                ("Flag", Int(1)),
                ("Due", Int(5000)),
            ],
        },
        Row {
            run_id: "r2",
            workflow_id: "order-2",
            workflow_type: "Order",
            status: 2,
            start_time: 2000,
            close_time: Some(3000),
            history_length: 12,
            execution_duration: Some(1_000_000_000),
            custom: vec![
                ("Priority", Int(7)),
                ("Tags", list(&["green"])),
                ("Flag", Int(0)),
            ],
        },
        Row {
            run_id: "r3",
            workflow_id: "refund-1",
            workflow_type: "Refund",
            status: 3,
            start_time: 3000,
            close_time: Some(4000),
            history_length: 1,
            execution_duration: Some(5_000_000_000),
            custom: vec![],
        },
        Row {
            run_id: "r4",
            workflow_id: "Order-3",
            workflow_type: "order",
            status: 5,
            start_time: 4000,
            close_time: None,
            history_length: 2,
            execution_duration: None,
            custom: vec![("Note", Text("hello there".into())), ("Priority", Int(3))],
        },
    ]
}

fn resolve(name: &str) -> Option<(Column, AttrType)> {
    system_attribute(name).or_else(|| {
        let ty = match name {
            "Priority" => AttrType::Int,
            "Tags" => AttrType::KeywordList,
            "Note" => AttrType::Text,
            "Score" => AttrType::Double,
            "Flag" => AttrType::Bool,
            "Due" => AttrType::Datetime,
            "Owner" => AttrType::Keyword,
            _ => return None,
        };
        Some((Column::Custom(name.to_string()), ty))
    })
}

/// (query, run ids that match).
const CASES: &[(&str, &[&str])] = &[
    ("WorkflowType = 'Order'", &["r1", "r2"]),
    ("ExecutionStatus = 'Running'", &["r1"]),
    ("ExecutionStatus != 'Running'", &["r2", "r3", "r4"]),
    ("CloseTime IS NULL", &["r1", "r4"]),
    ("CloseTime IS NOT NULL", &["r2", "r3"]),
    ("CloseTime > '1970-01-01T00:00:03Z'", &["r3"]),
    // Unknown (an unset attribute) stays unknown under NOT.
    ("NOT (CloseTime > '1970-01-01T00:00:03Z')", &["r2"]),
    ("Priority = 3", &["r1", "r4"]),
    ("Priority != 3", &["r2"]),
    ("Priority IN (3, 7)", &["r1", "r2", "r4"]),
    ("Priority NOT IN (3)", &["r2"]),
    ("Priority BETWEEN 2 AND 5", &["r1", "r4"]),
    ("Priority NOT BETWEEN 2 AND 5", &["r2"]),
    ("Priority > '2'", &["r1", "r2", "r4"]),
    // KeywordList: membership; a run without the attribute has no elements.
    ("Tags = 'red'", &["r1"]),
    ("Tags != 'red'", &["r2", "r3", "r4"]),
    ("Tags IN ('green', 'red')", &["r1", "r2"]),
    ("Tags NOT IN ('green')", &["r1", "r3", "r4"]),
    // Text: case-insensitive substring; unset text contains nothing.
    ("Note = 'hello'", &["r1", "r4"]),
    ("Note != 'world'", &["r2", "r3", "r4"]),
    ("WorkflowId STARTS_WITH 'order'", &["r1", "r2"]),
    ("WorkflowId NOT STARTS_WITH 'order'", &["r3", "r4"]),
    ("Owner IS NULL", &["r1", "r2", "r3", "r4"]),
    ("Owner IS NOT NULL", &[]),
    ("Owner = 'x' OR Priority = 7", &["r2"]),
    ("NOT (Owner = 'x') OR Priority = 7", &["r2"]),
    ("Owner != 'x' AND Priority = 7", &[]),
    ("Score > 1", &["r1"]),
    ("Score = 1.5", &["r1"]),
    ("Flag = true", &["r1"]),
    ("Flag = 'false'", &["r2"]),
    ("Due < '1970-01-01T00:00:06Z'", &["r1"]),
    ("ExecutionDuration > '2s'", &["r3"]),
    ("ExecutionDuration >= 1000000000", &["r2", "r3"]),
    (
        "HistoryLength >= 5 AND (WorkflowType = 'Order' OR WorkflowType = 'Refund')",
        &["r1", "r2"],
    ),
    (
        "StartTime BETWEEN '1970-01-01T00:00:02Z' AND '1970-01-01T00:00:03Z'",
        &["r2", "r3"],
    ),
    (
        "RunId = 'r3' OR (NOT (HistoryLength < 5) AND NOT (Priority = 7))",
        &["r1", "r3"],
    ),
    ("WorkflowType = 'Order' AND WorkflowType = 'Refund'", &[]),
];

fn json(value: &RowValue) -> String {
    match value {
        RowValue::Null => "null".into(),
        RowValue::Int(i) => i.to_string(),
        RowValue::Float(f) => f.to_string(),
        RowValue::Text(s) => format!("\"{s}\""),
        RowValue::List(items) => format!(
            "[{}]",
            items
                .iter()
                .map(|i| format!("\"{i}\""))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// The rows as visibility records of namespace "ns", committed to `store`.
async fn commit_rows(store: &dyn Store, rows: &[Row]) {
    let batch = WriteBatch {
        visibility: rows
            .iter()
            .map(|r| VisibilityRow {
                namespace: "ns".into(),
                run_id: r.run_id.into(),
                workflow_id: r.workflow_id.into(),
                workflow_type: r.workflow_type.into(),
                task_queue: "q".into(),
                status: r.status as i32,
                start_time_ms: r.start_time,
                execution_time_ms: r.start_time,
                close_time_ms: r.close_time,
                history_length: r.history_length,
                execution_duration_ns: r.execution_duration,
                search_attributes_json: format!(
                    "{{{}}}",
                    r.custom
                        .iter()
                        .map(|(k, v)| format!("\"{k}\":{}", json(v)))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                info: r.run_id.as_bytes().to_vec(),
                ..Default::default()
            })
            .collect(),
        fence: TEST_FENCE,
        ..Default::default()
    };
    store
        .commit(batch)
        .await
        .expect("writer")
        .expect("committed");
}

/// The run ids `store` lists for `query` (the info of each test row is its run id).
async fn by_store(store: &dyn Store, query: &str) -> BTreeSet<String> {
    let resolved =
        predicate::resolve_query(&parse(query).expect("parses"), &resolve).expect("resolves");
    let page = store
        .list_visibility("ns", &resolved, 100, None)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    page.infos
        .into_iter()
        .map(|info| String::from_utf8(info).expect("utf-8"))
        .collect()
}

fn value(row: &Row, attr: &Attr) -> RowValue {
    let opt = |v: Option<i64>| v.map_or(RowValue::Null, RowValue::Int);
    match &attr.column {
        Column::System("run_id") => RowValue::Text(row.run_id.into()),
        Column::System("workflow_id") => RowValue::Text(row.workflow_id.into()),
        Column::System("workflow_type") => RowValue::Text(row.workflow_type.into()),
        Column::System("status") => RowValue::Int(row.status),
        Column::System("start_time") => RowValue::Int(row.start_time),
        Column::System("close_time") => opt(row.close_time),
        Column::System("history_length") => RowValue::Int(row.history_length),
        Column::System("execution_duration") => opt(row.execution_duration),
        Column::System(other) => panic!("no column {other} in the test rows"),
        Column::Custom(name) => row
            .custom
            .iter()
            .find(|(k, _)| k == name)
            .map_or(RowValue::Null, |(_, v)| v.clone()),
    }
}

fn in_memory(rows: &[Row], query: &str) -> BTreeSet<String> {
    let expr = parse(query).expect("parses").filter.expect("a filter");
    let predicate = predicate::resolve(&expr, &resolve).expect("resolves");
    rows.iter()
        .filter(|r| predicate.matches(&|a| value(r, a)))
        .map(|r| r.run_id.to_string())
        .collect()
}

/// Every case finds exactly its rows through `store` (the backend's own SQL) and in memory.
pub(crate) async fn store_and_memory_find_the_same_rows(store: &dyn Store) {
    let rows = rows();
    commit_rows(store, &rows).await;
    for &(query, want) in CASES {
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(by_store(store, query).await, want, "store: {query}");
        assert_eq!(in_memory(&rows, query), want, "memory: {query}");
    }
}

#[test]
fn both_refuse_the_same_queries_before_reading_rows() {
    for (query, message) in [
        ("Nope = 1", "invalid search attribute: Nope"),
        (
            "Priority = 'high'",
            "invalid value Str(\"high\") for search attribute Priority of type Int",
        ),
        (
            "Note > 'a'",
            "operation is not supported: operator '>' not supported for Text type search attribute 'Note'",
        ),
        ("Tags < 'a'", "operator not supported for KeywordList Tags"),
        (
            "Priority STARTS_WITH '1'",
            "operation is not supported: operator 'starts_with' not supported for Int type search attribute 'Priority'",
        ),
    ] {
        let parsed = parse(query).expect("parses");
        let expr = parsed.filter.clone().expect("a filter");
        assert_eq!(
            predicate::resolve(&expr, &resolve).err().as_deref(),
            Some(message)
        );
        assert_eq!(
            predicate::resolve_query(&parsed, &resolve).err().as_deref(),
            Some(message)
        );
    }
}
