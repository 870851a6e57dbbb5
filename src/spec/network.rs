//! The networks' settings: what [`crate::model`] builds, as data every module can share.
//! The names and defaults are the references' (their constructors' arguments).

use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// A network configuration of either family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "lowercase")]
pub enum NetworkConfig {
    Cheff(CheffUnetConfig),
    Sr3(Sr3UnetConfig),
}

/// Settings of [`CheffUnet`]; the names and meanings are the reference constructor's.
#[derive(Config, Debug, PartialEq)]
pub struct CheffUnetConfig {
    /// Base width; level i has `dim * dim_mults[i]` channels. The authors' checkpoint: 16.
    #[config(default = 16)]
    pub dim: usize,
    /// Width after the 7×7 input conv; `dim / 3 * 2` when absent (16 → 10).
    #[config(default = "None")]
    pub init_dim: Option<usize>,
    /// Output channels (ε of the image channel); `channels` when absent. Authors: 1.
    #[config(default = "Some(1)")]
    pub out_dim: Option<usize>,
    /// Width multipliers per level; the first must be 1. Authors: (1,2,4,8,16,32,32,32).
    #[config(default = "vec![1, 2, 4, 8, 16, 32, 32, 32]")]
    pub dim_mults: Vec<usize>,
    /// How many levels carry attention, counted as the reference does (see [`Self::down_attention`]).
    #[config(default = 5)]
    pub num_attention_layer: usize,
    /// Input channels: noisy image + conditioning image. Authors: 2.
    #[config(default = 2)]
    pub channels: usize,
    /// GroupNorm groups in every ResnetBlock and final Block.
    #[config(default = 8)]
    pub block_groups: usize,
}

/// Settings of [`Sr3Unet`]: the upstream JSON config's `model.unet` section plus `image_size`.
#[derive(Config, Debug, PartialEq)]
pub struct Sr3UnetConfig {
    /// Input channels: conditioning + noisy image (2 for grey, 6 for RGB).
    #[config(default = 2)]
    pub in_channel: usize,
    /// Output channels (ε of the noisy image).
    #[config(default = 1)]
    pub out_channel: usize,
    /// Base width.
    #[config(default = 64)]
    pub inner_channel: usize,
    /// GroupNorm groups everywhere (blocks and attention).
    #[config(default = 32)]
    pub norm_groups: usize,
    /// Width multipliers per level.
    #[config(default = "vec![1, 2, 4, 8, 8]")]
    pub channel_multiplier: Vec<usize>,
    /// Resolutions (counted from `image_size`) whose blocks get self-attention.
    #[config(default = "vec![16]")]
    pub attn_res: Vec<usize>,
    /// ResnetBlocks per encoder level (the decoder has one more).
    #[config(default = 3)]
    pub res_blocks: usize,
    /// Dropout inside the second block of each ResnetBlock (training only).
    #[config(default = 0.0)]
    pub dropout: f64,
    /// The training image size; only used to place attention.
    #[config(default = 128)]
    pub image_size: usize,
}
