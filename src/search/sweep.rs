//! Compute-matched evaluation (`rstar eval sweep`): every mode at every token budget over one
//! problem file, one resumable JSONL of problem results per (mode, budget) cell, and the summary
//! table (accuracy with its 95% Wilson interval, generated tokens and seconds per problem) with a
//! plot of accuracy against generated tokens per mode.
//!
//! Owns the cell files (read back, a torn or foreign line dropped), the summary of a cell and the
//! table and plot; running the searches is [`crate::search::eval::evaluate`]'s job.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::plot::{line_chart, Chart, Series};
use crate::search::api::Strategy;

/// The 95% Wilson score interval of `k` successes in `n` trials ((0, 0) for none).
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 0.0);
    }
    let (z, n, p) = (1.959_964, n as f64, k as f64 / n as f64);
    let den = 1.0 + z * z / n;
    let mid = (p + z * z / (2.0 * n)) / den;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / den;
    ((mid - half).max(0.0), (mid + half).min(1.0))
}

/// The name of a mode in file names, tables and flags.
pub fn mode_name(s: Strategy) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The results file of one cell.
pub fn cell_path(dir: &Path, mode: Strategy, budget: u64) -> PathBuf {
    dir.join(format!("{}-{budget}.jsonl", mode_name(mode)))
}

/// The problem results already in a cell's file (a missing file has none). Lines that do not
/// parse (a run killed mid-line) are dropped and the file rewritten without them.
pub fn read_cell(path: &Path) -> Result<Vec<Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let good: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("index").is_some_and(Value::is_u64))
        .collect();
    if good.len() != text.lines().count() || !text.is_empty() && !text.ends_with('\n') {
        let mut f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        for v in &good {
            writeln!(f, "{v}").map_err(|e| Error::io(path, e))?;
        }
    }
    Ok(good)
}

/// The problem indices a cell already holds.
pub fn done(results: &[Value]) -> HashSet<u64> {
    results.iter().filter_map(|v| v["index"].as_u64()).collect()
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub mode: String,
    /// The token budget per problem and run (0 = none).
    pub budget: u64,
    pub problems: usize,
    pub correct: usize,
    pub accuracy: f64,
    /// 95% Wilson interval.
    pub low: f64,
    pub high: f64,
    pub tokens_per_problem: f64,
    pub computed_per_problem: f64,
    pub seconds_per_problem: f64,
    /// Step-format compliance: steps that parsed and ran (or answered) over all steps.
    pub compliance: f64,
}

/// A cell's row: a problem counts as correct by the mode's answer (the majority vote for `maj`,
/// else the highest-valued trajectory).
pub fn summarize(mode: Strategy, budget: u64, results: &[Value]) -> Row {
    let key = if mode.votes() { "majority" } else { "ppm_best" };
    let graded: Vec<&Value> = results.iter().filter(|r| r["graded"].is_object()).collect();
    let correct = graded
        .iter()
        .filter(|r| r["graded"][key] == Value::Bool(true))
        .count();
    let n = results.len().max(1) as f64;
    let mean = |f: &dyn Fn(&Value) -> f64| results.iter().map(f).sum::<f64>() / n;
    let (low, high) = wilson(correct, graded.len());
    Row {
        mode: mode_name(mode),
        budget,
        problems: graded.len(),
        correct,
        accuracy: correct as f64 / graded.len().max(1) as f64,
        low,
        high,
        tokens_per_problem: mean(&|r| r["tokens"]["generated"].as_f64().unwrap_or(0.0)),
        computed_per_problem: mean(&|r| r["tokens"]["computed"].as_f64().unwrap_or(0.0)),
        seconds_per_problem: mean(&|r| r["seconds"].as_f64().unwrap_or(0.0)),
        compliance: {
            let sum = |k: &str| {
                results
                    .iter()
                    .filter_map(|r| r["ends"][k].as_u64())
                    .sum::<u64>()
            };
            sum("compliant") as f64 / sum("steps").max(1) as f64
        },
    }
}

/// The table as Markdown.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| mode | budget | problems | accuracy | 95% interval | gen tokens/problem | computed tokens/problem | s/problem | step compliance |\n\
         |---|---:|---:|---:|---|---:|---:|---:|---:|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {:.1}% ({}/{}) | {:.1}-{:.1}% | {:.0} | {:.0} | {:.1} | {:.0}% |\n",
            r.mode,
            if r.budget == 0 {
                "-".to_string()
            } else {
                r.budget.to_string()
            },
            r.problems,
            100.0 * r.accuracy,
            r.correct,
            r.problems,
            100.0 * r.low,
            100.0 * r.high,
            r.tokens_per_problem,
            r.computed_per_problem,
            r.seconds_per_problem,
            100.0 * r.compliance,
        ));
    }
    s
}

/// Accuracy against generated tokens per problem, one line per mode (PNG bytes).
pub fn plot(rows: &[Row]) -> Result<Vec<u8>> {
    const COLORS: [[u8; 3]; 7] = [
        [31, 119, 180],
        [255, 127, 14],
        [44, 160, 44],
        [214, 39, 40],
        [148, 103, 189],
        [140, 86, 75],
        [227, 119, 194],
    ];
    let mut series: Vec<Series> = Vec::new();
    for r in rows {
        let at = match series.iter().position(|s| s.label == r.mode) {
            Some(i) => i,
            None => {
                series.push(Series {
                    label: r.mode.clone(),
                    color: COLORS[series.len() % COLORS.len()],
                    points: Vec::new(),
                });
                series.len() - 1
            }
        };
        series[at].points.push((r.tokens_per_problem, r.accuracy));
    }
    for s in &mut series {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let chart = Chart {
        title: "Accuracy at equal generated tokens".into(),
        x_label: "generated tokens per problem".into(),
        y_label: "accuracy".into(),
        y_fraction: true,
        integer_x: false,
    };
    Ok(line_chart(&chart, &series)?.png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_the_textbook_values() {
        // 8 of 10: 0.490-0.943 (Wilson 1927; statsmodels proportion_confint(method="wilson")).
        let (lo, hi) = wilson(8, 10);
        assert!(
            (lo - 0.4902).abs() < 1e-4 && (hi - 0.9433).abs() < 1e-4,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(0, 20);
        assert!(lo == 0.0 && (hi - 0.1611).abs() < 1e-4, "{hi}");
        assert_eq!(wilson(0, 0), (0.0, 0.0));
    }

    #[test]
    fn cells_resume_and_summarize_by_the_modes_answer() {
        let dir = tempfile::tempdir().unwrap();
        let p = cell_path(dir.path(), Strategy::Majority, 64);
        assert!(p.ends_with("maj-64.jsonl"));
        let line = |i: u64, maj: bool, best: bool| {
            serde_json::json!({"index": i, "graded": {"majority": maj, "ppm_best": best},
                "tokens": {"generated": 10 * (i + 1), "computed": 100}, "seconds": 2.0,
                "ends": {"steps": 4, "compliant": 3 - i}})
            .to_string()
        };
        let text = format!(
            "{}\n{}\n{{\"index\": 2, \"gra",
            line(0, true, false),
            line(1, true, true)
        );
        std::fs::write(&p, text).unwrap();
        let r = read_cell(&p).unwrap();
        assert_eq!(done(&r), HashSet::from([0, 1]));
        // The torn line is gone from the file.
        assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), 2);
        let maj = summarize(Strategy::Majority, 64, &r);
        assert_eq!((maj.correct, maj.problems), (2, 2));
        assert_eq!(maj.tokens_per_problem, 15.0);
        assert_eq!(maj.compliance, 5.0 / 8.0);
        let best = summarize(Strategy::BestOfN, 64, &r);
        assert_eq!(best.correct, 1);
        let t = table(&[maj, best]);
        assert!(t.contains("| maj | 64 | 2 | 100.0% (2/2) |"), "{t}");
        assert!(plot(&[summarize(Strategy::Greedy, 0, &r)])
            .unwrap()
            .starts_with(b"\x89PNG"));
    }
}
