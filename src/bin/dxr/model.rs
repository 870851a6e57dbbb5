//! `dxr convert` and `dxr info`: checkpoints of any accepted format, made into our
//! self-describing safetensors file or described.

use std::path::{Path, PathBuf};

use burn::module::Module;
use clap::Args;

use dxr::checkpoint::{self, read_checkpoint};
use dxr::spec::ToneSpec;
use dxr::{Error, Result, device, io};

use crate::common::{prefix, read_model, read_spec};

#[derive(Args)]
pub struct ConvertArgs {
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
    /// Record the sampler steps the model's restorations need (read from its recipe's
    /// quality/speed curve): `dxr restore` and the page default to it.
    #[arg(long)]
    steps: Option<usize>,
    /// Record a tone curve (DRR grey scale → a radiograph's), made gentle: the `filter.json` of
    /// `dxr fit-drr-look` (its `curve`) or a JSON `{"points": [...]}`. `dxr restore --tone` and
    /// the page's slider apply it after the restoration.
    #[arg(long, value_name = "JSON")]
    tone: Option<PathBuf>,
    /// The smallest slope the recorded curve keeps inside the body (no stretch of grey levels
    /// squeezed flat).
    #[arg(long, default_value_t = 0.5, requires = "tone")]
    tone_min_slope: f32,
    /// The largest slope the recorded curve keeps.
    #[arg(long, default_value_t = 2.5, requires = "tone")]
    tone_max_slope: f32,
    /// The strength (0–1) the page's tone slider starts at.
    #[arg(long, default_value_t = 0.0, requires = "tone")]
    tone_default: f32,
}

#[derive(Args)]
pub struct InfoArgs {
    file: PathBuf,
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run_convert(a: &ConvertArgs) -> Result<()> {
    let tone = a
        .tone
        .as_deref()
        .map(|p| read_tone(p, a.tone_min_slope, a.tone_max_slope, a.tone_default))
        .transpose()?;
    convert(
        &a.input,
        &a.output,
        a.config.as_deref(),
        a.f16,
        a.pixel_mm,
        a.chest_px,
        a.steps,
        tone,
    )
}

/// The gentle tone curve of a `filter.json` (`{"curve": {"points": …}}`) or a bare
/// `{"points": …}`.
fn read_tone(path: &Path, min_slope: f32, max_slope: f32, page_default: f32) -> Result<ToneSpec> {
    if !(min_slope > 0.0 && max_slope >= min_slope && max_slope.is_finite()) {
        return Err(Error::Usage(format!(
            "--tone-min-slope {min_slope} / --tone-max-slope {max_slope}: need 0 < min ≤ max"
        )));
    }
    dxr::spec::check_tone_strength(page_default)
        .map_err(|e| Error::Config(e.replace("--tone", "--tone-default")))?;
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Config(format!("{}: not JSON ({e})", path.display())))?;
    let points = v
        .get("curve")
        .unwrap_or(&v)
        .get("points")
        .and_then(|p| serde_json::from_value::<Vec<f32>>(p.clone()).ok())
        .ok_or_else(|| {
            Error::Config(format!(
                "{}: no tone curve (`curve.points` or `points`, a list of grey levels)",
                path.display()
            ))
        })?;
    ToneSpec {
        points: points.clone(),
        page_default: 0.0,
    }
    .validate()
    .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    let tone = ToneSpec::gentle(&points, min_slope, max_slope, page_default);
    tone.validate().map_err(Error::Config)?;
    Ok(tone)
}

pub fn run_info(a: &InfoArgs) -> Result<()> {
    info(&a.file, a.config.as_deref())
}

#[allow(clippy::too_many_arguments)]
fn convert(
    input: &Path,
    output: &Path,
    config: Option<&Path>,
    f16: bool,
    pixel_mm: Option<f64>,
    chest_px: Option<f64>,
    steps: Option<usize>,
    tone: Option<ToneSpec>,
) -> Result<()> {
    let mut model = read_model(input, config, &device::cpu())?;
    if tone.is_some() {
        model.spec.tone = tone;
    }
    if steps.is_some() {
        model.spec.steps = steps;
        model.spec.check_steps()?;
    }
    if pixel_mm.is_some() || chest_px.is_some() {
        let chest_px = chest_px
            .or(model.spec.scale.map(|s| s.chest_px))
            .ok_or_else(|| {
                Error::Usage(
                    "--pixel-mm needs --chest-px too (the model records no chest width yet)".into(),
                )
            })?;
        let scale = dxr::spec::ModelScale {
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

fn info(file: &Path, config: Option<&Path>) -> Result<()> {
    let bytes = dxr::checkpoint::read_file(file)?;
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
            match model.spec.steps {
                Some(n) => println!("steps:      {n} (the default of dxr restore and the page)"),
                None => println!("steps:      not recorded (the sampler's default)"),
            }
            match &model.spec.tone {
                Some(t) => println!(
                    "tone:       a curve of {} points toward a radiograph's grey scale (smallest \
                     slope in the body {:.2}; the page starts at {:.0} %)",
                    t.points.len(),
                    t.min_body_slope(),
                    t.page_default * 100.0
                ),
                None => println!("tone:       none (restorations keep their grey scale)"),
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
