//! Optimizers and learning-rate schedules over [`Param`]s with f32 state.
//!
//! * SGD: `p -= lr * g` (no momentum; used by the PyTorch parity tests).
//! * AdamW as `torch.optim.AdamW`: decoupled weight decay `p *= 1 - lr * wd` then the bias-corrected
//!   Adam update. Like the Hugging Face Trainer, 1-D tensors (norms, biases) get no weight decay.
//! * Schedules as `transformers.get_{constant,linear,cosine}_schedule_with_warmup`, evaluated at the
//!   number of optimizer steps already taken.
//! * Gradient clipping by global L2 norm.

use serde::{Deserialize, Serialize};

use crate::train::model::{Grads, Param};

/// Which optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd,
    Adamw,
}

/// Learning-rate decay after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Constant,
    Linear,
    Cosine,
}

/// The multiplier on the base learning rate at optimizer step `step` (0-based) of `total`.
pub fn lr_factor(schedule: Schedule, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return step as f64 / warmup.max(1) as f64;
    }
    let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    match schedule {
        Schedule::Constant => 1.0,
        Schedule::Linear => (1.0 - progress).max(0.0),
        Schedule::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
    }
}

/// Optimizer hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OptimConfig {
    pub kind: OptimizerKind,
    pub weight_decay: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

/// Optimizer state: Adam moments for each trainable parameter (empty for SGD or frozen ones).
#[derive(Debug, Clone)]
pub struct Optimizer {
    pub config: OptimConfig,
    /// Optimizer steps taken.
    pub t: u64,
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
}

impl Optimizer {
    /// Fresh state for `params`.
    pub fn new(config: OptimConfig, params: &[Param]) -> Optimizer {
        let state = || -> Vec<Vec<f32>> {
            params
                .iter()
                .map(|p| {
                    if p.trainable && config.kind == OptimizerKind::Adamw {
                        vec![0.0; p.value.len()]
                    } else {
                        Vec::new()
                    }
                })
                .collect()
        };
        Optimizer {
            config,
            t: 0,
            m: state(),
            v: state(),
        }
    }

    /// Applies one update with learning rate `lr`, gradients multiplied by `grad_scale`
    /// (clipping).
    pub fn step(&mut self, params: &mut [Param], grads: &Grads, lr: f32, grad_scale: f32) {
        self.t += 1;
        let c = self.config;
        let bc1 = 1.0 - (c.beta1 as f64).powi(self.t as i32);
        let bc2 = 1.0 - (c.beta2 as f64).powi(self.t as i32);
        for (i, (p, g)) in params.iter_mut().zip(&grads.0).enumerate() {
            if !p.trainable || g.is_empty() {
                continue;
            }
            match c.kind {
                OptimizerKind::Sgd => {
                    for (w, &gi) in p.value.iter_mut().zip(g) {
                        *w -= lr * gi * grad_scale;
                    }
                }
                OptimizerKind::Adamw => {
                    if p.shape.len() > 1 && c.weight_decay != 0.0 {
                        let f = 1.0 - lr * c.weight_decay;
                        p.value.iter_mut().for_each(|w| *w *= f);
                    }
                    let step = (lr as f64 / bc1) as f32;
                    let sq = bc2.sqrt() as f32;
                    let (m, v) = (&mut self.m[i], &mut self.v[i]);
                    for j in 0..g.len() {
                        let gi = g[j] * grad_scale;
                        m[j] = c.beta1 * m[j] + (1.0 - c.beta1) * gi;
                        v[j] = c.beta2 * v[j] + (1.0 - c.beta2) * gi * gi;
                        p.value[j] -= step * m[j] / (v[j].sqrt() / sq + c.eps);
                    }
                }
            }
        }
    }
}

/// The factor that scales gradients of global norm `norm` down to `max_norm` (1 if already within).
pub fn clip_scale(norm: f64, max_norm: Option<f32>) -> f32 {
    match max_norm {
        Some(m) if m > 0.0 && norm > m as f64 => (m as f64 / (norm + 1e-6)) as f32,
        _ => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_match_transformers() {
        // get_linear_schedule_with_warmup(warmup=2, total=10)
        let f: Vec<f64> = (0..11)
            .map(|s| lr_factor(Schedule::Linear, s, 2, 10))
            .collect();
        assert_eq!(f[0], 0.0);
        assert_eq!(f[1], 0.5);
        assert_eq!(f[2], 1.0);
        assert!((f[6] - 0.5).abs() < 1e-12);
        assert_eq!(f[10], 0.0);
        assert!((lr_factor(Schedule::Cosine, 6, 2, 10) - 0.5).abs() < 1e-12);
        assert_eq!(lr_factor(Schedule::Constant, 9, 2, 10), 1.0);
    }

    #[test]
    fn adamw_first_steps_match_torch() {
        // torch.optim.AdamW([p], lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1) with
        // p = [[1, -2]], grads [[0.5, 0.25]] then [[-1, 0.5]]:
        // after step 1: [[0.89, -2.08]]; after step 2: [[0.91412, -2.1657]] (see torch's formula).
        let mut params = vec![Param {
            name: "w".into(),
            shape: vec![1, 2],
            value: vec![1.0, -2.0],
            trainable: true,
        }];
        let cfg = OptimConfig {
            kind: OptimizerKind::Adamw,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        };
        let mut opt = Optimizer::new(cfg, &params);
        opt.step(&mut params, &Grads(vec![vec![0.5, 0.25]]), 0.1, 1.0);
        assert!(
            (params[0].value[0] - 0.89).abs() < 1e-5,
            "{:?}",
            params[0].value
        );
        assert!((params[0].value[1] + 2.08).abs() < 1e-5);
        opt.step(&mut params, &Grads(vec![vec![-1.0, 0.5]]), 0.1, 1.0);
        // m = [-0.055, 0.0725], v = [0.00124975, 0.00031244]; bc1 = 0.19, bc2 = 0.001999
        let expect = |p0: f64, m: f64, v: f64| {
            p0 * (1.0 - 0.01) - 0.1 / 0.19 * m / ((v / 0.001999).sqrt() + 1e-8)
        };
        let e0 = expect(0.89, -0.055, 0.999 * 0.00025 + 0.001);
        let e1 = expect(-2.08, 0.0725, 0.999 * 0.0000625 + 0.00025);
        assert!(
            (params[0].value[0] as f64 - e0).abs() < 1e-5,
            "{:?} {e0}",
            params[0].value
        );
        assert!((params[0].value[1] as f64 - e1).abs() < 1e-5);
    }

    #[test]
    fn clipping() {
        assert_eq!(clip_scale(0.5, Some(1.0)), 1.0);
        assert!((clip_scale(4.0, Some(1.0)) - 0.25).abs() < 1e-6);
        assert_eq!(clip_scale(4.0, None), 1.0);
    }
}
