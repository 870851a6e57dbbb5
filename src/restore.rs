//! Restoring one image: grey [0, 1] → [−1, 1] conditioning tensor → padded to the network's
//! multiple → sampler → cropped back → grey [0, 1]. Used by the CLI and the web API alike.

use std::ops::ControlFlow;

use burn::prelude::*;

use crate::checkpoint::LoadedModel;
use crate::diffusion::sampler::{Denoiser, NoiseSource, SamplerRun, SamplerSettings, StepInfo};
use crate::diffusion::schedule::Schedule;
use crate::error::Result;
use crate::io::GrayImage;
use crate::model::pad_to_multiple;

/// Largest attention matrix a restoration may allocate (per batch, f32).
pub const MAX_ATTENTION_BYTES: u128 = 4 << 30;

/// A loaded model with its schedule built once.
pub struct Restorer {
    pub model: LoadedModel,
    pub schedule: Schedule,
}

impl Restorer {
    /// Checks that the model is a restoration model (it has conditioning channels) and builds
    /// its schedule.
    pub fn new(model: LoadedModel) -> Result<Self> {
        model.spec.network.cond_channels()?;
        let schedule = model.spec.schedule.build()?;
        Ok(Self { model, schedule })
    }

    /// Restores `image` on `device`; the output has the input's size.
    pub fn restore(
        &self,
        image: &GrayImage,
        settings: &SamplerSettings,
        noise: &mut dyn NoiseSource,
        device: &Device,
        progress: &mut dyn FnMut(StepInfo) -> ControlFlow<()>,
    ) -> Result<GrayImage> {
        let mut run = self.begin(image, settings, noise, device)?;
        while !run.is_done() {
            if let ControlFlow::Break(()) = progress(run.step(noise)) {
                return Err(crate::Error::Cancelled);
            }
        }
        let (w, h) = (image.width, image.height);
        let data = run
            .finish()
            .into_data()
            .try_into_vec_as::<f32>()
            .map_err(|e| crate::Error::Device(format!("reading the result back failed: {e:?}")))?;
        Ok(GrayImage {
            width: w,
            height: h,
            data,
        })
    }

    /// Prepares a restoration to be advanced step by step (the page drives it between
    /// browser events).
    pub fn begin<'a>(
        &'a self,
        image: &GrayImage,
        settings: &SamplerSettings,
        noise: &mut dyn NoiseSource,
        device: &Device,
    ) -> Result<RestoreRun<'a>> {
        GrayImage::check_size(image.width, image.height)?;
        let net_cfg = &self.model.spec.network;
        let (h, w) = (image.height, image.width);
        let m = net_cfg.input_multiple();
        let attn = net_cfg.attention_bytes(1, h.next_multiple_of(m), w.next_multiple_of(m));
        if attn > MAX_ATTENTION_BYTES {
            return Err(crate::Error::Failed(format!(
                "a {w}×{h} image is too large for this model: its full-attention layer would need {:.1} GiB \
                 (limit {} GiB); downscale the image or use a model with more levels",
                attn as f64 / (1u128 << 30) as f64,
                MAX_ATTENTION_BYTES >> 30
            )));
        }
        // 1. grey [0, 1] → [−1, 1], repeated over the conditioning channels (3 for RGB models)
        let lq: Vec<f32> = image.data.iter().map(|v| v * 2.0 - 1.0).collect();
        let cond = Tensor::<4>::from_data(TensorData::new(lq, [1, 1, h, w]), device);
        let cond = cond.repeat_dim(1, net_cfg.cond_channels()?);
        // 2. pad to the network's multiple
        let cond = pad_to_multiple(cond, m); // [1, c_cond, H', W']
        // 3. the sampler, ready to step
        let den = Denoiser {
            net: &self.model.network,
            schedule: &self.schedule,
            prediction: self.model.spec.prediction,
        };
        let run = SamplerRun::new(den, cond, net_cfg.image_channels(), settings, noise)?;
        Ok(RestoreRun {
            run,
            height: h,
            width: w,
        })
    }
}

/// A restoration in progress.
pub struct RestoreRun<'a> {
    run: SamplerRun<'a>,
    height: usize,
    width: usize,
}

impl RestoreRun<'_> {
    /// Runs the next sampler step.
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
    /// The current sample as an image (a preview while running).
    ///
    /// # Shapes
    /// - output: `[1, 1, height, width]`, values in [0, 1]
    pub fn preview(&self) -> Tensor<4> {
        to_image(self.run.current().clone(), self.height, self.width)
    }
    /// The restored image.
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
/// - x: `[1, c, H', W']` → `[1, 1, height, width]`
fn to_image(x: Tensor<4>, height: usize, width: usize) -> Tensor<4> {
    let c = x.dims()[1];
    let x = x.slice([0..1, 0..c, 0..height, 0..width]).mean_dim(1); // [1, 1, h, w]
    ((x + 1.0) / 2.0).clamp(0.0, 1.0)
}
