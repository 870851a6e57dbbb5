//! `dxr train`: the trainers (DDPM-HQ on pairs, DDPM-LQ and MUNIT-LQ unpaired) behind one loop
//! that shows progress, validates, saves, and stops cleanly on Ctrl-C.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, Subcommand};

use dxr::checkpoint::load_bytes;
use dxr::scale::{read_set_scale, typical_chest_px};
use dxr::spec::ModelScale;
use dxr::train::data::{Augment, Columns, Domain, PairSet};
use dxr::train::ddpm::{DdpmData, DdpmSettings, DdpmTrainer, DdpmVal, val_pairs};
use dxr::train::munit::net::{MunitConfig, MunitWeights};
use dxr::train::munit::{MunitSettings, MunitTrainer};
use dxr::train::optim::Steps;
use dxr::train::{self, RunOptions, Trainer};
use dxr::{Error, Result};

use crate::common::{cancel_on_ctrl_c, columns, open_device, progress_bar};

/// Options every trainer takes.
#[derive(Args, Clone)]
pub struct Common {
    /// Network size: tiny, small, base (the authors' 8-level UNet), sr3-small (SR3's UNet, no
    /// transposed convolutions) or a config JSON file.
    #[arg(long, default_value = "small")]
    config: String,
    /// Train until this many steps in total (a resumed run continues to it).
    #[arg(long)]
    steps: u64,
    /// Run folder: state.safetensors, model.safetensors, log.csv, loss.png.
    #[arg(long)]
    out: PathBuf,
    /// Continue the run in --out from its last save, with the same settings.
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Side of the random training crops.
    #[arg(long, default_value_t = 64)]
    patch: usize,
    /// Adam learning rate (default: 5e-5 for the diffusion models, the authors'; 1e-4 for MUNIT).
    #[arg(long)]
    lr: Option<f64>,
    /// EMA decay of the exported weights.
    #[arg(long, default_value_t = 0.999)]
    ema: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Validate every N steps (and at the end).
    #[arg(long, default_value_t = 500)]
    val_every: u64,
    /// Save the state every N steps (and at the end, and on Ctrl-C).
    #[arg(long, default_value_t = 500)]
    save_every: u64,
    /// What the diffusion network learns to predict: eps (the noise, the authors' objective) or
    /// x0 (the clean image: learns restoration in far fewer steps). Saved in the model's spec.
    /// [default: eps, or what --config FILE says]
    #[arg(long)]
    prediction: Option<String>,
    /// DPM-Solver++ steps of the validation restorations.
    #[arg(long, default_value_t = 10)]
    val_steps: usize,
    /// cpu (the fastest CPU backend: flex), flex, ndarray (the single-threaded reference) or
    /// gpu (wgpu).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Data-parallel training (the DDPM trainers): a comma-separated list of devices, e.g.
    /// wgpu:0,wgpu:1 (gpu:N is the same). Each takes its slice of --batch (which stays the whole
    /// batch); gradients are summed on the first, which keeps the state. On a machine with K
    /// wgpu adapters, wgpu:K..wgpu:2K-1 are second logical devices on the same adapters. A run
    /// resumes on any number of devices. Replaces --device.
    #[arg(long, conflicts_with = "device")]
    devices: Option<String>,
    /// Float type of the DDPM trainers' forward and backward passes: f32, or f16/bf16 for mixed
    /// precision (the weights, Adam and the EMA stay f32; f16 scales the loss by 1024 and skips
    /// a step whose gradients overflow). Off (f32) by default, on every backend; the device must
    /// support the type (wgpu with shader-f16 for f16).
    #[arg(long, default_value = "f32")]
    precision: String,
    /// The training images' pixel pitch (mm at the detector), saved in the model's spec.
    #[arg(long)]
    pixel_mm: Option<f64>,
    /// The training images' lung-field width in pixels, saved in the model's spec [default:
    /// measured on the images (a pair set's scale.json, written by `dxr pairs`)].
    #[arg(long)]
    chest_px: Option<f64>,
}

/// The scale saved in the model's spec: the flags, else `measured` (chest width of the
/// training images) with the flag's pitch.
fn model_scale(c: &Common, measured: Option<ModelScale>) -> Result<Option<ModelScale>> {
    let chest_px = c.chest_px.or(measured.map(|m| m.chest_px));
    let Some(chest_px) = chest_px else {
        eprintln!(
            "note: no chest width could be measured on the training images and none was given \
             (--chest-px): the model will restore inputs at their own pixels"
        );
        return Ok(None);
    };
    let scale = ModelScale {
        pixel_mm: c.pixel_mm.or(measured.and_then(|m| m.pixel_mm)),
        chest_px,
    };
    scale.validate()?;
    Ok(Some(scale))
}

#[derive(Subcommand)]
pub enum TrainCommand {
    /// The restoration model: conditional on LQ (input cat[x_t, LQ]), trained on a pair set.
    DdpmHq {
        #[command(flatten)]
        common: Common,
        /// Pair set: a folder with lq/ and hq/ whose files match by name.
        #[arg(long)]
        pairs: PathBuf,
        /// Held-out pair set for validation (PSNR/SSIM of fast restorations).
        #[arg(long)]
        val: Option<PathBuf>,
        /// Start from this model's weights (fine-tuning; same network as --config). Ignored on
        /// --resume, whose state holds the weights.
        #[arg(long)]
        init: Option<PathBuf>,
    },
    /// The LQ domain's model: unconditional, trained on any folder of LQ images (DRRs).
    DdpmLq {
        #[command(flatten)]
        common: Common,
        /// LQ images: a folder (e.g. a `dxr drr` set's png16/) or one image.
        #[arg(long)]
        lq: PathBuf,
        /// Held-out LQ images for validation (noise-prediction loss).
        #[arg(long)]
        val: Option<PathBuf>,
    },
    /// MUNIT-LQ: unpaired HQ ↔ LQ translation (GAN); --config picks the MUNIT size.
    Munit {
        #[command(flatten)]
        common: Common,
        /// HQ radiographs (a file or folder); the right-most --holdout of each is not used.
        #[arg(long)]
        hq: PathBuf,
        /// LQ images (DRRs).
        #[arg(long)]
        lq: PathBuf,
        /// Fraction of HQ columns (right-most, as displayed) held out; validated on.
        #[arg(long, default_value_t = 1.0 / 3.0)]
        holdout: f64,
    },
}

/// --devices, or the one --device.
fn training_devices(c: &Common) -> Result<Vec<burn::prelude::Device>> {
    match &c.devices {
        Some(list) => dxr::device::open_devices(list),
        None => Ok(vec![open_device(&c.device)?]),
    }
}

/// The flags' batch, crops, EMA and seed, with the trainer's own default rate and its betas.
fn steps(c: &Common, default_lr: f64, betas: (f64, f64)) -> Steps {
    Steps {
        batch: c.batch,
        patch: c.patch,
        lr: c.lr.unwrap_or(default_lr),
        betas,
        ema_decay: c.ema,
        seed: c.seed,
    }
}

fn ddpm_settings(c: &Common, channels: usize) -> Result<DdpmSettings> {
    Ok(DdpmSettings {
        spec: {
            let mut spec = train::preset(&c.config, channels)?;
            if let Some(p) = &c.prediction {
                spec.prediction = p.parse()?;
            }
            spec
        },
        steps: steps(c, 5e-5, (0.9, 0.999)),
        val_steps: c.val_steps,
        precision: c.precision.parse()?,
    })
}

pub fn run_train(cmd: &TrainCommand) -> Result<()> {
    // Ctrl-C is caught from the start: while the data loads it stops the run after its first step.
    let cancel = cancel_on_ctrl_c();
    let (common, mut trainer): (&Common, Box<dyn Trainer>) = match cmd {
        TrainCommand::DdpmHq {
            common,
            pairs,
            val,
            init,
        } => {
            let devices = training_devices(common)?;
            let device = devices[0].clone();
            let mut settings = ddpm_settings(common, 2)?;
            settings.spec.scale = model_scale(common, read_set_scale(pairs)?)?;
            let val = match val {
                Some(v) => {
                    DdpmVal::Pairs(val_pairs(&PairSet::load(v)?, settings.steps.patch.max(64)))
                }
                None => DdpmVal::None,
            };
            let data = DdpmData::Pairs(PairSet::load(pairs)?);
            let mut t = DdpmTrainer::new(settings, data, val, &device)?;
            t.data_parallel(devices)?;
            if let (Some(path), false) = (init, common.resume) {
                let bytes = dxr::checkpoint::read_file(path)?;
                t.init_from(&load_bytes(&bytes, None, &device)?)?;
                eprintln!("starting from the weights of {}", path.display());
            }
            (common, Box::new(t))
        }
        TrainCommand::DdpmLq { common, lq, val } => {
            let devices = training_devices(common)?;
            let device = devices[0].clone();
            let mut settings = ddpm_settings(common, 1)?;
            let domain = Domain::load(lq, Columns::All)?;
            let measured = typical_chest_px(&domain.images).map(|chest_px| ModelScale {
                pixel_mm: None,
                chest_px,
            });
            settings.spec.scale = model_scale(common, measured)?;
            let val = match val {
                Some(v) => {
                    let d = Domain::load(v, Columns::All)?;
                    d.check_patch(settings.steps.patch)?;
                    DdpmVal::Patches(
                        (0..8)
                            .map(|k| d.patch(99, 0, k, settings.steps.patch, &Augment::NONE))
                            .collect(),
                    )
                }
                None => DdpmVal::None,
            };
            let data = DdpmData::Domain(domain, Augment::FLIP);
            let mut t = DdpmTrainer::new(settings, data, val, &device)?;
            t.data_parallel(devices)?;
            (common, Box::new(t))
        }
        TrainCommand::Munit {
            common,
            hq,
            lq,
            holdout,
        } => {
            if common.precision != "f32" {
                return Err(Error::Usage(
                    "--precision: MUNIT trains in f32 (mixed precision is for the DDPM trainers)"
                        .into(),
                ));
            }
            if common.devices.is_some() {
                return Err(Error::Usage(
                    "--devices: MUNIT trains on one device (data parallelism is for the DDPM trainers)"
                        .into(),
                ));
            }
            let device = open_device(&common.device)?;
            let settings = MunitSettings {
                config: MunitConfig::preset(&common.config)?,
                weights: MunitWeights::default(),
                steps: steps(common, 1e-4, (0.5, 0.999)),
            };
            let held = Domain::load(hq, columns("heldout", *holdout)?)?;
            let val = if *holdout > 0.0 && held.check_patch(settings.steps.patch).is_ok() {
                (0..4)
                    .map(|k| held.patch(77, 0, k, settings.steps.patch, &Augment::NONE))
                    .collect()
            } else {
                Vec::new()
            };
            let hq = Domain::load(hq, columns("train", *holdout)?)?;
            let lq = Domain::load(lq, Columns::All)?;
            (
                common,
                Box::new(MunitTrainer::new(settings, hq, lq, val, &device)?),
            )
        }
    };
    drive(trainer.as_mut(), common, &cancel)
}

/// The run loop with a progress bar and Ctrl-C (save and stop).
fn drive(trainer: &mut dyn Trainer, c: &Common, cancel: &AtomicBool) -> Result<()> {
    let opts = RunOptions {
        out: c.out.clone(),
        steps: c.steps,
        resume: c.resume,
        val_every: c.val_every,
        save_every: c.save_every,
    };
    let bar = progress_bar(c.steps, "steps");
    let mut last_val = String::new();
    let summary = train::run(trainer, &opts, &mut |p| {
        bar.set_position(p.step);
        if let Some(v) = p.val {
            last_val = match (v.psnr, v.ssim, v.loss) {
                (Some(a), Some(b), _) => format!(" val PSNR {a:.2} dB SSIM {b:.4}"),
                (_, _, Some(l)) => format!(" val loss {l:.4}"),
                _ => String::new(),
            };
        }
        bar.set_message(format!("loss {:.4}{last_val}", p.loss));
        !cancel.load(Ordering::SeqCst)
    })?;
    bar.finish_and_clear();
    let first = summary.rows.iter().find(|r| r.step > summary.first_step);
    let last = summary.rows.last();
    if let (Some(a), Some(b)) = (first, last) {
        eprintln!(
            "{}: steps {}→{}, loss {:.4} (step {}) → {:.4} (step {}); state and model in {}",
            trainer.kind(),
            summary.first_step,
            summary.last_step,
            a.loss,
            a.step,
            b.loss,
            b.step,
            c.out.display()
        );
    }
    if summary.cancelled {
        eprintln!(
            "stopped at step {}: state saved, continue with --resume",
            summary.last_step
        );
        return Err(Error::Cancelled);
    }
    Ok(())
}
