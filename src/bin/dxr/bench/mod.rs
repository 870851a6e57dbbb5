//! `dxr bench`: milliseconds per denoiser step (tiled where the backend's memory budget asks)
//! for each model, size and backend, a DDPM-HQ training step, the same networks in PyTorch when
//! the authors' code and `torch` are there, then whole-image restorations with their peak
//! resident memory. Medians after one warm-up run. `dxr train-bench` is in `training.rs`.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use clap::Args;

use dxr::device::{self, DeviceChoice};
use dxr::diffusion::Denoiser;
use dxr::diffusion::sampler::{SamplerSettings, SeededNoise};
use dxr::restore::{RestoreOptions, Restorer, plan_tiles};
use dxr::spec::ModelSpec;
use dxr::train;
use dxr::{Error, Result};

mod baseline;
pub mod training;

use baseline::describe_baselines;
pub use baseline::{Baseline, apply_baselines};
use training::{ddpm_bench_settings, ddpm_bench_trainer, trainer_step_times};

use crate::common::median;

#[derive(Args)]
pub struct BenchArgs {
    /// Models: preset names (tiny, small, base, sr3-small), config JSON files, or checkpoints
    /// that carry their config (default: the shipped default model, and the cheff `small`
    /// fixture config when ../shared is there).
    #[arg(long, num_args = 1..)]
    config: Vec<PathBuf>,
    /// Square sides to time one step at.
    #[arg(long, num_args = 1.., default_values_t = [256, 512])]
    size: Vec<usize>,
    /// Timed runs per backend and size (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Backends (ndarray, flex, tch, gpu); default: every one built in and present.
    #[arg(long, num_args = 1..)]
    device: Vec<String>,
    /// Images to restore whole with the default model and the default sampler settings
    /// (timed once each, with the peak resident memory of the restoration).
    #[arg(long, num_args = 1..)]
    restore: Vec<PathBuf>,
    /// Backend of the whole-image restorations.
    #[arg(long, default_value = "cpu")]
    restore_device: String,
    /// Batch of the DDPM-HQ training step timed per model and backend (0: no training rows).
    #[arg(long, default_value_t = 4)]
    train_batch: usize,
    /// Crop side of the training step.
    #[arg(long, default_value_t = 64)]
    train_patch: usize,
    /// Timed training steps (median reported) after one warm-up step.
    #[arg(long, default_value_t = 5)]
    train_steps: usize,
    /// Python with `torch` for the PyTorch rows (they run when $DXR_REFERENCE holds the authors'
    /// `cheff/sr`); default $DXR_PYTHON, else python3.
    #[arg(long)]
    python: Option<PathBuf>,
    /// Measure with these of our choices undone (malloc, conv, norm; comma-separated), to
    /// compare a run without against one with.
    #[arg(long, value_delimiter = ',')]
    pub baseline: Vec<Baseline>,
}

fn spec_of(path: &std::path::Path) -> Result<ModelSpec> {
    // a preset name (the conditional restoration network), unless a file of that name exists
    if !path.exists()
        && let Some(name) = path.to_str()
        && let Ok(spec) = train::preset(name, 2)
    {
        return Ok(spec);
    }
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

/// A model's row label: the file name, or `cheff NAME` for a fixture's `config.json`.
fn label_of(model: &Path) -> String {
    let label = model.file_name().unwrap_or_default().to_string_lossy();
    if label == "config.json" {
        model
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| format!("cheff {}", n.to_string_lossy()))
            .unwrap_or_default()
    } else {
        label.into_owned()
    }
}

/// Rows of the comparison table: (model, work) → backend → seconds.
type Table = BTreeMap<(String, String), BTreeMap<String, f64>>;

/// The backends, models and sections of `dxr bench`, in order; each section prints its table
/// and adds its rows to the comparison with PyTorch.
pub fn run(a: &BenchArgs) -> Result<()> {
    let models = bench_models(a);
    let backends = bench_backends(a)?;
    let threads = rayon::current_num_threads();
    let mut table = Table::new();
    println!(
        "one denoiser step (batch 1), median of {} runs after 1 warm-up; flex on {threads} threads (rayon), ndarray on 1{}",
        a.runs.max(1),
        describe_baselines(&a.baseline)
    );
    println!("| model | size | backend | median ms/step | tiles | ratio to first backend |");
    println!("|---|---|---|---|---|---|");
    let specs = step_rows(a, &models, &backends, &mut table)?;
    if a.train_batch > 0 {
        train_rows(a, &specs, &backends, &mut table)?;
    }
    match torch_rows(a, &specs, threads) {
        Ok(rows) if !rows.is_empty() => {
            for (key, secs) in rows {
                table.entry(key).or_default().insert(TORCH.into(), secs);
            }
            print_comparison(&table);
        }
        Ok(_) => {}
        Err(why) => println!("\nPyTorch rows skipped: {why}"),
    }
    if !a.restore.is_empty() {
        restore_rows(a)?;
    }
    Ok(())
}

type Backends = Vec<(String, Device, DeviceChoice)>;

/// The models to time: `--config`, else the default model and the cheff `small` fixture.
fn bench_models(a: &BenchArgs) -> Vec<PathBuf> {
    let mut models = a.config.clone();
    if models.is_empty() {
        models.push(crate::common::default_model());
        let small =
            PathBuf::from(std::env::var("DXR_SHARED").unwrap_or_else(|_| "../shared".into()))
                .join("fixtures/cheff/small/config.json");
        if small.is_file() {
            models.push(small);
        }
    }
    models
}

/// The backends to time: `--device`, else every one built in; one that cannot open is skipped
/// with its reason.
fn bench_backends(a: &BenchArgs) -> Result<Backends> {
    let names: Vec<String> = if a.device.is_empty() {
        let mut v = vec!["ndarray".to_string(), "flex".into()];
        if cfg!(feature = "tch") {
            v.push("tch".into());
        }
        v.push("gpu".into());
        v
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
    Ok(backends)
}

/// One denoiser step per model, size and backend; the models' specs, for the other sections.
fn step_rows(
    a: &BenchArgs,
    models: &[PathBuf],
    backends: &Backends,
    table: &mut Table,
) -> Result<Vec<(String, ModelSpec)>> {
    let mut specs = Vec::new();
    for model in models {
        let spec = spec_of(model)?;
        let schedule = spec.schedule.build()?;
        let label = label_of(model);
        for &side in &a.size {
            let mut first = None;
            for (name, device, choice) in backends {
                let net = spec.network.init(device)?;
                let m = spec.network.input_multiple();
                let p = side.next_multiple_of(m);
                let grid = match plan_tiles(
                    &spec.network,
                    dxr::spec::Size::new(p, p),
                    &choice.budget(),
                    None,
                ) {
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
                table
                    .entry((label.clone(), format!("step {side}²")))
                    .or_default()
                    .insert(name.clone(), med / 1e3);
            }
        }
        specs.push((label, spec));
    }
    Ok(specs)
}

/// One DDPM-HQ training step per model and backend.
fn train_rows(
    a: &BenchArgs,
    specs: &[(String, ModelSpec)],
    backends: &Backends,
    table: &mut Table,
) -> Result<()> {
    println!();
    println!(
        "DDPM-HQ training step (forward, backward, Adam, EMA), batch {}, {}² crops, median of {} after 1 warm-up",
        a.train_batch, a.train_patch, a.train_steps
    );
    println!("| model | backend | s/step | images/s |");
    println!("|---|---|---|---|");
    for (label, spec) in specs {
        for (name, device, _) in backends {
            let settings = ddpm_bench_settings(spec.clone(), a.train_batch, a.train_patch);
            let times = trainer_step_times(
                Box::new(ddpm_bench_trainer(settings, device)?),
                std::slice::from_ref(device),
                a.train_steps,
            )?;
            let med = median(times);
            println!(
                "| {label} | {name} | {med:.3} | {:.1} |",
                a.train_batch as f64 / med
            );
            table
                .entry((label.clone(), train_work(a)))
                .or_default()
                .insert(name.clone(), med);
        }
    }
    Ok(())
}

/// Whole-image restorations with the default model, with their peak memory.
fn restore_rows(a: &BenchArgs) -> Result<()> {
    let choice: DeviceChoice = a.restore_device.parse()?;
    let device = device::open(choice)?;
    let restorer = Restorer::new(crate::common::read_model(
        &crate::common::default_model(),
        None,
        &device,
    )?)?;
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
        let [mw, mh] = out.plan.model.wh();
        println!(
            "| {} | {}×{} | {mw}×{mh} | {} | {secs:.1} | {} |",
            path.file_name().unwrap_or_default().to_string_lossy(),
            image.width,
            image.height,
            out.plan.grid.len(),
            peak_rss_mib().map_or("–".into(), |m| format!("{m:.0}"))
        );
    }
    Ok(())
}

const TORCH: &str = "PyTorch";

fn train_work(a: &BenchArgs) -> String {
    format!("train b{} {}²", a.train_batch, a.train_patch)
}

/// The PyTorch side (`scripts/bench-torch.py` on the authors' UNet) of every cheff model, run
/// after ours so that the two never share the cores. `Ok(empty)` when there is nothing to run.
fn torch_rows(
    a: &BenchArgs,
    specs: &[(String, ModelSpec)],
    threads: usize,
) -> std::result::Result<Vec<((String, String), f64)>, String> {
    let Some(reference) = std::env::var_os("DXR_REFERENCE") else {
        println!(
            "\nPyTorch rows: set DXR_REFERENCE to a copy of qureai/DiffusionXray (and DXR_PYTHON to a python with torch) to add them"
        );
        return Ok(Vec::new());
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench-torch.py");
    let python = a
        .python
        .clone()
        .or_else(|| std::env::var_os("DXR_PYTHON").map(PathBuf::from))
        .unwrap_or_else(|| "python3".into());
    let dir = std::env::temp_dir().join(format!("dxr-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut cmd = std::process::Command::new(&python);
    cmd.arg(&script)
        .env("DXR_REFERENCE", &reference)
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--runs")
        .arg(a.runs.max(1).to_string())
        .arg("--train-batch")
        .arg(a.train_batch.to_string())
        .arg("--train-patch")
        .arg(a.train_patch.to_string())
        .arg("--train-steps")
        .arg(a.train_steps.to_string())
        .arg("--size")
        .args(a.size.iter().map(|s| s.to_string()));
    let mut any = false;
    for (k, (label, spec)) in specs.iter().enumerate() {
        // the cheff UNet from the authors' code; SR3 from its public implementation, when
        // DXR_SR3_REFERENCE points at a copy (the script names what is missing)
        let json = match &spec.network {
            dxr::spec::NetworkConfig::Cheff(c) => serde_json::json!({ "model": {
                "dim": c.dim, "init_dim": c.init_dim, "out_dim": c.out_dim,
                "dim_mults": c.dim_mults, "num_attention_layer": c.num_attention_layer,
                "channels": c.channels, "block_groups": c.block_groups,
            }}),
            dxr::spec::NetworkConfig::Sr3(c) => {
                let Some(sr3) = std::env::var_os("DXR_SR3_REFERENCE") else {
                    println!(
                        "\nPyTorch rows of {label}: set DXR_SR3_REFERENCE to a copy of the public SR3 implementation to add them"
                    );
                    continue;
                };
                cmd.env("DXR_SR3_REFERENCE", sr3);
                serde_json::json!({ "family": "sr3", "model": c })
            }
        };
        let path = dir.join(format!("model{k}.json"));
        std::fs::write(&path, json.to_string()).map_err(|e| e.to_string())?;
        cmd.arg("--model")
            .arg(format!("{label}={}", path.display()));
        any = true;
    }
    if !any {
        return Ok(Vec::new());
    }
    let out = cmd
        .output()
        .map_err(|e| format!("{}: {e}", python.display()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = out?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{} {} failed: {}",
            python.display(),
            script.display(),
            err.lines().last().unwrap_or("")
        ));
    }
    let mut rows = Vec::new();
    println!();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| format!("bench-torch.py printed {line:?}: {e}"))?;
        let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        match v["kind"].as_str() {
            Some("info") => println!(
                "PyTorch {} on {} threads (torch.get_num_threads); cheff: the authors' cheff/sr/model.py, sr3: sr3_modules/unet.py",
                text("torch"),
                v["threads"]
            ),
            Some("step") => rows.push((
                (text("model"), format!("step {}²", v["size"])),
                v["ms"].as_f64().unwrap_or(f64::NAN) / 1e3,
            )),
            Some("train") => rows.push((
                (text("model"), train_work(a)),
                v["s"].as_f64().unwrap_or(f64::NAN),
            )),
            _ => return Err(format!("bench-torch.py printed {line:?}")),
        }
    }
    Ok(rows)
}

/// Seconds per row and backend, and each backend's time over PyTorch's (below 1: faster).
fn print_comparison(table: &Table) {
    let mut cols: Vec<String> = table
        .values()
        .flat_map(|r| r.keys().cloned())
        .filter(|k| k != TORCH)
        .collect();
    cols.sort();
    cols.dedup();
    println!();
    println!(
        "side by side (medians; each ratio = backend time ÷ PyTorch time, below 1 is faster than PyTorch)"
    );
    let head: Vec<String> = cols
        .iter()
        .map(|c| format!("{c} | {c} ÷ PyTorch"))
        .collect();
    println!("| model | work | PyTorch | {} |", head.join(" | "));
    println!("|---|---|---|{}", "---|---|".repeat(cols.len()));
    for ((model, work), row) in table {
        let Some(&torch) = row.get(TORCH) else {
            continue;
        };
        let fmt = |s: f64| {
            if s < 1.0 {
                format!("{:.0} ms", s * 1e3)
            } else {
                format!("{s:.2} s")
            }
        };
        let cells: Vec<String> = cols
            .iter()
            .map(|c| match row.get(c) {
                Some(&s) => format!("{} | {:.2}×", fmt(s), s / torch),
                None => "– | –".into(),
            })
            .collect();
        println!(
            "| {model} | {work} | {} | {} |",
            fmt(torch),
            cells.join(" | ")
        );
    }
}
