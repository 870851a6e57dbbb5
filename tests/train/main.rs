//! The trainers and the commands around them, one file per subject (one test binary, one link):
//! `ddpm` and `munit` on tiny data, the training `commands` end to end, `devices` (every backend
//! and precision), `realism`, the DRR `look` and the `sheet`.

#[path = "../common/mod.rs"]
mod common;

mod commands;
mod ddpm;
mod devices;
mod look;
mod munit;
mod realism;
mod sheet;

use std::path::Path;

use burn::optim::GradientsParams;
use burn::prelude::*;
use common::Scratch;
use dxr::eval::tables;
use dxr::io::{BitDepth, GrayImage, encode_png};
use dxr::spec::Prediction;
use dxr::train::data::{Augment, Columns, Domain, PairSet};
use dxr::train::ddpm::{
    DdpmData, DdpmSettings, DdpmTrainer, DdpmVal, Sdedit, bicubic_degrade, sdedit, val_pairs,
};
use dxr::train::optim::{Steps, grads_in_order, params, set_params};
use dxr::train::{self, RunOptions, StateFile};

/// A smooth random "radiograph": a few Gaussian blobs on a gradient.
fn blobs(seed: u64, w: usize, h: usize) -> GrayImage {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let spots: Vec<(f32, f32, f32, f32)> = (0..6)
        .map(|_| {
            (
                rng.random_range(0.0..w as f32),
                rng.random_range(0.0..h as f32),
                rng.random_range(2.0..6.0),
                rng.random_range(0.2..0.6),
            )
        })
        .collect();
    let data = (0..w * h)
        .map(|p| {
            let (x, y) = ((p % w) as f32, (p / w) as f32);
            let base = 0.2 + 0.3 * y / h as f32;
            let v: f32 = spots
                .iter()
                .map(|(cx, cy, r, a)| {
                    a * (-((x - cx).powi(2) + (y - cy).powi(2)) / (2.0 * r * r)).exp()
                })
                .sum();
            (base + v).clamp(0.0, 1.0)
        })
        .collect();
    GrayImage {
        width: w,
        height: h,
        data,
    }
}

fn write_png(path: &Path, img: &GrayImage) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, encode_png(img, BitDepth::Sixteen).unwrap()).unwrap();
}

/// A pair set of 6 images: HQ blobs, LQ their bicubic ×4 degradation.
fn pair_set(dir: &Path) {
    for k in 0..6 {
        let hq = blobs(k, 32, 32);
        let lq = bicubic_degrade(&hq, 4.0).unwrap();
        write_png(&dir.join(format!("hq/{k:02}.png")), &hq);
        write_png(&dir.join(format!("lq/{k:02}.png")), &lq);
    }
}

fn settings(channels: usize) -> DdpmSettings {
    DdpmSettings {
        spec: train::preset("tiny", channels).unwrap(),
        steps: Steps {
            batch: 4,
            patch: 16,
            lr: 2e-3,
            betas: (0.9, 0.999),
            ema_decay: 0.9,
            seed: 5,
        },
        val_steps: 3,
        precision: Default::default(),
    }
}

fn opts(out: &Path, steps: u64, resume: bool) -> RunOptions {
    RunOptions {
        out: out.to_path_buf(),
        steps,
        resume,
        val_every: 0,
        save_every: 0,
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// A fake `dxr drr` set under `dir/set`: two 64² images (00000, 00001) with one bright disk each
/// (centre (30, 34), radius 6) and their labels.
fn fake_drr_set(dir: &Scratch) {
    // a fake DRR set: two images with one bright disk each, labels in the drr layout
    std::fs::create_dir_all(dir.path("set/labels")).unwrap();
    for k in 0..2 {
        let img = GrayImage {
            width: 64,
            height: 64,
            data: (0..64 * 64)
                .map(|p| {
                    let (x, y) = ((p % 64) as f64 + 0.5, (p / 64) as f64 + 0.5);
                    let noise = ((p * 7919 + k * 31) % 97) as f32 / 97.0 * 0.05;
                    let disk = if (x - 30.0).powi(2) + (y - 34.0).powi(2) < 36.0 {
                        0.2
                    } else {
                        0.0
                    };
                    0.3 + disk + noise + 0.2 * (x / 64.0) as f32
                })
                .collect(),
        };
        write_png(&dir.path(&format!("set/png16/{k:05}.png")), &img);
        let label = serde_json::json!({"width": 64, "height": 64, "nodules": [{"centre_px": [30.0, 34.0], "radius_px": 6.0, "bbox_px": [24.0, 28.0, 36.0, 40.0]}]});
        std::fs::write(
            dir.path(&format!("set/labels/{k:05}.json")),
            label.to_string(),
        )
        .unwrap();
    }
}

/// `dxr train ddpm-hq` on the tiny config in `out`, to `steps`, saving every 3 steps.
fn tiny_train(pairs: &str, out: &str, steps: u64, resume: bool) -> std::process::Command {
    let mut c = common::cli::command();
    c.args([
        "train", "ddpm-hq", "--config", "tiny", "--patch", "16", "--batch", "2",
    ])
    .args([
        "--save-every",
        "3",
        "--seed",
        "3",
        "--steps",
        &steps.to_string(),
    ])
    .args(["--pairs", pairs, "--out", out])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    if resume {
        c.arg("--resume");
    }
    c
}

/// (step, loss) of every row of a run's log.csv.
fn losses(run: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("log.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.split(',');
            (
                f.next().unwrap().parse().unwrap(),
                f.next().unwrap().parse().unwrap(),
            )
        })
        .collect()
}
