//! Image quality metrics as scikit-image computes them: PSNR, and SSIM (Wang et al. 2004) with an
//! 11×11 Gaussian window (σ = 1.5, truncated at 3.5σ), population statistics, K1 = 0.01,
//! K2 = 0.03, averaged over the positions where the window lies fully inside the image.

use crate::error::{Error, Result};
use crate::io::GrayImage;

/// SSIM's Gaussian σ.
pub const SSIM_SIGMA: f64 = 1.5;
/// Window radius: `int(3.5·σ + 0.5)` as scipy truncates it.
const RADIUS: usize = 5;
const K1: f64 = 0.01;
const K2: f64 = 0.03;

fn check(a: &[f64], b: &[f64], width: usize, height: usize) -> Result<()> {
    if a.len() != b.len() || a.len() != width * height {
        return Err(Error::Image(format!(
            "images differ in size ({} and {} values for {width}×{height})",
            a.len(),
            b.len()
        )));
    }
    Ok(())
}

/// Peak signal-to-noise ratio in dB: `10·log10(range² / MSE)` (infinite for identical images).
pub fn psnr(reference: &[f64], test: &[f64], data_range: f64) -> Result<f64> {
    check(reference, test, reference.len(), 1)?;
    let mse = reference
        .iter()
        .zip(test)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        / reference.len() as f64;
    Ok(10.0 * (data_range * data_range / mse).log10())
}

/// Mean structural similarity over the valid region; needs both sides ≥ 11.
pub fn ssim(
    reference: &[f64],
    test: &[f64],
    width: usize,
    height: usize,
    data_range: f64,
) -> Result<f64> {
    check(reference, test, width, height)?;
    let win = 2 * RADIUS + 1;
    if width < win || height < win {
        return Err(Error::Image(format!(
            "SSIM needs images of at least {win}×{win}, got {width}×{height}"
        )));
    }
    let kernel: Vec<f64> = {
        let k: Vec<f64> = (0..win)
            .map(|i| {
                let x = i as f64 - RADIUS as f64;
                (-0.5 * x * x / (SSIM_SIGMA * SSIM_SIGMA)).exp()
            })
            .collect();
        let s: f64 = k.iter().sum();
        k.into_iter().map(|v| v / s).collect()
    };
    // Separable filter evaluated only where the window fits: output (h − 10) × (w − 10).
    let (ow, oh) = (width - 2 * RADIUS, height - 2 * RADIUS);
    let filter = |img: &dyn Fn(usize) -> f64| -> Vec<f64> {
        let mut rows = vec![0f64; height * ow];
        for y in 0..height {
            for x in 0..ow {
                rows[y * ow + x] = (0..win).map(|k| kernel[k] * img(y * width + x + k)).sum();
            }
        }
        let mut out = vec![0f64; oh * ow];
        for y in 0..oh {
            for x in 0..ow {
                out[y * ow + x] = (0..win).map(|k| kernel[k] * rows[(y + k) * ow + x]).sum();
            }
        }
        out
    };
    let (a, b) = (reference, test);
    let ux = filter(&|i| a[i]);
    let uy = filter(&|i| b[i]);
    let uxx = filter(&|i| a[i] * a[i]);
    let uyy = filter(&|i| b[i] * b[i]);
    let uxy = filter(&|i| a[i] * b[i]);
    let c1 = (K1 * data_range).powi(2);
    let c2 = (K2 * data_range).powi(2);
    let total: f64 = (0..ux.len())
        .map(|i| {
            let (mx, my) = (ux[i], uy[i]);
            let (vx, vy, vxy) = (uxx[i] - mx * mx, uyy[i] - my * my, uxy[i] - mx * my);
            ((2.0 * mx * my + c1) * (2.0 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        })
        .sum();
    Ok(total / ux.len() as f64)
}

/// Two images compared as 8-bit images: the largest difference in 8-bit steps, PSNR (`None`
/// when they are equal) and SSIM (`None` when the images are too small for its window).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Comparison {
    pub max_abs_8bit: f32,
    pub psnr: Option<f64>,
    pub ssim: Option<f64>,
}

/// [`Comparison`] of `a` and `b`, which must have the same size.
pub fn compare_8bit(a: &GrayImage, b: &GrayImage) -> Result<Comparison> {
    if (a.width, a.height) != (b.width, b.height) {
        return Err(Error::Image(format!(
            "sizes differ: {}×{} and {}×{}",
            a.width, a.height, b.width, b.height
        )));
    }
    let max = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(p, q)| (p - q).abs())
        .fold(0f32, f32::max);
    let eight = |v: &[f32]| -> Vec<f64> { v.iter().map(|p| (p * 255.0).round() as f64).collect() };
    let (p8, q8) = (eight(&a.data), eight(&b.data));
    let psnr = psnr(&p8, &q8, 255.0)?;
    Ok(Comparison {
        max_abs_8bit: max * 255.0,
        psnr: psnr.is_finite().then_some(psnr),
        ssim: ssim(&p8, &q8, a.width, a.height, 255.0).ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_images() {
        let a: Vec<f64> = (0..400).map(|i| (i % 17) as f64 * 10.0).collect();
        assert_eq!(ssim(&a, &a, 20, 20, 255.0).unwrap(), 1.0);
        assert!(psnr(&a, &a, 255.0).unwrap().is_infinite());
    }

    #[test]
    fn known_psnr_and_size_errors() {
        let a = vec![0.0; 100];
        let b = vec![5.0; 100]; // MSE 25
        let expected = 10.0 * (255.0f64 * 255.0 / 25.0).log10();
        assert!((psnr(&a, &b, 255.0).unwrap() - expected).abs() < 1e-12);
        assert!(
            ssim(&a, &b, 10, 10, 255.0)
                .unwrap_err()
                .to_string()
                .contains("at least 11")
        );
        assert!(ssim(&a, &b[..99], 10, 10, 255.0).is_err());
    }
}
