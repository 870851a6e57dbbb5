//! What the commands share: the default model, reading a model, opening a device, Ctrl-C and
//! the progress bar.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};

use dxr::checkpoint::{self, LoadedModel, read_checkpoint};
use dxr::device::{self, DeviceChoice};
use dxr::spec::ModelSpec;
use dxr::train::data::Columns;
use dxr::{Error, Result};

/// The model `dxr restore` uses without `--weights`: `$DXR_DEFAULT_MODEL`, else the repository's
/// `models/default.safetensors` (which the page serves too).
pub fn default_model() -> PathBuf {
    std::env::var_os("DXR_DEFAULT_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.safetensors"))
}

/// A `--config` JSON file, when one is given.
pub fn read_spec(config: Option<&Path>) -> Result<Option<ModelSpec>> {
    config
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            ModelSpec::from_json(&text).map_err(|e| Error::Config(format!("{}: {e}", p.display())))
        })
        .transpose()
}

/// A checkpoint of any accepted format (with its `--config`) loaded onto `device`; errors name
/// the file.
pub fn read_model(weights: &Path, config: Option<&Path>, device: &Device) -> Result<LoadedModel> {
    let spec = read_spec(config)?;
    let bytes = dxr::checkpoint::read_file(weights)?;
    let ckpt = read_checkpoint(&bytes).map_err(|e| prefix(weights, e))?;
    checkpoint::load(&ckpt, spec, device).map_err(|e| prefix(weights, e))
}

/// A checkpoint error with the file's path in front.
pub fn prefix(path: &Path, e: Error) -> Error {
    match e {
        Error::CheckpointFormat(m) => Error::CheckpointFormat(format!("{}: {m}", path.display())),
        Error::CheckpointMismatch(m) => {
            Error::CheckpointMismatch(format!("{}: {m}", path.display()))
        }
        other => other,
    }
}

/// The device a `--device` flag names.
pub fn open_device(name: &str) -> Result<Device> {
    device::open(name.parse::<DeviceChoice>()?)
}

/// A flag that Ctrl-C sets. The handler is installed once per process; every caller gets the
/// same flag, so a command polls it between units of work and stops cleanly.
pub fn cancel_on_ctrl_c() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        // a second handler cannot be installed (tests call commands in one process): then
        // Ctrl-C ends the process as it would without one
        let _ = ctrlc::set_handler(move || f.store(true, Ordering::SeqCst));
        flag
    })
    .clone()
}

/// The progress bar of every long command: elapsed time, `len` units named `unit`, the rate
/// and the time left, then a message.
pub fn progress_bar(len: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} [{{elapsed_precise}}] {{bar:40}} {{pos}}/{{len}} {unit}, {{per_sec}}, ETA {{eta}} {{msg}}"
        ))
        .expect("valid template"),
    );
    bar
}

/// The `--region` / `--holdout` flags: which columns of the HQ radiographs a command uses.
pub fn columns(region: &str, holdout: f64) -> Result<Columns> {
    if !(0.0..1.0).contains(&holdout) {
        return Err(Error::Usage(format!(
            "--holdout {holdout} must be in [0, 1)"
        )));
    }
    match region {
        "train" => Ok(Columns::Train(holdout)),
        "heldout" => Ok(Columns::HeldOut(holdout)),
        "all" => Ok(Columns::All),
        r => Err(Error::Usage(format!(
            "--region {r:?}: use train, heldout or all"
        ))),
    }
}

/// The four fractions x0,y0,x1,y1 of a `--crop` (checked further by [`dxr::eval::sheet::crop`]).
pub fn crop_fractions(command: &str, c: &[f64]) -> Result<[f64; 4]> {
    <[f64; 4]>::try_from(c).map_err(|_| {
        Error::Image(format!(
            "{command}: --crop takes four fractions x0,y0,x1,y1, got {} value(s)",
            c.len()
        ))
    })
}

/// Files of `dir` by stem.
pub fn by_stem(dir: &Path) -> Result<std::collections::BTreeMap<String, PathBuf>> {
    Ok(dxr::io::image_files(dir)?
        .into_iter()
        .map(|p| {
            (
                p.file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                p,
            )
        })
        .collect())
}

/// The tone curve `--tone STRENGTH` asks of `restorer`'s model (none at 0); a strength outside
/// [0, 1], or a model without a curve, is refused by name.
pub fn tone_curve(
    restorer: &dxr::restore::Restorer,
    strength: f32,
    weights: &Path,
) -> Result<Option<dxr::spec::ToneSpec>> {
    dxr::spec::check_tone_strength(strength).map_err(Error::Config)?;
    match (&restorer.model.spec.tone, strength > 0.0) {
        (_, false) => Ok(None),
        (Some(t), true) => Ok(Some(t.clone())),
        (None, true) => Err(Error::Usage(format!(
            "--tone {strength}: the model {} has no tone curve (record one with `dxr convert --tone`)",
            weights.display()
        ))),
    }
}

/// The sampler `--sampler`/`--steps`/`--eta` name for `restorer` (steps: the flag, else what
/// the model records, else the default), checked against its schedule.
pub fn sampler_settings(
    restorer: &dxr::restore::Restorer,
    sampler: &str,
    steps: Option<usize>,
    eta: f64,
) -> Result<dxr::diffusion::sampler::SamplerSettings> {
    use dxr::diffusion::sampler::SamplerSettings;
    let steps = steps
        .or(restorer.model.spec.steps)
        .unwrap_or(SamplerSettings::new().steps);
    let settings = SamplerSettings::named(sampler, steps, eta)?;
    settings.validate(restorer.schedule.len())?;
    Ok(settings)
}

/// The median of timings (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
