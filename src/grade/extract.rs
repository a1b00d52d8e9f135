//! Reading the final answer out of generated text (spec 2.5, `extract_math_answer`).

/// Content of the last `\boxed{...}` or `\fbox{...}` (nested braces matched; `\boxed 5` too).
pub fn last_boxed(text: &str) -> Option<String> {
    let cands = ["\\boxed", "\\fbox"];
    let (pos, tag) = cands
        .iter()
        .filter_map(|t| text.rfind(t).map(|p| (p, *t)))
        .max_by_key(|(p, _)| *p)?;
    let rest = &text[pos + tag.len()..];
    let trimmed = rest.trim_start();
    if let Some(inner) = trimmed.strip_prefix('{') {
        let mut depth = 1usize;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(inner[..i].to_string());
                    }
                }
                _ => {}
            }
        }
        None
    } else if rest.starts_with(' ') {
        // `\boxed 5`: up to the next `$` or whitespace.
        let tok: String = trimmed
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '$')
            .collect();
        (!tok.is_empty()).then_some(tok)
    } else {
        None
    }
}

/// Unwraps the first `\text{...}` (deleting it when it is exactly "and"), as the reference does.
fn unwrap_first_text(s: &str) -> String {
    let Some(p) = s.find("\\text{") else {
        return s.to_string();
    };
    let inner_start = p + "\\text{".len();
    let mut depth = 1usize;
    for (i, c) in s[inner_start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    let inner = &s[inner_start..inner_start + i];
                    let after = &s[inner_start + i + 1..];
                    let keep = if inner.trim() == "and" { "" } else { inner };
                    return format!("{}{}{}", &s[..p], keep, after);
                }
            }
            _ => {}
        }
    }
    s.to_string()
}

/// The final answer of a generated solution: the reference's rule (text up to the first `".\n"`,
/// one trailing `.` dropped, the last `\boxed{}`, its first `\text{}` unwrapped), then the
/// fallbacks "the answer is X" / "answer: X". `None` when nothing answer-like is found.
pub fn extract_answer(text: &str) -> Option<String> {
    let head = match text.find(".\n") {
        Some(i) if text[..i].contains("boxed") || text[..i].contains("fbox") => &text[..i],
        _ => text,
    };
    let head = head.strip_suffix('.').unwrap_or(head);
    if let Some(b) = last_boxed(head) {
        return Some(unwrap_first_text(b.trim()));
    }
    let lower = text.to_lowercase();
    for key in ["the answer is", "final answer is", "answer is", "answer:"] {
        if let Some(p) = lower.rfind(key) {
            let rest = text[p + key.len()..].trim_start_matches([' ', ':', '$']);
            let end = rest.find(['\n']).unwrap_or(rest.len());
            let mut ans = rest[..end].trim().trim_end_matches('$').trim();
            if let Some(s) = ans.strip_suffix('.') {
                ans = s;
            }
            let ans = ans.trim_matches('$').trim();
            if !ans.is_empty() {
                return Some(ans.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxed_nested() {
        assert_eq!(
            last_boxed("a \\boxed{1} b \\boxed{\\frac{1}{2}}").as_deref(),
            Some("\\frac{1}{2}")
        );
        assert_eq!(last_boxed("\\fbox{x^{2}}").as_deref(), Some("x^{2}"));
        assert_eq!(last_boxed("\\boxed 5$").as_deref(), Some("5"));
        assert_eq!(last_boxed("\\boxed{unclosed"), None);
    }

    #[test]
    fn extraction_rules() {
        assert_eq!(
            extract_answer("The value of y is \\boxed{4}.<end_of_answer>").as_deref(),
            Some("4")
        );
        assert_eq!(
            extract_answer("so \\boxed{\\text{Tuesday}}.").as_deref(),
            Some("Tuesday")
        );
        assert_eq!(
            extract_answer("Thus, the answer is $\\frac{3}{4}$.").as_deref(),
            Some("\\frac{3}{4}")
        );
        assert_eq!(extract_answer("nothing here"), None);
        assert_eq!(
            extract_answer("we get \\boxed{75.5}, or rounded: \\boxed{76}.").as_deref(),
            Some("76")
        );
    }
}
