//! Restoring one image, whatever its size and scale:
//! grey [0, 1] → resampled to the model's pixel scale → [−1, 1] conditioning tensor → padded to
//! the network's multiple → sampler (over overlapping tiles when the whole image would not fit
//! the device's memory budget) → cropped back → grey [0, 1] → back at the input's size, with the
//! input's own detail above the model's band put back. Used by the CLI and the web API alike.

use std::ops::ControlFlow;

use burn::prelude::*;
use image::imageops::FilterType;
use serde::{Deserialize, Serialize};

use crate::checkpoint::LoadedModel;
use crate::device::MemoryBudget;
use crate::diffusion::sampler::{
    Denoiser, NoiseSource, PerItemNoise, SamplerRun, SamplerSettings, SeededNoise, StepInfo,
};
use crate::diffusion::schedule::Schedule;
use crate::diffusion::tiles::TileGrid;
use crate::error::{Error, Result};
use crate::io::InputScale;
use crate::io::{GrayImage, MAX_SIDE, MIN_SIDE};
use crate::model::pad_to_multiple;
use crate::scale::{ScaleDecision, decide};
use crate::spec::NetworkConfig;
use crate::spec::Size;

/// At which scale the result is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OutputScale {
    /// The input's size, its own detail above the model's band kept (default).
    #[default]
    Input,
    /// The size the model restored at.
    Model,
}

impl std::str::FromStr for OutputScale {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "input" => Ok(OutputScale::Input),
            "model" => Ok(OutputScale::Model),
            _ => Err(Error::Config(format!(
                "unknown output scale '{s}' (input or model)"
            ))),
        }
    }
}

/// How an image is to be restored, apart from the sampler.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreOptions {
    /// The result's scale.
    pub output: OutputScale,
    /// What the file (or the user) says about the input's scale.
    pub input_scale: InputScale,
    /// Bring the input to the model's scale first (false: restore at the input's pixels).
    pub to_model_scale: bool,
    /// Memory one network call may use; larger images run over tiles.
    pub budget: MemoryBudget,
    /// A tile side to use (pixels at the model's scale) instead of the largest that fits.
    pub tile: Option<usize>,
}

impl RestoreOptions {
    /// Defaults: the model's scale, output at the input's size, tiles chosen by `budget`.
    pub fn new(budget: MemoryBudget) -> Self {
        Self {
            output: OutputScale::Input,
            input_scale: InputScale::default(),
            to_model_scale: true,
            budget,
            tile: None,
        }
    }

    /// Restored at the input's own pixels, as the image is (training validation, evaluation
    /// on pairs that are already at the model's scale).
    pub fn at_input_pixels(budget: MemoryBudget) -> Self {
        Self {
            to_model_scale: false,
            ..Self::new(budget)
        }
    }
}

/// Everything decided before the first step: sizes, scale and tiles.
#[derive(Debug, Clone)]
pub struct RestorePlan {
    /// The input's size.
    pub input: Size,
    /// The size at the model's scale (what the sampler restores).
    pub model: Size,
    /// How the scale was found.
    pub scale: ScaleDecision,
    /// The result's scale.
    pub output: OutputScale,
    /// Tiles over the padded model-scale image.
    pub grid: TileGrid,
    /// The input resampled to the model's scale.
    model_input: GrayImage,
}

impl RestorePlan {
    /// The result's size.
    pub fn output_size(&self) -> Size {
        match self.output {
            OutputScale::Input => self.input,
            OutputScale::Model => self.model,
        }
    }

    /// Output pixels per input pixel (for labels).
    pub fn output_factor(&self) -> [f64; 2] {
        let out = self.output_size();
        [
            out.width as f64 / self.input.width as f64,
            out.height as f64 / self.input.height as f64,
        ]
    }

    /// The input as the model sees it (resampled to its scale).
    pub fn model_input(&self) -> &GrayImage {
        &self.model_input
    }

    /// One line for the user.
    pub fn describe(&self) -> String {
        let (input, model) = (self.input, self.model);
        let tiles = if self.grid.is_single() {
            "in one piece".to_string()
        } else {
            format!(
                "over {} tiles of {} ({} per network call)",
                self.grid.len(),
                self.grid.tile,
                self.grid.per_call
            )
        };
        format!(
            "{input} restored at {model} {tiles}; {}; output {}",
            self.scale.how,
            self.output_size()
        )
    }

    /// The same as JSON (the page shows it).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "input": self.input.wh(),
            "model": self.model.wh(),
            "output": self.output_size().wh(),
            "factor": self.scale.factor,
            "how": self.scale.how,
            "tiles": self.grid.len(),
            "tile": self.grid.tile.wh(),
            "per_call": self.grid.per_call,
            "text": self.describe(),
        })
    }

    /// The result at the planned output scale from the model-scale restoration. At the input's
    /// size: `up(restored) + (input − up(model_input))`, so whatever the input held above the
    /// model's band (fine detail a downsampling removed) is carried over unchanged, and only
    /// what the model changed is resampled.
    pub fn compose(&self, input: &GrayImage, restored: &GrayImage) -> GrayImage {
        if self.output == OutputScale::Model || self.model == self.input {
            return restored.clone();
        }
        let Size {
            width: w,
            height: h,
        } = self.input;
        let base = resample(restored, w, h);
        let low = resample(&self.model_input, w, h);
        GrayImage {
            width: w,
            height: h,
            data: input
                .data
                .iter()
                .zip(base.iter().zip(&low))
                .map(|(i, (b, l))| (b + i - l).clamp(0.0, 1.0))
                .collect(),
        }
    }
}

/// `img` resampled to `w × h`, unclamped: an area-weighted triangle filter when shrinking (no
/// aliasing), Catmull–Rom when enlarging.
fn resample(img: &GrayImage, w: usize, h: usize) -> Vec<f32> {
    if (img.width, img.height) == (w, h) {
        return img.data.clone();
    }
    let filter = if w * h < img.width * img.height {
        FilterType::Triangle
    } else {
        FilterType::CatmullRom
    };
    img.resampled_values(w, h, filter)
}

/// Tiles for a padded image of `size`: the whole image when it fits `budget`, else the largest
/// square tiles (a multiple of the network's) that do, overlapping by a quarter, as many per
/// call as the budget allows.
pub fn plan_tiles(
    net: &NetworkConfig,
    size: Size,
    budget: &MemoryBudget,
    forced: Option<usize>,
) -> Result<TileGrid> {
    let (h, w) = (size.height, size.width);
    let m = net.input_multiple();
    let need = |b: usize, th: usize, tw: usize| {
        net.memory_need(
            b,
            th,
            tw,
            budget.unfolds_convolutions,
            budget.materialises_attention,
        )
    };
    let fits = |b: usize, th: usize, tw: usize| {
        let n = need(b, th, tw);
        n.total <= budget.total && n.largest_buffer <= budget.largest_buffer
    };
    let side = match forced {
        Some(t) => {
            let t = t.next_multiple_of(m);
            if t < 16.max(m) {
                return Err(Error::Failed(format!(
                    "a tile of {t} px is too small: at least {} px for this network",
                    16.max(m)
                )));
            }
            t
        }
        None if fits(1, h, w) => h.max(w),
        None => {
            let mut largest = h.max(w).next_multiple_of(m);
            while largest > m && !fits(1, largest.min(h), largest.min(w)) {
                largest -= m;
            }
            // Of the sides that fit, down to half the largest (smaller tiles see less context),
            // the one that makes the network process the fewest pixels: a tile just under the
            // image would otherwise cost nearly a whole image per tile.
            let pixels = |s: usize| {
                let (th, tw, o) = (s.min(h), s.min(w), (s / 4).max(1));
                let n = |len: usize, t: usize| {
                    if t >= len {
                        1
                    } else {
                        (len - o).div_ceil(t - o).max(2)
                    }
                };
                n(h, th) * n(w, tw) * th * tw
            };
            let mut best = largest;
            let mut s = largest;
            while s >= (largest / 2).max(16.max(m)) {
                if pixels(s) < pixels(best) {
                    best = s;
                }
                s -= m;
            }
            best
        }
    };
    let (th, tw) = (side.min(h), side.min(w));
    if !fits(1, th, tw) {
        let n = need(1, th, tw);
        return Err(Error::Budget(format!(
            "a {tw}×{th} tile needs about {} MiB ({} MiB in one buffer), over the memory budget \
             of {budget}; raise the budget or use a model with more levels",
            n.total >> 20,
            n.largest_buffer >> 20
        )));
    }
    let one = need(1, th, tw);
    let overlap = (side / 4).max(1);
    let margin = overlap / 4;
    let mut grid = TileGrid::new(size, Size::new(tw, th), overlap, margin, 1)?;
    let by_total = (budget.total / one.total.max(1)) as usize;
    let by_buffer = (budget.largest_buffer / one.largest_buffer.max(1)) as usize;
    let per_call = by_total.min(by_buffer).clamp(1, grid.len());
    grid.per_call = per_call;
    Ok(grid)
}

/// A loaded model with its schedule built once.
pub struct Restorer {
    pub model: LoadedModel,
    pub schedule: Schedule,
}

/// A finished restoration and how it was done.
pub struct Restored {
    pub image: GrayImage,
    pub plan: RestorePlan,
}

impl Restorer {
    /// Checks that the model is a restoration model (it has conditioning channels) and builds
    /// its schedule.
    pub fn new(model: LoadedModel) -> Result<Self> {
        model.spec.network.cond_channels()?;
        let schedule = model.spec.schedule.build()?;
        Ok(Self { model, schedule })
    }

    /// Decides the scale, the model-scale size and the tiles for `image`.
    pub fn plan(&self, image: &GrayImage, opts: &RestoreOptions) -> Result<RestorePlan> {
        GrayImage::check_size(image.width, image.height)?;
        if image.data.len() != image.width * image.height {
            return Err(Error::Image(format!(
                "the image holds {} values for {}×{} pixels",
                image.data.len(),
                image.width,
                image.height
            )));
        }
        let (w, h) = (image.width, image.height);
        // 1. the scale
        let mut scale = if opts.to_model_scale {
            decide(self.model.spec.scale.as_ref(), &opts.input_scale, image)
        } else {
            ScaleDecision {
                factor: 1.0,
                how: "restored at the image's own pixels".into(),
            }
        };
        // keep both sides within the accepted sizes
        let lo = MIN_SIDE as f64 / w.min(h) as f64;
        let hi = MAX_SIDE as f64 / w.max(h) as f64;
        if scale.factor < lo || scale.factor > hi {
            scale.factor = scale.factor.clamp(lo, hi);
            scale.how += &format!(
                " (limited to ×{:.3} to stay within {MIN_SIDE}..={MAX_SIDE} px)",
                scale.factor
            );
        }
        let model = if scale.factor == 1.0 {
            Size::new(w, h)
        } else {
            Size::new(
                ((w as f64 * scale.factor).round() as usize).max(MIN_SIDE),
                ((h as f64 * scale.factor).round() as usize).max(MIN_SIDE),
            )
        };
        let model_input = GrayImage {
            width: model.width,
            height: model.height,
            data: resample(image, model.width, model.height)
                .into_iter()
                .map(|v| v.clamp(0.0, 1.0))
                .collect(),
        };
        // 2. the tiles over the padded image
        let m = self.model.spec.network.input_multiple();
        let padded = model.next_multiple_of(m);
        let grid = plan_tiles(&self.model.spec.network, padded, &opts.budget, opts.tile)?;
        Ok(RestorePlan {
            input: Size::new(w, h),
            model,
            scale,
            output: opts.output,
            grid,
            model_input,
        })
    }

    /// Restores `image` on `device` as `opts` say; `progress` is called after every step and
    /// cancels with `ControlFlow::Break`.
    pub fn restore(
        &self,
        image: &GrayImage,
        opts: &RestoreOptions,
        settings: &SamplerSettings,
        noise: &mut dyn NoiseSource,
        device: &Device,
        progress: &mut dyn FnMut(StepInfo) -> ControlFlow<()>,
    ) -> Result<Restored> {
        let plan = self.plan(image, opts)?;
        let mut run = self.begin(&plan, settings, noise, device)?;
        while !run.is_done() {
            if let ControlFlow::Break(()) = progress(run.step(noise)) {
                return Err(Error::Cancelled);
            }
        }
        let restored = to_gray(run.finish())?;
        let image = plan.compose(image, &restored);
        Ok(Restored { image, plan })
    }

    /// Prepares a restoration to be advanced step by step (the page drives it between
    /// browser events).
    pub fn begin<'a>(
        &'a self,
        plan: &'a RestorePlan,
        settings: &SamplerSettings,
        noise: &mut dyn NoiseSource,
        device: &Device,
    ) -> Result<RestoreRun<'a>> {
        self.begin_batch(&[plan], settings, noise, device)
    }

    /// [`Restorer::begin`] for several plans of one model-scale size run as one batch.
    fn begin_batch<'a>(
        &'a self,
        plans: &[&'a RestorePlan],
        settings: &SamplerSettings,
        noise: &mut dyn NoiseSource,
        device: &Device,
    ) -> Result<RestoreRun<'a>> {
        let net_cfg = &self.model.spec.network;
        let plan = plans[0];
        let Size {
            width: w,
            height: h,
        } = plan.model;
        // 1. grey [0, 1] → [−1, 1], repeated over the conditioning channels (3 for RGB models)
        let conds = plans
            .iter()
            .map(|p| {
                let lq: Vec<f32> = p.model_input.data.iter().map(|v| v * 2.0 - 1.0).collect();
                Tensor::<4>::from_data(TensorData::new(lq, [1, 1, h, w]), device)
            })
            .collect();
        let cond = Tensor::cat(conds, 0).repeat_dim(1, net_cfg.cond_channels()?);
        // 2. pad to the network's multiple
        let cond = pad_to_multiple(cond, net_cfg.input_multiple()); // [b, c_cond, H', W']
        // 3. the sampler over the planned tiles, ready to step
        let den = Denoiser::new(
            &self.model.network,
            &self.schedule,
            self.model.spec.prediction,
        )
        .with_tiles(Some(&plan.grid));
        let run = SamplerRun::new(den, cond, net_cfg.image_channels(), settings, noise)?;
        Ok(RestoreRun {
            run,
            height: h,
            width: w,
        })
    }

    /// How many images planned like `plan` one network call may take at once within `budget`
    /// (1 for an image restored over tiles), at most [`MAX_BATCH`].
    pub fn batch_size(&self, plan: &RestorePlan, budget: &MemoryBudget) -> usize {
        if !plan.grid.is_single() {
            return 1;
        }
        let Size {
            width: w,
            height: h,
        } = plan.grid.size;
        let fits = |b: usize| {
            let n = self.model.spec.network.memory_need(
                b,
                h,
                w,
                budget.unfolds_convolutions,
                budget.materialises_attention,
            );
            n.total <= budget.total && n.largest_buffer <= budget.largest_buffer
        };
        (1..=MAX_BATCH).take_while(|&b| fits(b)).last().unwrap_or(1)
    }

    /// Restores images of one size as one batch, image `k` with noise `noises[k]`: each result
    /// is what [`Restorer::restore`] gives that image with that noise alone (the network sees
    /// a batch: on a GPU several items per call cost little more than one). Images whose plans
    /// differ (size, scale, tiles) are refused; split them into batches of one plan.
    pub fn restore_batch(
        &self,
        images: &[GrayImage],
        opts: &RestoreOptions,
        settings: &SamplerSettings,
        noises: Vec<SeededNoise>,
        device: &Device,
        progress: &mut dyn FnMut(StepInfo) -> ControlFlow<()>,
    ) -> Result<Vec<Restored>> {
        if images.is_empty() || noises.len() != images.len() {
            return Err(Error::Failed(format!(
                "a batch of {} images needs as many noise seeds, got {}",
                images.len(),
                noises.len()
            )));
        }
        let plans: Vec<RestorePlan> = images
            .iter()
            .map(|i| self.plan(i, opts))
            .collect::<Result<_>>()?;
        if plans.iter().any(|p| {
            p.model != plans[0].model || p.grid != plans[0].grid || p.input != plans[0].input
        }) {
            return Err(Error::Failed(
                "the images of a batch must have one size and scale".into(),
            ));
        }
        let mut noise = PerItemNoise(noises);
        let refs: Vec<&RestorePlan> = plans.iter().collect();
        let mut run = self.begin_batch(&refs, settings, &mut noise, device)?;
        while !run.is_done() {
            if let ControlFlow::Break(()) = progress(run.step(&mut noise)) {
                return Err(Error::Cancelled);
            }
        }
        let out = run.finish(); // [b, 1, h, w]
        let b = images.len();
        let [_, _, h, w] = out.dims();
        plans
            .into_iter()
            .zip(images)
            .enumerate()
            .map(|(k, (plan, image))| {
                let restored = to_gray(out.clone().slice([k..k + 1, 0..1, 0..h, 0..w]))?;
                debug_assert!(k < b);
                Ok(Restored {
                    image: plan.compose(image, &restored),
                    plan,
                })
            })
            .collect()
    }
}

/// Most images one batched network call takes.
pub const MAX_BATCH: usize = 16;

/// A `[1, 1, h, w]` tensor read back as a grey image.
pub fn to_gray(x: Tensor<4>) -> Result<GrayImage> {
    let [_, _, h, w] = x.dims();
    let data = x
        .into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::Device(format!("reading the result back failed: {e:?}")))?;
    Ok(GrayImage {
        width: w,
        height: h,
        data,
    })
}

/// A restoration in progress.
pub struct RestoreRun<'a> {
    run: SamplerRun<'a>,
    height: usize,
    width: usize,
}

impl RestoreRun<'_> {
    /// Runs the next sampler step (queued on the device; see [`Self::sync_value`]).
    pub fn step(&mut self, noise: &mut dyn NoiseSource) -> StepInfo {
        self.run.step(noise)
    }
    /// Steps in this run.
    pub fn total(&self) -> usize {
        self.run.total()
    }
    /// True when every step has run.
    pub fn is_done(&self) -> bool {
        self.run.is_done()
    }
    /// One value of the current sample: reading it back waits until the device has finished
    /// the step, so progress counts work done, not work queued.
    ///
    /// # Shapes
    /// - output: `[1, 1, 1, 1]`
    pub fn sync_value(&self) -> Tensor<4> {
        self.run.current().clone().slice([0..1, 0..1, 0..1, 0..1])
    }
    /// The current sample as an image (a preview while running), at the model's scale.
    ///
    /// # Shapes
    /// - output: `[1, 1, height, width]`, values in [0, 1]
    pub fn preview(&self) -> Tensor<4> {
        to_image(self.run.current().clone(), self.height, self.width)
    }
    /// The restored image at the model's scale.
    ///
    /// # Shapes
    /// - output: `[1, 1, height, width]`, values in [0, 1]
    pub fn finish(self) -> Tensor<4> {
        to_image(self.run.into_output(), self.height, self.width)
    }
}

/// Crops the padding, averages the channels and maps [−1, 1] to [0, 1].
///
/// # Shapes
/// - x: `[b, c, H', W']` → `[b, 1, height, width]`
fn to_image(x: Tensor<4>, height: usize, width: usize) -> Tensor<4> {
    let [b, c, _, _] = x.dims();
    let x = x.slice([0..b, 0..c, 0..height, 0..width]).mean_dim(1); // [b, 1, h, w]
    ((x + 1.0) / 2.0).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::CheffUnetConfig;

    fn ramp(w: usize, h: usize) -> GrayImage {
        GrayImage::from_fn(w, h, |x, y| {
            let edge = if (x / 7 + y / 11) % 2 == 0 { 0.7 } else { 0.2 };
            edge + 0.05 * ((x * 13 + y * 7) % 5) as f32
        })
    }

    #[test]
    fn composing_an_unchanged_restoration_gives_the_input_back() {
        // Whatever the factor, a model that changed nothing returns the input exactly: the
        // input's detail above the model's band is carried over.
        for (w, h, f) in [
            (200usize, 120usize, 0.5f64),
            (64, 96, 1.7),
            (300, 300, 0.31),
        ] {
            let input = ramp(w, h);
            let model = Size::new(
                (w as f64 * f).round() as usize,
                (h as f64 * f).round() as usize,
            );
            let model_input = GrayImage {
                width: model.width,
                height: model.height,
                data: resample(&input, model.width, model.height)
                    .into_iter()
                    .map(|v| v.clamp(0.0, 1.0))
                    .collect(),
            };
            let plan = RestorePlan {
                input: Size::new(w, h),
                model,
                scale: ScaleDecision {
                    factor: f,
                    how: String::new(),
                },
                output: OutputScale::Input,
                grid: TileGrid::new(model, model, 1, 0, 1).unwrap(),
                model_input: model_input.clone(),
            };
            let out = plan.compose(&input, &model_input);
            let err = out
                .data
                .iter()
                .zip(&input.data)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(err < 1e-5, "{w}×{h} ×{f}: {err}");
            let plan = RestorePlan {
                output: OutputScale::Model,
                ..plan
            };
            assert_eq!(plan.compose(&input, &model_input), model_input);
        }
    }

    #[test]
    fn tiles_appear_only_beyond_the_budget() {
        let net = NetworkConfig::Cheff(
            CheffUnetConfig::new()
                .with_dim(16)
                .with_dim_mults(vec![1, 2, 4])
                .with_num_attention_layer(2),
        );
        let cpu = MemoryBudget::cpu();
        let small = plan_tiles(&net, Size::new(256, 256), &cpu, None).unwrap();
        assert!(small.is_single());
        // 1024² with full attention at 256²: 64 GiB for the whole image; tiles fit.
        let big = plan_tiles(&net, Size::new(1024, 1024), &cpu, None).unwrap();
        assert!(big.len() > 1);
        let n = net.memory_need(big.per_call, big.tile.height, big.tile.width, true, true);
        assert!(n.total <= cpu.total, "{n:?}");
        // A strip: tiles along its length only.
        let strip = plan_tiles(&net, Size::new(8192, 512), &cpu, None).unwrap();
        assert!(strip.origins[1].len() > 1);
        // A forced tile is used; a budget too small for any tile is a named error.
        let forced = plan_tiles(&net, Size::new(256, 256), &cpu, Some(64)).unwrap();
        assert_eq!(forced.tile, Size::new(64, 64));
        let tiny = cpu.with_total_mib(1).unwrap();
        let err = plan_tiles(&net, Size::new(256, 256), &tiny, Some(256))
            .unwrap_err()
            .to_string();
        assert!(err.contains("memory budget"), "{err}");
        assert!(plan_tiles(&net, Size::new(256, 256), &cpu, Some(4)).is_err());
    }
}
