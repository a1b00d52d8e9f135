//! A small LaTeX-math expression parser and complex-number evaluator for the grader's fast path.
//!
//! Grammar (on a `strip_string`-normalised answer): sums, products (`*`, `\cdot`, `\times`, `/`,
//! `\div`, implicit multiplication, mixed numbers `1\frac{4}{5}`), unary signs, powers `^` (right
//! associative, `{...}` or one atom), factorial `!`, `\frac`, `\sqrt`, `\sqrt[n]`, `\pi`, `i`,
//! `\infty`, `|x|`, `\binom`, trig/log functions (`\sin^2 x` too), single-letter variables
//! (optionally subscripted). Values are complex; variables are sampled (see `eval_at`).

use std::collections::BTreeSet;

/// Parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A literal; `text` keeps the digits for exact integer comparison.
    Num {
        value: f64,
        text: String,
    },
    Var(String),
    Pi,
    I,
    Infinity,
    Neg(Box<Expr>),
    Add(Box<Expr>, Box<Expr>),
    Sub(Box<Expr>, Box<Expr>),
    Mul(Box<Expr>, Box<Expr>),
    Div(Box<Expr>, Box<Expr>),
    Pow(Box<Expr>, Box<Expr>),
    Func(String, Box<Expr>),
    Root(Box<Expr>, Box<Expr>),
    Fact(Box<Expr>),
    Binom(Box<Expr>, Box<Expr>),
}

/// A complex number, enough for answers such as `6-5i`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct C {
    pub re: f64,
    pub im: f64,
}

impl C {
    pub const fn real(re: f64) -> C {
        C { re, im: 0.0 }
    }
    fn nan() -> C {
        C::real(f64::NAN)
    }
    pub fn is_finite(self) -> bool {
        self.re.is_finite() && self.im.is_finite()
    }
    fn abs(self) -> f64 {
        self.re.hypot(self.im)
    }
    fn add(self, o: C) -> C {
        C {
            re: self.re + o.re,
            im: self.im + o.im,
        }
    }
    fn sub(self, o: C) -> C {
        C {
            re: self.re - o.re,
            im: self.im - o.im,
        }
    }
    fn mul(self, o: C) -> C {
        C {
            re: self.re * o.re - self.im * o.im,
            im: self.re * o.im + self.im * o.re,
        }
    }
    fn div(self, o: C) -> C {
        let d = o.re * o.re + o.im * o.im;
        if d == 0.0 {
            return C::nan();
        }
        C {
            re: (self.re * o.re + self.im * o.im) / d,
            im: (self.im * o.re - self.re * o.im) / d,
        }
    }
    fn ln(self) -> C {
        C {
            re: self.abs().ln(),
            im: self.im.atan2(self.re),
        }
    }
    fn exp(self) -> C {
        let m = self.re.exp();
        C {
            re: m * self.im.cos(),
            im: m * self.im.sin(),
        }
    }
    fn pow(self, e: C) -> C {
        if e.im == 0.0 && e.re.fract() == 0.0 && e.re.abs() <= 64.0 {
            let mut r = C::real(1.0);
            for _ in 0..(e.re.abs() as u32) {
                r = r.mul(self);
            }
            return if e.re < 0.0 { C::real(1.0).div(r) } else { r };
        }
        if self.im == 0.0 && e.im == 0.0 && self.re >= 0.0 {
            return C::real(self.re.powf(e.re));
        }
        if self.im == 0.0 && e.im == 0.0 && self.re < 0.0 {
            // odd roots of negatives stay real, as a reader of \sqrt[3]{-8} expects
            let inv = 1.0 / e.re;
            if (inv.round() - inv).abs() < 1e-12 && (inv.round() as i64) % 2 != 0 {
                return C::real(-(-self.re).powf(e.re));
            }
        }
        if self.re == 0.0 && self.im == 0.0 {
            return C::real(0.0);
        }
        self.ln().mul(e).exp()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64, String),
    Ident(String),
    Cmd(String),
    Op(char),
    Open(char),
    Close(char),
}

const FUNCS: &[&str] = &[
    "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "sin", "cos", "tan", "cot", "sec", "csc",
    "ln", "log", "exp",
];
const COMMANDS: &[&str] = &[
    "frac", "sqrt", "pi", "infty", "cdot", "times", "div", "binom", "dfrac", "tfrac", "arcsin",
    "arccos", "arctan", "sinh", "cosh", "tanh", "sin", "cos", "tan", "cot", "sec", "csc", "ln",
    "log", "exp",
];

/// The length of a scientific-notation exponent at the start of `cs` (`e-10`, `E+3`, `e5`), or 0.
/// A bare `e` after a number stays Euler's number times it (`2e`).
fn sci_exponent_len(cs: &[char]) -> usize {
    if !matches!(cs.first(), Some('e' | 'E')) {
        return 0;
    }
    let sign = usize::from(matches!(cs.get(1), Some('+' | '-')));
    let digits = cs[1 + sign..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if digits == 0 {
        0
    } else {
        1 + sign + digits
    }
}

fn tokenize(s: &str) -> Option<Vec<Tok>> {
    let cs: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && cs.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let st = i;
            while i < cs.len() && (cs[i].is_ascii_digit() || cs[i] == '.') {
                i += 1;
            }
            i += sci_exponent_len(&cs[i..]);
            let text: String = cs[st..i].iter().collect();
            out.push(Tok::Num(text.parse().ok()?, text));
        } else if c == '\\' {
            let st = i + 1;
            let mut j = st;
            while j < cs.len() && cs[j].is_ascii_alphabetic() {
                j += 1;
            }
            let word: String = cs[st..j].iter().collect();
            if word.is_empty() {
                return None;
            }
            // longest known command prefix; the rest are variables (`\cotx` = \cot x)
            let cmd = COMMANDS
                .iter()
                .filter(|k| word.starts_with(**k))
                .max_by_key(|k| k.len())?;
            out.push(Tok::Cmd(cmd.to_string()));
            i = st + cmd.len();
        } else if c.is_ascii_alphabetic() {
            let st = i;
            while i < cs.len() && cs[i].is_ascii_alphabetic() {
                i += 1;
            }
            let word: String = cs[st..i].iter().collect();
            if let Some(f) = FUNCS
                .iter()
                .chain(["sqrt", "pi"].iter())
                .find(|f| **f == word)
            {
                out.push(Tok::Cmd(f.to_string()));
            } else if word.len() >= 3 {
                return None; // a word, not algebra
            } else {
                for ch in word.chars() {
                    out.push(Tok::Ident(ch.to_string()));
                }
            }
            // subscript: x_1, a_{12}
            if cs.get(i) == Some(&'_') {
                let (sub, ni) = read_group(&cs, i + 1)?;
                if let Some(Tok::Ident(name)) = out.last_mut() {
                    name.push('_');
                    name.push_str(&sub);
                }
                i = ni;
            }
        } else if "+-*/^!=,|".contains(c) {
            if c == '*' && cs.get(i + 1) == Some(&'*') {
                out.push(Tok::Op('^'));
                i += 2;
                continue;
            }
            out.push(Tok::Op(c));
            i += 1;
        } else if "({[".contains(c) {
            out.push(Tok::Open(c));
            i += 1;
        } else if ")}]".contains(c) {
            out.push(Tok::Close(c));
            i += 1;
        } else if c == '−' {
            out.push(Tok::Op('-'));
            i += 1;
        } else if c == '×' || c == '·' {
            out.push(Tok::Op('*'));
            i += 1;
        } else if c == 'π' {
            out.push(Tok::Cmd("pi".into()));
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

fn read_group(cs: &[char], i: usize) -> Option<(String, usize)> {
    if cs.get(i) == Some(&'{') {
        let end = cs[i..].iter().position(|c| *c == '}')? + i;
        Some((cs[i + 1..end].iter().collect(), end + 1))
    } else {
        let c = cs.get(i)?;
        Some((c.to_string(), i + 1))
    }
}

/// Deepest nesting (brackets, signs, powers, function calls) the parser follows: answers nest a
/// few levels; model-written text nesting thousands would overflow the stack.
const MAX_NESTING: usize = 64;
/// Most tokens in an answer the parser reads (expressions are evaluated recursively: a sum of
/// thousands of terms is a chain as deep).
const MAX_TOKENS: usize = 1024;

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    /// The atom just parsed was a `\frac` (for mixed numbers).
    last_was_frac: bool,
    /// Current nesting of `unary`/`atom` calls.
    depth: usize,
}

fn close_of(open: char) -> char {
    match open {
        '(' => ')',
        '[' => ']',
        _ => '}',
    }
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
    fn eat_op(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Op(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect_close(&mut self, c: char) -> Option<()> {
        (self.next()? == Tok::Close(c)).then_some(())
    }

    fn expr(&mut self) -> Option<Expr> {
        let mut l = self.term()?;
        loop {
            if self.eat_op('+') {
                l = Expr::Add(Box::new(l), Box::new(self.term()?));
            } else if self.eat_op('-') {
                l = Expr::Sub(Box::new(l), Box::new(self.term()?));
            } else {
                return Some(l);
            }
        }
    }

    fn starts_atom(&self) -> bool {
        match self.peek() {
            Some(Tok::Num(..)) | Some(Tok::Ident(_)) | Some(Tok::Open(_)) => true,
            Some(Tok::Cmd(c)) => !matches!(c.as_str(), "cdot" | "times" | "div"),
            _ => false,
        }
    }

    fn term(&mut self) -> Option<Expr> {
        let mut l = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op('*')) => '*',
                Some(Tok::Op('/')) => '/',
                Some(Tok::Cmd(c)) if c == "cdot" || c == "times" => '*',
                Some(Tok::Cmd(c)) if c == "div" => '/',
                _ if self.starts_atom() => 'i',
                _ => return Some(l),
            };
            if op != 'i' {
                self.pos += 1;
            }
            let r = self.power()?;
            l = match op {
                '/' => Expr::Div(Box::new(l), Box::new(r)),
                'i' => match (&l, &r) {
                    // mixed number 1\frac{4}{5} = 1 + 4/5
                    (Expr::Num { text, .. }, Expr::Div(a, b))
                        if !text.contains('.')
                            && matches!(**a, Expr::Num { .. })
                            && matches!(**b, Expr::Num { .. })
                            && self.last_was_frac =>
                    {
                        Expr::Add(Box::new(l), Box::new(r))
                    }
                    _ => Expr::Mul(Box::new(l), Box::new(r)),
                },
                _ => Expr::Mul(Box::new(l), Box::new(r)),
            };
        }
    }

    /// Runs `f` one nesting level deeper; None beyond [`MAX_NESTING`].
    fn nested(&mut self, f: impl FnOnce(&mut Self) -> Option<Expr>) -> Option<Expr> {
        if self.depth >= MAX_NESTING {
            return None;
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn unary(&mut self) -> Option<Expr> {
        self.nested(Self::unary_inner)
    }

    fn unary_inner(&mut self) -> Option<Expr> {
        if self.eat_op('-') {
            return Some(Expr::Neg(Box::new(self.unary()?)));
        }
        if self.eat_op('+') {
            return self.unary();
        }
        self.power()
    }

    fn power(&mut self) -> Option<Expr> {
        let base = self.postfix()?;
        if self.eat_op('^') {
            let e = if self.eat_op('-') {
                Expr::Neg(Box::new(self.postfix()?))
            } else {
                self.postfix()?
            };
            // right associative
            let e = if self.eat_op('^') {
                Expr::Pow(Box::new(e), Box::new(self.unary()?))
            } else {
                e
            };
            return Some(Expr::Pow(Box::new(base), Box::new(e)));
        }
        Some(base)
    }

    fn postfix(&mut self) -> Option<Expr> {
        let mut a = self.atom()?;
        while self.eat_op('!') {
            a = Expr::Fact(Box::new(a));
        }
        Some(a)
    }

    fn group(&mut self) -> Option<Expr> {
        match self.next()? {
            Tok::Open(o) => {
                let e = self.expr()?;
                self.expect_close(close_of(o))?;
                Some(e)
            }
            Tok::Num(v, t) => Some(Expr::Num { value: v, text: t }),
            Tok::Ident(n) => Some(Expr::Var(n)),
            Tok::Cmd(c) if c == "pi" => Some(Expr::Pi),
            _ => None,
        }
    }

    fn atom(&mut self) -> Option<Expr> {
        self.nested(Self::atom_inner)
    }

    fn atom_inner(&mut self) -> Option<Expr> {
        self.last_was_frac = false;
        let t = self.next()?;
        Some(match t {
            Tok::Num(v, text) => Expr::Num { value: v, text },
            Tok::Ident(n) if n == "i" => Expr::I,
            Tok::Ident(n) => Expr::Var(n),
            Tok::Open(o) => {
                let e = self.expr()?;
                self.expect_close(close_of(o))?;
                e
            }
            Tok::Op('|') => {
                let e = self.expr()?;
                if !self.eat_op('|') {
                    return None;
                }
                Expr::Func("abs".into(), Box::new(e))
            }
            Tok::Cmd(c) => match c.as_str() {
                "pi" => Expr::Pi,
                "infty" => Expr::Infinity,
                "frac" | "dfrac" | "tfrac" => {
                    let a = self.group()?;
                    let b = self.group()?;
                    let r = Expr::Div(Box::new(a), Box::new(b));
                    self.last_was_frac = true;
                    return Some(r);
                }
                "binom" => {
                    let a = self.group()?;
                    let b = self.group()?;
                    Expr::Binom(Box::new(a), Box::new(b))
                }
                "sqrt" => {
                    if self.peek() == Some(&Tok::Open('[')) {
                        self.pos += 1;
                        let n = self.expr()?;
                        self.expect_close(']')?;
                        Expr::Root(Box::new(self.group()?), Box::new(n))
                    } else {
                        Expr::Func("sqrt".into(), Box::new(self.group()?))
                    }
                }
                f if FUNCS.contains(&f) => {
                    // \sin^2 x = (\sin x)^2 ; \log_2 x
                    let mut exp = None;
                    if self.eat_op('^') {
                        exp = Some(self.postfix()?);
                    }
                    let arg = if matches!(self.peek(), Some(Tok::Open(_))) {
                        self.atom()?
                    } else {
                        self.power()?
                    };
                    let call = Expr::Func(f.to_string(), Box::new(arg));
                    match exp {
                        Some(e) => Expr::Pow(Box::new(call), Box::new(e)),
                        None => call,
                    }
                }
                _ => return None,
            },
            _ => return None,
        })
    }
}

impl Parser {
    fn new(toks: Vec<Tok>) -> Self {
        Parser {
            toks,
            pos: 0,
            last_was_frac: false,
            depth: 0,
        }
    }
}

/// Parses a normalised answer into an expression; `None` if it is not algebra.
pub fn parse(s: &str) -> Option<Expr> {
    let toks = tokenize(s)?;
    if toks.is_empty() || toks.len() > MAX_TOKENS {
        return None;
    }
    let mut p = Parser::new(toks);
    let e = p.expr()?;
    (p.pos == p.toks.len()).then_some(e)
}

/// Variable names used.
pub fn vars(e: &Expr, out: &mut BTreeSet<String>) {
    match e {
        Expr::Var(n) => {
            out.insert(n.clone());
        }
        Expr::Num { .. } | Expr::Pi | Expr::I | Expr::Infinity => {}
        Expr::Neg(a) | Expr::Func(_, a) | Expr::Fact(a) => vars(a, out),
        Expr::Add(a, b)
        | Expr::Sub(a, b)
        | Expr::Mul(a, b)
        | Expr::Div(a, b)
        | Expr::Pow(a, b)
        | Expr::Root(a, b)
        | Expr::Binom(a, b) => {
            vars(a, out);
            vars(b, out);
        }
    }
}

fn gamma_int(n: f64) -> f64 {
    if n < 0.0 || n.fract() != 0.0 || n > 170.0 {
        return f64::NAN;
    }
    (1..=n as u64).fold(1.0, |acc, k| acc * k as f64)
}

/// Evaluates with `value(name)` for variables.
pub fn eval_at(e: &Expr, value: &dyn Fn(&str) -> f64) -> C {
    let ev = |x: &Expr| eval_at(x, value);
    match e {
        Expr::Num { value: v, .. } => C::real(*v),
        Expr::Var(n) => C::real(value(n)),
        Expr::Pi => C::real(std::f64::consts::PI),
        Expr::I => C { re: 0.0, im: 1.0 },
        Expr::Infinity => C::real(f64::INFINITY),
        Expr::Neg(a) => C::real(0.0).sub(ev(a)),
        Expr::Add(a, b) => ev(a).add(ev(b)),
        Expr::Sub(a, b) => ev(a).sub(ev(b)),
        Expr::Mul(a, b) => ev(a).mul(ev(b)),
        Expr::Div(a, b) => ev(a).div(ev(b)),
        Expr::Pow(a, b) => ev(a).pow(ev(b)),
        Expr::Root(a, n) => ev(a).pow(C::real(1.0).div(ev(n))),
        Expr::Fact(a) => {
            let x = ev(a);
            if x.im != 0.0 {
                C::nan()
            } else {
                C::real(gamma_int(x.re))
            }
        }
        Expr::Binom(n, k) => {
            let (n, k) = (ev(n), ev(k));
            if n.im != 0.0 || k.im != 0.0 {
                return C::nan();
            }
            C::real(gamma_int(n.re) / (gamma_int(k.re) * gamma_int(n.re - k.re)))
        }
        Expr::Func(f, a) => {
            let x = ev(a);
            if f == "sqrt" {
                return x.pow(C::real(0.5));
            }
            if f == "abs" {
                return C::real(x.abs());
            }
            if f == "exp" {
                return x.exp();
            }
            if x.im != 0.0 {
                return if f == "ln" || f == "log" {
                    x.ln()
                } else {
                    C::nan()
                };
            }
            let r = x.re;
            C::real(match f.as_str() {
                "sin" => r.sin(),
                "cos" => r.cos(),
                "tan" => r.tan(),
                "cot" => 1.0 / r.tan(),
                "sec" => 1.0 / r.cos(),
                "csc" => 1.0 / r.sin(),
                "arcsin" => r.asin(),
                "arccos" => r.acos(),
                "arctan" => r.atan(),
                "sinh" => r.sinh(),
                "cosh" => r.cosh(),
                "tanh" => r.tanh(),
                "ln" | "log" => r.ln(),
                _ => f64::NAN,
            })
        }
    }
}

/// The exact integer an expression is when it is an integer literal (optionally negated).
pub fn integer_literal(e: &Expr) -> Option<(bool, String)> {
    match e {
        Expr::Num { text, .. } if text.chars().all(|c| c.is_ascii_digit()) => {
            let t = text.trim_start_matches('0');
            Some((false, if t.is_empty() { "0".into() } else { t.into() }))
        }
        Expr::Neg(a) => integer_literal(a).map(|(neg, t)| (!neg && t != "0", t)),
        _ => None,
    }
}

/// Whether two complex values agree: relative 1e-4 (the reference's `rel_tol`), absolute 1e-9.
pub fn close(a: C, b: C) -> bool {
    if a.re.is_infinite() || b.re.is_infinite() {
        return a.re == b.re && a.im == b.im;
    }
    // Relative (rStar's rel_tol 1e-4); the absolute floor only absorbs rounding around zero, so
    // 1.76e-10 and 2e-10 stay different.
    let scale = a.abs().max(b.abs());
    a.sub(b).abs() <= 1e-4 * scale + 1e-15
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(s: &str) -> C {
        eval_at(&parse(s).unwrap_or_else(|| panic!("parse {s}")), &|_| 1.5)
    }

    #[test]
    fn arithmetic() {
        assert!(close(val("\\frac{3}{4}"), C::real(0.75)));
        assert!(close(val("3\\sqrt{13}"), C::real(3.0 * 13f64.sqrt())));
        assert!(close(val("1\\frac{4}{5}"), C::real(1.8)));
        assert!(close(val("2^{10}"), C::real(1024.0)));
        assert!(close(val("-2^2"), C::real(-4.0)));
        assert!(close(val("\\sqrt[3]{-8}"), C::real(-2.0)));
        assert!(close(val("6-5i"), C { re: 6.0, im: -5.0 }));
        assert!(close(
            val("\\frac{\\pi}{2}"),
            C::real(std::f64::consts::FRAC_PI_2)
        ));
        assert!(close(val("5!"), C::real(120.0)));
        assert!(close(val("\\sin^2x+\\cos^2x"), C::real(1.0)));
        assert!(close(val("\\cotx"), C::real(1.0 / 1.5f64.tan())));
        assert!(close(val("\\binom{5}{2}"), C::real(10.0)));
        assert!(parse("Evelyn").is_none());
        assert!(parse("(1,2)").is_none());
    }
}
