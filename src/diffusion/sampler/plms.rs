//! Pseudo linear multistep (Liu et al. 2022): 4th-order Adams–Bashforth on ε, on the DDIM grid.

use burn::prelude::*;

use super::{DdimGrid, NoiseSource, Sampler, Step};
use crate::diffusion::schedule::Schedule;

/// PLMS over `grid`; `history` holds the raw ε of up to three previous steps, oldest first.
pub struct Plms {
    grid: DdimGrid,
    history: Vec<Tensor<4>>,
}

impl Plms {
    pub fn new(schedule: &Schedule, steps: usize) -> crate::Result<Self> {
        Ok(Self {
            grid: DdimGrid::new(schedule, steps)?,
            history: Vec::new(),
        })
    }
}

impl Sampler for Plms {
    fn total(&self) -> usize {
        self.grid.ts.len()
    }

    fn step(&mut self, at: Step, x: Tensor<4>, _noise: &mut dyn NoiseSource) -> (Tensor<4>, i64) {
        let k = at.k();
        let (a, ap) = (self.grid.a[k], self.grid.a_prev[k]);
        let step = |x: Tensor<4>, e: Tensor<4>| {
            (x - e.clone() * (1.0 - a).sqrt()) / a.sqrt() * ap.sqrt() + e * (1.0 - ap).sqrt()
        };
        let t = self.grid.ts[k] as i64;
        let (den, cond) = (at.den, at.cond);
        let e = den.eps(x.clone(), cond.clone(), t);
        let history = &mut self.history;
        let n = history.len();
        let e_prime = match n {
            // Heun-like start: average with ε at the provisional next point, at t − 1.
            0 => (e.clone() + den.eps(step(x.clone(), e.clone()), cond, t - 1)) / 2.0,
            1 => (e.clone() * 3.0 - history[0].clone()) / 2.0,
            2 => (e.clone() * 23.0 - history[1].clone() * 16.0 + history[0].clone() * 5.0) / 12.0,
            _ => {
                (e.clone() * 55.0 - history[n - 1].clone() * 59.0 + history[n - 2].clone() * 37.0
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
}
