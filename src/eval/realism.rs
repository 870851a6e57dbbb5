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

/// A bright blob found by [`find_blobs`]: centre (pixels), radius (σ√2) and its response (the
/// scale-normalised negative Laplacian of Gaussian, in the image's intensity units).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Blob {
    pub centre: [f64; 2],
    pub radius: f64,
    pub response: f64,
    /// How round it is: the ratio of the smaller to the larger curvature (Hessian eigenvalue) of
    /// the smoothed image at its centre and scale, 1 for a disk, near 0 for a ridge or an edge
    /// (a vessel, a rib's border), 0 where it does not curve down both ways.
    pub roundness: f64,
}

/// The blob detector's scale space: −σ²∇²(G_σ * image) at 8 scales spaced evenly in log over
/// the radii (pixels; σ = r/√2), scale-normalised so that a disk's response does not depend on
/// its size. Kept whole so that a restoration's blobs can be looked up in its input's responses.
pub struct BlobScales {
    width: usize,
    height: usize,
    sigmas: Vec<f64>,
    responses: Vec<Vec<f64>>,
    /// The image smoothed at each scale, for the blobs' roundness.
    smoothed: Vec<Vec<f32>>,
}

impl BlobScales {
    pub fn new(img: &GrayImage, radii: [f64; 2]) -> Self {
        let (w, h) = (img.width, img.height);
        let scales = 8;
        let [r0, r1] = [radii[0].max(1.0), radii[1].max(radii[0].max(1.0) * 1.01)];
        let sigmas: Vec<f64> = (0..scales)
            .map(|k| r0 * (r1 / r0).powf(k as f64 / (scales - 1) as f64) / std::f64::consts::SQRT_2)
            .collect();
        let smoothed: Vec<Vec<f32>> = sigmas.iter().map(|&s| gaussian_blur(img, s).data).collect();
        let responses = sigmas
            .iter()
            .zip(&smoothed)
            .map(|(&s, g)| {
                let g: Vec<f64> = g.iter().map(|v| *v as f64).collect();
                (0..w * h)
                    .map(|p| {
                        let (x, y) = (p % w, p / w);
                        if x == 0 || y == 0 || x == w - 1 || y == h - 1 {
                            return 0.0;
                        }
                        let lap = g[p - 1] + g[p + 1] + g[p - w] + g[p + w] - 4.0 * g[p];
                        -s * s * lap
                    })
                    .collect()
            })
            .collect();
        Self {
            width: w,
            height: h,
            sigmas,
            responses,
            smoothed,
        }
    }

    /// Roundness at pixel `p` of scale `k` (see [`Blob::roundness`]): the Hessian of the
    /// smoothed image by central differences, its eigenvalues λ₁ ≤ λ₂; a bright blob curves
    /// down both ways (λ₂ < 0), and λ₂/λ₁ is 1 when it does so equally.
    fn roundness(&self, k: usize, p: usize) -> f64 {
        let (w, h) = (self.width, self.height);
        let (x, y) = (p % w, p / w);
        if x == 0 || y == 0 || x + 1 >= w || y + 1 >= h {
            return 0.0;
        }
        let g = |q: usize| self.smoothed[k][q] as f64;
        let hxx = g(p - 1) + g(p + 1) - 2.0 * g(p);
        let hyy = g(p - w) + g(p + w) - 2.0 * g(p);
        let hxy = (g(p + w + 1) + g(p - w - 1) - g(p + w - 1) - g(p - w + 1)) / 4.0;
        let (mid, half) = ((hxx + hyy) / 2.0, ((hxx - hyy) / 2.0).hypot(hxy));
        let (l1, l2) = (mid - half, mid + half);
        if l2 >= 0.0 || l1 >= 0.0 { 0.0 } else { l2 / l1 }
    }

    /// Local maxima over position and scale inside `mask` whose response is at least
    /// `threshold`; maxima within one radius of a stronger one are dropped.
    pub fn find(&self, mask: &[bool], threshold: f64) -> Vec<Blob> {
        let (w, h, scales) = (self.width, self.height, self.sigmas.len());
        let responses = &self.responses;
        let mut found = Vec::new();
        for (k, resp) in responses.iter().enumerate() {
            for p in 0..w * h {
                let v = resp[p];
                if v < threshold || !mask[p] {
                    continue;
                }
                let (x, y) = ((p % w) as i64, (p / w) as i64);
                let is_max = (k.saturating_sub(1)..(k + 2).min(scales)).all(|kk| {
                    (-1..=1).all(|dy| {
                        (-1..=1).all(|dx| {
                            let (xx, yy) = (x + dx, y + dy);
                            if xx < 0 || yy < 0 || xx >= w as i64 || yy >= h as i64 {
                                return true;
                            }
                            let q = yy as usize * w + xx as usize;
                            (kk == k && q == p)
                                || responses[kk][q] < v
                                || (responses[kk][q] == v && q > p)
                        })
                    })
                });
                if is_max {
                    found.push(Blob {
                        centre: [x as f64 + 0.5, y as f64 + 0.5],
                        radius: self.sigmas[k] * std::f64::consts::SQRT_2,
                        response: v,
                        roundness: self.roundness(k, p),
                    });
                }
            }
        }
        found.sort_by(|a, b| b.response.total_cmp(&a.response));
        let mut kept: Vec<Blob> = Vec::new();
        for b in found {
            let near = kept.iter().any(|k| {
                (k.centre[0] - b.centre[0]).hypot(k.centre[1] - b.centre[1])
                    < k.radius.max(b.radius)
            });
            if !near {
                kept.push(b);
            }
        }
        kept
    }

    /// The strongest response within half a radius of the blob's centre, at its scale and the
    /// scales next to it: what this image had where another image (its restoration) has `blob`.
    /// A response map, not a list of maxima, so that a structure whose peak moved by a pixel or
    /// slid across the lung mask's edge still counts as there.
    pub fn peak_near(&self, blob: &Blob) -> f64 {
        let (w, h) = (self.width as i64, self.height as i64);
        let k = self
            .sigmas
            .iter()
            .enumerate()
            .min_by(|a, b| {
                let d = |s: f64| (s * std::f64::consts::SQRT_2 / blob.radius).ln().abs();
                d(*a.1).total_cmp(&d(*b.1))
            })
            .map_or(0, |(k, _)| k);
        let reach = (blob.radius / 2.0).round().max(1.0) as i64;
        let (cx, cy) = (blob.centre[0].floor() as i64, blob.centre[1].floor() as i64);
        let mut best = f64::MIN;
        for resp in &self.responses[k.saturating_sub(1)..(k + 2).min(self.sigmas.len())] {
            for y in (cy - reach).max(0)..=(cy + reach).min(h - 1) {
                for x in (cx - reach).max(0)..=(cx + reach).min(w - 1) {
                    best = best.max(resp[(y * w + x) as usize]);
                }
            }
        }
        best
    }
}

/// Bright blobs of radius `radii` inside `mask` whose response reaches `threshold` (see
/// [`BlobScales`]).
pub fn find_blobs(img: &GrayImage, mask: &[bool], radii: [f64; 2], threshold: f64) -> Vec<Blob> {
    BlobScales::new(img, radii).find(mask, threshold)
}

/// The least [`Blob::roundness`] of a blob more than a ridge or an edge: the curvature ratio of
/// 10 that SIFT's edge test uses (Lowe, 2004).
pub const ROUND_ENOUGH: f64 = 0.1;

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

/// The blob the detector sees at a known nodule: the strongest −σ²∇²G maximum within half a
/// radius of `centre` over the detector's scales around `radius` (`None`: nothing bright there).
pub fn blob_at(img: &GrayImage, centre: [f64; 2], radius: f64) -> Option<Blob> {
    let all = vec![true; img.width * img.height];
    find_blobs(img, &all, [radius * 0.7, radius * 1.4], f64::MIN)
        .into_iter()
        .filter(|b| {
            (b.centre[0] - centre[0]).hypot(b.centre[1] - centre[1]) <= 0.5 * radius.max(2.0)
        })
        .max_by(|a, b| a.response.total_cmp(&b.response))
}

/// The response of the blob detector at a known nodule (0 when it sees nothing bright there).
pub fn blob_response_at(img: &GrayImage, centre: [f64; 2], radius: f64) -> f64 {
    blob_at(img, centre, radius).map_or(0.0, |b| b.response.max(0.0))
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn img(w: usize, h: usize, f: impl FnMut(usize, usize) -> f32) -> GrayImage {
        GrayImage::from_fn(w, h, f)
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
    fn tone_alignment_takes_the_histogram_and_keeps_the_order() {
        // a ramp with a flat band (ties), aligned to a curved, shuffled image of its own size
        let a = img(32, 16, |x, y| {
            if x < 8 {
                0.1
            } else {
                0.2 + (y * 32 + x) as f32 / 1024.0
            }
        });
        let like = img(32, 16, |x, y| {
            (((x * 7 + y * 13) % 37) as f32 / 36.0).powi(2)
        });
        let t = tone_aligned(&a, &like).unwrap();
        let mut got = t.data.clone();
        let mut want = like.data.clone();
        got.sort_by(f32::total_cmp);
        want.sort_by(f32::total_cmp);
        // the histogram: the band (0.1, below the ramp) takes the mean of the lowest
        // 8×16 target values, every other pixel the target value of its rank
        let band = 8 * 16;
        let low = want[..band].iter().sum::<f32>() / band as f32;
        assert!(got[..band].iter().all(|v| (v - low).abs() < 1e-5));
        assert_eq!(got[band..], want[band..]);
        // monotone, and ties stay tied
        for p in 0..a.data.len() {
            for q in 0..a.data.len() {
                if a.data[p] < a.data[q] {
                    assert!(t.data[p] <= t.data[q]);
                } else if a.data[p] == a.data[q] {
                    assert_eq!(t.data[p], t.data[q]);
                }
            }
        }
        // a NaN (no reader makes one, but nothing here may hang on it) is one more level
        let mut odd = a.clone();
        odd.data[5] = f32::NAN;
        assert_eq!(tone_aligned(&odd, &like).unwrap().data.len(), a.data.len());
        // an image aligned to itself is itself
        let s = tone_aligned(&like, &like).unwrap();
        assert!(
            s.data
                .iter()
                .zip(&like.data)
                .all(|(x, y)| (x - y).abs() < 1e-6)
        );
        assert!(got.first() >= want.first() && got.last() <= want.last());
        let e = tone_aligned(&a, &img(8, 8, |_, _| 0.0)).unwrap_err();
        assert!(e.to_string().contains("32×16 and 8×8"), "{e}");
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

    #[test]
    fn window_free_distance_ignores_a_display_window() {
        let a = img(64, 64, |x, y| ((x * 64 + y) as f32 / 4096.0).powf(1.5));
        let windowed = img(64, 64, |x, y| {
            0.2 + 0.5 * ((x * 64 + y) as f32 / 4096.0).powf(1.5)
        });
        let other = img(64, 64, |x, y| ((x * 64 + y) as f32 / 4096.0).powf(0.5));
        let d = |p: &GrayImage, q: &GrayImage| {
            wasserstein(&window_free_cdf(&[p]), &window_free_cdf(&[q]))
        };
        assert!(d(&a, &windowed) < 0.005, "{}", d(&a, &windowed));
        assert!(d(&a, &other) > 0.1, "{}", d(&a, &other));
    }

    #[test]
    fn a_planted_grid_raises_its_own_stride_only() {
        let base = power_law(256, -3.0, 5);
        let clean = stride_texture(&base).unwrap();
        for (slot, &p) in STRIDE_PERIODS.iter().enumerate() {
            // a faint period-p pattern: 2 % of the range, a point every p pixels
            let grid = img(256, 256, |x, y| {
                base.data[y * 256 + x] + if x % p == 0 && y % p == 0 { 0.02 } else { 0.0 }
            });
            let t = stride_texture(&grid).unwrap();
            assert!(
                t[slot] > 5.0 * clean[slot],
                "period {p}: {t:?} vs clean {clean:?}"
            );
            // a period-p grid has harmonics at multiples of 1/p (so also at the finer lattices'
            // points) but nothing on the points only a longer period has
            for (other, &q) in STRIDE_PERIODS.iter().enumerate() {
                if q > p {
                    assert!(
                        t[other] < 2.0 * clean[other],
                        "period {p} leaks into {q}: {t:?}"
                    );
                }
            }
        }
        assert!(clean.iter().all(|c| *c < 5.0), "natural field: {clean:?}");
    }

    #[test]
    fn the_blob_detector_finds_disks_at_their_size_and_no_others() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let disks = [
            ([40.0, 40.0], 4.0),
            ([100.0, 60.0], 9.0),
            ([60.0, 110.0], 6.0),
        ];
        let field = img(160, 160, |x, y| {
            let mut v = 0.4 + rng.sample::<f64, _>(rand_distr::StandardNormal) * 0.005;
            for (c, r) in disks {
                let d = (x as f64 + 0.5 - c[0]).hypot(y as f64 + 0.5 - c[1]);
                v += 0.08 / (1.0 + ((d - r) / 0.7).exp());
            }
            v as f32
        });
        let mask = vec![true; 160 * 160];
        let calib: Vec<f64> = disks
            .iter()
            .map(|(c, r)| blob_response_at(&field, *c, *r))
            .collect();
        let t = 0.5 * calib.iter().cloned().fold(f64::MAX, f64::min);
        let found = find_blobs(&field, &mask, [3.0, 12.0], t);
        assert_eq!(found.len(), disks.len(), "{found:?}");
        for (c, r) in disks {
            let b = found
                .iter()
                .find(|b| (b.centre[0] - c[0]).hypot(b.centre[1] - c[1]) < 2.0)
                .unwrap_or_else(|| panic!("disk at {c:?} not found: {found:?}"));
            assert!(
                (b.radius / r - 1.0).abs() < 0.35,
                "radius {r}: found {}",
                b.radius
            );
        }
        // a dark disk is not a bright blob
        let dark = img(64, 64, |x, y| {
            if (x as f64 - 32.0).hypot(y as f64 - 32.0) < 6.0 {
                0.3
            } else {
                0.4
            }
        });
        assert!(find_blobs(&dark, &vec![true; 64 * 64], [3.0, 12.0], t).is_empty());
    }

    #[test]
    fn blur_lowers_lung_detail_and_sharpening_raises_it() {
        let lungs = img(64, 64, |x, y| {
            0.4 + 0.1 * ((x as f32 * 0.9).sin() * (y as f32 * 0.7).cos())
                + 0.3 * (x > 48) as u8 as f32
        });
        let mask: Vec<bool> = (0..64 * 64).map(|p| p % 64 < 40).collect();
        let d = |g: &GrayImage| lung_detail(g, &mask, None).unwrap();
        let soft = gaussian_blur(&lungs, 1.5);
        let blur = gaussian_blur(&soft, 2.0);
        let sharp = GrayImage {
            data: soft
                .data
                .iter()
                .zip(&blur.data)
                .map(|(s, b)| s + 1.0 * (s - b))
                .collect(),
            ..soft.clone()
        };
        assert!(d(&soft) < 0.8 * d(&lungs), "{} {}", d(&soft), d(&lungs));
        assert!(d(&sharp) > 1.2 * d(&soft), "{} {}", d(&sharp), d(&soft));
        assert_eq!(lung_detail(&lungs, &vec![false; 64 * 64], None), None);
    }

    #[test]
    fn a_disk_is_round_and_a_line_is_not() {
        let disk = img(64, 64, |x, y| {
            if (x as f64 + 0.5 - 32.0).hypot(y as f64 + 0.5 - 32.0) < 5.0 {
                0.6
            } else {
                0.3
            }
        });
        let all = vec![true; 64 * 64];
        let b = find_blobs(&disk, &all, [3.0, 8.0], 0.0)[0];
        assert!(b.roundness > 0.9, "{b:?}");
        // a line 5 px wide whose brightness varies a little along it: maxima as strong as the
        // disk's, but nearly flat along it
        let line = img(64, 64, |x, y| {
            let along = 0.01 * (y as f32 * std::f32::consts::PI / 8.0).cos();
            if (30..35).contains(&x) {
                0.6 + along
            } else {
                0.3
            }
        });
        let mid: Vec<bool> = (0..64 * 64).map(|p| (16..48).contains(&(p / 64))).collect();
        let on_line = find_blobs(&line, &mid, [3.0, 8.0], 0.5 * b.response);
        assert!(!on_line.is_empty());
        assert!(on_line.iter().all(|l| l.roundness < 0.2), "{on_line:?}");
        // a dark spot does not curve down at all
        let pit = img(64, 64, |x, y| {
            if (x as f64 + 0.5 - 32.0).hypot(y as f64 + 0.5 - 32.0) < 5.0 {
                0.3
            } else {
                0.6
            }
        });
        let scales = BlobScales::new(&pit, [3.0, 8.0]);
        assert_eq!(scales.roundness(3, 32 * 64 + 32), 0.0);
    }

    #[test]
    fn the_response_map_sees_a_blob_whose_peak_lies_outside_the_mask() {
        let field = img(64, 64, |x, y| {
            let d2 = (x as f32 - 20.0).powi(2) + (y as f32 - 32.0).powi(2);
            0.3 + 0.2 * (-d2 / 24.5).exp()
        });
        let scales = BlobScales::new(&field, [3.0, 8.0]);
        let peak = scales.find(&vec![true; 64 * 64], 0.0)[0];
        assert!((peak.centre[0] - 20.5).abs() <= 1.0 && (peak.radius - 5.0).abs() < 1.5);
        // the lung mask starts two pixels to the right of the peak: no maximum in it
        let mask: Vec<bool> = (0..64 * 64).map(|p| p % 64 >= 22).collect();
        assert!(scales.find(&mask, 0.5 * peak.response).is_empty());
        // but a blob found there in another image had this one under it
        let there = Blob {
            roundness: 1.0,
            centre: [22.5, 32.5],
            ..peak
        };
        assert!(scales.peak_near(&there) >= 0.9 * peak.response);
        let elsewhere = Blob {
            roundness: 1.0,
            centre: [50.5, 32.5],
            ..peak
        };
        assert!(scales.peak_near(&elsewhere).abs() < 0.05 * peak.response);
    }

    #[test]
    fn background_level_sees_a_lifted_background() {
        let input = img(
            64,
            64,
            |x, _| if x < 16 { 0.0 } else { 0.3 + x as f32 / 128.0 },
        );
        let same = background_level(&input, &input).unwrap();
        let lifted = img(64, 64, |x, y| input.data[y * 64 + x] + 0.1);
        let l = background_level(&input, &lifted).unwrap();
        assert!(same.abs() < 0.01, "{same}");
        assert!(l > 0.1, "{l}");
        // one black pixel is no background
        let no_bg = img(64, 64, |x, y| {
            if x + y == 0 {
                0.0
            } else {
                0.5 + x as f32 / 128.0
            }
        });
        assert!(background_level(&no_bg, &no_bg).is_none());
    }
}
