//! The network as a sampler sees it: its output read by its objective (ε or x₀), over tiles
//! when the image would not fit the memory budget.

use burn::prelude::*;

use crate::diffusion::schedule::Schedule;
use crate::diffusion::tiles::TileGrid;
use crate::spec::{Prediction, Unet};

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
