//! Packing tokenized training examples ([`crate::data::training`]) into [`Packed`] micro-batches:
//! SFT sequences end to end, preference pairs as prefix trees (the shared prefix computed once).

use std::collections::HashMap;

use crate::data::training::{PairExample, SftExample};
use crate::train::model::Packed;

/// Packs SFT examples, in order, into micro-batches of at most `seq_len` rows; each comes with its
/// `(row, target id)` list.
pub fn pack_sft(examples: &[&SftExample], seq_len: usize) -> Vec<(Packed, Vec<(usize, u32)>)> {
    let mut out: Vec<(Packed, Vec<(usize, u32)>)> = Vec::new();
    for ex in examples {
        let fits = out
            .last()
            .is_some_and(|(p, _)| p.len() + ex.ids.len() <= seq_len);
        if !fits {
            out.push((Packed::default(), Vec::new()));
        }
        let (p, targets) = out.last_mut().expect("pushed above");
        let start = p.push_sequence(&ex.ids);
        for j in 1..ex.ids.len() {
            if ex.target[j] {
                targets.push((start + j - 1, ex.ids[j]));
            }
        }
    }
    out
}

/// Packs pairs into micro-batches: pairs with the same prefix form one tree (the prefix once, each
/// distinct continuation once); trees are laid end to end up to `seq_len` rows. Each micro-batch
/// comes with its `(pos last row, neg last row)` list.
pub fn pack_pairs(pairs: &[&PairExample], seq_len: usize) -> Vec<(Packed, Vec<(usize, usize)>)> {
    // Group by prefix, keeping first-seen order.
    let mut groups: Vec<(&[u32], Vec<&PairExample>)> = Vec::new();
    let mut index: HashMap<&[u32], usize> = HashMap::new();
    for p in pairs {
        let g = *index.entry(&p.prefix).or_insert_with(|| {
            groups.push((&p.prefix, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(p);
    }
    let mut out: Vec<(Packed, Vec<(usize, usize)>)> = Vec::new();
    for (prefix, members) in groups {
        let mut branches: Vec<&[u32]> = Vec::new();
        for m in &members {
            for b in [&m.pos[..], &m.neg[..]] {
                if !branches.contains(&b) {
                    branches.push(b);
                }
            }
        }
        let size = prefix.len() + branches.iter().map(|b| b.len()).sum::<usize>();
        let fits = out.last().is_some_and(|(p, _)| p.len() + size <= seq_len);
        if !fits {
            out.push((Packed::default(), Vec::new()));
        }
        let (p, list) = out.last_mut().expect("pushed above");
        let start = p.push_sequence(prefix);
        let pre = (start, start + prefix.len());
        let last: Vec<usize> = branches
            .iter()
            .map(|b| p.push_branch(b, pre, prefix.len()) + b.len() - 1)
            .collect();
        let row = |b: &[u32]| last[branches.iter().position(|x| *x == b).expect("added above")];
        for m in members {
            list.push((row(&m.pos), row(&m.neg)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_shares_prefixes() {
        let a = PairExample {
            prefix: vec![1, 2, 3],
            pos: vec![4, 5],
            neg: vec![6],
        };
        let b = PairExample {
            prefix: vec![1, 2, 3],
            pos: vec![4, 5],
            neg: vec![7, 8],
        };
        let c = PairExample {
            prefix: vec![9],
            pos: vec![4],
            neg: vec![5],
        };
        let packs = pack_pairs(&[&a, &b, &c], 64);
        assert_eq!(packs.len(), 1);
        let (p, pairs) = &packs[0];
        // prefix(3) + [4,5] + [6] + [7,8] ; then [9] + [4] + [5]
        assert_eq!(p.tokens, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 4, 5]);
        assert_eq!(pairs, &vec![(4, 5), (4, 7), (9, 10)]);
        assert_eq!(p.pos[5], 3);
        assert_eq!(p.ctx[7].prefix, (0, 3));
        assert_eq!(p.ctx[7].own, 6);
        let s1 = SftExample {
            ids: vec![1, 2, 3],
            target: vec![false, true, true],
        };
        let packs = pack_sft(&[&s1, &s1, &s1], 7);
        assert_eq!(packs.len(), 2);
        assert_eq!(packs[0].1, vec![(0, 2), (1, 3), (3, 2), (4, 3)]);
    }
}
