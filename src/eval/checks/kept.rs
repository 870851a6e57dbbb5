//! Check 7, anatomy kept: every region of the body keeps its detail and contrast.

use super::{Check, MIN_KEPT, MIN_REGION_SHARE, Twin, View, layout_of};
use crate::eval::anatomy::{Bands, Layout, Region};
use crate::io::GrayImage;

/// Check 7, anatomy kept: in each region of the body, band-pass detail and contrast after at
/// least [`MIN_KEPT`] of before (means over the views and twins, each image by its own
/// percentiles).
pub(super) fn check(views: &[View], layouts: &[Option<Layout>], twins: &[Twin]) -> Check {
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
    let mut numbers = Vec::new();
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
        numbers.push((format!("{} detail", region.name()), ratio[0]));
        numbers.push((format!("{} contrast", region.name()), ratio[1]));
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
    numbers.push(("weakest".into(), weakest));
    Check {
        required: true,
        numbers,
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
