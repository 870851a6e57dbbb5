//! Does a restoration do its job? The checks a restored DRR set must pass against the DRRs it
//! came from and a real radiograph (the measures are in [`super::realism`]):
//! 1. detail: the spectrum slope moves at least a third of the way from the input's toward the
//!    radiograph's, and goes past the radiograph's by at most that third;
//! 2. no texture of its own: at each stride period, the periodic texture after at most twice
//!    before (means over the views);
//! 3. intensities, a report and no requirement: the window-free histogram distance to the
//!    radiograph (moving toward one radiograph's grey scale is the tone curve's choice);
//! 4. nodules kept, at every location (lung field, over the heart or mediastinum, over the
//!    diaphragm; [`anatomy::Layout::locate`]): CNR after ≥ 90 % of before, on the median and on
//!    the mean; none inverted (a visible nodule, CNR before ≥ 1, whose CNR after is ≤ 0);
//! 5. nothing invented: on the nodule-free twins, no bright blob in the lungs after that was not
//!    there before (the blob threshold: half the median detector response at the input's
//!    labelled nodules, times the restoration's overall gain in the output's grey levels;
//!    "there before": the input's response, in the output's intensities
//!    (a tone curve invents nothing), within half a radius and one scale, reaches half the
//!    output's threshold; a pass names the strongest blob not there before, its margin; how many
//!    new blobs are elongated, ridges or edges more than nodules, is reported),
//!    and the background outside the body stays black (mean ≤ 5 % of the input's range);
//! 7. anatomy kept: in each region of the body (lungs, spine and mediastinum, heart, below the
//!    diaphragm, shoulders; [`anatomy::Region`]), band-pass detail and contrast after ≥ 90 % of
//!    before. (Check 6 is check 1–5 against a second patient's radiograph, run by the recipe.)

mod invented;
mod kept;
mod nodules;
#[cfg(test)]
mod tests;

use super::anatomy::Layout;
use super::realism::{self, STRIDE_PERIODS};
use crate::io::GrayImage;
use crate::{Error, Result};

/// Check 1: the share of the way from the input's spectrum slope toward the radiograph's that a
/// restoration must move (a third), up to a third past it.
pub const SLOPE_SHARE: std::ops::RangeInclusive<f64> = (1.0 / 3.0)..=(4.0 / 3.0);
/// Check 2: the most periodic texture at each stride period, as a multiple of the input's.
pub const MAX_TEXTURE_GAIN: f64 = 2.0;
/// Check 3 (a report): the distance to the radiograph's grey scale it would take to "move
/// toward it", as a share of the input's.
pub const DISTANCE_SHARE: f64 = 0.5;
/// What a restoration must keep, of each nodule's CNR (check 4) and of each region's detail and
/// contrast (check 7).
pub const MIN_KEPT: f64 = 0.9;

/// A region counts in check 7 when it holds at least this share of an image's pixels on
/// average (about 200 pixels of a 256² view): smaller ones are a rim, not anatomy.
const MIN_REGION_SHARE: f64 = 0.003;
/// Check 4: a nodule visible before (CNR at least this) whose CNR after is ≤ 0 is inverted.
pub const VISIBLE_CNR: f64 = 1.0;
/// Check 5: the blob threshold, as a share of the median detector response at the input's
/// labelled nodules (before the restoration's gain).
pub const BLOB_SHARE: f64 = 0.5;
/// Check 5: a blob after was there before when the input's response at its place and scale
/// reaches this share of the output's threshold.
pub const THERE_BEFORE: f64 = 0.5;
/// Check 5: blobs down to this share of the threshold are looked at, so that a pass names how
/// close the strongest blob not there before came.
pub const LOOK_DOWN_TO: f64 = 0.5;
/// Check 5: the most the background outside the body may rise, as a share of the input's range.
pub const MAX_BACKGROUND: f64 = 0.05;

/// One labelled view: the DRR, its restoration (same size) and its nodules in those pixels.
pub struct View {
    pub name: String,
    pub before: GrayImage,
    pub after: GrayImage,
    /// (centre, radius) in pixels.
    pub nodules: Vec<([f64; 2], f64)>,
    /// Pixel pitch at the detector, when known (sets the blob scales, 3–15 mm).
    pub pixel_mm: Option<f64>,
    /// The view's lung fields as its DRR set drew them (row-major); by threshold when `None`.
    /// They place the body's regions (check 7) and each nodule's location (check 4).
    pub lungs: Option<Vec<bool>>,
}

/// A nodule-free twin and its restoration.
pub struct Twin {
    pub name: String,
    pub before: GrayImage,
    pub after: GrayImage,
    pub pixel_mm: Option<f64>,
    /// The view's lung fields as its DRR set drew them (row-major, `true` = lung); without
    /// them, the lungs are found by threshold ([`realism::lung_mask`]).
    pub lungs: Option<Vec<bool>>,
}

impl Twin {
    /// A twin at no known scale whose lungs are found by threshold.
    pub fn new(name: &str, before: GrayImage, after: GrayImage) -> Self {
        Self {
            name: name.into(),
            before,
            after,
            pixel_mm: None,
            lungs: None,
        }
    }
}

/// The real radiograph the restorations should come closer to.
pub struct Reference {
    /// [`realism::window_free_cdf`] of the radiograph (its held-out part).
    pub cdf: Vec<f64>,
    /// Its spectrum slope.
    pub slope: f64,
}

impl Reference {
    pub fn from_images(images: &[&GrayImage]) -> Result<Self> {
        if images.is_empty() {
            return Err(Error::Image("no reference radiograph".into()));
        }
        let slopes = images
            .iter()
            .map(|g| realism::spectrum_slope(g))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cdf: realism::window_free_cdf(images),
            slope: slopes.iter().sum::<f64>() / slopes.len() as f64,
        })
    }
}

/// One check's figures and verdict.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub before: String,
    pub after: String,
    pub target: String,
    pub pass: bool,
    /// The figures the verdict was made from, by name (for tables and tests).
    pub numbers: Vec<(String, f64)>,
    /// `false` for a report line that decides nothing (check 3: a tone curve's distance to one
    /// radiograph's grey scale is a choice, not a requirement).
    pub required: bool,
}

/// The restorations' tone curves alone: every `after` replaced by its input with that
/// restoration's histogram ([`realism::tone_aligned`], a monotone map of the input's grey levels).
/// The checks of these say how much of a result a grey-level map alone gives; the difference is
/// what the restoration adds in structure.
pub fn tone_curves_alone(views: &[View], twins: &[Twin]) -> Result<(Vec<View>, Vec<Twin>)> {
    let views = views
        .iter()
        .map(|v| {
            Ok(View {
                name: v.name.clone(),
                before: v.before.clone(),
                after: realism::tone_aligned(&v.before, &v.after)?,
                nodules: v.nodules.clone(),
                pixel_mm: v.pixel_mm,
                lungs: v.lungs.clone(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let twins = twins
        .iter()
        .map(|t| {
            Ok(Twin {
                name: t.name.clone(),
                before: t.before.clone(),
                after: realism::tone_aligned(&t.before, &t.after)?,
                pixel_mm: t.pixel_mm,
                lungs: t.lungs.clone(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((views, twins))
}

/// Blob radii in pixels: 3–15 mm when the pitch is known, else the labelled nodules' range.
fn blob_radii(pixel_mm: Option<f64>, labelled: &[f64]) -> [f64; 2] {
    match pixel_mm {
        Some(mm) if mm > 0.0 => [3.0 / mm, 15.0 / mm],
        _ => {
            let lo = labelled.iter().cloned().fold(f64::MAX, f64::min);
            let hi = labelled.iter().cloned().fold(0.0, f64::max);
            if lo <= hi { [lo, hi] } else { [2.0, 10.0] }
        }
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    s[s.len() / 2]
}

/// Runs checks 1–5 and 7 over the views (and the twins, for 5).
pub fn run(views: &[View], twins: &[Twin], reference: &Reference) -> Result<Vec<Check>> {
    if views.is_empty() {
        return Err(Error::Image("no restored views to check".into()));
    }
    for v in views {
        if [v.before.width, v.before.height] != [v.after.width, v.after.height] {
            return Err(Error::Image(format!(
                "{}: restored image is {}×{}, its input {}×{}",
                v.name, v.after.width, v.after.height, v.before.width, v.before.height
            )));
        }
    }
    let layouts: Vec<Option<Layout>> = views
        .iter()
        .map(|v| layout_of(&v.before, &v.lungs))
        .collect();
    let mut out = vec![
        detail(views, reference)?,
        texture(views)?,
        intensities(views, reference),
        nodules::check(views, &layouts)?,
    ];
    out.push(if twins.is_empty() {
        Check {
            required: true,
            numbers: Vec::new(),
            name: "5 nothing invented",
            before: "–".into(),
            after: "–".into(),
            target: "needs the nodule-free twins (--clean-before, --clean-after)".into(),
            pass: false,
        }
    } else {
        invented::check(views, twins)?
    });
    out.push(kept::check(views, &layouts, twins));
    Ok(out)
}

/// Check 1, detail: the spectrum slope moves toward the radiograph's.
fn detail(views: &[View], reference: &Reference) -> Result<Check> {
    let slopes = |f: &dyn Fn(&View) -> &GrayImage| -> Result<f64> {
        let s = views
            .iter()
            .map(|v| realism::spectrum_slope(f(v)))
            .collect::<Result<Vec<_>>>()?;
        Ok(mean(&s))
    };
    let (s_in, s_out, s_ref) = (
        slopes(&|v| &v.before)?,
        slopes(&|v| &v.after)?,
        reference.slope,
    );
    let gap = s_ref - s_in;
    let moved = (s_out - s_in) / gap;
    Ok(Check {
        required: true,
        numbers: vec![
            ("slope before".into(), s_in),
            ("slope after".into(), s_out),
            ("slope of the radiograph".into(), s_ref),
            ("share of the way".into(), moved),
        ],
        name: "1 detail: spectrum slope",
        before: format!("{s_in:.3}"),
        after: format!("{s_out:.3} ({:.0} % of the way)", moved * 100.0),
        target: format!(
            "toward {s_ref:.3}: {:.0}–{:.0} % of the way",
            SLOPE_SHARE.start() * 100.0,
            SLOPE_SHARE.end() * 100.0
        ),
        pass: gap.abs() > 1e-9 && SLOPE_SHARE.contains(&moved),
    })
}

/// Check 2, no texture of its own: the periodic texture at the UNet's strides.
fn texture(views: &[View]) -> Result<Check> {
    let mut tex_in = [0.0; 3];
    let mut tex_out = [0.0; 3];
    for v in views {
        let (a, b) = (
            realism::stride_texture(&v.before)?,
            realism::stride_texture(&v.after)?,
        );
        for k in 0..3 {
            tex_in[k] += a[k] / views.len() as f64;
            tex_out[k] += b[k] / views.len() as f64;
        }
    }
    let fmt3 = |t: [f64; 3]| {
        STRIDE_PERIODS
            .iter()
            .zip(t)
            .map(|(p, v)| format!("1/{p}: {v:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Ok(Check {
        required: true,
        numbers: STRIDE_PERIODS
            .iter()
            .enumerate()
            .flat_map(|(k, p)| {
                [
                    (format!("texture before at 1/{p}"), tex_in[k]),
                    (format!("texture after at 1/{p}"), tex_out[k]),
                ]
            })
            .collect(),
        name: "2 no texture: stride peaks",
        before: fmt3(tex_in),
        after: fmt3(tex_out),
        target: format!("each ≤ {MAX_TEXTURE_GAIN}× before"),
        pass: (0..3).all(|k| tex_out[k] <= MAX_TEXTURE_GAIN * tex_in[k]),
    })
}

/// Check 3, a report: the window-free histogram distance to the radiograph.
fn intensities(views: &[View], reference: &Reference) -> Check {
    let w1 = |g: &GrayImage| realism::wasserstein(&realism::window_free_cdf(&[g]), &reference.cdf);
    let d_in = mean(&views.iter().map(|v| w1(&v.before)).collect::<Vec<_>>());
    let d_out = mean(&views.iter().map(|v| w1(&v.after)).collect::<Vec<_>>());
    Check {
        required: false,
        numbers: vec![
            ("distance before".into(), d_in),
            ("distance after".into(), d_out),
        ],
        name: "3 intensities: distance to the radiograph (a report)",
        before: format!("{d_in:.4}"),
        after: format!("{d_out:.4}"),
        target: format!(
            "none (a tone choice; half the input's would be {:.4})",
            d_in * DISTANCE_SHARE
        ),
        pass: d_out <= d_in * DISTANCE_SHARE,
    }
}

/// The spread of the body's grey levels (10th to 90th percentile of the pixels above the air
/// level); `None` for an image with too little body.
fn body_spread(img: &GrayImage) -> Option<f64> {
    let mut v: Vec<f32> = img.data.iter().copied().filter(|v| *v > 0.04).collect();
    if v.len() < 16 {
        return None;
    }
    v.sort_by(f32::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize] as f64;
    let spread = q(0.9) - q(0.1);
    (spread > 1e-6).then_some(spread)
}

/// The layout of an image from its set's lung fields, or from the lungs found by threshold.
fn layout_of(img: &GrayImage, lungs: &Option<Vec<bool>>) -> Option<Layout> {
    match lungs {
        Some(m) if m.len() == img.data.len() => Layout::new(img, m),
        _ => Layout::new(img, &realism::lung_mask(img)),
    }
}
