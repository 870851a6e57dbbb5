//! Diffusion trainers on the cheff/SR3 UNet: DDPM-HQ (conditional: input cat[x_t, LQ], the
//! restoration model) and DDPM-LQ (unconditional: the LQ domain's look), both with the L1 loss
//! on the predicted noise; and SDEdit with optional ILVR guidance, which uses a DDPM-LQ model to
//! turn HQ radiographs into LQ-looking ones with the anatomy in place.

use std::path::Path;

use burn::optim::GradientsParams;
use burn::prelude::*;
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use super::data::{Augment, Domain, PairSet, draw_rng};
use super::optim::{Adam, Ema, Steps, params, set_params};
use super::parallel::DataParallel;
use super::precision::{self, Precision};
use super::{MODEL_FILE, StateFile, Trainer, Validation};
use crate::checkpoint::{LoadedModel, SaveDType, to_safetensors_bytes};
use crate::diffusion::sampler::{SamplerKind, SamplerSettings, SeededNoise};
use crate::diffusion::schedule::Schedule;
use crate::eval::metrics;
use crate::io::{GrayImage, write_atomic};
use crate::model::{Network, pad_to_multiple};
use crate::restore::{RestoreOptions, Restorer, to_gray};
use crate::spec::{ModelSpec, Prediction};
use crate::{Error, Result};

/// What a DDPM run is set up with (stored in its state; a resume must match).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DdpmSettings {
    pub spec: ModelSpec,
    /// Batch, crops, Adam (the authors' rate: 5e-5), EMA and seed.
    #[serde(flatten)]
    pub steps: Steps,
    /// Sampler steps of the validation restorations (DPM-Solver++).
    pub val_steps: usize,
    /// Float type of the forward and backward passes (master weights stay f32).
    #[serde(default)]
    pub precision: Precision,
}

/// Where the training images come from.
pub enum DdpmData {
    /// (LQ, HQ) pairs: the conditional restoration model.
    Pairs(PairSet),
    /// One domain: the unconditional model.
    Domain(Domain, Augment),
}

/// Held-out data for validation.
pub enum DdpmVal {
    None,
    /// Up to 8 centre crops of held-out pairs: restored with the EMA weights, PSNR/SSIM.
    Pairs(Vec<(GrayImage, GrayImage)>),
    /// Held-out patches: the L1 noise loss at fixed timesteps and noise with the EMA weights.
    Patches(Vec<Vec<f32>>),
}

pub struct DdpmTrainer {
    pub settings: DdpmSettings,
    schedule: Schedule,
    net: Network,
    adam: Adam,
    ema: Ema,
    device: Device,
    /// The devices a step is spread over (only `device` unless [`DdpmTrainer::data_parallel`]).
    parallel: DataParallel,
    data: DdpmData,
    val: DdpmVal,
    conditional: bool,
}

/// Side `patch` centre crops of the first 8 pairs of a set.
pub fn val_pairs(set: &PairSet, patch: usize) -> Vec<(GrayImage, GrayImage)> {
    let crop = |img: &GrayImage| {
        let s = patch.min(img.width).min(img.height);
        let (x0, y0) = ((img.width - s) / 2, (img.height - s) / 2);
        GrayImage {
            width: s,
            height: s,
            data: (0..s * s)
                .map(|p| img.data[(y0 + p / s) * img.width + x0 + p % s])
                .collect(),
        }
    };
    set.lq
        .iter()
        .zip(&set.hq)
        .take(8)
        .map(|(l, h)| (crop(l), crop(h)))
        .collect()
}

impl DdpmTrainer {
    /// `device` is the plain device; training runs on its autodiff twin.
    pub fn new(
        settings: DdpmSettings,
        data: DdpmData,
        val: DdpmVal,
        device: &Device,
    ) -> Result<Self> {
        let net_cfg = &settings.spec.network;
        net_cfg.validate()?;
        let conditional = net_cfg.cond_channels().is_ok();
        match (&data, conditional) {
            (DdpmData::Pairs(p), true) => p.check_patch(settings.steps.patch)?,
            (DdpmData::Domain(d, _), false) => d.check_patch(settings.steps.patch)?,
            (DdpmData::Pairs(_), false) => {
                return Err(Error::Config("a pair set trains a conditional network: its input needs 2 channels (x_t and LQ)".into()));
            }
            (DdpmData::Domain(..), true) => {
                return Err(Error::Config(
                    "a single domain trains an unconditional network: its input needs 1 channel"
                        .into(),
                ));
            }
        }
        if net_cfg.image_channels() != 1 {
            return Err(Error::Config(
                "training is for greyscale radiographs: the network must predict 1 channel".into(),
            ));
        }
        let m = net_cfg.input_multiple();
        if !settings.steps.patch.is_multiple_of(m) || settings.steps.batch == 0 {
            return Err(Error::Config(format!(
                "the patch side {} must be a multiple of {m} for this network, and the batch ≥ 1",
                settings.steps.patch
            )));
        }
        let schedule = settings.spec.schedule.build()?;
        settings.precision.check(device)?;
        let ad = device.clone().autodiff();
        let net = super::init_seeded(net_cfg, &ad, settings.steps.seed)?;
        let ema = Ema::new(&net, settings.steps.ema_decay);
        Ok(Self {
            adam: Adam::new(settings.steps.lr, settings.steps.betas),
            settings,
            schedule,
            net,
            ema,
            device: device.clone(),
            parallel: DataParallel::single(device),
            data,
            val,
            conditional,
        })
    }

    /// Spreads every step over `devices` (the first must be the trainer's own, which keeps the
    /// state): each takes its slice of the batch. The settings, and so the state file, do not
    /// change: a run resumes on any number of devices.
    pub fn data_parallel(&mut self, devices: Vec<Device>) -> Result<()> {
        if devices.first() != Some(&self.device) {
            return Err(Error::Device(
                "the first of --devices must be the device the trainer was built on".into(),
            ));
        }
        for d in &devices {
            self.settings.precision.check(d)?;
        }
        self.parallel = DataParallel::new(devices, self.settings.steps.batch)?;
        Ok(())
    }

    /// The network being trained (autodiff device; not the EMA weights).
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// The L1 loss of batch `step` (the whole batch's mean) and its gradients, on the main
    /// device, spread over the data-parallel devices.
    pub fn loss_and_grads(&self, step: u64) -> Result<(f64, GradientsParams)> {
        let (xt, cond, target, ts) = self.batch(step);
        let per = self.settings.steps.patch * self.settings.steps.patch;
        let items = |v: &[f32], r: &std::ops::Range<usize>| -> Vec<f32> {
            v.get(r.start * per..r.end * per)
                .unwrap_or_default()
                .to_vec()
        };
        let precision = self.settings.precision;
        let scale = precision.loss_scale();
        let (value, grads) = self
            .parallel
            .loss_and_grads(&self.net, ts.len(), |net, r, ad| {
                let n = r.len() * per;
                let (xt, cond) = (items(&xt, &r), items(&cond, &r));
                let pred = if precision == Precision::F32 {
                    self.predict(net, xt, cond, &ts[r.clone()], ad, None)
                } else {
                    let half = precision::cast_copy(net, precision.dtype());
                    self.predict(&half, xt, cond, &ts[r.clone()], ad, Some(precision))
                        .cast(burn::tensor::DType::F32)
                };
                let target = Tensor::<1>::from_data(TensorData::new(items(&target, &r), [n]), ad)
                    .reshape(pred.dims());
                let loss = (pred - target).abs().mean();
                Ok(if scale == 1.0 {
                    loss
                } else {
                    loss.mul_scalar(scale)
                })
            })?;
        Ok((value / scale, grads))
    }

    /// The network with the EMA weights, for sampling (plain device).
    pub fn ema_network(&self) -> Result<Network> {
        set_params(self.net.valid(), &self.ema.values)
    }

    /// Starts from a trained model's weights (fine-tuning) instead of the seeded
    /// initialisation; the EMA starts from them too. The network must be the same.
    pub fn init_from(&mut self, model: &LoadedModel) -> Result<()> {
        if model.spec.network != self.settings.spec.network {
            return Err(Error::Usage(
                "--init: the model's network is not the one being trained (see `dxr info`)".into(),
            ));
        }
        // training runs in f32 whatever the file holds (the shipped default is f16)
        let values: Vec<_> = params(&model.network)
            .into_iter()
            .map(|t| t.cast(burn::tensor::DType::F32).to_device(&self.device))
            .collect();
        self.net = set_params(self.net.clone(), &values)?;
        self.ema.values = values;
        Ok(())
    }

    /// Batch of draw `step`: x_t, the conditioning, the target (the noise, or x₀ for an x₀
    /// model) and the timesteps.
    fn batch(&self, step: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<i64>) {
        let s = &self.settings;
        let (b, p) = (s.steps.batch, s.steps.patch);
        let x0_target = s.spec.prediction == Prediction::X0;
        let (mut xt, mut cond, mut target, mut ts) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for item in 0..b {
            let (lq, hq) = match &self.data {
                DdpmData::Pairs(set) => {
                    let (l, h) = set.crop(s.steps.seed, step, item, p);
                    (Some(l), h)
                }
                DdpmData::Domain(d, aug) => (None, d.patch(s.steps.seed, step, item, p, aug)),
            };
            let mut rng = draw_rng(s.steps.seed ^ 0xd1ff, step, item);
            let t = rng.random_range(0..self.schedule.len());
            let (a, c) = coefs(&self.schedule, t);
            for v in &hq {
                let e: f32 = rng.sample(StandardNormal);
                xt.push(a * (v * 2.0 - 1.0) + c * e);
                target.push(if x0_target { v * 2.0 - 1.0 } else { e });
            }
            if let Some(l) = lq {
                cond.extend(l.iter().map(|v| v * 2.0 - 1.0));
            }
            ts.push(t as i64);
        }
        (xt, cond, target, ts)
    }

    /// ε prediction for a host batch (x_t and, for the conditional model, LQ), on `net`.
    fn predict(
        &self,
        net: &Network,
        xt: Vec<f32>,
        cond: Vec<f32>,
        ts: &[i64],
        device: &Device,
        half: Option<Precision>,
    ) -> Tensor<4> {
        let (b, p) = (ts.len(), xt.len() / ts.len());
        let side = (p as f64).sqrt() as usize;
        let cast = |t: Tensor<4>| match half {
            Some(p) => t.cast(p.dtype()),
            None => t,
        };
        let x = cast(Tensor::<4>::from_data(
            TensorData::new(xt, [b, 1, side, side]),
            device,
        ));
        let times: Vec<f32> = ts
            .iter()
            .map(|&t| self.schedule.time_value(net.family(), t))
            .collect();
        let input = if self.conditional {
            let c = cast(Tensor::<4>::from_data(
                TensorData::new(cond, [b, 1, side, side]),
                device,
            ));
            net.join_input(x, c)
        } else {
            x
        };
        net.forward_raw(input, &times)
    }
}

impl Trainer for DdpmTrainer {
    fn kind(&self) -> &'static str {
        if self.conditional {
            "ddpm-hq"
        } else {
            "ddpm-lq"
        }
    }

    fn settings_json(&self) -> String {
        serde_json::to_string(&self.settings).expect("serialisable")
    }

    fn step(&mut self, step: u64) -> Result<f64> {
        let (value, grads) = self.loss_and_grads(step)?;
        let precision = self.settings.precision;
        let grads = if precision == Precision::F32 {
            grads
        } else {
            let (grads, finite) = precision::unscale(&self.net, grads, precision.loss_scale());
            if !finite {
                // an overflow in half precision: no update, the next batch goes on
                eprintln!(
                    "step {step}: the {} gradients overflowed (loss scale {}); step skipped",
                    precision.name(),
                    precision.loss_scale()
                );
                return Ok(value);
            }
            grads
        };
        self.net = self.adam.step(self.net.clone(), grads);
        self.ema.update(&self.net);
        Ok(value)
    }

    fn validate(&mut self) -> Result<Option<Validation>> {
        match &self.val {
            DdpmVal::None => Ok(None),
            DdpmVal::Pairs(pairs) => {
                let restorer = Restorer::new(LoadedModel {
                    network: self.ema_network()?,
                    spec: self.settings.spec.clone(),
                })?;
                let settings = SamplerSettings {
                    kind: SamplerKind::Dpmpp,
                    steps: self.settings.val_steps.clamp(1, self.schedule.len()),
                    eta: 0.0,
                    clip_denoised: true,
                };
                let opts = RestoreOptions::at_input_pixels(crate::device::MemoryBudget::cpu());
                let (mut p, mut s) = (0.0, 0.0);
                for (lq, hq) in pairs {
                    let mut noise = SeededNoise::new(self.settings.steps.seed);
                    let out = restorer
                        .restore(lq, &opts, &settings, &mut noise, &self.device, &mut |_| {
                            std::ops::ControlFlow::Continue(())
                        })?
                        .image;
                    let (a, b) = (to_f64(&hq.data), to_f64(&out.data));
                    p += metrics::psnr(&a, &b, 1.0)?.min(100.0);
                    s += metrics::ssim(&a, &b, hq.width, hq.height, 1.0)?;
                }
                let n = pairs.len().max(1) as f64;
                Ok(Some(Validation {
                    psnr: Some(p / n),
                    ssim: Some(s / n),
                    loss: None,
                }))
            }
            DdpmVal::Patches(patches) => {
                let net = self.ema_network()?;
                let mut total = 0.0;
                let fixed = [100usize, 500, 1000, 1500].map(|t| t.min(self.schedule.len() - 1));
                for (k, patch) in patches.iter().enumerate() {
                    for &t in &fixed {
                        let mut rng = draw_rng(0x7a1, k as u64, t);
                        let (a, c) = coefs(&self.schedule, t);
                        let noise: Vec<f32> =
                            patch.iter().map(|_| rng.sample(StandardNormal)).collect();
                        let xt: Vec<f32> = patch
                            .iter()
                            .zip(&noise)
                            .map(|(v, e)| a * (v * 2.0 - 1.0) + c * e)
                            .collect();
                        let pred: Vec<f32> = self
                            .predict(&net, xt, Vec::new(), &[t as i64], &self.device, None)
                            .into_data()
                            .try_to_vec::<f32>()
                            .map_err(|e| Error::Device(format!("{e:?}")))?;
                        let target: Vec<f32> = match self.settings.spec.prediction {
                            Prediction::Eps => noise,
                            Prediction::X0 => patch.iter().map(|v| v * 2.0 - 1.0).collect(),
                        };
                        total += pred
                            .iter()
                            .zip(&target)
                            .map(|(p, e)| (p - e).abs() as f64)
                            .sum::<f64>()
                            / target.len() as f64;
                    }
                }
                Ok(Some(Validation {
                    psnr: None,
                    ssim: None,
                    loss: Some(total / (patches.len() * fixed.len()).max(1) as f64),
                }))
            }
        }
    }

    fn save(&self, file: &mut StateFile) -> Result<()> {
        file.put("model", &params(&self.net))?;
        file.put_ema(&self.ema)?;
        file.put_adam("adam", &self.adam)?;
        file.meta.insert(
            crate::checkpoint::SPEC_KEY.into(),
            self.settings.spec.to_json(),
        );
        Ok(())
    }

    fn load(&mut self, file: &StateFile) -> Result<()> {
        let plain = self.device.clone();
        let n = params(&self.net).len();
        self.net = set_params(self.net.clone(), &file.take_exact("model", n, &plain)?)?;
        file.take_ema(&mut self.ema, n, &plain)?;
        file.take_adam("adam", &mut self.adam, n, &plain)?;
        Ok(())
    }

    fn export(&self, dir: &Path) -> Result<()> {
        let bytes =
            to_safetensors_bytes(&self.ema_network()?, &self.settings.spec, SaveDType::F32)?;
        write_atomic(&dir.join(MODEL_FILE), &bytes)
    }
}

/// √ᾱ_t and √(1 − ᾱ_t).
fn coefs(schedule: &Schedule, t: usize) -> (f32, f32) {
    let ac = schedule.alphas_cumprod[t];
    (ac.sqrt(), (1.0 - ac).max(0.0).sqrt())
}

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|x| *x as f64).collect()
}

/// How SDEdit translates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sdedit {
    /// Fraction of T the input is noised to (0, 1].
    pub strength: f64,
    /// Deterministic DDIM steps from there to 0.
    pub steps: usize,
    /// ILVR low-pass block size; `None` = no guidance.
    pub ilvr: Option<usize>,
    pub seed: u64,
}

/// SDEdit: noise `image` to strength `s` (t₀ = s·(T−1)), then denoise with the unconditional
/// `net` by deterministic DDIM over `steps` steps. With `ilvr = Some(n)`, every step replaces the
/// sample's low frequencies (n×n block means) by those of the input noised to the same level
/// (ILVR), which keeps the anatomy where it was.
pub fn sdedit(
    model: &LoadedModel,
    schedule: &Schedule,
    image: &GrayImage,
    settings: &Sdedit,
    device: &Device,
) -> Result<GrayImage> {
    let Sdedit {
        strength,
        steps,
        ilvr,
        seed,
    } = *settings;
    if !(strength > 0.0 && strength <= 1.0) {
        return Err(Error::Sampler(format!(
            "SDEdit strength {strength} must be in (0, 1]"
        )));
    }
    if steps == 0 {
        return Err(Error::Sampler("SDEdit needs at least one step".into()));
    }
    if model.spec.network.cond_channels().is_ok() {
        return Err(Error::Config(
            "SDEdit needs an unconditional (DDPM-LQ) model; this one takes a conditioning image"
                .into(),
        ));
    }
    let net = &model.network;
    let factor = ilvr.unwrap_or(1).max(1);
    let (w, h) = (image.width, image.height);
    let multiple = model
        .spec
        .network
        .input_multiple()
        .max(factor)
        .next_power_of_two();
    let y = Tensor::<4>::from_data(
        TensorData::new(
            image
                .data
                .iter()
                .map(|v| v * 2.0 - 1.0)
                .collect::<Vec<f32>>(),
            [1, 1, h, w],
        ),
        device,
    );
    let y = pad_to_multiple(y, multiple);
    let dims = y.dims();
    let t_len = schedule.len();
    let t0 = ((strength * (t_len - 1) as f64).round() as usize).min(t_len - 1);
    // timesteps t0 > … > 0, evenly spaced
    let n = steps.min(t0 + 1);
    let ts: Vec<usize> = (0..n)
        .map(|k| (t0 as f64 * (1.0 - k as f64 / n as f64)).round() as usize)
        .collect();
    let mut rng = draw_rng(seed, 0, 0);
    let mut gauss = |device: &Device| {
        let v: Vec<f32> = (0..dims.iter().product::<usize>())
            .map(|_| rng.sample(StandardNormal))
            .collect();
        Tensor::<4>::from_data(TensorData::new(v, dims), device)
    };
    let ac = |t: Option<usize>| -> f32 { t.map(|t| schedule.alphas_cumprod[t]).unwrap_or(1.0) };
    let noised = |y: &Tensor<4>, t: Option<usize>, e: Tensor<4>| {
        y.clone() * ac(t).sqrt() + e * (1.0 - ac(t)).max(0.0).sqrt()
    };
    let mut x = noised(&y, Some(t0), gauss(device));
    for (k, &t) in ts.iter().enumerate() {
        let prev = ts.get(k + 1).copied();
        let out = net.forward_raw(x.clone(), &[schedule.time_value(net.family(), t as i64)]);
        let eps = model
            .spec
            .prediction
            .eps(out, x.clone(), t as i64, schedule);
        let x0 =
            ((x - eps.clone() * (1.0 - ac(Some(t))).sqrt()) / ac(Some(t)).sqrt()).clamp(-1.0, 1.0);
        x = x0.clone() * ac(prev).sqrt() + eps * (1.0 - ac(prev)).max(0.0).sqrt();
        if ilvr.is_some() {
            let target = if prev.is_some() {
                noised(&y, prev, gauss(device))
            } else {
                y.clone()
            };
            x = x.clone() - low_pass(x, factor) + low_pass(target, factor);
        }
    }
    to_gray(((x.slice([0..1, 0..1, 0..h, 0..w]) + 1.0) / 2.0).clamp(0.0, 1.0))
}

/// Block means of `n×n` tiles, repeated back to full size (H, W multiples of n).
///
/// # Shapes
/// - x: `[b, c, h, w]` → `[b, c, h, w]`
fn low_pass(x: Tensor<4>, n: usize) -> Tensor<4> {
    if n <= 1 {
        return x;
    }
    let [b, c, h, w] = x.dims();
    let blocks = x
        .reshape([b * c, h / n, n, w / n, n])
        .mean_dim(4)
        .mean_dim(2); // [bc, h/n, 1, w/n, 1]
    blocks
        .repeat_dim(2, n)
        .repeat_dim(4, n)
        .reshape([b, c, h, w])
}

/// The paper's baseline degradation: bicubic downsampling by `factor`, then bicubic upsampling
/// back to the original size.
pub fn bicubic_degrade(image: &GrayImage, factor: f64) -> Result<GrayImage> {
    if !(factor >= 1.0 && factor.is_finite()) {
        return Err(Error::Image(format!("bicubic factor {factor} must be ≥ 1")));
    }
    use image::imageops::FilterType::CatmullRom;
    let (w, h) = (image.width, image.height);
    let (sw, sh) = (
        ((w as f64 / factor).round() as usize).max(1),
        ((h as f64 / factor).round() as usize).max(1),
    );
    Ok(image.resized(sw, sh, CatmullRom).resized(w, h, CatmullRom))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_pass_keeps_block_means_and_is_flat_inside_blocks() {
        let device = crate::device::cpu();
        let v: Vec<f32> = (0..2 * 8 * 12)
            .map(|k| ((k * 37) % 11) as f32 / 11.0)
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(v.clone(), [2, 1, 8, 12]), &device);
        let lp: Vec<f32> = low_pass(x, 4).into_data().try_to_vec::<f32>().unwrap();
        for b in 0..2 {
            for by in 0..2 {
                for bx in 0..3 {
                    let at = |src: &[f32], y: usize, x: usize| {
                        src[b * 96 + (by * 4 + y) * 12 + bx * 4 + x]
                    };
                    let mean: f32 = (0..16).map(|k| at(&v, k / 4, k % 4)).sum::<f32>() / 16.0;
                    for k in 0..16 {
                        assert!((at(&lp, k / 4, k % 4) - mean).abs() < 1e-6);
                    }
                }
            }
        }
    }
}
