//! Answers at test time (spec 3.4, 3.5 inference, 7.4 `eval_maj.py`): trajectories (one answer
//! and its value each) are cut to the `vote_size` highest-valued, clustered by the grader's
//! equivalence ([`grade::equal`], both orders; a cluster is named by its highest-valued member),
//! and chosen by majority, by summed value
//! (PPM-weighted) or by the single highest value (PPM-best).

use serde::Serialize;

use crate::grade;

/// One trajectory's answer and its value (the PPM's, or 0 without one).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub answer: String,
    pub value: f64,
}

/// Answers the grader holds equal. The representative is the first member.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cluster {
    pub answer: String,
    /// Indices into the clustered candidates, in input order.
    pub members: Vec<usize>,
    pub value_sum: f64,
}

/// The `k` highest-valued candidates (first on ties), highest first; `k == 0` keeps all.
pub fn top_by_value(cands: &[Candidate], k: usize) -> Vec<Candidate> {
    let mut v = cands.to_vec();
    v.sort_by(|a, b| b.value.total_cmp(&a.value));
    if k > 0 {
        v.truncate(k);
    }
    v
}

/// Clusters candidates in input order: each joins the first cluster whose representative the
/// grader holds equal to it (either order), or starts a new one.
pub fn cluster(cands: &[Candidate]) -> Vec<Cluster> {
    let mut out: Vec<Cluster> = Vec::new();
    for (i, c) in cands.iter().enumerate() {
        let same =
            |k: &Cluster| grade::equal(&c.answer, &k.answer) || grade::equal(&k.answer, &c.answer);
        match out.iter_mut().find(|k| same(k)) {
            Some(k) => {
                k.members.push(i);
                k.value_sum += c.value;
            }
            None => out.push(Cluster {
                answer: c.answer.clone(),
                members: vec![i],
                value_sum: c.value,
            }),
        }
    }
    out
}

/// The largest cluster; ties go to the higher summed value, then to the first.
pub fn majority(clusters: &[Cluster]) -> Option<&Cluster> {
    best_by(clusters, |k| (k.members.len() as f64, k.value_sum))
}

/// The cluster with the highest summed value; ties go to the larger, then to the first.
pub fn weighted(clusters: &[Cluster]) -> Option<&Cluster> {
    best_by(clusters, |k| (k.value_sum, k.members.len() as f64))
}

fn best_by(clusters: &[Cluster], key: impl Fn(&Cluster) -> (f64, f64)) -> Option<&Cluster> {
    let mut best: Option<(&Cluster, (f64, f64))> = None;
    for k in clusters {
        let s = key(k);
        if best.is_none_or(|(_, b)| s.0 > b.0 || (s.0 == b.0 && s.1 > b.1)) {
            best = Some((k, s));
        }
    }
    best.map(|b| b.0)
}

/// The single highest-valued candidate (first on ties).
pub fn ppm_best(cands: &[Candidate]) -> Option<&Candidate> {
    let mut best: Option<&Candidate> = None;
    for c in cands {
        if best.is_none_or(|b| c.value > b.value) {
            best = Some(c);
        }
    }
    best
}

/// The three test-time answers of one problem.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Votes {
    /// Trajectories voting (after the `vote_size` cut).
    pub k: usize,
    pub majority: Option<String>,
    pub weighted: Option<String>,
    pub ppm_best: Option<String>,
}

/// Votes over `cands` cut to the `vote_size` highest-valued (0 = all).
pub fn vote(cands: &[Candidate], vote_size: usize) -> Votes {
    let top = top_by_value(cands, vote_size);
    let clusters = cluster(&top);
    Votes {
        k: top.len(),
        majority: majority(&clusters).map(|k| k.answer.clone()),
        weighted: weighted(&clusters).map(|k| k.answer.clone()),
        ppm_best: ppm_best(cands).map(|c| c.answer.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(a: &str, v: f64) -> Candidate {
        Candidate {
            answer: a.into(),
            value: v,
        }
    }

    #[test]
    fn clusters_use_the_grader() {
        // 1/2, 0.5 and \frac{1}{2} are one answer to the grader; 2 is another.
        let cs = [
            c("0.5", 0.1),
            c("2", 0.9),
            c("\\frac{1}{2}", 0.2),
            c("1/2", 0.3),
        ];
        let k = cluster(&cs);
        assert_eq!(k.len(), 2);
        assert_eq!(k[0].answer, "0.5");
        assert_eq!(k[0].members, vec![0, 2, 3]);
        assert!((k[0].value_sum - 0.6).abs() < 1e-12);
        assert_eq!(k[1].members, vec![1]);
    }

    #[test]
    fn majority_weighted_and_best_differ_when_they_should() {
        // Three weak votes for 12, one strong for 15, two medium for 16.
        let cs = [
            c("12", 0.1),
            c("15", 0.95),
            c("12.0", 0.1),
            c("16", 0.6),
            c("12", 0.1),
            c("16", 0.55),
        ];
        let v = vote(&cs, 0);
        assert_eq!(v.k, 6);
        assert_eq!(v.majority.as_deref(), Some("12")); // 3 votes
        assert_eq!(v.weighted.as_deref(), Some("16")); // 1.15 > 0.95 > 0.3
        assert_eq!(v.ppm_best.as_deref(), Some("15"));
        // Top-2 by value: 15 (0.95) and 16 (0.6): one vote each, so majority falls to the
        // higher sum (15), as does the weighted vote.
        let v = vote(&cs, 2);
        assert_eq!(v.k, 2);
        assert_eq!(v.majority.as_deref(), Some("15"));
        assert_eq!(v.weighted.as_deref(), Some("15"));
    }

    #[test]
    fn ties_go_to_the_first_and_empty_votes_are_none() {
        let v = vote(&[c("3", 0.0), c("4", 0.0)], 0);
        assert_eq!(v.majority.as_deref(), Some("3"));
        assert_eq!(v.weighted.as_deref(), Some("3"));
        assert_eq!(v.ppm_best.as_deref(), Some("3"));
        let v = vote(&[], 4);
        assert_eq!((v.k, v.majority, v.ppm_best), (0, None, None));
    }
}
