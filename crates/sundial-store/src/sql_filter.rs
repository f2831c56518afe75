//! The SQLite backend's half of the list query language: a resolved [`Predicate`] (what the
//! query means, `predicate.rs`) written as a SQL WHERE/ORDER BY over the `visibility` table,
//! with every value bound as a parameter. System attributes are columns; custom ones are keys
//! of the JSON document, reached with `json_extract`.

use crate::list_query::Query;
use crate::predicate::{self, AttrType, Column, Predicate, Resolver};
use crate::{SqlValue, VisibilityFilter};

fn column_sql(column: &Column) -> String {
    match column {
        Column::System(c) => c.to_string(),
        Column::Custom(key) => format!(
            "json_extract(search_attributes, '$.\"{}\"')",
            key.replace(['"', '\''], "")
        ),
    }
}

struct Builder {
    params: Vec<SqlValue>,
}

impl Builder {
    fn bind(&mut self, value: &SqlValue) -> String {
        self.params.push(value.clone());
        "?".to_string()
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
                let col = column_sql(&attr.column);
                let p = self.bind(value);
                match (attr.ty, op) {
                    (AttrType::KeywordList, crate::list_query::Op::Eq) => {
                        list_contains(&col, &p, false)
                    }
                    (AttrType::KeywordList, _) => list_contains(&col, &p, true),
                    (AttrType::Text, crate::list_query::Op::Eq) => {
                        format!("instr(lower({col}), lower({p})) > 0")
                    }
                    (AttrType::Text, _) => {
                        format!("coalesce(instr(lower({col}), lower({p})), 0) = 0")
                    }
                    _ => format!("{col} {} {p}", predicate::op_sql(*op)),
                }
            }
            Predicate::In {
                field: attr,
                values,
                negated,
            } => {
                let col = column_sql(&attr.column);
                let list = values
                    .iter()
                    .map(|v| self.bind(v))
                    .collect::<Vec<_>>()
                    .join(", ");
                match attr.ty {
                    AttrType::KeywordList => format!(
                        "{}EXISTS (SELECT 1 FROM json_each({col}) WHERE json_each.value IN ({list}))",
                        not(*negated)
                    ),
                    _ => format!("{col} {}IN ({list})", not(*negated)),
                }
            }
            Predicate::Between {
                field: attr,
                low,
                high,
                negated,
            } => {
                let col = column_sql(&attr.column);
                let lo = self.bind(low);
                let hi = self.bind(high);
                format!("{col} {}BETWEEN {lo} AND {hi}", not(*negated))
            }
            Predicate::StartsWith {
                field: attr,
                prefix,
                negated,
            } => {
                let col = column_sql(&attr.column);
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
            Predicate::IsNull {
                field: attr,
                negated,
            } => {
                format!("{} IS {}NULL", column_sql(&attr.column), not(*negated))
            }
        }
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
pub fn build(query: &Query, resolve: Resolver<'_>) -> Result<VisibilityFilter, String> {
    let mut b = Builder { params: Vec::new() };
    let where_sql = match &query.filter {
        Some(e) => b.expr(&predicate::resolve(e, resolve)?),
        None => "1 = 1".to_string(),
    };
    let mut order = Vec::new();
    for (field, desc) in &query.order_by {
        let attr = predicate::resolve_attr(field, resolve)?;
        order.push(format!(
            "{} {}",
            column_sql(&attr.column),
            if *desc { "DESC" } else { "ASC" }
        ));
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
    use crate::predicate::system_attribute;

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
