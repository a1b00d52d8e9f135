//! The math answer grader: extraction, normalisation and equivalence (spec 2.5-2.6).
//!
//! Owns: [`extract_answer`] (last `\boxed{}`/`\fbox{}`, then "the answer is" fallbacks),
//! [`strip_string`] (rStar's normalisation), [`parse_answer`] into a structured [`Answer`]
//! (scalar expression, tuple/interval with its brackets, unordered set or bare list, union of
//! intervals, matrix, equation, text), and [`equal`], a symmetric equivalence decided in pure
//! Rust: exact string match, then structure by structure, scalars compared numerically with
//! relative tolerance 1e-4 as complex values with every variable sampled at fixed points
//! (polynomial identity by evaluation, so `x^2-1` equals `(x-1)(x+1)`), integers exactly,
//! percent variants (x100, /100) only when a side carries `%`, choice letters A-E.
//! [`equal_symbolic`] adds an optional sympy check through the executor for pairs the fast path
//! cannot read.

mod expr;
mod extract;
mod normalize;

pub use expr::{parse as parse_expr, Expr};
pub use extract::{extract_answer, last_boxed};
pub use normalize::strip_string;

use std::collections::BTreeSet;

use crate::exec::Executor;

/// A structured answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Scalar(Expr),
    /// `(a, b)`, `[a, b)`, ...: ordered, brackets matter (open vs closed intervals).
    Tuple {
        open: char,
        close: char,
        items: Vec<Answer>,
    },
    /// `\{a, b\}`, `a, b`, `a \pm b`: unordered.
    Set(Vec<Answer>),
    /// `I_1 \cup I_2`: unordered intervals.
    Union(Vec<Answer>),
    Matrix(Vec<Vec<Answer>>),
    /// `lhs = rhs`, compared as `lhs - rhs` up to sign.
    Equation(Expr, Expr),
    /// Anything else, compared case-insensitively.
    Text(String),
}

/// Splits at top-level occurrences of `sep` (outside any brackets).
fn split_top<'a>(s: &'a str, sep: &str) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut last = 0;
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        if depth == 0 && b[i..].starts_with(sep.as_bytes()) {
            parts.push(&s[last..i]);
            i += sep.len();
            last = i;
            continue;
        }
        i += 1;
    }
    parts.push(&s[last..]);
    parts
}

/// Whether `s` is wrapped by one bracket pair that closes at the very end.
fn outer_brackets(s: &str) -> Option<(char, char, &str)> {
    let open = s.chars().next()?;
    let close = s.chars().last()?;
    if !"([{".contains(open) || !")]}".contains(close) || s.len() < 2 {
        return None;
    }
    let mut depth = 0i32;
    for (i, c) in s.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth == 0 && i != s.len() - 1 {
                    return None;
                }
            }
            _ => {}
        }
    }
    Some((open, close, &s[1..s.len() - 1]))
}

fn parse_matrix(s: &str) -> Option<Answer> {
    let start = s.find("\\begin{pmatrix}")? + "\\begin{pmatrix}".len();
    let end = s.rfind("\\end{pmatrix}")?;
    let body = s.get(start..end)?;
    let body = if body.starts_with('{') && !body.contains('&') {
        body
    } else {
        // `\begin{array}{cc}` became `\begin{pmatrix}{cc}`: drop the column spec.
        match body.strip_prefix('{') {
            Some(r)
                if r.find('}')
                    .is_some_and(|p| r[..p].chars().all(|c| "lcr|".contains(c))) =>
            {
                &r[r.find('}').unwrap_or(0) + 1..]
            }
            _ => body,
        }
    };
    let rows: Vec<Vec<Answer>> = body
        .split("\\\\")
        .filter(|r| !r.trim().is_empty())
        .map(|r| r.split('&').map(parse_normalized).collect())
        .collect();
    (!rows.is_empty()).then_some(Answer::Matrix(rows))
}

/// Elements of a set or list; an `a \pm b` element contributes both of its values.
fn set_items(items: &[&str]) -> Vec<Answer> {
    let mut out = Vec::new();
    for it in items {
        match parse_normalized(it) {
            Answer::Set(inner) if it.contains("\\pm") => out.extend(inner),
            a => out.push(a),
        }
    }
    out
}

fn parse_normalized(s: &str) -> Answer {
    let s = s.trim();
    if s.contains("\\begin{pmatrix}") {
        if let Some(m) = parse_matrix(s) {
            return m;
        }
    }
    let union = split_top(s, "\\cup");
    if union.len() > 1 {
        return Answer::Union(union.into_iter().map(parse_normalized).collect());
    }
    let eq = split_top(s, "=");
    if eq.len() == 2 {
        if let (Some(l), Some(r)) = (expr::parse(eq[0]), expr::parse(eq[1])) {
            return Answer::Equation(l, r);
        }
    }
    if let Some((open, close, inner)) = outer_brackets(s) {
        let items = split_top(inner, ",");
        if open == '{' && close == '}' {
            if inner.trim().is_empty() {
                return Answer::Set(Vec::new());
            }
            if items.len() > 1 || expr::parse(inner).is_none() {
                return Answer::Set(set_items(&items));
            }
        } else if items.len() > 1 {
            return Answer::Tuple {
                open,
                close,
                items: items.into_iter().map(parse_normalized).collect(),
            };
        }
    }
    let items = split_top(s, ",");
    if items.len() > 1 {
        return Answer::Set(set_items(&items));
    }
    if let Some(p) = s.find("\\pm") {
        if split_top(s, "\\pm").len() == 2 {
            let plus = format!("{}+{}", &s[..p], &s[p + 3..]);
            let minus = format!("{}-{}", &s[..p], &s[p + 3..]);
            return Answer::Set(vec![parse_normalized(&plus), parse_normalized(&minus)]);
        }
    }
    match expr::parse(s) {
        Some(e) => Answer::Scalar(e),
        None => Answer::Text(s.to_lowercase()),
    }
}

/// Normalises with [`strip_string`] and parses into an [`Answer`].
pub fn parse_answer(s: &str) -> Answer {
    parse_normalized(&strip_string(s))
}

/// Fixed sample points for variables: the same name gets the same value on both sides.
fn sample(name: &str, trial: usize) -> f64 {
    let mut h: u64 = 0xcbf29ce484222325 ^ (trial as u64).wrapping_mul(0x9E3779B97F4A7C15);
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    0.37 + (h % 10_000) as f64 / 4_000.0 // in [0.37, 2.87)
}

const TRIALS: usize = 3;

fn scalars_equal(a: &Expr, b: &Expr, percent: bool) -> bool {
    if let (Some(x), Some(y)) = (expr::integer_literal(a), expr::integer_literal(b)) {
        if x == y {
            return true;
        }
        if !percent {
            return false;
        }
    }
    let mut vs = BTreeSet::new();
    expr::vars(a, &mut vs);
    expr::vars(b, &mut vs);
    let factors: &[f64] = if percent && vs.is_empty() {
        &[1.0, 100.0, 0.01]
    } else {
        &[1.0]
    };
    factors.iter().any(|&f| {
        (0..TRIALS).all(|t| {
            let x = expr::eval_at(a, &|n| sample(n, t));
            let y = expr::eval_at(b, &|n| sample(n, t));
            let y = expr::C {
                re: y.re * f,
                im: y.im * f,
            };
            (x.is_finite() || x.re.is_infinite()) && expr::close(x, y)
        })
    })
}

/// Two equations are equal when `l1 - r1` is a nonzero constant multiple of `l2 - r2` (the
/// same solution set for the linear and polynomial forms answers take: `2x - y = 3` and
/// `y = 2x - 3`, or `4x - 2y = 6`).
fn equations_equal(l1: &Expr, r1: &Expr, l2: &Expr, r2: &Expr) -> bool {
    let d1 = Expr::Sub(Box::new(l1.clone()), Box::new(r1.clone()));
    let d2 = Expr::Sub(Box::new(l2.clone()), Box::new(r2.clone()));
    let neg = Expr::Neg(Box::new(d2.clone()));
    scalars_equal(&d1, &d2, false) || scalars_equal(&d1, &neg, false) || proportional(&d1, &d2)
}

/// Whether `a / b` is the same finite nonzero constant at every sample point.
fn proportional(a: &Expr, b: &Expr) -> bool {
    let ratio = Expr::Div(Box::new(a.clone()), Box::new(b.clone()));
    let r: Vec<expr::C> = (0..TRIALS)
        .map(|t| expr::eval_at(&ratio, &|n| sample(n, t)))
        .collect();
    r.iter()
        .all(|x| x.is_finite() && (x.re.abs() > 1e-9 || x.im.abs() > 1e-9))
        && r.iter().all(|&x| expr::close(x, r[0]))
}

/// Both answers as equations (`L = R`, each side an expression), keeping their left sides.
fn equation(s: &str) -> Option<(Expr, Expr)> {
    let t = normalize::strip_equation(s);
    match split_top(&t, "=").as_slice() {
        [l, r] => Some((expr::parse(l)?, expr::parse(r)?)),
        _ => None,
    }
}

/// Multiset equality under `eq` (small sets: backtracking).
fn unordered_equal(a: &[Answer], b: &[Answer], percent: bool) -> bool {
    if a.len() != b.len() {
        return false;
    }
    fn go(a: &[Answer], b: &[Answer], used: &mut Vec<bool>, percent: bool) -> bool {
        let Some((first, rest)) = a.split_first() else {
            return true;
        };
        for j in 0..b.len() {
            if !used[j] && answers_equal(first, &b[j], percent) {
                used[j] = true;
                if go(rest, b, used, percent) {
                    return true;
                }
                used[j] = false;
            }
        }
        false
    }
    go(a, b, &mut vec![false; b.len()], percent)
}

fn answers_equal(a: &Answer, b: &Answer, percent: bool) -> bool {
    use Answer::*;
    match (a, b) {
        (Scalar(x), Scalar(y)) => scalars_equal(x, y, percent),
        (
            Tuple {
                open: o1,
                close: c1,
                items: i1,
            },
            Tuple {
                open: o2,
                close: c2,
                items: i2,
            },
        ) => {
            o1 == o2
                && c1 == c2
                && i1.len() == i2.len()
                && i1.iter().zip(i2).all(|(x, y)| answers_equal(x, y, percent))
        }
        (Set(x), Set(y)) | (Union(x), Union(y)) => unordered_equal(x, y, percent),
        (Matrix(x), Matrix(y)) => {
            x.len() == y.len()
                && x.iter().zip(y).all(|(r1, r2)| {
                    r1.len() == r2.len()
                        && r1.iter().zip(r2).all(|(p, q)| answers_equal(p, q, percent))
                })
        }
        // a column vector written as a tuple
        (
            Matrix(m),
            Tuple {
                open: '(', items, ..
            },
        )
        | (
            Tuple {
                open: '(', items, ..
            },
            Matrix(m),
        ) => {
            m.iter().all(|r| r.len() == 1)
                && m.len() == items.len()
                && m.iter()
                    .zip(items)
                    .all(|(r, x)| answers_equal(&r[0], x, percent))
        }
        (Equation(l1, r1), Equation(l2, r2)) => equations_equal(l1, r1, l2, r2),
        (Text(x), Text(y)) => x == y,
        _ => false,
    }
}

/// The multiple-choice letter an answer names: `C`, `(C)`, `\textbf{(C)}`, `C)`.
fn choice_letter(s: &str) -> Option<char> {
    let t: String = s.chars().filter(|c| !"(){}$ .:".contains(*c)).collect();
    let t = t
        .trim_start_matches("\\textbf")
        .trim_start_matches("\\text");
    let mut cs = t.chars();
    match (cs.next(), cs.next()) {
        (Some(c), None) if ('A'..='E').contains(&c) => Some(c),
        _ => None,
    }
}

/// Whether a predicted answer equals the reference answer. Symmetric by construction:
/// `equal(a, b) == equal(b, a)`. `pred` should already be extracted (see [`extract_answer`]).
pub fn equal(pred: &str, answer: &str) -> bool {
    if pred.trim() == answer.trim() {
        return true;
    }
    let (np, na) = (strip_string(pred), strip_string(answer));
    if np == na && !np.is_empty() {
        return true;
    }
    if let (Some(x), Some(y)) = (choice_letter(&np), choice_letter(&na)) {
        return x == y;
    }
    if np.is_empty() || na.is_empty() {
        return false;
    }
    if let (Some((l1, r1)), Some((l2, r2))) = (equation(pred), equation(answer)) {
        if equations_equal(&l1, &r1, &l2, &r2) {
            return true;
        }
    }
    let percent = pred.contains('%') || answer.contains('%');
    answers_equal(&parse_normalized(&np), &parse_normalized(&na), percent)
}

/// [`extract_answer`] or, when nothing answer-like is found, the whole trimmed text.
pub fn extract_or_whole(text: &str) -> String {
    extract_answer(text).unwrap_or_else(|| text.trim().to_string())
}

/// Turns a normalised LaTeX answer into a sympy-parsable string (best effort).
fn to_sympy_text(s: &str) -> String {
    let mut t = strip_string(s);
    for _ in 0..8 {
        // \frac{a}{b} -> ((a)/(b))
        let Some(p) = t.find("\\frac{") else { break };
        let rest = &t[p + 5..];
        let groups = split_groups(rest, 2);
        let Some((a, b, used)) = groups else { break };
        t = format!("{}(({a})/({b})){}", &t[..p], &rest[used..]);
    }
    t.replace("\\sqrt", "sqrt")
        .replace("\\pi", "pi")
        .replace("\\cdot", "*")
        .replace("\\times", "*")
        .replace("\\infty", "oo")
        .replace('{', "(")
        .replace('}', ")")
        .replace('\\', "")
}

/// Reads `n` leading `{...}` groups; returns the first two contents and bytes consumed.
fn split_groups(s: &str, n: usize) -> Option<(String, String, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    let b = s.as_bytes();
    for _ in 0..n {
        if b.get(i) != Some(&b'{') {
            return None;
        }
        let mut depth = 0;
        let st = i;
        loop {
            match b.get(i)? {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        out.push(s[st + 1..i].to_string());
        i += 1;
    }
    let mut it = out.into_iter();
    Some((it.next()?, it.next()?, i))
}

/// [`equal`], then, when it says no and either side is not readable by the fast path, a sympy
/// `simplify(a - b) == 0` check run through `exec`.
pub fn equal_symbolic(pred: &str, answer: &str, exec: &Executor) -> bool {
    if equal(pred, answer) {
        return true;
    }
    let readable = |s: &str| !matches!(parse_answer(s), Answer::Text(_));
    if readable(pred) && readable(answer) {
        return false;
    }
    let (a, b) = (to_sympy_text(pred), to_sympy_text(answer));
    let code = format!(
        "from sympy.parsing.sympy_parser import parse_expr, standard_transformations, implicit_multiplication_application, convert_xor\nfrom sympy import simplify\nT = standard_transformations + (implicit_multiplication_application, convert_xor)\na = parse_expr({a:?}, transformations=T)\nb = parse_expr({b:?}, transformations=T)\nprint(simplify(a - b) == 0)"
    );
    let r = exec.run(&code);
    r.ok && r.stdout.trim() == "True"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(a: &str, b: &str) -> bool {
        let x = equal(a, b);
        assert_eq!(x, equal(b, a), "asymmetric on {a:?} vs {b:?}");
        x
    }

    #[test]
    fn equivalences() {
        assert!(both("\\frac{14}{3}", "14/3"));
        assert!(both("0.5", "\\frac12"));
        assert!(both("x^2-1", "(x-1)(x+1)"));
        assert!(both("(3,4]", "\\left(3, 4\\right]"));
        assert!(!both("(3,4]", "(3,4)"));
        assert!(!both("(1,2)", "(2,1)"));
        assert!(both("\\{1,2\\}", "\\{2,1\\}"));
        assert!(both("1 \\pm \\sqrt{19}", "1-\\sqrt{19}, 1+\\sqrt{19}"));
        assert!(both("\\text{(C)}", "C"));
        assert!(both("y = 2x + 3", "y=3+2x"));
        assert!(both("5x - 7y + 11z + 4 = 0", "-5x + 7y - 11z - 4 = 0"));
        assert!(both("50\\%", "0.5"));
        assert!(!both("1", "100"));
        assert!(both(
            "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
            "\\begin{bmatrix}1\\\\2\\end{bmatrix}"
        ));
        assert!(!both("-3", "3"));
        assert!(!both("11111111100", "11111111101"));
        assert!(both("6 - 5i", "6-5i"));
        assert!(both("\\text{Evelyn}", "evelyn"));
        assert!(!both("\\text{east}", "west"));
    }

    #[test]
    fn scientific_notation_units_and_equation_forms() {
        // scientific notation, every way it is written
        for (a, b) in [
            ("1.76e-10", "1.76\\times10^{-10}"),
            ("1.76E-10", "1.76 \\times 10^{-10}"),
            ("6.02 x 10^23", "6.02e23"),
            ("6.02\\cdot 10^{23}", "602000000000000000000000"),
            ("3e+2", "300"),
            // units written as words, in text or plain
            ("5 apples", "5"),
            ("\\text{12 cm}", "12"),
            ("10 meters per second", "10"),
            ("\\$18 per hour", "18"),
            ("72 clips", "72"),
            // the same equation in another form
            ("2x - y = 3", "y = 2x - 3"),
            ("4x - 2y = 6", "y = 2x - 3"),
            ("x + y = 1", "y = 1 - x"),
        ] {
            assert!(both(a, b), "{a} vs {b}");
        }
        // and no false positives: tiny numbers differ, variables and math words stay
        for (a, b) in [
            ("1.76\\times10^{-10}", "2\\times10^{-10}"),
            ("1.76e-10", "1.76e-11"),
            ("2e", "2"),
            ("5 x", "5"),
            ("2 \\pi", "2"),
            ("1 and 2", "1"),
            ("5 apples", "6"),
            ("2x - y = 3", "y = 2x + 3"),
            ("x = 5", "y = 5 + x"),
            ("x^2 = 1", "x = 1"),
        ] {
            assert!(!both(a, b), "{a} vs {b}");
        }
    }
}
