//! HQ → LQ by measurement: a radiograph made to look like a DRR with two fitted steps, and the
//! fixed filter (its rough inverse) that every learned model is compared with.
//! - [`DrrLike`]: the radiograph's grey levels mapped onto the DRRs' by one monotone curve
//!   (histogram matching of the body on whole images, so that every crop of the radiograph gets
//!   the same curve, with air kept black), then a Gaussian blur and white noise whose strengths are chosen so that the degraded
//!   radiograph's spectrum slope and edge sharpness come closest to the DRRs' (DRRs have soft
//!   edges, which a blur gives, but a fine-grained floor of projected CT noise that a blur alone
//!   would remove).
//! - [`FixedFilter`]: a DRR mapped onto the radiograph's grey levels (the inverse curve), then
//!   unsharp masking: what histogram matching and sharpening alone do, with no learning.
//!
//! [`Strategy`] is every way `dxr pairs` makes an LQ image from an HQ one: these two steps, the
//! paper's bicubic baseline, and the learned degradations (DDPM-LQ by SDEdit, MUNIT-LQ).

use std::path::Path;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::ddpm::{Sdedit, bicubic_degrade, sdedit};
use super::munit::net::{MunitConfig, MunitGen};
use super::munit::{Style, load_munit, translate};
use crate::checkpoint::{LoadedModel, load_bytes};
use crate::diffusion::schedule::Schedule;
use crate::eval::realism::{self, gaussian_blur};
use crate::io::GrayImage;
use crate::{Error, Result};

/// A degradation HQ → LQ, ready to apply to many images.
pub enum Strategy {
    /// Bicubic down- and up-sampling by this factor (the paper's baseline).
    Bicubic(f64),
    /// The fitted DRR look.
    Drr(DrrLike),
    /// SDEdit with a DDPM-LQ model: noise the HQ image to `strength`·T, denoise in `steps` DDIM
    /// steps, optionally with ILVR low-pass guidance of that block size.
    Ddpm {
        model: LoadedModel,
        schedule: Schedule,
        strength: f64,
        steps: usize,
        ilvr: Option<usize>,
        device: Device,
    },
    /// MUNIT-LQ translation.
    Munit {
        config: MunitConfig,
        generator: MunitGen,
        /// An LQ image whose style every translation takes; else a random style per image.
        style: Option<GrayImage>,
        device: Device,
    },
}

impl Strategy {
    /// The fitted DRR look of `dxr fit-drr-look` (its JSON file).
    pub fn drr(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let look: DrrLike = serde_json::from_str(&text).map_err(|e| {
            Error::Config(format!("{}: not a fitted DRR look ({e})", path.display()))
        })?;
        if look.mottle.is_some_and(|m| m != 0.0) {
            return Err(Error::Config(format!(
                "{}: \"mottle\" is a retired experiment (it did not help); remove it from the file",
                path.display()
            )));
        }
        Ok(Strategy::Drr(look))
    }

    /// SDEdit with the DDPM-LQ model in `path` (ILVR off for a block size ≤ 1).
    pub fn ddpm(
        path: &Path,
        strength: f64,
        steps: usize,
        ilvr: usize,
        device: Device,
    ) -> Result<Self> {
        let bytes = crate::checkpoint::read_file(path)?;
        let model = load_bytes(&bytes, None, &device)?;
        let schedule = model.spec.schedule.build()?;
        Ok(Strategy::Ddpm {
            model,
            schedule,
            strength,
            steps,
            ilvr: (ilvr > 1).then_some(ilvr),
            device,
        })
    }

    /// The MUNIT generator in `path`, with one style for every output or a random one each.
    pub fn munit(path: &Path, style: Option<GrayImage>, device: Device) -> Result<Self> {
        let (config, generator) = load_munit(path, &device)?;
        Ok(Strategy::Munit {
            config,
            generator,
            style,
            device,
        })
    }

    /// The LQ version of `img`; `seed` draws the noise (and the MUNIT style) of this image.
    pub fn apply(&self, img: &GrayImage, seed: u64) -> Result<GrayImage> {
        match self {
            Strategy::Bicubic(k) => bicubic_degrade(img, *k),
            Strategy::Drr(d) => Ok(d.apply(img, seed)),
            Strategy::Ddpm {
                model,
                schedule,
                strength,
                steps,
                ilvr,
                device,
            } => sdedit(
                model,
                schedule,
                img,
                &Sdedit {
                    strength: *strength,
                    steps: *steps,
                    ilvr: *ilvr,
                    seed,
                },
                device,
            ),
            Strategy::Munit {
                config,
                generator,
                style,
                device,
            } => {
                let style = match style {
                    Some(s) => Style::Of(s),
                    None => Style::Random(seed),
                };
                translate(config, generator, img, style, device)
            }
        }
    }
}

/// Points of a tone curve over [0, 1].
const CURVE_POINTS: usize = 256;

/// A monotone tone curve: `points[i]` is the output for input `i / (points − 1)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToneCurve {
    pub points: Vec<f32>,
}

/// Grey levels at or below this are air, outside the body: a DRR's air is exactly 0 and its
/// skin line rises through a few percent, a radiograph's direct exposure is as dark.
pub const AIR_LEVEL: f32 = 0.04;

impl ToneCurve {
    /// The curve that gives `from`'s body intensities the distribution of `to`'s: F_to⁻¹ ∘ F_from
    /// over the pixels above [`AIR_LEVEL`] of each set. Air maps linearly onto [0, the darkest
    /// body level of `to`], so that black stays black: DRRs hold far more air around the body
    /// than a radiograph, and matching whole images would turn a DRR's air grey (or crush a
    /// radiograph's lungs to black the other way).
    pub fn matching(from: &[&GrayImage], to: &[&GrayImage]) -> Result<Self> {
        let sorted = |set: &[&GrayImage], what: &str| -> Result<Vec<f32>> {
            let mut v: Vec<f32> = set
                .iter()
                .flat_map(|g| g.data.iter().copied())
                .filter(|v| *v > AIR_LEVEL)
                .collect();
            if v.is_empty() {
                return Err(Error::Image(format!(
                    "histogram matching: the {what} images hold no pixel above the air level \
                     {AIR_LEVEL} (empty or black)"
                )));
            }
            v.sort_by(f32::total_cmp);
            Ok(v)
        };
        let (src, dst) = (sorted(from, "source")?, sorted(to, "target")?);
        let points = (0..CURVE_POINTS)
            .map(|i| {
                let x = i as f32 / (CURVE_POINTS - 1) as f32;
                if x <= AIR_LEVEL {
                    return dst[0] * x / AIR_LEVEL;
                }
                // F_from(x): fraction of source body pixels ≤ x (mid-rank for ties)
                let below = src.partition_point(|v| *v < x);
                let upto = src.partition_point(|v| *v <= x);
                let p = (below + upto) as f64 / 2.0 / src.len() as f64;
                dst[((dst.len() - 1) as f64 * p).round() as usize]
            })
            .collect();
        Ok(Self { points })
    }

    /// The curve applied to one value (linear between points).
    pub fn map(&self, x: f32) -> f32 {
        crate::spec::interpolate_curve(&self.points, x)
    }

    pub fn apply(&self, img: &GrayImage) -> GrayImage {
        GrayImage {
            width: img.width,
            height: img.height,
            data: img.data.iter().map(|v| self.map(*v)).collect(),
        }
    }
}

/// The crop with air beyond a random soft edge (a line bent a little, at a random angle, air
/// covering about 10–50 % of it): DRRs hold black air around the body that crops of a
/// radiograph rarely show. Pairs made from such crops (the LQ degraded from the masked HQ) teach
/// a model to leave air black and keep the skin line where it is.
pub fn with_air_margin(img: &GrayImage, seed: u64) -> GrayImage {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0xA1E_0F_B0D7);
    let (w, h) = (img.width as f64, img.height as f64);
    let side = w.min(h);
    let theta = rng.random::<f64>() * std::f64::consts::TAU;
    let (nx, ny) = (theta.cos(), theta.sin());
    // air where the bent signed distance from the edge is positive
    let offset = (0.0 + 0.4 * rng.random::<f64>()) * side;
    let bend = (rng.random::<f64>() * 2.0 - 1.0) / side;
    let width = 1.5;
    GrayImage::from_fn(img.width, img.height, |x, y| {
        let (px, py) = (x as f64 - w / 2.0, y as f64 - h / 2.0);
        let along = -ny * px + nx * py;
        let d = nx * px + ny * py - offset + bend * along * along;
        let body = 1.0 / (1.0 + (d / width).exp());
        img.data[y * img.width + x] * body as f32
    })
}

/// A radiograph made to look like a DRR: tone curve, blur, white noise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrrLike {
    pub curve: ToneCurve,
    /// Gaussian blur after the curve, pixels.
    pub sigma: f64,
    /// Standard deviation of the white Gaussian noise added last (grey levels in [0, 1]).
    #[serde(default)]
    pub noise: f64,
    /// A retired experiment (a blob-like mottle in the LQ; it did not help, docs/training.md):
    /// a file that turns it on is refused by name, one that names it at 0 still loads.
    #[serde(default, skip_serializing)]
    pub mottle: Option<f64>,
    /// How much of the local contrast below [`Self::flatten_px`] the LQ loses (0: none, 1: all),
    /// before the blur: a DRR looks flat next to a radiograph, whose processing (a CR's
    /// large-kernel edge enhancement) lifts every structure smaller than the kernel alike.
    /// Undoing it raises vessels and nodules by the same factor, unlike a deblurring, which
    /// lifts the finest specks most.
    #[serde(default)]
    pub flatten: f64,
    /// Width (Gaussian σ, pixels) of the local mean that [`Self::flatten`] pulls toward.
    #[serde(default = "default_flatten_px")]
    pub flatten_px: f64,
}

fn default_flatten_px() -> f64 {
    10.0
}

/// One row of the blur fit: how close the degraded radiograph comes to the DRRs.
#[derive(Debug, Clone)]
pub struct FitRow {
    pub sigma: f64,
    pub noise: f64,
    pub slope: f64,
    pub sharpness: f64,
    pub histogram_distance: f64,
}

impl DrrLike {
    /// The degradation of `img`; the noise is drawn from `seed`.
    pub fn apply(&self, img: &GrayImage, seed: u64) -> GrayImage {
        self.grain(
            &gaussian_blur(&self.flattened(&self.curve.apply(img)), self.sigma),
            seed,
            1.0,
        )
    }

    /// `img` with [`Self::flatten`] of its local contrast taken away: each pixel moves toward
    /// the mean of the body around it (a Gaussian of [`Self::flatten_px`], weighted by the
    /// body, so that black air neither darkens the body's rim nor gets a halo).
    pub fn flattened(&self, img: &GrayImage) -> GrayImage {
        if self.flatten <= 0.0 {
            return img.clone();
        }
        let body = |v: f32| (v / 0.05).clamp(0.0, 1.0);
        let weight = GrayImage {
            data: img.data.iter().map(|&v| body(v)).collect(),
            ..img.clone()
        };
        let weighted = GrayImage {
            data: img.data.iter().map(|&v| v * body(v)).collect(),
            ..img.clone()
        };
        let (num, den) = (
            gaussian_blur(&weighted, self.flatten_px),
            gaussian_blur(&weight, self.flatten_px),
        );
        let k = self.flatten.clamp(0.0, 1.0) as f32;
        let mut out = img.clone();
        for (p, v) in out.data.iter_mut().enumerate() {
            if den.data[p] > 1e-3 {
                let mean = num.data[p] / den.data[p];
                *v = (*v - k * body(*v) * (*v - mean)).clamp(0.0, 1.0);
            }
        }
        out
    }

    /// `img` with the white noise [`Self::apply`] adds for `seed` (the same draw). A pair set
    /// can give its HQ the grain its LQ got, so that a model learns to keep fine grain (a DRR's
    /// projected CT noise is part of the image) and to undo only the blur and the tone curve.
    /// `fraction` scales the draw: below 1 the model learns to keep that share of the grain.
    pub fn grain(&self, img: &GrayImage, seed: u64, fraction: f64) -> GrayImage {
        use rand::SeedableRng;
        let mut out = img.clone();
        if self.noise > 0.0 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            for v in &mut out.data {
                let n: f64 = rand::Rng::sample(&mut rng, rand_distr::StandardNormal);
                *v = (*v + (n * self.noise * fraction) as f32).clamp(0.0, 1.0);
            }
        }
        out
    }

    /// Fits the curve on whole images (`hq`: radiographs, `drr`: DRRs at the same pixel scale)
    /// and picks the (blur, noise) among `sigmas` × `noises` whose degraded radiographs come
    /// closest to the DRRs in mean spectrum slope and edge sharpness (the sum of the two relative
    /// differences). Returns the degradation, the DRRs' own figures and a row per pair tried.
    pub fn fit(
        hq: &[&GrayImage],
        drr: &[&GrayImage],
        sigmas: &[f64],
        noises: &[f64],
    ) -> Result<(Self, FitRow, Vec<FitRow>)> {
        let curve = ToneCurve::matching(hq, drr)?;
        let measure = |set: &[GrayImage], sigma: f64, noise: f64| -> Result<FitRow> {
            let n = set.len().max(1) as f64;
            let mut slope = 0.0;
            let mut sharp = 0.0;
            for g in set {
                slope += realism::spectrum_slope(g)? / n;
                sharp += realism::edge_sharpness(g) / n;
            }
            let drr_cdf = realism::window_free_cdf(drr);
            let set_cdf = realism::window_free_cdf(&set.iter().collect::<Vec<_>>());
            Ok(FitRow {
                sigma,
                noise,
                slope,
                sharpness: sharp,
                histogram_distance: realism::wasserstein(&set_cdf, &drr_cdf),
            })
        };
        let target = measure(
            &drr.iter().map(|g| (*g).clone()).collect::<Vec<_>>(),
            f64::NAN,
            f64::NAN,
        )?;
        let mut rows = Vec::new();
        for &sigma in sigmas {
            for &noise in noises {
                let d = Self {
                    curve: curve.clone(),
                    sigma,
                    noise,
                    mottle: None,
                    flatten: 0.0,
                    flatten_px: default_flatten_px(),
                };
                let set: Vec<GrayImage> = hq
                    .iter()
                    .enumerate()
                    .map(|(k, g)| d.apply(g, k as u64))
                    .collect();
                rows.push(measure(&set, sigma, noise)?);
            }
        }
        let cost = |r: &FitRow| {
            ((r.slope - target.slope) / target.slope).abs()
                + ((r.sharpness - target.sharpness) / target.sharpness.max(1e-9)).abs()
        };
        let best = rows
            .iter()
            .min_by(|a, b| cost(a).total_cmp(&cost(b)))
            .ok_or_else(|| Error::Config("no blur widths or noise levels to try".into()))?;
        Ok((
            Self {
                curve,
                sigma: best.sigma,
                noise: best.noise,
                mottle: None,
                flatten: 0.0,
                flatten_px: default_flatten_px(),
            },
            target,
            rows,
        ))
    }
}

/// The no-learning baseline: a DRR given the radiograph's grey levels (tone curve), then
/// unsharp masking `out = y + amount · (y − blur_σ(y))`, clamped to [0, 1].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixedFilter {
    pub curve: ToneCurve,
    pub sigma: f64,
    pub amount: f64,
}

impl FixedFilter {
    /// The curve from the DRRs' distribution to the radiograph's; unsharp σ 2 px, amount 1.
    pub fn fit(drr: &[&GrayImage], radiograph: &[&GrayImage]) -> Result<Self> {
        Ok(Self {
            curve: ToneCurve::matching(drr, radiograph)?,
            sigma: 2.0,
            amount: 1.0,
        })
    }

    pub fn apply(&self, img: &GrayImage) -> GrayImage {
        let y = self.curve.apply(img);
        let b = gaussian_blur(&y, self.sigma);
        GrayImage {
            width: y.width,
            height: y.height,
            data: y
                .data
                .iter()
                .zip(&b.data)
                .map(|(v, s)| (v + self.amount as f32 * (v - s)).clamp(0.0, 1.0))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(w: usize, h: usize, f: impl FnMut(usize, usize) -> f32) -> GrayImage {
        GrayImage::from_fn(w, h, f)
    }

    #[test]
    fn matching_gives_the_target_distribution_and_stays_monotone() {
        // both all body (above the air level)
        let from = img(64, 64, |x, y| 0.05 + 0.95 * (x * 64 + y) as f32 / 4095.0);
        let to = img(64, 64, |x, y| {
            0.05 + 0.95 * ((x * 64 + y) as f32 / 4095.0).powi(3)
        });
        let c = ToneCurve::matching(&[&from], &[&to]).unwrap();
        assert!(c.points.windows(2).all(|p| p[1] >= p[0]), "monotone");
        let mapped = c.apply(&from);
        let d = realism::histogram_distance(&mapped, &to);
        assert!(d < 0.01, "distance after matching {d}");
        assert!(realism::histogram_distance(&from, &to) > 0.1);
    }

    #[test]
    fn matching_keeps_air_black_and_matches_the_body_only() {
        // a "DRR": half black air, a body of uniform levels in [0.3, 0.9]; a "radiograph": body
        // everywhere, levels in [0.5, 1.0]
        let drr = img(64, 64, |x, y| {
            if x < 32 {
                0.0
            } else {
                0.3 + 0.6 * y as f32 / 63.0
            }
        });
        let rad = img(64, 64, |_, y| 0.5 + 0.5 * y as f32 / 63.0);
        let c = ToneCurve::matching(&[&drr], &[&rad]).unwrap();
        let out = c.apply(&drr);
        assert!(
            out.data.iter().step_by(64).all(|v| *v == 0.0),
            "air stays black"
        );
        let body = |g: &GrayImage| img(32, 64, |x, y| g.data[y * 64 + 32 + x]);
        let d = realism::histogram_distance(&body(&out), &rad);
        assert!(d < 0.01, "body distance after matching {d}");
        // the other way, the radiograph's darkest body is not crushed to black
        let back = ToneCurve::matching(&[&rad], &[&drr]).unwrap().apply(&rad);
        let darkest = back.data.iter().cloned().fold(f32::MAX, f32::min);
        assert!((darkest - 0.3).abs() < 0.02, "darkest {darkest}");
        assert!(ToneCurve::matching(&[&img(8, 8, |_, _| 0.0)], &[&rad]).is_err());
    }

    #[test]
    fn an_air_margin_is_black_beyond_a_soft_edge_and_varies_with_the_seed() {
        let body = img(64, 64, |_, _| 0.6);
        let mut fractions = Vec::new();
        for seed in 0..20 {
            let m = with_air_margin(&body, seed);
            let air = m.data.iter().filter(|v| **v < 0.01).count() as f64 / 4096.0;
            let kept = m.data.iter().filter(|v| **v > 0.59).count() as f64 / 4096.0;
            assert!((0.02..0.7).contains(&air), "seed {seed}: air {air}");
            assert!(kept > 0.25, "seed {seed}: body kept {kept}");
            assert!(m.data.iter().all(|v| (0.0..=0.6).contains(v)));
            fractions.push(air);
        }
        let spread = fractions.iter().cloned().fold(0.0, f64::max)
            - fractions.iter().cloned().fold(1.0, f64::min);
        assert!(spread > 0.2, "air fractions {fractions:?}");
        assert_eq!(with_air_margin(&body, 3), with_air_margin(&body, 3));
    }

    #[test]
    fn the_fit_picks_the_blur_that_matches_the_slope() {
        // "DRRs": a detailed field blurred by σ 2; "radiograph": the same field unblurred
        let field = img(128, 128, |x, y| {
            let (xf, yf) = (x as f32, y as f32);
            0.5 + 0.2 * (xf * 0.9).sin() * (yf * 0.7).cos() + 0.1 * (xf * 0.13 + yf * 0.05).sin()
        });
        let drr = gaussian_blur(&field, 2.0);
        let (d, target, rows) =
            DrrLike::fit(&[&field], &[&drr], &[0.0, 1.0, 2.0, 3.0, 4.0], &[0.0, 0.02]).unwrap();
        assert_eq!((d.sigma, d.noise), (2.0, 0.0), "{rows:?} vs {target:?}");
        assert_eq!(rows.len(), 10);
        // noise on the "DRRs" is found as noise
        let noisy = DrrLike {
            curve: d.curve.clone(),
            sigma: 2.0,
            noise: 0.02,
            mottle: None,
            flatten: 0.0,
            flatten_px: 10.0,
        }
        .apply(&field, 9);
        let (d, _, _) =
            DrrLike::fit(&[&field], &[&noisy], &[1.0, 2.0, 3.0], &[0.0, 0.02, 0.05]).unwrap();
        assert_eq!((d.sigma, d.noise), (2.0, 0.02));
    }

    /// The identity curve and nothing else: each test switches on the step it is about.
    fn plain_look() -> DrrLike {
        DrrLike {
            curve: ToneCurve {
                points: (0..CURVE_POINTS)
                    .map(|i| i as f32 / (CURVE_POINTS - 1) as f32)
                    .collect(),
            },
            sigma: 0.0,
            noise: 0.0,
            mottle: None,
            flatten: 0.0,
            flatten_px: default_flatten_px(),
        }
    }

    #[test]
    fn grain_is_the_noise_the_degradation_adds() {
        let img = GrayImage {
            width: 24,
            height: 20,
            data: (0..480)
                .map(|i| 0.3 + 0.4 * ((i % 24) as f32 / 24.0))
                .collect(),
        };
        let d = DrrLike {
            sigma: 1.5,
            noise: 0.02,
            ..plain_look()
        };
        let blurred = gaussian_blur(&img, 1.5);
        let lq = d.apply(&img, 7);
        let hq = d.grain(&img, 7, 1.0);
        // the same draw: LQ − blur(HQ) equals grained HQ − HQ (no value is clamped here)
        let mut energy = 0.0;
        for k in 0..img.data.len() {
            let (n_lq, n_hq) = (lq.data[k] - blurred.data[k], hq.data[k] - img.data[k]);
            assert!((n_lq - n_hq).abs() < 1e-6, "pixel {k}: {n_lq} vs {n_hq}");
            energy += n_hq * n_hq;
        }
        let sd = (energy / img.data.len() as f32).sqrt();
        assert!((sd - 0.02).abs() < 0.004, "noise sd {sd}");
        // another seed, another draw
        assert_ne!(d.grain(&img, 8, 1.0).data, hq.data);
        // a fraction of the grain: the same draw, scaled
        let part = d.grain(&img, 7, 0.5);
        for k in 0..img.data.len() {
            let (half, whole) = (part.data[k] - img.data[k], hq.data[k] - img.data[k]);
            assert!(
                (2.0 * half - whole).abs() < 1e-6,
                "pixel {k}: {half} vs {whole}"
            );
        }
    }

    #[test]
    fn flatten_takes_its_share_of_the_local_contrast_and_leaves_the_air() {
        // a body with a fine pattern (period 6 px) on a slow ramp, beside black air
        let img = GrayImage::from_fn(96, 64, |x, _| {
            if x < 16 {
                0.0
            } else {
                0.3 + 0.003 * x as f32 + 0.1 * (x as f32 * std::f32::consts::TAU / 6.0).sin()
            }
        });
        let d = DrrLike {
            flatten: 0.4,
            flatten_px: 6.0,
            ..plain_look()
        };
        let flat = d.flattened(&img);
        // the pattern's amplitude in the body, away from the air: 60 % of it is left
        let amp = |g: &GrayImage| {
            let row = &g.data[32 * 96..33 * 96];
            let trend = |x: usize| 0.3 + 0.003 * x as f32;
            (40..80)
                .map(|x| (row[x] - trend(x)).abs())
                .fold(0.0f32, f32::max)
        };
        let ratio = amp(&flat) / amp(&img);
        assert!((ratio - 0.6).abs() < 0.06, "pattern kept {ratio}");
        // the slow ramp stays (the mean over a period keeps its level)
        let mean = |g: &GrayImage, x0: usize| {
            g.data[32 * 96 + x0..32 * 96 + x0 + 6].iter().sum::<f32>() / 6.0
        };
        assert!((mean(&flat, 60) - mean(&img, 60)).abs() < 0.01);
        // the air stays black, and the body's rim is not pulled down by it
        assert!((0..64).all(|y| (0..16).all(|x| flat.data[y * 96 + x] == 0.0)));
        assert!(
            (mean(&flat, 16) - mean(&img, 16)).abs() < 0.03,
            "{} {}",
            mean(&flat, 16),
            mean(&img, 16)
        );
        // and the degradation applies it before its blur: none asked, none done
        let none = DrrLike {
            flatten: 0.0,
            ..d.clone()
        };
        assert!(none.flattened(&img).data == img.data);
        let applied = d.apply(&img, 1);
        let off = applied
            .data
            .iter()
            .zip(&flat.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(off < 1e-3, "apply differs from flattened by {off}");
    }

    #[test]
    fn a_look_that_turns_the_retired_mottle_on_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("dxr-mottle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut json = serde_json::to_value(plain_look()).unwrap();
        assert!(json.get("mottle").is_none(), "never written");
        let path = dir.join("look.json");
        json["mottle"] = serde_json::json!(0.0);
        std::fs::write(&path, json.to_string()).unwrap();
        assert!(Strategy::drr(&path).is_ok(), "named at 0: still loads");
        json["mottle"] = serde_json::json!(0.02);
        std::fs::write(&path, json.to_string()).unwrap();
        let e = Strategy::drr(&path).err().expect("refused").to_string();
        assert!(e.contains("\"mottle\" is a retired experiment"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_fixed_filter_sharpens_edges() {
        let soft = gaussian_blur(&img(64, 64, |x, _| if x < 32 { 0.3 } else { 0.7 }), 2.0);
        let f = FixedFilter::fit(&[&soft], &[&soft]).unwrap();
        let out = f.apply(&soft);
        // the steepest step across the edge grows
        let steepest = |g: &GrayImage| {
            g.data[32 * 64..33 * 64]
                .windows(2)
                .map(|p| (p[1] - p[0]).abs())
                .fold(0.0, f32::max)
        };
        let (a, b) = (steepest(&out), steepest(&soft));
        assert!(a > 1.15 * b, "steepest step {b} → {a}");
    }
}
