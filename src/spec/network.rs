//! The networks' settings: what [`crate::model`] builds, as data every module can share.
//! The names and defaults are the references' (their constructors' arguments).

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::Family;
use crate::error::Error;

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

impl NetworkConfig {
    /// The family of this configuration.
    pub fn family(&self) -> Family {
        match self {
            NetworkConfig::Cheff(_) => Family::Cheff,
            NetworkConfig::Sr3(_) => Family::Sr3,
        }
    }
    /// Channels of the image being restored (x_t and ε).
    pub fn image_channels(&self) -> usize {
        match self {
            NetworkConfig::Cheff(c) => c.out_channels(),
            NetworkConfig::Sr3(c) => c.out_channel,
        }
    }
    /// Channels of the conditioning image: the rest of the network input.
    pub fn cond_channels(&self) -> crate::Result<usize> {
        let (total, x) = match self {
            NetworkConfig::Cheff(c) => (c.channels, c.out_channels()),
            NetworkConfig::Sr3(c) => (c.in_channel, c.out_channel),
        };
        if total <= x {
            return Err(Error::Config(format!(
                "the network takes {total} input channels and predicts {x}: no room for a conditioning image"
            )));
        }
        Ok(total - x)
    }
    /// H and W multiple the network needs.
    pub fn input_multiple(&self) -> usize {
        match self {
            NetworkConfig::Cheff(c) => c.input_multiple(),
            NetworkConfig::Sr3(c) => c.input_multiple(),
        }
    }
    /// Bytes of the largest softmax-attention matrix for a (padded) `height × width` input:
    /// full attention grows with the square of the pixel count at its level, so a shallow
    /// network on a large radiograph can need terabytes.
    pub fn attention_bytes(&self, batch: usize, height: usize, width: usize) -> u128 {
        let positions = |level: usize| ((height >> level) * (width >> level)) as u128;
        let (heads, levels): (u128, Vec<usize>) = match self {
            // Only the middle block has softmax attention (the others are linear).
            NetworkConfig::Cheff(c) => (
                4,
                if c.num_attention_layer >= 1 {
                    vec![c.levels() - 1]
                } else {
                    vec![]
                },
            ),
            NetworkConfig::Sr3(c) => {
                let deepest = c.levels() - 1;
                let mut v: Vec<usize> = (0..c.levels())
                    .filter(|l| c.attn_res.contains(&(c.image_size >> l)))
                    .collect();
                v.push(deepest);
                (1, v)
            }
        };
        levels
            .into_iter()
            .map(|l| batch as u128 * heads * positions(l).pow(2) * 4)
            .max()
            .unwrap_or(0)
    }
    /// Memory one network call needs for a `batch × height × width` input (already a multiple
    /// of [`Self::input_multiple`]). An estimate meant to err high: per level, the widest feature
    /// map (the up path's concatenation) times the tensors alive at once, the softmax-attention
    /// matrix, and the unfolded input of a 3×3 convolution on backends that unfold
    /// (`unfold`: the CPU's GEMM convolutions).
    pub fn memory_need(
        &self,
        batch: usize,
        height: usize,
        width: usize,
        unfold: bool,
        attention_matrix: bool,
    ) -> MemoryNeed {
        // (channels of the widest map per level, maps alive per level)
        let (widths, alive): (Vec<usize>, u128) = match self {
            NetworkConfig::Cheff(c) => (c.dims()[1..].iter().map(|d| 2 * d).collect(), 6),
            NetworkConfig::Sr3(c) => (
                c.channel_multiplier
                    .iter()
                    .map(|m| 2 * c.inner_channel * m)
                    .collect(),
                2 * (c.res_blocks as u128 + 1) + 4,
            ),
        };
        let map = |level: usize, channels: usize| {
            batch as u128 * channels as u128 * ((height >> level) * (width >> level)) as u128 * 4
        };
        let widest = widths
            .iter()
            .enumerate()
            .map(|(l, &c)| map(l, c))
            .max()
            .unwrap_or(0);
        let unfolded = if unfold { 9 * widest } else { widest };
        let attention = if attention_matrix {
            self.attention_bytes(batch, height, width)
        } else {
            0
        };
        let maps: u128 = widths
            .iter()
            .enumerate()
            .map(|(l, &c)| alive * map(l, c))
            .sum();
        let largest = unfolded.max(attention);
        let clamp = |v: u128| v.min(u64::MAX as u128) as u64;
        MemoryNeed {
            total: clamp(maps + largest + attention),
            largest_buffer: clamp(largest),
        }
    }
    /// Checks that the network can be built and run (a restoration model additionally needs
    /// [`Self::cond_channels`]).
    pub fn validate(&self) -> crate::Result<()> {
        match self {
            NetworkConfig::Cheff(c) => c.validate(),
            NetworkConfig::Sr3(c) => c.validate(),
        }
    }
}

/// What one network call needs, from [`NetworkConfig::memory_need`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryNeed {
    /// All activations alive at the peak, bytes.
    pub total: u64,
    /// The largest single tensor, bytes.
    pub largest_buffer: u64,
}

impl CheffUnetConfig {
    /// Number of resolution levels L.
    pub fn levels(&self) -> usize {
        self.dim_mults.len()
    }
    /// Width of the input conv's output.
    pub fn resolved_init_dim(&self) -> usize {
        self.init_dim.unwrap_or(self.dim / 3 * 2)
    }
    /// Channel count at each level boundary: `[init_dim, dim*m_0, dim*m_1, ...]`.
    pub fn dims(&self) -> Vec<usize> {
        std::iter::once(self.resolved_init_dim())
            .chain(self.dim_mults.iter().map(|m| self.dim * m))
            .collect()
    }
    /// Width of the time embedding after its MLP.
    pub fn time_dim(&self) -> usize {
        self.dim * 4
    }
    /// Down level i has attention iff `i ≥ L − num_attention_layer + 1` (reference rule).
    pub fn down_attention(&self, level: usize) -> bool {
        level as isize >= self.levels() as isize - self.num_attention_layer as isize + 1
    }
    /// Up block j (0 = deepest) has attention under the same rule, counted from the deep end.
    pub fn up_attention(&self, block: usize) -> bool {
        self.down_attention(block)
    }
    /// H and W must be multiples of this (one halving per level but the last).
    pub fn input_multiple(&self) -> usize {
        1 << (self.levels() - 1)
    }
    /// Channels of the noisy image (and of the predicted ε).
    pub fn out_channels(&self) -> usize {
        self.out_dim.unwrap_or(self.channels)
    }

    /// Rejects configurations the reference would build but cannot run.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.dim < 4 || self.dim % 2 != 0 {
            return bad(format!("dim must be even and at least 4, got {}", self.dim));
        }
        if self.dim_mults.is_empty() {
            return bad("dim_mults is empty".into());
        }
        if self.dim_mults[0] != 1 {
            return bad(format!(
                "dim_mults[0] must be 1 (the final block expects `dim` channels), got {:?}",
                self.dim_mults
            ));
        }
        if self.dim_mults.iter().any(|&m| m == 0) {
            return bad(format!(
                "dim_mults must be positive, got {:?}",
                self.dim_mults
            ));
        }
        if self.channels == 0 || self.out_channels() == 0 || self.resolved_init_dim() == 0 {
            return bad("channels, out_dim and init_dim must be positive".into());
        }
        if self.levels() > 12 {
            return bad(format!(
                "{} levels is more than this port supports (12)",
                self.levels()
            ));
        }
        for (i, d) in self.dims().iter().enumerate().skip(1) {
            check_groups(
                &format!("level {} width dim*dim_mults[{}]", i - 1, i - 1),
                *d,
                self.block_groups,
            )?;
        }
        Ok(())
    }
}

/// One encoder/decoder entry and its type, in list order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum LayerPlan {
    Conv { cin: usize, cout: usize },
    Res { cin: usize, cout: usize, attn: bool },
    Down { c: usize },
    Up { c: usize },
}

impl Sr3UnetConfig {
    /// Number of resolution levels.
    pub fn levels(&self) -> usize {
        self.channel_multiplier.len()
    }
    /// H and W must be multiples of this.
    pub fn input_multiple(&self) -> usize {
        1 << (self.levels() - 1)
    }

    /// The reference's construction loop, as data: (downs, mids, ups, final width).
    pub(crate) fn plan(&self) -> (Vec<LayerPlan>, Vec<LayerPlan>, Vec<LayerPlan>, usize) {
        let mut downs = vec![LayerPlan::Conv {
            cin: self.in_channel,
            cout: self.inner_channel,
        }];
        let mut feats = vec![self.inner_channel];
        let mut pre = self.inner_channel;
        let mut res = self.image_size;
        let n = self.levels();
        for (i, m) in self.channel_multiplier.iter().enumerate() {
            let attn = self.attn_res.contains(&res);
            let c = self.inner_channel * m;
            for _ in 0..self.res_blocks {
                downs.push(LayerPlan::Res {
                    cin: pre,
                    cout: c,
                    attn,
                });
                feats.push(c);
                pre = c;
            }
            if i + 1 < n {
                downs.push(LayerPlan::Down { c: pre });
                feats.push(pre);
                res /= 2;
            }
        }
        let mids = vec![
            LayerPlan::Res {
                cin: pre,
                cout: pre,
                attn: true,
            },
            LayerPlan::Res {
                cin: pre,
                cout: pre,
                attn: false,
            },
        ];
        let mut ups = Vec::new();
        for i in (0..n).rev() {
            let attn = self.attn_res.contains(&res);
            let c = self.inner_channel * self.channel_multiplier[i];
            for _ in 0..=self.res_blocks {
                let skip = feats.pop().expect("one skip per encoder output");
                ups.push(LayerPlan::Res {
                    cin: pre + skip,
                    cout: c,
                    attn,
                });
                pre = c;
            }
            if i > 0 {
                ups.push(LayerPlan::Up { c: pre });
                res *= 2;
            }
        }
        (downs, mids, ups, pre)
    }

    /// Rejects configurations the reference cannot run.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.channel_multiplier.is_empty() || self.channel_multiplier.contains(&0) {
            return bad(format!(
                "channel_multiplier must be non-empty and positive, got {:?}",
                self.channel_multiplier
            ));
        }
        if self.in_channel == 0 || self.out_channel == 0 || self.res_blocks == 0 {
            return bad("in_channel, out_channel and res_blocks must be positive".into());
        }
        if self.inner_channel < 2 || self.inner_channel % 2 != 0 {
            return bad(format!(
                "inner_channel must be even and at least 2, got {}",
                self.inner_channel
            ));
        }
        if self.levels() > 12 {
            return bad(format!(
                "{} levels is more than this port supports (12)",
                self.levels()
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        let (downs, mids, ups, last) = self.plan();
        for p in downs.iter().chain(&mids).chain(&ups) {
            if let LayerPlan::Res { cin, cout, attn } = *p {
                check_groups("ResnetBlock input", cin, self.norm_groups)?;
                check_groups("ResnetBlock output", cout, self.norm_groups)?;
                let _ = attn;
            }
        }
        check_groups("final block input", last, self.norm_groups)
    }
}

/// GroupNorm needs its channels to split evenly into groups.
fn check_groups(what: &str, channels: usize, groups: usize) -> crate::Result<()> {
    if groups == 0 || channels % groups != 0 {
        return Err(Error::Config(format!(
            "{what} has {channels} channels, which {groups} GroupNorm groups do not divide"
        )));
    }
    Ok(())
}
