//! `rstar fetch-assets`: downloads the pinned real-model assets into the cache and prints their folders.

use clap::Args;

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// Fetch every asset (the test vocabularies, tokenizers and benchmark problems too), not only the
    /// default model.
    #[arg(long)]
    pub all: bool,
}

pub fn run(args: FetchArgs) -> rstar::Result<()> {
    let list: &[rstar::assets::Asset] = if args.all {
        &rstar::assets::ALL
    } else {
        &[rstar::assets::SMOLLM2]
    };
    for a in list {
        println!("{}", rstar::assets::fetch(a)?.display());
    }
    Ok(())
}
