//! `rstar score`: the raw value a process reward model gives a sequence.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use rstar::engine::ppm::Ppm;

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["ids", "prompt"])))]
pub struct ScoreArgs {
    /// PPM directory: an HF decoder plus value_head.safetensors, rStar/trl's combined checkpoint
    /// (v_head.summary.*), or a Qwen2ForProcessRewardModel.
    #[arg(long)]
    pub model: PathBuf,
    /// Sequence as token ids, comma separated.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub ids: Option<Vec<u32>>,
    /// Sequence as text (tokenized as the tokenizer does by default).
    #[arg(long)]
    pub prompt: Option<String>,
    /// Also print the value at every position.
    #[arg(long)]
    pub all_positions: bool,
    /// Where the PPM runs: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: rstar::backend::Device,
}

/// Prints `{"value": raw}` (plus `"values"` with --all-positions). The raw value is what the head
/// outputs; rStar-Math's MCTS uses tanh(raw / 5).
pub fn run(args: ScoreArgs) -> rstar::Result<()> {
    let ppm = Ppm::load_on(&args.model, args.device)?;
    let ids = match (&args.ids, &args.prompt) {
        (Some(ids), _) => ids.clone(),
        (None, Some(text)) => ppm.lm.tokenizer()?.encode(text, true)?,
        (None, None) => unreachable!("clap requires --ids or --prompt"),
    };
    let values = ppm.score_all_positions(&ids)?;
    let last = *values.last().unwrap_or(&f32::NAN);
    let v = if args.all_positions {
        serde_json::json!({ "value": last, "values": values })
    } else {
        serde_json::json!({ "value": last })
    };
    writeln!(std::io::stdout(), "{v}").map_err(|e| rstar::Error::io("<stdout>", e))
}
