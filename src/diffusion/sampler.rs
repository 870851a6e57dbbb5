//! Reverse-diffusion samplers for the restoration networks: ancestral DDPM (Ho et al. 2020, with
//! respacing for fewer steps), DDIM (Song et al. 2021) and PLMS (Liu et al. 2022) on the
//! reference's timestep grid, and DPM-Solver++(2M) (Lu et al. 2022) as the fast one.
//!
//! Every random draw comes from a [`NoiseSource`] keyed by its index in the loop, so tests can
//! feed the references' noise and users get the same image for the same seed on any backend.

use std::ops::ControlFlow;

use burn::prelude::*;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::schedule::Schedule;
use super::tiles::TileGrid;
use crate::error::Error;
use crate::spec::{Prediction, Unet};

/// Which sampler to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplerKind {
    /// Ancestral DDPM; fewer steps than T respace the schedule.
    Ddpm,
    /// DDIM with stochasticity η.
    Ddim,
    /// Pseudo linear multistep (4th-order Adams–Bashforth on ε).
    Plms,
    /// DPM-Solver++(2M): second-order multistep in x₀ prediction; good results in 10–25 steps.
    #[serde(alias = "dpm++", alias = "dpmsolver")]
    Dpmpp,
}

impl std::str::FromStr for SamplerKind {
    type Err = Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase()))
            .map_err(|_| Error::Sampler(format!("unknown sampler '{s}' (ddpm, ddim, plms, dpmpp)")))
    }
}

/// Settings of one sampling run. Its defaults are what the CLI and the page show.
#[derive(Config, Debug, PartialEq)]
pub struct SamplerSettings {
    /// The sampler. Default: DPM-Solver++(2M), the fastest to a good result.
    #[config(default = "SamplerKind::Dpmpp")]
    pub kind: SamplerKind,
    /// Network evaluations asked for, 1..=T (DDIM/PLMS may run a few more: the reference grid
    /// `arange(0, T, T // steps)` can have more entries; it starts at t = 0, so they need ~10
    /// steps or more to leave the starting noise). Default: 25.
    #[config(default = 25)]
    pub steps: usize,
    /// DDIM stochasticity in [0, 1]: 0 = deterministic (default), 1 = DDPM-like.
    #[config(default = 0.0)]
    pub eta: f64,
    /// Clip predicted x₀ to [−1, 1] in the DDPM and DPM-Solver++ updates (reference: true).
    #[config(default = true)]
    pub clip_denoised: bool,
}

impl SamplerSettings {
    /// The settings a user gives by name (`dpmpp`, `ddim`, `plms`, `ddpm`), steps and η, with
    /// the reference's clipping; checked later against the schedule by [`Self::validate`].
    pub fn named(sampler: &str, steps: usize, eta: f64) -> crate::Result<Self> {
        Ok(Self {
            kind: sampler.parse()?,
            steps,
            eta,
            clip_denoised: true,
        })
    }

    /// Refuses settings no sampler can run with a schedule of `t_total` steps.
    pub fn validate(&self, t_total: usize) -> crate::Result<()> {
        check_steps(t_total, self.steps)?;
        if !(self.eta.is_finite() && (0.0..=1.0).contains(&self.eta)) {
            return Err(Error::Sampler(format!(
                "η (eta) must be between 0 and 1, got {}",
                self.eta
            )));
        }
        Ok(())
    }
}

/// A seed given as a JavaScript number: a whole number in 0..=2⁵³ (what a double holds exactly).
pub fn seed_from_f64(seed: f64) -> crate::Result<u64> {
    if !seed.is_finite() || seed < 0.0 || seed.fract() != 0.0 || seed > 9_007_199_254_740_992.0 {
        return Err(Error::Sampler(format!(
            "the seed must be a whole number from 0 to 2^53, got {seed}"
        )));
    }
    Ok(seed as u64)
}

/// Where a running sampler is, passed to the progress callback after each step.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo {
    /// Steps done, 1-based.
    pub step: usize,
    /// Steps in this run.
    pub total: usize,
    /// The timestep just evaluated.
    pub t: i64,
}

/// Source of standard-normal tensors; `index` 0 is x_T and `index` i + 1 the noise of loop
/// iteration i, as in the reference fixtures.
pub trait NoiseSource {
    fn normal(&mut self, index: usize, shape: [usize; 4], device: &Device) -> Tensor<4>;
}

/// Seeded host-side noise: the same seed gives the same numbers on every backend and platform.
pub struct SeededNoise {
    rng: rand_chacha::ChaCha8Rng,
}

impl SeededNoise {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl NoiseSource for SeededNoise {
    fn normal(&mut self, _index: usize, shape: [usize; 4], device: &Device) -> Tensor<4> {
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| StandardNormal.sample(&mut self.rng))
            .collect();
        Tensor::from_data(TensorData::new(v, shape), device)
    }
}

/// Noise for a batch whose item `k` draws from its own source exactly what it would draw alone
/// (a batch of seeded items then gives each item's own result).
pub struct PerItemNoise(pub Vec<SeededNoise>);

impl NoiseSource for PerItemNoise {
    fn normal(&mut self, index: usize, shape: [usize; 4], device: &Device) -> Tensor<4> {
        let [b, c, h, w] = shape;
        assert_eq!(
            b,
            self.0.len(),
            "a batch of {b} with {} noise sources",
            self.0.len()
        );
        let parts = self
            .0
            .iter_mut()
            .map(|s| s.normal(index, [1, c, h, w], device))
            .collect();
        Tensor::cat(parts, 0)
    }
}

/// Pre-drawn noise by index (the fixtures' `ddim_noise[i]`, ...).
pub struct FixedNoise(pub Vec<Tensor<4>>);

impl NoiseSource for FixedNoise {
    /// Panics when the fixture holds no tensor `index` of that shape (a test set-up error).
    fn normal(&mut self, index: usize, shape: [usize; 4], _device: &Device) -> Tensor<4> {
        let t = self.0[index].clone();
        assert_eq!(t.dims(), shape, "fixed noise {index} has the wrong shape");
        t
    }
}

/// The reference's DDIM/PLMS grid: `arange(0, T, T // steps)`, ascending.
pub fn ddim_timesteps(t_total: usize, steps: usize) -> crate::Result<Vec<usize>> {
    check_steps(t_total, steps)?;
    Ok((0..t_total).step_by(t_total / steps).collect())
}

/// An even ascending grid of exactly `steps` timesteps from 0 to T − 1 (DDPM respacing).
pub fn even_timesteps(t_total: usize, steps: usize) -> crate::Result<Vec<usize>> {
    check_steps(t_total, steps)?;
    if steps == 1 {
        return Ok(vec![t_total - 1]);
    }
    let mut v: Vec<usize> = (0..steps)
        .map(|i| ((i as f64) * (t_total - 1) as f64 / (steps - 1) as f64).round() as usize)
        .collect();
    v.dedup();
    Ok(v)
}

fn check_steps(t_total: usize, steps: usize) -> crate::Result<()> {
    if steps == 0 || steps > t_total {
        return Err(Error::Sampler(format!(
            "steps must be between 1 and T = {t_total}, got {steps}"
        )));
    }
    Ok(())
}

impl std::str::FromStr for Prediction {
    type Err = Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "eps" => Ok(Prediction::Eps),
            "x0" => Ok(Prediction::X0),
            _ => Err(Error::Config(format!(
                "unknown prediction '{s}' (eps or x0)"
            ))),
        }
    }
}

impl Prediction {
    /// ε implied by the network's output `out` for `x` at timestep `t`:
    /// ε = (x_t − √ᾱ_t·x̂₀) / √(1 − ᾱ_t) for an x₀ model, `out` itself for an ε model. A `t`
    /// outside the schedule (PLMS asks for t − 1 = −1) uses the nearest ᾱ.
    pub fn eps(self, out: Tensor<4>, x: Tensor<4>, t: i64, schedule: &Schedule) -> Tensor<4> {
        Denoised {
            x,
            out,
            prediction: self,
            alpha_bar: schedule.alpha_bar(t) as f64,
        }
        .eps()
    }
}

/// The network together with the schedule it was trained on, its objective, and the tiles it
/// runs over when the whole image would not fit the memory budget.
#[derive(Clone, Copy)]
pub struct Denoiser<'a> {
    pub net: &'a dyn Unet,
    pub schedule: &'a Schedule,
    pub prediction: Prediction,
    /// Overlapping tiles (blended at every call); `None` runs the whole image at once.
    pub tiles: Option<&'a TileGrid>,
}

/// One denoiser evaluation: the network's output read according to its objective, so that a
/// sampler takes x̂₀ or ε without an x₀ → ε → x₀ round trip in f32.
pub struct Denoised {
    x: Tensor<4>,
    out: Tensor<4>,
    prediction: Prediction,
    /// ᾱ at the evaluated timestep (the nearest one for t = −1).
    alpha_bar: f64,
}

impl Denoised {
    /// ε: the output of an ε model, else (x_t − √ᾱ·x̂₀)/√(1 − ᾱ).
    pub fn eps(&self) -> Tensor<4> {
        match self.prediction {
            Prediction::Eps => self.out.clone(),
            Prediction::X0 => {
                let a = self.alpha_bar;
                (self.x.clone() - self.out.clone() * (a.sqrt() as f32)) / ((1.0 - a).sqrt() as f32)
            }
        }
    }

    /// x̂₀ as the network gave it (an x₀ model), or `None` for an ε model.
    pub fn direct_x0(&self) -> Option<Tensor<4>> {
        (self.prediction == Prediction::X0).then(|| self.out.clone())
    }
}

impl<'a> Denoiser<'a> {
    /// The whole image in one call.
    pub fn new(net: &'a dyn Unet, schedule: &'a Schedule, prediction: Prediction) -> Self {
        Self {
            net,
            schedule,
            prediction,
            tiles: None,
        }
    }

    /// The same denoiser over `tiles`.
    pub fn with_tiles(self, tiles: Option<&'a TileGrid>) -> Self {
        Self { tiles, ..self }
    }

    /// The network's output at integer timestep `t` (the same for every batch item), blended
    /// over the tiles when there are any.
    ///
    /// # Shapes
    /// - x: `[batch, c, h, w]`, cond: `[batch, c_cond, h, w]` → `[batch, c, h, w]`
    pub fn output(&self, x: Tensor<4>, cond: Tensor<4>, t: i64) -> Tensor<4> {
        match self.tiles {
            Some(grid) if !grid.is_single() => {
                let c = x.dims()[1];
                let mut call = |joined: Tensor<4>| {
                    let [n, c_all, _, _] = joined.dims();
                    let x = joined.clone().narrow(1, 0, c);
                    let cond = joined.narrow(1, c, c_all - c);
                    self.net.predict_at(x, cond, &vec![self.time_value(t); n])
                };
                grid.apply(Tensor::cat(vec![x, cond], 1), &mut call)
            }
            _ => {
                let b = x.dims()[0];
                self.net.predict_at(x, cond, &vec![self.time_value(t); b])
            }
        }
    }

    /// The network's time input for timestep `t`.
    fn time_value(&self, t: i64) -> f32 {
        self.schedule.time_value(self.net.family(), t)
    }

    /// The network's prediction at `t`, read by its objective.
    pub fn denoise(&self, x: Tensor<4>, cond: Tensor<4>, t: i64) -> Denoised {
        let out = self.output(x.clone(), cond, t);
        Denoised {
            x,
            out,
            prediction: self.prediction,
            alpha_bar: self.schedule.alpha_bar(t) as f64,
        }
    }

    /// ε at integer timestep `t` (the same for every batch item).
    ///
    /// # Shapes
    /// - x: `[batch, c, h, w]`, cond: `[batch, c_cond, h, w]` → `[batch, c, h, w]`
    pub fn eps(&self, x: Tensor<4>, cond: Tensor<4>, t: i64) -> Tensor<4> {
        self.denoise(x, cond, t).eps()
    }
}

/// Output of one ancestral step, with the intermediate values the fixtures check.
pub struct DdpmStep {
    pub x_prev: Tensor<4>,
    pub eps: Tensor<4>,
    pub x0: Tensor<4>,
}

/// One ancestral DDPM step (`p_sample`): the network runs at timestep `model_t`, the posterior
/// uses `coefs` at index `k` (equal to `model_t` unless the schedule is respaced). No noise is
/// added at k = 0.
#[allow(clippy::too_many_arguments)]
pub fn ddpm_step(
    den: Denoiser,
    coefs: &Schedule,
    k: usize,
    model_t: i64,
    x: Tensor<4>,
    cond: Tensor<4>,
    z: Option<Tensor<4>>,
    clip: bool,
) -> DdpmStep {
    let d = den.denoise(x.clone(), cond, model_t);
    let eps = d.eps();
    let x0 = d.direct_x0().unwrap_or_else(|| {
        x.clone() * coefs.sqrt_recip_alphas_cumprod[k]
            - eps.clone() * coefs.sqrt_recipm1_alphas_cumprod[k]
    });
    let x0 = if clip { x0.clamp(-1.0, 1.0) } else { x0 };
    let mean = x0.clone() * coefs.posterior_mean_coef1[k] + x * coefs.posterior_mean_coef2[k];
    let x_prev = match z {
        Some(z) if k > 0 => mean + z * (0.5 * coefs.posterior_log_variance_clipped[k]).exp(),
        _ => mean,
    };
    DdpmStep { x_prev, eps, x0 }
}

/// Runs the chosen sampler from noise to a restored image.
///
/// `progress` is called after every step; returning `ControlFlow::Break` cancels the run
/// (`Error::Cancelled`) before the next network call.
///
/// # Shapes
/// - cond: `[batch, c_cond, h, w]` → output `[batch, x_channels, h, w]`
pub fn sample(
    den: Denoiser,
    cond: Tensor<4>,
    x_channels: usize,
    settings: &SamplerSettings,
    noise: &mut dyn NoiseSource,
    progress: &mut dyn FnMut(StepInfo) -> ControlFlow<()>,
) -> crate::Result<Tensor<4>> {
    let mut run = SamplerRun::new(den, cond, x_channels, settings, noise)?;
    while !run.is_done() {
        let info = run.step(noise);
        if let ControlFlow::Break(()) = progress(info) {
            return Err(Error::Cancelled);
        }
    }
    Ok(run.into_output())
}

/// Per-sampler plan and the state carried between steps.
enum Plan {
    /// Timesteps (ascending) and the coefficients respaced to them.
    Ddpm {
        ts: Vec<usize>,
        coefs: Schedule,
    },
    Ddim {
        grid: DdimGrid,
    },
    /// The raw ε of up to three previous steps, oldest first.
    Plms {
        grid: DdimGrid,
        history: Vec<Tensor<4>>,
    },
    /// Timesteps (descending) and the previous step's (x₀, h).
    Dpmpp {
        ts: Vec<usize>,
        prev: Option<(Tensor<4>, f64)>,
    },
}

/// A sampling run advanced one network step at a time, so that callers can report progress,
/// show previews, yield to an event loop (the browser) and cancel between steps.
pub struct SamplerRun<'a> {
    den: Denoiser<'a>,
    cond: Tensor<4>,
    shape: [usize; 4],
    settings: SamplerSettings,
    plan: Plan,
    x: Tensor<4>,
    done: usize,
    total: usize,
}

impl<'a> SamplerRun<'a> {
    /// Plans the run and draws x_T (noise index 0).
    pub fn new(
        den: Denoiser<'a>,
        cond: Tensor<4>,
        x_channels: usize,
        settings: &SamplerSettings,
        noise: &mut dyn NoiseSource,
    ) -> crate::Result<Self> {
        let t_total = den.schedule.len();
        settings.validate(t_total)?;
        let [b, _, h, w] = cond.dims();
        let shape = [b, x_channels, h, w];
        let plan = match settings.kind {
            SamplerKind::Ddpm => {
                let ts = if settings.steps == t_total {
                    (0..t_total).collect()
                } else {
                    even_timesteps(t_total, settings.steps)?
                };
                let coefs = den.schedule.respaced(&ts);
                Plan::Ddpm { ts, coefs }
            }
            SamplerKind::Ddim => Plan::Ddim {
                grid: DdimGrid::new(den.schedule, settings.steps)?,
            },
            SamplerKind::Plms => Plan::Plms {
                grid: DdimGrid::new(den.schedule, settings.steps)?,
                history: Vec::new(),
            },
            SamplerKind::Dpmpp => Plan::Dpmpp {
                ts: even_timesteps(t_total, settings.steps)?
                    .into_iter()
                    .rev()
                    .collect(),
                prev: None,
            },
        };
        let total = match &plan {
            Plan::Ddpm { ts, .. } | Plan::Dpmpp { ts, .. } => ts.len(),
            Plan::Ddim { grid } | Plan::Plms { grid, .. } => grid.ts.len(),
        };
        let x = noise.normal(0, shape, &cond.device());
        Ok(Self {
            den,
            cond,
            shape,
            settings: settings.clone(),
            plan,
            x,
            done: 0,
            total,
        })
    }

    /// Steps in this run (DDIM/PLMS can run a few more than asked, as the reference does).
    pub fn total(&self) -> usize {
        self.total
    }

    /// True when every step has run.
    pub fn is_done(&self) -> bool {
        self.done == self.total
    }

    /// The current sample x_t (a preview of the result while running).
    pub fn current(&self) -> &Tensor<4> {
        &self.x
    }

    /// The result; call once [`Self::is_done`].
    pub fn into_output(self) -> Tensor<4> {
        self.x
    }

    /// Runs the next step (one network evaluation; two on PLMS's first).
    pub fn step(&mut self, noise: &mut dyn NoiseSource) -> StepInfo {
        if self.is_done() {
            // nothing left: report the last step again rather than run past the plan
            return StepInfo {
                step: self.total,
                total: self.total,
                t: 0,
            };
        }
        let i = self.done;
        let k = self.total - 1 - i;
        let den = self.den;
        let cond = self.cond.clone();
        let device = self.cond.device();
        let x = self.x.clone();
        let (x, t) = match &mut self.plan {
            Plan::Ddpm { ts, coefs } => {
                let z = (k > 0).then(|| noise.normal(i + 1, self.shape, &device));
                let step = ddpm_step(
                    den,
                    coefs,
                    k,
                    ts[k] as i64,
                    x,
                    cond,
                    z,
                    self.settings.clip_denoised,
                );
                (step.x_prev, ts[k] as i64)
            }
            Plan::Ddim { grid } => {
                let (a, ap) = (grid.a[k], grid.a_prev[k]);
                let sigma =
                    self.settings.eta as f32 * ((1.0 - ap) / (1.0 - a) * (1.0 - a / ap)).sqrt();
                let t = grid.ts[k] as i64;
                let d = den.denoise(x.clone(), cond, t);
                let eps = d.eps();
                let x0 = d
                    .direct_x0()
                    .unwrap_or_else(|| (x - eps.clone() * (1.0 - a).sqrt()) / a.sqrt());
                let mut x = x0 * ap.sqrt() + eps * (1.0 - ap - sigma * sigma).max(0.0).sqrt();
                if sigma > 0.0 {
                    x = x + noise.normal(i + 1, self.shape, &device) * sigma;
                }
                (x, t)
            }
            Plan::Plms { grid, history } => {
                let (a, ap) = (grid.a[k], grid.a_prev[k]);
                let step = |x: Tensor<4>, e: Tensor<4>| {
                    (x - e.clone() * (1.0 - a).sqrt()) / a.sqrt() * ap.sqrt()
                        + e * (1.0 - ap).sqrt()
                };
                let t = grid.ts[k] as i64;
                let e = den.eps(x.clone(), cond.clone(), t);
                let n = history.len();
                let e_prime = match n {
                    // Heun-like start: average with ε at the provisional next point, at t − 1.
                    0 => (e.clone() + den.eps(step(x.clone(), e.clone()), cond, t - 1)) / 2.0,
                    1 => (e.clone() * 3.0 - history[0].clone()) / 2.0,
                    2 => {
                        (e.clone() * 23.0 - history[1].clone() * 16.0 + history[0].clone() * 5.0)
                            / 12.0
                    }
                    _ => {
                        (e.clone() * 55.0 - history[n - 1].clone() * 59.0
                            + history[n - 2].clone() * 37.0
                            - history[n - 3].clone() * 9.0)
                            / 24.0
                    }
                };
                history.push(e);
                if history.len() > 3 {
                    history.remove(0);
                }
                (step(x, e_prime), t)
            }
            Plan::Dpmpp { ts, prev } => {
                let sched = den.schedule;
                let alpha = |t: usize| (sched.alphas_cumprod[t] as f64).sqrt();
                let sigma = |t: usize| (1.0 - sched.alphas_cumprod[t] as f64).sqrt();
                let lambda = |t: usize| (alpha(t) / sigma(t)).ln();
                let t = ts[i];
                let d = den.denoise(x.clone(), cond, t as i64);
                let x0 = d
                    .direct_x0()
                    .unwrap_or_else(|| (x.clone() - d.eps() * sigma(t) as f32) / alpha(t) as f32);
                let x0 = if self.settings.clip_denoised {
                    x0.clamp(-1.0, 1.0)
                } else {
                    x0
                };
                let x = if k == 0 {
                    // The last step lands on σ = 0: the data prediction itself.
                    x0
                } else {
                    let tn = ts[i + 1];
                    let h = lambda(tn) - lambda(t);
                    let d = match prev.take() {
                        Some((x0_prev, h_prev)) => {
                            let r = h_prev / h;
                            x0.clone() * (1.0 + 0.5 / r) as f32 - x0_prev * (0.5 / r) as f32
                        }
                        None => x0.clone(),
                    };
                    *prev = Some((x0, h));
                    x * (sigma(tn) / sigma(t)) as f32 - d * (alpha(tn) * ((-h).exp() - 1.0)) as f32
                };
                (x, t as i64)
            }
        };
        self.x = x;
        self.done += 1;
        StepInfo {
            step: self.done,
            total: self.total,
            t,
        }
    }
}

/// DDIM/PLMS grid with ᾱ at each grid point and at the previous one (ᾱ[0] before the first).
pub struct DdimGrid {
    pub ts: Vec<usize>,
    pub a: Vec<f32>,
    pub a_prev: Vec<f32>,
}

impl DdimGrid {
    pub fn new(schedule: &Schedule, steps: usize) -> crate::Result<Self> {
        let ts = ddim_timesteps(schedule.len(), steps)?;
        let a: Vec<f32> = ts.iter().map(|&t| schedule.alphas_cumprod[t]).collect();
        let a_prev = std::iter::once(schedule.alphas_cumprod[0])
            .chain(a[..a.len() - 1].iter().copied())
            .collect();
        Ok(Self { ts, a, a_prev })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_x0_output_is_seen_as_the_noise_that_made_x_t() {
        let device = crate::device::cpu();
        let schedule = crate::spec::ScheduleConfig::cheff_default()
            .build()
            .unwrap();
        let x0 = Tensor::<4>::from_data(
            TensorData::new(vec![0.5f32, -0.25, 0.9, -1.0], [1, 1, 2, 2]),
            &device,
        );
        let eps = Tensor::<4>::from_data(
            TensorData::new(vec![1.2f32, -0.3, 0.05, 2.0], [1, 1, 2, 2]),
            &device,
        );
        for t in [0usize, 1, 700, 1999] {
            let a = schedule.alphas_cumprod[t];
            let xt = x0.clone() * a.sqrt() + eps.clone() * (1.0 - a).sqrt();
            let got: Vec<f32> = Prediction::X0
                .eps(x0.clone(), xt.clone(), t as i64, &schedule)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let want: Vec<f32> = eps.clone().into_data().try_to_vec::<f32>().unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 2e-3, "t {t}: {g} vs {w}");
            }
            let same: Vec<f32> = Prediction::Eps
                .eps(eps.clone(), xt, t as i64, &schedule)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            assert_eq!(same, want);
        }
        assert_eq!("X0".parse::<Prediction>().unwrap(), Prediction::X0);
        assert!(
            "v".parse::<Prediction>()
                .unwrap_err()
                .to_string()
                .contains("eps or x0")
        );
    }

    #[test]
    fn reference_grids() {
        assert_eq!(ddim_timesteps(1000, 7).unwrap().len(), 8);
        assert_eq!(ddim_timesteps(2000, 10).unwrap()[..3], [0, 200, 400]);
        assert_eq!(even_timesteps(1000, 1).unwrap(), vec![999]);
        assert_eq!(even_timesteps(10, 10).unwrap(), (0..10).collect::<Vec<_>>());
        assert!(
            ddim_timesteps(10, 11)
                .unwrap_err()
                .to_string()
                .contains("between 1 and T")
        );
        assert!(even_timesteps(10, 0).is_err());
    }

    #[test]
    fn seeded_noise_is_reproducible_and_standard() {
        let d = crate::device::cpu();
        let a: Vec<f32> = SeededNoise::new(3)
            .normal(0, [1, 1, 64, 64], &d)
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        let b: Vec<f32> = SeededNoise::new(3)
            .normal(0, [1, 1, 64, 64], &d)
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        let c: Vec<f32> = SeededNoise::new(4)
            .normal(0, [1, 1, 64, 64], &d)
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        let var = a.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / a.len() as f32;
        assert!(
            mean.abs() < 0.05 && (var - 1.0).abs() < 0.08,
            "mean {mean} var {var}"
        );
    }
}
