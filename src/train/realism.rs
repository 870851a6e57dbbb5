//! How much an image looks like a real radiograph, and how visible a nodule is: measures that
//! compare restored DRRs with the real radiograph and with the DRRs they came from.
//! - histogram distance: the 1-D Wasserstein (earth mover's) distance between intensity
//!   distributions on [0, 1];
//! - spectrum slope: the slope of log radial power vs log spatial frequency (Hann-windowed), about
//!   −2 to −3 for radiographs; blur makes it steeper;
//! - edge sharpness: the mean of the strongest 1 % of Sobel gradient magnitudes, relative to the
//!   image's 1–99 % intensity range;
//! - nodule CNR: (mean inside 0.7 r − mean of the ring 1.5 r … 2.5 r) / std of the ring.

use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

use crate::io::GrayImage;
use crate::{Error, Result};

/// Bins of the histograms compared.
const BINS: usize = 256;

/// Cumulative intensity distribution of one or more images (values in [0, 1], 256 bins).
pub fn cdf(images: &[&GrayImage]) -> Vec<f64> {
    let mut h = vec![0.0; BINS];
    let mut n = 0usize;
    for g in images {
        for v in &g.data {
            h[((v.clamp(0.0, 1.0) * (BINS - 1) as f32).round()) as usize] += 1.0;
        }
        n += g.data.len();
    }
    let mut acc = 0.0;
    h.iter()
        .map(|c| {
            acc += c / n.max(1) as f64;
            acc
        })
        .collect()
}

/// Wasserstein-1 distance between two distributions given by their [`cdf`]s.
pub fn wasserstein(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>() / (BINS - 1) as f64
}

/// Wasserstein-1 distance between the intensity distributions of two images.
pub fn histogram_distance(a: &GrayImage, b: &GrayImage) -> f64 {
    wasserstein(&cdf(&[a]), &cdf(&[b]))
}

/// Slope of log radial power against log frequency between `f_lo` and `f_hi` cycles/pixel.
pub fn spectrum_slope(img: &GrayImage) -> Result<f64> {
    let (w, h) = (img.width, img.height);
    if w < 16 || h < 16 {
        return Err(Error::Image(format!(
            "spectrum slope needs at least 16×16, got {w}×{h}"
        )));
    }
    // 1. mean removed, Hann window, 2-D FFT (rows then columns)
    let mean = img.data.iter().map(|v| *v as f64).sum::<f64>() / img.data.len() as f64;
    let hann = |k: usize, n: usize| {
        0.5 - 0.5 * (2.0 * std::f64::consts::PI * k as f64 / (n - 1) as f64).cos()
    };
    let mut buf: Vec<Complex<f64>> = (0..w * h)
        .map(|p| {
            Complex::new(
                (img.data[p] as f64 - mean) * hann(p % w, w) * hann(p / w, h),
                0.0,
            )
        })
        .collect();
    fft2(&mut buf, w, h, false);
    // 2. radial average of |F|² in frequency bins, fit a line in log–log
    let (f_lo, f_hi) = (4.0 / w.min(h) as f64, 0.4);
    let nbins = 24;
    let mut sum = vec![0.0; nbins];
    let mut count = vec![0usize; nbins];
    for y in 0..h {
        for x in 0..w {
            let f = freq(x, w).hypot(freq(y, h));
            if f < f_lo || f > f_hi {
                continue;
            }
            let k = (((f / f_lo).ln() / (f_hi / f_lo).ln()) * nbins as f64)
                .floor()
                .min(nbins as f64 - 1.0) as usize;
            sum[k] += buf[y * w + x].norm_sqr();
            count[k] += 1;
        }
    }
    let pts: Vec<(f64, f64)> = (0..nbins)
        .filter(|&k| count[k] > 0 && sum[k] > 0.0)
        .map(|k| {
            let f = f_lo * (f_hi / f_lo).powf((k as f64 + 0.5) / nbins as f64);
            (f.ln(), (sum[k] / count[k] as f64).ln())
        })
        .collect();
    if pts.len() < 3 {
        return Err(Error::Image("a flat image has no spectrum to fit".into()));
    }
    let n = pts.len() as f64;
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / n,
        pts.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    Ok(sxy / sxx)
}

/// Signed frequency (cycles/pixel) of FFT bin `k` of `n`.
fn freq(k: usize, n: usize) -> f64 {
    let k = if k <= n / 2 {
        k as f64
    } else {
        k as f64 - n as f64
    };
    k / n as f64
}

/// In-place 2-D FFT of a row-major `w × h` buffer (rows, then columns); unnormalised.
fn fft2(buf: &mut [Complex<f64>], w: usize, h: usize, inverse: bool) {
    let mut planner = FftPlanner::new();
    let plan = |n: usize, planner: &mut FftPlanner<f64>| {
        if inverse {
            planner.plan_fft_inverse(n)
        } else {
            planner.plan_fft_forward(n)
        }
    };
    let row = plan(w, &mut planner);
    for r in buf.chunks_mut(w) {
        row.process(r);
    }
    let col = plan(h, &mut planner);
    let mut column = vec![Complex::new(0.0, 0.0); h];
    for x in 0..w {
        for y in 0..h {
            column[y] = buf[y * w + x];
        }
        col.process(&mut column);
        for y in 0..h {
            buf[y * w + x] = column[y];
        }
    }
}

/// Mean of the strongest 1 % of Sobel gradient magnitudes over the 1–99 % intensity range.
pub fn edge_sharpness(img: &GrayImage) -> f64 {
    let (w, h) = (img.width, img.height);
    let at = |x: usize, y: usize| img.data[y * w + x] as f64;
    let mut g = Vec::with_capacity(w * h);
    for y in 1..h.saturating_sub(1) {
        for x in 1..w.saturating_sub(1) {
            let gx = at(x + 1, y - 1) + 2.0 * at(x + 1, y) + at(x + 1, y + 1)
                - at(x - 1, y - 1)
                - 2.0 * at(x - 1, y)
                - at(x - 1, y + 1);
            let gy = at(x - 1, y + 1) + 2.0 * at(x, y + 1) + at(x + 1, y + 1)
                - at(x - 1, y - 1)
                - 2.0 * at(x, y - 1)
                - at(x + 1, y - 1);
            g.push((gx * gx + gy * gy).sqrt() / 8.0);
        }
    }
    if g.is_empty() {
        return 0.0;
    }
    g.sort_by(f64::total_cmp);
    let top = &g[g.len() - (g.len() / 100).max(1)..];
    let mut v: Vec<f64> = img.data.iter().map(|x| *x as f64).collect();
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    let range = (q(0.99) - q(0.01)).max(1e-6);
    top.iter().sum::<f64>() / top.len() as f64 / range
}

/// Contrast-to-noise ratio of a nodule at `centre` (pixels, pixel i spanning [i, i+1)) with
/// projected radius `radius`; `None` when the ring leaves the image or is flat.
pub fn nodule_cnr(img: &GrayImage, centre: [f64; 2], radius: f64) -> Option<f64> {
    let (mut inside, mut ring) = (Vec::new(), Vec::new());
    let reach = (2.5 * radius).ceil() as i64 + 1;
    let (cx, cy) = (centre[0], centre[1]);
    for dy in -reach..=reach {
        for dx in -reach..=reach {
            let (x, y) = (cx.floor() as i64 + dx, cy.floor() as i64 + dy);
            let d = ((x as f64 + 0.5 - cx).powi(2) + (y as f64 + 0.5 - cy).powi(2)).sqrt();
            let inner = d <= 0.7 * radius;
            let outer = d >= 1.5 * radius && d <= 2.5 * radius;
            if !(inner || outer) {
                continue;
            }
            if x < 0 || y < 0 || x as usize >= img.width || y as usize >= img.height {
                if outer {
                    return None;
                }
                continue;
            }
            let v = img.data[y as usize * img.width + x as usize] as f64;
            if inner { inside.push(v) } else { ring.push(v) }
        }
    }
    if inside.is_empty() || ring.len() < 8 {
        return None;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (mi, mr) = (mean(&inside), mean(&ring));
    let sd = (ring.iter().map(|v| (v - mr).powi(2)).sum::<f64>() / ring.len() as f64).sqrt();
    (sd > 1e-9).then(|| (mi - mr) / sd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn img(w: usize, h: usize, mut f: impl FnMut(usize, usize) -> f32) -> GrayImage {
        GrayImage {
            width: w,
            height: h,
            data: (0..w * h).map(|p| f(p % w, p / w)).collect(),
        }
    }

    /// A random field with power ∝ f^β (β = −2 … −3), built by summing random-phase waves.
    fn power_law(n: usize, beta: f64, seed: u64) -> GrayImage {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut buf: Vec<Complex<f64>> = vec![Complex::new(0.0, 0.0); n * n];
        for y in 0..n {
            for x in 0..n {
                let f = freq(x, n).hypot(freq(y, n)).max(1.0 / n as f64);
                let amp = f.powf(beta / 2.0);
                let ph: f64 = rng.random_range(0.0..std::f64::consts::TAU);
                buf[y * n + x] = Complex::from_polar(amp, ph);
            }
        }
        fft2(&mut buf, n, n, true);
        let re: Vec<f64> = buf.iter().map(|c| c.re).collect();
        let (lo, hi) = re
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
        img(n, n, |x, y| ((re[y * n + x] - lo) / (hi - lo)) as f32)
    }

    #[test]
    fn spectrum_slopes_of_known_fields() {
        for beta in [-2.0, -3.0] {
            let s = spectrum_slope(&power_law(256, beta, 3)).unwrap();
            assert!((s - beta).abs() < 0.25, "β = {beta}: fitted {s}");
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let noise = img(128, 128, |_, _| rng.random::<f32>());
        assert!(spectrum_slope(&noise).unwrap().abs() < 0.3);
    }

    #[test]
    fn histogram_distance_is_the_shift() {
        let a = img(64, 64, |x, _| x as f32 / 128.0);
        let b = img(64, 64, |x, _| x as f32 / 128.0 + 0.25);
        assert!(histogram_distance(&a, &a) < 1e-12);
        assert!(
            (histogram_distance(&a, &b) - 0.25).abs() < 0.01,
            "{}",
            histogram_distance(&a, &b)
        );
    }

    #[test]
    fn blur_lowers_edge_sharpness_and_a_disk_has_its_cnr() {
        let sharp = img(64, 64, |x, _| if x < 32 { 0.2 } else { 0.8 });
        let soft = img(64, 64, |x, _| {
            (0.2 + 0.6 * ((x as f32 - 32.0) / 6.0 + 0.5)).clamp(0.2, 0.8)
        });
        assert!(edge_sharpness(&sharp) > 2.0 * edge_sharpness(&soft));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let disk = img(80, 80, |x, y| {
            let d = ((x as f64 + 0.5 - 40.0).powi(2) + (y as f64 + 0.5 - 40.0).powi(2)).sqrt();
            let noise: f64 = rng.sample::<f64, _>(rand_distr::StandardNormal) * 0.02;
            (0.5 + if d < 8.0 { 0.1 } else { 0.0 } + noise) as f32
        });
        let cnr = nodule_cnr(&disk, [40.0, 40.0], 8.0).unwrap();
        assert!((cnr - 5.0).abs() < 1.0, "contrast 0.1 over σ 0.02: {cnr}");
        assert!(
            nodule_cnr(&disk, [2.0, 2.0], 8.0).is_none(),
            "ring outside the image"
        );
    }
}
