//! Check 5, nothing invented: no bright blob in the lungs of a nodule-free twin that was not
//! there before, and a black background.

use super::{
    BLOB_SHARE, Check, LOOK_DOWN_TO, MAX_BACKGROUND, THERE_BEFORE, Twin, View, blob_radii,
    body_spread, mean, median,
};
use crate::eval::realism;
use crate::{Error, Result};

/// Check 5 over the `twins`, calibrated on the `views`' nodules.
pub(super) fn check(views: &[View], twins: &[Twin]) -> Result<Check> {
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
    let threshold = BLOB_SHARE * median(&responses);
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
        for x in realism::find_blobs(&t.after, &mask, rr, LOOK_DOWN_TO * threshold_after) {
            if before.peak_near(&x) < THERE_BEFORE * threshold_after {
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
    Ok(Check {
        required: true,
        numbers: vec![
            ("new blobs".into(), new_blobs as f64),
            ("elongated".into(), elongated as f64),
            ("threshold".into(), threshold_after),
            ("gain".into(), gain),
            (
                "strongest not there before".into(),
                strongest_new.as_ref().map_or(0.0, |s| s.0),
            ),
            ("background".into(), bg_mean),
        ],
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
        target: format!("0 new blobs, background ≤ {:.0} %", MAX_BACKGROUND * 100.0),
        pass: !responses.is_empty()
            && !responses_after.is_empty()
            && new_blobs == 0
            && bg_mean <= MAX_BACKGROUND,
    })
}
