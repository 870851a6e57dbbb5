//! The denoising networks: the authors' restoration UNet ([`cheff`]) and the SR3 UNet ([`sr3`]),
//! behind one [`Network`] that the samplers call.

pub mod cheff;
pub mod conv;
pub mod norm;
pub mod sr3;

use burn::prelude::*;
use burn::tensor::ops::PadMode;

use crate::error::Result;
use crate::spec::{Family, NetworkConfig, Unet};
pub use cheff::CheffUnet;
pub use sr3::Sr3Unet;

/// What `dxr bench --baseline` measures our own ops against: burn's convolution gradient
/// instead of [`conv::conv2d`]'s im2col, burn's GroupNorm and SiLU instead of [`norm`]'s. Off
/// everywhere else; set once, before the first network call.
pub mod baseline {
    use std::sync::atomic::{AtomicBool, Ordering};

    static BURN_CONV: AtomicBool = AtomicBool::new(false);
    static BURN_NORM: AtomicBool = AtomicBool::new(false);

    pub fn use_burn_conv(on: bool) {
        BURN_CONV.store(on, Ordering::Relaxed);
    }

    pub fn use_burn_norm(on: bool) {
        BURN_NORM.store(on, Ordering::Relaxed);
    }

    pub(crate) fn burn_conv() -> bool {
        BURN_CONV.load(Ordering::Relaxed)
    }

    pub(crate) fn burn_norm() -> bool {
        BURN_NORM.load(Ordering::Relaxed)
    }
}

impl NetworkConfig {
    /// Builds the network with fresh parameters.
    pub fn init(&self, device: &Device) -> Result<Network> {
        self.validate()?;
        Ok(match self {
            NetworkConfig::Cheff(c) => Network::Cheff(c.init(device)?),
            NetworkConfig::Sr3(c) => Network::Sr3(c.init(device)?),
        })
    }
}

/// A denoising network of either family.
#[derive(Module, Debug)]
pub enum Network {
    Cheff(CheffUnet),
    Sr3(Sr3Unet),
}

impl Network {
    /// Which family the network belongs to.
    pub fn family(&self) -> Family {
        match self {
            Network::Cheff(_) => Family::Cheff,
            Network::Sr3(_) => Family::Sr3,
        }
    }

    /// Concatenates x_t and the conditioning image in this family's channel order.
    pub fn join_input(&self, x: Tensor<4>, cond: Tensor<4>) -> Tensor<4> {
        match self {
            Network::Cheff(_) => Tensor::cat(vec![x, cond], 1),
            Network::Sr3(_) => Tensor::cat(vec![cond, x], 1),
        }
    }

    /// The network on an already-joined input and raw time values (t, or √ᾱ for SR3).
    pub fn forward_raw(&self, input: Tensor<4>, time: &[f32]) -> Tensor<4> {
        match self {
            Network::Cheff(net) => net.forward(input, time),
            Network::Sr3(net) => net.forward(input, time),
        }
    }
}

impl Unet for Network {
    fn family(&self) -> Family {
        Network::family(self)
    }

    fn predict_at(&self, x: Tensor<4>, cond: Tensor<4>, time: &[f32]) -> Tensor<4> {
        self.forward_raw(self.join_input(x, cond), time)
    }
}

/// Pads H and W at the bottom/right up to a multiple of `multiple` by mirror reflection (repeated
/// when the image is smaller than the padding), so any image size can enter the network.
///
/// # Shapes
/// - x: `[batch, channels, height, width]` → `[batch, channels, ceil(height), ceil(width)]`
pub fn pad_to_multiple(x: Tensor<4>, multiple: usize) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let mut x = x;
    let (mut ph, mut pw) = (
        h.next_multiple_of(multiple) - h,
        w.next_multiple_of(multiple) - w,
    );
    while ph > 0 || pw > 0 {
        let [_, _, ch, cw] = x.dims();
        let sh = ph.min(ch.saturating_sub(1));
        let sw = pw.min(cw.saturating_sub(1));
        if sh == 0 && sw == 0 {
            // 1-pixel-wide images cannot be mirrored: repeat the edge instead.
            return x.pad([(0, ph), (0, pw)], PadMode::Edge);
        }
        x = x.pad([(0, sh), (0, sw)], PadMode::Reflect);
        ph -= sh;
        pw -= sw;
    }
    x
}

/// Which reference's sinusoidal feature formula to use.
#[derive(Debug, Clone, Copy)]
pub enum SinusoidalKind {
    /// `f_k = exp(−k·ln(10⁴)/(half−1))`, argument `t·f_k`.
    Cheff,
    /// `f_k = exp(−ln(10⁴)·k/half)`, argument `level·f_k`.
    Sr3,
}

/// `t` in the float type of `like` (host-made features meeting half-precision activations in
/// mixed-precision training); unchanged when they already agree.
pub fn same_dtype<const D: usize, const E: usize>(t: Tensor<D>, like: &Tensor<E>) -> Tensor<D> {
    let dtype = like.dtype();
    if t.dtype() == dtype { t } else { t.cast(dtype) }
}

/// `[sin(v·f_0) … sin(v·f_{half−1}), cos(v·f_0) …]` per value, computed in f32 as the references
/// do, on the host so that every backend sees the same features.
pub fn sinusoidal_embedding(values: &[f32], dim: usize, kind: SinusoidalKind) -> TensorData {
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|k| match kind {
            SinusoidalKind::Cheff => {
                let scale = -(10000f64.ln() / (half as f64 - 1.0)) as f32;
                (k as f32 * scale).exp()
            }
            SinusoidalKind::Sr3 => {
                let step = k as f32 / half as f32;
                (-(10000f64.ln() as f32) * step).exp()
            }
        })
        .collect();
    let mut out = Vec::with_capacity(values.len() * half * 2);
    for &v in values {
        out.extend(freqs.iter().map(|f| (v * f).sin()));
        out.extend(freqs.iter().map(|f| (v * f).cos()));
    }
    TensorData::new(out, [values.len(), half * 2])
}

/// Splits a `[b, 3·heads·d, h, w]` projection into q, k, v of shape `[b, heads, d, h·w]`
/// (channel = part·heads·d + head·d + j, as the references lay it out).
pub(crate) fn attention_heads(qkv: Tensor<4>, heads: usize) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
    let [b, c3, h, w] = qkv.dims();
    let d = c3 / 3 / heads;
    let mut parts = qkv
        .reshape([b, 3 * heads, d, h * w])
        .chunk(3, 1)
        .into_iter();
    (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    )
}

/// Softmax attention of every position over every other, through burn's fused op: on flex a
/// tiled kernel that never holds the n × n matrix. (Measured against the scores as chunked
/// matrix products on flex, 2 threads, default model at 256²: 835 vs 1243 ms per step.)
///
/// # Shapes
/// - q, k, v: `[batch, heads, d, n]` → `[batch, heads, d, n]`
pub(crate) fn softmax_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, scale: f64) -> Tensor<4> {
    let options = burn::tensor::ops::AttentionModuleOptions {
        scale: Some(scale),
        softcap: None,
        is_causal: false,
    };
    burn::tensor::module::attention(
        q.swap_dims(2, 3),
        k.swap_dims(2, 3),
        v.swap_dims(2, 3),
        None,
        None,
        options,
    ) // [b, heads, n, d]
    .swap_dims(2, 3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{CheffUnetConfig, Sr3UnetConfig};

    #[test]
    fn rejects_impossible_configs_with_a_reason() {
        let c = CheffUnetConfig::new().with_dim_mults(vec![2, 4]);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("dim_mults[0] must be 1")
        );
        let c = CheffUnetConfig::new().with_dim(12).with_block_groups(8);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("GroupNorm groups")
        );
        let c = Sr3UnetConfig::new()
            .with_inner_channel(48)
            .with_norm_groups(32);
        assert!(c.validate().unwrap_err().to_string().contains("GroupNorm"));
        let c = NetworkConfig::Cheff(
            CheffUnetConfig::new()
                .with_channels(1)
                .with_out_dim(Some(1)),
        );
        assert!(c.validate().is_ok(), "a valid network");
        let err = c.cond_channels().unwrap_err().to_string();
        assert!(err.contains("conditioning"), "{err}");
    }

    #[test]
    fn attention_memory_estimate() {
        let authors = NetworkConfig::Cheff(CheffUnetConfig::new());
        assert_eq!(authors.attention_bytes(1, 2048, 1920), 4 * 240 * 240 * 4);
        let tiny = NetworkConfig::Cheff(
            CheffUnetConfig::new()
                .with_dim(8)
                .with_dim_mults(vec![1, 2]),
        );
        assert_eq!(tiny.attention_bytes(2, 16, 16), 2 * 4 * 64 * 64 * 4);
        // SR3: attention at resolution 16 of image_size 32 is level 1; the middle is level 2.
        let sr3 = NetworkConfig::Sr3(
            Sr3UnetConfig::new()
                .with_channel_multiplier(vec![1, 2, 4])
                .with_image_size(32),
        );
        assert_eq!(sr3.attention_bytes(1, 64, 64), (32u128 * 32).pow(2) * 4);
    }

    #[test]
    fn reference_attention_placement() {
        // The authors' checkpoint: L = 8, 5 attention layers -> down 4..7, up 4..6.
        let c = CheffUnetConfig::new();
        let down: Vec<bool> = (0..8).map(|i| c.down_attention(i)).collect();
        let up: Vec<bool> = (0..7).map(|j| c.up_attention(j)).collect();
        assert_eq!(down, [false, false, false, false, true, true, true, true]);
        assert_eq!(up, [false, false, false, false, true, true, true]);
        assert_eq!(c.resolved_init_dim(), 10);
        assert_eq!(c.input_multiple(), 128);
    }

    #[test]
    fn padding_reaches_the_multiple_even_for_tiny_images() {
        let device = crate::device::cpu();
        for (h, w) in [(5usize, 7usize), (1, 3), (2, 2), (16, 16)] {
            let x = Tensor::<4>::ones([1, 1, h, w], &device);
            let y = pad_to_multiple(x, 8);
            assert_eq!(
                y.dims(),
                [1, 1, h.next_multiple_of(8), w.next_multiple_of(8)]
            );
        }
        // Reflection, not zeros: a row 0..3 padded by 2 continues as 2, 1.
        let x = Tensor::<4>::from_data(
            TensorData::new(vec![0f32, 1., 2., 3.], [1, 1, 1, 4]),
            &device,
        );
        let y: Vec<f32> = pad_to_multiple(x, 6)
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        assert_eq!(&y[..6], &[0., 1., 2., 3., 2., 1.]);
    }
}
