//! `dxr`: the DiffusionXRay command line (restore, info, bench).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use burn::prelude::*;
use clap::{Parser, Subcommand};

use dxr::checkpoint::{self, read_checkpoint};
use dxr::config::ModelSpec;
use dxr::device;
use dxr::io::{self, BitDepth, GrayImage};
use dxr::{Error, Result};

mod bench;
mod drr;
mod restore;
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
    /// Restore images (PNG, JPEG, TIFF, DICOM; files or folders) into OUT_DIR as PNG, at the
    /// model's pixel scale, over tiles when large.
    Restore(Box<restore::RestoreArgs>),
    /// What each image's file says about its pixel scale, its estimated lung-field width, and
    /// the factor `restore` would resample it by.
    Scale(Box<restore::ScaleArgs>),
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
        /// Record the pixel pitch (mm at the detector) the model was trained at.
        #[arg(long)]
        pixel_mm: Option<f64>,
        /// Record the typical lung-field width, in pixels, of the model's training images
        /// (the authors' DDPM-HQ, on 1024² whole radiographs: about 800).
        #[arg(long)]
        chest_px: Option<f64>,
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
    /// Fits the DRR look (tone curve + blur) that `dxr pairs --method drr` gives radiographs,
    /// and the fixed-filter baseline, by measuring how close the degraded radiograph comes to DRRs.
    FitDrrLook(Box<train::FitDrrLookArgs>),
    /// The no-learning baseline: tone curve to the radiograph's grey levels + unsharp mask.
    Filter(Box<train::FilterArgs>),
    /// Training images per second (DDPM-HQ and MUNIT) on every backend.
    TrainBench(Box<bench::TrainBenchArgs>),
    /// PSNR/SSIM per image and mean ± std, as a Markdown table and CSV.
    Eval(Box<train::EvalArgs>),
    /// Milliseconds per denoiser step (tiled where needed) for each model, size and backend,
    /// and whole-image restorations with their peak memory.
    Bench(Box<bench::BenchArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Restore(a) => restore::run(&a),
        Command::Scale(a) => restore::run_scale(&a),
        Command::Info { file, config } => info(&file, config.as_deref()),
        Command::Compare { a, b } => compare(&a, &b),
        Command::Resize { inputs, out, width } => resize(&inputs, &out, width),
        Command::Convert {
            input,
            output,
            config,
            f16,
            pixel_mm,
            chest_px,
        } => convert(&input, &output, config.as_deref(), f16, pixel_mm, chest_px),
        Command::Drr(a) => drr::run(&a),
        Command::Train(t) => train::run_train(&t),
        Command::Pairs(a) => train::run_pairs(&a),
        Command::SynthLq(a) => train::run_synth(&a),
        Command::Eval(a) => train::run_eval(&a),
        Command::TrainBench(a) => bench::run_train_bench(&a),
        Command::Realism(a) => train::run_realism(&a),
        Command::Sheet(a) => train::run_sheet(&a),
        Command::FitDrrLook(a) => train::run_fit_drr_look(&a),
        Command::Filter(a) => train::run_filter(&a),
        Command::DrrBench(a) => drr::bench(&a),
        Command::Bench(a) => bench::run(&a),
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

fn convert(
    input: &Path,
    output: &Path,
    config: Option<&Path>,
    f16: bool,
    pixel_mm: Option<f64>,
    chest_px: Option<f64>,
) -> Result<()> {
    let mut model = read_model(input, config, &device::cpu())?;
    if pixel_mm.is_some() || chest_px.is_some() {
        let chest_px = chest_px
            .or(model.spec.scale.map(|s| s.chest_px))
            .ok_or_else(|| {
                Error::Config(
                    "--pixel-mm needs --chest-px too (the model records no chest width yet)".into(),
                )
            })?;
        let scale = dxr::config::ModelScale {
            pixel_mm: pixel_mm.or(model.spec.scale.and_then(|s| s.pixel_mm)),
            chest_px,
        };
        scale.validate()?;
        model.spec.scale = Some(scale);
    }
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
            match &model.spec.scale {
                Some(s) => println!("scale:      {s}"),
                None => {
                    println!("scale:      not recorded (inputs are restored at their own pixels)")
                }
            }
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
