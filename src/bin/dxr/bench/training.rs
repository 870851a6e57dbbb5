//! `dxr train-bench`: time per training step of both trainers (DDPM-HQ and MUNIT) per
//! backend, on synthetic images; `dxr bench` uses its DDPM-HQ step too.

use std::time::Instant;

use burn::prelude::*;
use clap::Args;

use dxr::device::{self, DeviceChoice};
use dxr::io::GrayImage;
use dxr::spec::ModelSpec;
use dxr::train::data::{Columns, Domain, PairSet};
use dxr::train::ddpm::{DdpmData, DdpmSettings, DdpmTrainer, DdpmVal, bicubic_degrade};
use dxr::train::munit::net::{MunitConfig, MunitWeights};
use dxr::train::munit::{MunitSettings, MunitTrainer};
use dxr::train::optim::Steps;
use dxr::train::{self, Trainer};
use dxr::{Error, Result};

use super::baseline::{Baseline, describe_baselines};
use crate::common::median;

/// Settings of a timed DDPM-HQ training step (the trainer's defaults).
pub(crate) fn ddpm_bench_settings(spec: ModelSpec, batch: usize, patch: usize) -> DdpmSettings {
    DdpmSettings {
        spec,
        steps: Steps {
            batch,
            patch,
            lr: 5e-5,
            betas: (0.9, 0.999),
            ema_decay: 0.999,
            seed: 0,
        },
        val_steps: 1,
        precision: Default::default(),
    }
}

/// A DDPM-HQ trainer on synthetic bicubic pairs twice the crop side.
pub(crate) fn ddpm_bench_trainer(settings: DdpmSettings, device: &Device) -> Result<DdpmTrainer> {
    let images = synthetic(4, settings.steps.patch * 2, 1);
    let set = PairSet {
        lq: images
            .iter()
            .map(|i| bicubic_degrade(i, 4.0))
            .collect::<Result<_>>()?,
        hq: images.clone(),
        names: (0..images.len()).map(|k| k.to_string()).collect(),
    };
    DdpmTrainer::new(settings, DdpmData::Pairs(set), DdpmVal::None, device)
}

/// Seconds of `steps` training steps after one warm-up step, each waited for on the device.
pub(crate) fn trainer_step_times(
    mut t: Box<dyn Trainer>,
    devices: &[Device],
    steps: usize,
) -> Result<Vec<f64>> {
    let sync = || -> Result<()> {
        for d in devices {
            d.sync().map_err(|e| Error::Device(format!("{e:?}")))?;
        }
        Ok(())
    };
    t.step(0)?;
    sync()?;
    let mut times = Vec::new();
    for k in 0..steps.max(1) {
        let t0 = Instant::now();
        t.step(k as u64 + 1)?;
        sync()?;
        times.push(t0.elapsed().as_secs_f64());
    }
    Ok(times)
}

#[derive(Args)]
pub struct TrainBenchArgs {
    /// Network size (tiny, small, base or a config file), for DDPM-HQ and MUNIT alike.
    #[arg(long, default_value = "small")]
    config: String,
    #[arg(long, default_value_t = 4)]
    batch: usize,
    #[arg(long, default_value_t = 64)]
    patch: usize,
    /// Timed steps per backend (median reported) after one warm-up step.
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Backends (cpu, flex, ndarray, gpu); default cpu, ndarray and gpu when a wgpu adapter exists.
    /// A comma-separated list (wgpu:0,wgpu:1) times a data-parallel DDPM-HQ step over those
    /// devices, as `dxr train --devices` runs it (MUNIT rows are skipped for it).
    #[arg(long)]
    device: Vec<String>,
    /// Float type of the DDPM-HQ step's forward and backward passes (f32, f16, bf16; the MUNIT
    /// rows are skipped for f16/bf16), as `dxr train --precision`.
    #[arg(long, default_value = "f32")]
    precision: String,
    /// Measure with these of our choices undone (malloc, conv, norm; comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub baseline: Vec<Baseline>,
}

/// Synthetic training data: smooth random images (no files needed).
fn synthetic(n: usize, side: usize, seed: u64) -> Vec<GrayImage> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let (fx, fy, ph) = (
                rng.random_range(0.02..0.2),
                rng.random_range(0.02..0.2),
                rng.random_range(0.0..6.0),
            );
            GrayImage::from_fn(side, side, |x, y| {
                let (x, y) = (x as f32, y as f32);
                0.5 + 0.4 * ((x * fx + ph).sin() * (y * fy).cos())
            })
        })
        .collect()
}

pub fn run_train_bench(a: &TrainBenchArgs) -> Result<()> {
    let devices: Vec<String> = if a.device.is_empty() {
        let mut v = vec!["cpu".to_string(), "ndarray".to_string()];
        if device::gpu().is_ok() {
            v.push("gpu".into());
        }
        v
    } else {
        a.device.clone()
    };
    println!(
        "training benchmark: {} config, batch {}, {}² crops, DDPM-HQ in {}, median of {} steps after a warm-up{}",
        a.config,
        a.batch,
        a.patch,
        a.precision,
        a.steps,
        describe_baselines(&a.baseline)
    );
    println!("| trainer | device | s/step | images/s | vs first |");
    println!("|---|---|---|---|---|");
    for trainer in ["ddpm-hq", "munit"] {
        let mut first_rate = None;
        for dev_name in &devices {
            let list = dev_name.contains(',');
            if (list || a.precision != "f32") && trainer != "ddpm-hq" {
                continue;
            }
            let all = if list {
                device::open_devices(dev_name)?
            } else {
                vec![device::open(dev_name.parse::<DeviceChoice>()?)?]
            };
            let device = all[0].clone();
            let t: Box<dyn Trainer> = if trainer == "ddpm-hq" {
                let mut settings =
                    ddpm_bench_settings(train::preset(&a.config, 2)?, a.batch, a.patch);
                settings.precision = a.precision.parse()?;
                let mut t = ddpm_bench_trainer(settings, &device)?;
                t.data_parallel(all.clone())?;
                Box::new(t)
            } else {
                let images = synthetic(4, a.patch * 2, 1);
                let dom = |imgs: Vec<GrayImage>| Domain {
                    names: (0..imgs.len()).map(|k| k.to_string()).collect(),
                    images: imgs,
                    columns: Columns::All,
                };
                let settings = MunitSettings {
                    config: MunitConfig::preset(&a.config)?,
                    weights: MunitWeights::default(),
                    steps: Steps {
                        batch: a.batch,
                        patch: a.patch,
                        lr: 1e-4,
                        betas: (0.5, 0.999),
                        ema_decay: 0.999,
                        seed: 0,
                    },
                };
                let lq = images
                    .iter()
                    .map(|i| bicubic_degrade(i, 4.0))
                    .collect::<Result<Vec<_>>>()?;
                Box::new(MunitTrainer::new(
                    settings,
                    dom(images.clone()),
                    dom(lq),
                    Vec::new(),
                    &device,
                )?)
            };
            let med = median(trainer_step_times(t, &all, a.steps)?);
            let rate = a.batch as f64 / med;
            let base = *first_rate.get_or_insert(rate);
            println!(
                "| {trainer} | {dev_name} | {med:.3} | {rate:.2} | {:.2}× |",
                rate / base
            );
        }
    }
    Ok(())
}
