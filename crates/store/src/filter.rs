//! A small typed filter expression, compiled to an Airtable formula or (in `sqlite.rs`) to SQL.
//!
//! Callers never write formulas: they build a [`Filter`] and the store compiles it. Values are escaped
//! when they become formula string literals — the backslash first, then the double quote, so an input
//! ending in `\` cannot swallow the closing quote — and field names are checked against a conservative
//! alphabet instead of being escaped, because Airtable's rules for `}` inside `{...}` are not documented
//! well enough to rely on. The SQLite backend binds every value as a parameter.
//!
//! Semantics shared by both backends (the fake Airtable evaluates the emitted formulas the same way):
//! - `Eq(field, Text(s))` is exact, case-sensitive string equality; `Eq(field, Text(""))` means blank.
//! - `IsBlank(field)` is true when the field is absent or empty. Both stores drop empty values
//!   (`null`, `""`, `[]`, `false`) on write, as Airtable omits them from responses.
//! - `LinkContains { field, primary_value }`: in an Airtable formula a linked-record field evaluates to the
//!   **primary-field values** of the linked records, not their record ids (documented Airtable behaviour).
//!   So this filter matches records where one of the linked records has that primary value (for example a
//!   Run's `Key`, or a User's `Name`). To look a record up by id use `Store::get`; to find records linked to
//!   a given id, filter on the linked record's primary value instead.

use crate::StoreError;

/// A literal value in a filter.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterValue {
    Text(String),
    Number(f64),
    Bool(bool),
}

impl From<&str> for FilterValue {
    fn from(s: &str) -> Self {
        FilterValue::Text(s.to_string())
    }
}
impl From<String> for FilterValue {
    fn from(s: String) -> Self {
        FilterValue::Text(s)
    }
}
impl From<&String> for FilterValue {
    fn from(s: &String) -> Self {
        FilterValue::Text(s.clone())
    }
}
impl From<f64> for FilterValue {
    fn from(n: f64) -> Self {
        FilterValue::Number(n)
    }
}
impl From<i64> for FilterValue {
    fn from(n: i64) -> Self {
        FilterValue::Number(n as f64)
    }
}
impl From<bool> for FilterValue {
    fn from(b: bool) -> Self {
        FilterValue::Bool(b)
    }
}

/// A filter over one table's fields.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `field = value` (exact).
    Eq(String, FilterValue),
    /// All of (an empty list is true).
    And(Vec<Filter>),
    /// Any of (an empty list is false).
    Or(Vec<Filter>),
    Not(Box<Filter>),
    /// The field is absent or empty.
    IsBlank(String),
    /// One of the records linked in `field` has `primary_value` as its primary-field value (see the module
    /// docs: formulas see primary values, not ids).
    LinkContains {
        field: String,
        primary_value: String,
    },
}

impl Filter {
    pub fn eq(field: &str, value: impl Into<FilterValue>) -> Filter {
        Filter::Eq(field.to_string(), value.into())
    }
    pub fn is_blank(field: &str) -> Filter {
        Filter::IsBlank(field.to_string())
    }
    pub fn link_contains(field: &str, primary_value: &str) -> Filter {
        Filter::LinkContains {
            field: field.to_string(),
            primary_value: primary_value.to_string(),
        }
    }
    pub fn and(filters: impl IntoIterator<Item = Filter>) -> Filter {
        Filter::And(filters.into_iter().collect())
    }
    pub fn or(filters: impl IntoIterator<Item = Filter>) -> Filter {
        Filter::Or(filters.into_iter().collect())
    }
    #[allow(clippy::should_implement_trait)]
    pub fn not(filter: Filter) -> Filter {
        Filter::Not(Box::new(filter))
    }

    /// Every field name the filter mentions (used to report unknown fields before a request).
    pub fn fields(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_fields(&mut out);
        out
    }

    fn collect_fields<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Filter::Eq(f, _) | Filter::IsBlank(f) | Filter::LinkContains { field: f, .. } => {
                out.push(f)
            }
            Filter::And(v) | Filter::Or(v) => v.iter().for_each(|f| f.collect_fields(out)),
            Filter::Not(f) => f.collect_fields(out),
        }
    }

    /// Compiles to an Airtable formula for `filterByFormula`.
    pub fn to_formula(&self) -> Result<String, StoreError> {
        let mut out = String::new();
        self.write_formula(&mut out)?;
        Ok(out)
    }

    fn write_formula(&self, out: &mut String) -> Result<(), StoreError> {
        match self {
            Filter::Eq(field, FilterValue::Text(s)) if s.is_empty() => {
                Filter::IsBlank(field.clone()).write_formula(out)?
            }
            Filter::Eq(field, FilterValue::Text(s)) => {
                out.push_str(&field_ref(field)?);
                out.push_str(" = ");
                out.push_str(&string_literal(s));
            }
            Filter::Eq(field, FilterValue::Number(n)) => {
                out.push_str(&field_ref(field)?);
                out.push_str(" = ");
                out.push_str(&number_literal(*n)?);
            }
            Filter::Eq(field, FilterValue::Bool(true)) => {
                out.push_str(&field_ref(field)?);
                out.push_str(" = TRUE()");
            }
            Filter::Eq(field, FilterValue::Bool(false)) => {
                out.push_str("NOT(");
                out.push_str(&field_ref(field)?);
                out.push(')');
            }
            Filter::And(items) | Filter::Or(items) => {
                let (name, empty) = if matches!(self, Filter::And(_)) {
                    ("AND", "TRUE()")
                } else {
                    ("OR", "FALSE()")
                };
                if items.is_empty() {
                    out.push_str(empty);
                    return Ok(());
                }
                out.push_str(name);
                out.push('(');
                for (i, f) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    f.write_formula(out)?;
                }
                out.push(')');
            }
            Filter::Not(inner) => {
                out.push_str("NOT(");
                inner.write_formula(out)?;
                out.push(')');
            }
            Filter::IsBlank(field) => {
                // `& ""` turns any field type (numbers, links, checkboxes) into text, so one test covers all.
                out.push_str("LEN(");
                out.push_str(&field_ref(field)?);
                out.push_str(" & \"\") = 0");
            }
            Filter::LinkContains {
                field,
                primary_value,
            } => {
                if primary_value.contains(LINK_SEPARATOR) {
                    return Err(StoreError::InvalidFilter(format!(
                        "a linked-record value may not contain the separator {LINK_SEPARATOR:?}"
                    )));
                }
                // Wrapping the joined values in separators makes this a whole-value match, not a substring.
                let needle = format!("{LINK_SEPARATOR}{primary_value}{LINK_SEPARATOR}");
                let sep = string_literal(&LINK_SEPARATOR.to_string());
                out.push_str(&format!(
                    "FIND({}, {sep} & ARRAYJOIN({}, {sep}) & {sep}) > 0",
                    string_literal(&needle),
                    field_ref(field)?
                ));
            }
        }
        Ok(())
    }
}

/// Separator used to join linked primary values in `LinkContains`: a printable but practically unused
/// character (SYMBOL FOR UNIT SEPARATOR), so that whole-value matching is unambiguous.
pub const LINK_SEPARATOR: char = '\u{241F}';

/// Checks a field name: non-empty, at most 255 characters, and none of `{ } " \` or control characters.
pub fn check_field_name(name: &str) -> Result<(), StoreError> {
    let bad = name.is_empty()
        || name.chars().count() > 255
        || name
            .chars()
            .any(|c| matches!(c, '{' | '}' | '"' | '\\') || c.is_control());
    if bad {
        return Err(StoreError::InvalidFilter(format!(
            "field name {name:?} is not allowed in a filter (no braces, quotes, backslashes or control characters)"
        )));
    }
    Ok(())
}

fn field_ref(name: &str) -> Result<String, StoreError> {
    check_field_name(name)?;
    Ok(format!("{{{name}}}"))
}

/// A formula string literal: backslash first, then the double quote.
pub fn string_literal(s: &str) -> String {
    let escaped = s.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

fn number_literal(n: f64) -> Result<String, StoreError> {
    if !n.is_finite() {
        return Err(StoreError::InvalidFilter(format!(
            "{n} is not a finite number"
        )));
    }
    Ok(format!("{n}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_backslash_then_quote() {
        assert_eq!(string_literal(r#"a"b"#), r#""a\"b""#);
        assert_eq!(string_literal(r"a\"), r#""a\\""#);
        assert_eq!(string_literal(r#"\""#), r#""\\\"""#);
    }

    #[test]
    fn compiles_expressions() {
        let f = Filter::and([
            Filter::eq("Status", "Queued"),
            Filter::not(Filter::is_blank("User")),
            Filter::or([
                Filter::eq("Attempt", 2i64),
                Filter::eq("Gate1 Passed", true),
            ]),
        ]);
        assert_eq!(
            f.to_formula().unwrap(),
            r#"AND({Status} = "Queued", NOT(LEN({User} & "") = 0), OR({Attempt} = 2, {Gate1 Passed} = TRUE()))"#
        );
        assert_eq!(Filter::and([]).to_formula().unwrap(), "TRUE()");
        assert_eq!(
            Filter::eq("Key", "").to_formula().unwrap(),
            r#"LEN({Key} & "") = 0"#
        );
        assert!(Filter::eq("Bad}", "x").to_formula().is_err());
        assert!(Filter::eq("N", f64::NAN).to_formula().is_err());
        let l = Filter::link_contains("Run", "r1").to_formula().unwrap();
        assert!(l.starts_with("FIND(\"\u{241F}r1\u{241F}\""), "{l}");
        assert_eq!(
            f.fields(),
            vec!["Status", "User", "Attempt", "Gate1 Passed"]
        );
    }
}
