//! DPM-Solver++(2M) (Lu et al. 2022): second-order multistep in x₀ prediction; good results in
//! 10–25 steps.

use burn::prelude::*;

use super::{NoiseSource, Sampler, Step, even_timesteps};
use crate::diffusion::schedule::Schedule;

/// DPM-Solver++(2M) over descending timesteps `ts`; `prev` is the previous step's (x₀, h).
pub struct Dpmpp {
    ts: Vec<usize>,
    prev: Option<(Tensor<4>, f64)>,
    clip: bool,
}

impl Dpmpp {
    pub fn new(schedule: &Schedule, steps: usize, clip: bool) -> crate::Result<Self> {
        let ts = even_timesteps(schedule.len(), steps)?
            .into_iter()
            .rev()
            .collect();
        Ok(Self {
            ts,
            prev: None,
            clip,
        })
    }
}

impl Sampler for Dpmpp {
    fn total(&self) -> usize {
        self.ts.len()
    }

    fn step(&mut self, at: Step, x: Tensor<4>, _noise: &mut dyn NoiseSource) -> (Tensor<4>, i64) {
        let (i, k) = (at.i, at.k());
        let sched = at.den.schedule;
        let alpha = |t: usize| (sched.alphas_cumprod[t] as f64).sqrt();
        let sigma = |t: usize| (1.0 - sched.alphas_cumprod[t] as f64).sqrt();
        let lambda = |t: usize| (alpha(t) / sigma(t)).ln();
        let t = self.ts[i];
        let d = at.den.denoise(x.clone(), at.cond, t as i64);
        let x0 = d
            .direct_x0()
            .unwrap_or_else(|| (x.clone() - d.eps() * sigma(t) as f32) / alpha(t) as f32);
        let x0 = if self.clip { x0.clamp(-1.0, 1.0) } else { x0 };
        let x = if k == 0 {
            // The last step lands on σ = 0: the data prediction itself.
            x0
        } else {
            let tn = self.ts[i + 1];
            let h = lambda(tn) - lambda(t);
            let d = match self.prev.take() {
                Some((x0_prev, h_prev)) => {
                    let r = h_prev / h;
                    x0.clone() * (1.0 + 0.5 / r) as f32 - x0_prev * (0.5 / r) as f32
                }
                None => x0.clone(),
            };
            self.prev = Some((x0, h));
            x * (sigma(tn) / sigma(t)) as f32 - d * (alpha(tn) * ((-h).exp() - 1.0)) as f32
        };
        (x, t as i64)
    }
}
