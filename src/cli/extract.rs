//! `rstar extract sft|pairs`: the SFT set or the PPM preference pairs out of `rstar mcts` trees.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use rstar::data::extract::{extract_file, ExtractConfig, ExtractKind};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    /// Top correct trajectories per problem as {query, response}.
    Sft,
    /// Preference pairs as {prompt, pos, neg, pos_count, neg_count}.
    Pairs,
}

#[derive(Args, Debug)]
pub struct ExtractArgs {
    #[arg(value_enum)]
    pub kind: KindArg,
    /// Trees written by `rstar mcts` (JSONL, one tree per problem).
    #[arg(long)]
    pub trees: PathBuf,
    /// Output JSON array (the format of rStar's sft/rm data examples).
    #[arg(long)]
    pub out: PathBuf,
    /// Correct trajectories kept per problem (sft; default 2).
    #[arg(long)]
    pub per_problem: Option<usize>,
    /// Positives and negatives per shared prefix (pairs; default 2).
    #[arg(long)]
    pub per_side: Option<usize>,
    /// Minimum Q(pos) - Q(neg) (pairs; default 0.5).
    #[arg(long)]
    pub min_margin: Option<f64>,
    /// Minimum character edit distance between a pair's texts (pairs; default 20).
    #[arg(long)]
    pub min_edit_distance: Option<usize>,
    /// Keep trajectories whose text mentions "error" (only failed steps disqualify).
    #[arg(long)]
    pub keep_error_text: bool,
    /// Do not use failed-code leaves as negatives (the reference's extra_rm_file.py).
    #[arg(long)]
    pub no_error_negatives: bool,
    /// Only step pairs, no whole-trajectory pairs.
    #[arg(long)]
    pub no_trajectory_pairs: bool,
}

pub fn run(a: ExtractArgs) -> rstar::Result<()> {
    let d = ExtractConfig::default();
    let cfg = ExtractConfig {
        sft_per_problem: a.per_problem.unwrap_or(d.sft_per_problem),
        per_side: a.per_side.unwrap_or(d.per_side),
        min_margin: a.min_margin.unwrap_or(d.min_margin),
        min_edit_distance: a.min_edit_distance.unwrap_or(d.min_edit_distance),
        drop_error_text: !a.keep_error_text,
        error_negatives: !a.no_error_negatives,
        trajectory_pairs: !a.no_trajectory_pairs,
        ..d
    };
    let kind = match a.kind {
        KindArg::Sft => ExtractKind::Sft,
        KindArg::Pairs => ExtractKind::Pairs,
    };
    let s = extract_file(&a.trees, &a.out, kind, &cfg)?;
    eprintln!(
        "{}: {} records from {} of {} trees",
        a.out.display(),
        s.records,
        s.trees_used,
        s.trees
    );
    Ok(())
}
