//! DDIM (Song et al. 2021) with stochasticity η, on the reference's timestep grid.

use burn::prelude::*;

use super::{NoiseSource, Sampler, Step, ddim_timesteps};
use crate::diffusion::schedule::Schedule;

/// DDIM over `grid` with stochasticity `eta` (0: deterministic).
pub struct Ddim {
    grid: DdimGrid,
    eta: f32,
}

impl Ddim {
    pub fn new(schedule: &Schedule, steps: usize, eta: f64) -> crate::Result<Self> {
        Ok(Self {
            grid: DdimGrid::new(schedule, steps)?,
            eta: eta as f32,
        })
    }
}

impl Sampler for Ddim {
    fn total(&self) -> usize {
        self.grid.ts.len()
    }

    fn step(&mut self, at: Step, x: Tensor<4>, noise: &mut dyn NoiseSource) -> (Tensor<4>, i64) {
        let k = at.k();
        let (a, ap) = (self.grid.a[k], self.grid.a_prev[k]);
        let sigma = self.eta * ((1.0 - ap) / (1.0 - a) * (1.0 - a / ap)).sqrt();
        let t = self.grid.ts[k] as i64;
        let d = at.den.denoise(x.clone(), at.cond.clone(), t);
        let eps = d.eps();
        let x0 = d
            .direct_x0()
            .unwrap_or_else(|| (x - eps.clone() * (1.0 - a).sqrt()) / a.sqrt());
        let mut x = x0 * ap.sqrt() + eps * (1.0 - ap - sigma * sigma).max(0.0).sqrt();
        if sigma > 0.0 {
            x = x + noise.normal(at.i + 1, at.shape, &at.cond.device()) * sigma;
        }
        (x, t)
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
