//! [`generate`] for a single prompt: a one-request run of the batched [`Engine`], so single and
//! batched generation are one mechanism.

use std::sync::Arc;

use crate::engine::core::{Engine, EngineConfig};
use crate::engine::loaded::LoadedModel;
use crate::engine::request::{GenerateOutput, GenerateParams, Request};
use crate::error::{Error, Result};

/// Generates a continuation of `prompt` (one request on a private [`Engine`] sized for it).
/// `on_text` receives text as it becomes final (never text that could still turn out to be part of a
/// stop string); returning `false` cancels with [`Error::Cancelled`].
pub fn generate(
    lm: &Arc<LoadedModel>,
    prompt: &[u32],
    params: &GenerateParams,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<GenerateOutput> {
    if prompt.is_empty() {
        return Err(Error::InvalidArgument("empty prompt".into()));
    }
    let cfg = EngineConfig::default();
    let tokens = (prompt.len() + params.max_new_tokens)
        .min(lm.model.config.max_position_embeddings + 1)
        + cfg.block_size;
    let probe = lm.model.kv_bytes_per_block(cfg.block_size, cfg.kv_dtype);
    let mut engine = Engine::new(
        lm.clone(),
        EngineConfig {
            kv_budget_bytes: tokens.div_ceil(cfg.block_size) * probe,
            ..cfg
        },
    )?;
    let seq = engine.add(prompt)?;
    let mut out = engine.run(
        &[Request {
            seq,
            params: params.clone(),
        }],
        &mut |_, s| on_text(s),
    )?;
    Ok(out.remove(0))
}
