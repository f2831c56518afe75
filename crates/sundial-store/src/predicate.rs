//! A list query's filter with its attribute names resolved and its literals converted to the
//! values the attributes are stored as: the one meaning of the query language. Each SQL
//! backend turns a [`Predicate`] into its own dialect's SQL (`query_sql.rs`);
//! [`Predicate::matches`] evaluates it in memory (schedules, and any backend without SQL) with
//! the same result.
//!
//! Everything that can refuse a query (unknown attribute, literal of the wrong type, operator
//! the attribute's type does not support) is decided by [`resolve`], before any row
//! is looked at, so a query is refused the same way whatever the rows are.
//!
//! The semantics are SQL's, three-valued: a comparison with a missing attribute is unknown,
//! `NOT` of unknown is unknown, `AND`/`OR` combine unknowns as SQL does, and a row matches only
//! when the whole filter is true. Values of different kinds order as SQLite orders them
//! (numbers, compared by value whatever their kind, before text, compared bytewise).
//! `Text` attributes match `=` by case-insensitive (ASCII) substring; `KeywordList` attributes
//! match `=` and `IN` when some element matches.

use crate::SqlValue;
use crate::list_query::{Expr, Op, Value};

use std::cmp::Ordering;

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
    /// A column of the visibility table (or a field of an in-memory row).
    System(&'static str),
    /// A key of the custom search attribute document.
    Custom(String),
}

/// The system search attributes of workflow visibility and their columns.
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

/// A resolved attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Attr {
    /// The name as the query wrote it.
    pub name: String,
    pub column: Column,
    pub ty: AttrType,
}

/// A query's filter over resolved attributes and stored values: the parser's [`Expr`] with
/// each name replaced by its [`Attr`] and each literal by its stored value. Invariant: every
/// literal has the representation its attribute is stored with (Datetime as Unix ms, Bool as
/// 0/1, Status as its number, ExecutionDuration as nanoseconds), and every operator is one the
/// attribute's type supports. Nesting is the query's (at most `list_query::MAX_DEPTH`).
pub type Predicate = Expr<Attr, SqlValue>;

/// Resolves an attribute name: its column and type, `None` when unknown.
pub type Resolver<'a> = &'a dyn Fn(&str) -> Option<(Column, AttrType)>;

/// Resolves `name`, or says it is not a search attribute.
pub fn resolve_attr(name: &str, resolve: Resolver<'_>) -> Result<Attr, String> {
    let (column, ty) = resolve(name).ok_or_else(|| format!("invalid search attribute: {name}"))?;
    Ok(Attr {
        name: name.to_string(),
        column,
        ty,
    })
}

/// The stored representation of `value` for an attribute of type `ty`.
fn coerce(name: &str, ty: AttrType, value: &Value) -> Result<SqlValue, String> {
    let mismatch = || format!("invalid value {value:?} for search attribute {name} of type {ty:?}");
    Ok(match (ty, value) {
        (AttrType::Keyword | AttrType::Text | AttrType::KeywordList, Value::Str(s)) => {
            SqlValue::Text(s.clone())
        }
        (AttrType::Int, Value::Int(i)) => SqlValue::Int(*i),
        (AttrType::Int, Value::Str(s)) => SqlValue::Int(s.parse().map_err(|_| mismatch())?),
        (AttrType::Double, Value::Int(i)) => SqlValue::Float(*i as f64),
        (AttrType::Double, Value::Float(f)) => SqlValue::Float(*f),
        (AttrType::Double, Value::Str(s)) => SqlValue::Float(s.parse().map_err(|_| mismatch())?),
        (AttrType::Bool, Value::Bool(b)) => SqlValue::Int(i64::from(*b)),
        (AttrType::Bool, Value::Str(s)) if s.eq_ignore_ascii_case("true") => SqlValue::Int(1),
        (AttrType::Bool, Value::Str(s)) if s.eq_ignore_ascii_case("false") => SqlValue::Int(0),
        (AttrType::Datetime, Value::Str(s)) => SqlValue::Int(parse_time(s).ok_or_else(mismatch)?),
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
    })
}

/// The operator as SQL writes it.
pub fn op_sql(op: Op) -> &'static str {
    match op {
        Op::Eq => "=",
        Op::Ne => "!=",
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Lt => "<",
        Op::Le => "<=",
    }
}

/// One row's value of an attribute, as stored.
#[derive(Debug, Clone, PartialEq)]
pub enum RowValue {
    /// The attribute is not set on the row.
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    /// A KeywordList's elements.
    List(Vec<String>),
}

/// SQL's three-valued AND over `terms`, evaluated left to right.
fn all(terms: impl IntoIterator<Item = Option<bool>>) -> Option<bool> {
    let mut result = Some(true);
    for term in terms {
        match term {
            Some(false) => return Some(false),
            None => result = None,
            Some(true) => {}
        }
    }
    result
}

/// SQL's three-valued OR over `terms`.
fn any(terms: impl IntoIterator<Item = Option<bool>>) -> Option<bool> {
    all(terms.into_iter().map(|t| t.map(|b| !b))).map(|b| !b)
}

/// How `row` orders against the literal `value` (SQLite's order of kinds); `None` when the
/// row has no value. A list is text to SQL (its JSON); only KeywordList predicates, which look
/// inside it, compare lists meaningfully.
fn order(row: &RowValue, value: &SqlValue) -> Option<Ordering> {
    let number = |v: &SqlValue| match v {
        SqlValue::Int(i) => Some(*i as f64),
        SqlValue::Float(f) => Some(*f),
        SqlValue::Text(_) => None,
    };
    Some(match (row, value) {
        (RowValue::Null, _) => return None,
        (RowValue::Int(a), SqlValue::Int(b)) => a.cmp(b),
        (RowValue::Int(a), v) => number(v).map_or(Ordering::Less, |b| (*a as f64).total_cmp(&b)),
        (RowValue::Float(a), v) => number(v).map_or(Ordering::Less, |b| a.total_cmp(&b)),
        (RowValue::Text(_) | RowValue::List(_), SqlValue::Int(_) | SqlValue::Float(_)) => {
            Ordering::Greater
        }
        (RowValue::Text(a), SqlValue::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
        (RowValue::List(_), SqlValue::Text(_)) => Ordering::Greater,
    })
}

/// The row's value as SQL's text functions see it (`None`: no value, or a list).
fn text(row: &RowValue) -> Option<String> {
    match row {
        RowValue::Text(s) => Some(s.clone()),
        RowValue::Int(i) => Some(i.to_string()),
        RowValue::Float(f) => Some(f.to_string()),
        RowValue::Null | RowValue::List(_) => None,
    }
}

/// A KeywordList's membership test (`json_each`): some element equals `value`; a scalar is a
/// list of one, a missing value an empty list.
fn has_element(row: &RowValue, value: &SqlValue) -> bool {
    match row {
        RowValue::List(items) => items
            .iter()
            .any(|i| matches!(value, SqlValue::Text(v) if v == i)),
        other => order(other, value) == Some(Ordering::Equal),
    }
}

fn holds(ordering: Ordering, op: Op) -> bool {
    match op {
        Op::Eq => ordering == Ordering::Equal,
        Op::Ne => ordering != Ordering::Equal,
        Op::Gt => ordering == Ordering::Greater,
        Op::Ge => ordering != Ordering::Less,
        Op::Lt => ordering == Ordering::Less,
        Op::Le => ordering != Ordering::Greater,
    }
}

/// Resolves every attribute of `expr` and converts every literal; refuses unknown attributes,
/// literals of the wrong type and operators the type does not support.
pub fn resolve(expr: &Expr, resolve: Resolver<'_>) -> Result<Predicate, String> {
    resolve_expr(expr, resolve)
}

fn resolve_expr(expr: &Expr, resolve: Resolver<'_>) -> Result<Predicate, String> {
    let resolve_all = |terms: &[Expr]| {
        terms
            .iter()
            .map(|t| resolve_expr(t, resolve))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(match expr {
        Expr::And(terms) => Predicate::And(resolve_all(terms)?),
        Expr::Or(terms) => Predicate::Or(resolve_all(terms)?),
        Expr::Not(inner) => Predicate::Not(Box::new(resolve_expr(inner, resolve)?)),
        Expr::Cmp { field, op, value } => {
            let attr = resolve_attr(field, resolve)?;
            let value = coerce(field, attr.ty, value)?;
            match (attr.ty, op) {
                (AttrType::Text, Op::Gt | Op::Ge | Op::Lt | Op::Le) => {
                    return Err(format!(
                        "operation is not supported: operator '{}' not supported for Text type search attribute '{field}'",
                        op_sql(*op)
                    ));
                }
                (AttrType::KeywordList, Op::Gt | Op::Ge | Op::Lt | Op::Le) => {
                    return Err(format!("operator not supported for KeywordList {field}"));
                }
                _ => {}
            }
            Predicate::Cmp {
                field: attr,
                op: *op,
                value,
            }
        }
        Expr::In {
            field,
            values,
            negated,
        } => {
            let attr = resolve_attr(field, resolve)?;
            if attr.ty == AttrType::Text {
                return Err(format!(
                    "operation is not supported: operator 'in' not supported for Text type search attribute '{field}'"
                ));
            }
            let values = values
                .iter()
                .map(|v| coerce(field, attr.ty, v))
                .collect::<Result<_, _>>()?;
            Predicate::In {
                field: attr,
                values,
                negated: *negated,
            }
        }
        Expr::Between {
            field,
            low,
            high,
            negated,
        } => {
            let attr = resolve_attr(field, resolve)?;
            Predicate::Between {
                low: coerce(field, attr.ty, low)?,
                high: coerce(field, attr.ty, high)?,
                field: attr,
                negated: *negated,
            }
        }
        Expr::StartsWith {
            field,
            prefix,
            negated,
        } => {
            let attr = resolve_attr(field, resolve)?;
            if attr.ty != AttrType::Keyword {
                return Err(format!(
                    "operation is not supported: operator 'starts_with' not supported for {:?} type search attribute '{field}'",
                    attr.ty
                ));
            }
            Predicate::StartsWith {
                field: attr,
                prefix: prefix.clone(),
                negated: *negated,
            }
        }
        Expr::IsNull { field, negated } => Predicate::IsNull {
            field: resolve_attr(field, resolve)?,
            negated: *negated,
        },
    })
}

impl Predicate {
    /// True when the row (`row` gives its stored value of an attribute) satisfies the filter:
    /// the filter is true, not false or unknown.
    pub fn matches(&self, row: &dyn Fn(&Attr) -> RowValue) -> bool {
        self.eval(row) == Some(true)
    }

    /// SQL's value of the filter for the row: `None` is unknown (NULL).
    fn eval(&self, row: &dyn Fn(&Attr) -> RowValue) -> Option<bool> {
        let negate = |negated: bool, v: Option<bool>| v.map(|b| b != negated);
        match self {
            Predicate::And(terms) => all(terms.iter().map(|t| t.eval(row))),
            Predicate::Or(terms) => any(terms.iter().map(|t| t.eval(row))),
            Predicate::Not(inner) => inner.eval(row).map(|b| !b),
            Predicate::Cmp {
                field: attr,
                op,
                value,
            } => {
                let v = row(attr);
                match (attr.ty, op) {
                    (AttrType::KeywordList, Op::Eq) => Some(has_element(&v, value)),
                    (AttrType::KeywordList, _) => Some(!has_element(&v, value)),
                    (AttrType::Text, Op::Eq | Op::Ne) => {
                        let contains =
                            text(&v)
                                .zip(text(&RowValue::from(value)))
                                .map(|(hay, needle)| {
                                    hay.to_ascii_lowercase()
                                        .contains(&needle.to_ascii_lowercase())
                                });
                        if *op == Op::Eq {
                            contains
                        } else {
                            // Unset text contains nothing.
                            Some(!contains.unwrap_or(false))
                        }
                    }
                    _ => order(&v, value).map(|o| holds(o, *op)),
                }
            }
            Predicate::In {
                field: attr,
                values,
                negated,
            } => {
                let v = row(attr);
                if attr.ty == AttrType::KeywordList {
                    return Some(values.iter().any(|x| has_element(&v, x)) != *negated);
                }
                negate(
                    *negated,
                    any(values
                        .iter()
                        .map(|x| order(&v, x).map(|o| o == Ordering::Equal))),
                )
            }
            Predicate::Between {
                field: attr,
                low,
                high,
                negated,
            } => {
                let v = row(attr);
                let within = all([
                    order(&v, low).map(|o| holds(o, Op::Ge)),
                    order(&v, high).map(|o| holds(o, Op::Le)),
                ]);
                negate(*negated, within)
            }
            Predicate::StartsWith {
                field: attr,
                prefix,
                negated,
            } => negate(
                *negated,
                text(&row(attr)).map(|s| s.starts_with(prefix.as_str())),
            ),
            Predicate::IsNull {
                field: attr,
                negated,
            } => Some((row(attr) == RowValue::Null) != *negated),
        }
    }
}

impl From<&SqlValue> for RowValue {
    fn from(v: &SqlValue) -> RowValue {
        match v {
            SqlValue::Text(s) => RowValue::Text(s.clone()),
            SqlValue::Int(i) => RowValue::Int(*i),
            SqlValue::Float(f) => RowValue::Float(*f),
        }
    }
}

/// Resolves a whole parsed query: its filter and its order attributes (GROUP BY is the
/// caller's business).
pub fn resolve_query(
    query: &crate::list_query::Query,
    resolver: Resolver<'_>,
) -> Result<crate::VisibilityQuery, String> {
    let filter = query
        .filter
        .as_ref()
        .map(|e| resolve(e, resolver))
        .transpose()?;
    let order_by = query
        .order_by
        .iter()
        .map(|(name, desc)| Ok((resolve_attr(name, resolver)?, *desc)))
        .collect::<Result<_, String>>()?;
    Ok(crate::VisibilityQuery { filter, order_by })
}
