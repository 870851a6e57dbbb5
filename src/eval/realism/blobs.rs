//! The blob detector: local maxima of the scale-normalised Laplacian of Gaussian (bright blobs)
//! inside the lungs, at the scales of 3–15 mm nodules, with how round each is.

use super::gaussian_blur;
use crate::io::GrayImage;

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
    pub(super) fn roundness(&self, k: usize, p: usize) -> f64 {
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
