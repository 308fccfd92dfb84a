//! The tables a GoogleSQL query reads, found conservatively, so `bigquery_query` can hold the
//! model to the allow-list before anything reaches BigQuery.
//!
//! This is not a SQL parser. It tokenises the query (comments, all string forms including raw
//! and triple-quoted ones, and backtick-quoted names are understood, so text inside them
//! never counts) and then:
//! - accepts only one statement that starts with `SELECT`, `WITH` or `(`, and no `CREATE`,
//!   `MERGE` or `INTO` anywhere (reserved words, so never column names);
//! - takes as a table reference the path after every `FROM` and `JOIN`, and after every comma
//!   of an open `FROM` clause at its own nesting depth (comma joins); `EXTRACT(… FROM …)` and
//!   `IS [NOT] DISTINCT FROM` are not clauses;
//! - allows `UNNEST(…)` and parenthesised subqueries there (their own `FROM`s are checked in
//!   turn), and refuses a function call there (`EXTERNAL_QUERY(…)`, `ML.PREDICT(…)`, other
//!   table-valued functions) and `TABLE path` anywhere;
//! - remembers the names a `WITH` defines (`name AS (`), which may then be read unqualified.
//!
//! Known limits, all on the side of refusing: a correlated comma join over an array column
//! (`FROM t, t.items`) reads as a reference to table `t.items` and is refused (write
//! `UNNEST(t.items)`); names are compared exactly as written (case included), so a table
//! spelled differently from the allow-list is refused even where BigQuery would accept it; a
//! query whose shape this scanner does not understand is refused. What it cannot see are
//! tables behind views: an allowed view may read any table its owner could.

use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Analysis {
    /// Every table path read, as written (backticks removed, segments joined by `.`).
    pub tables: Vec<String>,
    /// Lower-cased names defined by `WITH`.
    pub ctes: HashSet<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Number(String),
    Str,
    Punct(char),
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    tok: Tok,
    /// Whitespace or a comment came right before it.
    spaced: bool,
}

fn tokenize(sql: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = sql.chars().collect();
    let mut tokens: Vec<Token> = Vec::new();
    let mut i = 0;
    let mut spaced = false;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            spaced = true;
            i += 1;
        } else if c == '#' || (c == '-' && next == Some('-')) {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            spaced = true;
        } else if c == '/' && next == Some('*') {
            let end = find(&chars, i + 2, &['*', '/'])
                .ok_or("the query has an unterminated /* comment")?;
            i = end + 2;
            spaced = true;
        } else if c == '\'' || c == '"' {
            // A string, possibly with an r/b/rb/br prefix just tokenised as a word.
            let mut raw = false;
            if let Some(last) = tokens.last()
                && !spaced
                && let Tok::Word(w) = &last.tok
                && matches!(w.to_ascii_lowercase().as_str(), "r" | "b" | "rb" | "br")
            {
                raw = w.to_ascii_lowercase().contains('r');
                tokens.pop();
            }
            i = skip_string(&chars, i, raw)?;
            tokens.push(Token {
                tok: Tok::Str,
                spaced,
            });
            spaced = false;
        } else if c == '`' {
            let mut name = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("the query has an unterminated `quoted name`".into()),
                    Some('`') => break,
                    Some('\\') => {
                        if let Some(escaped) = chars.get(i + 1) {
                            name.push(*escaped);
                        }
                        i += 2;
                    }
                    Some(other) => {
                        name.push(*other);
                        i += 1;
                    }
                }
            }
            i += 1;
            tokens.push(Token {
                tok: Tok::Quoted(name),
                spaced,
            });
            spaced = false;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token {
                tok: Tok::Word(chars[start..i].iter().collect()),
                spaced,
            });
            spaced = false;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token {
                tok: Tok::Number(chars[start..i].iter().collect()),
                spaced,
            });
            spaced = false;
        } else {
            tokens.push(Token {
                tok: Tok::Punct(c),
                spaced,
            });
            spaced = false;
            i += 1;
        }
    }
    Ok(tokens)
}

/// Index of the first occurrence of `pattern` at or after `from`.
fn find(chars: &[char], from: usize, pattern: &[char]) -> Option<usize> {
    (from..chars.len()).find(|&i| chars[i..].starts_with(pattern))
}

/// Skips a string literal starting at `start` (its opening quote); answers the index after it.
fn skip_string(chars: &[char], start: usize, raw: bool) -> Result<usize, String> {
    let quote = chars[start];
    let triple = [quote, quote, quote];
    if chars[start..].starts_with(&triple) {
        let mut i = start + 3;
        loop {
            if i >= chars.len() {
                return Err("the query has an unterminated triple-quoted string".into());
            }
            if !raw && chars[i] == '\\' {
                i += 2;
                continue;
            }
            if chars[i..].starts_with(&triple) {
                return Ok(i + 3);
            }
            i += 1;
        }
    }
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => return Err("the query has an unterminated string".into()),
            Some('\\') if !raw => i += 2,
            Some(c) if *c == quote => return Ok(i + 1),
            Some(_) => i += 1,
        }
    }
}

fn word(token: Option<&Token>) -> Option<String> {
    match token.map(|t| &t.tok) {
        Some(Tok::Word(w)) => Some(w.to_ascii_uppercase()),
        _ => None,
    }
}

fn is_punct(token: Option<&Token>, c: char) -> bool {
    matches!(token.map(|t| &t.tok), Some(Tok::Punct(p)) if *p == c)
}

/// Reserved words that can never start a table path.
const RESERVED: &[&str] = &[
    "ALL",
    "AND",
    "ANY",
    "ARRAY",
    "AS",
    "ASC",
    "AT",
    "BETWEEN",
    "BY",
    "CASE",
    "CAST",
    "CREATE",
    "CROSS",
    "CUBE",
    "CURRENT",
    "DEFAULT",
    "DESC",
    "DISTINCT",
    "ELSE",
    "END",
    "EXCEPT",
    "EXISTS",
    "EXTRACT",
    "FALSE",
    "FOR",
    "FROM",
    "FULL",
    "GROUP",
    "GROUPING",
    "HAVING",
    "IF",
    "IN",
    "INNER",
    "INTERSECT",
    "INTERVAL",
    "INTO",
    "IS",
    "JOIN",
    "LATERAL",
    "LEFT",
    "LIKE",
    "LIMIT",
    "MERGE",
    "NATURAL",
    "NOT",
    "NULL",
    "OF",
    "ON",
    "OR",
    "ORDER",
    "OUTER",
    "OVER",
    "PARTITION",
    "QUALIFY",
    "RECURSIVE",
    "RIGHT",
    "ROLLUP",
    "ROWS",
    "SELECT",
    "SET",
    "STRUCT",
    "TABLESAMPLE",
    "THEN",
    "TO",
    "TRUE",
    "UNION",
    "UNNEST",
    "USING",
    "WHEN",
    "WHERE",
    "WINDOW",
    "WITH",
];

/// Words that end a `FROM` clause at its depth.
const CLAUSE_ENDS: &[&str] = &[
    "WHERE",
    "GROUP",
    "HAVING",
    "QUALIFY",
    "WINDOW",
    "ORDER",
    "LIMIT",
    "UNION",
    "INTERSECT",
    "EXCEPT",
    "SELECT",
];

fn starts_path(token: Option<&Token>) -> bool {
    match token.map(|t| &t.tok) {
        Some(Tok::Quoted(_)) => true,
        Some(Tok::Word(w)) => !RESERVED.contains(&w.to_ascii_uppercase().as_str()),
        _ => false,
    }
}

/// Reads a path (`a.b.c`, `my-project.ds.events_*`, `` `p.d`.t ``) starting at `i`; answers
/// it and the index after it. Segments join on `.` or `-` only when nothing separates them.
fn read_path(tokens: &[Token], mut i: usize) -> (String, usize) {
    let segment = |t: &Token| match &t.tok {
        Tok::Word(s) | Tok::Quoted(s) | Tok::Number(s) => Some(s.clone()),
        _ => None,
    };
    let mut path = tokens.get(i).and_then(segment).unwrap_or_default();
    i += 1;
    while let (Some(sep), next) = (tokens.get(i), tokens.get(i + 1)) {
        match &sep.tok {
            Tok::Punct(c @ ('.' | '-')) if !sep.spaced => {
                match next.filter(|t| !t.spaced).and_then(segment) {
                    Some(s) => {
                        path.push(*c);
                        path.push_str(&s);
                        i += 2;
                    }
                    None => break,
                }
            }
            Tok::Punct('*') if !sep.spaced => {
                path.push('*');
                i += 1;
                break;
            }
            _ => break,
        }
    }
    (path, i)
}

pub(crate) fn analyse(sql: &str) -> Result<Analysis, String> {
    let tokens = tokenize(sql)?;
    match tokens.first() {
        Some(t) if matches!(word(Some(t)).as_deref(), Some("SELECT" | "WITH")) => {}
        Some(t) if is_punct(Some(t), '(') => {}
        None => return Err("the query is empty".into()),
        _ => {
            return Err("only read queries are allowed: start with SELECT or WITH".into());
        }
    }
    let mut tables = Vec::new();
    let mut ctes = HashSet::new();
    // Open parentheses: whether each belongs to EXTRACT(…).
    let mut parens: Vec<bool> = Vec::new();
    // Depths at which a FROM clause is open.
    let mut from_depths: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        let depth = parens.len();
        let mut expect_table = false;
        match &token.tok {
            Tok::Punct('(') => {
                let extract = i > 0 && word(tokens.get(i - 1)).as_deref() == Some("EXTRACT");
                parens.push(extract);
            }
            Tok::Punct(')') => {
                parens.pop().ok_or("the query has an unbalanced ')'")?;
                from_depths.retain(|d| *d <= parens.len());
            }
            Tok::Punct(';') if tokens.len() > i + 1 => {
                return Err("only one statement is allowed".into());
            }
            Tok::Punct(',') => expect_table = from_depths.last() == Some(&depth),
            Tok::Word(w) => match w.to_ascii_uppercase().as_str() {
                "CREATE" | "MERGE" | "INTO" => {
                    return Err("only read queries are allowed".into());
                }
                "TABLE" if starts_path(tokens.get(i + 1)) => {
                    return Err("TABLE references are not allowed; use FROM".into());
                }
                "FROM" => {
                    let in_extract = parens.last().copied().unwrap_or(false);
                    let distinct = i >= 2
                        && word(tokens.get(i - 1)).as_deref() == Some("DISTINCT")
                        && matches!(word(tokens.get(i - 2)).as_deref(), Some("IS" | "NOT"));
                    if !in_extract && !distinct {
                        if from_depths.last() != Some(&depth) {
                            from_depths.push(depth);
                        }
                        expect_table = true;
                    }
                }
                "JOIN" => expect_table = true,
                "AS" if is_punct(tokens.get(i + 1), '(') && i > 0 => {
                    if let Some(Tok::Word(name) | Tok::Quoted(name)) =
                        tokens.get(i - 1).map(|t| &t.tok)
                    {
                        ctes.insert(name.to_ascii_lowercase());
                    }
                }
                upper if CLAUSE_ENDS.contains(&upper) => {
                    while from_depths.last() == Some(&depth) {
                        from_depths.pop();
                    }
                }
                _ => {}
            },
            _ => {}
        }
        i += 1;
        if expect_table {
            let next = tokens.get(i);
            if is_punct(next, '(') || word(next).as_deref() == Some("UNNEST") {
                continue;
            }
            if !starts_path(next) {
                return Err("could not read the table name after FROM/JOIN".into());
            }
            let (path, after) = read_path(&tokens, i);
            if is_punct(tokens.get(after), '(') {
                return Err(format!(
                    "table functions such as {path}(…) are not allowed; read allowed tables \
                     directly"
                ));
            }
            tables.push(path);
            i = after;
        }
    }
    if !parens.is_empty() {
        return Err("the query has an unbalanced '('".into());
    }
    Ok(Analysis { tables, ctes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(sql: &str) -> Vec<String> {
        analyse(sql)
            .map(|a| a.tables)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    #[test]
    fn plain_qualified_and_quoted_tables_are_found() {
        assert_eq!(
            tables("SELECT a FROM logs.auth WHERE x = 1"),
            vec!["logs.auth"]
        );
        assert_eq!(
            tables("select * from `my-proj.logs.auth` a join my-proj.logs.dns d on a.ip = d.ip"),
            vec!["my-proj.logs.auth", "my-proj.logs.dns"]
        );
        assert_eq!(
            tables("SELECT 1 FROM `my-proj`.logs.`events_*` WHERE _TABLE_SUFFIX > '2026'"),
            vec!["my-proj.logs.events_*"]
        );
        assert_eq!(tables("SELECT 1 FROM logs.events_*"), vec!["logs.events_*"]);
    }

    #[test]
    fn comma_joins_subqueries_and_ctes_are_followed() {
        let a = analyse(
            "WITH recent AS (SELECT * FROM logs.auth WHERE ts > '2026-01-01'), \
             bad AS (SELECT ip FROM logs.blocklist) \
             SELECT r.user FROM recent r, bad b, UNNEST(r.ips) ip \
             WHERE r.ip IN (SELECT ip FROM logs.dns) AND EXTRACT(HOUR FROM r.ts) > 3 \
             AND r.a IS NOT DISTINCT FROM b.a",
        )
        .unwrap();
        assert_eq!(
            a.tables,
            vec!["logs.auth", "logs.blocklist", "recent", "bad", "logs.dns"]
        );
        assert!(a.ctes.contains("recent") && a.ctes.contains("bad"));
    }

    #[test]
    fn names_inside_strings_and_comments_do_not_count() {
        assert_eq!(
            tables(
                "SELECT 'FROM secret.t', \"JOIN x.y\", r'\\' , '''FROM a.b''' \
                 -- FROM hidden.one\n /* JOIN hidden.two */ FROM logs.auth # FROM c.d"
            ),
            vec!["logs.auth"]
        );
    }

    #[test]
    fn a_raw_string_ending_in_a_backslash_cannot_hide_a_table() {
        // Read with escapes, r'\' would swallow the rest of the query up to the quote in
        // the comment, hiding secret.t.
        assert_eq!(tables("SELECT r'\\' FROM secret.t --'"), vec!["secret.t"]);
    }

    #[test]
    fn writes_scripts_and_table_functions_are_refused() {
        for sql in [
            "INSERT INTO logs.auth VALUES (1)",
            "DELETE FROM logs.auth WHERE true",
            "SELECT 1; DROP TABLE logs.auth",
            "CREATE TEMP TABLE x AS SELECT 1",
            "SELECT * FROM EXTERNAL_QUERY('conn', 'select 1')",
            "SELECT * FROM ML.PREDICT(MODEL m.x, TABLE logs.auth)",
            "EXECUTE IMMEDIATE 'SELECT * FROM secret.t'",
            "DECLARE x INT64",
            "FROM logs.auth |> SELECT 1",
            "SELECT * FROM",
            "SELECT * FROM (SELECT 1",
            "SELECT 'unterminated FROM logs.auth",
            "",
        ] {
            assert!(analyse(sql).is_err(), "{sql:?} should be refused");
        }
        assert_eq!(tables("SELECT 1;"), Vec::<String>::new());
    }
}
