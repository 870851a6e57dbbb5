//! MUNIT (Huang et al. 2018, "Multimodal Unsupervised Image-to-Image Translation"), greyscale:
//! per domain a content encoder (instance-normalised residual blocks), a style encoder (global
//! pooling to an 8-number style code) and a decoder whose residual blocks take their scales and
//! shifts from the style code through an MLP (AdaIN); multi-scale LSGAN discriminators.
//! DiffusionXRay's MUNIT-LQ learns HQ ↔ LQ from unpaired radiographs and DRRs.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{leaky_relu, relu, tanh};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Sizes of a MUNIT. `base` is the paper's setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MunitConfig {
    /// Filters of the first generator layer (paper: 64).
    pub gen_dim: usize,
    /// Style code length (paper: 8).
    pub style_dim: usize,
    /// Down/upsampling steps of content encoder and decoder (paper: 2).
    pub n_downsample: usize,
    /// Residual blocks in content encoder and decoder (paper: 4).
    pub n_res: usize,
    /// Hidden width of the style → AdaIN MLP (paper: 256).
    pub mlp_dim: usize,
    /// Filters of the first discriminator layer (paper: 64).
    pub dis_dim: usize,
    /// Strided layers per discriminator scale (paper: 4).
    pub dis_layers: usize,
    /// Discriminator scales (paper: 3).
    pub dis_scales: usize,
}

impl MunitConfig {
    /// `tiny` (tests), `small` (a CPU in a session), `base` (the paper).
    pub fn preset(name: &str) -> Result<Self> {
        let base = Self {
            gen_dim: 64,
            style_dim: 8,
            n_downsample: 2,
            n_res: 4,
            mlp_dim: 256,
            dis_dim: 64,
            dis_layers: 4,
            dis_scales: 3,
        };
        match name {
            "base" => Ok(base),
            "small" => Ok(Self {
                gen_dim: 16,
                n_res: 4,
                mlp_dim: 64,
                dis_dim: 16,
                dis_layers: 3,
                dis_scales: 2,
                ..base
            }),
            "tiny" => Ok(Self {
                gen_dim: 8,
                n_res: 1,
                mlp_dim: 16,
                dis_dim: 8,
                dis_layers: 2,
                dis_scales: 2,
                ..base
            }),
            path => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::Usage(format!(
                        "--config {path:?}: not tiny, small or base, and not a readable file ({e})"
                    ))
                })?;
                serde_json::from_str(&text).map_err(|e| Error::Config(format!("{path}: {e}")))
            }
        }
    }

    /// Image sides must be multiples of this.
    pub fn multiple(&self) -> usize {
        let style = 1 << 4; // the style encoder downsamples 4 times
        style.max(1 << self.n_downsample).max(1 << self.dis_layers)
    }

    pub fn validate(&self) -> Result<()> {
        if self.gen_dim == 0
            || self.style_dim == 0
            || self.mlp_dim == 0
            || self.dis_dim == 0
            || self.dis_layers == 0
            || self.dis_scales == 0
        {
            return Err(Error::Config(format!(
                "MUNIT sizes must be positive: {self:?}"
            )));
        }
        Ok(())
    }

    pub fn init_gen(&self, device: &Device) -> Result<MunitGen> {
        self.validate()?;
        Ok(MunitGen {
            a: AutoEncoder::new(self, device),
            b: AutoEncoder::new(self, device),
        })
    }

    pub fn init_dis(&self, device: &Device) -> Result<MunitDis> {
        self.validate()?;
        Ok(MunitDis {
            a: MultiScaleDis::new(self, device),
            b: MultiScaleDis::new(self, device),
        })
    }
}

/// Normalisation of a conv block.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Norm {
    None,
    Instance,
    Layer,
}

/// Reflect padding by `p` on both sides of H and W (p smaller than the sides).
///
/// # Shapes
/// - x: `[b, c, h, w]` → `[b, c, h + 2p, w + 2p]`
fn reflect_pad(x: Tensor<4>, p: usize) -> Tensor<4> {
    if p == 0 {
        return x;
    }
    let [b, c, h, w] = x.dims();
    let p = p.min(h - 1).min(w - 1);
    let top = x.clone().slice([0..b, 0..c, 1..p + 1, 0..w]).flip([2]);
    let bottom = x
        .clone()
        .slice([0..b, 0..c, h - 1 - p..h - 1, 0..w])
        .flip([2]);
    let x = Tensor::cat(vec![top, x, bottom], 2);
    let h2 = h + 2 * p;
    let left = x.clone().slice([0..b, 0..c, 0..h2, 1..p + 1]).flip([3]);
    let right = x
        .clone()
        .slice([0..b, 0..c, 0..h2, w - 1 - p..w - 1])
        .flip([3]);
    Tensor::cat(vec![left, x, right], 3)
}

/// Per-sample, per-channel normalisation over H and W.
fn instance_norm(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let flat = x.reshape([b, c, h * w]);
    let mean = flat.clone().mean_dim(2);
    let var = (flat.clone() - mean.clone()).powi_scalar(2).mean_dim(2);
    ((flat - mean) / (var + 1e-5).sqrt()).reshape([b, c, h, w])
}

/// A conv with reflect padding, an optional normalisation and an activation.
#[derive(Module, Debug)]
pub struct ConvBlock {
    conv: Conv2d,
    pad: usize,
    /// MUNIT's LayerNorm: over C, H, W per sample, then a per-channel scale and shift.
    ln_gamma: Option<Param<Tensor<1>>>,
    ln_beta: Option<Param<Tensor<1>>>,
    instance: bool,
    activation: usize,
}

const ACT_NONE: usize = 0;
const ACT_RELU: usize = 1;
const ACT_LRELU: usize = 2;
const ACT_TANH: usize = 3;

/// Convolution windows `[kernel, stride, padding]`: the 7×7 stems and outputs, the strided
/// 4×4 downsampling, the 3×3 residual convolutions, the 5×5 after each upsampling.
const WIDE: [usize; 3] = [7, 1, 3];
const DOWN: [usize; 3] = [4, 2, 1];
const SAME: [usize; 3] = [3, 1, 1];
const UP: [usize; 3] = [5, 1, 2];

/// A strided 4×4 convolution from `w` to `2w` channels.
fn doubling(w: usize, norm: Norm, act: usize, device: &Device) -> ConvBlock {
    ConvBlock::new(w, 2 * w, DOWN, norm, act, device)
}

impl ConvBlock {
    /// A `k×k` convolution `[k, stride, pad]` from `c_in` to `c_out` channels, then `norm`, `act`.
    fn new(
        c_in: usize,
        c_out: usize,
        [k, stride, pad]: [usize; 3],
        norm: Norm,
        act: usize,
        device: &Device,
    ) -> Self {
        let conv = Conv2dConfig::new([c_in, c_out], [k, k])
            .with_stride([stride, stride])
            .init(device);
        let layer = norm == Norm::Layer;
        Self {
            conv,
            pad,
            ln_gamma: layer.then(|| {
                Param::from_tensor(Tensor::random(
                    [c_out],
                    burn::tensor::Distribution::Uniform(0.0, 1.0),
                    device,
                ))
            }),
            ln_beta: layer.then(|| Param::from_tensor(Tensor::zeros([c_out], device))),
            instance: norm == Norm::Instance,
            activation: act,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.conv.forward(reflect_pad(x, self.pad));
        if self.instance {
            x = instance_norm(x);
        }
        if let (Some(g), Some(bt)) = (&self.ln_gamma, &self.ln_beta) {
            let [b, c, h, w] = x.dims();
            let flat = x.reshape([b, c * h * w]);
            let mean = flat.clone().mean_dim(1);
            let var = (flat.clone() - mean.clone()).powi_scalar(2).mean_dim(1);
            x = ((flat - mean) / (var + 1e-5).sqrt()).reshape([b, c, h, w]);
            x = x * g.val().reshape([1, c, 1, 1]) + bt.val().reshape([1, c, 1, 1]);
        }
        match self.activation {
            ACT_RELU => relu(x),
            ACT_LRELU => leaky_relu(x, 0.2),
            ACT_TANH => tanh(x),
            _ => x,
        }
    }
}

/// Two 3×3 conv blocks and a skip; instance norm, or AdaIN with parameters given per sample.
#[derive(Module, Debug)]
pub struct ResBlock {
    c1: ConvBlock,
    c2: ConvBlock,
}

impl ResBlock {
    fn new(dim: usize, norm: Norm, device: &Device) -> Self {
        Self {
            c1: ConvBlock::new(dim, dim, SAME, norm, ACT_RELU, device),
            c2: ConvBlock::new(dim, dim, SAME, norm, ACT_NONE, device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        x.clone() + self.c2.forward(self.c1.forward(x))
    }

    /// With AdaIN: `ada` holds (scale, shift) per conv, each `[b, dim]`.
    fn forward_adain(&self, x: Tensor<4>, ada: [(Tensor<2>, Tensor<2>); 2]) -> Tensor<4> {
        let [(s1, b1), (s2, b2)] = ada;
        let y = relu(adain(
            self.c1.conv.forward(reflect_pad(x.clone(), 1)),
            s1,
            b1,
        ));
        let y = adain(self.c2.conv.forward(reflect_pad(y, 1)), s2, b2);
        x + y
    }
}

/// Instance-normalise, then scale and shift per sample and channel.
fn adain(x: Tensor<4>, scale: Tensor<2>, shift: Tensor<2>) -> Tensor<4> {
    let [b, c, _, _] = x.dims();
    instance_norm(x) * scale.reshape([b, c, 1, 1]) + shift.reshape([b, c, 1, 1])
}

/// One domain's encoders and decoder.
#[derive(Module, Debug)]
pub struct AutoEncoder {
    content: Vec<ConvBlock>,
    content_res: Vec<ResBlock>,
    style: Vec<ConvBlock>,
    style_out: Conv2d,
    dec_res: Vec<ResBlock>,
    dec_up: Vec<ConvBlock>,
    dec_out: ConvBlock,
    mlp: Vec<Linear>,
    style_dim: usize,
}

impl AutoEncoder {
    fn new(cfg: &MunitConfig, device: &Device) -> Self {
        let d = cfg.gen_dim;
        // 1. content: 7×7, then strided 4×4 convs doubling the width, then residual blocks
        let mut content = vec![ConvBlock::new(1, d, WIDE, Norm::Instance, ACT_RELU, device)];
        let mut w = d;
        for _ in 0..cfg.n_downsample {
            content.push(doubling(w, Norm::Instance, ACT_RELU, device));
            w *= 2;
        }
        let content_res = (0..cfg.n_res)
            .map(|_| ResBlock::new(w, Norm::Instance, device))
            .collect();
        // 2. style: 7×7, four strided convs (width doubling twice), global mean, 1×1 to the code
        let mut style = vec![ConvBlock::new(1, d, WIDE, Norm::None, ACT_RELU, device)];
        let mut sw = d;
        for k in 0..4 {
            let next = if k < 2 { 2 * sw } else { sw };
            style.push(ConvBlock::new(sw, next, DOWN, Norm::None, ACT_RELU, device));
            sw = next;
        }
        let style_out = Conv2dConfig::new([sw, cfg.style_dim], [1, 1]).init(device);
        // 3. decoder: AdaIN residual blocks, then nearest ×2 + 5×5 conv with layer norm, halving
        let dec_res = (0..cfg.n_res)
            .map(|_| ResBlock::new(w, Norm::None, device))
            .collect();
        let mut dec_up = Vec::new();
        for _ in 0..cfg.n_downsample {
            dec_up.push(ConvBlock::new(w, w / 2, UP, Norm::Layer, ACT_RELU, device));
            w /= 2;
        }
        let dec_out = ConvBlock::new(w, 1, WIDE, Norm::None, ACT_TANH, device);
        // 4. MLP: style code → 2 (scale, shift) per AdaIN conv, each of the residual width
        let adain_params = cfg.n_res * 2 * 2 * (d << cfg.n_downsample);
        let mlp = vec![
            LinearConfig::new(cfg.style_dim, cfg.mlp_dim).init(device),
            LinearConfig::new(cfg.mlp_dim, cfg.mlp_dim).init(device),
            LinearConfig::new(cfg.mlp_dim, adain_params).init(device),
        ];
        Self {
            content,
            content_res,
            style,
            style_out,
            dec_res,
            dec_up,
            dec_out,
            mlp,
            style_dim: cfg.style_dim,
        }
    }

    /// # Shapes
    /// - x: `[b, 1, h, w]` → `[b, gen_dim·2^n, h / 2^n, w / 2^n]`
    pub fn encode_content(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = x;
        for c in &self.content {
            x = c.forward(x);
        }
        for r in &self.content_res {
            x = r.forward(x);
        }
        x
    }

    /// # Shapes
    /// - x: `[b, 1, h, w]` → `[b, style_dim]`
    pub fn encode_style(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = x;
        for c in &self.style {
            x = c.forward(x);
        }
        let [b, c, h, w] = x.dims();
        let pooled = x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c, 1, 1]);
        self.style_out.forward(pooled).reshape([b, self.style_dim])
    }

    /// # Shapes
    /// - content: `[b, c, h', w']`, style: `[b, style_dim]` → `[b, 1, h, w]` in [−1, 1]
    pub fn decode(&self, content: Tensor<4>, style: Tensor<2>) -> Tensor<4> {
        // 1. AdaIN parameters from the style code
        let mut p = style;
        for (k, l) in self.mlp.iter().enumerate() {
            p = l.forward(p);
            if k + 1 < self.mlp.len() {
                p = relu(p);
            }
        }
        let [b, _] = p.dims();
        let width = content.dims()[1];
        let mut chunk = 0;
        let mut next = |p: &Tensor<2>| {
            let s = p.clone().slice([0..b, chunk * width..(chunk + 1) * width]);
            let t = p
                .clone()
                .slice([0..b, (chunk + 1) * width..(chunk + 2) * width]);
            chunk += 2;
            (s + 1.0, t) // scales around 1, as MUNIT's AdaIN weights
        };
        // 2. residual blocks, upsampling, output
        let mut x = content;
        for r in &self.dec_res {
            let ada = [next(&p), next(&p)];
            x = r.forward_adain(x, ada);
        }
        for u in &self.dec_up {
            x = u.forward(upsample2(x));
        }
        self.dec_out.forward(x)
    }
}

/// Nearest-neighbour ×2.
fn upsample2(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h, 1, w, 1])
        .repeat_dim(3, 2)
        .repeat_dim(5, 2)
        .reshape([b, c, 2 * h, 2 * w])
}

/// Discriminators at several scales (the input halved by a 3×3 average between scales).
#[derive(Module, Debug)]
pub struct MultiScaleDis {
    scales: Vec<DisScale>,
}

#[derive(Module, Debug)]
pub struct DisScale {
    layers: Vec<ConvBlock>,
    out: Conv2d,
}

impl MultiScaleDis {
    fn new(cfg: &MunitConfig, device: &Device) -> Self {
        let scales = (0..cfg.dis_scales)
            .map(|_| {
                let mut layers = vec![ConvBlock::new(
                    1,
                    cfg.dis_dim,
                    DOWN,
                    Norm::None,
                    ACT_LRELU,
                    device,
                )];
                let mut w = cfg.dis_dim;
                for _ in 1..cfg.dis_layers {
                    layers.push(doubling(w, Norm::None, ACT_LRELU, device));
                    w *= 2;
                }
                DisScale {
                    layers,
                    out: Conv2dConfig::new([w, 1], [1, 1]).init(device),
                }
            })
            .collect();
        Self { scales }
    }

    /// One patch map per scale.
    pub fn forward(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        let mut x = x;
        let mut outs = Vec::new();
        for (k, s) in self.scales.iter().enumerate() {
            let mut y = x.clone();
            for l in &s.layers {
                y = l.forward(y);
            }
            outs.push(s.out.forward(y));
            if k + 1 < self.scales.len() {
                x = burn::tensor::module::avg_pool2d(
                    x,
                    burn::tensor::ops::AvgPoolOptions {
                        kernel_size: [3, 3],
                        stride: [2, 2],
                        padding: [(1, 1), (1, 1)],
                        count_include_pad: false,
                        ceil_mode: false,
                    },
                );
            }
        }
        outs
    }

    /// LSGAN discriminator loss: fake → 0, real → 1.
    pub fn loss_dis(&self, fake: Tensor<4>, real: Tensor<4>) -> Tensor<1> {
        let f = self.forward(fake);
        let r = self.forward(real);
        f.into_iter()
            .zip(r)
            .map(|(f, r)| f.powi_scalar(2).mean() + (r - 1.0).powi_scalar(2).mean())
            .reduce(|a, b| a + b)
            .expect("at least one scale")
    }

    /// LSGAN generator loss: fake → 1.
    pub fn loss_gen(&self, fake: Tensor<4>) -> Tensor<1> {
        self.forward(fake)
            .into_iter()
            .map(|f| (f - 1.0).powi_scalar(2).mean())
            .reduce(|a, b| a + b)
            .expect("at least one scale")
    }
}

/// Both domains' generators (a = HQ, b = LQ).
#[derive(Module, Debug)]
pub struct MunitGen {
    pub a: AutoEncoder,
    pub b: AutoEncoder,
}

/// Both domains' discriminators.
#[derive(Module, Debug)]
pub struct MunitDis {
    pub a: MultiScaleDis,
    pub b: MultiScaleDis,
}

/// The loss weights (paper: GAN 1, image reconstruction 10, style 1, content 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MunitWeights {
    pub gan: f64,
    pub recon_x: f64,
    pub recon_s: f64,
    pub recon_c: f64,
}

impl Default for MunitWeights {
    fn default() -> Self {
        Self {
            gan: 1.0,
            recon_x: 10.0,
            recon_s: 1.0,
            recon_c: 1.0,
        }
    }
}

/// The generator's losses on one batch; `s_a`, `s_b` are random style codes.
pub struct GenLosses {
    pub total: Tensor<1>,
    pub recon_x: Tensor<1>,
    pub recon_s: Tensor<1>,
    pub recon_c: Tensor<1>,
    pub gan: Tensor<1>,
}

impl MunitGen {
    /// Cross-domain translations a → b and b → a with the given styles.
    pub fn translate(
        &self,
        x_a: Tensor<4>,
        x_b: Tensor<4>,
        s_a: Tensor<2>,
        s_b: Tensor<2>,
    ) -> (Tensor<4>, Tensor<4>) {
        let (c_a, c_b) = (self.a.encode_content(x_a), self.b.encode_content(x_b));
        (self.b.decode(c_a, s_b), self.a.decode(c_b, s_a))
    }

    pub fn losses(
        &self,
        dis: &MunitDis,
        x_a: Tensor<4>,
        x_b: Tensor<4>,
        s_a: Tensor<2>,
        s_b: Tensor<2>,
        w: &MunitWeights,
    ) -> GenLosses {
        let l1 = |a: Tensor<4>, b: Tensor<4>| (a - b).abs().mean();
        let l1s = |a: Tensor<2>, b: Tensor<2>| (a - b).abs().mean();
        // 1. encode, reconstruct within each domain
        let (c_a, s_a_prime) = (
            self.a.encode_content(x_a.clone()),
            self.a.encode_style(x_a.clone()),
        );
        let (c_b, s_b_prime) = (
            self.b.encode_content(x_b.clone()),
            self.b.encode_style(x_b.clone()),
        );
        let x_a_recon = self.a.decode(c_a.clone(), s_a_prime);
        let x_b_recon = self.b.decode(c_b.clone(), s_b_prime);
        // 2. translate with random styles, encode the translations again
        let x_ba = self.a.decode(c_b.clone(), s_a.clone());
        let x_ab = self.b.decode(c_a.clone(), s_b.clone());
        let (c_b_recon, s_a_recon) = (
            self.a.encode_content(x_ba.clone()),
            self.a.encode_style(x_ba.clone()),
        );
        let (c_a_recon, s_b_recon) = (
            self.b.encode_content(x_ab.clone()),
            self.b.encode_style(x_ab.clone()),
        );
        // 3. losses
        let recon_x = l1(x_a_recon, x_a) + l1(x_b_recon, x_b);
        let recon_s = l1s(s_a_recon, s_a) + l1s(s_b_recon, s_b);
        let recon_c = l1(c_a_recon, c_a.detach()) + l1(c_b_recon, c_b.detach());
        let gan = dis.a.loss_gen(x_ba) + dis.b.loss_gen(x_ab);
        let total = gan.clone() * w.gan
            + recon_x.clone() * w.recon_x
            + recon_s.clone() * w.recon_s
            + recon_c.clone() * w.recon_c;
        GenLosses {
            total,
            recon_x,
            recon_s,
            recon_c,
            gan,
        }
    }
}

#[cfg(test)]
#[path = "net_tests.rs"]
mod tests;
