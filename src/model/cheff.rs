//! The authors' restoration UNet (`cheff.sr.model.Unet` of qureai/DiffusionXray, after
//! "Chest X-ray Foundation models" / DDPM of Ho et al. 2020): the DDPM-HQ network of the
//! DiffusionXRay paper. It predicts the noise ε of `cat[x_t, lq]` at an integer timestep.
//!
//! Parameter names follow the reference checkpoint after the renaming rules in
//! [`crate::checkpoint::keymap`]; the struct tree below is that naming.

use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::{gelu, silu, softmax};

use super::conv::conv2d;
use super::norm::{group_norm, group_norm_silu};
use super::{SinusoidalKind, attention_heads, same_dtype, sinusoidal_embedding};
use crate::spec::CheffUnetConfig;

/// Heads and per-head width of both attention kinds (fixed in the reference).
const HEADS: usize = 4;
const DIM_HEAD: usize = 32;

impl CheffUnetConfig {
    /// Builds the network with fresh (random) parameters.
    pub fn init(&self, device: &Device) -> crate::Result<CheffUnet> {
        self.validate()?;
        let dims = self.dims();
        let levels = self.levels();
        let time_dim = self.time_dim();
        let g = self.block_groups;
        let res = |cin, cout| ResnetBlock::new(cin, cout, time_dim, g, device);

        let downs = (0..levels)
            .map(|i| {
                let (cin, cout) = (dims[i], dims[i + 1]);
                DownLevel {
                    block1: res(cin, cout),
                    block2: res(cout, cout),
                    attn: self
                        .down_attention(i)
                        .then(|| LinearAttention::new(cout, device)),
                    downsample: (i + 1 < levels).then(|| {
                        Conv2dConfig::new([cout, cout], [4, 4])
                            .with_stride([2, 2])
                            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                            .init(device)
                    }),
                }
            })
            .collect();
        // Up block j mirrors down level L-1-j: (dims[L-j] * 2) -> dims[L-1-j].
        let ups = (0..levels - 1)
            .map(|j| {
                let (cout, cin) = (dims[levels - 1 - j], dims[levels - j]);
                UpLevel {
                    block1: res(cin * 2, cout),
                    block2: res(cout, cout),
                    attn: self
                        .up_attention(j)
                        .then(|| LinearAttention::new(cout, device)),
                    upsample: ConvTranspose2dConfig::new([cout, cout], [4, 4])
                        .with_stride([2, 2])
                        .with_padding([1, 1])
                        .init(device),
                }
            })
            .collect();
        let mid = dims[levels];
        Ok(CheffUnet {
            init_conv: Conv2dConfig::new([self.channels, dims[0]], [7, 7])
                .with_padding(PaddingConfig2d::Explicit(3, 3, 3, 3))
                .init(device),
            time_mlp: TimeMlp {
                lin1: LinearConfig::new(self.dim, time_dim).init(device),
                lin2: LinearConfig::new(time_dim, time_dim).init(device),
            },
            downs,
            mid_block1: res(mid, mid),
            mid_attn: (self.num_attention_layer >= 1).then(|| Attention::new(mid, device)),
            mid_block2: res(mid, mid),
            ups,
            final_res: FinalResidual {
                block1: Block::new(self.dim, self.dim, g, device),
                block2: Block::new(self.dim, self.dim, g, device),
            },
            final_conv: Conv2dConfig::new([self.dim, self.out_channels()], [1, 1]).init(device),
            dim: self.dim,
        })
    }
}

/// conv 3×3 → GroupNorm → SiLU.
#[derive(Module, Debug)]
pub struct Block {
    proj: Conv2d,
    norm: GroupNorm,
}

impl Block {
    fn new(cin: usize, cout: usize, groups: usize, device: &Device) -> Self {
        Self {
            proj: Conv2dConfig::new([cin, cout], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            norm: GroupNormConfig::new(groups, cout).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        group_norm_silu(&self.norm, conv2d(&self.proj, x))
    }
}

/// Two [`Block`]s with the time embedding added between them, plus a (1×1 conv) shortcut.
#[derive(Module, Debug)]
pub struct ResnetBlock {
    mlp: Linear,
    block1: Block,
    block2: Block,
    res_conv: Option<Conv2d>,
}

impl ResnetBlock {
    fn new(cin: usize, cout: usize, time_dim: usize, groups: usize, device: &Device) -> Self {
        Self {
            mlp: LinearConfig::new(time_dim, cout).init(device),
            block1: Block::new(cin, cout, groups, device),
            block2: Block::new(cout, cout, groups, device),
            res_conv: (cin != cout).then(|| Conv2dConfig::new([cin, cout], [1, 1]).init(device)),
        }
    }

    /// # Shapes
    /// - x: `[batch, cin, height, width]`, temb: `[batch, time_dim]` → `[batch, cout, height, width]`
    fn forward(&self, x: Tensor<4>, temb: Tensor<2>) -> Tensor<4> {
        let h = self.block1.forward(x.clone());
        let t = self.mlp.forward(silu(temb)).unsqueeze_dims::<4>(&[2, 3]); // [batch, cout, 1, 1]
        let h = self.block2.forward(h + t);
        let shortcut = match &self.res_conv {
            Some(conv) => conv2d(conv, x),
            None => x,
        };
        h + shortcut
    }
}

/// `x + Attention(GroupNorm₁(x))`: ordinary softmax attention over all positions (middle block).
/// Its layers are also those of [`LinearAttention`]: GroupNorm with one group, the 1×1 q/k/v
/// projection (no bias) to `HEADS · DIM_HEAD` channels each, and the 1×1 output projection.
#[derive(Module, Debug)]
pub struct Attention {
    norm: GroupNorm,
    to_qkv: Conv2d,
    to_out: Conv2d,
}

impl Attention {
    fn new(channels: usize, device: &Device) -> Self {
        let hidden = HEADS * DIM_HEAD;
        Self {
            norm: GroupNormConfig::new(1, channels).init(device),
            to_qkv: Conv2dConfig::new([channels, hidden * 3], [1, 1])
                .with_bias(false)
                .init(device),
            to_out: Conv2dConfig::new([hidden, channels], [1, 1]).init(device),
        }
    }

    /// # Shapes
    /// - x: `[batch, channels, height, width]` → same
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, _, h, w] = x.dims();
        let (q, k, v) = qkv_heads(&self.norm, &self.to_qkv, x.clone());
        let out = super::softmax_attention(q, k, v, (DIM_HEAD as f64).powf(-0.5)); // [b, heads, d, n]
        x + conv2d(&self.to_out, out.reshape([b, HEADS * DIM_HEAD, h, w]))
    }
}

/// The heads of `to_qkv(norm(x))`, each `[batch, heads, DIM_HEAD, height·width]`.
fn qkv_heads(norm: &GroupNorm, to_qkv: &Conv2d, x: Tensor<4>) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
    attention_heads(conv2d(to_qkv, group_norm(norm, x)), HEADS)
}

/// `x + LinearAttention(GroupNorm₁(x))`: softmax over features for q and over positions for k,
/// so the cost is linear in the number of pixels. The layers of [`Attention`] and a GroupNorm
/// after the output projection.
#[derive(Module, Debug)]
pub struct LinearAttention {
    norm: GroupNorm,
    to_qkv: Conv2d,
    to_out: Conv2d,
    out_norm: GroupNorm,
}

impl LinearAttention {
    fn new(channels: usize, device: &Device) -> Self {
        let Attention {
            norm,
            to_qkv,
            to_out,
        } = Attention::new(channels, device);
        let out_norm = GroupNormConfig::new(1, channels).init(device);
        Self {
            norm,
            to_qkv,
            to_out,
            out_norm,
        }
    }

    /// # Shapes
    /// - x: `[batch, channels, height, width]` → same
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, _, h, w] = x.dims();
        let (q, k, v) = qkv_heads(&self.norm, &self.to_qkv, x.clone());
        let q = softmax(q, 2) * (DIM_HEAD as f64).powf(-0.5);
        let k = softmax(k, 3);
        let context = k.matmul(v.swap_dims(2, 3)); // [b, heads, d, e]
        let out = context.swap_dims(2, 3).matmul(q); // [b, heads, e, n]
        let out = out.reshape([b, HEADS * DIM_HEAD, h, w]);
        x + group_norm(&self.out_norm, conv2d(&self.to_out, out))
    }
}

/// Sinusoidal features of t → Linear → GELU → Linear.
#[derive(Module, Debug)]
pub struct TimeMlp {
    lin1: Linear,
    lin2: Linear,
}

/// One encoder level: two ResnetBlocks, optional linear attention, then a stride-2 conv
/// (absent on the deepest level).
#[derive(Module, Debug)]
pub struct DownLevel {
    block1: ResnetBlock,
    block2: ResnetBlock,
    attn: Option<LinearAttention>,
    downsample: Option<Conv2d>,
}

/// One decoder level: concat with a skip, two ResnetBlocks, optional attention, ×2 transposed conv.
#[derive(Module, Debug)]
pub struct UpLevel {
    block1: ResnetBlock,
    block2: ResnetBlock,
    attn: Option<LinearAttention>,
    upsample: ConvTranspose2d,
}

/// `x + Block(Block(x))` before the output conv.
#[derive(Module, Debug)]
pub struct FinalResidual {
    block1: Block,
    block2: Block,
}

/// The DDPM-HQ UNet. Build it with [`CheffUnetConfig::init`].
#[derive(Module, Debug)]
pub struct CheffUnet {
    init_conv: Conv2d,
    time_mlp: TimeMlp,
    downs: Vec<DownLevel>,
    mid_block1: ResnetBlock,
    mid_attn: Option<Attention>,
    mid_block2: ResnetBlock,
    ups: Vec<UpLevel>,
    final_res: FinalResidual,
    final_conv: Conv2d,
    dim: usize,
}

impl CheffUnet {
    /// Predicts ε.
    ///
    /// `t` holds one integer timestep per batch item (as f32, the reference casts too). H and W
    /// must be multiples of [`CheffUnetConfig::input_multiple`]; [`crate::model::Network`]
    /// pads other sizes.
    ///
    /// # Shapes
    /// - x: `[batch, channels, height, width]` (channel 0 = x_t, channel 1 = LQ image)
    /// - output: `[batch, out_dim, height, width]`
    pub fn forward(&self, x: Tensor<4>, t: &[f32]) -> Tensor<4> {
        let device = x.device();
        // 1. time embedding (features on the host: exact sin/cos on every backend)
        let temb = Tensor::<2>::from_data(
            sinusoidal_embedding(t, self.dim, SinusoidalKind::Cheff),
            &device,
        );
        let temb = same_dtype(temb, &x);
        let temb = self
            .time_mlp
            .lin2
            .forward(gelu(self.time_mlp.lin1.forward(temb))); // [batch, time_dim]

        // 2. input conv
        let mut x = conv2d(&self.init_conv, x); // [batch, init_dim, h, w]

        // 3. down path; every level's output is pushed as a skip
        let mut skips = Vec::with_capacity(self.downs.len());
        for level in &self.downs {
            x = level.block1.forward(x, temb.clone());
            x = level.block2.forward(x, temb.clone());
            if let Some(attn) = &level.attn {
                x = attn.forward(x);
            }
            skips.push(x.clone());
            if let Some(down) = &level.downsample {
                x = conv2d(down, x); // [batch, c, h/2, w/2]
            }
        }

        // 4. middle
        x = self.mid_block1.forward(x, temb.clone());
        if let Some(attn) = &self.mid_attn {
            x = attn.forward(x);
        }
        x = self.mid_block2.forward(x, temb.clone());

        // 5. up path: the deepest skip first; the shallowest skip is never used (reference quirk)
        for level in &self.ups {
            let skip = skips.pop().expect("one skip per down level");
            x = Tensor::cat(vec![x, skip], 1); // [batch, 2c, h, w]
            x = level.block1.forward(x, temb.clone());
            x = level.block2.forward(x, temb.clone());
            if let Some(attn) = &level.attn {
                x = attn.forward(x);
            }
            x = level.upsample.forward(x); // [batch, c', 2h, 2w]
        }

        // 6. output head
        let x = x.clone()
            + self
                .final_res
                .block2
                .forward(self.final_res.block1.forward(x));
        conv2d(&self.final_conv, x)
    }
}
