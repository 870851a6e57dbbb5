//! GroupNorm and SiLU, the UNets' most frequent pair, with fewer single-threaded passes on flex.
//!
//! burn-flex 0.22 runs element-wise ops (sub, mul, div, sqrt, sigmoid) on one thread with scalar
//! code; burn's GroupNorm is five such passes over the feature map and SiLU two, which made them
//! a quarter of a restoration step. At inference on flex (nothing needs a gradient), [`group_norm`]
//! normalises through burn's fused layer-norm op (one SIMD pass per group, rows across the
//! cores; the page's flex too), and [`silu`] and [`group_norm_silu`] split the element-wise rest
//! across two threads, half of the channels each (natively: the page's worker has one). Training, every other backend (ndarray
//! is the parity reference; LibTorch and wgpu have kernels of their own) and f16 go through
//! burn's ops unchanged. `dxr bench --baseline norm` turns both off, to measure both.

use burn::nn::GroupNorm;
use burn::prelude::*;
use burn::tensor::DType;

/// Whether this tensor takes the fast path: an f32 inference tensor on flex. Not on an
/// autodiff device: device equality ignores autodiff and an intermediate feature map is not
/// `require_grad`, so without that test training took the path too, and burn-autodiff 0.22.1's
/// graph registration is not safe from two threads (the `rayon::join` below): under load a step
/// was lost and backward panicked ("graph tape has already been consumed").
fn fast(x: &Tensor<4>) -> bool {
    let on = !super::baseline::burn_norm();
    let device = x.device();
    on && device == Device::flex() && !device.is_autodiff() && x.dtype() == DType::F32
}

/// `norm.forward(x)`; on the fast path, `x` as `[batch, groups, rest]` through the fused
/// layer norm (unit scale, no shift), then the per-channel affine.
///
/// # Shapes
/// - x: `[batch, channels, height, width]` → same
pub fn group_norm(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    if !fast(&x) {
        return norm.forward(x);
    }
    let c = x.dims()[1];
    let y = normalised(norm, x);
    match (&norm.gamma, &norm.beta) {
        (Some(g), Some(s)) => y * g.val().reshape([1, c, 1, 1]) + s.val().reshape([1, c, 1, 1]),
        _ => y,
    }
}

/// `silu(norm.forward(x))`; on the fast path, the fused layer norm, then the per-channel affine
/// and SiLU on two threads, each on half of the channels.
///
/// # Shapes
/// - x: `[batch, channels, height, width]` → same
pub fn group_norm_silu(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    let c = x.dims()[1];
    let (Some(g), Some(s)) = (&norm.gamma, &norm.beta) else {
        return silu(group_norm(norm, x));
    };
    if !split(&x) || c % 2 != 0 {
        return silu(group_norm(norm, x));
    }
    let y = normalised(norm, x);
    let half = |t: Tensor<1>, k: usize| t.narrow(0, k * c / 2, c / 2).reshape([1, c / 2, 1, 1]);
    let mut halves = y.chunk(2, 1).into_iter();
    let (y0, y1) = (halves.next().unwrap(), halves.next().unwrap());
    let (g, s) = (g.val(), s.val());
    let (a, z) = rayon::join(
        || burn::tensor::activation::silu(y0 * half(g.clone(), 0) + half(s.clone(), 0)),
        || burn::tensor::activation::silu(y1 * half(g.clone(), 1) + half(s.clone(), 1)),
    );
    Tensor::cat(vec![a, z], 1)
}

/// Whether `x` is worth splitting across two threads (the fast path, natively, large enough).
fn split(x: &Tensor<4>) -> bool {
    let [_, c, _, _] = x.dims();
    !cfg!(target_arch = "wasm32") && c >= 2 && x.shape().num_elements() >= SPLIT_MIN && fast(x)
}

/// `x` normalised per group, before the affine: `[batch, groups, rest]` through burn's fused
/// layer norm with unit scale and no shift.
fn normalised(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let groups = norm.num_groups;
    let n = c / groups * h * w;
    let unit = Tensor::<1>::ones([n], &x.device());
    burn::tensor::module::layer_norm(x.reshape([b, groups, n]), unit, None, norm.epsilon)
        .reshape([b, c, h, w])
}

/// Feature maps smaller than this (elements) are not worth splitting.
const SPLIT_MIN: usize = 1 << 16;

/// `x · sigmoid(x)`; on the fast path, the two halves of the channels on two threads.
///
/// # Shapes
/// - x: `[batch, channels, height, width]` → same
pub fn silu(x: Tensor<4>) -> Tensor<4> {
    if !split(&x) {
        return burn::tensor::activation::silu(x);
    }
    let mut halves = x.chunk(2, 1).into_iter();
    let (a, b) = (halves.next().unwrap(), halves.next().unwrap());
    let (a, b) = rayon::join(
        || burn::tensor::activation::silu(a),
        || burn::tensor::activation::silu(b),
    );
    Tensor::cat(vec![a, b], 1)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use burn::nn::GroupNormConfig;

    fn map(device: &Device, shape: [usize; 4]) -> Tensor<4> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 % 1000) as f32 / 100.0 - 5.0) * (1.0 + (i % 13) as f32))
            .collect();
        Tensor::<1>::from_floats(data.as_slice(), device).reshape(shape)
    }

    /// The fast path equals burn's GroupNorm and SiLU (same maps, trained-looking affine) on
    /// flex, and is the path taken there; ndarray keeps burn's own.
    #[test]
    fn the_fast_path_equals_burns_ops_on_flex() {
        let device = Device::flex();
        let mut norm = GroupNormConfig::new(4, 8).init(&device);
        norm.gamma = Some(burn::module::Param::from_tensor(Tensor::<1>::from_floats(
            [0.5, 1.5, -1.0, 2.0, 1.0, 0.25, 3.0, -0.5],
            &device,
        )));
        norm.beta = Some(burn::module::Param::from_tensor(Tensor::<1>::from_floats(
            [0.1, -0.2, 0.3, 0.0, -1.0, 2.0, 0.5, -0.5],
            &device,
        )));
        for shape in [[1, 8, 96, 96], [2, 8, 5, 7]] {
            let x = map(&device, shape);
            assert!(fast(&x));
            let want = norm.forward(x.clone());
            let got = group_norm(&norm, x.clone());
            let diff = (got - want.clone()).abs().max().into_scalar::<f32>();
            assert!(diff < 1e-4, "{shape:?}: GroupNorm off by {diff}");
            let s = silu(want.clone());
            let r = burn::tensor::activation::silu(want);
            let diff = (s - r.clone()).abs().max().into_scalar::<f32>();
            assert_eq!(diff, 0.0, "{shape:?}: SiLU differs by {diff}");
            let both = group_norm_silu(&norm, x);
            let diff = (both - r).abs().max().into_scalar::<f32>();
            assert!(diff < 1e-4, "{shape:?}: GroupNorm → SiLU off by {diff}");
        }
        let nd = crate::device::cpu();
        assert!(!fast(&map(&nd, [1, 8, 4, 4])));
    }

    /// Training never takes the threaded path: on flex's autodiff device every feature map,
    /// tracked or not, goes through burn's ops (two threads registering into the autodiff graph
    /// at once lost a step under load).
    #[test]
    fn training_maps_take_burns_ops() {
        let ad = Device::flex().autodiff();
        let x = map(&ad, [4, 8, 96, 96]);
        assert!(!fast(&x) && !split(&x), "an intermediate map on autodiff");
        assert!(!fast(&x.clone().require_grad()));
        // and the threaded path was what plain flex takes for the same map
        assert!(split(&map(&Device::flex(), [4, 8, 96, 96])));
    }
}
