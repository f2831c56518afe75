//! How PostgreSQL's SQL spells a list query ([`crate::query_sql`] writes the query): `$N`
//! parameters cast to their type, system attributes as columns of `visibility`, custom ones
//! read from its `jsonb` document with a check of the JSON type first (a document may hold a
//! list where the attribute's type says number, and a cast of it must not fail the query),
//! KeywordList membership with `jsonb_exists_any`. Text compares bytewise (`COLLATE "C"`),
//! as SQLite does.

use crate::SortKey;
use crate::SqlValue;
use crate::predicate::{Attr, AttrType, Column};
use crate::query_sql::Dialect;
use crate::sqlite_query::is_numeric;

pub(crate) struct Postgres;

/// A custom attribute's key as an SQL string literal (quotes are not part of any name).
fn key_literal(key: &str) -> String {
    format!("'{}'", key.replace(['"', '\'', '\\'], ""))
}

impl Dialect for Postgres {
    fn param(&self, n: usize, value: &SqlValue) -> String {
        match value {
            SqlValue::Text(_) => format!("${n}::text"),
            SqlValue::Int(_) => format!("${n}::bigint"),
            SqlValue::Float(_) => format!("${n}::float8"),
        }
    }

    fn value(&self, attr: &Attr) -> String {
        match &attr.column {
            Column::System(c) => c.to_string(),
            Column::Custom(key) => {
                let k = key_literal(key);
                if is_numeric(attr.ty) {
                    format!(
                        "(CASE WHEN jsonb_typeof(search_attributes -> {k}) = 'number' THEN (search_attributes -> {k})::numeric END)"
                    )
                } else {
                    format!("((search_attributes ->> {k}) COLLATE \"C\")")
                }
            }
        }
    }

    fn raw(&self, attr: &Attr) -> String {
        match &attr.column {
            Column::System(c) => c.to_string(),
            Column::Custom(key) => format!(
                "nullif(search_attributes -> {}, 'null'::jsonb)",
                key_literal(key)
            ),
        }
    }

    fn list_has_any(&self, attr: &Attr, params: &[String]) -> String {
        format!(
            "coalesce(jsonb_exists_any({}, ARRAY[{}]), false)",
            self.raw(attr),
            params.join(", ")
        )
    }

    fn text_contains(&self, value: &str, param: &str) -> String {
        format!("strpos(lower({value}), lower({param})) > 0")
    }

    fn starts_with(&self, value: &str, param: &str) -> String {
        format!("starts_with({value}, {param})")
    }

    fn sort_value(&self, key: &SortKey) -> String {
        match key {
            SortKey::Closed { .. } => {
                "(CASE WHEN close_time IS NULL THEN 0 ELSE 1 END)::bigint".into()
            }
            SortKey::Attr { attr, .. } => match (&attr.column, is_numeric(attr.ty)) {
                (Column::System(c), true) => format!("coalesce({c}, 0)::bigint"),
                (Column::System(c), false) => format!("coalesce({c}, '') COLLATE \"C\""),
                (Column::Custom(key), true) => {
                    let k = key_literal(key);
                    let float = attr.ty == AttrType::Double;
                    let cast = if float { "float8" } else { "bigint" };
                    format!(
                        "coalesce(CASE WHEN jsonb_typeof(search_attributes -> {k}) = 'number' THEN (search_attributes -> {k})::numeric END, 0)::{cast}"
                    )
                }
                (Column::Custom(key), false) => {
                    let k = key_literal(key);
                    format!(
                        "coalesce(CASE WHEN jsonb_typeof(search_attributes -> {k}) = 'string' THEN search_attributes ->> {k} END, '') COLLATE \"C\""
                    )
                }
            },
        }
    }
}
