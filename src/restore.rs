//! Restoring one image: grey [0, 1] → [−1, 1] conditioning tensor → padded to the network's
//! multiple → sampler → cropped back → grey [0, 1]. Used by the CLI and the web API alike.

use std::ops::ControlFlow;

use burn::prelude::*;

use crate::checkpoint::LoadedModel;
use crate::diffusion::sampler::{Denoiser, NoiseSource, SamplerSettings, StepInfo, sample};
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
        let cond = pad_to_multiple(cond, net_cfg.input_multiple()); // [1, c_cond, H', W']
        // 3. sample
        let den = Denoiser {
            net: &self.model.network,
            schedule: &self.schedule,
        };
        let out = sample(
            den,
            cond,
            net_cfg.image_channels(),
            settings,
            noise,
            progress,
        )?; // [1, c, H', W']
        // 4. crop, average channels, back to [0, 1]
        let out = out
            .slice([0..1, 0..net_cfg.image_channels(), 0..h, 0..w])
            .mean_dim(1); // [1, 1, h, w]
        let data: Vec<f32> = out
            .into_data()
            .try_into_vec_as::<f32>()
            .map_err(|e| crate::Error::Device(format!("reading the result back failed: {e:?}")))?;
        Ok(GrayImage {
            width: w,
            height: h,
            data: data
                .into_iter()
                .map(|v| ((v + 1.0) / 2.0).clamp(0.0, 1.0))
                .collect(),
        })
    }
}
