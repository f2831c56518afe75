//! Properties the coverage-guided fuzz targets (`fuzz/`) check, kept here so the same checks
//! also run on generated inputs in the ordinary test suite (`sundial-server`'s `fuzzing`
//! tests). Each takes any bytes and panics only if the property is broken.

use crate::list_query;
use crate::predicate::{self, AttrType, Column};
use crate::sqlite_query;

fn resolve(name: &str) -> Option<(Column, AttrType)> {
    predicate::system_attribute(name).or_else(|| {
        let ty = match name {
            "CustomKeywordField" => AttrType::Keyword,
            "CustomTextField" => AttrType::Text,
            "CustomIntField" => AttrType::Int,
            "CustomDoubleField" => AttrType::Double,
            "CustomBoolField" => AttrType::Bool,
            "CustomDatetimeField" => AttrType::Datetime,
            "CustomStringList" => AttrType::KeywordList,
            _ => return None,
        };
        Some((Column::Custom(name.to_string()), ty))
    })
}

/// The list query language: parsing, then translation into SQL and evaluation in memory, of
/// any text. None may panic, overflow the stack, or produce SQL deeper than SQLite accepts.
pub fn any_query(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(query) = list_query::parse(text) else {
        return;
    };
    // The in-memory evaluation of the same query walks it without panicking either.
    if let Some(expr) = &query.filter
        && let Ok(p) = predicate::resolve(expr, &resolve)
    {
        p.matches(&|_| predicate::RowValue::Null);
        p.matches(&|_| predicate::RowValue::List(vec!["a".into()]));
    }
    if let Ok(resolved) = predicate::resolve_query(&query, &resolve) {
        let (where_sql, params) = sqlite_query::condition(resolved.filter.as_ref());
        // Parentheses in the SQL nest no deeper than the query's own nesting allows
        // (balanced chains), far below SQLite's expression depth limit of 1000.
        let mut depth = 0usize;
        let mut deepest = 0usize;
        for c in where_sql.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ => {}
            }
            deepest = deepest.max(depth);
        }
        assert!(deepest < 1000, "SQL nested {deepest} deep");
        assert!(params.len() <= list_query::MAX_VALUES + 1);
    }
}
