//! Temporal's list filter language (`WorkflowType = 'x' AND StartTime > '...' ORDER BY ...`),
//! parsed into a small AST. Pure; the SQL for a backend is produced elsewhere.
//!
//! Hostile input is bounded before any work grows with it: a query longer than
//! [`MAX_QUERY_LENGTH`] is refused before it is tokenized, parentheses and `NOT` may nest at
//! most [`MAX_DEPTH`] levels (the parser's recursion, and so the depth of every tree walk
//! over the AST, never exceeds that), an `IN` list holds at most [`MAX_IN_VALUES`] values and
//! a query at most [`MAX_VALUES`] literals (each becomes one bound SQL parameter), and ORDER BY
//! or GROUP BY at most [`MAX_ORDER_FIELDS`] attributes. A chain of
//! `AND`s or `OR`s is one node with a list of terms, not a tree as deep as the chain is long.

/// Longest query accepted, in bytes. The reference server sets none (its parser's stack
/// grows on the heap); this one bounds the work and memory of one list call.
pub const MAX_QUERY_LENGTH: usize = 32 * 1024;
/// Deepest nesting of parentheses and `NOT` accepted.
pub const MAX_DEPTH: usize = 64;
/// Most values in one `IN (...)` list.
pub const MAX_IN_VALUES: usize = 1000;
/// Most literals in one query (well under SQLite's 32,766 bound parameters).
pub const MAX_VALUES: usize = 10_000;
/// Most attributes one ORDER BY or GROUP BY names (each becomes a sort key of every page, and a
/// level of the page condition).
pub const MAX_ORDER_FIELDS: usize = 16;

/// A literal in a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A filter expression: what the parser reads (`Expr`, attribute names and literals as
/// written) and, with the same shape, what a query means once resolved
/// (`predicate::Predicate`: `F` a resolved attribute, `V` a stored value).
#[derive(Debug, Clone, PartialEq)]
pub enum Expr<F = String, V = Value> {
    /// All of the terms (an empty list matches everything).
    And(Vec<Expr<F, V>>),
    /// Any of the terms (an empty list matches nothing).
    Or(Vec<Expr<F, V>>),
    Not(Box<Expr<F, V>>),
    Cmp {
        field: F,
        op: Op,
        value: V,
    },
    In {
        field: F,
        values: Vec<V>,
        negated: bool,
    },
    Between {
        field: F,
        low: V,
        high: V,
        negated: bool,
    },
    StartsWith {
        field: F,
        prefix: String,
        negated: bool,
    },
    IsNull {
        field: F,
        negated: bool,
    },
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Query {
    pub filter: Option<Expr>,
    /// (field, descending)
    pub order_by: Vec<(String, bool)>,
    pub group_by: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Num(String),
    Sym(&'static str),
    LParen,
    RParen,
    Comma,
}

fn tokenize(input: &str) -> Result<Vec<(usize, Token)>, String> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '(' || c == ')' || c == ',' {
            out.push((
                start,
                match c {
                    '(' => Token::LParen,
                    ')' => Token::RParen,
                    _ => Token::Comma,
                },
            ));
            i += 1;
            continue;
        }
        if c == '\'' || c == '"' {
            let quote = c;
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(format!(
                            "unterminated string starting at position {}",
                            start + 1
                        ));
                    }
                    Some(&ch) if ch == quote => {
                        if chars.get(i + 1) == Some(&quote) {
                            s.push(quote);
                            i += 2;
                        } else {
                            i += 1;
                            break;
                        }
                    }
                    Some('\\') if chars.get(i + 1).is_some() => {
                        s.push(chars[i + 1]);
                        i += 2;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push((start, Token::Str(s)));
            continue;
        }
        if c == '`' {
            let end = chars[i + 1..]
                .iter()
                .position(|&ch| ch == '`')
                .ok_or_else(|| {
                    format!(
                        "unterminated quoted name starting at position {}",
                        start + 1
                    )
                })?;
            out.push((
                start,
                Token::Ident(chars[i + 1..i + 1 + end].iter().collect()),
            ));
            i += end + 2;
            continue;
        }
        if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || chars[i] == '.'
                    || chars[i] == 'e'
                    || chars[i] == 'E')
            {
                i += 1;
            }
            out.push((start, Token::Num(chars[start..i].iter().collect())));
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
            {
                i += 1;
            }
            out.push((start, Token::Ident(chars[start..i].iter().collect())));
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let sym = match two.as_str() {
            "!=" => Some("!="),
            "<>" => Some("!="),
            ">=" => Some(">="),
            "<=" => Some("<="),
            _ => None,
        };
        if let Some(sym) = sym {
            out.push((start, Token::Sym(sym)));
            i += 2;
            continue;
        }
        let sym = match c {
            '=' => "=",
            '>' => ">",
            '<' => "<",
            _ => {
                return Err(format!(
                    "unexpected character '{c}' at position {}",
                    start + 1
                ));
            }
        };
        out.push((start, Token::Sym(sym)));
        i += 1;
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    pos: usize,
    len: usize,
    /// Literals read so far (bounded by [`MAX_VALUES`]).
    values: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.len, |(p, _)| *p) + 1
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Ident(w)) if w.eq_ignore_ascii_case(word))
    }

    fn eat_keyword(&mut self, word: &str) -> bool {
        let found = self.keyword(word);
        if found {
            self.pos += 1;
        }
        found
    }

    fn expect_keyword(&mut self, word: &str) -> Result<(), String> {
        if self.eat_keyword(word) {
            Ok(())
        } else {
            Err(format!("expected {word} at position {}", self.at()))
        }
    }

    /// `depth`: how many parentheses and `NOT`s enclose this expression.
    fn or_expr(&mut self, depth: usize) -> Result<Expr, String> {
        let first = self.and_expr(depth)?;
        if !self.keyword("or") {
            return Ok(first);
        }
        let mut terms = vec![first];
        while self.eat_keyword("or") {
            terms.push(self.and_expr(depth)?);
        }
        Ok(Expr::Or(terms))
    }

    fn and_expr(&mut self, depth: usize) -> Result<Expr, String> {
        let first = self.unary(depth)?;
        if !self.keyword("and") {
            return Ok(first);
        }
        let mut terms = vec![first];
        while self.eat_keyword("and") {
            terms.push(self.unary(depth)?);
        }
        Ok(Expr::And(terms))
    }

    fn deeper(&self, depth: usize) -> Result<usize, String> {
        if depth >= MAX_DEPTH {
            return Err(format!(
                "query is nested too deeply at position {}: at most {MAX_DEPTH} levels of parentheses and NOT are allowed",
                self.at()
            ));
        }
        Ok(depth + 1)
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, String> {
        if self.keyword("not") {
            let depth = self.deeper(depth)?;
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary(depth)?)));
        }
        if self.peek() == Some(&Token::LParen) {
            let depth = self.deeper(depth)?;
            self.pos += 1;
            let inner = self.or_expr(depth)?;
            if self.peek() != Some(&Token::RParen) {
                return Err(format!("expected ')' at position {}", self.at()));
            }
            self.pos += 1;
            return Ok(inner);
        }
        self.predicate()
    }

    fn value(&mut self) -> Result<Value, String> {
        let at = self.at();
        if self.values >= MAX_VALUES {
            return Err(format!(
                "too many values in the query at position {at}: at most {MAX_VALUES} are allowed"
            ));
        }
        let value = match self.peek().cloned() {
            Some(Token::Str(s)) => Value::Str(s),
            Some(Token::Num(n)) => {
                if let Ok(i) = n.parse::<i64>() {
                    Value::Int(i)
                } else {
                    Value::Float(
                        n.parse::<f64>()
                            .map_err(|_| format!("invalid number {n} at position {at}"))?,
                    )
                }
            }
            Some(Token::Ident(w)) if w.eq_ignore_ascii_case("true") => Value::Bool(true),
            Some(Token::Ident(w)) if w.eq_ignore_ascii_case("false") => Value::Bool(false),
            _ => return Err(format!("expected a value at position {at}")),
        };
        self.pos += 1;
        self.values += 1;
        Ok(value)
    }

    fn predicate(&mut self) -> Result<Expr, String> {
        let at = self.at();
        let field = match self.peek().cloned() {
            Some(Token::Ident(name)) => name,
            _ => return Err(format!("expected a search attribute name at position {at}")),
        };
        self.pos += 1;
        if let Some(Token::Sym(sym)) = self.peek().cloned() {
            self.pos += 1;
            let op = match sym {
                "=" => Op::Eq,
                "!=" => Op::Ne,
                ">" => Op::Gt,
                ">=" => Op::Ge,
                "<" => Op::Lt,
                _ => Op::Le,
            };
            return Ok(Expr::Cmp {
                field,
                op,
                value: self.value()?,
            });
        }
        let negated = self.eat_keyword("not");
        if self.eat_keyword("in") {
            if self.peek() != Some(&Token::LParen) {
                return Err(format!("expected '(' after IN at position {}", self.at()));
            }
            self.pos += 1;
            let mut values = vec![self.value()?];
            while self.peek() == Some(&Token::Comma) {
                if values.len() >= MAX_IN_VALUES {
                    return Err(format!(
                        "too many values in IN at position {}: at most {MAX_IN_VALUES} are allowed",
                        self.at()
                    ));
                }
                self.pos += 1;
                values.push(self.value()?);
            }
            if self.peek() != Some(&Token::RParen) {
                return Err(format!("expected ')' at position {}", self.at()));
            }
            self.pos += 1;
            return Ok(Expr::In {
                field,
                values,
                negated,
            });
        }
        if self.eat_keyword("between") {
            let low = self.value()?;
            self.expect_keyword("and")?;
            let high = self.value()?;
            return Ok(Expr::Between {
                field,
                low,
                high,
                negated,
            });
        }
        if self.eat_keyword("starts_with") {
            return match self.value()? {
                Value::Str(prefix) => Ok(Expr::StartsWith {
                    field,
                    prefix,
                    negated,
                }),
                _ => Err(format!(
                    "STARTS_WITH needs a string at position {}",
                    self.at()
                )),
            };
        }
        if !negated && self.eat_keyword("is") {
            let negated = self.eat_keyword("not");
            self.expect_keyword("null")?;
            return Ok(Expr::IsNull { field, negated });
        }
        Err(format!(
            "expected an operator after {field} at position {}",
            self.at()
        ))
    }

    fn field_list(&mut self) -> Result<Vec<(String, bool)>, String> {
        let mut fields = Vec::new();
        loop {
            let at = self.at();
            let Some(Token::Ident(name)) = self.peek().cloned() else {
                return Err(format!("expected a search attribute name at position {at}"));
            };
            self.pos += 1;
            let desc = if self.eat_keyword("desc") {
                true
            } else {
                self.eat_keyword("asc");
                false
            };
            fields.push((name, desc));
            if fields.len() > MAX_ORDER_FIELDS {
                return Err(format!(
                    "too many attributes in ORDER BY or GROUP BY: at most {MAX_ORDER_FIELDS} are allowed"
                ));
            }
            if self.peek() != Some(&Token::Comma) {
                return Ok(fields);
            }
            self.pos += 1;
        }
    }
}

/// Parses a list filter. An empty string matches everything.
pub fn parse(input: &str) -> Result<Query, String> {
    if input.len() > MAX_QUERY_LENGTH {
        return Err(format!(
            "query is too long: {} bytes, at most {MAX_QUERY_LENGTH} are allowed",
            input.len()
        ));
    }
    let tokens = tokenize(input)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        len: input.len(),
        values: 0,
    };
    let mut query = Query::default();
    if p.peek().is_some() && !p.keyword("order") && !p.keyword("group") {
        query.filter = Some(p.or_expr(0)?);
    }
    loop {
        if p.eat_keyword("order") {
            p.expect_keyword("by")?;
            query.order_by = p.field_list()?;
        } else if p.eat_keyword("group") {
            p.expect_keyword("by")?;
            query.group_by = p.field_list()?.into_iter().map(|(f, _)| f).collect();
        } else {
            break;
        }
    }
    if p.peek().is_some() {
        return Err(format!("unexpected input at position {}", p.at()));
    }
    Ok(query)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(field: &str, op: Op, value: Value) -> Expr {
        Expr::Cmp {
            field: field.into(),
            op,
            value,
        }
    }

    #[test]
    fn parses_the_forms_temporal_accepts() {
        let q = parse("WorkflowType = 'a' AND (ExecutionStatus = \"Running\" OR HistoryLength >= 10) ORDER BY StartTime DESC")
            .unwrap();
        assert_eq!(
            q.filter,
            Some(Expr::And(vec![
                cmp("WorkflowType", Op::Eq, Value::Str("a".into())),
                Expr::Or(vec![
                    cmp("ExecutionStatus", Op::Eq, Value::Str("Running".into())),
                    cmp("HistoryLength", Op::Ge, Value::Int(10)),
                ]),
            ]))
        );
        assert_eq!(q.order_by, vec![("StartTime".into(), true)]);
        let q = parse("WorkflowId IN ('a','b') and StartTime between '2020-01-01T00:00:00Z' and '2030-01-01T00:00:00Z'").unwrap();
        assert!(matches!(q.filter, Some(Expr::And(..))));
        let q =
            parse("CloseTime IS NOT NULL AND WorkflowId STARTS_WITH 'x' AND `Custom Field` != 1.5")
                .unwrap();
        assert!(q.filter.is_some());
        assert_eq!(
            parse("GROUP BY ExecutionStatus").unwrap().group_by,
            vec!["ExecutionStatus".to_string()]
        );
        assert_eq!(parse("").unwrap(), Query::default());
    }

    #[test]
    fn reports_where_it_is_wrong() {
        assert!(parse("WorkflowType = ").unwrap_err().contains("position"));
        assert!(parse("Foo ==== 1").is_err());
        assert!(
            parse("WorkflowType = 'x")
                .unwrap_err()
                .contains("unterminated")
        );
        assert!(parse("(WorkflowType = 'x'").unwrap_err().contains("')'"));
        assert!(parse("WorkflowType = 'x' garbage").is_err());
    }

    #[test]
    fn bounds_hostile_queries() {
        // Deep nesting is refused before the parser recurses past the limit.
        let deep = format!(
            "{}WorkflowId = 'x'{}",
            "(".repeat(50_000),
            ")".repeat(50_000)
        );
        assert!(parse(&deep).unwrap_err().contains("too long"));
        let deep = format!(
            "{}WorkflowId = 'x'{}",
            "(".repeat(10_000),
            ")".repeat(10_000)
        );
        assert!(parse(&deep).unwrap_err().contains("nested too deeply"));
        let nots = format!("{}WorkflowId = 'x'", "NOT ".repeat(MAX_DEPTH + 1));
        assert!(parse(&nots).unwrap_err().contains("nested too deeply"));
        let ok = format!(
            "{}WorkflowId = 'x'{}",
            "(".repeat(MAX_DEPTH),
            ")".repeat(MAX_DEPTH)
        );
        assert!(parse(&ok).is_ok());
        // ORDER BY names a bounded number of attributes.
        let order = |n: usize| format!("ORDER BY {}", vec!["StartTime"; n].join(", "));
        assert_eq!(
            parse(&order(MAX_ORDER_FIELDS)).unwrap().order_by.len(),
            MAX_ORDER_FIELDS
        );
        assert!(
            parse(&order(MAX_ORDER_FIELDS + 1))
                .unwrap_err()
                .contains("too many attributes in ORDER BY")
        );
        // A long chain is one node, however long.
        let chain = vec!["HistoryLength = 1"; 1200].join(" AND ");
        match parse(&chain).unwrap().filter {
            Some(Expr::And(terms)) => assert_eq!(terms.len(), 1200),
            other => panic!("{other:?}"),
        }
        let long_in = format!(
            "WorkflowId IN ({})",
            vec!["'a'"; MAX_IN_VALUES + 1].join(",")
        );
        assert!(
            parse(&long_in)
                .unwrap_err()
                .contains("too many values in IN")
        );
        let full_in = format!("WorkflowId IN ({})", vec!["'a'"; MAX_IN_VALUES].join(","));
        assert!(parse(&full_in).is_ok());
        let list = format!("HistoryLength IN ({})", vec!["1"; MAX_IN_VALUES].join(","));
        let many = [list.as_str(); MAX_VALUES / MAX_IN_VALUES + 1].join(" OR ");
        assert!(many.len() <= MAX_QUERY_LENGTH);
        assert!(
            parse(&many)
                .unwrap_err()
                .contains("too many values in the query")
        );
        assert!(
            parse(&"a".repeat(MAX_QUERY_LENGTH + 1))
                .unwrap_err()
                .contains("too long")
        );
    }
}
