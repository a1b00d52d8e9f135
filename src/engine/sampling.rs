//! Token sampling: greedy, temperature, top-k, top-p, with a seeded portable RNG.
//!
//! The order of filters is HF's: temperature, then top-k, then top-p. The same seed gives the same
//! tokens on every platform (xoshiro256** seeded through splitmix64; no OS randomness).

use crate::error::{Error, Result};

/// How to pick the next token from logits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    /// 0 means no top-k filter.
    pub top_k: usize,
    /// 1.0 means no nucleus filter.
    pub top_p: f32,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Rejects values no sampler can honour.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "temperature must be >= 0, got {}",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::InvalidArgument(format!(
                "top_p must be in (0, 1], got {}",
                self.top_p
            )));
        }
        Ok(())
    }
}

/// xoshiro256** (Blackman & Vigna), seeded with splitmix64.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let r = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        r
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Index of the largest logit (the first one on ties, as torch.argmax).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// A sampler owning its RNG stream and scratch space.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
    /// (probability, token) scratch, reused between calls.
    cand: Vec<(f32, u32)>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Sampler {
        Sampler {
            params,
            rng: Rng::new(params.seed),
            cand: Vec::new(),
        }
    }

    /// Picks the next token.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let p = self.params;
        if p.temperature == 0.0 || p.top_k == 1 {
            return argmax(logits);
        }
        let inv_t = 1.0 / p.temperature;
        self.cand.clear();
        self.cand.extend(
            logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (l * inv_t, i as u32)),
        );
        // Highest first; ties keep the lower id first.
        let by_desc = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if p.top_k > 0 && p.top_k < self.cand.len() {
            self.cand.select_nth_unstable_by(p.top_k - 1, by_desc);
            self.cand.truncate(p.top_k);
        }
        self.cand.sort_unstable_by(by_desc);
        let max = self.cand[0].0;
        let mut sum = 0f64;
        for c in self.cand.iter_mut() {
            c.0 = (c.0 - max).exp();
            sum += c.0 as f64;
        }
        // Nucleus: keep the smallest prefix whose mass reaches top_p (always at least one token).
        let mut keep = self.cand.len();
        if p.top_p < 1.0 {
            let mut acc = 0f64;
            for (i, c) in self.cand.iter().enumerate() {
                acc += c.0 as f64 / sum;
                if acc >= p.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
        }
        let mass: f64 = self.cand[..keep].iter().map(|c| c.0 as f64).sum();
        let mut u = self.rng.next_f64() * mass;
        for c in &self.cand[..keep] {
            u -= c.0 as f64;
            if u < 0.0 {
                return c.1;
            }
        }
        self.cand[keep - 1].1
    }
}

/// The CPU reference of the device sampler (`kernels/sampling.cu`, [`ops::sample`]): the same
/// thresholds, draw and scan, with f64 sums. `temperature <= 0` is argmax (lowest id on ties);
/// otherwise the kept set is every id whose `z = logit / T` is at least the larger of the top-k
/// threshold (k-th largest z, ties kept) and the top-p threshold (the largest z whose kept mass,
/// renormalised over the top-k set, reaches `top_p`); `u = rng(seed, counter)` picks the first id
/// whose running kept mass exceeds `u` times the total.
///
/// [`ops::sample`]: crate::backend::cuda::ops::sample
pub fn device_sample_reference(logits: &[f32], p: &crate::backend::cuda::ops::SampleParams) -> u32 {
    if p.temperature <= 0.0 {
        return argmax(logits);
    }
    let key = |f: f32| {
        let b = f.to_bits();
        if b & 0x8000_0000 != 0 {
            !b
        } else {
            b | 0x8000_0000
        }
    };
    let inv_t = 1.0 / p.temperature;
    let z: Vec<f32> = logits.iter().map(|&l| l * inv_t).collect();
    let zmax = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut keys: Vec<u32> = z.iter().map(|&v| key(v)).collect();
    keys.sort_unstable_by(|a, b| b.cmp(a));
    let n = z.len();
    let mut tau = 0u32;
    if p.top_k > 0 && (p.top_k as usize) < n {
        tau = keys[p.top_k as usize - 1];
    }
    let mass = |v: f32| ((v - zmax).exp()) as f64;
    if p.top_p < 1.0 {
        let total: f64 = z.iter().filter(|&&v| key(v) >= tau).map(|&v| mass(v)).sum();
        let target = p.top_p as f64 * total;
        let mut by_key: Vec<(u32, f64)> = z
            .iter()
            .filter(|&&v| key(v) >= tau)
            .map(|&v| (key(v), mass(v)))
            .collect();
        by_key.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
        let mut cum = 0f64;
        let mut i = 0;
        while i < by_key.len() {
            let k = by_key[i].0;
            while i < by_key.len() && by_key[i].0 == k {
                cum += by_key[i].1;
                i += 1;
            }
            if cum >= target {
                tau = k;
                break;
            }
        }
    }
    let kept = |v: f32| key(v) >= tau;
    let total: f64 = z.iter().filter(|&&v| kept(v)).map(|&v| mass(v)).sum();
    let splitmix = |mut x: u64| {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    };
    let r = splitmix(p.seed ^ splitmix(p.counter));
    let u = (r >> 40) as f64 / (1u64 << 24) as f64;
    let target = u * total;
    let mut run = 0f64;
    let mut last = 0;
    for (i, &v) in z.iter().enumerate() {
        if kept(v) {
            run += mass(v);
            last = i;
            if run > target {
                return i as u32;
            }
        }
    }
    last as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_is_argmax_first_on_ties() {
        let mut s = Sampler::new(SamplingParams::default());
        assert_eq!(s.sample(&[0.1, 3.0, 3.0, -1.0]), 1);
    }

    #[test]
    fn same_seed_same_tokens() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 7) % 11) as f32 / 3.0).collect();
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: 42,
        };
        let a: Vec<u32> = {
            let mut s = Sampler::new(p);
            (0..20).map(|_| s.sample(&logits)).collect()
        };
        let b: Vec<u32> = {
            let mut s = Sampler::new(p);
            (0..20).map(|_| s.sample(&logits)).collect()
        };
        assert_eq!(a, b);
        let c: Vec<u32> = {
            let mut s = Sampler::new(SamplingParams { seed: 43, ..p });
            (0..20).map(|_| s.sample(&logits)).collect()
        };
        assert_ne!(a, c);
    }

    #[test]
    fn top_k_and_top_p_restrict_support() {
        let logits = [5.0, 4.0, 3.0, 0.0, -1.0];
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 2,
            top_p: 1.0,
            seed: 1,
        });
        for _ in 0..200 {
            assert!(s.sample(&logits) < 2);
        }
        // p(0) = 0.665, p(0)+p(1) = 0.91: top_p 0.9 keeps two tokens.
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.9,
            seed: 1,
        });
        let draws: Vec<u32> = (0..400).map(|_| s.sample(&logits)).collect();
        assert!(draws.iter().all(|&t| t < 2));
        assert!(draws.contains(&1));
    }

    #[test]
    fn empirical_distribution_matches_softmax() {
        let logits = [1.0f32, 0.0, -1.0];
        let z: f32 = logits.iter().map(|l| (l / 0.7).exp()).sum();
        let mut s = Sampler::new(SamplingParams {
            temperature: 0.7,
            top_k: 0,
            top_p: 1.0,
            seed: 7,
        });
        let n = 20_000;
        let mut counts = [0usize; 3];
        for _ in 0..n {
            counts[s.sample(&logits) as usize] += 1;
        }
        for i in 0..3 {
            let p = (logits[i] / 0.7).exp() / z;
            let f = counts[i] as f32 / n as f32;
            assert!((p - f).abs() < 0.015, "token {i}: {f} vs {p}");
        }
    }
}
