//! A list query written as SQL over the `visibility` table, for any backend: the walk over a
//! resolved [`Predicate`], the keyset condition of a page and the ORDER BY are written once
//! here; a [`Dialect`] supplies how its SQL spells each piece (parameters, attribute values,
//! list membership, text search). Every value is bound as a parameter.

use crate::list_query::Op;
use crate::predicate::{self, Attr, AttrType, Predicate};
use crate::{PageKey, SortKey, SqlValue, VisibilityQuery};

/// How one backend's SQL spells the pieces of a query.
pub(crate) trait Dialect {
    /// The placeholder of the `n`th parameter (1-based), typed for `value` if the dialect
    /// needs it.
    fn param(&self, n: usize, value: &SqlValue) -> String;
    /// The attribute's value as comparisons and `IN` see it (NULL when the run has none).
    fn value(&self, attr: &Attr) -> String;
    /// The attribute's raw stored value, for `IS NULL`.
    fn raw(&self, attr: &Attr) -> String;
    /// True when the KeywordList attribute holds some of `params` (placeholders).
    fn list_has_any(&self, attr: &Attr, params: &[String]) -> String;
    /// True when the text of `value` contains `param`, case-insensitively.
    fn text_contains(&self, value: &str, param: &str) -> String;
    /// True when `value` starts with `param`.
    fn starts_with(&self, value: &str, param: &str) -> String;
    /// The never-NULL expression a sort key orders by.
    fn sort_value(&self, key: &SortKey) -> String;
}

/// A statement's SQL and its parameters in order (the namespace is always `?1`/`$1`).
pub(crate) struct Sql {
    pub text: String,
    pub params: Vec<SqlValue>,
}

struct Builder<'d, D: Dialect> {
    dialect: &'d D,
    params: Vec<SqlValue>,
}

impl<D: Dialect> Builder<'_, D> {
    fn bind(&mut self, value: SqlValue) -> String {
        // Parameter 1 is the namespace.
        let placeholder = self.dialect.param(self.params.len() + 2, &value);
        self.params.push(value);
        placeholder
    }

    /// `terms` joined by `op`, parenthesized as a balanced tree: SQLite limits the depth of an
    /// expression tree (1000), and `a AND b AND c ...` written flat is as deep as it is long.
    /// Parameters stay in the order of the terms.
    fn chain(&mut self, terms: &[Predicate], op: &str, empty: &str) -> String {
        match terms {
            [] => empty.to_string(),
            [one] => self.expr(one),
            _ => {
                let (left, right) = terms.split_at(terms.len() / 2);
                let left = self.chain(left, op, empty);
                let right = self.chain(right, op, empty);
                format!("({left} {op} {right})")
            }
        }
    }

    fn expr(&mut self, p: &Predicate) -> String {
        let not = |negated: bool| if negated { "NOT " } else { "" };
        match p {
            Predicate::And(terms) => self.chain(terms, "AND", "1 = 1"),
            Predicate::Or(terms) => self.chain(terms, "OR", "1 = 0"),
            Predicate::Not(a) => format!("(NOT {})", self.expr(a)),
            Predicate::Cmp {
                field: attr,
                op,
                value,
            } => {
                let p = self.bind(value.clone());
                match (attr.ty, op) {
                    (AttrType::KeywordList, Op::Eq) => self.dialect.list_has_any(attr, &[p]),
                    (AttrType::KeywordList, _) => {
                        format!("NOT {}", self.dialect.list_has_any(attr, &[p]))
                    }
                    (AttrType::Text, Op::Eq) => {
                        self.dialect.text_contains(&self.dialect.value(attr), &p)
                    }
                    (AttrType::Text, _) => format!(
                        "coalesce({}, 1 = 0) = (1 = 0)",
                        self.dialect.text_contains(&self.dialect.value(attr), &p)
                    ),
                    _ => format!(
                        "{} {} {p}",
                        self.dialect.value(attr),
                        predicate::op_sql(*op)
                    ),
                }
            }
            Predicate::In {
                field: attr,
                values,
                negated,
            } => {
                let list: Vec<String> = values.iter().map(|v| self.bind(v.clone())).collect();
                match attr.ty {
                    AttrType::KeywordList => format!(
                        "{}{}",
                        not(*negated),
                        self.dialect.list_has_any(attr, &list)
                    ),
                    _ => format!(
                        "{} {}IN ({})",
                        self.dialect.value(attr),
                        not(*negated),
                        list.join(", ")
                    ),
                }
            }
            Predicate::Between {
                field: attr,
                low,
                high,
                negated,
            } => {
                let lo = self.bind(low.clone());
                let hi = self.bind(high.clone());
                format!(
                    "{} {}BETWEEN {lo} AND {hi}",
                    self.dialect.value(attr),
                    not(*negated)
                )
            }
            Predicate::StartsWith {
                field: attr,
                prefix,
                negated,
            } => {
                let p = self.bind(SqlValue::Text(prefix.clone()));
                let inner = self.dialect.starts_with(&self.dialect.value(attr), &p);
                if *negated {
                    format!("NOT ({inner})")
                } else {
                    inner
                }
            }
            Predicate::IsNull {
                field: attr,
                negated,
            } => format!("{} IS {}NULL", self.dialect.raw(attr), not(*negated)),
        }
    }

    fn filter(&mut self, filter: Option<&Predicate>) -> String {
        filter.map_or_else(|| "1 = 1".to_string(), |p| self.expr(p))
    }

    /// True for the rows that follow `after` in the order of `keys` (then run id, descending).
    fn after(&mut self, keys: &[SortKey], values: &[SqlValue], run_id: &str) -> String {
        let Some((key, rest)) = keys.split_first() else {
            let p = self.bind(SqlValue::Text(run_id.to_string()));
            return format!("run_id < {p}");
        };
        let (desc, value) = (sort_desc(key), self.dialect.sort_value(key));
        let beyond = self.bind(values[0].clone());
        let equal = self.bind(values[0].clone());
        let later = self.after(rest, &values[1..], run_id);
        let op = if desc { "<" } else { ">" };
        format!("({value} {op} {beyond} OR ({value} = {equal} AND {later}))")
    }
}

fn sort_desc(key: &SortKey) -> bool {
    match key {
        SortKey::Closed { desc } | SortKey::Attr { desc, .. } => *desc,
    }
}

/// `SELECT info, run_id, <sort values...>` of one page of `query`.
pub(crate) fn list(
    dialect: &impl Dialect,
    query: &VisibilityQuery,
    limit: usize,
    after: Option<&PageKey>,
) -> Sql {
    let keys = query.sort_keys();
    let mut b = Builder {
        dialect,
        params: Vec::new(),
    };
    let mut condition = b.filter(query.filter.as_ref());
    if let Some(after) = after.filter(|a| a.values.len() == keys.len()) {
        condition = format!(
            "({condition}) AND {}",
            b.after(&keys, &after.values, &after.run_id)
        );
    }
    let values: Vec<String> = keys.iter().map(|k| dialect.sort_value(k)).collect();
    let mut order: Vec<String> = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| format!("{v} {}", if sort_desc(k) { "DESC" } else { "ASC" }))
        .collect();
    order.push("run_id DESC".into());
    let selected = std::iter::once("info".to_string())
        .chain(std::iter::once("run_id".to_string()))
        .chain(values)
        .collect::<Vec<_>>()
        .join(", ");
    Sql {
        text: format!(
            "SELECT {selected} FROM visibility WHERE namespace = {} AND ({condition}) ORDER BY {} LIMIT {limit}",
            dialect.param(1, &SqlValue::Text(String::new())),
            order.join(", ")
        ),
        params: b.params,
    }
}

/// The number of runs matching `filter`, in total or per status.
pub(crate) fn count(dialect: &impl Dialect, filter: Option<&Predicate>, by_status: bool) -> Sql {
    let mut b = Builder {
        dialect,
        params: Vec::new(),
    };
    let condition = b.filter(filter);
    let namespace = dialect.param(1, &SqlValue::Text(String::new()));
    let text = if by_status {
        format!(
            "SELECT status, COUNT(*) FROM visibility WHERE namespace = {namespace} AND ({condition}) GROUP BY status ORDER BY status"
        )
    } else {
        format!(
            "SELECT 0, COUNT(*) FROM visibility WHERE namespace = {namespace} AND ({condition})"
        )
    };
    Sql {
        text,
        params: b.params,
    }
}

/// The WHERE condition alone (tests and fuzzing look at its shape).
pub(crate) fn condition(dialect: &impl Dialect, filter: Option<&Predicate>) -> Sql {
    let mut b = Builder {
        dialect,
        params: Vec::new(),
    };
    let text = b.filter(filter);
    Sql {
        text,
        params: b.params,
    }
}
