//! `dxr restore`: images (files or folders) → restored PNGs, at the model's scale, over tiles
//! when large, with progress and Ctrl-C.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use clap::Args;

use dxr::device::{self, DeviceChoice};
use dxr::diffusion::sampler::{SamplerKind, SamplerSettings, SeededNoise};
use dxr::drr::dataset::ViewLabel;
use dxr::io::InputScale;
use dxr::io::{self, BitDepth};
use dxr::restore::{OutputScale, RestoreOptions, Restorer};
use dxr::{Error, Result};

pub fn default_sampler() -> String {
    format!("{:?}", SamplerSettings::new().kind).to_ascii_lowercase()
}

#[derive(Args)]
pub struct RestoreArgs {
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
    /// ddim, plms, ddpm or dpmpp (DDIM and PLMS follow the authors' grid, which starts at
    /// t = 0: give them 10 steps or more).
    #[arg(long, default_value_t = default_sampler())]
    sampler: String,
    /// Sampler steps (1..=T) [default: what the model records (its measured quality/speed
    /// curve), else 25]
    #[arg(long)]
    steps: Option<usize>,
    /// DDIM η, in [0, 1].
    #[arg(long, default_value_t = SamplerSettings::new().eta)]
    eta: f64,
    /// Random seed: the same seed gives the same output.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// cpu (the fastest CPU backend: flex), flex, ndarray or gpu (wgpu).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Output PNG bit depth: 8 or 16.
    #[arg(long, default_value_t = 16)]
    bits: u8,
    /// input: the result has the input's size, its fine detail kept (default); model: the
    /// result is what the model restored, at the model's pixel scale.
    #[arg(long, default_value = "input")]
    output_scale: String,
    /// Restore at the image's own pixels instead of bringing it to the model's scale.
    #[arg(long)]
    keep_pixels: bool,
    /// The inputs' pixel pitch in mm (at the detector), overriding what the files say.
    #[arg(long)]
    pixel_mm: Option<f64>,
    /// A `dxr drr` set whose labels/<name>.json belong to the inputs: their detector pitch
    /// gives the scale, and the nodule labels are written to OUT/labels/ for the output scale.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Memory one network call may use, in MiB (default: 1024 on a CPU, 2048 on a GPU);
    /// larger images are restored over overlapping tiles.
    #[arg(long)]
    memory_mib: Option<u64>,
    /// Tile side in pixels at the model's scale, instead of the largest that fits the memory.
    #[arg(long)]
    tile: Option<usize>,
    /// Move the result toward a radiograph's grey scale by the model's tone curve, 0–1 (0: the
    /// restoration keeps the input's grey scale). Recorded in the PNG (text `dxr:tone`) and
    /// the labels.
    #[arg(long, default_value_t = 0.0)]
    tone: f32,
    /// Which frame of a multi-frame DICOM file to restore (1-based; default the first, and the
    /// output line says how many there are).
    #[arg(long, default_value_t = 1)]
    frame: u32,
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

pub fn run(a: &RestoreArgs) -> Result<()> {
    let depth = match a.bits {
        8 => BitDepth::Eight,
        16 => BitDepth::Sixteen,
        b => return Err(Error::Usage(format!("--bits must be 8 or 16, got {b}"))),
    };
    let choice = a.device.parse::<DeviceChoice>()?;
    let mut budget = choice.budget();
    if let Some(mib) = a.memory_mib {
        budget = budget.with_total_mib(mib)?;
    }
    let output: OutputScale = a.output_scale.parse()?;
    if let Some(mm) = a.pixel_mm
        && !(mm.is_finite() && mm > 0.0)
    {
        return Err(Error::Usage(format!(
            "--pixel-mm must be a positive number, got {mm}"
        )));
    }
    // a misspelt sampler is named before a model is read (the steps wait for the model's own)
    a.sampler.parse::<SamplerKind>()?;
    let device = device::open(choice)?;
    let weights = match &a.weights {
        Some(w) => w.clone(),
        None => {
            let default = crate::common::default_model();
            if !default.is_file() {
                return Err(Error::Config(format!(
                    "no --weights given and no default model at {} (set DXR_DEFAULT_MODEL or pass a checkpoint)",
                    default.display()
                )));
            }
            default
        }
    };
    let restorer = Restorer::new(crate::common::read_model(
        &weights,
        a.config.as_deref(),
        &device,
    )?)?;
    let tone = crate::common::tone_curve(&restorer, a.tone, &weights)?;
    let settings = crate::common::sampler_settings(&restorer, &a.sampler, a.steps, a.eta)?;
    let steps = settings.steps;

    let files = dxr::io::image_inputs(&a.inputs)?;
    std::fs::create_dir_all(&a.out).map_err(|e| Error::io(&a.out, e))?;
    let outputs = output_paths(&files, &a.out)?;
    if a.labels.is_some() {
        let dir = a.out.join("labels");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }

    let cancel = crate::common::cancel_on_ctrl_c();
    let bar = crate::common::progress_bar((files.len() * steps) as u64, "steps");
    let mut failures = 0;
    for (input, output_path) in files.iter().zip(&outputs) {
        bar.set_message(input.display().to_string());
        let result = (|| -> Result<String> {
            if a.frame == 0 {
                return Err(Error::Usage("--frame counts from 1".into()));
            }
            let (image, file_scale, frames) = io::read_frame_with_scale(input, a.frame - 1)?;
            let label = a
                .labels
                .as_deref()
                .map(|dir| ViewLabel::for_image(dir, input))
                .transpose()?;
            let input_scale = match (a.pixel_mm, &label) {
                (Some(mm), _) => InputScale::known(mm, "--pixel-mm"),
                (None, Some(l)) => InputScale::known(l.pixel_mm(), "DRR label"),
                (None, None) => file_scale,
            };
            let opts = RestoreOptions {
                output,
                input_scale,
                to_model_scale: !a.keep_pixels,
                budget,
                tile: a.tile,
            };
            let mut noise = SeededNoise::new(a.seed);
            let base = bar.position();
            let restored =
                restorer.restore(&image, &opts, &settings, &mut noise, &device, &mut |info| {
                    bar.set_position(base + info.step.min(steps) as u64);
                    if cancel.load(Ordering::SeqCst) {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                })?;
            let mut image = restored.image;
            if let Some(t) = &tone {
                t.apply(&mut image.data, a.tone);
            }
            let png = io::with_png_text(
                &io::encode_png(&image, depth)?,
                "dxr:tone",
                &format!("{}", a.tone),
            )?;
            io::write_atomic(output_path, &png)?;
            if let (Some(label), Some(_)) = (&label, &a.labels) {
                let [w, h] = restored.plan.output_size().wh();
                let stem = output_path
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy();
                let path = a.out.join("labels").join(format!("{stem}.json"));
                let mut json = serde_json::to_value(label.resized(w, h)).expect("serialisable");
                json["tone"] = serde_json::json!(a.tone);
                io::write_atomic(
                    &path,
                    &serde_json::to_vec_pretty(&json).expect("serialisable"),
                )?;
            }
            let how = restored.plan.describe();
            Ok(if frames > 1 {
                format!(
                    "frame {} of {frames} (--frame N for another); {how}",
                    a.frame
                )
            } else {
                how
            })
        })();
        match result {
            Ok(how) => {
                bar.suspend(|| println!("{} -> {}: {how}", input.display(), output_path.display()))
            }
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

#[derive(Args)]
pub struct ScaleArgs {
    /// Image files or folders of images.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Also the factor that brings each image to this model's scale (default: the bundled one).
    #[arg(long)]
    weights: Option<PathBuf>,
}

/// `dxr scale`: what each image's file says about its pixel scale, its estimated lung-field
/// width, and the factor `restore` would resample it by.
pub fn run_scale(a: &ScaleArgs) -> Result<()> {
    let weights = a
        .weights
        .clone()
        .unwrap_or_else(crate::common::default_model);
    let spec = weights
        .is_file()
        .then(|| crate::common::read_model(&weights, None, &device::cpu()).map(|m| m.spec))
        .transpose()?;
    if let Some(s) = spec.as_ref().and_then(|s| s.scale) {
        println!("model {}: {s}", weights.display());
    }
    println!("| image | size | pitch (source) | lung fields (px) | factor | how |");
    println!("|---|---|---|---|---|---|");
    for f in dxr::io::image_inputs(&a.inputs)? {
        let (img, scale) = io::read_with_scale(&f)?;
        let chest = dxr::scale::estimate_chest_px(&img);
        let d = dxr::scale::decide(spec.as_ref().and_then(|s| s.scale.as_ref()), &scale, &img);
        println!(
            "| {} | {}×{} | {} | {} | {:.3} | {} |",
            f.display(),
            img.width,
            img.height,
            scale.pixel_mm.map_or("–".into(), |mm| format!(
                "{mm:.4} mm ({})",
                scale.source.as_deref().unwrap_or("")
            )),
            chest.map_or("–".into(), |c| format!("{c:.1}")),
            d.factor,
            d.how
        );
    }
    Ok(())
}
