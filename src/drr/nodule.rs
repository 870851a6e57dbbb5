//! Synthetic lung nodules: seeded placement inside the lobes, voxelised as a small block of
//! attenuation *change*, so a nodule costs only the rays through its own detector window, and
//! its labels (3-D and projected).

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::geometry::{Projection, add, norm, scale, sub};
use super::project::{MuVolume, render_window};
use super::volume::Volume;
use crate::{Error, Result};

/// Nodule shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    Sphere,
    /// A sphere with 3–5 smaller spheres bulging from its surface.
    Lobulated,
    /// Either, half and half.
    Mixed,
}

/// How nodules are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NoduleSettings {
    /// Radius range (mm); default 3–15.
    pub radius_mm: [f64; 2],
    /// Nodule density range (HU, absolute: solid nodules are soft tissue, 20–100 HU, i.e.
    /// roughly +900 HU over aerated lung); default 20–100.
    pub hu: [f64; 2],
    pub shape: Shape,
    /// Width (mm) of the soft edge: the density ramps from full to none over this width,
    /// centred on the radius. Default 2.
    pub edge_mm: f64,
    /// Minimum distance (mm) between a nodule's outer edge and the lobe boundary; default 3.
    pub margin_mm: f64,
}

impl Default for NoduleSettings {
    fn default() -> Self {
        Self {
            radius_mm: [3.0, 15.0],
            hu: [20.0, 100.0],
            shape: Shape::Mixed,
            edge_mm: 2.0,
            margin_mm: 3.0,
        }
    }
}

impl NoduleSettings {
    pub fn validate(&self) -> Result<()> {
        let [r0, r1] = self.radius_mm;
        if !(r0.is_finite() && r1.is_finite() && r0 > 0.0 && r0 <= r1 && r1 <= 100.0) {
            return Err(Error::Drr(format!(
                "nodule radius range {r0}..{r1} mm must satisfy 0 < min ≤ max ≤ 100"
            )));
        }
        let [h0, h1] = self.hu;
        if !(h0.is_finite() && h1.is_finite() && h0 <= h1 && h0 >= -1000.0 && h1 <= 3000.0) {
            return Err(Error::Drr(format!(
                "nodule HU range {h0}..{h1} must satisfy −1000 ≤ min ≤ max ≤ 3000"
            )));
        }
        if !(self.edge_mm.is_finite()
            && self.edge_mm >= 0.0
            && self.margin_mm.is_finite()
            && self.margin_mm >= 0.0)
        {
            return Err(Error::Drr("nodule edge and margin must be ≥ 0 mm".into()));
        }
        Ok(())
    }
}

/// One nodule in the patient frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nodule {
    pub shape: Shape,
    /// Centre (patient frame, mm).
    pub centre_mm: [f64; 3],
    /// Radius of the main sphere (mm), where the density is half.
    pub radius_mm: f64,
    /// Density (HU).
    pub hu: f64,
    pub edge_mm: f64,
    /// Extra spheres of a lobulated nodule: (centre, radius).
    pub lobes: Vec<([f64; 3], f64)>,
}

impl Nodule {
    /// All spheres (main first).
    fn spheres(&self) -> impl Iterator<Item = ([f64; 3], f64)> + '_ {
        std::iter::once((self.centre_mm, self.radius_mm)).chain(self.lobes.iter().copied())
    }

    /// Fraction of nodule at a point: 1 inside, 0 outside, a cosine ramp of `edge_mm` across
    /// each sphere's surface; the union takes the largest.
    pub fn profile(&self, p: [f64; 3]) -> f64 {
        self.spheres()
            .map(|(c, r)| {
                let d = norm(sub(p, c)) - r;
                if self.edge_mm <= 0.0 {
                    if d <= 0.0 { 1.0 } else { 0.0 }
                } else {
                    let t = (d / self.edge_mm + 0.5).clamp(0.0, 1.0);
                    0.5 * (1.0 + (std::f64::consts::PI * t).cos())
                }
            })
            .fold(0.0, f64::max)
    }

    /// Distance from the centre beyond which the nodule adds nothing.
    pub fn support_mm(&self) -> f64 {
        self.spheres()
            .map(|(c, r)| norm(sub(c, self.centre_mm)) + r)
            .fold(0.0, f64::max)
            + self.edge_mm / 2.0
    }

    /// The same nodule moved to `centre` (its lobes with it).
    pub fn moved_to(&self, centre: [f64; 3]) -> Nodule {
        let d = sub(centre, self.centre_mm);
        Nodule {
            centre_mm: centre,
            lobes: self.lobes.iter().map(|(c, r)| (add(*c, d), *r)).collect(),
            ..self.clone()
        }
    }

    /// The attenuation change (1/mm) the nodule makes to `ct` (HU, cleaned), as a block over
    /// the voxels its support touches. Voxel values blend toward the nodule's HU by the profile.
    pub fn block(&self, ct: &Volume, perm: [usize; 3], mu_water: f64) -> Result<MuVolume> {
        let (lo, hi) = voxel_box(ct, self.centre_mm, self.support_mm());
        MuVolume::from_fn(ct, perm, lo, hi, |i, j, k| {
            let p = self.profile(ct.world([i as f64, j as f64, k as f64]));
            if p == 0.0 {
                return 0.0;
            }
            let h = ct.data[ct.index(i, j, k)] as f64;
            let blended = h + p * (self.hu - h);
            (super::hu_to_mu(blended, mu_water) - super::hu_to_mu(h, mu_water)) as f32
        })
    }

    /// Projected label for one view.
    pub fn label(&self, id: usize, ct: &Volume, proj: &Projection) -> Option<NoduleLabel> {
        let (centre_px, m) = proj.project(self.centre_mm)?;
        let pitch = proj.geometry.pitch();
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for (c, r) in self.spheres() {
            for d in sphere_directions(256) {
                let ([x, y], _) = proj.project(add(c, scale(d, r)))?;
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            }
        }
        Some(NoduleLabel {
            id,
            shape: self.shape,
            centre_mm: self.centre_mm,
            centre_voxel: ct.voxel(self.centre_mm),
            radius_mm: self.radius_mm,
            hu: self.hu,
            centre_px,
            radius_px: self.radius_mm * m / (0.5 * (pitch[0] + pitch[1])),
            bbox_px: [x0, y0, x1, y1],
        })
    }

    /// Adds this nodule's line integrals to `image` (row-major, the view's size) by tracing
    /// only the rays through its block's detector window.
    pub fn add_to(&self, image: &mut [f32], block: &MuVolume, ct: &Volume, proj: &Projection) {
        let Some(window) = block_window(block, ct, proj) else {
            return;
        };
        let part = render_window(block, proj, window);
        let [x0, y0, x1, _] = window;
        let w = proj.geometry.pixels[0];
        for (r, row) in part.chunks(x1 - x0).enumerate() {
            let start = (y0 + r) * w + x0;
            for (dst, v) in image[start..start + row.len()].iter_mut().zip(row) {
                *dst += v;
            }
        }
    }
}

/// What a nodule's label file says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoduleLabel {
    pub id: usize,
    pub shape: Shape,
    /// Centre in the CT's world frame (RAS mm) and in voxel indices.
    pub centre_mm: [f64; 3],
    pub centre_voxel: [f64; 3],
    pub radius_mm: f64,
    pub hu: f64,
    /// Projected centre (pixel `i` spans `[i, i+1)`), radius and bounding box `[x0, y0, x1, y1]`
    /// in pixels.
    pub centre_px: [f64; 2],
    pub radius_px: f64,
    pub bbox_px: [f64; 4],
}

/// Pixels whose rays can cross the block: the bounding rectangle of its 8 projected corners,
/// clipped to the detector, as `[x0, y0, x1, y1)`.
pub fn block_window(block: &MuVolume, ct: &Volume, proj: &Projection) -> Option<[usize; 4]> {
    let ext: [usize; 3] =
        std::array::from_fn(|c| block.dims[block.perm.iter().position(|&p| p == c).unwrap()]);
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for corner in 0..8 {
        let ijk: [f64; 3] = std::array::from_fn(|c| {
            let edge = if corner >> c & 1 == 1 {
                ext[c] as f64
            } else {
                0.0
            };
            block.lo[c] as f64 + edge - 0.5
        });
        let ([x, y], _) = proj.project(ct.world(ijk))?;
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
    }
    let [w, h] = proj.geometry.pixels;
    let clip = |v: f64, n: usize| v.clamp(0.0, n as f64) as usize;
    let win = [
        clip(x0.floor() - 1.0, w),
        clip(y0.floor() - 1.0, h),
        clip(x1.ceil() + 1.0, w),
        clip(y1.ceil() + 1.0, h),
    ];
    (win[0] < win[2] && win[1] < win[3]).then_some(win)
}

/// Voxel index box `lo..hi` covering a world sphere, clipped to the grid.
fn voxel_box(ct: &Volume, centre: [f64; 3], radius: f64) -> ([usize; 3], [usize; 3]) {
    let (mut lo, mut hi) = ([f64::MAX; 3], [f64::MIN; 3]);
    for corner in 0..8 {
        let p: [f64; 3] = std::array::from_fn(|c| {
            centre[c]
                + if corner >> c & 1 == 1 {
                    radius
                } else {
                    -radius
                }
        });
        let v = ct.voxel(p);
        for c in 0..3 {
            lo[c] = lo[c].min(v[c]);
            hi[c] = hi[c].max(v[c]);
        }
    }
    let lo = std::array::from_fn(|c| (lo[c].floor().max(0.0) as usize).min(ct.dims[c] - 1));
    let hi = std::array::from_fn(|c| (hi[c].ceil() as usize + 1).clamp(1, ct.dims[c]));
    (lo, hi)
}

/// Quasi-uniform unit vectors (Fibonacci sphere).
pub fn sphere_directions(n: usize) -> impl Iterator<Item = [f64; 3]> {
    let golden = std::f64::consts::PI * (3.0 - 5f64.sqrt());
    (0..n).map(move |k| {
        let z = 1.0 - 2.0 * (k as f64 + 0.5) / n as f64;
        let r = (1.0 - z * z).sqrt();
        let phi = golden * k as f64;
        [r * phi.cos(), r * phi.sin(), z]
    })
}

/// Where nodules may go: a voxel mask (the lobes, or the aerated lung) and the list of its voxels.
pub struct LungRegion {
    pub inside: Vec<bool>,
    pub voxels: Vec<u32>,
}

impl LungRegion {
    /// From a label map: voxels labelled as lobes (10–14).
    pub fn from_labels(labels: &Volume) -> Self {
        Self::from_mask(
            labels
                .data
                .iter()
                .map(|v| super::clean::LOBE_LABELS.contains(&(v.round().max(0.0) as u32)))
                .collect(),
        )
    }

    /// Without labels: aerated voxels (below −400 HU) inside the body.
    pub fn from_hu(ct: &Volume) -> Self {
        let body = super::clean::body_mask(ct);
        Self::from_mask(
            ct.data
                .iter()
                .zip(&body)
                .map(|(h, b)| *b && *h < -400.0)
                .collect(),
        )
    }

    fn from_mask(inside: Vec<bool>) -> Self {
        let voxels = (0..inside.len() as u32)
            .filter(|&p| inside[p as usize])
            .collect();
        Self { inside, voxels }
    }

    fn contains(&self, ct: &Volume, p: [f64; 3]) -> bool {
        let v = ct.voxel(p);
        if (0..3).any(|c| v[c] < -0.5 || v[c] >= ct.dims[c] as f64 - 0.5) {
            return false;
        }
        let [i, j, k] = v.map(|x| x.round() as usize);
        self.inside[ct.index(i, j, k)]
    }

    /// Draws a nodule at a random position whose whole support, plus the margin, lies inside
    /// the region and clear of `others`.
    pub fn place(
        &self,
        rng: &mut impl Rng,
        ct: &Volume,
        settings: &NoduleSettings,
        others: &[Nodule],
    ) -> Result<Nodule> {
        const TRIES: usize = 2000;
        if self.voxels.is_empty() {
            return Err(Error::Drr("no lung voxels to place nodules in".into()));
        }
        for _ in 0..TRIES {
            let p = self.voxels[rng.random_range(0..self.voxels.len())] as usize;
            let [nx, ny, _] = ct.dims;
            let ijk = [
                (p % nx) as f64 + rng.random_range(-0.5..0.5),
                ((p / nx) % ny) as f64 + rng.random_range(-0.5..0.5),
                (p / (nx * ny)) as f64 + rng.random_range(-0.5..0.5),
            ];
            let centre = ct.world(ijk);
            let nodule = draw(rng, centre, settings);
            if self.fits(ct, &nodule, settings.margin_mm, others) {
                return Ok(nodule);
            }
        }
        Err(Error::Drr(format!(
            "could not place a nodule of radius {:?} mm {} mm inside the lungs in {TRIES} tries: use smaller nodules, fewer, or a smaller margin",
            settings.radius_mm, settings.margin_mm
        )))
    }

    /// Whether the whole support of `nodule`, plus `margin_mm`, lies inside the region and clear
    /// of `others`.
    fn fits(&self, ct: &Volume, nodule: &Nodule, margin_mm: f64, others: &[Nodule]) -> bool {
        let centre = nodule.centre_mm;
        let reach = nodule.support_mm() + margin_mm;
        others
            .iter()
            .all(|o| norm(sub(o.centre_mm, centre)) > reach + o.support_mm())
            && sphere_directions(96).all(|d| {
                self.contains(ct, add(centre, scale(d, reach)))
                    && self.contains(ct, add(centre, scale(d, reach / 2.0)))
            })
    }

    /// A nodule drawn from `settings` on the ray from the source to the detector point `at`
    /// (pixel coordinates, pixel `i` covering `[i, i + 1)`): where a user clicks on a DRR. Its
    /// centre is the middle of the longest stretch of that ray where it fits as [`Self::place`]
    /// requires, so it projects onto the clicked point. An error says why there is none.
    pub fn place_on_ray(
        &self,
        rng: &mut impl Rng,
        ct: &Volume,
        settings: &NoduleSettings,
        others: &[Nodule],
        proj: &Projection,
        at: [f64; 2],
    ) -> Result<Nodule> {
        let [w, h] = proj.geometry.pixels;
        if !(at[0] >= 0.0 && at[1] >= 0.0 && at[0] <= w as f64 && at[1] <= h as f64) {
            return Err(Error::Drr(format!(
                "({:.1}, {:.1}) is outside the {w}×{h} detector",
                at[0], at[1]
            )));
        }
        let proto = draw(rng, [0.0; 3], settings);
        let target = proj.pixel(at[0] - 0.5, at[1] - 0.5);
        let ray = sub(target, proj.source);
        let length = norm(ray);
        let step = ct
            .spacing()
            .into_iter()
            .fold(f64::MAX, f64::min)
            .clamp(0.25, 2.0);
        let (mut lung, mut best, mut run): (bool, Option<(usize, usize)>, Option<usize>) =
            (false, None, None);
        let n = (length / step) as usize;
        for k in 0..=n + 1 {
            let fits = k <= n && {
                let p = add(proj.source, scale(ray, k as f64 * step / length));
                let inside = self.contains(ct, p);
                lung |= inside;
                inside && self.fits(ct, &proto.moved_to(p), settings.margin_mm, others)
            };
            match (fits, run) {
                (true, None) => run = Some(k),
                (false, Some(start)) => {
                    if best.is_none_or(|(a, b)| k - start > b - a) {
                        best = Some((start, k));
                    }
                    run = None;
                }
                _ => {}
            }
        }
        let at_txt = format!("({:.0}, {:.0})", at[0], at[1]);
        match best {
            Some((a, b)) => {
                let k = (a + b - 1) as f64 / 2.0;
                Ok(proto.moved_to(add(proj.source, scale(ray, k * step / length))))
            }
            None if !lung => Err(Error::Drr(format!(
                "no lung along the ray through detector point {at_txt}: click inside a lung"
            ))),
            None => Err(Error::Drr(format!(
                "a nodule of radius {:.1} mm (with a {} mm margin, clear of the other nodules) does not fit in the lung along the ray through {at_txt}: click nearer the middle of a lung, or use smaller nodules",
                proto.radius_mm, settings.margin_mm
            ))),
        }
    }
}

/// Random size, density and shape around `centre`.
fn draw(rng: &mut impl Rng, centre: [f64; 3], s: &NoduleSettings) -> Nodule {
    let uniform = |rng: &mut dyn rand::RngCore, [a, b]: [f64; 2]| {
        if b > a {
            a + (b - a) * rng.random::<f64>()
        } else {
            a
        }
    };
    let radius = uniform(rng, s.radius_mm);
    let hu = uniform(rng, s.hu);
    let shape = match s.shape {
        Shape::Mixed => {
            if rng.random::<bool>() {
                Shape::Lobulated
            } else {
                Shape::Sphere
            }
        }
        other => other,
    };
    let lobes = if shape == Shape::Lobulated {
        (0..rng.random_range(3..=5))
            .map(|_| {
                let z: f64 = rng.random_range(-1.0..1.0);
                let phi: f64 = rng.random_range(0.0..std::f64::consts::TAU);
                let r = (1.0 - z * z).sqrt();
                let dir = [r * phi.cos(), r * phi.sin(), z];
                let dist = radius * rng.random_range(0.55..0.8);
                (
                    add(centre, scale(dir, dist)),
                    radius * rng.random_range(0.35..0.6),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    Nodule {
        shape,
        centre_mm: centre,
        radius_mm: radius,
        hu,
        edge_mm: s.edge_mm,
        lobes,
    }
}
