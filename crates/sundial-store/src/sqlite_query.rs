//! How SQLite's SQL spells a list query ([`crate::query_sql`] writes the query): `?N`
//! parameters, system attributes as columns of `visibility`, custom ones as keys of its JSON
//! document reached with `json_extract`, KeywordList membership with `json_each`.

use crate::predicate::{Attr, AttrType, Column, Predicate};
use crate::query_sql::{self, Dialect};
use crate::{SortKey, SqlValue};

pub(crate) struct Sqlite;

/// The JSON path of a custom attribute (quotes are not part of any attribute name).
fn path(key: &str) -> String {
    format!("'$.\"{}\"'", key.replace(['"', '\''], ""))
}

/// True for attribute types stored as numbers.
pub(crate) fn is_numeric(ty: AttrType) -> bool {
    !matches!(
        ty,
        AttrType::Text | AttrType::Keyword | AttrType::KeywordList
    )
}

impl Dialect for Sqlite {
    fn param(&self, n: usize, _value: &SqlValue) -> String {
        format!("?{n}")
    }

    fn value(&self, attr: &Attr) -> String {
        self.raw(attr)
    }

    fn raw(&self, attr: &Attr) -> String {
        match &attr.column {
            Column::System(c) => c.to_string(),
            Column::Custom(key) => format!("json_extract(search_attributes, {})", path(key)),
        }
    }

    fn list_has_any(&self, attr: &Attr, params: &[String]) -> String {
        format!(
            "EXISTS (SELECT 1 FROM json_each({}) WHERE json_each.value IN ({}))",
            self.raw(attr),
            params.join(", ")
        )
    }

    fn text_contains(&self, value: &str, param: &str) -> String {
        format!("instr(lower({value}), lower({param})) > 0")
    }

    fn starts_with(&self, value: &str, param: &str) -> String {
        format!("substr({value}, 1, length({param})) = {param}")
    }

    fn sort_value(&self, key: &SortKey) -> String {
        match key {
            SortKey::Closed { .. } => "(CASE WHEN close_time IS NULL THEN 0 ELSE 1 END)".into(),
            SortKey::Attr { attr, .. } => {
                let numeric = is_numeric(attr.ty);
                let (empty, kinds) = if numeric {
                    ("0", "'integer', 'real'")
                } else {
                    ("''", "'text'")
                };
                match &attr.column {
                    Column::System(c) => format!("coalesce({c}, {empty})"),
                    Column::Custom(key) => format!(
                        "coalesce(CASE WHEN json_type(search_attributes, {p}) IN ({kinds}) THEN json_extract(search_attributes, {p}) END, {empty})",
                        p = path(key)
                    ),
                }
            }
        }
    }
}

/// The WHERE condition SQLite runs for `filter` and its parameters (numbered from `?2`; `?1`
/// is the namespace).
pub fn condition(filter: Option<&Predicate>) -> (String, Vec<SqlValue>) {
    let sql = query_sql::condition(&Sqlite, filter);
    (sql.text, sql.params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::list_query::parse;
    use crate::predicate::{self, Resolver, system_attribute};

    fn resolve(name: &str) -> Option<(Column, AttrType)> {
        system_attribute(name).or_else(|| match name {
            "CustomIntField" => Some((Column::Custom(name.into()), AttrType::Int)),
            "Tags" => Some((Column::Custom(name.into()), AttrType::KeywordList)),
            _ => None,
        })
    }

    fn build(query: &str, resolver: Resolver<'_>) -> (String, Vec<SqlValue>) {
        let q = predicate::resolve_query(&parse(query).unwrap(), resolver).unwrap();
        condition(q.filter.as_ref())
    }

    #[test]
    fn builds_bound_sql() {
        let (sql, params) = build(
            "ExecutionStatus = 'Running' AND WorkflowType IN ('a', 'b') ORDER BY StartTime ASC",
            &resolve,
        );
        assert_eq!(sql, "(status = ?2 AND workflow_type IN (?3, ?4))");
        assert_eq!(
            params,
            vec![
                SqlValue::Int(1),
                SqlValue::Text("a".into()),
                SqlValue::Text("b".into())
            ]
        );
        let (sql, _) = build(
            "WorkflowId STARTS_WITH 'x-' AND CustomIntField > 3",
            &resolve,
        );
        assert_eq!(
            sql,
            "(substr(workflow_id, 1, length(?2)) = ?2 AND json_extract(search_attributes, '$.\"CustomIntField\"') > ?3)"
        );
    }

    #[test]
    fn long_chains_become_balanced_sql() {
        let chain = vec!["HistoryLength = 1"; 1024].join(" OR ");
        let (sql, params) = build(&chain, &resolve);
        assert_eq!(params.len(), 1024);
        // Balanced: the parentheses nest log2(1024) = 10 deep.
        let mut depth = 0i32;
        let mut deepest = 0;
        for c in sql.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            deepest = deepest.max(depth);
        }
        assert_eq!(deepest, 10);
        assert!(sql.contains("?1025"));
        let (three, _) = build(
            "HistoryLength = 1 AND HistoryLength = 2 AND HistoryLength = 3",
            &resolve,
        );
        assert_eq!(
            three,
            "(history_length = ?2 AND (history_length = ?3 AND history_length = ?4))"
        );
    }

    #[test]
    fn rejects_unknown_names_and_type_mismatches() {
        let resolved = |q: &str| predicate::resolve_query(&parse(q).unwrap(), &resolve).map(|_| ());
        assert!(resolved("Nope = 1").unwrap_err().contains("Nope"));
        assert!(resolved("CustomIntField = 'abc'").is_err());
        assert!(resolved("StartTime > 'yesterday'").is_err());
        assert!(resolved("Tags = 'red'").is_ok());
        assert!(resolved("ORDER BY Nope").unwrap_err().contains("Nope"));
    }
}
