//! Ancestral DDPM (Ho et al. 2020), respaced to fewer steps than T.

use burn::prelude::*;

use super::{Denoiser, NoiseSource, Sampler, Step, even_timesteps};
use crate::diffusion::schedule::Schedule;

/// Ancestral sampling over ascending timesteps `ts`, with the coefficients respaced to them.
pub struct Ddpm {
    ts: Vec<usize>,
    coefs: Schedule,
    clip: bool,
}

impl Ddpm {
    pub fn new(schedule: &Schedule, steps: usize, clip: bool) -> crate::Result<Self> {
        let t_total = schedule.len();
        let ts = if steps == t_total {
            (0..t_total).collect()
        } else {
            even_timesteps(t_total, steps)?
        };
        let coefs = schedule.respaced(&ts);
        Ok(Self { ts, coefs, clip })
    }
}

impl Sampler for Ddpm {
    fn total(&self) -> usize {
        self.ts.len()
    }

    fn step(&mut self, at: Step, x: Tensor<4>, noise: &mut dyn NoiseSource) -> (Tensor<4>, i64) {
        let k = at.k();
        let z = (k > 0).then(|| noise.normal(at.i + 1, at.shape, &at.cond.device()));
        let t = self.ts[k] as i64;
        let step = ddpm_step(at.den, &self.coefs, k, t, x, at.cond, z, self.clip);
        (step.x_prev, t)
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
