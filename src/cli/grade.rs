//! `rstar grade`: judge predicted answers against references.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use clap::Args;
use rstar::{grade, Error, Result};

#[derive(Args, Debug)]
pub struct GradeArgs {
    /// JSONL file of {"pred": ..., "answer": ...} lines ("-" for stdin).
    #[arg(long, conflicts_with_all = ["pred", "answer"])]
    pub file: Option<PathBuf>,
    /// A prediction (a whole final sentence with \boxed{} is fine).
    #[arg(long, requires = "answer")]
    pub pred: Option<String>,
    /// The reference answer.
    #[arg(long, requires = "pred")]
    pub answer: Option<String>,
}

fn verdict(pred: &str, answer: &str) -> serde_json::Value {
    let extracted = grade::extract_or_whole(pred);
    serde_json::json!({"equal": grade::equal(&extracted, answer), "pred_extracted": extracted})
}

pub fn run(args: GradeArgs) -> Result<()> {
    if let (Some(p), Some(a)) = (&args.pred, &args.answer) {
        println!("{}", verdict(p, a));
        return Ok(());
    }
    let Some(path) = args.file else {
        return Err(Error::InvalidArgument(
            "give --file PAIRS.jsonl or --pred X --answer Y".into(),
        ));
    };
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(
            std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?,
        ))
    };
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| Error::io(&path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |msg: String| Error::format(&path, format!("line {}: {msg}", n + 1));
        let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
        let field = |k: &str| match v.get(k) {
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(serde_json::Value::Number(x)) => Ok(x.to_string()),
            _ => Err(bad(format!("missing string field `{k}`"))),
        };
        println!("{}", verdict(&field("pred")?, &field("answer")?));
    }
    Ok(())
}
