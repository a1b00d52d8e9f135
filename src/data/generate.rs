//! Generated math word problems of graded difficulty, with exact answers and programmatically
//! written code-augmented solutions (the bootstrap data of a self-evolved model, issue 8 item 8).
//!
//! Kinds, unlocked by level (a problem of level L draws its kind uniformly from the first L):
//! 1. arithmetic: one or two operations on whole numbers (sums, differences, products, sharing);
//! 2. fractions: parts of a quantity, sums of fractions (answers as reduced `p/q` or integers);
//! 3. percentages: discounts, increases and "what percent" (integer answers by construction);
//! 4. linear equations: `a*x + b = c` in words, with an integer solution.
//!
//! Number ranges grow with the level. Every answer is computed exactly here (integers and
//! `Fraction`), and every solution is written in the step format of [`crate::steps`]: `<code>`,
//! steps of Python comments (the reasoning) plus code each closed by `<end_of_step>`, the last
//! step printing the answer under `# Now print the final answer` and `<end_of_code>`, the output
//! block with what that program prints, and `<answer>... \boxed{answer}.\n<end_of_answer>`.
//! Fractions are computed with Python's `fractions.Fraction`, whose `print` gives `p/q` (or an
//! integer), the answer's own format. Same seed and arguments, same problems.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::steps::tags;

/// The highest level.
pub const MAX_LEVEL: u32 = 4;

/// A generated problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenProblem {
    pub question: String,
    /// The exact answer: an integer, or a reduced fraction `p/q`.
    pub answer: String,
    pub level: u32,
    pub kind: String,
    /// The code-augmented solution (the `response` of an SFT record).
    pub response: String,
}

struct Draw(Rng);

impl Draw {
    /// Uniform in `lo..=hi`.
    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.0.next_u64() % (hi - lo + 1) as u64) as i64
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[(self.0.next_u64() % v.len() as u64) as usize]
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a.abs()
    } else {
        gcd(b, a % b)
    }
}

/// `p/q` reduced, or the integer.
fn frac(p: i64, q: i64) -> String {
    let g = gcd(p, q).max(1);
    let (p, q) = (p / g, q / g);
    let (p, q) = if q < 0 { (-p, -q) } else { (p, q) };
    if q == 1 {
        p.to_string()
    } else {
        format!("{p}/{q}")
    }
}

/// A solution from `(reasoning, code)` steps and the final expression to print.
fn solution(steps: &[(&str, String)], result_var: &str, answer: &str, unit: &str) -> String {
    let mut s = format!("{}\n", tags::CODE);
    for (k, (why, code)) in steps.iter().enumerate() {
        s.push_str(&format!(
            "# Step {}: {why}\n{code}\n{}\n\n",
            k + 1,
            tags::END_OF_STEP
        ));
    }
    s.push_str(&format!(
        "# {}\nprint({result_var})\n{}\n{}{answer}{}\n{}From the result, we can see that the answer is \\boxed{{{answer}}}{unit}.\n{}",
        tags::PRINT_FINAL_ANSWER,
        tags::END_OF_CODE,
        tags::OUTPUT,
        tags::END_OF_OUTPUT,
        tags::ANSWER,
        tags::END_OF_ANSWER
    ));
    s
}

const NAMES: &[&str] = &[
    "Ava", "Ben", "Chloe", "Diego", "Emma", "Farid", "Grace", "Hiro",
];
const ITEMS: &[&str] = &["apples", "marbles", "stickers", "books", "pencils", "cards"];

fn arithmetic(d: &mut Draw, level: u32) -> (String, String, String) {
    let m = 10i64.pow(level.min(3));
    let (name, item) = (d.pick(NAMES), d.pick(ITEMS));
    match d.int(0, 2) {
        0 => {
            let (a, b, c) = (d.int(2, 2 * m), d.int(2, 2 * m), d.int(1, m));
            let ans = a + b - c;
            let q = format!("{name} has {a} {item}, gets {b} more, then gives away {c}. How many {item} does {name} have now?");
            let s = solution(
                &[
                    (
                        "the starting amount and the change",
                        format!("start = {a}\ngot = {b}\ngave = {c}"),
                    ),
                    (
                        "add what was received and subtract what was given",
                        "total = start + got - gave".into(),
                    ),
                ],
                "total",
                &ans.to_string(),
                "",
            );
            (q, ans.to_string(), s)
        }
        1 => {
            let (a, b) = (d.int(2, 12 * level as i64), d.int(2, m));
            let ans = a * b;
            let q = format!("Each box holds {b} {item}. How many {item} are in {a} boxes?");
            let s = solution(
                &[
                    (
                        "the number of boxes and the amount per box",
                        format!("boxes = {a}\nper_box = {b}"),
                    ),
                    (
                        "multiply to get the total",
                        "total = boxes * per_box".into(),
                    ),
                ],
                "total",
                &ans.to_string(),
                "",
            );
            (q, ans.to_string(), s)
        }
        _ => {
            let (k, each) = (d.int(2, 9 + level as i64), d.int(2, m));
            let n = k * each;
            let q = format!("{name} shares {n} {item} equally among {k} friends. How many {item} does each friend get?");
            let s = solution(
                &[
                    (
                        "the total and the number of friends",
                        format!("total = {n}\nfriends = {k}"),
                    ),
                    (
                        "divide equally; the division is exact",
                        "each = total // friends".into(),
                    ),
                ],
                "each",
                &each.to_string(),
                "",
            );
            (q, each.to_string(), s)
        }
    }
}

fn fractions(d: &mut Draw, level: u32) -> (String, String, String) {
    let m = 4 + 2 * level as i64;
    let imp = "from fractions import Fraction";
    if d.int(0, 1) == 0 {
        let q1 = d.int(2, m);
        let p1 = d.int(1, q1 - 1);
        let whole = q1 * d.int(1, 3 * level as i64);
        let item = d.pick(ITEMS);
        let ans = frac(p1 * whole, q1);
        let q = format!("A jar holds {whole} {item}. What is {p1}/{q1} of them?");
        let s = solution(
            &[
                (
                    "the whole amount and the fraction",
                    format!("{imp}\nwhole = {whole}\npart = Fraction({p1}, {q1})"),
                ),
                (
                    "a fraction of a quantity is a product",
                    "result = part * whole".into(),
                ),
            ],
            "result",
            &ans,
            "",
        );
        (q, ans, s)
    } else {
        let (q1, q2) = (d.int(2, m), d.int(2, m));
        let (p1, p2) = (d.int(1, q1 - 1), d.int(1, q2 - 1));
        let ans = frac(p1 * q2 + p2 * q1, q1 * q2);
        let name = d.pick(NAMES);
        let q = format!("{name} walks {p1}/{q1} of a mile in the morning and {p2}/{q2} of a mile in the evening. How many miles does {name} walk in total?");
        let s = solution(
            &[
                (
                    "the two distances as exact fractions",
                    format!(
                        "{imp}\nmorning = Fraction({p1}, {q1})\nevening = Fraction({p2}, {q2})"
                    ),
                ),
                ("add them", "total = morning + evening".into()),
            ],
            "total",
            &ans,
            "",
        );
        (q, ans, s)
    }
}

fn percentages(d: &mut Draw, level: u32) -> (String, String, String) {
    let pcts = [5i64, 10, 15, 20, 25, 30, 40, 50, 60, 75];
    let p = pcts[d.int(0, pcts.len() as i64 - 1) as usize];
    // A price that is a multiple of 20 makes p% of it whole for every p above.
    let price = 20 * d.int(1, 5 * level as i64);
    match d.int(0, 2) {
        0 => {
            let ans = price - price * p / 100;
            let q = format!("A jacket costs ${price}. It is on sale for {p}% off. What is the sale price in dollars?");
            let s = solution(
                &[
                    (
                        "the price and the discount rate",
                        format!("price = {price}\nrate = {p}"),
                    ),
                    (
                        "the discount is rate percent of the price",
                        "discount = price * rate // 100".into(),
                    ),
                    ("subtract the discount", "sale = price - discount".into()),
                ],
                "sale",
                &ans.to_string(),
                "",
            );
            (q, ans.to_string(), s)
        }
        1 => {
            let ans = price + price * p / 100;
            let q = format!(
                "A town had {price} trees. The number grew by {p}%. How many trees are there now?"
            );
            let s = solution(
                &[
                    (
                        "the starting count and the growth rate",
                        format!("trees = {price}\nrate = {p}"),
                    ),
                    (
                        "the increase is rate percent of the count",
                        "increase = trees * rate // 100".into(),
                    ),
                    ("add the increase", "now = trees + increase".into()),
                ],
                "now",
                &ans.to_string(),
                "",
            );
            (q, ans.to_string(), s)
        }
        _ => {
            let part = price * p / 100;
            let q = format!("A class has {price} students and {part} of them wear glasses. What percent of the students wear glasses?");
            let s = solution(
                &[
                    (
                        "the part and the whole",
                        format!("part = {part}\nwhole = {price}"),
                    ),
                    (
                        "percent = part / whole * 100, exact here",
                        "percent = part * 100 // whole".into(),
                    ),
                ],
                "percent",
                &p.to_string(),
                "\\%",
            );
            (q, p.to_string(), s)
        }
    }
}

fn linear(d: &mut Draw, level: u32) -> (String, String, String) {
    let m = 5 * level as i64;
    let (a, x) = (d.int(2, 3 + level as i64), d.int(-m, 2 * m));
    let b = d.int(-m, 3 * m);
    let c = a * x + b;
    let name = d.pick(NAMES);
    let bs = if b < 0 {
        format!("subtracts {}", -b)
    } else {
        format!("adds {b}")
    };
    let q = format!("{name} thinks of a number x, multiplies it by {a} and then {bs}. The result is {c}. What is x?");
    let s = solution(
        &[
            (
                "the equation is a*x + b = c",
                format!("a = {a}\nb = {b}\nc = {c}"),
            ),
            (
                "move b to the other side: a*x = c - b",
                "rhs = c - b".into(),
            ),
            ("divide by a; the division is exact", "x = rhs // a".into()),
        ],
        "x",
        &x.to_string(),
        "",
    );
    (q, x.to_string(), s)
}

/// `count` problems of `level` (1..=[`MAX_LEVEL`]) from `seed`.
pub fn generate(level: u32, count: usize, seed: u64) -> Result<Vec<GenProblem>> {
    if !(1..=MAX_LEVEL).contains(&level) {
        return Err(Error::InvalidArgument(format!(
            "level must be 1..={MAX_LEVEL}, got {level}"
        )));
    }
    let mut d = Draw(Rng::new(seed ^ (u64::from(level) << 56)));
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let k = d.int(1, level as i64) as u32;
        let (kind, (question, answer, response)) = match k {
            1 => ("arithmetic", arithmetic(&mut d, level)),
            2 => ("fractions", fractions(&mut d, level)),
            3 => ("percentages", percentages(&mut d, level)),
            _ => ("linear", linear(&mut d, level)),
        };
        out.push(GenProblem {
            question,
            answer,
            level,
            kind: kind.into(),
            response,
        });
    }
    Ok(out)
}

/// Writes problems as JSONL: `{question, answer, level, kind}`, plus with `solutions` the SFT
/// fields `{query, response}` (so one file serves `rstar mcts`/`evolve` and `rstar train sft`).
pub fn write_jsonl(path: &std::path::Path, problems: &[GenProblem], solutions: bool) -> Result<()> {
    let mut s = String::new();
    for p in problems {
        let mut v = serde_json::json!({
            "question": p.question, "answer": p.answer, "level": p.level, "kind": p.kind,
        });
        if solutions {
            v["query"] = p.question.clone().into();
            v["response"] = p.response.clone().into();
        }
        s.push_str(&v.to_string());
        s.push('\n');
    }
    std::fs::write(path, s).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_reduce() {
        assert_eq!(frac(6, 8), "3/4");
        assert_eq!(frac(10, 5), "2");
        assert_eq!(frac(3, -9), "-1/3");
    }

    #[test]
    fn deterministic_and_graded() {
        let a = generate(4, 40, 7).unwrap();
        assert_eq!(a, generate(4, 40, 7).unwrap());
        assert_ne!(a, generate(4, 40, 8).unwrap());
        // Level 1 is arithmetic only; level 4 reaches every kind.
        assert!(generate(1, 30, 1)
            .unwrap()
            .iter()
            .all(|p| p.kind == "arithmetic"));
        let kinds: std::collections::BTreeSet<&str> = a.iter().map(|p| p.kind.as_str()).collect();
        assert_eq!(kinds.len(), 4, "{kinds:?}");
        assert!(generate(0, 1, 1).is_err() && generate(5, 1, 1).is_err());
    }

    #[test]
    fn linear_answers_solve_their_equation() {
        // Independent check: parse a, b, c back out of the question and verify a*x + b = c.
        for p in generate(4, 200, 3)
            .unwrap()
            .iter()
            .filter(|p| p.kind == "linear")
        {
            let nums: Vec<i64> = p
                .question
                .split(|c: char| !c.is_ascii_digit() && c != '-')
                .filter_map(|s| s.parse().ok())
                .collect();
            let (a, b, c) = (nums[0], nums[1], nums[2]);
            let b = if p.question.contains("subtracts") {
                -b
            } else {
                b
            };
            let x: i64 = p.answer.parse().unwrap();
            assert_eq!(a * x + b, c, "{}", p.question);
        }
    }
}
