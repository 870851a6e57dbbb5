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

use super::anatomy::{Bands, Layout, Location, Region};
use super::realism::{self, STRIDE_PERIODS};
use crate::io::GrayImage;
use crate::{Error, Result};

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

/// Runs checks 1–5 over the views (and twins, for 5).
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
    let mut out = Vec::new();

    // 1. spectrum slope
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
    out.push(Check {
        required: true,
        name: "1 detail: spectrum slope",
        before: format!("{s_in:.3}"),
        after: format!("{s_out:.3} ({:.0} % of the way)", moved * 100.0),
        target: format!("toward {s_ref:.3}: 33–133 % of the way"),
        pass: gap.abs() > 1e-9 && (1.0 / 3.0..=4.0 / 3.0).contains(&moved),
    });

    // 2. stride texture
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
    out.push(Check {
        required: true,
        name: "2 no texture: stride peaks",
        before: fmt3(tex_in),
        after: fmt3(tex_out),
        target: "each ≤ 2× before".into(),
        pass: (0..3).all(|k| tex_out[k] <= 2.0 * tex_in[k]),
    });

    // 3. window-free histogram distance to the radiograph
    let w1 = |g: &GrayImage| realism::wasserstein(&realism::window_free_cdf(&[g]), &reference.cdf);
    let d_in = mean(&views.iter().map(|v| w1(&v.before)).collect::<Vec<_>>());
    let d_out = mean(&views.iter().map(|v| w1(&v.after)).collect::<Vec<_>>());
    out.push(Check {
        required: false,
        name: "3 intensities: distance to the radiograph (a report)",
        before: format!("{d_in:.4}"),
        after: format!("{d_out:.4}"),
        target: format!(
            "none (a tone choice; half the input's would be {:.4})",
            d_in / 2.0
        ),
        pass: d_out <= d_in / 2.0,
    });

    // 4. nodules, per location: a nodule over the heart or the diaphragm is the hard case a
    //    detector must learn, and a restoration that flattens the anatomy there can keep its
    //    CNR while erasing its background; every location is judged on its own
    let layouts: Vec<Option<Layout>> = views
        .iter()
        .map(|v| layout_of(&v.before, &v.lungs))
        .collect();
    let mut per: Vec<NoduleTally> = Location::ALL
        .iter()
        .map(|_| NoduleTally::default())
        .collect();
    for (v, layout) in views.iter().zip(&layouts) {
        for &(c, r) in &v.nodules {
            let (Some(b), Some(a)) = (
                realism::nodule_cnr(&v.before, c, r),
                realism::nodule_cnr(&v.after, c, r),
            ) else {
                continue;
            };
            let at = layout
                .as_ref()
                .map_or(Location::LungField, |l| l.locate(c, r));
            let t = &mut per[Location::ALL.iter().position(|x| *x == at).unwrap_or(0)];
            t.cnr_before.push(b);
            if b >= 1.0 && a <= 0.0 {
                t.inverted += 1;
            }
            if b > 0.0 {
                t.ratios.push(a / b);
            }
        }
    }
    let all = NoduleTally::merged(&per);
    let located: Vec<String> = Location::ALL
        .iter()
        .zip(&per)
        .map(|(loc, t)| match (t.cnr_before.len(), t.ratios.len()) {
            (0, _) => format!("{}: none", loc.name()),
            (n, 0) => format!("{}: {n}, none with a positive CNR before", loc.name()),
            (n, _) => format!(
                "{}: {n}, median {:.2}, mean {:.2}{}",
                loc.name(),
                median(&t.ratios),
                mean(&t.ratios),
                if t.inverted > 0 {
                    format!(", {} inverted", t.inverted)
                } else {
                    String::new()
                }
            ),
        })
        .collect();
    out.push(Check {
        required: true,
        name: "4 nodules kept: CNR after / before, per location",
        before: format!(
            "{} nodules, median CNR {:.2}",
            all.cnr_before.len(),
            median(&all.cnr_before)
        ),
        after: format!(
            "all: median {:.2}, mean {:.2}, {} inverted; {}",
            median(&all.ratios),
            mean(&all.ratios),
            all.inverted,
            located.join("; ")
        ),
        target: "at every location with nodules: median and mean ≥ 0.90, none inverted".into(),
        pass: !all.ratios.is_empty() && per.iter().all(NoduleTally::passes),
    });

    // 5. nothing invented (needs the twins)
    if twins.is_empty() {
        out.push(Check {
            required: true,
            name: "5 nothing invented",
            before: "–".into(),
            after: "–".into(),
            target: "needs the nodule-free twins (--clean-before, --clean-after)".into(),
            pass: false,
        });
        out.push(anatomy_kept(views, &layouts, twins));
        return Ok(out);
    }
    // The detector is calibrated on each side's own labelled nodules (a restoration that raises
    // contrast raises every response, nodules' and vessels' alike): a blob counts when its
    // response reaches half the median nodule response of its side. A blob after is new when
    // the input, seen through the restoration's tone curve ([`realism::tone_aligned`]: the
    // input with the output's histogram), has a response map that stays under half the
    // output's threshold at its place (half a radius) and scale (± one): nothing blob-like of
    // even half a nodule's strength was there. Through the tone curve, because a curve that
    // stretches the brighter lung more than the dark lung where the nodules lie lifts a faint
    // vessel there past the nodules' threshold without adding anything. The map, not the
    // input's list of maxima: a vessel crossing whose peak moves by a pixel, or a chest-wall
    // response whose maximum slides across the lung mask's edge once the contrast changes, was
    // there before all the same. Blobs down to half the threshold are looked at too, so that a
    // pass says how close the strongest blob that was not there before came (its margin).
    // The output's threshold comes from the input's nodules, not from the restored ones: a
    // model that raises nodules would otherwise raise its own bar for invented blobs too. It is
    // carried into the output's grey levels by the restoration's overall gain (the spread of the
    // body's grey levels, 10th to 90th percentile, after over before; median over the views):
    // a global contrast stretch invents nothing, and an erased nodule cannot lower the bar.
    let responses: Vec<f64> = views
        .iter()
        .flat_map(|v| {
            v.nodules
                .iter()
                .map(|&(c, r)| realism::blob_response_at(&v.before, c, r))
        })
        .filter(|r| *r > 0.0)
        .collect();
    let gain = median(
        &views
            .iter()
            .filter_map(|v| Some(body_spread(&v.after)? / body_spread(&v.before)?))
            .collect::<Vec<_>>(),
    );
    // views with no body to measure: the grey scale taken as kept
    let gain = if gain.is_finite() && gain > 0.0 {
        gain
    } else {
        1.0
    };
    let responses_after: Vec<f64> = responses.iter().map(|r| r * gain).collect();
    let radii: Vec<f64> = views
        .iter()
        .flat_map(|v| v.nodules.iter().map(|n| n.1))
        .collect();
    let threshold = 0.5 * median(&responses);
    let threshold_after = threshold * gain;
    let (mut new_blobs, mut blobs_before, mut bg) = (0, 0, Vec::new());
    // of the new blobs, those that curve down one way only (a sharpened rib border, a vessel,
    // the corner where two edges cross) rather than round like a nodule: reported, and counted
    // all the same, so that the verdict does not hang on a shape test
    let mut elongated = 0;
    // the strongest blob that was not there before (new when it reaches the threshold) and
    // where it is, so a reader can look at it
    let mut strongest_new: Option<(f64, &str, realism::Blob)> = None;
    let mut drawn = 0;
    for t in twins {
        let mask = match &t.lungs {
            Some(m) if m.len() == t.before.width * t.before.height => {
                drawn += 1;
                m.clone()
            }
            Some(m) => {
                return Err(Error::Image(format!(
                    "the lung fields of {} have {} pixels, but the image is {}×{}",
                    t.name,
                    m.len(),
                    t.before.width,
                    t.before.height
                )));
            }
            None => realism::lung_mask(&t.before),
        };
        let rr = blob_radii(t.pixel_mm, &radii);
        blobs_before += realism::find_blobs(&t.before, &mask, rr, threshold).len();
        let before = realism::BlobScales::new(&realism::tone_aligned(&t.before, &t.after)?, rr);
        for x in realism::find_blobs(&t.after, &mask, rr, 0.5 * threshold_after) {
            if before.peak_near(&x) < 0.5 * threshold_after {
                new_blobs += usize::from(x.response >= threshold_after);
                elongated += usize::from(
                    x.response >= threshold_after && x.roundness < realism::ROUND_ENOUGH,
                );
                let ratio = x.response / threshold_after;
                if strongest_new.as_ref().is_none_or(|s| ratio > s.0) {
                    strongest_new = Some((ratio, t.name.as_str(), x));
                }
            }
        }
        if let Some(l) = realism::background_level(&t.before, &t.after) {
            bg.push(l);
        }
    }
    let bg_mean = if bg.is_empty() { 0.0 } else { mean(&bg) };
    out.push(Check {
        required: true,
        name: "5 nothing invented: new blobs in the lungs, background",
        before: format!(
            "{} twins (lungs: {}), {blobs_before} blobs ≥ {threshold:.4} (half the nodules' \
             median response)",
            twins.len(),
            match drawn {
                0 => "by threshold".to_string(),
                d if d == twins.len() => "the set's lung fields".to_string(),
                d => format!("the set's lung fields for {d}, by threshold for the rest"),
            }
        ),
        after: format!(
            "{new_blobs} new blobs ≥ {threshold_after:.4} (the input's threshold × the \
             restoration's gain {gain:.2}{}), \
             {elongated} of them elongated (roundness under {}: a ridge or an edge more than a \
             nodule), background at {:.1} %",
            match &strongest_new {
                Some((ratio, name, b)) => format!(
                    "; {} at {ratio:.2}× that, in {name} at x {:.0}, y {:.0}, radius {:.1} px",
                    if new_blobs > 0 {
                        "the strongest"
                    } else {
                        "none reaches it: the strongest blob not there before is"
                    },
                    b.centre[0],
                    b.centre[1],
                    b.radius
                ),
                None => String::new(),
            },
            realism::ROUND_ENOUGH,
            bg_mean * 100.0
        ),
        target: "0 new blobs, background ≤ 5 %".into(),
        pass: !responses.is_empty()
            && !responses_after.is_empty()
            && new_blobs == 0
            && bg_mean <= 0.05,
    });
    out.push(anatomy_kept(views, &layouts, twins));
    Ok(out)
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

/// Check 4's figures at one location.
#[derive(Default)]
struct NoduleTally {
    cnr_before: Vec<f64>,
    ratios: Vec<f64>,
    inverted: usize,
}

impl NoduleTally {
    fn merged(all: &[NoduleTally]) -> NoduleTally {
        NoduleTally {
            cnr_before: all.iter().flat_map(|t| t.cnr_before.clone()).collect(),
            ratios: all.iter().flat_map(|t| t.ratios.clone()).collect(),
            inverted: all.iter().map(|t| t.inverted).sum(),
        }
    }

    /// Median and mean of the ratios ≥ 0.9 and none inverted; a location with no nodule passes
    /// (the figures say "none").
    fn passes(&self) -> bool {
        self.inverted == 0
            && (self.ratios.is_empty()
                || (median(&self.ratios) >= MIN_KEPT && mean(&self.ratios) >= MIN_KEPT))
    }
}

/// What a restoration must keep, of each nodule's CNR (check 4) and of each region's detail and
/// contrast (check 7).
pub const MIN_KEPT: f64 = 0.9;

/// A region counts in check 7 when it holds at least this share of an image's pixels on
/// average (about 200 pixels of a 256² view): smaller ones are a rim, not anatomy.
const MIN_REGION_SHARE: f64 = 0.003;

/// The layout of an image from its set's lung fields, or from the lungs found by threshold.
fn layout_of(img: &GrayImage, lungs: &Option<Vec<bool>>) -> Option<Layout> {
    match lungs {
        Some(m) if m.len() == img.data.len() => Layout::new(img, m),
        _ => Layout::new(img, &realism::lung_mask(img)),
    }
}

/// Check 7, anatomy kept: in each region of the body, band-pass detail and contrast after at
/// least [`MIN_KEPT`] of before (means over the views and twins, each image by its own
/// percentiles).
fn anatomy_kept(views: &[View], layouts: &[Option<Layout>], twins: &[Twin]) -> Check {
    let mut pairs: Vec<(&GrayImage, &GrayImage, &Layout)> = Vec::new();
    for (v, l) in views.iter().zip(layouts) {
        if let Some(l) = l {
            pairs.push((&v.before, &v.after, l));
        }
    }
    let twin_layouts: Vec<Option<Layout>> = twins
        .iter()
        .map(|t| layout_of(&t.before, &t.lungs))
        .collect();
    for (t, l) in twins.iter().zip(&twin_layouts) {
        if let Some(l) = l {
            pairs.push((&t.before, &t.after, l));
        }
    }
    // each image's window-free map and band-pass, once for all regions
    let bands: Vec<(Bands, Bands)> = pairs
        .iter()
        .map(|(before, after, _)| (Bands::of(before), Bands::of(after)))
        .collect();
    let mut lines = Vec::new();
    let mut pass = !pairs.is_empty();
    let mut weakest = f64::INFINITY;
    for region in Region::ALL {
        // sums of [detail, contrast] before and after, and the region's share of the pixels
        let (mut b, mut a, mut n, mut share) = ([0.0; 2], [0.0; 2], 0usize, 0.0);
        for ((_, _, layout), (before, after)) in pairs.iter().zip(&bands) {
            let mask = layout.mask(region);
            let count = mask.iter().filter(|m| **m).count();
            share += count as f64 / mask.len() as f64 / pairs.len() as f64;
            if let (Some(x), Some(y)) = (
                before.detail_and_contrast(&mask),
                after.detail_and_contrast(&mask),
            ) {
                for k in 0..2 {
                    b[k] += x[k];
                    a[k] += y[k];
                }
                n += 1;
            }
        }
        if n == 0 || share < MIN_REGION_SHARE {
            lines.push(format!("{}: too small to judge", region.name()));
            continue;
        }
        let ratio = [a[0] / b[0].max(1e-12), a[1] / b[1].max(1e-12)];
        weakest = weakest.min(ratio[0]).min(ratio[1]);
        let ok = ratio.iter().all(|r| *r >= MIN_KEPT);
        pass &= ok;
        lines.push(format!(
            "{}: detail ×{:.2}, contrast ×{:.2}{}",
            region.name(),
            ratio[0],
            ratio[1],
            if ok { "" } else { " (LOST)" }
        ));
    }
    Check {
        required: true,
        name: "7 anatomy kept: detail and contrast per region",
        before: format!(
            "{} images with their lung fields; regions from them",
            pairs.len()
        ),
        after: lines.join("; "),
        target: format!("every region ≥ ×{MIN_KEPT:.2} in both (weakest ×{weakest:.2})"),
        pass,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(w: usize, h: usize, f: impl FnMut(usize, usize) -> f32) -> GrayImage {
        GrayImage::from_fn(w, h, f)
    }

    /// A chest-like picture: a bright body on black air, two dark lungs, one bright nodule.
    fn chest(nodule: f32, blur: bool) -> GrayImage {
        img(128, 128, |x, y| {
            let (xf, yf) = (x as f32, y as f32);
            let body = ((xf - 64.0) / 54.0).powi(2) + ((yf - 64.0) / 60.0).powi(2) < 1.0;
            if !body {
                return 0.0;
            }
            let lung = |cx: f32| ((xf - cx) / 18.0).powi(2) + ((yf - 60.0) / 34.0).powi(2) < 1.0;
            let mut v: f32 = if lung(40.0) || lung(88.0) { 0.35 } else { 0.7 };
            // fine texture (detail) unless blurred
            if !blur {
                v += 0.03 * ((xf * 1.3).sin() * (yf * 1.7).cos());
            }
            if (xf - 40.0).hypot(yf - 60.0) < 5.0 {
                v += nodule;
            }
            // a little deterministic grain, so that the ring around a nodule is not flat
            v + 0.01 * (((x * 7919 + y * 104_729) % 101) as f32 / 101.0 - 0.5)
        })
    }

    #[test]
    fn more_contrast_everywhere_invents_nothing_but_a_planted_blob_is_found() {
        // a restoration that doubles contrast inside the body: every response doubles
        let stretch = |g: &GrayImage| map_body(g, |v| (2.0 * (v - 0.5) + 0.5).clamp(0.0, 1.0));
        let reference = Reference::from_images(&[&chest(0.0, false)]).unwrap();
        let before = chest(0.15, true);
        let views = vec![View {
            name: "a".into(),
            after: stretch(&before),
            before,
            nodules: vec![([40.0, 60.0], 5.0)],
            pixel_mm: None,
            lungs: None,
        }];
        let twin = |planted: bool| {
            let clean = chest(0.0, true);
            let mut after = stretch(&clean);
            if planted {
                plant_disk(&mut after, [88.0, 60.0], 5.0, 0.3);
            }
            Twin {
                name: "a".into(),
                before: clean,
                after,
                pixel_mm: None,
                lungs: None,
            }
        };
        let c = run(&views, &[twin(false)], &reference).unwrap();
        assert!(c[4].pass, "{:?}", c[4]);
        let c = run(&views, &[twin(true)], &reference).unwrap();
        assert!(!c[4].pass, "{:?}", c[4]);
        assert!(c[4].after.starts_with("1 new blob"), "{:?}", c[4]);
        // and the check says where it is: the twin's name, and its centre within half a radius
        assert_near(new_blob_at(&c[4], "a"), [88.0, 60.0], 2.5);
    }

    /// A restoration's grey-level map `f` over the body; the air (0) stays black.
    fn map_body(g: &GrayImage, f: impl Fn(f32) -> f32) -> GrayImage {
        GrayImage {
            data: g
                .data
                .iter()
                .map(|&v| if v > 0.0 { f(v) } else { 0.0 })
                .collect(),
            ..g.clone()
        }
    }

    /// Adds `c` inside the disk of radius `r` around `centre` (pixels) of a 128² image.
    fn plant_disk(g: &mut GrayImage, centre: [f32; 2], r: f32, c: f32) {
        for y in 0..128 {
            for x in 0..128 {
                if (x as f32 - centre[0]).hypot(y as f32 - centre[1]) < r {
                    g.data[y * 128 + x] += c;
                }
            }
        }
    }

    #[test]
    fn a_pass_says_how_close_the_strongest_blob_not_there_before_came() {
        // the same doubled contrast, and a disk planted in the other lung of the clean twin:
        // first strong enough to be new, then scaled (the detector is linear) to 0.7 of the
        // threshold, where the check passes and names it as its margin
        let stretch = |g: &GrayImage| map_body(g, |v| (2.0 * (v - 0.5) + 0.5).clamp(0.0, 1.0));
        let (reference, mut views) = unchanged_view();
        views[0].after = stretch(&views[0].before);
        let twin = |c: f32| {
            let clean = chest(0.0, true);
            let mut after = stretch(&clean);
            plant_disk(&mut after, [88.0, 60.0], 5.0, c);
            Twin {
                name: "t".into(),
                before: clean,
                after,
                pixel_mm: None,
                lungs: None,
            }
        };
        let ratio = |c: &Check, lead: &str| -> f64 {
            let at = c
                .after
                .split(lead)
                .nth(1)
                .unwrap_or_else(|| panic!("{c:?}"));
            at.split('×').next().unwrap().trim().parse().unwrap()
        };
        let c = run(&views, &[twin(0.3)], &reference).unwrap();
        assert!(!c[4].pass, "{:?}", c[4]);
        let strong = ratio(&c[4], "the strongest at ");
        assert!(strong > 1.0, "{:?}", c[4]);
        let c = run(&views, &[twin(0.3 * 0.7 / strong as f32)], &reference).unwrap();
        assert!(c[4].pass, "{:?}", c[4]);
        assert!(c[4].after.starts_with("0 new blobs"), "{:?}", c[4]);
        let margin = ratio(&c[4], "the strongest blob not there before is at ");
        assert!((margin - 0.7).abs() < 0.05, "{margin}: {:?}", c[4]);
        assert_near(new_blob_at(&c[4], "t"), [88.0, 60.0], 2.5);
    }

    #[test]
    fn a_new_line_counts_and_is_called_elongated_but_a_new_disk_is_not() {
        // a sharpened rib border or vessel: a bright line of a disk's contrast, planted where
        // the clean twin had nothing; its blob response passes the threshold as a disk's does,
        // but it curves down one way only
        let (reference, views) = unchanged_view();
        let twin = |line: bool, disk: bool| {
            let clean = chest(0.0, true);
            let mut after = clean.clone();
            if line {
                // across the whole lung, so that its ends (blob-like) lie outside it; a
                // little brighter every 16 px, so that it has maxima
                for y in 0..128 {
                    let along = 0.01 * (y as f32 * std::f32::consts::PI / 8.0).cos();
                    for x in 85..91 {
                        after.data[y * 128 + x] += 0.3 + along;
                    }
                }
            }
            if disk {
                plant_disk(&mut after, [40.0, 70.0], 4.0, 0.3);
            }
            Twin {
                name: "t".into(),
                before: clean,
                after,
                pixel_mm: None,
                lungs: None,
            }
        };
        let elongated = |c: &Check| -> usize {
            c.after
                .split(" of them elongated")
                .next()
                .and_then(|s| s.rsplit(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{c:?}"))
        };
        let new = |c: &Check| -> usize { c.after.split(' ').next().unwrap().parse().unwrap() };
        let c = run(&views, &[twin(true, false)], &reference).unwrap();
        assert!(!c[4].pass, "{:?}", c[4]);
        assert!(
            new(&c[4]) >= 1 && elongated(&c[4]) == new(&c[4]),
            "{:?}",
            c[4]
        );
        let c = run(&views, &[twin(true, true)], &reference).unwrap();
        assert!(!c[4].pass, "{:?}", c[4]);
        assert_eq!(new(&c[4]), elongated(&c[4]) + 1, "{:?}", c[4]);
        let c = run(&views, &[twin(false, true)], &reference).unwrap();
        assert_eq!((new(&c[4]), elongated(&c[4])), (1, 0), "{:?}", c[4]);
        assert_near(new_blob_at(&c[4], "t"), [40.0, 70.0], 2.5);
    }

    /// The radiograph and one view whose restoration changed nothing (checks 1–4 aside).
    fn unchanged_view() -> (Reference, Vec<View>) {
        let reference = Reference::from_images(&[&chest(0.0, false)]).unwrap();
        let before = chest(0.15, true);
        let views = vec![View {
            name: "a".into(),
            after: before.clone(),
            before,
            nodules: vec![([40.0, 60.0], 5.0)],
            pixel_mm: None,
            lungs: None,
        }];
        (reference, views)
    }

    /// Where check 5 says its strongest new blob is, in the twin `name`.
    fn new_blob_at(c: &Check, name: &str) -> [f64; 2] {
        let at = c.after.split(&format!(" in {name} at x ")).nth(1);
        let nums: Vec<f64> = at
            .unwrap_or_else(|| panic!("no place named: {c:?}"))
            .split(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
            .filter_map(|t| t.parse().ok())
            .collect();
        [nums[0], nums[1]]
    }

    fn assert_near(got: [f64; 2], want: [f64; 2], tol: f64) {
        assert!(
            (got[0] - want[0]).hypot(got[1] - want[1]) <= tol,
            "{got:?} is not within {tol} px of {want:?}"
        );
    }

    #[test]
    fn the_sets_lung_fields_decide_where_a_new_blob_counts() {
        // a blob planted at (88, 60), in the right half: lung fields that leave that half out
        // do not count it (whatever a threshold would take for lung there); fields that cover
        // it do
        let (reference, views) = unchanged_view();
        let clean = chest(0.0, true);
        let mut after = clean.clone();
        plant_disk(&mut after, [88.0, 60.0], 5.0, 0.3);
        let twin = |lungs: Option<Vec<bool>>| Twin {
            name: "a".into(),
            before: clean.clone(),
            after: after.clone(),
            pixel_mm: None,
            lungs,
        };
        let left_only: Vec<bool> = (0..128 * 128).map(|p| p % 128 < 64).collect();
        let c = run(&views, &[twin(Some(left_only))], &reference).unwrap();
        assert!(c[4].pass, "{:?}", c[4]);
        assert!(c[4].before.contains("the set's lung fields"), "{:?}", c[4]);
        let right_too = vec![true; 128 * 128];
        let c = run(&views, &[twin(Some(right_too))], &reference).unwrap();
        assert!(c[4].after.starts_with("1 new blob"), "{:?}", c[4]);
        let e = run(&views, &[twin(Some(vec![true; 10]))], &reference).unwrap_err();
        assert!(
            e.to_string().contains("lung fields of a have 10 pixels"),
            "{e}"
        );
    }

    #[test]
    fn a_faint_blob_made_stronger_and_moved_is_not_invented() {
        // the twin has a faint spot (a vessel seen end-on) in a lung; the restoration makes it
        // stronger and its peak moves two pixels: sharper, not new
        let spot = |g: &GrayImage, cx: f32, c: f32| {
            let mut g = g.clone();
            for y in 0..128 {
                for x in 0..128 {
                    let d = (x as f32 - cx).hypot(y as f32 - 60.0);
                    g.data[y * 128 + x] += c * (-(d * d) / 24.5).exp();
                }
            }
            g
        };
        let (reference, views) = unchanged_view();
        let clean = chest(0.0, true);
        let twin = |after: GrayImage| Twin {
            name: "a".into(),
            before: spot(&clean, 96.0, 0.08),
            after,
            pixel_mm: None,
            lungs: None,
        };
        let c = run(&views, &[twin(spot(&clean, 98.0, 0.3))], &reference).unwrap();
        assert!(c[4].after.starts_with("0 new blobs"), "{:?}", c[4]);
        // the same spot where there was nothing is an invention
        let c = run(
            &views,
            &[twin(spot(&spot(&clean, 98.0, 0.3), 80.0, 0.2))],
            &reference,
        )
        .unwrap();
        assert!(c[4].after.starts_with("1 new blob"), "{:?}", c[4]);
        // the neighbouring spot pulls the detector's centre a little: within half a radius
        assert_near(new_blob_at(&c[4], "a"), [80.0, 60.0], 2.5);
    }

    #[test]
    fn a_tone_curve_alone_invents_nothing_but_a_blob_on_top_of_it_is_found() {
        // A restoration to a radiograph's look brightens and stretches the brighter lung (behind
        // the heart, over the diaphragm) three times as much as the dark lung where the nodules
        // are. A faint vessel end there, under half the nodules' threshold in the DRR's own
        // intensities, passes the restored nodules' threshold: structure that was there, seen
        // through another tone curve, not an invention.
        let flat = |level: f32, nodule: f32, bump: f32| {
            img(128, 128, |x, y| {
                let (xf, yf) = (x as f32, y as f32);
                if !(8.0..120.0).contains(&xf) || !(8.0..120.0).contains(&yf) {
                    return 0.0;
                }
                let d = (xf - 64.0).hypot(yf - 64.0);
                let mut v = level + bump * (-d * d / 8.0).exp();
                if d < 4.0 {
                    v += nodule;
                }
                v + 0.004 * (((x * 7919 + y * 104_729) % 101) as f32 / 101.0 - 0.5)
            })
        };
        // slope 1 up to 0.4, 3 at 0.6
        let tone = |g: &GrayImage| map_body(g, |v| v + 5.0 * (v - 0.4).max(0.0).powi(2));
        let reference = Reference::from_images(&[&chest(0.0, false)]).unwrap();
        let before = flat(0.35, 0.05, 0.0);
        let views = vec![View {
            name: "a".into(),
            after: tone(&before),
            before,
            nodules: vec![([64.0, 64.0], 4.0)],
            pixel_mm: Some(1.5),
            lungs: None,
        }];
        let lungs: Vec<bool> = (0..128 * 128)
            .map(|p| (24..104).contains(&(p % 128)) && (24..104).contains(&(p / 128)))
            .collect();
        let clean = flat(0.6, 0.0, 0.016);
        let twin = |after: GrayImage| Twin {
            name: "b".into(),
            before: clean.clone(),
            after,
            pixel_mm: Some(1.5),
            lungs: Some(lungs.clone()),
        };
        let c = run(&views, &[twin(tone(&clean))], &reference).unwrap();
        assert!(c[4].after.starts_with("0 new blobs"), "{:?}", c[4]);
        assert!(c[4].pass, "{:?}", c[4]);
        // a disk where the lung was flat, after the same curve: invented
        let mut planted = tone(&clean);
        plant_disk(&mut planted, [44.0, 84.0], 4.0, 0.05);
        let c = run(&views, &[twin(planted)], &reference).unwrap();
        assert!(c[4].after.starts_with("1 new blob"), "{:?}", c[4]);
        assert_near(new_blob_at(&c[4], "b"), [44.0, 84.0], 2.0);
    }

    #[test]
    fn a_tone_curve_is_its_own_tone_curve_and_sharpening_is_more_than_one() {
        let reference = Reference::from_images(&[&chest(0.0, false)]).unwrap();
        let before = chest(0.15, true);
        let curve = |g: &GrayImage| GrayImage {
            data: g.data.iter().map(|v| v.sqrt()).collect(),
            ..g.clone()
        };
        // unsharp masking on top of the curve: structure the curve alone cannot give
        let sharpen = |g: &GrayImage| {
            let soft = realism::gaussian_blur(g, 2.0);
            GrayImage {
                data: g
                    .data
                    .iter()
                    .zip(&soft.data)
                    .map(|(v, s)| v + 1.5 * (v - s))
                    .collect(),
                ..g.clone()
            }
        };
        let view = |after: GrayImage| View {
            name: "a".into(),
            before: before.clone(),
            after,
            nodules: vec![([40.0, 60.0], 5.0)],
            pixel_mm: None,
            lungs: None,
        };
        let (alone, _) = tone_curves_alone(&[view(curve(&before))], &[]).unwrap();
        let got = &alone[0].after.data;
        let want = curve(&before).data;
        assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5));
        // the sharpened restoration gains more detail than its own tone curve does
        let sharp = vec![view(sharpen(&curve(&before)))];
        let (alone, _) = tone_curves_alone(&sharp, &[]).unwrap();
        let share = |c: &Check| -> f64 {
            let pct = c
                .after
                .split('(')
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap();
            pct.parse().unwrap()
        };
        let full = run(&sharp, &[], &reference).unwrap();
        let curve_only = run(&alone, &[], &reference).unwrap();
        assert!(
            share(&full[0]) > share(&curve_only[0]) + 10.0,
            "{:?} against {:?}",
            full[0],
            curve_only[0]
        );
    }

    #[test]
    fn the_identity_fails_detail_and_a_lost_nodule_fails_check_4() {
        let before = chest(0.15, true);
        let reference = Reference::from_images(&[&chest(0.0, false)]).unwrap();
        let views = vec![View {
            name: "a".into(),
            before: before.clone(),
            after: before.clone(),
            nodules: vec![([40.0, 60.0], 5.0)],
            pixel_mm: None,
            lungs: None,
        }];
        let twins = vec![Twin {
            name: "a".into(),
            before: chest(0.0, true),
            after: chest(0.0, true),
            pixel_mm: None,
            lungs: None,
        }];
        let c = run(&views, &twins, &reference).unwrap();
        assert!(!c[0].pass, "no change is not detail: {c:?}");
        assert!(c[1].pass && c[3].pass && c[4].pass, "{c:?}");
        // the restoration erases the nodule and invents one in the other lung
        let lost = View {
            after: chest(0.0, true),
            ..views.into_iter().next().unwrap()
        };
        let invented = Twin {
            after: img(128, 128, |x, y| {
                let v = chest(0.0, true).data[y * 128 + x];
                if (x as f32 - 88.0).hypot(y as f32 - 60.0) < 5.0 {
                    v + 0.15
                } else {
                    v
                }
            }),
            ..twins.into_iter().next().unwrap()
        };
        let c = run(&[lost], &[invented], &reference).unwrap();
        assert!(!c[3].pass, "{:?}", c[3]);
        assert!(!c[4].pass, "{:?}", c[4]);
    }

    #[test]
    fn check_7_fails_a_flattened_mediastinum_and_passes_the_identity() {
        let reference = Reference::from_images(&[&chest(0.0, false)]).unwrap();
        // a chest with a wide mediastinum, a nodule on the left lung and one over the strip
        let (plain, lungs) = crate::eval::anatomy::tests::chest();
        let mut before = plain.clone();
        plant_disk(&mut before, [30.0, 50.0], 4.0, 0.15);
        plant_disk(&mut before, [64.0, 50.0], 4.0, 0.15);
        let view = |after: GrayImage| View {
            name: "a".into(),
            before: before.clone(),
            after,
            nodules: vec![([30.0, 50.0], 4.0), ([64.0, 50.0], 4.0)],
            pixel_mm: None,
            lungs: Some(lungs.clone()),
        };
        let c = run(&[view(before.clone())], &[], &reference).unwrap();
        let seven = c.iter().find(|c| c.name.starts_with("7 ")).unwrap();
        assert!(seven.pass, "{seven:?}");
        // the nodule over the strip is located over the mediastinum, the other on lung
        let four = &c[3];
        assert!(
            four.after.contains("lung field: 1") && four.after.contains("mediastinum: 1"),
            "{four:?}"
        );
        // the body's structure between the lungs flattened to its mean level, as a tone curve
        // with a flat stretch there does
        let flat = img(128, 128, |x, y| {
            let p = y * 128 + x;
            if (48..=80).contains(&x) && before.data[p] > 0.0 && !lungs[p] {
                0.75
            } else {
                before.data[p]
            }
        });
        let c = run(&[view(flat)], &[], &reference).unwrap();
        let seven = c.iter().find(|c| c.name.starts_with("7 ")).unwrap();
        assert!(!seven.pass, "{seven:?}");
        assert!(
            seven.after.contains("spine and mediastinum: detail ×0.")
                && seven.after.contains("(LOST)"),
            "{seven:?}"
        );
        // the lung-field nodule is reported on its own, untouched
        assert!(
            c[3].after.contains("lung field: 1, median 1.00"),
            "{:?}",
            c[3]
        );
        // check 3 is a report, never a requirement
        assert!(!c[2].required && c.iter().filter(|c| c.name.starts_with('3')).count() == 1);
    }
}
