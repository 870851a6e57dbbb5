//! Training data: an unpaired domain (any folder of images, or one image) and a pair set
//! (`lq/` and `hq/` with files matched by name), cut into random patches. Every draw is a pure
//! function of (seed, step, item), so a resumed run sees exactly the batches it would have seen.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::io::{self, GrayImage, image_files};
use crate::{Error, Result};

/// Which columns of each image a set may use: the held-out right part is kept for evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Columns {
    All,
    /// The left `1 − f` of the columns (training side of a hold-out).
    Train(f64),
    /// The right-most fraction `f` (the held-out region).
    HeldOut(f64),
}

impl Columns {
    /// The first and one-past-last column for an image of `width`.
    pub fn range(&self, width: usize) -> (usize, usize) {
        let cut = |f: f64| ((width as f64) * (1.0 - f)).round() as usize;
        match *self {
            Columns::All => (0, width),
            Columns::Train(f) => (0, cut(f)),
            Columns::HeldOut(f) => (cut(f), width),
        }
    }
}

/// Augmentations of a patch draw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    /// Horizontal flips half the time.
    pub flip: bool,
    /// Rotation range ± (degrees) and scale range ± (fraction).
    pub rotate_deg: f64,
    pub scale: f64,
    /// Intensity: gamma in 1 ± this, contrast in 1 ± this.
    pub intensity: f64,
}

impl Augment {
    pub const NONE: Augment = Augment {
        flip: false,
        rotate_deg: 0.0,
        scale: 0.0,
        intensity: 0.0,
    };
    /// What the HQ domain gets: flips, ±5°, ±5 %, ±10 % gamma/contrast.
    pub const HQ: Augment = Augment {
        flip: true,
        rotate_deg: 5.0,
        scale: 0.05,
        intensity: 0.1,
    };
    /// For pair sets cut from one radiograph: flips, ±10°, ±20 %, ±10 % gamma/contrast.
    pub const STRONG: Augment = Augment {
        rotate_deg: 10.0,
        scale: 0.2,
        ..Augment::HQ
    };
    /// Flips only.
    pub const FLIP: Augment = Augment {
        flip: true,
        ..Augment::NONE
    };
}

/// Images of one domain with the part of each that may be sampled.
pub struct Domain {
    pub images: Vec<GrayImage>,
    pub names: Vec<String>,
    pub columns: Columns,
}

impl Domain {
    /// Each image cut to its columns (the part training, or the hold-out, may see).
    pub fn region_images(&self) -> Vec<GrayImage> {
        self.images
            .iter()
            .map(|img| {
                let (c0, c1) = self.columns.range(img.width);
                GrayImage {
                    width: c1 - c0,
                    height: img.height,
                    data: (0..img.height)
                        .flat_map(|y| img.data[y * img.width + c0..y * img.width + c1].to_vec())
                        .collect(),
                }
            })
            .collect()
    }

    pub fn load(path: &Path, columns: Columns) -> Result<Self> {
        let files = image_files(path)?;
        let mut images = Vec::new();
        let mut names = Vec::new();
        for f in &files {
            images.push(io::read(f)?);
            names.push(
                f.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        Ok(Self {
            images,
            names,
            columns,
        })
    }

    /// Refuses patches larger than the usable part of an image.
    pub fn check_patch(&self, patch: usize) -> Result<()> {
        for (img, name) in self.images.iter().zip(&self.names) {
            let (c0, c1) = self.columns.range(img.width);
            if c1 - c0 < patch || img.height < patch {
                return Err(Error::Image(format!(
                    "{name}: its usable region is {}×{}, smaller than the {patch}² patches",
                    c1 - c0,
                    img.height
                )));
            }
        }
        Ok(())
    }

    /// Patch `item` of draw `step` (seeded): a random image, position, and augmentation.
    pub fn patch(&self, seed: u64, step: u64, item: usize, size: usize, aug: &Augment) -> Vec<f32> {
        let mut rng = draw_rng(seed, step, item);
        let k = rng.random_range(0..self.images.len());
        let img = &self.images[k];
        let (c0, c1) = self.columns.range(img.width);
        let x0 = c0 + rng.random_range(0..=(c1 - c0 - size));
        let y0 = rng.random_range(0..=(img.height - size));
        crop_augment(img, x0, y0, size, aug, &mut rng, (c0, c1))
    }
}

/// The random stream of one batch item.
pub fn draw_rng(seed: u64, step: u64, item: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_da7a);
    rng.set_stream(step.wrapping_mul(1 << 16).wrapping_add(item as u64));
    rng
}

/// Crops `size²` at (x0, y0) with the augmentation: rotation/scale about the patch centre
/// (bilinear, reading only inside `cols` and the image), flip, gamma and contrast.
fn crop_augment(
    img: &GrayImage,
    x0: usize,
    y0: usize,
    size: usize,
    aug: &Augment,
    rng: &mut ChaCha8Rng,
    cols: (usize, usize),
) -> Vec<f32> {
    let sym = |rng: &mut ChaCha8Rng, r: f64| {
        if r > 0.0 {
            rng.random_range(-r..=r)
        } else {
            0.0
        }
    };
    let angle = sym(rng, aug.rotate_deg).to_radians();
    let scale = 1.0 + sym(rng, aug.scale);
    let flip = aug.flip && rng.random::<bool>();
    let gamma = 1.0 + sym(rng, aug.intensity);
    let contrast = 1.0 + sym(rng, aug.intensity);
    let (cx, cy) = (x0 as f64 + size as f64 / 2.0, y0 as f64 + size as f64 / 2.0);
    let (cos, sin) = (angle.cos() * scale, angle.sin() * scale);
    let mut out = Vec::with_capacity(size * size);
    let plain = angle == 0.0 && scale == 1.0;
    for y in 0..size {
        for x in 0..size {
            let xs = if flip { size - 1 - x } else { x };
            let v = if plain {
                img.data[(y0 + y) * img.width + x0 + xs]
            } else {
                let (dx, dy) = (
                    xs as f64 + 0.5 - size as f64 / 2.0,
                    y as f64 + 0.5 - size as f64 / 2.0,
                );
                let sx = cx + cos * dx - sin * dy - 0.5;
                let sy = cy + sin * dx + cos * dy - 0.5;
                bilinear(img, sx, sy, cols)
            };
            let v = (v.clamp(0.0, 1.0) as f64).powf(gamma);
            out.push(((v - 0.5) * contrast + 0.5).clamp(0.0, 1.0) as f32);
        }
    }
    out
}

fn bilinear(img: &GrayImage, x: f64, y: f64, (c0, c1): (usize, usize)) -> f32 {
    let x = x.clamp(c0 as f64, (c1 - 1) as f64);
    let y = y.clamp(0.0, (img.height - 1) as f64);
    let (xi, yi) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((xi + 1).min(c1 - 1), (yi + 1).min(img.height - 1));
    let (fx, fy) = ((x - xi as f64) as f32, (y - yi as f64) as f32);
    let at = |x: usize, y: usize| img.data[y * img.width + x];
    let top = at(xi, yi) * (1.0 - fx) + at(x1, yi) * fx;
    let bottom = at(xi, y1) * (1.0 - fx) + at(x1, y1) * fx;
    top * (1.0 - fy) + bottom * fy
}

/// A folder with `lq/` and `hq/` whose files match by name (same sizes).
pub struct PairSet {
    pub lq: Vec<GrayImage>,
    pub hq: Vec<GrayImage>,
    pub names: Vec<String>,
}

impl PairSet {
    pub fn load(dir: &Path) -> Result<Self> {
        let (lq_dir, hq_dir) = (dir.join("lq"), dir.join("hq"));
        if !lq_dir.is_dir() || !hq_dir.is_dir() {
            return Err(Error::Image(format!(
                "{}: a pair set needs the sub-folders lq/ and hq/",
                dir.display()
            )));
        }
        let hq_files = image_files(&hq_dir)?;
        let mut set = PairSet {
            lq: Vec::new(),
            hq: Vec::new(),
            names: Vec::new(),
        };
        for hq_path in hq_files {
            let name = hq_path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let lq_path = lq_dir.join(&name);
            if !lq_path.is_file() {
                return Err(Error::Image(format!(
                    "{}: hq/{name} has no lq/{name}",
                    dir.display()
                )));
            }
            let (lq, hq) = (io::read(&lq_path)?, io::read(&hq_path)?);
            if (lq.width, lq.height) != (hq.width, hq.height) {
                return Err(Error::Image(format!(
                    "{}: lq/{name} is {}×{} but hq/{name} is {}×{}",
                    dir.display(),
                    lq.width,
                    lq.height,
                    hq.width,
                    hq.height
                )));
            }
            set.lq.push(lq);
            set.hq.push(hq);
            set.names.push(name);
        }
        Ok(set)
    }

    pub fn check_patch(&self, patch: usize) -> Result<()> {
        for (img, name) in self.hq.iter().zip(&self.names) {
            if img.width < patch || img.height < patch {
                return Err(Error::Image(format!(
                    "{name} is {}×{}, smaller than the {patch}² crops",
                    img.width, img.height
                )));
            }
        }
        Ok(())
    }

    /// Aligned random crops (LQ, HQ) of pair `item` in draw `step`, flipped together.
    pub fn crop(&self, seed: u64, step: u64, item: usize, size: usize) -> (Vec<f32>, Vec<f32>) {
        let mut rng = draw_rng(seed, step, item);
        let k = rng.random_range(0..self.hq.len());
        let (lq, hq) = (&self.lq[k], &self.hq[k]);
        let x0 = rng.random_range(0..=(hq.width - size));
        let y0 = rng.random_range(0..=(hq.height - size));
        let flip = rng.random::<bool>();
        let cut = |img: &GrayImage| -> Vec<f32> {
            let mut v = Vec::with_capacity(size * size);
            for y in 0..size {
                for x in 0..size {
                    let xs = if flip { size - 1 - x } else { x };
                    v.push(img.data[(y0 + y) * img.width + x0 + xs]);
                }
            }
            v
        };
        (cut(lq), cut(hq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(w: usize, h: usize) -> GrayImage {
        GrayImage::from_fn(w, h, |x, _| x as f32 / w as f32)
    }

    #[test]
    fn patches_are_reproducible_and_stay_out_of_the_held_out_columns() {
        let d = Domain {
            images: vec![ramp(90, 40)],
            names: vec!["r".into()],
            columns: Columns::Train(1.0 / 3.0),
        };
        d.check_patch(16).unwrap();
        for step in 0..50 {
            let a = d.patch(3, step, 0, 16, &Augment::HQ);
            assert_eq!(a, d.patch(3, step, 0, 16, &Augment::HQ));
            // values of the ramp encode the column: nothing from columns ≥ 60 (value 0.667)
            let plain = d.patch(3, step, 1, 16, &Augment::FLIP);
            assert!(plain.iter().all(|v| *v < 60.0 / 90.0), "step {step}");
        }
        assert_ne!(
            d.patch(3, 0, 0, 16, &Augment::HQ),
            d.patch(3, 1, 0, 16, &Augment::HQ)
        );
        let held = Domain {
            columns: Columns::HeldOut(1.0 / 3.0),
            ..d
        };
        assert!(
            held.patch(1, 0, 0, 16, &Augment::NONE)
                .iter()
                .all(|v| *v >= 60.0 / 90.0)
        );
        assert!(
            held.check_patch(40)
                .unwrap_err()
                .to_string()
                .contains("smaller than")
        );
    }
}
