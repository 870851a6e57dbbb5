//! How much an image looks like a real radiograph, and how visible a nodule is: measures that
//! compare restored DRRs with the real radiograph and with the DRRs they came from.
//! - histogram distance: the 1-D Wasserstein (earth mover's) distance between intensity
//!   distributions on [0, 1];
//! - spectrum slope: the slope of log radial power vs log spatial frequency (Hann-windowed), about
//!   −2 to −3 for radiographs; blur makes it steeper;
//! - edge sharpness: the mean of the strongest 1 % of Sobel gradient magnitudes, relative to the
//!   image's 1–99 % intensity range;
//! - nodule CNR: (mean inside 0.7 r − mean of the ring 1.5 r … 2.5 r) / std of the ring;
//! - window-free histogram distance: the same Wasserstein distance after each image is mapped
//!   by its own 1st–99th percentiles, so that a display window does not count;
//! - stride texture: spectral power at the lattice of the UNet's strides (1/2, 1/4, 1/8
//!   cycles/pixel) over the median power around each lattice point: a checkerboard raises it;
//! - blobs: local maxima of the scale-normalised Laplacian of Gaussian (bright blobs) inside the
//!   lungs, at the scales of 3–15 mm nodules;
//! - background: how grey the pixels outside the body become.

use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

mod blobs;
#[cfg(test)]
mod tests;

pub use blobs::{Blob, BlobScales, ROUND_ENOUGH, blob_at, blob_response_at, find_blobs};

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
    // 1. mean removed, Hann window, 2-D FFT (rows then columns), |F|²
    let power = windowed_power(img);
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
            sum[k] += power[y * w + x];
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

/// Each image mapped by its own 1st and 99th percentiles to [0, 1] (clamped outside).
pub fn percentile_normalised(img: &GrayImage) -> GrayImage {
    let mut v = img.data.clone();
    v.sort_by(f32::total_cmp);
    let q = |p: f64| v[((v.len().max(1) - 1) as f64 * p).round() as usize];
    let (lo, hi) = (q(0.01), q(0.99));
    let span = (hi - lo).max(1e-6);
    GrayImage {
        width: img.width,
        height: img.height,
        data: img
            .data
            .iter()
            .map(|x| ((x - lo) / span).clamp(0.0, 1.0))
            .collect(),
    }
}

/// [`cdf`] of images after [`percentile_normalised`].
pub fn window_free_cdf(images: &[&GrayImage]) -> Vec<f64> {
    let n: Vec<GrayImage> = images.iter().map(|g| percentile_normalised(g)).collect();
    cdf(&n.iter().collect::<Vec<_>>())
}

/// The stride periods whose lattices [`stride_texture`] measures (pixels).
pub const STRIDE_PERIODS: [usize; 3] = [2, 4, 8];

/// Periodic texture at each of [`STRIDE_PERIODS`]: for period p, the lattice points (i/p, j/p)
/// cycles/pixel (not both 0) that are not on the lattice of p/2; at each, the strongest power
/// within ±1 bin over the median power of the ring 3…max(6, n/32) bins around it; the geometric
/// mean of those ratios. A planted grid of period p raises entry p; a natural image gives ≈ 1–3.
pub fn stride_texture(img: &GrayImage) -> Result<[f64; 3]> {
    let (w, h) = (img.width, img.height);
    if w < 32 || h < 32 {
        return Err(Error::Image(format!(
            "the texture measure needs at least 32×32, got {w}×{h}"
        )));
    }
    let power = windowed_power(img);
    let at = |fx: i64, fy: i64| {
        power[fy.rem_euclid(h as i64) as usize * w + fx.rem_euclid(w as i64) as usize]
    };
    let outer = (w.min(h) / 32).max(6) as i64;
    let mut out = [0.0; 3];
    for (slot, &p) in STRIDE_PERIODS.iter().enumerate() {
        let mut logs = Vec::new();
        let half = p as i64 / 2;
        for j in 0..=half {
            for i in -half..=half {
                // one of each ± pair (the spectrum of a real image is symmetric), not the origin
                if (j == 0 && i <= 0) || (p > 2 && i % 2 == 0 && j % 2 == 0) {
                    continue;
                }
                let (cx, cy) = (
                    (i as f64 * w as f64 / p as f64).round() as i64,
                    (j as f64 * h as f64 / p as f64).round() as i64,
                );
                let mut peak = 0f64;
                let mut ring = Vec::new();
                for dy in -outer..=outer {
                    for dx in -outer..=outer {
                        let d = dx.abs().max(dy.abs());
                        let v = at(cx + dx, cy + dy);
                        if d <= 1 {
                            peak = peak.max(v);
                        } else if d >= 3 {
                            ring.push(v);
                        }
                    }
                }
                ring.sort_by(f64::total_cmp);
                let base = ring[ring.len() / 2].max(1e-30);
                logs.push((peak.max(1e-30) / base).ln());
            }
        }
        out[slot] = (logs.iter().sum::<f64>() / logs.len() as f64).exp();
    }
    Ok(out)
}

/// |FFT|² of the mean-removed, Hann-windowed image.
fn windowed_power(img: &GrayImage) -> Vec<f64> {
    let (w, h) = (img.width, img.height);
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
    buf.iter().map(|c| c.norm_sqr()).collect()
}

/// `img` in the intensities of `like` (same pixel count): each grey level of `img` takes the mean
/// of the values of `like` at the same ranks, so the result has `like`'s histogram and, since the
/// map is monotone and equal inputs stay equal, `img`'s structure. It asks what `img` holds
/// under the tone curve that turned it into `like`: a curve alone moves no structure, but it
/// stretches some intensities more than others.
pub fn tone_aligned(img: &GrayImage, like: &GrayImage) -> Result<GrayImage> {
    if img.data.len() != like.data.len() || img.data.is_empty() {
        return Err(Error::Image(format!(
            "tone alignment needs two images of one size, got {}×{} and {}×{}",
            img.width, img.height, like.width, like.height
        )));
    }
    let mut order: Vec<usize> = (0..img.data.len()).collect();
    order.sort_by(|&a, &b| img.data[a].total_cmp(&img.data[b]));
    let mut target = like.data.clone();
    target.sort_by(f32::total_cmp);
    let mut data = vec![0.0; img.data.len()];
    let mut start = 0;
    while start < order.len() {
        let level = img.data[order[start]];
        // total_cmp, not ==: a NaN level is its own group instead of an empty one
        let end =
            start + order[start..].partition_point(|&p| img.data[p].total_cmp(&level).is_eq());
        let mean = target[start..end].iter().map(|v| *v as f64).sum::<f64>() / (end - start) as f64;
        for &p in &order[start..end] {
            data[p] = mean as f32;
        }
        start = end;
    }
    Ok(GrayImage {
        width: img.width,
        height: img.height,
        data,
    })
}

/// The lungs of a frontal radiograph or DRR (dense = bright): pixels inside the body (above 8 %
/// of the 1–99 % range) darker than Otsu's threshold of the body, away from the image border
/// (5 %) and from the body's edge (a 2 %-of-width erosion). Row-major, `true` = lung.
pub fn lung_mask(img: &GrayImage) -> Vec<bool> {
    let (w, h) = (img.width, img.height);
    let mut v = img.data.clone();
    v.sort_by(f32::total_cmp);
    let q = |p: f64| v[((v.len().max(1) - 1) as f64 * p) as usize];
    let (lo, hi) = (q(0.01), q(0.99));
    let body_t = lo + 0.08 * (hi - lo);
    let body: Vec<bool> = img.data.iter().map(|x| *x > body_t).collect();
    let inside: Vec<f32> = img.data.iter().copied().filter(|x| *x > body_t).collect();
    if inside.is_empty() || hi - lo < 1e-3 {
        return vec![false; w * h];
    }
    let norm: Vec<f32> = inside.iter().map(|x| (x - lo) / (hi - lo)).collect();
    let t = lo + crate::scale::otsu(&norm) * (hi - lo);
    let r = (w / 50).max(1) as i64;
    let (mx, my) = (w / 20, h / 20);
    let body_at = |x: i64, y: i64| {
        x >= 0
            && y >= 0
            && (x as usize) < w
            && (y as usize) < h
            && body[y as usize * w + x as usize]
    };
    (0..w * h)
        .map(|p| {
            let (x, y) = (p % w, p / w);
            if x < mx || x >= w - mx || y < my || y >= h - my || !body[p] || img.data[p] >= t {
                return false;
            }
            let (xi, yi) = (x as i64, y as i64);
            body_at(xi - r, yi) && body_at(xi + r, yi) && body_at(xi, yi - r) && body_at(xi, yi + r)
        })
        .collect()
}

/// The band of [`lung_detail`], as Gaussian σ in mm: 0.7–3 px of a 256² DRR (1.56 mm/px), the
/// scale of rib borders and vessels that a DRR blurs.
pub const LUNG_DETAIL_MM: [f64; 2] = [1.1, 4.7];

/// How sharp the lungs look: the RMS of a band-pass (Gaussian σ [`LUNG_DETAIL_MM`] difference;
/// in pixels of a 256² DRR when the pitch is unknown) inside `mask`, over the whole image's
/// 1–99 % intensity range, so that a display window does not count but the share of the grey
/// scale the lungs get does. `None` when the mask is empty.
pub fn lung_detail(img: &GrayImage, mask: &[bool], pixel_mm: Option<f64>) -> Option<f64> {
    let px = pixel_mm.filter(|p| *p > 0.0).unwrap_or(400.0 / 256.0);
    let (fine, coarse) = (
        gaussian_blur(img, LUNG_DETAIL_MM[0] / px),
        gaussian_blur(img, LUNG_DETAIL_MM[1] / px),
    );
    let (mut sum, mut n) = (0.0, 0usize);
    for p in (0..img.data.len()).filter(|&p| mask.get(p) == Some(&true)) {
        sum += ((fine.data[p] - coarse.data[p]) as f64).powi(2);
        n += 1;
    }
    if n == 0 {
        return None;
    }
    let mut v: Vec<f32> = img.data.clone();
    v.sort_by(f32::total_cmp);
    let q = |f: f64| v[((v.len() - 1) as f64 * f).round() as usize] as f64;
    Some((sum / n as f64).sqrt() / (q(0.99) - q(0.01)).max(1e-6))
}

/// Background outside the body: the pixels of `input` within 2 % of the range above its
/// minimum (the air a DRR leaves black); the mean of `output` there on the 1–99 % range of
/// `input`. `None` when the input has no such background.
pub fn background_level(input: &GrayImage, output: &GrayImage) -> Option<f64> {
    let mut v = input.data.clone();
    v.sort_by(f32::total_cmp);
    let q = |p: f64| v[((v.len().max(1) - 1) as f64 * p) as usize];
    let (lo, hi) = (q(0.0), q(0.99));
    let span = (hi - q(0.01)).max(1e-6);
    let bg: Vec<usize> = (0..input.data.len())
        .filter(|&p| input.data[p] <= lo + 0.02 * (hi - lo))
        .collect();
    if bg.len() < input.data.len() / 100 || output.data.len() != input.data.len() {
        return None;
    }
    let base = q(0.01);
    Some(
        bg.iter()
            .map(|&p| ((output.data[p] - base) / span) as f64)
            .sum::<f64>()
            / bg.len() as f64,
    )
}

/// Separable Gaussian blur (σ in pixels; edges clamped); σ ≤ 0 returns the image.
pub fn gaussian_blur(img: &GrayImage, sigma: f64) -> GrayImage {
    if sigma <= 0.0 {
        return img.clone();
    }
    let (w, h) = (img.width, img.height);
    let r = (3.0 * sigma).ceil() as i64;
    let k: Vec<f32> = (-r..=r)
        .map(|d| (-(d * d) as f64 / (2.0 * sigma * sigma)).exp() as f32)
        .collect();
    let ks: f32 = k.iter().sum();
    let pass = |src: &[f32], horizontal: bool| -> Vec<f32> {
        (0..w * h)
            .map(|p| {
                let (x, y) = ((p % w) as i64, (p / w) as i64);
                let mut acc = 0.0;
                for (d, kv) in (-r..=r).zip(&k) {
                    let q = if horizontal {
                        y as usize * w + (x + d).clamp(0, w as i64 - 1) as usize
                    } else {
                        (y + d).clamp(0, h as i64 - 1) as usize * w + x as usize
                    };
                    acc += kv * src[q];
                }
                acc / ks
            })
            .collect()
    };
    GrayImage {
        width: w,
        height: h,
        data: pass(&pass(&img.data, true), false),
    }
}
