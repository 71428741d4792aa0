//! A parser and evaluator for the subset of Airtable's formula language the fake needs.
//!
//! The fake must *parse* what the filter compiler emits — not compare strings with it — so that a
//! wrong escape in the compiler shows up as a wrong result (or a 422) in tests, just as it would on
//! Airtable. Supported: field references `{Name}`, string literals in double or single quotes with
//! backslash escapes, numbers, `= != < > <= >=`, `&` (concatenation), `+ -`, parentheses, and the
//! functions AND, OR, NOT, IF, TRUE, FALSE, BLANK, LEN, FIND, ARRAYJOIN, LOWER, UPPER, TRIM, RECORD_ID.
//! Values follow Airtable's loose typing: blank equals `""` and `0`, `&` turns anything into text, a
//! linked-record field is the list of the linked records' primary values.

use std::collections::HashMap;

/// A formula value.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    Text(String),
    Num(f64),
    Bool(bool),
    Blank,
    List(Vec<V>),
}

impl V {
    pub fn to_text(&self) -> String {
        match self {
            V::Text(s) => s.clone(),
            V::Num(n) => fmt_num(*n),
            V::Bool(b) => if *b { "1" } else { "0" }.to_string(),
            V::Blank => String::new(),
            V::List(items) => items.iter().map(V::to_text).collect::<Vec<_>>().join(", "),
        }
    }

    fn to_num(&self) -> f64 {
        match self {
            V::Num(n) => *n,
            V::Bool(b) => f64::from(u8::from(*b)),
            V::Blank => 0.0,
            V::Text(s) => s.trim().parse().unwrap_or(f64::NAN),
            V::List(_) => self.to_text().trim().parse().unwrap_or(f64::NAN),
        }
    }

    pub fn truthy(&self) -> bool {
        match self {
            V::Text(s) => !s.is_empty(),
            V::Num(n) => *n != 0.0 && !n.is_nan(),
            V::Bool(b) => *b,
            V::Blank => false,
            V::List(items) => !items.is_empty(),
        }
    }
}

fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

fn equals(a: &V, b: &V) -> bool {
    match (a, b) {
        (V::Blank, V::Blank) => true,
        (V::Blank, x) | (x, V::Blank) => match x {
            V::Text(s) => s.is_empty(),
            V::Num(n) => *n == 0.0,
            V::Bool(b) => !b,
            V::List(l) => l.is_empty(),
            V::Blank => true,
        },
        (V::Num(_) | V::Bool(_), V::Num(_) | V::Bool(_)) => a.to_num() == b.to_num(),
        (V::Num(n), V::Text(s)) | (V::Text(s), V::Num(n)) => *s == fmt_num(*n),
        _ => a.to_text() == b.to_text(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Field(String),
    Str(String),
    Num(f64),
    Ident(String),
    LParen,
    RParen,
    Comma,
    Op(&'static str),
}

fn tokenize(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '{' => {
                let mut name = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated field reference".into()),
                        Some('}') => break,
                        Some(ch) => name.push(*ch),
                    }
                    i += 1;
                }
                i += 1;
                out.push(Tok::Field(name));
            }
            '"' | '\'' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated string literal".into()),
                        Some('\\') => {
                            let esc = chars
                                .get(i + 1)
                                .ok_or("dangling backslash in string literal")?;
                            s.push(match esc {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                other => *other,
                            });
                            i += 2;
                            continue;
                        }
                        Some(ch) if *ch == quote => break,
                        Some(ch) => s.push(*ch),
                    }
                    i += 1;
                }
                i += 1;
                out.push(Tok::Str(s));
            }
            '0'..='9' | '.' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_digit() || chars[i] == '.' || chars[i] == 'e')
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                out.push(Tok::Num(
                    text.parse().map_err(|_| format!("bad number {text}"))?,
                ));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push(Tok::Ident(
                    chars[start..i].iter().collect::<String>().to_uppercase(),
                ));
            }
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            _ => {
                let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                let op = match two.as_str() {
                    "!=" => Some("!="),
                    "<=" => Some("<="),
                    ">=" => Some(">="),
                    _ => None,
                };
                if let Some(op) = op {
                    out.push(Tok::Op(op));
                    i += 2;
                    continue;
                }
                let op = match c {
                    '=' => "=",
                    '<' => "<",
                    '>' => ">",
                    '&' => "&",
                    '+' => "+",
                    '-' => "-",
                    _ => return Err(format!("unexpected character {c:?}")),
                };
                out.push(Tok::Op(op));
                i += 1;
            }
        }
    }
    Ok(out)
}

/// A parsed formula.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Lit(V),
    Field(String),
    Call(String, Vec<Expr>),
    Bin(&'static str, Box<Expr>, Box<Expr>),
    Neg(Box<Expr>),
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn peek_op(&self, ops: &[&str]) -> Option<&'static str> {
        match self.peek() {
            Some(Tok::Op(o)) if ops.contains(o) => Some(o),
            _ => None,
        }
    }
    fn expr(&mut self) -> Result<Expr, String> {
        let mut left = self.concat()?;
        while let Some(op) = self.peek_op(&["=", "!=", "<", ">", "<=", ">="]) {
            self.pos += 1;
            let right = self.concat()?;
            left = Expr::Bin(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn concat(&mut self) -> Result<Expr, String> {
        let mut left = self.additive()?;
        while self.peek_op(&["&"]).is_some() {
            self.pos += 1;
            let right = self.additive()?;
            left = Expr::Bin("&", Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn additive(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        while let Some(op) = self.peek_op(&["+", "-"]) {
            self.pos += 1;
            let right = self.unary()?;
            left = Expr::Bin(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn unary(&mut self) -> Result<Expr, String> {
        if self.peek_op(&["-"]).is_some() {
            self.pos += 1;
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        self.primary()
    }
    fn primary(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Tok::Num(n)) => Ok(Expr::Lit(V::Num(n))),
            Some(Tok::Str(s)) => Ok(Expr::Lit(V::Text(s))),
            Some(Tok::Field(f)) => Ok(Expr::Field(f)),
            Some(Tok::LParen) => {
                let e = self.expr()?;
                match self.next() {
                    Some(Tok::RParen) => Ok(e),
                    _ => Err("missing )".into()),
                }
            }
            Some(Tok::Ident(name)) => {
                if self.peek() != Some(&Tok::LParen) {
                    return match name.as_str() {
                        "TRUE" => Ok(Expr::Lit(V::Bool(true))),
                        "FALSE" => Ok(Expr::Lit(V::Bool(false))),
                        _ => Err(format!("unknown identifier {name}")),
                    };
                }
                self.pos += 1;
                let mut args = Vec::new();
                if self.peek() == Some(&Tok::RParen) {
                    self.pos += 1;
                } else {
                    loop {
                        args.push(self.expr()?);
                        match self.next() {
                            Some(Tok::Comma) => continue,
                            Some(Tok::RParen) => break,
                            _ => return Err(format!("expected , or ) in {name}(...)")),
                        }
                    }
                }
                const KNOWN: &[&str] = &[
                    "AND",
                    "OR",
                    "NOT",
                    "IF",
                    "TRUE",
                    "FALSE",
                    "BLANK",
                    "LEN",
                    "FIND",
                    "ARRAYJOIN",
                    "LOWER",
                    "UPPER",
                    "TRIM",
                    "RECORD_ID",
                ];
                if !KNOWN.contains(&name.as_str()) {
                    return Err(format!("unknown function {name}"));
                }
                Ok(Expr::Call(name, args))
            }
            other => Err(format!("unexpected token {other:?}")),
        }
    }
}

/// Parses a formula; the error text is what the fake puts in its 422.
pub fn parse(src: &str) -> Result<Expr, String> {
    let mut p = Parser {
        toks: tokenize(src)?,
        pos: 0,
    };
    let e = p.expr()?;
    if p.pos != p.toks.len() {
        return Err(format!("unexpected trailing input at token {}", p.pos));
    }
    Ok(e)
}

impl Expr {
    /// Field names referenced (to report unknown fields as Airtable does).
    pub fn fields(&self, out: &mut Vec<String>) {
        match self {
            Expr::Field(f) => out.push(f.clone()),
            Expr::Call(_, args) => args.iter().for_each(|a| a.fields(out)),
            Expr::Bin(_, a, b) => {
                a.fields(out);
                b.fields(out);
            }
            Expr::Neg(a) => a.fields(out),
            Expr::Lit(_) => {}
        }
    }

    /// Evaluates against one record's field values (links already resolved to primary values).
    pub fn eval(&self, fields: &HashMap<String, V>, record_id: &str) -> V {
        let arg = |args: &[Expr], i: usize| {
            args.get(i)
                .map(|a| a.eval(fields, record_id))
                .unwrap_or(V::Blank)
        };
        match self {
            Expr::Lit(v) => v.clone(),
            Expr::Field(f) => fields.get(f).cloned().unwrap_or(V::Blank),
            Expr::Neg(a) => V::Num(-a.eval(fields, record_id).to_num()),
            Expr::Bin(op, a, b) => {
                let (x, y) = (a.eval(fields, record_id), b.eval(fields, record_id));
                match *op {
                    "=" => V::Bool(equals(&x, &y)),
                    "!=" => V::Bool(!equals(&x, &y)),
                    "<" => V::Bool(x.to_num() < y.to_num()),
                    ">" => V::Bool(x.to_num() > y.to_num()),
                    "<=" => V::Bool(x.to_num() <= y.to_num()),
                    ">=" => V::Bool(x.to_num() >= y.to_num()),
                    "&" => V::Text(x.to_text() + &y.to_text()),
                    "+" => V::Num(x.to_num() + y.to_num()),
                    "-" => V::Num(x.to_num() - y.to_num()),
                    _ => V::Blank,
                }
            }
            Expr::Call(name, args) => match name.as_str() {
                "AND" => V::Bool(args.iter().all(|a| a.eval(fields, record_id).truthy())),
                "OR" => V::Bool(args.iter().any(|a| a.eval(fields, record_id).truthy())),
                "NOT" => V::Bool(!arg(args, 0).truthy()),
                "IF" => {
                    if arg(args, 0).truthy() {
                        arg(args, 1)
                    } else {
                        arg(args, 2)
                    }
                }
                "TRUE" => V::Bool(true),
                "FALSE" => V::Bool(false),
                "BLANK" => V::Blank,
                "LEN" => V::Num(arg(args, 0).to_text().chars().count() as f64),
                "LOWER" => V::Text(arg(args, 0).to_text().to_lowercase()),
                "UPPER" => V::Text(arg(args, 0).to_text().to_uppercase()),
                "TRIM" => V::Text(arg(args, 0).to_text().trim().to_string()),
                "RECORD_ID" => V::Text(record_id.to_string()),
                "FIND" => {
                    let needle = arg(args, 0).to_text();
                    let hay = arg(args, 1).to_text();
                    match hay.find(&needle) {
                        Some(byte) => V::Num((hay[..byte].chars().count() + 1) as f64),
                        None => V::Num(0.0),
                    }
                }
                "ARRAYJOIN" => {
                    let sep = if args.len() > 1 {
                        arg(args, 1).to_text()
                    } else {
                        ", ".into()
                    };
                    match arg(args, 0) {
                        V::List(items) => {
                            V::Text(items.iter().map(V::to_text).collect::<Vec<_>>().join(&sep))
                        }
                        other => V::Text(other.to_text()),
                    }
                }
                _ => V::Blank,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(src: &str, fields: &[(&str, V)]) -> V {
        let map = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        parse(src).unwrap().eval(&map, "rec0HLFTLAXuJ6suq")
    }

    #[test]
    fn evaluates_what_the_compiler_emits() {
        let f = [("Key", V::Text(r#"a"b\"#.into()))];
        assert_eq!(eval(r#"{Key} = "a\"b\\""#, &f), V::Bool(true));
        assert_eq!(eval(r#"{Key} = "a\"b""#, &f), V::Bool(false));
        assert_eq!(eval(r#"LEN({Missing} & "") = 0"#, &f), V::Bool(true));
        assert_eq!(eval(r#"NOT(LEN({Key} & "") = 0)"#, &f), V::Bool(true));
        let links = [(
            "Run",
            V::List(vec![V::Text("r1".into()), V::Text("r2".into())]),
        )];
        assert_eq!(
            eval(
                r#"FIND("|r2|", "|" & ARRAYJOIN({Run}, "|") & "|") > 0"#,
                &links
            ),
            V::Bool(true)
        );
        assert_eq!(
            eval(
                r#"FIND("|r|", "|" & ARRAYJOIN({Run}, "|") & "|") > 0"#,
                &links
            ),
            V::Bool(false)
        );
        assert_eq!(
            eval("AND({N} = 2, TRUE())", &[("N", V::Num(2.0))]),
            V::Bool(true)
        );
        assert!(parse(r#"{Key} = "unterminated"#).is_err());
        assert!(parse("EVIL({Key})").is_err());
        assert!(parse(r#"{Key} = "x" "y""#).is_err());
    }
}
