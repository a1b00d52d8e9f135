//! Training: backward passes, optimizers, the SFT and PPM trainers, LoRA, checkpoints.
//!
//! * [`ops`]: forward/backward kernels (GEMM, RMSNorm, RoPE, packed causal GQA attention, SiLU
//!   gating, cross-entropy, pairwise loss), each checked against finite differences;
//! * [`model`]: [`TrainModel`], the decoder with f32 master parameters, gradients, activation
//!   checkpointing, LoRA adapters and a value head;
//! * [`optim`]: AdamW (decoupled weight decay), SGD, warmup + linear/cosine schedules, clipping;
//! * [`pack`]: tokenized SFT examples and preference pairs (loaded by [`crate::data::training`])
//!   packed into micro-batches, pairs sharing their prefix;
//! * [`checkpoint`]: Hugging Face model directories, `value_head.safetensors`, PEFT adapters and
//!   resumable trainer state;
//! * [`trainer`]: [`Trainer`], the loop the CLI (`rstar train`), the C API and the evolve driver use;
//! * [`init`]: from-scratch models: a byte-level BPE tokenizer trained on problem text, a seeded
//!   random Qwen2 decoder (`rstar init-model`);
//! * [`evolve`]: the self-evolution driver (`rstar evolve`): rounds of MCTS, extraction, SFT, PPM
//!   training and evaluation, resumable stage by stage.
//!
//! Everything runs on the CPU in f32; the loss of one optimizer step is normalised over the whole
//! step (all micro-batches), so gradient accumulation gives the same update as one big batch.

pub mod checkpoint;
pub mod evolve;
pub mod init;
pub mod model;
pub mod ops;
pub mod optim;
pub mod pack;
pub mod trainer;

pub use model::{Grads, LoraSpec, Objective, Packed, Param, TrainModel};
pub use trainer::{Progress, Task, TrainConfig, Trainer};
