//! `dxr`: the command line. This file holds the commands' definitions and the dispatch; each
//! command (or small family of commands) has its file, over the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use dxr::Error;

/// Keeps freed feature maps in the heap for the next op. burn's CPU backends allocate every
/// op's output afresh; glibc serves large blocks (from 128 KiB at first) by mmap and returns
/// them at once, so each network call faulted its buffers in (and had the kernel zero them)
/// again: 12 % of a flex training step and 5 % of a 512² restoration step of the default model
/// here (`dxr bench` and `dxr train-bench` with `--baseline malloc` measure it).
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes glibc's thresholds; called before any thread starts.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
            libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        }
    }
}

/// Ends quietly, as other Unix tools do, when the reader of stdout goes away (`dxr info | head`):
/// Rust starts with SIGPIPE ignored, so the next `println!` would panic on the closed pipe.
fn end_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restores one signal's default action; called before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

mod bench;
mod common;
mod drr;
mod evaluate;
mod generate;
mod images;
mod look;
mod model;
mod pairs;
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
    Convert(Box<model::ConvertArgs>),
    /// Compare two images: max |a − b| in 8-bit steps, PSNR and SSIM (on 8-bit values).
    Compare(Box<images::CompareArgs>),
    /// Resample radiographs to a width (aspect kept), as 16-bit PNG: brings a radiograph to the
    /// pixel scale of the DRRs before training or comparing.
    Resize(Box<images::ResizeArgs>),
    /// Show a checkpoint's family, config and parameter count.
    Info(Box<model::InfoArgs>),
    /// Render DRRs from a chest CT, with seeded poses and inserted lung nodules, and their labels.
    Drr(Box<drr::DrrArgs>),
    /// A labelled (and restored) training set from many CTs: deterministic items, resumable,
    /// in shards for a job array (`--shard I/N`, then `dxr merge`).
    Generate(Box<generate::GenerateArgs>),
    /// Join the shards of a `dxr generate` dataset into one.
    Merge(Box<generate::MergeArgs>),
    /// DRRs per second: exact traversal (CPU, GPU) against a plain trilinear march.
    DrrBench(Box<drr::BenchArgs>),
    /// Write a CT (NIfTI or a DICOM series) as a DICOM series: 16-bit slices in HU.
    CtToDicom(Box<drr::CtToDicomArgs>),
    /// Train a model: ddpm-hq (restoration, on pairs) or ddpm-lq (the LQ look, unpaired).
    #[command(subcommand)]
    Train(train::TrainCommand),
    /// Make a pair set (lq/, hq/) from HQ radiographs with a degradation.
    Pairs(Box<pairs::PairsArgs>),
    /// Translate HQ images to the LQ look with a trained LQ model.
    SynthLq(Box<pairs::SynthArgs>),
    /// Realism of images (histogram distance to a real radiograph, spectrum slope, edge
    /// sharpness) and nodule CNR from a DRR set's labels.
    Realism(Box<evaluate::RealismArgs>),
    /// Before/after sheet: a PNG grid, one column per folder, one row per image name.
    Sheet(Box<evaluate::SheetArgs>),
    /// Fits the DRR look (tone curve + blur) that `dxr pairs --method drr` gives radiographs,
    /// and the fixed-filter baseline, by measuring how close the degraded radiograph comes to DRRs.
    FitDrrLook(Box<look::FitDrrLookArgs>),
    /// The no-learning baseline: tone curve to the radiograph's grey levels + unsharp mask.
    Filter(Box<look::FilterArgs>),
    /// Training images per second (DDPM-HQ and MUNIT) on every backend.
    TrainBench(Box<bench::training::TrainBenchArgs>),
    /// PSNR/SSIM per image and mean ± std, as a Markdown table and CSV.
    Eval(Box<evaluate::EvalArgs>),
    /// Milliseconds per denoiser step (tiled where needed) for each model, size and backend,
    /// and whole-image restorations with their peak memory.
    Bench(Box<bench::BenchArgs>),
}

fn main() -> ExitCode {
    end_quietly_on_closed_pipe();
    // parsing starts no thread: the allocator is still set before any does
    let cli = Cli::parse();
    let baseline = match &cli.command {
        Command::Bench(a) => a.baseline.as_slice(),
        Command::TrainBench(a) => a.baseline.as_slice(),
        _ => &[],
    };
    if !baseline.contains(&bench::Baseline::Malloc) {
        keep_freed_memory();
    }
    bench::apply_baselines(baseline);
    let result = match cli.command {
        Command::Restore(a) => restore::run(&a),
        Command::Scale(a) => restore::run_scale(&a),
        Command::Info(a) => model::run_info(&a),
        Command::Compare(a) => images::run_compare(&a),
        Command::Resize(a) => images::run_resize(&a),
        Command::Convert(a) => model::run_convert(&a),
        Command::Drr(a) => drr::run(&a),
        Command::DrrBench(a) => drr::bench(&a),
        Command::Generate(a) => generate::run(&a),
        Command::Merge(a) => generate::run_merge(&a),
        Command::CtToDicom(a) => drr::ct_to_dicom(&a),
        Command::Train(t) => train::run_train(&t),
        Command::Pairs(a) => pairs::run_pairs(&a),
        Command::SynthLq(a) => pairs::run_synth(&a),
        Command::Eval(a) => evaluate::run_eval(&a),
        Command::Realism(a) => evaluate::run_realism(&a),
        Command::Sheet(a) => evaluate::run_sheet(&a),
        Command::FitDrrLook(a) => look::run_fit_drr_look(&a),
        Command::Filter(a) => look::run_filter(&a),
        Command::TrainBench(a) => bench::training::run_train_bench(&a),
        Command::Bench(a) => bench::run(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Cancelled) => {
            // restore and drr write atomically; train has saved its state (each says so)
            eprintln!("dxr: cancelled");
            ExitCode::from(130)
        }
        // a usage error exits with 2, as clap's own do; every other failure with 1
        Err(e) if e.kind() == dxr::ErrorKind::Usage => {
            eprintln!("dxr: error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("dxr: error: {e}");
            ExitCode::FAILURE
        }
    }
}
