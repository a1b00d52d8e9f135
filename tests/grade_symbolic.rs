//! `equal_symbolic`: the sympy check through the executor, against hand-checked equivalences and
//! near misses. Pairs marked `sympy` are ones the fast path cannot decide (it answers "unequal"),
//! so they exercise the executor path; every pair is checked both ways.
//!
//! Needs python3 with sympy (`rstar setup-python`); skips with a printed reason when it is
//! missing, except with `RSTAR_REQUIRE_PYTHON=1`, where a missing interpreter fails the test.

mod common;

use rstar::exec::{ExecConfig, Executor};
use rstar::grade::{equal, equal_symbolic};

fn executor() -> Option<Executor> {
    match Executor::new(ExecConfig {
        workers: 2,
        ..ExecConfig::default()
    }) {
        Ok(e) => Some(e),
        Err(e) => common::python_missing(&format!("equal_symbolic needs python3 with sympy: {e}")),
    }
}

/// (pred, answer, equal?, needs sympy?) — each verdict checked by hand.
const CASES: &[(&str, &str, bool, bool)] = &[
    // decided by the fast path already; the symbolic grader must agree with it
    ("\\frac{1}{2}", "0.5", true, false),
    ("2\\sqrt{2}", "\\sqrt{8}", true, false),
    ("x^2-1", "(x-1)(x+1)", true, false),
    ("\\sin^2(x)+\\cos^2(x)", "1", true, false),
    ("\\log(8)", "3\\log(2)", true, false),
    ("\\frac{x^2-1}{x-1}", "x+1", true, false),
    ("\\frac{1}{2}", "0.6", false, false),
    ("2\\sqrt{2}", "\\sqrt{6}", false, false),
    ("x^2+1", "(x-1)(x+1)", false, false),
    ("\\sin^2(x)", "1", false, false),
    ("\\log(8)", "2\\log(2)", false, false),
    ("\\frac{x^2-1}{x+1}", "x+1", false, false),
    // the fast path cannot read these (it says "unequal"); sympy decides:
    // gcd(12, 18) = 6, max(3, 5) = 5, min(3, 5) = 3, gcd(x^2-1, x-1) = x-1
    ("\\gcd(12,18)", "6", true, true),
    ("\\max(3,5)", "5", true, true),
    ("\\min(3,5)", "3", true, true),
    ("\\gcd(x^2-1,x-1)", "x-1", true, true),
    // and their near misses
    ("\\gcd(12,18)", "4", false, true),
    ("\\max(3,5)", "3", false, true),
    ("\\min(3,5)", "5", false, true),
    ("\\gcd(x^2-1,x-1)", "x+1", false, true),
];

#[test]
fn symbolic_equivalences_hand_checked() {
    let Some(ex) = executor() else { return };
    let mut wrong = Vec::new();
    for &(a, b, want, needs_sympy) in CASES {
        if needs_sympy {
            assert!(
                !equal(a, b) && !equal(b, a),
                "{a:?} vs {b:?} is decided by the fast path; the case does not test sympy"
            );
        }
        for (x, y) in [(a, b), (b, a)] {
            let got = equal_symbolic(x, y, &ex);
            if got != want {
                wrong.push(format!("{x:?} vs {y:?}: got {got}, want {want}"));
            }
        }
    }
    assert!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
}
