//! Token sampling: greedy, temperature, top-k, top-p, with a seeded portable RNG.
//!
//! The order of filters is HF's: temperature, then top-k, then top-p. The same seed gives the same
//! tokens on every platform (xoshiro256** seeded through splitmix64; no OS randomness).

use crate::error::{Error, Result};
use crate::rng::Rng;

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

impl SamplingParams {
    /// These settings for the device sampler ([`ops::sample`]), drawing its `counter`-th token.
    /// The device's draw is `rng(seed, counter)`, so a sequence's tokens depend on its seed and
    /// position only, not on what it is batched with; they are not the CPU sampler's tokens.
    ///
    /// [`ops::sample`]: crate::backend::cuda::ops::sample
    pub fn on_device(&self, counter: u64) -> crate::backend::cuda::ops::SampleParams {
        crate::backend::cuda::ops::SampleParams {
            temperature: self.temperature,
            top_k: u32::try_from(self.top_k).unwrap_or(u32::MAX),
            top_p: self.top_p,
            pad: 0,
            seed: self.seed,
            counter,
        }
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

/// A sampler owning its RNG stream (its scratch space is per thread, so thousands of concurrent
/// samplers cost no memory each).
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
}

/// Per-thread scratch of [`Sampler::sample`]: `(probability, token)` candidates and the bucket
/// masses of [`prefix_reaching`]; grown once, then reused.
#[derive(Default)]
struct Scratch {
    cand: Vec<(f32, u32)>,
    sums: Vec<f64>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Sampler {
        Sampler {
            params,
            rng: Rng::new(params.seed),
        }
    }

    /// Picks the next token.
    ///
    /// Semantically this sorts the candidates by scaled logit (highest first, ties to the lower id),
    /// keeps the nucleus prefix and draws from it in that order; no full sort is done: the nucleus
    /// cut and the draw are both "the shortest sorted prefix whose mass reaches a target", found by
    /// `prefix_reaching` in a few linear passes, so a 152k vocabulary costs little.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let p = self.params;
        if p.temperature == 0.0 || p.top_k == 1 || logits.is_empty() {
            return argmax(logits);
        }
        SCRATCH.with(|s| {
            let Scratch { cand, sums } = &mut *s.borrow_mut();
            let (keep, mass) = nucleus(p, logits, cand, sums);
            let u = self.rng.next_f64() * mass;
            let (end, _) = prefix_reaching(&mut cand[..keep], sums, |acc| acc > u);
            cand[end - 1].1
        })
    }
}

/// Fills `cand` with `(unnormalised probability, id)` after temperature, top-k and top-p, the
/// kept set first (in no particular order); returns its size and mass. `logits` is non-empty.
fn nucleus(
    p: SamplingParams,
    logits: &[f32],
    cand: &mut Vec<(f32, u32)>,
    sums: &mut Vec<f64>,
) -> (usize, f64) {
    let inv_t = 1.0 / p.temperature;
    cand.clear();
    cand.extend(
        logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (l * inv_t, i as u32)),
    );
    if p.top_k > 0 && p.top_k < cand.len() {
        cand.select_nth_unstable_by(p.top_k - 1, by_desc);
        cand.truncate(p.top_k);
    }
    let max = cand.iter().copied().min_by(by_desc).map_or(0.0, |c| c.0);
    let mut sum = 0f64;
    for c in cand.iter_mut() {
        c.0 = (c.0 - max).exp();
        sum += c.0 as f64;
    }
    // Nucleus: the shortest prefix whose mass reaches top_p (always at least one token).
    if p.top_p < 1.0 {
        let target = p.top_p as f64 * sum;
        prefix_reaching(cand, sums, |acc| acc >= target)
    } else {
        (cand.len(), sum)
    }
}

/// Sampling order over `(probability or scaled logit, id)`: highest value first, ties to the
/// lower id (a total order, so every selection below is deterministic).
fn by_desc(a: &(f32, u32), b: &(f32, u32)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// Below this many candidates the prefix search sorts and scans.
const SORT_BELOW: usize = 64;

/// [`prefix_reaching`] groups masses by their top bits (exponent and 4 mantissa bits): for
/// non-negative floats the bit pattern is monotone in the value, so every member of a higher
/// bucket precedes every member of a lower one in [`by_desc`] order.
const BUCKET_SHIFT: u32 = 19;
/// Buckets up to +infinity's; NaN and negative masses (never produced: masses are exp of a
/// difference to the maximum) would share the last.
const BUCKETS: usize = (0x7F80_0000 >> BUCKET_SHIFT) + 1;

fn bucket(v: f32) -> usize {
    ((v.to_bits() >> BUCKET_SHIFT) as usize).min(BUCKETS - 1)
}

/// The shortest prefix, in [`by_desc`] order, of the non-negative `(mass, id)` candidates whose
/// running mass (an f64 sum) satisfies `reached`: returns its length `end` (the whole slice when
/// no prefix does) and its mass, and leaves the slice permuted so that `cand[..end]` is that
/// prefix with its last (lowest) member at `end - 1`.
///
/// One pass sums the mass of each value bucket ([`BUCKET_SHIFT`]); walking the buckets from the
/// top finds the one where the running mass is reached; two partition passes move the buckets
/// above it to the front and its own members after them; only that bucket (a small fraction of a
/// vocabulary) is sorted and scanned. Equal to sorting everything and scanning, up to the rounding
/// order of the f64 sums. `sums` is scratch.
fn prefix_reaching(
    cand: &mut [(f32, u32)],
    sums: &mut Vec<f64>,
    reached: impl Fn(f64) -> bool,
) -> (usize, f64) {
    let scan = |cand: &mut [(f32, u32)], lo: usize, hi: usize, mut acc: f64| {
        cand[lo..hi].sort_unstable_by(by_desc);
        for (i, c) in cand[lo..hi].iter().enumerate() {
            acc += c.0 as f64;
            if reached(acc) {
                return (lo + i + 1, acc);
            }
        }
        (hi, acc)
    };
    if cand.len() <= SORT_BELOW {
        return scan(cand, 0, cand.len(), 0.0);
    }
    sums.clear();
    sums.resize(BUCKETS, 0.0);
    for c in cand.iter() {
        sums[bucket(c.0)] += c.0 as f64;
    }
    // Mass of the buckets above `b`, every member of which precedes every member of `b`.
    let mut acc = 0f64;
    let Some(b) = (0..BUCKETS).rev().find(|&b| {
        let hit = reached(acc + sums[b]);
        if !hit {
            acc += sums[b];
        }
        hit
    }) else {
        return (cand.len(), acc);
    };
    let mut lo = 0;
    for j in 0..cand.len() {
        if bucket(cand[j].0) > b {
            cand.swap(lo, j);
            lo += 1;
        }
    }
    let mut hi = lo;
    for j in lo..cand.len() {
        if bucket(cand[j].0) == b {
            cand.swap(hi, j);
            hi += 1;
        }
    }
    scan(cand, lo, hi, acc)
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

    /// The sampler as first written: a full sort of every candidate, then a linear scan.
    fn full_sort_reference(p: SamplingParams, rng: &mut Rng, logits: &[f32]) -> (Vec<u32>, u32) {
        let inv_t = 1.0 / p.temperature;
        let mut cand: Vec<(f32, u32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (l * inv_t, i as u32))
            .collect();
        cand.sort_by(by_desc);
        if p.top_k > 0 {
            cand.truncate(p.top_k);
        }
        let max = cand[0].0;
        let mut sum = 0f64;
        for c in cand.iter_mut() {
            c.0 = (c.0 - max).exp();
            sum += c.0 as f64;
        }
        let mut keep = cand.len();
        if p.top_p < 1.0 {
            let mut acc = 0f64;
            for (i, c) in cand.iter().enumerate() {
                acc += c.0 as f64 / sum;
                if acc >= p.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
        }
        let kept: Vec<u32> = cand[..keep].iter().map(|c| c.1).collect();
        let mass: f64 = cand[..keep].iter().map(|c| c.0 as f64).sum();
        let mut u = rng.next_f64() * mass;
        for c in &cand[..keep] {
            u -= c.0 as f64;
            if u < 0.0 {
                return (kept, c.1);
            }
        }
        (kept, cand[keep - 1].1)
    }

    #[test]
    fn partial_selection_matches_full_sort() {
        let mut gen = Rng::new(99);
        let n = 5000;
        let rows: Vec<(&str, Vec<f32>)> = vec![
            (
                "flat",
                (0..n).map(|_| gen.next_f64() as f32 * 2.0).collect(),
            ),
            (
                "peaked",
                (0..n).map(|_| gen.next_f64() as f32 * 40.0).collect(),
            ),
            // Few distinct values: ties decided by id.
            (
                "ties",
                (0..n).map(|_| (gen.next_u64() % 6) as f32).collect(),
            ),
            (
                "masked",
                (0..n)
                    .map(|i| {
                        if i % 3 == 0 {
                            f32::NEG_INFINITY
                        } else {
                            gen.next_f64() as f32 * 8.0
                        }
                    })
                    .collect(),
            ),
            ("tiny", vec![0.5, 2.0, 2.0, -1.0, 3.0]),
        ];
        let settings = [
            (1.0, 0, 1.0),
            (1.0, 0, 0.95),
            (0.7, 0, 0.5),
            (0.9, 50, 0.95),
            (1.3, 200, 1.0),
            (1.0, 3, 0.3),
            (2.0, 0, 0.999),
        ];
        for (name, row) in &rows {
            for &(temperature, top_k, top_p) in &settings {
                let p = SamplingParams {
                    temperature,
                    top_k,
                    top_p,
                    seed: 5,
                };
                let mut fast = Sampler::new(p);
                let mut reference = Rng::new(p.seed);
                for draw in 0..40 {
                    let (mut kept, want) = full_sort_reference(p, &mut reference, row);
                    let (mut cand, mut sums) = (Vec::new(), Vec::new());
                    let (keep, _) = nucleus(p, row, &mut cand, &mut sums);
                    let mut got_kept: Vec<u32> = cand[..keep].iter().map(|c| c.1).collect();
                    kept.sort_unstable();
                    got_kept.sort_unstable();
                    assert_eq!(got_kept, kept, "{name} {p:?}: kept set");
                    assert_eq!(fast.sample(row), want, "{name} {p:?}: draw {draw}");
                }
            }
        }
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
