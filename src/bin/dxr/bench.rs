//! `dxr bench`: milliseconds per denoiser step (tiled where the backend's memory budget asks)
//! for each model, size and backend, then whole-image restorations with their peak resident
//! memory. Medians after one warm-up run; ratios against the first backend of the same row.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use burn::prelude::*;
use clap::Args;

use dxr::config::ModelSpec;
use dxr::device::{self, DeviceChoice};
use dxr::diffusion::Denoiser;
use dxr::diffusion::sampler::{SamplerSettings, SeededNoise};
use dxr::restore::{RestoreOptions, Restorer, plan_tiles};
use dxr::{Error, Result};

#[derive(Args)]
pub struct BenchArgs {
    /// Models: config JSON files, or checkpoints that carry their config (default: the shipped
    /// default model, and the cheff `small` fixture config when ../shared is there).
    #[arg(long, num_args = 1..)]
    config: Vec<PathBuf>,
    /// Square sides to time one step at.
    #[arg(long, num_args = 1.., default_values_t = [256, 512])]
    size: Vec<usize>,
    /// Timed runs per backend and size (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Backends (ndarray, flex, gpu); default: every one present.
    #[arg(long, num_args = 1..)]
    device: Vec<String>,
    /// Images to restore whole with the default model and the default sampler settings
    /// (timed once each, with the peak resident memory of the restoration).
    #[arg(long, num_args = 1..)]
    restore: Vec<PathBuf>,
    /// Backend of the whole-image restorations.
    #[arg(long, default_value = "cpu")]
    restore_device: String,
}

fn spec_of(path: &std::path::Path) -> Result<ModelSpec> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if let Ok(text) = std::str::from_utf8(&bytes)
        && let Ok(spec) = ModelSpec::from_json(text)
    {
        return Ok(spec);
    }
    let ckpt = dxr::checkpoint::read_checkpoint(&bytes)?;
    ckpt.stored_spec()?.ok_or_else(|| {
        Error::Config(format!(
            "{}: neither a config JSON nor a checkpoint with its config",
            path.display()
        ))
    })
}

/// Peak resident memory of this process since the last [`reset_peak`], MiB (Linux).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Resets the kernel's peak-RSS counter (`clear_refs` 5), so that the next reading is this
/// restoration's own.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(a: &BenchArgs) -> Result<()> {
    let mut models = a.config.clone();
    if models.is_empty() {
        models.push(super::default_model());
        let small = PathBuf::from(std::env::var("SHARED").unwrap_or_else(|_| "../shared".into()))
            .join("fixtures/cheff/small/config.json");
        if small.is_file() {
            models.push(small);
        }
    }
    let names: Vec<String> = if a.device.is_empty() {
        vec!["ndarray".into(), "flex".into(), "gpu".into()]
    } else {
        a.device.clone()
    };
    let mut backends: Vec<(String, Device, DeviceChoice)> = Vec::new();
    for n in &names {
        let choice: DeviceChoice = n.parse()?;
        match device::open(choice) {
            Ok(d) => backends.push((choice.name().to_string(), d, choice)),
            Err(e) => println!("{n}: skipped: {e}"),
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "one denoiser step (batch 1), median of {} runs after 1 warm-up; {threads} CPU threads available",
        a.runs.max(1)
    );
    println!("| model | size | backend | median ms/step | tiles | ratio to first backend |");
    println!("|---|---|---|---|---|---|");
    for model in &models {
        let spec = spec_of(model)?;
        let schedule = spec.schedule.build()?;
        let label = model.file_name().unwrap_or_default().to_string_lossy();
        let label = if label == "config.json" {
            model
                .parent()
                .and_then(|p| p.file_name())
                .map(|n| format!("cheff {}", n.to_string_lossy()))
                .unwrap_or_default()
        } else {
            label.into_owned()
        };
        for &side in &a.size {
            let mut first = None;
            for (name, device, choice) in &backends {
                let net = spec.network.init(device)?;
                let m = spec.network.input_multiple();
                let p = side.next_multiple_of(m);
                let grid = match plan_tiles(&spec.network, [p, p], &choice.budget(), None) {
                    Ok(g) => g,
                    Err(e) => {
                        println!("| {label} | {side}² | {name} | – | {e} | – |");
                        continue;
                    }
                };
                let den = Denoiser::new(&net, &schedule, spec.prediction).with_tiles(Some(&grid));
                let x = Tensor::<4>::random(
                    [1, spec.network.image_channels(), p, p],
                    burn::tensor::Distribution::Normal(0.0, 1.0),
                    device,
                );
                let cond = Tensor::<4>::random(
                    [1, spec.network.cond_channels()?, p, p],
                    burn::tensor::Distribution::Uniform(-1.0, 1.0),
                    device,
                );
                let mut times = Vec::new();
                for i in 0..=a.runs.max(1) {
                    let start = Instant::now();
                    let out = den.output(x.clone(), cond.clone(), (schedule.len() / 2) as i64);
                    let _ = out.into_data(); // wait for the device
                    if i > 0 {
                        times.push(start.elapsed().as_secs_f64() * 1e3);
                    }
                }
                let med = median(times);
                let base = *first.get_or_insert(med);
                println!(
                    "| {label} | {side}² | {name} | {med:.1} | {} | {:.2} |",
                    grid.len(),
                    med / base
                );
            }
        }
    }
    if !a.restore.is_empty() {
        let choice: DeviceChoice = a.restore_device.parse()?;
        let device = device::open(choice)?;
        let restorer = Restorer::new(super::read_model(&super::default_model(), None, &device)?)?;
        let settings = SamplerSettings::new();
        println!();
        println!(
            "whole-image restoration, default model, {:?} {} steps, on {}",
            settings.kind,
            settings.steps,
            choice.name()
        );
        println!("| image | size | restored at | tiles | seconds | peak resident MiB |");
        println!("|---|---|---|---|---|---|");
        for path in &a.restore {
            let (image, scale) = dxr::io::read_with_scale(path)?;
            let opts = RestoreOptions {
                input_scale: scale,
                ..RestoreOptions::new(choice.budget())
            };
            reset_peak();
            let start = Instant::now();
            let out = restorer.restore(
                &image,
                &opts,
                &settings,
                &mut SeededNoise::new(0),
                &device,
                &mut |_| ControlFlow::Continue(()),
            )?;
            let secs = start.elapsed().as_secs_f64();
            let [mw, mh] = out.plan.model;
            println!(
                "| {} | {}×{} | {mw}×{mh} | {} | {secs:.1} | {} |",
                path.file_name().unwrap_or_default().to_string_lossy(),
                image.width,
                image.height,
                out.plan.grid.len(),
                peak_rss_mib().map_or("–".into(), |m| format!("{m:.0}"))
            );
        }
    }
    Ok(())
}
