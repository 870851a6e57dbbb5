//! `dxr pairs` and `dxr synth-lq`: HQ radiographs made into LQ ones by a degradation
//! ([`dxr::train::degrade::Strategy`]), as a pair set or as translated images.

use std::path::PathBuf;

use clap::Args;

use dxr::io::{self, BitDepth, GrayImage, encode_png, write_atomic};
use dxr::scale::{SCALE_FILE, typical_chest_px};
use dxr::spec::ModelScale;
use dxr::train::data::{Augment, Domain};
use dxr::train::degrade::{Strategy, with_air_margin};
use dxr::{Error, Result};

use crate::common::{columns, open_device, progress_bar};

/// How HQ becomes LQ (shared by `dxr pairs` and `dxr synth-lq`).
#[derive(Args, Clone)]
pub struct Degradation {
    /// bicubic (the paper's baseline), ddpm (SDEdit with a DDPM-LQ model), munit, or drr (the
    /// tone curve and blur fitted by `dxr fit-drr-look`).
    #[arg(long)]
    method: String,
    /// ddpm / munit: the trained model (model.safetensors or munit.safetensors of its run);
    /// drr: the fitted degradation.json.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// bicubic: down- and up-sampling factor.
    #[arg(long, default_value_t = 4.0)]
    scale: f64,
    /// ddpm: SDEdit strength (fraction of T the HQ image is noised to).
    #[arg(long, default_value_t = 0.4)]
    strength: f64,
    /// ddpm: ILVR low-pass block size (0 = no guidance).
    #[arg(long, default_value_t = 8)]
    ilvr: usize,
    /// ddpm: DDIM steps.
    #[arg(long, default_value_t = 25)]
    steps: usize,
    /// munit: `random` (default: a random style per output) or an LQ image whose style every
    /// output takes.
    #[arg(long)]
    style: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Args)]
pub struct PairsArgs {
    #[command(flatten)]
    how: Degradation,
    /// HQ images: a radiograph or a folder of them.
    #[arg(long)]
    hq: PathBuf,
    /// Output pair set (lq/, hq/).
    #[arg(long)]
    out: PathBuf,
    /// Number of pairs (random crops).
    #[arg(long, default_value_t = 64)]
    count: usize,
    /// Crop side.
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Which columns the crops come from: train (left of the hold-out), heldout, or all.
    #[arg(long, default_value = "train")]
    region: String,
    /// Fraction of columns (right-most, as displayed) held out from training.
    #[arg(long, default_value_t = 1.0 / 3.0)]
    holdout: f64,
    /// Fraction of the pairs whose crop gets black air beyond a random soft edge (as around the
    /// body of a DRR), in HQ and LQ alike.
    #[arg(long, default_value_t = 0.0)]
    air: f64,
    /// Augmentation of each crop before it is degraded: none, hq (flips, ±5°, ±5 %, ±10 %
    /// gamma/contrast) or strong (flips, ±10°, ±20 %, ±10 % gamma/contrast).
    #[arg(long, default_value = "none")]
    augment: String,
    /// --method drr: give each HQ crop the white noise its LQ got (the same draw), so that a
    /// model learns to keep fine grain (a DRR's projected CT noise) and to undo only the blur;
    /// a FRACTION in [0, 1] gives it that share of the draw (the model learns to keep that much
    /// of the grain) [default when given without a value: 1]
    #[arg(long, value_name = "FRACTION", num_args = 0..=1, default_missing_value = "1")]
    grain_in_hq: Option<f64>,
    /// --method drr: take this share (0–1) of the local contrast below --flatten-px away from
    /// each LQ crop, before its blur (a DRR is flatter than a processed radiograph), instead of
    /// the degradation file's
    #[arg(long, value_name = "SHARE")]
    flatten: Option<f64>,
    /// The width (Gaussian σ, pixels) of the local mean --flatten pulls toward [default: the
    /// file's, else 10]
    #[arg(long, value_name = "PX")]
    flatten_px: Option<f64>,
    /// --method drr: give each HQ crop the DRR look's tone curve too, so that LQ and HQ share
    /// the DRRs' grey scale: a model trained on them restores detail and keeps its input's tone
    /// (moving toward a radiograph's grey scale is then a separate choice, `dxr restore --tone`)
    #[arg(long)]
    hq_in_drr_tone: bool,
}

/// The library's degradation for the flags.
fn degrade_for(how: &Degradation) -> Result<Strategy> {
    let weights = |what: &str| {
        how.weights.as_deref().ok_or_else(|| {
            Error::Usage(format!("--method {} needs --weights ({what})", how.method))
        })
    };
    match how.method.as_str() {
        "bicubic" => Ok(Strategy::Bicubic(how.scale)),
        "drr" => Strategy::drr(weights("the degradation.json of `dxr fit-drr-look`")?),
        "ddpm" => Strategy::ddpm(
            weights("a DDPM-LQ model.safetensors")?,
            how.strength,
            how.steps,
            how.ilvr,
            open_device(&how.device)?,
        ),
        "munit" => {
            let path = weights("a munit.safetensors")?;
            let style = how.style.as_deref().filter(|p| p.as_os_str() != "random");
            let style = style.map(io::read).transpose()?;
            Strategy::munit(path, style, open_device(&how.device)?)
        }
        m => Err(Error::Usage(format!(
            "--method {m:?}: use bicubic, drr, ddpm or munit"
        ))),
    }
}

pub fn run_pairs(a: &PairsArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&a.air) {
        return Err(Error::Usage(format!(
            "--air {}: a fraction in [0, 1]",
            a.air
        )));
    }
    if let Some(f) = a.grain_in_hq
        && !(0.0..=1.0).contains(&f)
    {
        return Err(Error::Usage(format!(
            "--grain-in-hq takes a fraction between 0 and 1, got {f}"
        )));
    }
    for (flag, v, ok) in [
        (
            "--flatten",
            a.flatten,
            a.flatten.is_none_or(|k| (0.0..=1.0).contains(&k)),
        ),
        (
            "--flatten-px",
            a.flatten_px,
            a.flatten_px.is_none_or(|p| (1.0..=64.0).contains(&p)),
        ),
    ] {
        if !ok {
            return Err(Error::Usage(format!(
                "{flag} {}: out of range (--flatten 0–1, --flatten-px 1–64 px)",
                v.unwrap_or_default()
            )));
        }
        if v.is_some() && a.how.method != "drr" {
            return Err(Error::Usage(format!(
                "{flag} needs --method drr (it is a part of that degradation), not {}",
                a.how.method
            )));
        }
    }
    if a.hq_in_drr_tone && a.how.method != "drr" {
        return Err(Error::Usage(format!(
            "--hq-in-drr-tone needs --method drr (the tone curve is that degradation's), not {}",
            a.how.method
        )));
    }
    if a.grain_in_hq.is_some() && a.how.method != "drr" {
        return Err(Error::Usage(format!(
            "--grain-in-hq needs --method drr (the noise it shares is that degradation's), not {}",
            a.how.method
        )));
    }
    let augment = match a.augment.as_str() {
        "none" => Augment::NONE,
        "hq" => Augment::HQ,
        "strong" => Augment::STRONG,
        other => {
            return Err(Error::Usage(format!(
                "--augment {other:?}: use none, hq or strong"
            )));
        }
    };
    let mut degrade = degrade_for(&a.how)?;
    if let Strategy::Drr(d) = &mut degrade {
        d.flatten = a.flatten.unwrap_or(d.flatten);
        d.flatten_px = a.flatten_px.unwrap_or(d.flatten_px);
    }
    let hq = Domain::load(&a.hq, columns(&a.region, a.holdout)?)?;
    hq.check_patch(a.size)?;
    for d in ["lq", "hq"] {
        std::fs::create_dir_all(a.out.join(d)).map_err(|e| Error::io(a.out.join(d), e))?;
    }
    // the scale of the whole images the crops come from, for the model trained on them
    if let Some(chest_px) = typical_chest_px(&hq.images) {
        let scale = ModelScale {
            pixel_mm: None,
            chest_px,
        };
        write_atomic(
            &a.out.join(SCALE_FILE),
            &serde_json::to_vec_pretty(&scale).expect("serialisable"),
        )?;
    }
    let bar = progress_bar(a.count as u64, "pairs");
    for k in 0..a.count {
        let data = hq.patch(a.how.seed, k as u64, 0, a.size, &augment);
        let mut crop = GrayImage {
            width: a.size,
            height: a.size,
            data,
        };
        // the same pairs get air for a given seed, whatever the count
        let draw = a.how.seed.wrapping_mul(0x9E37_79B9).wrapping_add(k as u64);
        if ((draw.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64) < a.air {
            crop = with_air_margin(&crop, draw);
        }
        let noise_seed = a.how.seed.wrapping_add(k as u64);
        let lq = degrade.apply(&crop, noise_seed)?;
        if let (true, Strategy::Drr(d)) = (a.hq_in_drr_tone, &degrade) {
            crop = d.curve.apply(&crop);
        }
        if let (Some(f), Strategy::Drr(d)) = (a.grain_in_hq, &degrade) {
            crop = d.grain(&crop, noise_seed, f);
        }
        let name = format!("{k:05}.png");
        write_atomic(
            &a.out.join("lq").join(&name),
            &encode_png(&lq, BitDepth::Sixteen)?,
        )?;
        write_atomic(
            &a.out.join("hq").join(&name),
            &encode_png(&crop, BitDepth::Sixteen)?,
        )?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!(
        "{} {} pairs of {}² in {}",
        a.count,
        a.how.method,
        a.size,
        a.out.display()
    );
    Ok(())
}

#[derive(Args)]
pub struct SynthArgs {
    #[command(flatten)]
    how: Degradation,
    /// HQ images or folders.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    #[arg(short, long)]
    out: PathBuf,
}

pub fn run_synth(a: &SynthArgs) -> Result<()> {
    let degrade = degrade_for(&a.how)?;
    std::fs::create_dir_all(&a.out).map_err(|e| Error::io(&a.out, e))?;
    let files = io::image_inputs(&a.inputs)?;
    let bar = progress_bar(files.len() as u64, "images");
    for f in &files {
        let img = io::read(f)?;
        let out = degrade.apply(&img, a.how.seed)?;
        let stem = f.file_stem().unwrap_or_default().to_string_lossy();
        write_atomic(
            &a.out.join(format!("{stem}.png")),
            &encode_png(&out, BitDepth::Sixteen)?,
        )?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!("{} image(s) → {}", files.len(), a.out.display());
    Ok(())
}
