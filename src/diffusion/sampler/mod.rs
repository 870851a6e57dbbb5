//! Reverse-diffusion samplers for the restoration networks: ancestral DDPM (Ho et al. 2020, with
//! respacing for fewer steps), DDIM (Song et al. 2021) and PLMS (Liu et al. 2022) on the
//! reference's timestep grid, and DPM-Solver++(2M) (Lu et al. 2022) as the fast one. Each is a
//! [`Sampler`] in a file of its own; [`SamplerRun`] is the one loop that steps any of them.
//!
//! Every random draw comes from a [`NoiseSource`] keyed by its index in the loop, so tests can
//! feed the references' noise and users get the same image for the same seed on any backend.

mod ddim;
mod ddpm;
mod denoiser;
mod dpmpp;
mod noise;
mod plms;

use std::ops::ControlFlow;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

pub use ddim::{Ddim, DdimGrid};
pub use ddpm::{Ddpm, DdpmStep, ddpm_step};
pub use denoiser::{Denoised, Denoiser};
pub use dpmpp::Dpmpp;
pub use noise::{FixedNoise, NoiseSource, PerItemNoise, SeededNoise};
pub use plms::Plms;

use super::schedule::Schedule;
use crate::error::Error;

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

impl SamplerKind {
    /// The sampler of this kind for `settings` over `schedule`: the one place that maps a kind
    /// to its type (a new sampler adds a variant, a file and an arm here).
    pub fn build(
        self,
        schedule: &Schedule,
        settings: &SamplerSettings,
    ) -> crate::Result<Box<dyn Sampler>> {
        let steps = settings.steps;
        Ok(match self {
            Self::Ddpm => Box::new(ddpm::Ddpm::new(schedule, steps, settings.clip_denoised)?),
            Self::Ddim => Box::new(ddim::Ddim::new(schedule, steps, settings.eta)?),
            Self::Plms => Box::new(plms::Plms::new(schedule, steps)?),
            Self::Dpmpp => Box::new(dpmpp::Dpmpp::new(schedule, steps, settings.clip_denoised)?),
        })
    }
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

/// One reverse-diffusion method: its timestep plan and one network step at a time, with what it
/// carries between steps. Built by [`SamplerKind::build`], stepped by [`SamplerRun`].
pub trait Sampler {
    /// Network steps in the run (DDIM/PLMS can run a few more than asked, as the reference does).
    fn total(&self) -> usize;
    /// Step `at.i` from `x`: the next sample and the timestep the network ran at. Noise index
    /// `at.i + 1` is this step's draw.
    fn step(&mut self, at: Step, x: Tensor<4>, noise: &mut dyn NoiseSource) -> (Tensor<4>, i64);
}

/// What one step of a [`Sampler`] works with.
pub struct Step<'a> {
    pub den: Denoiser<'a>,
    pub cond: Tensor<4>,
    /// Shape of the sample (and of every noise draw).
    pub shape: [usize; 4],
    /// Steps done before this one.
    pub i: usize,
    /// Steps left after this one (`total − 1 − i`).
    pub left: usize,
}

impl Step<'_> {
    /// Index of this step counted from the end (0 on the last step).
    pub fn k(&self) -> usize {
        self.left
    }
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

/// A sampling run advanced one network step at a time, so that callers can report progress,
/// show previews, yield to an event loop (the browser) and cancel between steps.
pub struct SamplerRun<'a> {
    den: Denoiser<'a>,
    cond: Tensor<4>,
    shape: [usize; 4],
    sampler: Box<dyn Sampler>,
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
        settings.validate(den.schedule.len())?;
        let [b, _, h, w] = cond.dims();
        let shape = [b, x_channels, h, w];
        let sampler = settings.kind.build(den.schedule, settings)?;
        let total = sampler.total();
        let x = noise.normal(0, shape, &cond.device());
        Ok(Self {
            den,
            cond,
            shape,
            sampler,
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
        let at = Step {
            den: self.den,
            cond: self.cond.clone(),
            shape: self.shape,
            i: self.done,
            left: self.total - 1 - self.done,
        };
        let (x, t) = self.sampler.step(at, self.x.clone(), noise);
        self.x = x;
        self.done += 1;
        StepInfo {
            step: self.done,
            total: self.total,
            t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Prediction;

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
