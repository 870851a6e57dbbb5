//! Pixel scale: what an input image's pixels measure, and how far to resample it so that the
//! model sees anatomy at the size in pixels it was trained on.
//!
//! The scale comes, in this order, from the user, from the file (DICOM Pixel Spacing or Imager
//! Pixel Spacing; the detector geometry in a `dxr drr` label), or from the image itself: the
//! width of the lung fields at mid-height ([`estimate_chest_px`]), which a model's spec records
//! for its training images.

use serde::{Deserialize, Serialize};

use crate::io::{GrayImage, InputScale};
use crate::spec::ModelScale;

/// Resampling closer to 1 than this is skipped: it would only blur.
pub const SAME_SCALE_TOLERANCE: f64 = 0.02;

/// How an image is brought to the model's scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleDecision {
    /// Model pixels per input pixel (1 = restored at the input's own pixels).
    pub factor: f64,
    /// One line for the user: how the factor was found.
    pub how: String,
}

/// The factor that takes `image` (whose scale is `input`) to the model's `scale`:
/// the ratio of pitches when both are known, else the ratio of chest widths in pixels
/// (the input's estimated from the image), else 1.
pub fn decide(scale: Option<&ModelScale>, input: &InputScale, image: &GrayImage) -> ScaleDecision {
    let Some(model) = scale else {
        return ScaleDecision {
            factor: 1.0,
            how: "the model does not record its training scale: restored at the image's own pixels"
                .into(),
        };
    };
    let (factor, how) = match (input.pixel_mm, model.pixel_mm) {
        (Some(inp), Some(m)) => (
            inp / m,
            format!(
                "{inp:.3} mm/px ({}) → the model's {m:.3} mm/px",
                input.source.as_deref().unwrap_or("given")
            ),
        ),
        _ => match estimate_chest_px(image) {
            Some(px) => (
                model.chest_px / px,
                format!(
                    "{}lung fields ~{px:.0} px wide (estimated from the image) → the model's ~{:.0} px",
                    match input.pixel_mm {
                        Some(mm) => format!(
                            "{mm:.3} mm/px ({}), but the model records no pitch: ",
                            input.source.as_deref().unwrap_or("given")
                        ),
                        None => String::new(),
                    },
                    model.chest_px
                ),
            ),
            None => {
                return ScaleDecision {
                    factor: 1.0,
                    how: "the image's scale is unknown and no chest was found to estimate it: \
                          restored at the image's own pixels"
                        .into(),
                };
            }
        },
    };
    if (factor - 1.0).abs() < SAME_SCALE_TOLERANCE {
        return ScaleDecision {
            factor: 1.0,
            how: format!("{how}: already at the model's scale"),
        };
    }
    ScaleDecision { factor, how }
}

/// Otsu's threshold of `values` (in [0, 1]) over 256 bins.
pub(crate) fn otsu(values: &[f32]) -> f32 {
    let mut hist = [0f64; 256];
    for v in values {
        hist[((v.clamp(0.0, 1.0) * 255.0).round()) as usize] += 1.0;
    }
    let total: f64 = hist.iter().sum();
    let sum_all: f64 = hist.iter().enumerate().map(|(i, n)| i as f64 * n).sum();
    let (mut w0, mut sum0, mut best, mut best_t) = (0.0, 0.0, -1.0, 0usize);
    for (t, n) in hist.iter().enumerate() {
        w0 += n;
        sum0 += t as f64 * n;
        let w1 = total - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let (m0, m1) = (sum0 / w0, (sum_all - sum0) / w1);
        let between = w0 * w1 * (m0 - m1).powi(2);
        if between > best {
            best = between;
            best_t = t;
        }
    }
    (best_t as f32 + 0.5) / 255.0
}

/// The width, in pixels, of the lung fields at mid-height: for each row of the middle band
/// (40–60 % of the height), the span from the outer edge of the left lung to the outer edge of
/// the right one, median over the rows. `None` when no two lungs are found.
///
/// How: the image is first smoothed along each row (a box of 1 % of the width) so that ribs and
/// noise do not split the lungs. The body is what lies above a low threshold (the background
/// outside the body of a DRR is black; a collimated radiograph may have none); the lungs are the
/// dark runs inside the body, by Otsu's threshold over the body pixels of the band, that do not
/// touch the body's edge (in a DRR the body's rim is dark too) and are at least 4 % of the width.
/// In each row the outermost such runs left and right of the centre give the span; the
/// estimate holds when at least half the rows give one. Images more than 3:1 are not measured.
pub fn estimate_chest_px(img: &GrayImage) -> Option<f64> {
    let (w, h) = (img.width, img.height);
    // a chest radiograph is roughly square: a strip or a sliver holds no chest to measure
    if w < 32 || h < 32 || w > 3 * h || h > 3 * w {
        return None;
    }
    let rows: Vec<usize> = (h * 2 / 5..h * 3 / 5).collect();
    // 1. rows smoothed with a box of ~1 % of the width
    let r = (w / 200).max(1);
    let smooth: Vec<Vec<f32>> = rows
        .iter()
        .map(|&y| {
            let row = &img.data[y * w..(y + 1) * w];
            let mut prefix = vec![0f64; w + 1];
            for (i, v) in row.iter().enumerate() {
                prefix[i + 1] = prefix[i] + *v as f64;
            }
            (0..w)
                .map(|x| {
                    let (a, b) = (x.saturating_sub(r), (x + r + 1).min(w));
                    ((prefix[b] - prefix[a]) / (b - a) as f64) as f32
                })
                .collect()
        })
        .collect();
    // 2. body threshold (above the background) and lung threshold (Otsu inside the body)
    let mut all: Vec<f32> = smooth.iter().flatten().copied().collect();
    all.sort_by(f32::total_cmp);
    let q = |p: f64| all[((all.len() - 1) as f64 * p) as usize];
    let (lo, hi) = (q(0.01), q(0.99));
    if hi - lo < 0.05 {
        return None;
    }
    let body_t = lo + 0.08 * (hi - lo);
    let body_px: Vec<f32> = all.iter().copied().filter(|v| *v > body_t).collect();
    if body_px.len() < all.len() / 4 {
        return None;
    }
    let lung_t = otsu(&body_px);
    // 3. per row: the body's run, the dark runs inside it, the outermost lungs on each side
    let min_run = (w / 25).max(2);
    let centre = w as f64 / 2.0;
    let mut spans: Vec<f64> = smooth
        .iter()
        .filter_map(|row| {
            let body: Vec<usize> = (0..w).filter(|&x| row[x] > body_t).collect();
            let (b0, b1) = (*body.first()?, *body.last()?);
            let mut runs = Vec::new();
            let mut x = b0;
            while x <= b1 {
                if row[x] < lung_t {
                    let s = x;
                    while x <= b1 && row[x] < lung_t {
                        x += 1;
                    }
                    runs.push((s, x)); // [s, x)
                } else {
                    x += 1;
                }
            }
            let lungs: Vec<(usize, usize)> = runs
                .into_iter()
                .filter(|&(s, e)| e - s >= min_run && s > b0 && e <= b1)
                .collect();
            let left = lungs
                .iter()
                .filter(|(s, e)| ((s + e) as f64) / 2.0 < centre)
                .map(|r| r.0)
                .min()?;
            let right = lungs
                .iter()
                .filter(|(s, e)| ((s + e) as f64) / 2.0 >= centre)
                .map(|r| r.1)
                .max()?;
            Some((right - left) as f64)
        })
        .collect();
    if spans.len() * 2 < rows.len() {
        return None;
    }
    spans.sort_by(f64::total_cmp);
    Some(spans[spans.len() / 2])
}

/// The median lung-field width over `images` (those where one is found): a training set's
/// typical scale.
pub fn typical_chest_px(images: &[GrayImage]) -> Option<f64> {
    let mut v: Vec<f64> = images.iter().filter_map(estimate_chest_px).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// The file beside a pair set's `lq/` and `hq/` that records the scale of the images its
/// crops came from (crops are too small to measure a chest on).
pub const SCALE_FILE: &str = "scale.json";

/// Reads `dir/scale.json` when there is one.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_set_scale(dir: &std::path::Path) -> crate::Result<Option<ModelScale>> {
    let path = dir.join(SCALE_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| crate::Error::io(&path, e))?;
    let scale: ModelScale = serde_json::from_str(&text).map_err(|e| {
        crate::Error::Config(format!("{}: not a scale record ({e})", path.display()))
    })?;
    scale.validate()?;
    Ok(Some(scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A schematic chest: black background, a body of width `body`, two dark lungs whose outer
    /// edges are `lungs` apart, a bright mediastinum and ribs across the lungs.
    pub(crate) fn phantom(w: usize, h: usize, body: f64, lungs: f64) -> GrayImage {
        let c = w as f64 / 2.0;
        let data = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f64 + 0.5, (i / w) as f64 + 0.5);
                let dx = (x - c).abs();
                if dx > body / 2.0 || y < 0.05 * h as f64 {
                    return 0.0;
                }
                let rib = if (y / (0.04 * h as f64)).fract() < 0.2 {
                    0.1
                } else {
                    0.0
                };
                let v = if dx > 0.12 * lungs && dx < lungs / 2.0 {
                    0.35 + rib
                } else {
                    0.8 - 0.3 * (dx / (body / 2.0)).powi(8)
                };
                v as f32
            })
            .collect();
        GrayImage {
            width: w,
            height: h,
            data,
        }
    }

    #[test]
    fn lung_width_of_a_phantom_at_three_sizes() {
        for side in [128usize, 256, 512, 1024] {
            let s = side as f64;
            let img = phantom(side, side, 0.8 * s, 0.62 * s);
            let est = estimate_chest_px(&img).unwrap();
            assert!(
                (est / (0.62 * s) - 1.0).abs() < 0.04,
                "{side}: estimated {est}, drawn {}",
                0.62 * s
            );
        }
        // A body filling the whole width (a collimated radiograph) still has lungs.
        let img = phantom(300, 300, 320.0, 200.0);
        let est = estimate_chest_px(&img).unwrap();
        assert!((est / 200.0 - 1.0).abs() < 0.05, "{est}");
    }

    #[test]
    fn no_chest_no_estimate() {
        let flat = GrayImage {
            width: 64,
            height: 64,
            data: vec![0.5; 64 * 64],
        };
        assert_eq!(estimate_chest_px(&flat), None);
        let ramp = GrayImage {
            width: 512,
            height: 32,
            data: (0..512 * 32).map(|i| (i % 512) as f32 / 511.0).collect(),
        };
        assert_eq!(estimate_chest_px(&ramp), None);
    }

    #[test]
    fn the_factor_prefers_pitches_then_chest_widths() {
        let img = phantom(512, 512, 410.0, 320.0);
        let model = ModelScale {
            pixel_mm: Some(1.5),
            chest_px: 160.0,
        };
        let d = decide(Some(&model), &InputScale::known(0.75, "test"), &img);
        assert!((d.factor - 0.5).abs() < 1e-12, "{d:?}");
        let d = decide(Some(&model), &InputScale::default(), &img);
        assert!((d.factor - 0.5).abs() < 0.03, "{d:?}");
        assert!(d.how.contains("estimated"), "{}", d.how);
        // zero spacing (as some DICOM files hold) is unknown, not infinite
        assert_eq!(InputScale::known(0.0, "DICOM"), InputScale::default());
        let d = decide(None, &InputScale::default(), &img);
        assert_eq!(d.factor, 1.0);
        let near = ModelScale {
            pixel_mm: Some(1.5),
            chest_px: 160.0,
        };
        let d = decide(Some(&near), &InputScale::known(1.51, "test"), &img);
        assert_eq!(d.factor, 1.0, "{d:?}");
    }
}
