//! Scripted stand-ins for the search's model traits: a policy answering by the partial
//! solution, an executor failing programs that contain `FAIL`, a value model keyed by the last
//! step's text.

use std::collections::HashMap;

use rstar::exec::ExecResult;
use rstar::search::{Policy, ScoreRequest, StepRequest, StepRunner, ValueModel};

/// Answers by the partial solution (path texts concatenated); logs each expanded solution.
pub struct Script {
    pub steps: HashMap<String, Vec<String>>,
    pub default: Vec<String>,
    pub log: Vec<String>,
}

impl Script {
    pub fn new(steps: &[(&str, &[&str])]) -> Script {
        Script {
            steps: steps
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
            default: vec!["x = 1\n<end_of_step>".into()],
            log: Vec::new(),
        }
    }
}

impl Policy for Script {
    fn propose(&mut self, reqs: &[StepRequest<'_>], n: usize) -> rstar::Result<Vec<Vec<String>>> {
        Ok(reqs
            .iter()
            .map(|r| {
                let sol = r.path.concat();
                self.log.push(sol.clone());
                let v = self.steps.get(&sol).unwrap_or(&self.default);
                v.iter()
                    .cycle()
                    .take(n.max(v.len()))
                    .take(n)
                    .cloned()
                    .collect()
            })
            .collect())
    }
}

/// Fails programs containing `FAIL`, prints `7` otherwise.
pub struct Runner;

impl StepRunner for Runner {
    fn run_many(&self, programs: &[String]) -> Vec<ExecResult> {
        programs
            .iter()
            .map(|p| {
                let fail = p.contains("FAIL");
                ExecResult {
                    ok: !fail,
                    stdout: if fail { String::new() } else { "7\n".into() },
                    stderr: String::new(),
                    error: fail.then(|| "NameError: name 'y' is not defined".into()),
                    exit: Some(if fail { 1 } else { 0 }),
                    signal: None,
                    timed_out: false,
                    elapsed_ms: 0.0,
                    sandbox: Default::default(),
                }
            })
            .collect()
    }
}

/// Values by the last step's text (0 when unknown); logs how many were asked.
pub struct Values(pub HashMap<String, f64>, pub usize);

impl ValueModel for Values {
    fn value(&mut self, reqs: &[ScoreRequest<'_>]) -> rstar::Result<Vec<f64>> {
        self.1 += reqs.len();
        Ok(reqs
            .iter()
            .map(|r| {
                let last = r.path.last().copied().unwrap_or_default();
                self.0.get(last).copied().unwrap_or(0.0)
            })
            .collect())
    }
}

pub fn values(v: &[(&str, f64)]) -> Values {
    Values(v.iter().map(|(k, x)| (k.to_string(), *x)).collect(), 0)
}
