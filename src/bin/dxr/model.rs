//! `dxr convert` and `dxr info`: checkpoints of any accepted format, made into our
//! self-describing safetensors file or described.

use std::path::{Path, PathBuf};

use burn::module::Module;
use clap::Args;

use dxr::checkpoint::{self, read_checkpoint};
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
}

#[derive(Args)]
pub struct InfoArgs {
    file: PathBuf,
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run_convert(a: &ConvertArgs) -> Result<()> {
    convert(
        &a.input,
        &a.output,
        a.config.as_deref(),
        a.f16,
        a.pixel_mm,
        a.chest_px,
        a.steps,
    )
}

pub fn run_info(a: &InfoArgs) -> Result<()> {
    info(&a.file, a.config.as_deref())
}

fn convert(
    input: &Path,
    output: &Path,
    config: Option<&Path>,
    f16: bool,
    pixel_mm: Option<f64>,
    chest_px: Option<f64>,
    steps: Option<usize>,
) -> Result<()> {
    let mut model = read_model(input, config, &device::cpu())?;
    if steps.is_some() {
        model.spec.steps = steps;
        model.spec.check_steps()?;
    }
    if pixel_mm.is_some() || chest_px.is_some() {
        let chest_px = chest_px
            .or(model.spec.scale.map(|s| s.chest_px))
            .ok_or_else(|| {
                Error::Config(
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
