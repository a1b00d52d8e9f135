//! A model ready to generate: [`LoadedModel`] resolves a `--model` argument (a Hugging Face
//! directory or a GGUF file) into the decoder, its tokenizer and its EOS ids.

use std::path::Path;

use crate::error::Result;
use crate::model::gguf::GgufFile;
use crate::model::gguf_import::GgufModel;
pub use crate::model::gguf_import::QuantLoad;
use crate::model::Model;
use crate::tokenizer::{ChatMessage, Tokenizer};

/// A model ready to generate: decoder, tokenizer (if the directory has one) and EOS ids.
#[derive(Debug)]
pub struct LoadedModel {
    pub model: Model,
    pub tokenizer: Option<Tokenizer>,
    /// Ids that end generation with reason `eos`: config.json `eos_token_id`,
    /// generation_config.json `eos_token_id` and the tokenizer's `eos_token`.
    pub eos_token_ids: Vec<u32>,
}

impl LoadedModel {
    /// Loads a model from `path`: a Hugging Face model directory or a `.gguf` file. This is the one
    /// place where a `--model` argument is resolved. For a directory the tokenizer is optional
    /// (`tokenizer.json` absent means ids-only use); a present but broken tokenizer is an error. A GGUF
    /// file brings its tokenizer and chat template in its metadata.
    pub fn load(path: &Path) -> Result<LoadedModel> {
        Self::load_with(path, QuantLoad::default())
    }

    /// [`load`](Self::load), holding a GGUF file's quantized tensors as `quant` says (the
    /// environment's `RSTAR_GGUF_EXPAND` overrides it, see [`QuantLoad::with_env`]).
    pub fn load_with(path: &Path, quant: QuantLoad) -> Result<LoadedModel> {
        if path.is_file() {
            if !crate::model::gguf::is_gguf(path) {
                return Err(crate::Error::format(
                    path,
                    "not a GGUF file (expected a .gguf file or a model directory)",
                ));
            }
            // The tokenizer first, from the metadata alone, and its build temporaries (tens of MB
            // on a 150k vocabulary) handed back before the weights are made resident: the peak
            // memory is then the weights plus what stays live.
            let tokenizer = Tokenizer::from_gguf(&GgufFile::open_metadata(path)?)?;
            crate::backend::cpu::memory::release_free_heap();
            let model = {
                let file = GgufFile::open(path)?;
                let g = GgufModel::from_file_with(&file, quant.with_env())?;
                Model::from_store(g.config, &g.store)?
            };
            crate::backend::cpu::memory::release_free_heap();
            return Ok(Self::assemble(model, tokenizer, Vec::new()));
        }
        let model = Model::load(path)?;
        let tokenizer = if path.join("tokenizer.json").is_file() {
            Some(Tokenizer::from_dir(path)?)
        } else {
            None
        };
        let mut eos = Vec::new();
        let gen_cfg = path.join("generation_config.json");
        if gen_cfg.is_file() {
            let text =
                std::fs::read_to_string(&gen_cfg).map_err(|e| crate::Error::io(&gen_cfg, e))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| crate::Error::format(&gen_cfg, format!("invalid JSON: {e}")))?;
            match v.get("eos_token_id") {
                Some(serde_json::Value::Array(a)) => {
                    eos.extend(a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32))
                }
                Some(x) => eos.extend(x.as_u64().map(|x| x as u32)),
                None => {}
            }
        }
        Ok(Self::assemble(model, tokenizer, eos))
    }

    /// [`load`](Self::load), then moves the forward pass to `device`.
    pub fn load_on(path: &Path, device: crate::backend::Device) -> Result<LoadedModel> {
        Self::load_on_with(path, device, QuantLoad::default())
    }

    /// [`load_with`](Self::load_with), then moves the forward pass to `device`.
    pub fn load_on_with(
        path: &Path,
        device: crate::backend::Device,
        quant: QuantLoad,
    ) -> Result<LoadedModel> {
        let mut lm = Self::load_with(path, quant)?;
        lm.model.to_device(device)?;
        Ok(lm)
    }

    /// Collects the EOS ids (config, `extra` from generation_config.json, the tokenizer's
    /// `eos_token`) and bundles the parts.
    fn assemble(model: Model, tokenizer: Option<Tokenizer>, extra: Vec<u32>) -> LoadedModel {
        let mut eos = model.config.eos_token_ids.clone();
        eos.extend(extra);
        if let Some(t) = &tokenizer {
            eos.extend(t.eos_token().and_then(|s| t.token_to_id(s)));
        }
        eos.sort_unstable();
        eos.dedup();
        LoadedModel {
            model,
            tokenizer,
            eos_token_ids: eos,
        }
    }

    /// Text -> prompt ids. With `chat`, `text` becomes a user message (after an optional system
    /// message) rendered through the chat template with the generation prompt and encoded without
    /// extra special tokens, as transformers' `apply_chat_template(tokenize=True)`; otherwise it is
    /// encoded as `tokenizer(text)` would.
    pub fn encode_prompt(&self, text: &str, chat: bool, system: Option<&str>) -> Result<Vec<u32>> {
        let tok = self.tokenizer()?;
        if !chat {
            return tok.encode(text, true);
        }
        let mut msgs = Vec::new();
        if let Some(s) = system {
            msgs.push(ChatMessage::new("system", s));
        }
        msgs.push(ChatMessage::new("user", text));
        tok.encode(&tok.apply_chat_template(&msgs, true)?, false)
    }

    /// The tokenizer, or a clear error when the model directory has none.
    pub fn tokenizer(&self) -> Result<&Tokenizer> {
        self.tokenizer.as_ref().ok_or_else(|| {
            crate::Error::InvalidArgument(
                "this model directory has no tokenizer.json; pass token ids instead of text".into(),
            )
        })
    }
}
