//! The MUNIT-LQ trainer (domain a = HQ radiographs, b = LQ DRRs, unpaired): per step one
//! discriminator update on detached translations, then one generator update on the GAN, image,
//! content and style reconstruction losses; Adam 1e-4, β = (0.5, 0.999), as the paper. And the
//! translation HQ → LQ it is trained for.

pub mod net;

use std::path::Path;

use burn::optim::GradientsParams;
use burn::prelude::*;
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use super::data::{Augment, Domain, draw_rng};
use super::optim::{Adam, Ema, Steps, params, set_params};
use super::{StateFile, Trainer, Validation};
use crate::eval::metrics;
use crate::io::{GrayImage, write_atomic};
use crate::model::pad_to_multiple;
use crate::{Error, Result};
use net::{MunitConfig, MunitDis, MunitGen, MunitWeights};

/// The exported generators (EMA weights).
pub const MUNIT_FILE: &str = "munit.safetensors";
/// Metadata key of the MUNIT config in the exported file.
pub const MUNIT_KEY: &str = "dxr_munit";

/// What a MUNIT run is set up with (stored in its state; a resume must match).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MunitSettings {
    /// The generators' and discriminators' sizes.
    pub config: MunitConfig,
    /// The weights of the loss terms (GAN; image, style and content reconstruction).
    pub weights: MunitWeights,
    /// Batch (from each domain), crops, Adam for the generators and the discriminators alike
    /// (the MUNIT paper's: 1e-4, (0.5, 0.999)), EMA of the exported generators, seed.
    #[serde(flatten)]
    pub steps: Steps,
}

pub struct MunitTrainer {
    pub settings: MunitSettings,
    generator: MunitGen,
    dis: MunitDis,
    adam_g: Adam,
    adam_d: Adam,
    ema: Ema,
    device: Device,
    hq: Domain,
    lq: Domain,
    /// Held-out HQ patches: the HQ autoencoder's reconstruction PSNR/SSIM.
    val: Vec<Vec<f32>>,
}

impl MunitTrainer {
    pub fn new(
        settings: MunitSettings,
        hq: Domain,
        lq: Domain,
        val: Vec<Vec<f32>>,
        device: &Device,
    ) -> Result<Self> {
        let m = settings.config.multiple();
        if !settings.steps.patch.is_multiple_of(m) || settings.steps.batch == 0 {
            return Err(Error::Config(format!(
                "the patch side {} must be a multiple of {m} for this MUNIT, and the batch ≥ 1",
                settings.steps.patch
            )));
        }
        hq.check_patch(settings.steps.patch)?;
        lq.check_patch(settings.steps.patch)?;
        let ad = device.clone().autodiff();
        let (generator, dis) = super::seeded(&ad, settings.steps.seed, |d| {
            let generator = settings.config.init_gen(d)?;
            let dis = settings.config.init_dis(d)?;
            let _ = (params(&generator), params(&dis));
            Ok((generator, dis))
        })?;
        Ok(Self {
            adam_g: Adam::new(settings.steps.lr, settings.steps.betas),
            adam_d: Adam::new(settings.steps.lr, settings.steps.betas),
            ema: Ema::new(&generator, settings.steps.ema_decay),
            settings,
            generator,
            dis,
            device: device.clone(),
            hq,
            lq,
            val,
        })
    }

    /// The generators with the EMA weights (plain device).
    pub fn ema_gen(&self) -> Result<MunitGen> {
        set_params(self.generator.valid(), &self.ema.values)
    }

    fn batch(&self, step: u64, device: &Device) -> (Tensor<4>, Tensor<4>, Tensor<2>, Tensor<2>) {
        let s = &self.settings;
        let (b, p) = (s.steps.batch, s.steps.patch);
        let mut xa = Vec::with_capacity(b * p * p);
        let mut xb = Vec::with_capacity(b * p * p);
        for item in 0..b {
            xa.extend(
                self.hq
                    .patch(s.steps.seed, step, item, p, &Augment::HQ)
                    .iter()
                    .map(|v| v * 2.0 - 1.0),
            );
            xb.extend(
                self.lq
                    .patch(s.steps.seed ^ 0xb, step, item, p, &Augment::FLIP)
                    .iter()
                    .map(|v| v * 2.0 - 1.0),
            );
        }
        let mut rng = draw_rng(s.steps.seed ^ 0x57, step, 0);
        let sd = s.config.style_dim;
        let mut style = || -> Tensor<2> {
            let v: Vec<f32> = (0..b * sd).map(|_| rng.sample(StandardNormal)).collect();
            Tensor::from_data(TensorData::new(v, [b, sd]), device)
        };
        let (sa, sb) = (style(), style());
        (
            Tensor::from_data(TensorData::new(xa, [b, 1, p, p]), device),
            Tensor::from_data(TensorData::new(xb, [b, 1, p, p]), device),
            sa,
            sb,
        )
    }
}

impl Trainer for MunitTrainer {
    fn kind(&self) -> &'static str {
        "munit"
    }

    fn settings_json(&self) -> String {
        serde_json::to_string(&self.settings).expect("serialisable")
    }

    fn step(&mut self, step: u64) -> Result<f64> {
        let ad = self.device.clone().autodiff();
        let (x_a, x_b, s_a, s_b) = self.batch(step, &ad);
        let w = self.settings.weights;
        // 1. discriminators on detached translations
        let (x_ab, x_ba) =
            self.generator
                .translate(x_a.clone(), x_b.clone(), s_a.clone(), s_b.clone());
        let loss_d = (self.dis.a.loss_dis(x_ba.detach(), x_a.clone())
            + self.dis.b.loss_dis(x_ab.detach(), x_b.clone()))
            * w.gan;
        let grads = GradientsParams::from_grads(loss_d.backward(), &self.dis);
        self.dis = self.adam_d.step(self.dis.clone(), grads);
        // 2. generators
        let l = self.generator.losses(&self.dis, x_a, x_b, s_a, s_b, &w);
        let value = l.total.clone().into_scalar::<f32>() as f64;
        let grads = GradientsParams::from_grads(l.total.backward(), &self.generator);
        self.generator = self.adam_g.step(self.generator.clone(), grads);
        self.ema.update(&self.generator);
        Ok(value)
    }

    fn validate(&mut self) -> Result<Option<Validation>> {
        if self.val.is_empty() {
            return Ok(None);
        }
        let generator = self.ema_gen()?;
        let p = self.settings.steps.patch;
        let (mut ps, mut ss) = (0.0, 0.0);
        for patch in &self.val {
            let x = Tensor::<4>::from_data(
                TensorData::new(
                    patch.iter().map(|v| v * 2.0 - 1.0).collect::<Vec<f32>>(),
                    [1, 1, p, p],
                ),
                &self.device,
            );
            let rec = generator.a.decode(
                generator.a.encode_content(x.clone()),
                generator.a.encode_style(x),
            );
            let out: Vec<f64> = ((rec + 1.0) / 2.0)
                .clamp(0.0, 1.0)
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| Error::Device(format!("{e:?}")))?
                .into_iter()
                .map(f64::from)
                .collect();
            let refv: Vec<f64> = patch.iter().map(|v| *v as f64).collect();
            ps += metrics::psnr(&refv, &out, 1.0)?.min(100.0);
            ss += metrics::ssim(&refv, &out, p, p, 1.0)?;
        }
        let n = self.val.len() as f64;
        Ok(Some(Validation {
            psnr: Some(ps / n),
            ssim: Some(ss / n),
            loss: None,
        }))
    }

    fn save(&self, file: &mut StateFile) -> Result<()> {
        file.put("gen", &params(&self.generator))?;
        file.put("dis", &params(&self.dis))?;
        file.put_ema(&self.ema)?;
        file.put_adam("adam_g", &self.adam_g)?;
        file.put_adam("adam_d", &self.adam_d)?;
        Ok(())
    }

    fn load(&mut self, file: &StateFile) -> Result<()> {
        let plain = self.device.clone();
        let (n_gen, n_dis) = (params(&self.generator).len(), params(&self.dis).len());
        self.generator = set_params(
            self.generator.clone(),
            &file.take_exact("gen", n_gen, &plain)?,
        )?;
        self.dis = set_params(self.dis.clone(), &file.take_exact("dis", n_dis, &plain)?)?;
        file.take_ema(&mut self.ema, n_gen, &plain)?;
        file.take_adam("adam_g", &mut self.adam_g, n_gen, &plain)?;
        file.take_adam("adam_d", &mut self.adam_d, n_dis, &plain)?;
        Ok(())
    }

    fn export(&self, dir: &Path) -> Result<()> {
        let mut file = StateFile::default();
        file.put("gen", &self.ema.values)?;
        file.meta.insert(
            MUNIT_KEY.into(),
            serde_json::to_string(&self.settings.config).expect("serialisable"),
        );
        write_atomic(&dir.join(MUNIT_FILE), &file.to_bytes()?)
    }
}

/// Reads an exported `munit.safetensors`.
pub fn load_munit(path: &Path, device: &Device) -> Result<(MunitConfig, MunitGen)> {
    let file = StateFile::read(path)?;
    let cfg: MunitConfig = serde_json::from_str(file.meta.get(MUNIT_KEY).ok_or_else(|| {
        Error::CheckpointFormat(format!(
            "{}: not a MUNIT export (no {MUNIT_KEY} metadata)",
            path.display()
        ))
    })?)
    .map_err(|e| Error::CheckpointFormat(format!("{}: {e}", path.display())))?;
    let generator = set_params(cfg.init_gen(device)?, &file.take("gen", device))?;
    Ok((cfg, generator))
}

/// Which LQ style a translation uses.
pub enum Style<'a> {
    /// A style code drawn from N(0, 1) with this seed.
    Random(u64),
    /// The style of an LQ image.
    Of(&'a GrayImage),
}

/// HQ → LQ: the HQ content with an LQ style (any image size; reflect-padded to the multiple).
pub fn translate(
    cfg: &MunitConfig,
    generator: &MunitGen,
    image: &GrayImage,
    style: Style,
    device: &Device,
) -> Result<GrayImage> {
    let m = cfg.multiple();
    let to_tensor = |g: &GrayImage| {
        let t = Tensor::<4>::from_data(
            TensorData::new(
                g.data.iter().map(|v| v * 2.0 - 1.0).collect::<Vec<f32>>(),
                [1, 1, g.height, g.width],
            ),
            device,
        );
        pad_to_multiple(t, m)
    };
    let s = match style {
        Style::Random(seed) => {
            let mut rng = draw_rng(seed, 0, 0);
            let v: Vec<f32> = (0..cfg.style_dim)
                .map(|_| rng.sample(StandardNormal))
                .collect();
            Tensor::<2>::from_data(TensorData::new(v, [1, cfg.style_dim]), device)
        }
        Style::Of(img) => generator.b.encode_style(to_tensor(img)),
    };
    let out = generator
        .b
        .decode(generator.a.encode_content(to_tensor(image)), s);
    let (h, w) = (image.height, image.width);
    crate::restore::to_gray(((out.slice([0..1, 0..1, 0..h, 0..w]) + 1.0) / 2.0).clamp(0.0, 1.0))
}
