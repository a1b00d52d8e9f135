//! `rstar fetch-assets`: downloads the pinned real-model assets into the cache and prints their folders.

use clap::Args;

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// Fetch every asset (the test vocabularies, tokenizers and benchmark problems too), not only the
    /// default model.
    #[arg(long)]
    pub all: bool,
    /// Fetch this asset by id (repeatable), e.g. `qwen2.5-coder-1.5b-instruct-q4_k_m`, which
    /// `--all` leaves out for its size (1.1 GB). An unknown id lists the known ones.
    #[arg(long = "asset", value_name = "ID")]
    pub assets: Vec<String>,
}

pub fn run(args: FetchArgs) -> rstar::Result<()> {
    let mut list: Vec<&rstar::assets::Asset> = if args.all {
        rstar::assets::ALL.iter().collect()
    } else if args.assets.is_empty() {
        vec![&rstar::assets::SMOLLM2]
    } else {
        Vec::new()
    };
    for id in &args.assets {
        list.push(rstar::assets::by_id(id)?);
    }
    for a in list {
        println!("{}", rstar::assets::fetch(a)?.display());
    }
    Ok(())
}
