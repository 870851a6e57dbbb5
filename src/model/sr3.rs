//! The SR3 UNet (Saharia et al. 2021, "Image Super-Resolution via Iterative Refinement") as the
//! popular public implementation builds it (`sr3_modules/unet.py`): conditioned on `cat[lq, x_t]`
//! and on the continuous noise level √ᾱ instead of an integer timestep.
//!
//! The encoder and decoder are heterogeneous lists (convs, resnet blocks, resampling), kept as
//! lists of [`Layer`] so parameter paths equal the reference's (`downs.3.res_block...`).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::interpolate::{Interpolate2d, Interpolate2dConfig, InterpolateMode};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::{silu, softmax};

use super::conv::conv2d;
use super::norm::{group_norm, group_norm_silu};
use super::{SinusoidalKind, same_dtype, sinusoidal_embedding};
use crate::spec::LayerPlan;
use crate::spec::Sr3UnetConfig;

impl Sr3UnetConfig {
    /// Builds the network with fresh (random) parameters.
    pub fn init(&self, device: &Device) -> crate::Result<Sr3Unet> {
        self.validate()?;
        let emb = self.inner_channel;
        let build = |p: &LayerPlan| match *p {
            LayerPlan::Conv { cin, cout } => Layer::Conv(conv3(cin, cout, 1, device)),
            LayerPlan::Res { cin, cout, attn } => Layer::Res(ResnetBlockWithAttn {
                res_block: ResnetBlock::new(cin, cout, emb, self.norm_groups, self.dropout, device),
                attn: attn.then(|| SelfAttention::new(cout, self.norm_groups, device)),
            }),
            LayerPlan::Down { c } => Layer::Down(Downsample {
                conv: conv3(c, c, 2, device),
            }),
            LayerPlan::Up { c } => Layer::Up(Upsample {
                up: Interpolate2dConfig::new()
                    .with_scale_factor(Some([2.0, 2.0]))
                    .with_mode(InterpolateMode::Nearest)
                    .init(),
                conv: conv3(c, c, 1, device),
            }),
        };
        let (downs, mids, ups, last) = self.plan();
        Ok(Sr3Unet {
            noise_level_mlp: NoiseLevelMlp {
                lin1: LinearConfig::new(emb, emb * 4).init(device),
                lin2: LinearConfig::new(emb * 4, emb).init(device),
            },
            downs: downs.iter().map(build).collect(),
            mid: mids.iter().map(build).collect(),
            ups: ups.iter().map(build).collect(),
            final_conv: Block::new(last, self.out_channel, self.norm_groups, 0.0, device),
            inner_channel: emb,
        })
    }
}

fn conv3(cin: usize, cout: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

/// GroupNorm → Swish → (dropout) → conv 3×3. Reference keys: `block.0` (norm), `block.3` (conv).
#[derive(Module, Debug)]
pub struct Block {
    norm: GroupNorm,
    conv: Conv2d,
    dropout: burn::nn::Dropout,
}

impl Block {
    fn new(cin: usize, cout: usize, groups: usize, dropout: f64, device: &Device) -> Self {
        Self {
            norm: GroupNormConfig::new(groups, cin).init(device),
            conv: conv3(cin, cout, 1, device),
            dropout: burn::nn::DropoutConfig::new(dropout).init(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv2d(
            &self.conv,
            self.dropout.forward(group_norm_silu(&self.norm, x)),
        )
    }
}

/// block1 → + Linear(noise embedding) → block2, plus a (1×1 conv) shortcut.
#[derive(Module, Debug)]
pub struct ResnetBlock {
    noise_func: Linear,
    block1: Block,
    block2: Block,
    res_conv: Option<Conv2d>,
}

impl ResnetBlock {
    fn new(
        cin: usize,
        cout: usize,
        emb: usize,
        groups: usize,
        dropout: f64,
        device: &Device,
    ) -> Self {
        Self {
            noise_func: LinearConfig::new(emb, cout).init(device),
            block1: Block::new(cin, cout, groups, 0.0, device),
            block2: Block::new(cout, cout, groups, dropout, device),
            res_conv: (cin != cout).then(|| Conv2dConfig::new([cin, cout], [1, 1]).init(device)),
        }
    }

    /// # Shapes
    /// - x: `[batch, cin, height, width]`, emb: `[batch, inner]` → `[batch, cout, height, width]`
    fn forward(&self, x: Tensor<4>, emb: Tensor<2>) -> Tensor<4> {
        let h = self.block1.forward(x.clone());
        let h = h + self.noise_func.forward(emb).unsqueeze_dims::<4>(&[2, 3]); // [batch, cout, 1, 1]
        let h = self.block2.forward(h);
        let shortcut = match &self.res_conv {
            Some(conv) => conv2d(conv, x),
            None => x,
        };
        h + shortcut
    }
}

/// Single-head self-attention over all positions, residual on the un-normalised input.
#[derive(Module, Debug)]
pub struct SelfAttention {
    norm: GroupNorm,
    qkv: Conv2d,
    out: Conv2d,
}

impl SelfAttention {
    fn new(c: usize, groups: usize, device: &Device) -> Self {
        Self {
            norm: GroupNormConfig::new(groups, c).init(device),
            qkv: Conv2dConfig::new([c, c * 3], [1, 1])
                .with_bias(false)
                .init(device),
            out: Conv2dConfig::new([c, c], [1, 1]).init(device),
        }
    }

    /// # Shapes
    /// - x: `[batch, c, height, width]` → same
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let qkv = conv2d(&self.qkv, group_norm(&self.norm, x.clone())).reshape([b, 3, c, h * w]);
        let mut parts = qkv
            .chunk(3, 1)
            .into_iter()
            .map(|t| t.reshape([b, c, h * w]));
        let (q, k, v) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let sim = q.swap_dims(1, 2).matmul(k) / (c as f64).sqrt(); // [b, n_query, n_key]
        let attn = softmax(sim, 2);
        let out = v.matmul(attn.swap_dims(1, 2)).reshape([b, c, h, w]); // [b, c, n_query]
        conv2d(&self.out, out) + x
    }
}

/// A ResnetBlock optionally followed by self-attention (`res_block`, `attn`).
#[derive(Module, Debug)]
pub struct ResnetBlockWithAttn {
    res_block: ResnetBlock,
    attn: Option<SelfAttention>,
}

/// Stride-2 conv 3×3.
#[derive(Module, Debug)]
pub struct Downsample {
    conv: Conv2d,
}

/// Nearest ×2 then conv 3×3.
#[derive(Module, Debug)]
pub struct Upsample {
    up: Interpolate2d,
    conv: Conv2d,
}

/// One entry of the encoder or decoder list.
#[derive(Module, Debug)]
pub enum Layer {
    Conv(Conv2d),
    Res(ResnetBlockWithAttn),
    Down(Downsample),
    Up(Upsample),
}

/// Sinusoidal features of √ᾱ → Linear → Swish → Linear (`noise_level_mlp.1`, `.3`).
#[derive(Module, Debug)]
pub struct NoiseLevelMlp {
    lin1: Linear,
    lin2: Linear,
}

/// The SR3 UNet. Build it with [`Sr3UnetConfig::init`].
#[derive(Module, Debug)]
pub struct Sr3Unet {
    noise_level_mlp: NoiseLevelMlp,
    downs: Vec<Layer>,
    mid: Vec<Layer>,
    ups: Vec<Layer>,
    final_conv: Block,
    inner_channel: usize,
}

impl Sr3Unet {
    /// Predicts ε from `cat[lq, x_t]` and the noise level √ᾱ of each batch item.
    ///
    /// # Shapes
    /// - x: `[batch, in_channel, height, width]` → `[batch, out_channel, height, width]`
    pub fn forward(&self, x: Tensor<4>, noise_level: &[f32]) -> Tensor<4> {
        let device = x.device();
        // 1. noise-level embedding (features on the host)
        let emb = Tensor::<2>::from_data(
            sinusoidal_embedding(noise_level, self.inner_channel, SinusoidalKind::Sr3),
            &device,
        );
        let emb = same_dtype(emb, &x);
        let emb = self
            .noise_level_mlp
            .lin2
            .forward(silu(self.noise_level_mlp.lin1.forward(emb))); // [batch, inner]

        // 2. encoder: every output is a skip
        let mut x = x;
        let mut skips = Vec::with_capacity(self.downs.len());
        for layer in &self.downs {
            x = layer.forward(x, &emb);
            skips.push(x.clone());
        }
        // 3. middle
        for layer in &self.mid {
            x = layer.forward(x, &emb);
        }
        // 4. decoder: each ResnetBlock takes the newest skip
        for layer in &self.ups {
            if let Layer::Res(_) = layer {
                let skip = skips.pop().expect("one skip per decoder block");
                x = Tensor::cat(vec![x, skip], 1); // [batch, c + c_skip, h, w]
            }
            x = layer.forward(x, &emb);
        }
        // 5. output block
        self.final_conv.forward(x)
    }
}

impl Layer {
    fn forward(&self, x: Tensor<4>, emb: &Tensor<2>) -> Tensor<4> {
        match self {
            Layer::Conv(conv) => conv2d(conv, x),
            Layer::Res(block) => {
                let x = block.res_block.forward(x, emb.clone());
                match &block.attn {
                    Some(attn) => attn.forward(x),
                    None => x,
                }
            }
            Layer::Down(d) => conv2d(&d.conv, x),
            Layer::Up(u) => conv2d(&u.conv, u.up.forward(x)),
        }
    }
}
