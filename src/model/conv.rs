//! Stride-1 convolutions that train fast on the CPU.
//!
//! burn 0.22's default weight gradient of a convolution is itself a convolution whose "kernel" is
//! the output gradient (as wide as the feature map) and whose output is only k × k: on flex
//! that is a GEMM with 9 output columns per input channel, the slowest shape there is. When the
//! weights are being trained, [`conv2d`] computes the same convolution as im2col (k² shifted,
//! strided slices of the padded input, concatenated along the channels) and one matrix product,
//! so that autodiff differentiates a matrix product (two well-shaped GEMMs) and slices.
//! Inference, any convolution with dilation or groups, and every other backend (LibTorch and
//! wgpu have convolution gradients of their own) go through burn's own op unchanged.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::Slice;

/// Whether training convolutions take the im2col path: yes unless `dxr bench --baseline conv`
/// measures burn's own.
fn im2col_for_training() -> bool {
    !super::baseline::burn_conv()
}

/// `conv.forward(x)`, through im2col + matmul when `conv`'s weights require gradients.
///
/// # Shapes
/// - x: `[batch, cin, height, width]` → `[batch, cout, height', width']`
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let weight = conv.weight.val();
    let [kh, kw] = conv.kernel_size;
    let explicit = match conv.padding {
        PaddingConfig2d::Explicit(t, l, b, r) => Some([t, l, b, r]),
        PaddingConfig2d::Valid => Some([0; 4]),
        PaddingConfig2d::Same => None,
    };
    // flex only: LibTorch and wgpu have their own convolution gradients (no flex in wasm32)
    #[cfg(not(target_arch = "wasm32"))]
    let on_flex = weight.device().without_autodiff() == Device::flex();
    #[cfg(target_arch = "wasm32")]
    let on_flex = false;
    let plain = !on_flex
        || !weight.is_require_grad()
        || !im2col_for_training()
        || conv.dilation != [1, 1]
        || conv.groups != 1;
    let (Some([top, left, bottom, right]), false) = (explicit, plain) else {
        return conv.forward(x);
    };
    let [b, cin, h, w] = x.dims();
    let [cout, _, _, _] = weight.dims();
    let [sh, sw] = conv.stride;
    let (ho, wo) = (
        (h + top + bottom - kh) / sh + 1,
        (w + left + right - kw) / sw + 1,
    );
    // 1. channels first, so that the batch joins the pixels of one plain 2-D product
    let xc = x.swap_dims(0, 1); // [cin, b, h, w]
    let xc = if top + bottom + left + right > 0 {
        xc.pad(
            (left, right, top, bottom),
            burn::tensor::ops::PadMode::Constant(0.0),
        )
    } else {
        xc
    };
    // 2. the k² shifted (and strided) windows, tap-major: [k²·cin, b·ho·wo]
    let cols = if kh * kw == 1 && sh * sw == 1 {
        xc.reshape([cin, b * ho * wo])
    } else {
        let window = |start: usize, n: usize, step: usize| {
            Slice::new(
                start as isize,
                Some((start + step * (n - 1) + 1) as isize),
                step as isize,
            )
        };
        let taps: Vec<Tensor<4>> = (0..kh)
            .flat_map(|dy| (0..kw).map(move |dx| (dy, dx)))
            .map(|(dy, dx)| {
                xc.clone().slice([
                    Slice::from(0..cin),
                    Slice::from(0..b),
                    window(dy, ho, sh),
                    window(dx, wo, sw),
                ])
            })
            .collect();
        Tensor::cat(taps, 0).reshape([kh * kw * cin, b * ho * wo])
    };
    // 3. weights in the same order: [cout, cin, kh, kw] → [cout, kh, kw, cin] → [cout, k²·cin]
    let wmat = weight.permute([0, 2, 3, 1]).reshape([cout, kh * kw * cin]);
    // 4. one product, back to [b, cout, ho, wo], plus the bias
    let out = wmat.matmul(cols).reshape([cout, b, ho, wo]).swap_dims(0, 1);
    match &conv.bias {
        Some(bias) => out + bias.val().reshape([1, cout, 1, 1]),
        None => out,
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;

    #[test]
    fn the_training_path_equals_burns_convolution_values_and_gradients() {
        let device = Device::flex().autodiff();
        // (kernel, padding, stride, cin, cout): the UNets' 3×3 and 1×1 convolutions, SR3's 3×3
        // and cheff's 4×4 stride-2 down-sampling (odd input sides, so a row is left over)
        for (k, pad, stride, cin, cout) in [
            (3, 1, 1, 3, 5),
            (7, 3, 1, 2, 4),
            (1, 0, 1, 6, 3),
            (3, 1, 2, 3, 4),
            (4, 1, 2, 2, 3),
        ] {
            let conv = Conv2dConfig::new([cin, cout], [k, k])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .with_stride([stride, stride])
                .init(&device);
            let x = Tensor::<4>::random(
                [2, cin, 9, 11],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &device,
            )
            .require_grad();
            let ours = conv2d(&conv, x.clone());
            let theirs = conv.forward(x.clone());
            ours.clone().into_data().assert_approx_eq::<f32>(
                &theirs.clone().into_data(),
                burn::tensor::Tolerance::absolute(1e-4),
            );
            // gradients of the same loss through both paths
            let target = Tensor::<4>::random(
                ours.dims(),
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &device,
            );
            let g1 = (ours - target.clone()).powi_scalar(2).sum().backward();
            let g2 = (theirs - target).powi_scalar(2).sum().backward();
            let tol = burn::tensor::Tolerance::absolute(1e-3);
            let w = conv.weight.val();
            let bias = conv.bias.as_ref().unwrap().val();
            for t in [&w, &x] {
                let (a, b) = (t.grad(&g1).unwrap(), t.grad(&g2).unwrap());
                a.into_data().assert_approx_eq::<f32>(&b.into_data(), tol);
            }
            let (a, b) = (bias.grad(&g1).unwrap(), bias.grad(&g2).unwrap());
            a.into_data().assert_approx_eq::<f32>(&b.into_data(), tol);
        }
    }
}
