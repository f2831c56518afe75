//! Translates a parsed list query into a SQL WHERE/ORDER BY over the `visibility` table, with
//! every value bound as a parameter. Attribute names are resolved (and type-checked) by the
//! caller's resolver: system attributes map to columns, custom ones to the JSON document.

use crate::list_query::{Expr, Op, Query, Value};
use crate::{SqlValue, VisibilityFilter};

/// Search attribute value types (Temporal's `IndexedValueType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    Text,
    Keyword,
    Int,
    Double,
    Bool,
    Datetime,
    KeywordList,
    /// ExecutionStatus: names or numbers of `WorkflowExecutionStatus`.
    Status,
    /// ExecutionDuration: nanoseconds, or a duration such as `'1h30m'` / `'250ms'`.
    Duration,
}

impl AttrType {
    /// From `IndexedValueType` as i32.
    pub fn from_indexed(value: i32) -> Option<AttrType> {
        Some(match value {
            1 => AttrType::Text,
            2 => AttrType::Keyword,
            3 => AttrType::Int,
            4 => AttrType::Double,
            5 => AttrType::Bool,
            6 => AttrType::Datetime,
            7 => AttrType::KeywordList,
            _ => return None,
        })
    }
}

/// Where an attribute lives.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// A column of the visibility table.
    System(&'static str),
    /// A key of the custom search attribute JSON document.
    Custom(String),
}

/// The system search attributes and their columns.
pub fn system_attribute(name: &str) -> Option<(Column, AttrType)> {
    let found = match name {
        "WorkflowId" => ("workflow_id", AttrType::Keyword),
        "RunId" => ("run_id", AttrType::Keyword),
        "WorkflowType" => ("workflow_type", AttrType::Keyword),
        "TaskQueue" => ("task_queue", AttrType::Keyword),
        "ExecutionStatus" => ("status", AttrType::Status),
        "StartTime" => ("start_time", AttrType::Datetime),
        "ExecutionTime" => ("execution_time", AttrType::Datetime),
        "CloseTime" => ("close_time", AttrType::Datetime),
        "HistoryLength" => ("history_length", AttrType::Int),
        "ExecutionDuration" => ("execution_duration", AttrType::Duration),
        "ParentWorkflowId" => ("parent_workflow_id", AttrType::Keyword),
        "RootWorkflowId" => ("root_workflow_id", AttrType::Keyword),
        "ParentRunId" => ("parent_run_id", AttrType::Keyword),
        "RootRunId" => ("root_run_id", AttrType::Keyword),
        _ => return None,
    };
    Some((Column::System(found.0), found.1))
}

const STATUS_NAMES: [&str; 8] = [
    "Unspecified",
    "Running",
    "Completed",
    "Failed",
    "Canceled",
    "Terminated",
    "ContinuedAsNew",
    "TimedOut",
];

/// Nanoseconds of a duration written as number-and-unit pairs (`1h30m`, `250ms`, `2.5s`).
pub fn parse_duration_ns(s: &str) -> Option<i64> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "h" => 3.6e12,
            "m" => 6e10,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            _ => return None,
        };
        total += number * factor;
        rest = &rest[unit_len..];
    }
    Some(total as i64)
}

/// Unix ms of an RFC 3339 time.
pub fn parse_time(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

struct Builder<'a> {
    resolve: &'a dyn Fn(&str) -> Option<(Column, AttrType)>,
    params: Vec<SqlValue>,
}

impl Builder<'_> {
    fn field(&self, name: &str) -> Result<(String, AttrType), String> {
        let (column, ty) =
            (self.resolve)(name).ok_or_else(|| format!("invalid search attribute: {name}"))?;
        let sql = match column {
            Column::System(c) => c.to_string(),
            Column::Custom(key) => format!(
                "json_extract(search_attributes, '$.\"{}\"')",
                key.replace(['"', '\''], "")
            ),
        };
        Ok((sql, ty))
    }

    fn bind(&mut self, name: &str, ty: AttrType, value: &Value) -> Result<String, String> {
        let mismatch =
            || format!("invalid value {value:?} for search attribute {name} of type {ty:?}");
        let bound = match (ty, value) {
            (AttrType::Keyword | AttrType::Text | AttrType::KeywordList, Value::Str(s)) => {
                SqlValue::Text(s.clone())
            }
            (AttrType::Int, Value::Int(i)) => SqlValue::Int(*i),
            (AttrType::Int, Value::Str(s)) => SqlValue::Int(s.parse().map_err(|_| mismatch())?),
            (AttrType::Double, Value::Int(i)) => SqlValue::Float(*i as f64),
            (AttrType::Double, Value::Float(f)) => SqlValue::Float(*f),
            (AttrType::Double, Value::Str(s)) => {
                SqlValue::Float(s.parse().map_err(|_| mismatch())?)
            }
            (AttrType::Bool, Value::Bool(b)) => SqlValue::Int(i64::from(*b)),
            (AttrType::Bool, Value::Str(s)) if s.eq_ignore_ascii_case("true") => SqlValue::Int(1),
            (AttrType::Bool, Value::Str(s)) if s.eq_ignore_ascii_case("false") => SqlValue::Int(0),
            (AttrType::Datetime, Value::Str(s)) => {
                SqlValue::Int(parse_time(s).ok_or_else(mismatch)?)
            }
            (AttrType::Datetime, Value::Int(ns)) => SqlValue::Int(ns / 1_000_000),
            (AttrType::Status, Value::Str(s)) => {
                let index = STATUS_NAMES
                    .iter()
                    .position(|n| n.eq_ignore_ascii_case(s))
                    .ok_or_else(mismatch)?;
                SqlValue::Int(index as i64)
            }
            (AttrType::Status, Value::Int(i)) => SqlValue::Int(*i),
            (AttrType::Duration, Value::Int(ns)) => SqlValue::Int(*ns),
            (AttrType::Duration, Value::Str(s)) => {
                SqlValue::Int(parse_duration_ns(s).ok_or_else(mismatch)?)
            }
            _ => return Err(mismatch()),
        };
        self.params.push(bound);
        Ok("?".to_string())
    }

    /// `terms` joined by `op`, parenthesized as a balanced tree: SQLite limits the depth of an
    /// expression tree (1000), and `a AND b AND c ...` written flat is as deep as it is long.
    /// Parameters stay in the order of the terms.
    fn chain(&mut self, terms: &[Expr], op: &str, empty: &str) -> Result<String, String> {
        match terms {
            [] => Ok(empty.to_string()),
            [one] => self.expr(one),
            _ => {
                let (left, right) = terms.split_at(terms.len() / 2);
                let left = self.chain(left, op, empty)?;
                let right = self.chain(right, op, empty)?;
                Ok(format!("({left} {op} {right})"))
            }
        }
    }

    fn expr(&mut self, e: &Expr) -> Result<String, String> {
        Ok(match e {
            Expr::And(terms) => self.chain(terms, "AND", "1 = 1")?,
            Expr::Or(terms) => self.chain(terms, "OR", "1 = 0")?,
            Expr::Not(a) => format!("(NOT {})", self.expr(a)?),
            Expr::Cmp { field, op, value } => {
                let (col, ty) = self.field(field)?;
                let p = self.bind(field, ty, value)?;
                let sql_op = match op {
                    Op::Eq => "=",
                    Op::Ne => "!=",
                    Op::Gt => ">",
                    Op::Ge => ">=",
                    Op::Lt => "<",
                    Op::Le => "<=",
                };
                match (ty, op) {
                    (AttrType::Text, Op::Gt | Op::Ge | Op::Lt | Op::Le) => {
                        return Err(format!(
                            "operation is not supported: operator '{sql_op}' not supported for Text type search attribute '{field}'"
                        ));
                    }
                    (AttrType::KeywordList, Op::Eq) => list_contains(&col, &p, false),
                    (AttrType::KeywordList, Op::Ne) => list_contains(&col, &p, true),
                    (AttrType::KeywordList, _) => {
                        return Err(format!("operator not supported for KeywordList {field}"));
                    }
                    (AttrType::Text, Op::Eq) => format!("instr(lower({col}), lower({p})) > 0"),
                    (AttrType::Text, Op::Ne) => {
                        format!("coalesce(instr(lower({col}), lower({p})), 0) = 0")
                    }
                    _ => format!("{col} {sql_op} {p}"),
                }
            }
            Expr::In {
                field,
                values,
                negated,
            } => {
                let (col, ty) = self.field(field)?;
                if ty == AttrType::Text {
                    return Err(format!(
                        "operation is not supported: operator 'in' not supported for Text type search attribute '{field}'"
                    ));
                }
                let mut placeholders = Vec::new();
                for v in values {
                    placeholders.push(self.bind(field, ty, v)?);
                }
                let list = placeholders.join(", ");
                match ty {
                    AttrType::KeywordList => {
                        let inner = format!(
                            "EXISTS (SELECT 1 FROM json_each({col}) WHERE json_each.value IN ({list}))"
                        );
                        if *negated {
                            format!("NOT {inner}")
                        } else {
                            inner
                        }
                    }
                    _ => format!("{col} {}IN ({list})", if *negated { "NOT " } else { "" }),
                }
            }
            Expr::Between {
                field,
                low,
                high,
                negated,
            } => {
                let (col, ty) = self.field(field)?;
                let lo = self.bind(field, ty, low)?;
                let hi = self.bind(field, ty, high)?;
                format!(
                    "{col} {}BETWEEN {lo} AND {hi}",
                    if *negated { "NOT " } else { "" }
                )
            }
            Expr::StartsWith {
                field,
                prefix,
                negated,
            } => {
                let (col, ty) = self.field(field)?;
                if ty != AttrType::Keyword {
                    return Err(format!(
                        "operation is not supported: operator 'starts_with' not supported for {ty:?} type search attribute '{field}'"
                    ));
                }
                self.params.push(SqlValue::Text(prefix.clone()));
                let inner = format!(
                    "substr({col}, 1, length(?{})) = ?{}",
                    self.params.len(),
                    self.params.len()
                );
                if *negated {
                    format!("NOT ({inner})")
                } else {
                    inner
                }
            }
            Expr::IsNull { field, negated } => {
                let (col, _) = self.field(field)?;
                format!("{col} IS {}NULL", if *negated { "NOT " } else { "" })
            }
        })
    }
}

fn list_contains(col: &str, p: &str, negated: bool) -> String {
    let inner = format!("EXISTS (SELECT 1 FROM json_each({col}) WHERE json_each.value = {p})");
    if negated {
        format!("NOT {inner}")
    } else {
        inner
    }
}

/// Builds the SQL for `query`. Numbered parameters follow the namespace parameter (`?1`).
pub fn build(
    query: &Query,
    resolve: &dyn Fn(&str) -> Option<(Column, AttrType)>,
) -> Result<VisibilityFilter, String> {
    let mut b = Builder {
        resolve,
        params: Vec::new(),
    };
    let where_sql = match &query.filter {
        Some(e) => b.expr(e)?,
        None => "1 = 1".to_string(),
    };
    let mut order = Vec::new();
    for (field, desc) in &query.order_by {
        let (col, _) = b.field(field)?;
        order.push(format!("{col} {}", if *desc { "DESC" } else { "ASC" }));
    }
    if order.is_empty() {
        // The reference's default: running first, then by close time, newest first.
        order.push("(close_time IS NOT NULL) ASC, close_time DESC, start_time DESC".into());
    }
    order.push("run_id DESC".into());
    // Positional `?` placeholders are numbered after the namespace (`?1`); rewrite the plain
    // ones so that repeated references (STARTS_WITH) stay correct.
    let mut numbered = String::with_capacity(where_sql.len());
    let mut next = 1;
    let mut chars = where_sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' {
            if chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                let n: usize = digits.parse().unwrap_or(0);
                numbered.push_str(&format!("?{}", n + 1));
                next = next.max(n + 1);
            } else {
                next += 1;
                numbered.push_str(&format!("?{next}"));
            }
        } else {
            numbered.push(c);
        }
    }
    Ok(VisibilityFilter {
        where_sql: numbered,
        params: b.params,
        order_sql: order.join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::list_query::parse;

    fn resolve(name: &str) -> Option<(Column, AttrType)> {
        system_attribute(name).or_else(|| match name {
            "CustomIntField" => Some((Column::Custom(name.into()), AttrType::Int)),
            "Tags" => Some((Column::Custom(name.into()), AttrType::KeywordList)),
            _ => None,
        })
    }

    #[test]
    fn builds_bound_sql() {
        let q = parse(
            "ExecutionStatus = 'Running' AND WorkflowType IN ('a', 'b') ORDER BY StartTime ASC",
        )
        .unwrap();
        let f = build(&q, &resolve).unwrap();
        assert_eq!(f.where_sql, "(status = ?2 AND workflow_type IN (?3, ?4))");
        assert_eq!(
            f.params,
            vec![
                SqlValue::Int(1),
                SqlValue::Text("a".into()),
                SqlValue::Text("b".into())
            ]
        );
        assert_eq!(f.order_sql, "start_time ASC, run_id DESC");
        let f = build(
            &parse("WorkflowId STARTS_WITH 'x-' AND CustomIntField > 3").unwrap(),
            &resolve,
        )
        .unwrap();
        assert_eq!(
            f.where_sql,
            "(substr(workflow_id, 1, length(?2)) = ?2 AND json_extract(search_attributes, '$.\"CustomIntField\"') > ?3)"
        );
    }

    #[test]
    fn long_chains_become_balanced_sql() {
        let chain = vec!["HistoryLength = 1"; 1024].join(" OR ");
        let f = build(&parse(&chain).unwrap(), &resolve).unwrap();
        assert_eq!(f.params.len(), 1024);
        // Balanced: the parentheses nest log2(1024) = 10 deep.
        let mut depth = 0i32;
        let mut deepest = 0;
        for c in f.where_sql.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            deepest = deepest.max(depth);
        }
        assert_eq!(deepest, 10);
        assert!(f.where_sql.contains("?1025"));
        let three = build(
            &parse("HistoryLength = 1 AND HistoryLength = 2 AND HistoryLength = 3").unwrap(),
            &resolve,
        )
        .unwrap();
        assert_eq!(
            three.where_sql,
            "(history_length = ?2 AND (history_length = ?3 AND history_length = ?4))"
        );
    }

    #[test]
    fn rejects_unknown_names_and_type_mismatches() {
        assert!(
            build(&parse("Nope = 1").unwrap(), &resolve)
                .unwrap_err()
                .contains("Nope")
        );
        assert!(build(&parse("CustomIntField = 'abc'").unwrap(), &resolve).is_err());
        assert!(build(&parse("StartTime > 'yesterday'").unwrap(), &resolve).is_err());
        assert!(build(&parse("Tags = 'red'").unwrap(), &resolve).is_ok());
    }
}
