//! `dxr`: the DiffusionXRay command line (restore, info, bench).

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::prelude::*;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use dxr::checkpoint::{self, read_checkpoint};
use dxr::config::ModelSpec;
use dxr::device::{self, DeviceChoice};
use dxr::diffusion::sampler::{SamplerKind, SamplerSettings, SeededNoise};
use dxr::io::{self, BitDepth, GrayImage};
use dxr::restore::Restorer;
use dxr::{Error, Result};

mod drr;
mod train;

#[derive(Parser)]
#[command(
    name = "dxr",
    version,
    about = "Restore DRR chest radiographs with diffusion models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Restore images (PNG, JPEG, TIFF, DICOM; files or folders) into OUT_DIR as PNG.
    Restore {
        /// Image files or folders of images.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output folder (created if missing).
        #[arg(short, long)]
        out: PathBuf,
        /// Checkpoint: `.pt` (authors), `.pth` (SR3) or `.safetensors`; default: the bundled
        /// model (`models/default.safetensors`, or `$DXR_DEFAULT_MODEL`).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Model config JSON (needed unless the checkpoint carries its own).
        #[arg(long)]
        config: Option<PathBuf>,
        /// ddim, plms, ddpm or dpmpp.
        #[arg(long, default_value = "dpmpp")]
        sampler: String,
        /// Sampler steps (1..=T).
        #[arg(long, default_value_t = 25)]
        steps: usize,
        /// DDIM η.
        #[arg(long, default_value_t = 0.0)]
        eta: f64,
        /// Random seed: the same seed gives the same output.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// cpu or gpu (wgpu).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Output PNG bit depth: 8 or 16.
        #[arg(long, default_value_t = 16)]
        bits: u8,
    },
    /// Convert a checkpoint (.pt, .pth, .safetensors + config) into our safetensors file, which
    /// carries its config and loads anywhere, the browser included.
    Convert {
        input: PathBuf,
        output: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Store half-precision weights (half the size).
        #[arg(long)]
        f16: bool,
    },
    /// Compare two images: max |a − b| in 8-bit steps, PSNR and SSIM (on 8-bit values).
    Compare { a: PathBuf, b: PathBuf },
    /// Resample radiographs to a width (aspect kept), as 16-bit PNG: brings a radiograph to the
    /// pixel scale of the DRRs before training or comparing.
    Resize {
        /// Image files or folders of images.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output folder (created if missing).
        #[arg(short, long)]
        out: PathBuf,
        /// Width in pixels.
        #[arg(long)]
        width: usize,
    },
    /// Show a checkpoint's family, config and parameter count.
    Info {
        file: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Render DRRs from a chest CT, with seeded poses and inserted lung nodules, and their labels.
    Drr(Box<drr::DrrArgs>),
    /// DRRs per second: exact traversal (CPU, GPU) against a plain trilinear march.
    DrrBench(Box<drr::BenchArgs>),
    /// Train a model: ddpm-hq (restoration, on pairs) or ddpm-lq (the LQ look, unpaired).
    #[command(subcommand)]
    Train(train::TrainCommand),
    /// Make a pair set (lq/, hq/) from HQ radiographs with a degradation.
    Pairs(Box<train::PairsArgs>),
    /// Translate HQ images to the LQ look with a trained LQ model.
    SynthLq(Box<train::SynthArgs>),
    /// Realism of images (histogram distance to a real radiograph, spectrum slope, edge
    /// sharpness) and nodule CNR from a DRR set's labels.
    Realism(Box<train::RealismArgs>),
    /// Before/after sheet: a PNG grid, one column per folder, one row per image name.
    Sheet(Box<train::SheetArgs>),
    /// Training images per second (DDPM-HQ and MUNIT) on every backend.
    TrainBench(Box<train::TrainBenchArgs>),
    /// PSNR/SSIM per image and mean ± std, as a Markdown table and CSV.
    Eval(Box<train::EvalArgs>),
    /// Time one UNet evaluation (one sampler step) on every available backend.
    Bench {
        /// Model config JSON.
        #[arg(long)]
        config: PathBuf,
        /// Height and width.
        #[arg(long, num_args = 2, value_names = ["H", "W"], default_values_t = [256, 256])]
        size: Vec<usize>,
        /// Timed runs per backend (median reported).
        #[arg(long, default_value_t = 5)]
        steps: usize,
        /// Batch size.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Only these backends (cpu, gpu); default: all available.
        #[arg(long)]
        device: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Restore {
            inputs,
            out,
            weights,
            config,
            sampler,
            steps,
            eta,
            seed,
            device,
            bits,
        } => restore(
            &inputs,
            &out,
            weights.as_deref(),
            config.as_deref(),
            &sampler,
            steps,
            eta,
            seed,
            &device,
            bits,
        ),
        Command::Info { file, config } => info(&file, config.as_deref()),
        Command::Compare { a, b } => compare(&a, &b),
        Command::Resize { inputs, out, width } => resize(&inputs, &out, width),
        Command::Convert {
            input,
            output,
            config,
            f16,
        } => convert(&input, &output, config.as_deref(), f16),
        Command::Drr(a) => drr::run(&a),
        Command::Train(t) => train::run_train(&t),
        Command::Pairs(a) => train::run_pairs(&a),
        Command::SynthLq(a) => train::run_synth(&a),
        Command::Eval(a) => train::run_eval(&a),
        Command::TrainBench(a) => train::run_train_bench(&a),
        Command::Realism(a) => train::run_realism(&a),
        Command::Sheet(a) => train::run_sheet(&a),
        Command::DrrBench(a) => drr::bench(&a),
        Command::Bench {
            config,
            size,
            steps,
            batch,
            device,
        } => bench(&config, size[0], size[1], steps, batch, &device),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Cancelled) => {
            // restore and drr write atomically; train has saved its state (each says so)
            eprintln!("dxr: cancelled");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("dxr: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The model `dxr restore` uses without `--weights`: `$DXR_DEFAULT_MODEL`, else the repository's
/// `models/default.safetensors` (which the page serves too).
fn default_model() -> PathBuf {
    std::env::var_os("DXR_DEFAULT_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.safetensors"))
}

fn read_spec(config: Option<&Path>) -> Result<Option<ModelSpec>> {
    config
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            ModelSpec::from_json(&text).map_err(|e| Error::Config(format!("{}: {e}", p.display())))
        })
        .transpose()
}

fn read_model(
    weights: &Path,
    config: Option<&Path>,
    device: &Device,
) -> Result<checkpoint::LoadedModel> {
    let spec = read_spec(config)?;
    let bytes = std::fs::read(weights).map_err(|e| Error::io(weights, e))?;
    let ckpt = read_checkpoint(&bytes).map_err(|e| prefix(weights, e))?;
    checkpoint::load(&ckpt, spec, device).map_err(|e| prefix(weights, e))
}

fn prefix(path: &Path, e: Error) -> Error {
    match e {
        Error::CheckpointFormat(m) => Error::CheckpointFormat(format!("{}: {m}", path.display())),
        Error::CheckpointMismatch(m) => {
            Error::CheckpointMismatch(format!("{}: {m}", path.display()))
        }
        other => other,
    }
}

/// Image files named on the command line or found (non-recursively) in named folders.
fn collect_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    const EXT: &[&str] = &["png", "jpg", "jpeg", "tif", "tiff", "dcm", "dicom"];
    let mut files = Vec::new();
    for p in inputs {
        let meta = std::fs::metadata(p).map_err(|e| Error::io(p, e))?;
        if meta.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Error::io(p, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file())
                .filter(|f| {
                    let ext = f
                        .extension()
                        .map(|e| e.to_string_lossy().to_ascii_lowercase());
                    ext.as_deref().is_none_or(|e| EXT.contains(&e))
                        && !f
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    if files.is_empty() {
        return Err(Error::Image("no input images found".into()));
    }
    Ok(files)
}

/// `OUT/<stem>.png`, never an input's own path, unique among the outputs.
fn output_paths(inputs: &[PathBuf], out: &Path) -> Result<Vec<PathBuf>> {
    let canon_inputs: Vec<PathBuf> = inputs
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    let mut taken: Vec<PathBuf> = Vec::new();
    for input in inputs {
        let stem = input
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        let mut n = 1;
        let path = loop {
            let name = if n == 1 {
                format!("{stem}.png")
            } else {
                format!("{stem}-{n}.png")
            };
            let cand = out.join(name);
            let is_input = std::fs::canonicalize(&cand).is_ok_and(|c| canon_inputs.contains(&c));
            if is_input {
                return Err(Error::Image(format!(
                    "output {} would overwrite an input; choose another --out folder",
                    cand.display()
                )));
            }
            if !taken.contains(&cand) {
                break cand;
            }
            n += 1;
        };
        taken.push(path);
    }
    Ok(taken)
}

#[allow(clippy::too_many_arguments)]
fn restore(
    inputs: &[PathBuf],
    out: &Path,
    weights: Option<&Path>,
    config: Option<&Path>,
    sampler: &str,
    steps: usize,
    eta: f64,
    seed: u64,
    device: &str,
    bits: u8,
) -> Result<()> {
    let depth = match bits {
        8 => BitDepth::Eight,
        16 => BitDepth::Sixteen,
        b => return Err(Error::Image(format!("--bits must be 8 or 16, got {b}"))),
    };
    let kind: SamplerKind = sampler.parse()?;
    let device = device::open(device.parse::<DeviceChoice>()?)?;
    let default = default_model();
    let weights = match weights {
        Some(w) => w,
        None if default.is_file() => default.as_path(),
        None => {
            return Err(Error::Config(format!(
                "no --weights given and no default model at {} (set DXR_DEFAULT_MODEL or pass a checkpoint)",
                default.display()
            )));
        }
    };
    let restorer = Restorer::new(read_model(weights, config, &device)?)?;
    let t_total = restorer.schedule.len();
    if steps == 0 || steps > t_total {
        return Err(Error::Sampler(format!(
            "--steps must be between 1 and T = {t_total}, got {steps}"
        )));
    }
    let settings = SamplerSettings {
        kind,
        steps,
        eta,
        clip_denoised: true,
    };

    let files = collect_inputs(inputs)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let outputs = output_paths(&files, out)?;

    let cancel = Arc::new(AtomicBool::new(false));
    {
        let c = cancel.clone();
        let _ = ctrlc::set_handler(move || c.store(true, Ordering::SeqCst));
    }
    let bar = ProgressBar::new((files.len() * steps) as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} steps, ETA {eta} {msg}",
        )
        .expect("valid template"),
    );
    let mut failures = 0;
    for (input, output) in files.iter().zip(&outputs) {
        bar.set_message(input.display().to_string());
        let result = (|| -> Result<()> {
            let image = io::read(input)?;
            let mut noise = SeededNoise::new(seed);
            let base = bar.position();
            let restored =
                restorer.restore(&image, &settings, &mut noise, &device, &mut |info| {
                    bar.set_position(base + info.step.min(steps) as u64);
                    if cancel.load(Ordering::SeqCst) {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                })?;
            io::write_atomic(output, &io::encode_png(&restored, depth)?)
        })();
        match result {
            Ok(()) => bar.suspend(|| println!("{} -> {}", input.display(), output.display())),
            Err(Error::Cancelled) => {
                bar.abandon();
                eprintln!("stopped: no partial output was written");
                return Err(Error::Cancelled);
            }
            Err(e) => {
                failures += 1;
                bar.suspend(|| eprintln!("dxr: error: {e}"));
            }
        }
    }
    bar.finish_and_clear();
    if failures > 0 {
        return Err(Error::Failed(format!(
            "{failures} of {} images could not be restored",
            files.len()
        )));
    }
    Ok(())
}

fn convert(input: &Path, output: &Path, config: Option<&Path>, f16: bool) -> Result<()> {
    let model = read_model(input, config, &device::cpu())?;
    let dtype = if f16 {
        checkpoint::SaveDType::F16
    } else {
        checkpoint::SaveDType::F32
    };
    let bytes = checkpoint::to_safetensors_bytes(&model.network, &model.spec, dtype)?;
    io::write_atomic(output, &bytes)?;
    println!(
        "{} -> {} ({} bytes, {} parameters)",
        input.display(),
        output.display(),
        bytes.len(),
        model.network.num_params()
    );
    Ok(())
}

fn compare(a: &Path, b: &Path) -> Result<()> {
    let (x, y) = (io::read(a)?, io::read(b)?);
    if (x.width, x.height) != (y.width, y.height) {
        return Err(Error::Image(format!(
            "sizes differ: {}×{} and {}×{}",
            x.width, x.height, y.width, y.height
        )));
    }
    let max = x
        .data
        .iter()
        .zip(&y.data)
        .map(|(p, q)| (p - q).abs())
        .fold(0f32, f32::max);
    let eight = |v: &[f32]| {
        v.iter()
            .map(|p| (p * 255.0).round() as f64)
            .collect::<Vec<f64>>()
    };
    let (p8, q8) = (eight(&x.data), eight(&y.data));
    let psnr = dxr::metrics::psnr(&p8, &q8, 255.0)?;
    let ssim = dxr::metrics::ssim(&p8, &q8, x.width, x.height, 255.0).ok();
    println!(
        "{}",
        serde_json::json!({ "max_abs_8bit": max * 255.0, "psnr": if psnr.is_finite() { Some(psnr) } else { None }, "ssim": ssim })
    );
    Ok(())
}

fn info(file: &Path, config: Option<&Path>) -> Result<()> {
    let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
    let ckpt = read_checkpoint(&bytes).map_err(|e| prefix(file, e))?;
    let family = ckpt.family().map_err(|e| prefix(file, e))?;
    println!("file:       {}", file.display());
    println!("format:     {:?}", ckpt.format);
    println!("family:     {family}");
    println!("tensors:    {}", ckpt.tensors.len());
    match checkpoint::load(&ckpt, read_spec(config)?, &device::cpu()) {
        Ok(model) => {
            println!("parameters: {}", model.network.num_params());
            println!(
                "config:     {}",
                serde_json::to_string_pretty(&model.spec).expect("serialisable")
            );
        }
        Err(e) => {
            println!("parameters: {} values stored", ckpt.num_values());
            println!("config:     not known ({e})");
        }
    }
    Ok(())
}

fn bench(
    config: &Path,
    h: usize,
    w: usize,
    runs: usize,
    batch: usize,
    only: &[String],
) -> Result<()> {
    let spec = read_spec(Some(config))?.expect("config given");
    let schedule = spec.schedule.build()?;
    let mut backends: Vec<(String, Device)> = Vec::new();
    let want = |name: &str| only.is_empty() || only.iter().any(|o| o.eq_ignore_ascii_case(name));
    if want("cpu") {
        backends.push(("cpu (ndarray)".into(), device::cpu()));
    }
    if want("gpu") {
        match device::gpu() {
            Ok(d) => backends.push(("gpu (wgpu)".into(), d)),
            Err(e) => println!("gpu (wgpu): skipped: {e}"),
        }
    }
    let runs = runs.max(1);
    println!(
        "model {} ({} family), input {batch}×{h}×{w}, {runs} timed runs after 1 warm-up",
        config.display(),
        spec.family()
    );
    println!("| backend | median ms/step | min | max | ratio to first |");
    println!("|---|---|---|---|---|");
    let mut first = None;
    for (name, device) in backends {
        let net = spec.network.init(&device)?;
        let den = dxr::diffusion::Denoiser {
            net: &net,
            schedule: &schedule,
            prediction: spec.prediction,
        };
        let multiple = spec.network.input_multiple();
        let (ph, pw) = (h.next_multiple_of(multiple), w.next_multiple_of(multiple));
        let x = Tensor::<4>::random(
            [batch, spec.network.image_channels(), ph, pw],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let cond = Tensor::<4>::random(
            [batch, spec.network.cond_channels()?, ph, pw],
            burn::tensor::Distribution::Uniform(-1.0, 1.0),
            &device,
        );
        let mut times = Vec::new();
        for i in 0..=runs {
            let start = Instant::now();
            let eps = den.eps(x.clone(), cond.clone(), (schedule.len() / 2) as i64);
            let _ = eps.into_data(); // wait for the device
            if i > 0 {
                times.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let median = times[times.len() / 2];
        let base = *first.get_or_insert(median);
        println!(
            "| {name} | {median:.1} | {:.1} | {:.1} | {:.2} |",
            times[0],
            times[times.len() - 1],
            median / base
        );
    }
    Ok(())
}

fn resize(inputs: &[PathBuf], out: &Path, width: usize) -> Result<()> {
    let mut files = Vec::new();
    for i in inputs {
        files.extend(dxr::train::data::image_files(i)?);
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    for f in &files {
        let img = io::read(f)?;
        let height =
            ((img.height as f64 * width as f64 / img.width as f64).round() as usize).max(1);
        GrayImage::check_size(width, height)?;
        let small = img.resized(width, height, image::imageops::FilterType::Triangle);
        let name = format!(
            "{}.png",
            f.file_stem().unwrap_or_default().to_string_lossy()
        );
        let path = out.join(name);
        if files.iter().any(|i| i == &path) {
            return Err(Error::Config(format!(
                "{}: would overwrite an input",
                path.display()
            )));
        }
        io::write_atomic(&path, &io::encode_png(&small, BitDepth::Sixteen)?)?;
        eprintln!(
            "{} {}×{} → {} {width}×{height}",
            f.display(),
            img.width,
            img.height,
            path.display()
        );
    }
    Ok(())
}
