//! `strip_string`: the rStar/MATH answer normalisation (spec 2.6), as string rewriting.

/// Unit words removed after a number (a subset of rStar's `unit_texts`, the ones MATH uses).
const UNIT_WORDS: &[&str] = &[
    "degrees",
    "degree",
    "cents",
    "cent",
    "dollars",
    "dollar",
    "inches",
    "inch",
    "feet",
    "foot",
    "meters",
    "meter",
    "centimeters",
    "cm",
    "mm",
    "km",
    "miles",
    "mile",
    "mph",
    "hours",
    "hour",
    "minutes",
    "minute",
    "seconds",
    "second",
    "days",
    "day",
    "units",
    "unit",
    "square",
    "sq",
    "cubic",
    "people",
    "students",
    "ways",
    "points",
    "years",
    "year",
    "liters",
    "pounds",
    "ounces",
    "gallons",
    "kg",
    "grams",
    "m",
    "s",
];

const NUMBER_WORDS: &[&str] = &[
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve",
];

/// Words that are mathematics, not units: never stripped from after a number.
const MATH_WORDS: &[&str] = &[
    "and", "or", "to", "pi", "sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp",
    "inf", "infty", "infinity", "i", "e",
];

/// `1.76 \times 10^{-10}`, `6.02 x 10^23`, `3 \cdot 10^5` -> `1.76*10^{-10}` (the `x` of a
/// scientific notation is a times sign, not a variable).
fn fix_times_ten(s: &str) -> String {
    let mut t = s.to_string();
    for times in ["\\times", "\\cdot", "x", "X", "×", "·", "*"] {
        for sp in ["", " "] {
            let pat = format!("{sp}{times}{sp}10^");
            let mut from = 0;
            while let Some(p) = t[from..].find(&pat).map(|p| p + from) {
                if t[..p].ends_with(|c: char| c.is_ascii_digit() || c == '.') {
                    t.replace_range(p..p + pat.len(), "*10^");
                }
                from = p + 1;
            }
        }
    }
    t
}

/// A number followed by plain words (`5 apples`, `10 meters per second`): the number. Only
/// words of two letters or more that are not mathematics ([`MATH_WORDS`]) count.
fn strip_trailing_words(s: &str) -> String {
    let t = s.trim();
    let Some(split) = t.find(|c: char| c.is_ascii_alphabetic()) else {
        return s.to_string();
    };
    let (head, tail) = (t[..split].trim_end(), &t[split..]);
    let number = |h: &str| {
        let h = h.trim_start_matches(['-', '$']).trim_start_matches("\\$");
        !h.is_empty()
            && h.chars().any(|c| c.is_ascii_digit())
            && h.chars().all(|c| c.is_ascii_digit() || ".,/".contains(c))
    };
    let words_ok = tail.split_whitespace().all(|w| {
        w.len() >= 2
            && w.chars().all(|c| c.is_ascii_alphabetic())
            && !MATH_WORDS.contains(&w.to_ascii_lowercase().as_str())
    });
    if head.len() < split && number(head) && words_ok {
        head.to_string()
    } else {
        s.to_string()
    }
}

/// Replaces every `\cmd{...}` (balanced) by its content; `drop` deletes it instead.
pub(crate) fn unwrap_command(s: &str, cmd: &str, drop: bool) -> String {
    let pat = format!("\\{cmd}{{");
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find(&pat) {
        out.push_str(&rest[..p]);
        let inner = &rest[p + pat.len()..];
        let mut depth = 1usize;
        let mut end = None;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        match end {
            Some(e) => {
                if !drop {
                    out.push_str(&inner[..e]);
                }
                rest = &inner[e + 1..];
            }
            None => {
                out.push_str(&rest[p..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Removes a trailing `\text{...}`/`\mbox{...}` unit (optionally squared) after a value.
fn strip_trailing_text_unit(s: &str) -> String {
    let t = s.trim_end();
    let t2 = t.trim_end_matches("^2").trim_end_matches("^3").trim_end();
    for cmd in ["\\text{", "\\mbox{", "\\textrm{", "\\mathrm{"] {
        if let Some(p) = t2.rfind(cmd) {
            if t2.ends_with('}') && p > 0 {
                let inner = &t2[p + cmd.len()..t2.len() - 1];
                let before = t2[..p].trim_end();
                let looks_unit = inner
                    .trim()
                    .chars()
                    .all(|c| c.is_ascii_alphabetic() || c == ' ' || c == '^');
                if looks_unit
                    && !inner.contains('{')
                    && !before.is_empty()
                    && !before.ends_with(['(', '[', ',', '{'])
                {
                    return before.to_string();
                }
            }
        }
    }
    s.to_string()
}

fn strip_unit_words(s: &str) -> String {
    let mut t = s.trim_end().to_string();
    loop {
        let before = t.clone();
        for w in UNIT_WORDS {
            if let Some(head) = t.strip_suffix(w) {
                let head_t = head.trim_end();
                let ok_boundary =
                    head.ends_with(' ') || head.ends_with(|c: char| c.is_ascii_digit());
                if ok_boundary && head_t.ends_with(|c: char| c.is_ascii_digit() || c == '}') {
                    t = head_t.trim_end_matches("^2").to_string();
                    break;
                }
            }
        }
        if t == before {
            return t;
        }
    }
}

/// `\sqrt3` -> `\sqrt{3}`.
fn fix_sqrt(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(p) = rest.find("\\sqrt") {
        out.push_str(&rest[..p + 5]);
        rest = &rest[p + 5..];
        let mut chars = rest.chars();
        match chars.next() {
            Some(c) if c != '{' && c != '[' && !c.is_ascii_alphabetic() && c != '\\' => {
                out.push('{');
                out.push(c);
                out.push('}');
                rest = &rest[c.len_utf8()..];
            }
            _ => {}
        }
    }
    out.push_str(rest);
    out
}

/// `\frac12` -> `\frac{1}{2}`, `\frac1{2}` -> `\frac{1}{2}`, `\frac{1}2` -> `\frac{1}{2}`.
fn fix_fracs(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(p) = rest.find("\\frac") {
        out.push_str(&rest[..p + 5]);
        rest = &rest[p + 5..];
        for _ in 0..2 {
            match rest.chars().next() {
                Some('{') => {
                    let mut depth = 0usize;
                    let mut end = rest.len();
                    for (i, c) in rest.char_indices() {
                        match c {
                            '{' => depth += 1,
                            '}' => {
                                depth -= 1;
                                if depth == 0 {
                                    end = i + 1;
                                    break;
                                }
                            }
                            _ => {}
                        }
                    }
                    out.push_str(&rest[..end]);
                    rest = &rest[end..];
                }
                Some(c) if c != '\\' => {
                    out.push('{');
                    out.push(c);
                    out.push('}');
                    rest = &rest[c.len_utf8()..];
                }
                _ => break,
            }
        }
    }
    out.push_str(rest);
    out
}

/// `1,234,567` -> `1234567` when the whole string is such a number.
fn strip_thousands(s: &str) -> String {
    let (sign, body) = match s.strip_prefix('-') {
        Some(b) => ("-", b),
        None => ("", s),
    };
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let groups: Vec<&str> = int.split(',').collect();
    let ok = groups.len() > 1
        && !groups[0].is_empty()
        && groups[0].len() <= 3
        && groups.iter().all(|g| g.chars().all(|c| c.is_ascii_digit()))
        && groups[1..].iter().all(|g| g.len() == 3)
        && frac.is_none_or(|f| f.chars().all(|c| c.is_ascii_digit()));
    if !ok {
        return s.to_string();
    }
    let mut r = format!("{sign}{}", groups.concat());
    if let Some(f) = frac {
        r.push('.');
        r.push_str(f);
    }
    r
}

/// rStar's `strip_string`, in its order, plus a few safe extras (thin spaces, `_{8}` -> `_8`).
pub fn strip_string(s: &str) -> String {
    normalize(s, true)
}

/// [`strip_string`] keeping an equation's left side (`y = 2x - 3` stays an equation), for
/// comparing two answers that are both equations.
pub(crate) fn strip_equation(s: &str) -> String {
    normalize(s, false)
}

/// The rules of [`strip_string`]; `strip_lhs` drops a short `k =` / `x \in` prefix.
fn normalize(s: &str, strip_lhs: bool) -> String {
    let mut s = s.replace(['\n', '\r'], "").trim().to_string();
    s = s.trim_end_matches('.').to_string();
    s = s.replace("\\\\", "\u{1}"); // protect matrix row breaks from the spacing rules
    for sp in ["\\!", "\\,", "\\;", "\\:", "\\ ", "~"] {
        s = s.replace(sp, if sp == "\\!" { "" } else { " " });
    }
    s = s.replace('\u{1}', "\\\\");
    s = fix_times_ten(&s);
    s = s
        .replace("bmatrix", "pmatrix")
        .replace("{array}", "{pmatrix}");
    s = s.replace("tfrac", "frac").replace("dfrac", "frac");
    s = s
        .replace("\\neq", "\\ne")
        .replace("\\leq", "\\le")
        .replace("\\geq", "\\ge");
    s = s.replace("\\left", "").replace("\\right", "");
    s = s.replace("\\{", "{").replace("\\}", "}");
    s = strip_trailing_text_unit(&s);
    s = strip_unit_words(&s);
    for deg in ["^{\\circ}", "^\\circ", "\\circ", "°", "\\degree"] {
        s = s.replace(deg, "");
    }
    s = s
        .replace("\\$", "")
        .replace('$', "")
        .replace("\\(", "")
        .replace("\\)", "");
    if let Some(i) = NUMBER_WORDS
        .iter()
        .position(|w| s.trim().eq_ignore_ascii_case(w))
    {
        s = i.to_string();
    }
    for cmd in [
        "text",
        "textbf",
        "mathrm",
        "mathbf",
        "mbox",
        "textit",
        "mathit",
        "operatorname",
    ] {
        s = unwrap_command(&s, cmd, false);
    }
    s = strip_trailing_words(&s);
    let trimmed = s.trim_start().to_string();
    for pre in [
        "x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "\\in", "x \\in", "x \\to",
    ] {
        if let Some(r) = trimmed.strip_prefix(pre).filter(|_| strip_lhs) {
            s = r.to_string();
            break;
        }
    }
    s = s.replace("\\emptyset", "{}").replace("\\varnothing", "{}");
    s = s.replace("\\%", "").replace('%', "");
    s = s.replace(" .", " 0.").replace("{.", "{0.");
    if s.starts_with('.') {
        s = format!("0{s}");
    }
    if s.len() >= 3
        && (s.starts_with('(') && s.ends_with(')') || s.starts_with('[') && s.ends_with(']'))
    {
        let inner = &s[1..s.len() - 1];
        if inner.chars().all(|c| c.is_ascii_alphanumeric())
            && inner.chars().any(|c| c.is_ascii_alphabetic())
        {
            s = inner.to_string();
        }
    }
    if !s.contains("infty") {
        s = s.replace("inf", "\\infty");
    }
    s = s
        .replace("\\infinity", "\\infty")
        .replace("infinity", "\\infty");
    s = s
        .replace(" and ", ",")
        .replace("\\text{and}", ",")
        .replace("\\mathbf", "");
    if !s.contains('i') && s.contains('j') && !s.contains('\\') {
        s = s.replace('j', "i");
    }
    // a `k=` style prefix with a short left side
    if let Some((lhs, rhs)) = s.split_once('=').filter(|_| strip_lhs) {
        if lhs.trim().len() <= 2
            && !rhs.contains('=')
            && !lhs.trim().is_empty()
            && !rhs.trim().is_empty()
        {
            let l = lhs.trim();
            if l.chars()
                .all(|c| c.is_ascii_alphabetic() || c == '_' || c.is_ascii_digit())
            {
                s = rhs.to_string();
            }
        }
    }
    s = fix_sqrt(&s);
    s = s.replace(' ', "");
    s = fix_fracs(&s);
    s = s.trim().to_string();
    // `52_{8}` -> `52_8`
    if let Some(p) = s.find("_{") {
        if s.ends_with('}') && s[p + 2..s.len() - 1].chars().all(|c| c.is_ascii_digit()) {
            s = format!("{}_{}", &s[..p], &s[p + 2..s.len() - 1]);
        }
    }
    s = strip_thousands(&s);
    // trailing zeros of a decimal: 2.000 -> 2, 2.50 -> 2.5
    if s.contains('.')
        && s.chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
        && s.matches('.').count() == 1
    {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    // a/b with integers -> \frac{a}{b}
    if let Some((a, b)) = s.split_once('/') {
        let int = |x: &str| {
            !x.is_empty()
                && x.trim_start_matches('-')
                    .chars()
                    .all(|c| c.is_ascii_digit())
        };
        if int(a) && int(b) && !a.trim_start_matches('-').is_empty() {
            s = format!("\\frac{{{a}}}{{{b}}}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert_eq!(strip_string("\\dfrac{1}{2}"), "\\frac{1}{2}");
        assert_eq!(
            strip_string("\\left( 3, \\frac{\\pi}{2} \\right)"),
            "(3,\\frac{\\pi}{2})"
        );
        assert_eq!(strip_string("90^\\circ"), "90");
        assert_eq!(strip_string("10,\\!080"), "10080");
        assert_eq!(strip_string("\\$32,\\!348"), "32348");
        assert_eq!(strip_string("x=5"), "5");
        assert_eq!(strip_string("5.4 \\text{ cents}"), "5.4");
        assert_eq!(strip_string("864 \\mbox{ inches}^2"), "864");
        assert_eq!(
            strip_string("\\frac{270}7\\text{ degrees}"),
            "\\frac{270}{7}"
        );
        assert_eq!(strip_string("\\text{(C)}"), "C");
        assert_eq!(strip_string("50\\%"), "50");
        assert_eq!(strip_string(".0000672"), "0.0000672");
        assert_eq!(strip_string("4210_{5}"), "4210_5");
        assert_eq!(strip_string("1/2"), "\\frac{1}{2}");
        assert_eq!(strip_string("\\sqrt3"), "\\sqrt{3}");
        assert_eq!(strip_string("\\frac12"), "\\frac{1}{2}");
        assert_eq!(strip_string("16.00"), "16");
        assert_eq!(strip_string("\\text{Evelyn}"), "Evelyn");
        assert_eq!(strip_string("x \\in [-2,7]"), "[-2,7]");
    }
}
