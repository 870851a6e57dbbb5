//! Where on a chest image a measure is taken: the body's regions found from each view's lung
//! fields (check 7, "anatomy kept"), and where a nodule projects (check 4, per location).
//!
//! A restoration that sharpens the lungs can still erase the rest: a tone curve learned from one
//! processed radiograph pushes the mediastinum and the abdomen toward white. The regions let a
//! check ask, region by region, whether detail and contrast survive. They are found by geometry
//! from the lung fields' extent, so they need no organ labels. A DRR set's lung fields are the
//! projected lungs: they reach behind the heart and the mediastinum, so these regions are boxes
//! in the lungs' frame (the spine and mediastinum a central strip, the heart low beside it on
//! the denser side, the abdomen below the lowest lung row, the shoulders above the apices), not
//! what lies between two lung masks.

use super::realism::{gaussian_blur, percentile_normalised};
use crate::io::GrayImage;

/// Grey levels at or below this (of an image mapped by its percentiles) are air, not body.
const AIR: f32 = 0.04;

/// The regions of check 7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    Lungs,
    /// The central strip (a fifth of the lungs' width), from 25 % to 70 % of their height:
    /// spine and mediastinum.
    Mediastinum,
    /// From 55 % of the lungs' height to their bottom, from the centre line to 30 % of their
    /// width on the denser side (a PA view's heart lies to the patient's left), and a tenth of
    /// their width on the other.
    Heart,
    /// The body below the lowest lung row.
    BelowDiaphragm,
    /// The body above the apices, in the outer thirds.
    Shoulders,
}

impl Region {
    pub const ALL: [Region; 5] = [
        Region::Lungs,
        Region::Mediastinum,
        Region::Heart,
        Region::BelowDiaphragm,
        Region::Shoulders,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Region::Lungs => "lungs",
            Region::Mediastinum => "spine and mediastinum",
            Region::Heart => "heart",
            Region::BelowDiaphragm => "below the diaphragm",
            Region::Shoulders => "shoulders",
        }
    }
}

/// Where a nodule projects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// On aerated lung: the easy case.
    LungField,
    /// Over the heart, the mediastinum or the spine.
    Heart,
    /// Over the diaphragm's dome or the upper abdomen.
    Diaphragm,
}

impl Location {
    pub const ALL: [Location; 3] = [Location::LungField, Location::Heart, Location::Diaphragm];

    pub fn name(self) -> &'static str {
        match self {
            Location::LungField => "lung field",
            Location::Heart => "over the heart or mediastinum",
            Location::Diaphragm => "over the diaphragm",
        }
    }
}

/// The lung fields' layout on one image.
#[derive(Debug, Clone)]
pub struct Layout {
    width: usize,
    height: usize,
    /// First and last rows holding lung.
    top: usize,
    bottom: usize,
    /// First and last columns holding lung.
    left: usize,
    right: usize,
    /// +1 when the heart lies toward larger x (the image's right), −1 otherwise.
    heart_side: i64,
    /// The body (above the air level), row-major.
    body: Vec<bool>,
    lungs: Vec<bool>,
    /// Grey levels (percentile-mapped, smoothed) of aerated lung and of the central strip:
    /// a nodule on a spot nearer the second lies over dense anatomy.
    lung_level: f32,
    dense_level: f32,
    smooth: GrayImage,
}

fn median(mut v: Vec<f32>) -> Option<f32> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f32::total_cmp);
    Some(v[v.len() / 2])
}

impl Layout {
    /// The layout of `img` with its lung fields `lungs` (row-major); `None` when the fields
    /// hold no lung (no chest to find regions in).
    pub fn new(img: &GrayImage, lungs: &[bool]) -> Option<Self> {
        let (w, h) = (img.width, img.height);
        if lungs.len() != w * h || w < 8 || h < 8 {
            return None;
        }
        let norm = percentile_normalised(img);
        let body: Vec<bool> = norm.data.iter().map(|v| *v > AIR).collect();
        let (mut top, mut bottom, mut left, mut right) = (h, 0, w, 0);
        for (p, l) in lungs.iter().enumerate() {
            if *l {
                let (x, y) = (p % w, p / w);
                (top, bottom, left, right) = (top.min(y), bottom.max(y), left.min(x), right.max(x));
            }
        }
        if top >= bottom || left >= right {
            return None;
        }
        let scale = w as f64 / 256.0;
        let smooth = gaussian_blur(&norm, 3.0 * scale);
        let lung_level = median(
            (0..w * h)
                .filter(|&p| lungs[p] && body[p])
                .map(|p| smooth.data[p])
                .collect(),
        )?;
        let mut layout = Self {
            width: w,
            height: h,
            top,
            bottom,
            left,
            right,
            heart_side: 1,
            body,
            lungs: lungs.to_vec(),
            lung_level,
            dense_level: lung_level,
            smooth,
        };
        // the heart's side: the denser of the two boxes beside the strip, low in the chest
        let side_level = |side: i64| {
            let (cx, lw) = layout.centre_and_width();
            let rows = layout.row_at(0.6)..=layout.bottom;
            let cols = if side > 0 {
                (cx + 0.1 * lw) as usize..=(cx + 0.3 * lw) as usize
            } else {
                (cx - 0.3 * lw).max(0.0) as usize..=(cx - 0.1 * lw).max(0.0) as usize
            };
            median(
                rows.flat_map(|y| cols.clone().map(move |x| (x, y)))
                    .filter(|&(x, y)| x < w && layout.body[y * w + x])
                    .map(|(x, y)| layout.smooth.data[y * w + x])
                    .collect(),
            )
            .unwrap_or(0.0)
        };
        layout.heart_side = if side_level(-1) > side_level(1) {
            -1
        } else {
            1
        };
        let strip = layout.mask(Region::Mediastinum);
        layout.dense_level = median(
            (0..w * h)
                .filter(|&p| strip[p])
                .map(|p| layout.smooth.data[p])
                .collect(),
        )
        .unwrap_or(1.0);
        Some(layout)
    }

    /// The lungs' centre column and width.
    fn centre_and_width(&self) -> (f64, f64) {
        (
            (self.left + self.right) as f64 / 2.0,
            (self.right - self.left) as f64,
        )
    }

    /// The row at a fraction of the lungs' height.
    fn row_at(&self, f: f64) -> usize {
        self.top + ((self.bottom - self.top) as f64 * f).round() as usize
    }

    /// The pixels of `region` (row-major), kept 4 px (at 256 px wide) away from the air: the
    /// body's outline is the strongest edge, survives any restoration, and would hide a region
    /// whose own structure was flattened.
    pub fn mask(&self, region: Region) -> Vec<bool> {
        let air: Vec<bool> = self.body.iter().map(|b| !b).collect();
        let d = (4.0 * self.width as f64 / 256.0).round().max(1.0) as usize;
        away_from(&self.raw_mask(region), &air, self.width, d)
    }

    fn raw_mask(&self, region: Region) -> Vec<bool> {
        let (w, h) = (self.width, self.height);
        let (cx, lw) = self.centre_and_width();
        let side = self.heart_side as f64;
        let (bl, br) = (self.left as f64, self.right as f64);
        (0..w * h)
            .map(|p| {
                let (x, y) = (p % w, p / w);
                let xf = x as f64;
                // signed distance from the centre line toward the heart's side
                let toward_heart = (xf - cx) * side;
                self.body[p]
                    && match region {
                        Region::Lungs => {
                            self.lungs[p]
                                && (xf - cx).abs() > 0.1 * lw
                                && !(y >= self.row_at(0.55)
                                    && (-0.1 * lw..=0.3 * lw).contains(&toward_heart))
                        }
                        Region::Mediastinum => {
                            (xf - cx).abs() <= 0.1 * lw
                                && (self.row_at(0.25)..=self.row_at(0.7)).contains(&y)
                        }
                        Region::Heart => {
                            y >= self.row_at(0.55)
                                && y <= self.bottom
                                && (-0.1 * lw..=0.3 * lw).contains(&toward_heart)
                        }
                        Region::BelowDiaphragm => y > self.bottom,
                        Region::Shoulders => {
                            y < self.top && (xf < bl + lw / 3.0 || xf > br - lw / 3.0)
                        }
                    }
            })
            .collect()
    }

    /// Where a nodule centred at `centre` (pixels) projects: on aerated lung, or over dense
    /// anatomy (its surroundings, at 1.5–3 radii, a third or more of the way from the lungs'
    /// grey level to the central strip's), then over the diaphragm when low (below 75 % of the
    /// lungs' height and outside the heart's columns) and over the heart or mediastinum
    /// otherwise.
    pub fn locate(&self, centre: [f64; 2], radius: f64) -> Location {
        let (w, h) = (self.width as i64, self.height as i64);
        let reach = (3.0 * radius).ceil() as i64;
        let (mut sum, mut n) = (0.0f64, 0usize);
        for dy in -reach..=reach {
            for dx in -reach..=reach {
                let d = ((dx * dx + dy * dy) as f64).sqrt();
                let (x, y) = (centre[0] as i64 + dx, centre[1] as i64 + dy);
                if d < 1.5 * radius || d > 3.0 * radius || x < 0 || y < 0 || x >= w || y >= h {
                    continue;
                }
                sum += self.smooth.data[(y * w + x) as usize] as f64;
                n += 1;
            }
        }
        let around = if n > 0 {
            (sum / n as f64) as f32
        } else {
            self.lung_level
        };
        let dense = around >= self.lung_level + (self.dense_level - self.lung_level) / 3.0;
        if !dense {
            return Location::LungField;
        }
        let low = centre[1] >= self.top as f64 + 0.75 * (self.bottom - self.top) as f64;
        let (cx, lw) = self.centre_and_width();
        let toward_heart = (centre[0] - cx) * self.heart_side as f64;
        if low && !(-0.1 * lw..=0.3 * lw).contains(&toward_heart) {
            Location::Diaphragm
        } else {
            Location::Heart
        }
    }
}

/// `mask` without its pixels within `d` pixels (square window) of an `other` pixel.
fn away_from(mask: &[bool], other: &[bool], width: usize, d: usize) -> Vec<bool> {
    let height = mask.len() / width;
    // rows' running counts of `other`, then a window sum per pixel over 2d+1 rows
    let mut row_near = vec![0u32; mask.len()];
    for y in 0..height {
        let row = &other[y * width..(y + 1) * width];
        let mut prefix = vec![0u32; width + 1];
        for x in 0..width {
            prefix[x + 1] = prefix[x] + u32::from(row[x]);
        }
        for x in 0..width {
            let (lo, hi) = (x.saturating_sub(d), (x + d + 1).min(width));
            row_near[y * width + x] = prefix[hi] - prefix[lo];
        }
    }
    (0..mask.len())
        .map(|p| {
            let (x, y) = (p % width, p / width);
            mask[p]
                && (y.saturating_sub(d)..(y + d + 1).min(height))
                    .all(|yy| row_near[yy * width + x] == 0)
        })
        .collect()
}

/// An image as check 7 measures it: mapped by its own 1st–99th percentiles (window-free) and
/// its band-pass (Gaussian σ1 − σ4, σ in pixels of a 256-px-wide image, scaled with the width).
/// Made once per image, then read for every region.
pub struct Bands {
    norm: GrayImage,
    band: Vec<f32>,
}

impl Bands {
    pub fn of(img: &GrayImage) -> Self {
        let norm = percentile_normalised(img);
        let k = img.width as f64 / 256.0;
        let (fine, coarse) = (gaussian_blur(&norm, k), gaussian_blur(&norm, 4.0 * k));
        let band = fine
            .data
            .iter()
            .zip(&coarse.data)
            .map(|(f, c)| f - c)
            .collect();
        Self { norm, band }
    }

    /// Band-pass detail and contrast over `mask`: the standard deviations of the band-pass and
    /// of the grey levels there. `None` when the region is empty.
    pub fn detail_and_contrast(&self, mask: &[bool]) -> Option<[f64; 2]> {
        let std = |values: &[f32]| -> Option<f64> {
            let v: Vec<f64> = (0..mask.len())
                .filter(|&p| mask[p])
                .map(|p| values[p] as f64)
                .collect();
            if v.is_empty() {
                return None;
            }
            let m = v.iter().sum::<f64>() / v.len() as f64;
            Some((v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt())
        };
        Some([std(&self.band)?, std(&self.norm.data)?])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A chest: body on air, two lungs, a textured spine strip between them, a denser heart
    /// low on the image's right, textured abdomen below.
    pub(crate) fn chest() -> (GrayImage, Vec<bool>) {
        let (w, h) = (128, 128);
        let lung = |x: f32, y: f32| {
            let e = |cx: f32| ((x - cx) / 16.0).powi(2) + ((y - 55.0) / 32.0).powi(2) < 1.0;
            e(30.0) || e(98.0)
        };
        let img = GrayImage::from_fn(w, h, |x, y| {
            let (xf, yf) = (x as f32, y as f32);
            let body = ((xf - 64.0) / 60.0).powi(2) + ((yf - 64.0) / 66.0).powi(2) < 1.0;
            if !body {
                return 0.0;
            }
            let tex = 0.04 * ((xf * 0.9).sin() * (yf * 1.1).cos());
            // the heart: denser, low and to the image's right of the centre
            let heart = ((xf - 74.0) / 14.0).powi(2) + ((yf - 72.0) / 12.0).powi(2) < 1.0;
            if lung(xf, yf) {
                0.3 + tex + if heart { 0.2 } else { 0.0 }
            } else {
                0.75 + tex
            }
        });
        let lungs = (0..w * h)
            .map(|p| lung((p % w) as f32, (p / w) as f32))
            .collect();
        (img, lungs)
    }

    #[test]
    fn regions_fall_where_the_anatomy_is() {
        let (img, lungs) = chest();
        let layout = Layout::new(&img, &lungs).unwrap();
        let med = layout.mask(Region::Mediastinum);
        // the central strip at mid-height is mediastinum; a lateral lung pixel is not
        assert!(med[50 * 128 + 64]);
        assert!(!med[55 * 128 + 30]);
        // the heart is found on its side
        let heart = layout.mask(Region::Heart);
        assert!(heart[80 * 128 + 80] && !heart[80 * 128 + 48]);
        let below = layout.mask(Region::BelowDiaphragm);
        assert!(below[100 * 128 + 64] && !below[40 * 128 + 64]);
        let shoulders = layout.mask(Region::Shoulders);
        assert!(shoulders.iter().any(|s| *s));
        assert!(
            !shoulders[15 * 128 + 64],
            "the neck's middle is not a shoulder"
        );
        for r in Region::ALL {
            assert!(
                layout.mask(r).iter().filter(|m| **m).count() > 30,
                "{} found",
                r.name()
            );
        }
    }

    #[test]
    fn nodules_are_located_by_what_they_overlie() {
        let (img, lungs) = chest();
        let layout = Layout::new(&img, &lungs).unwrap();
        assert_eq!(layout.locate([30.0, 50.0], 3.0), Location::LungField);
        assert_eq!(layout.locate([64.0, 50.0], 3.0), Location::Heart);
        // low and lateral, on dense body below a lung
        assert_eq!(layout.locate([26.0, 100.0], 3.0), Location::Diaphragm);
    }

    #[test]
    fn a_flattened_region_loses_detail_and_contrast() {
        let (img, lungs) = chest();
        let layout = Layout::new(&img, &lungs).unwrap();
        let med = layout.mask(Region::Mediastinum);
        let mut flat = img.clone();
        for (p, m) in med.iter().enumerate() {
            if *m {
                flat.data[p] = 0.75;
            }
        }
        let (before, after) = (Bands::of(&img), Bands::of(&flat));
        let [d0, c0] = before.detail_and_contrast(&med).unwrap();
        let [d1, c1] = after.detail_and_contrast(&med).unwrap();
        assert!(d1 < 0.8 * d0 && c1 < 0.5 * c0, "{d0} → {d1}, {c0} → {c1}");
        let lm = layout.mask(Region::Lungs);
        let [dl0, _] = before.detail_and_contrast(&lm).unwrap();
        let [dl1, _] = after.detail_and_contrast(&lm).unwrap();
        assert!(
            (dl1 / dl0 - 1.0).abs() < 0.1,
            "the lungs untouched: {dl0} → {dl1}"
        );
    }
}
