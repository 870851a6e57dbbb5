//! `dxr train`, `dxr pairs`, `dxr synth-lq`, `dxr eval`: the paper's two training stages and
//! their evaluation.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::prelude::*;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use dxr::checkpoint::{LoadedModel, load_bytes, read_checkpoint};
use dxr::config::ModelScale;
use dxr::device::{self, DeviceChoice};
use dxr::diffusion::sampler::{SamplerKind, SamplerSettings};
use dxr::io::{self, BitDepth, GrayImage, encode_png, write_atomic};
use dxr::model::munit::{MunitConfig, MunitGen, MunitWeights};
use dxr::restore::Restorer;
use dxr::scale::{SCALE_FILE, read_set_scale, typical_chest_px};
use dxr::train::data::{Augment, Columns, Domain, PairSet};
use dxr::train::ddpm::{
    DdpmData, DdpmSettings, DdpmTrainer, DdpmVal, Sdedit, bicubic_degrade, sdedit, val_pairs,
};
use dxr::train::munit::{MunitSettings, MunitTrainer, Style, load_munit, translate};
use dxr::train::{self, RunOptions, Trainer, eval};
use dxr::{Error, Result};

/// Options every trainer takes.
#[derive(Args, Clone)]
pub struct Common {
    /// Network size: tiny, small, base (the authors' 8-level UNet) or a config JSON file.
    #[arg(long, default_value = "small")]
    config: String,
    /// Train until this many steps in total (a resumed run continues to it).
    #[arg(long)]
    steps: u64,
    /// Run folder: state.safetensors, model.safetensors, log.csv, loss.png.
    #[arg(long)]
    out: PathBuf,
    /// Continue the run in --out from its last save, with the same settings.
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Side of the random training crops.
    #[arg(long, default_value_t = 64)]
    patch: usize,
    /// Adam learning rate (default: 5e-5 for the diffusion models, the authors'; 1e-4 for MUNIT).
    #[arg(long)]
    lr: Option<f64>,
    /// EMA decay of the exported weights.
    #[arg(long, default_value_t = 0.999)]
    ema: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Validate every N steps (and at the end).
    #[arg(long, default_value_t = 500)]
    val_every: u64,
    /// Save the state every N steps (and at the end, and on Ctrl-C).
    #[arg(long, default_value_t = 500)]
    save_every: u64,
    /// What the diffusion network learns to predict: eps (the noise, the authors' objective) or
    /// x0 (the clean image: learns restoration in far fewer steps). Saved in the model's spec.
    /// [default: eps, or what --config FILE says]
    #[arg(long)]
    prediction: Option<String>,
    /// DPM-Solver++ steps of the validation restorations.
    #[arg(long, default_value_t = 10)]
    val_steps: usize,
    /// cpu (the fastest CPU backend: flex), flex, ndarray (the single-threaded reference) or
    /// gpu (wgpu).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// The training images' pixel pitch (mm at the detector), saved in the model's spec.
    #[arg(long)]
    pixel_mm: Option<f64>,
    /// The training images' lung-field width in pixels, saved in the model's spec [default:
    /// measured on the images (a pair set's scale.json, written by `dxr pairs`)].
    #[arg(long)]
    chest_px: Option<f64>,
}

/// The scale saved in the model's spec: the flags, else `measured` (chest width of the
/// training images) with the flag's pitch.
fn model_scale(c: &Common, measured: Option<ModelScale>) -> Result<Option<ModelScale>> {
    let chest_px = c.chest_px.or(measured.map(|m| m.chest_px));
    let Some(chest_px) = chest_px else {
        eprintln!(
            "note: no chest width could be measured on the training images and none was given \
             (--chest-px): the model will restore inputs at their own pixels"
        );
        return Ok(None);
    };
    let scale = ModelScale {
        pixel_mm: c.pixel_mm.or(measured.and_then(|m| m.pixel_mm)),
        chest_px,
    };
    scale.validate()?;
    Ok(Some(scale))
}

#[derive(Subcommand)]
pub enum TrainCommand {
    /// The restoration model: conditional on LQ (input cat[x_t, LQ]), trained on a pair set.
    DdpmHq {
        #[command(flatten)]
        common: Common,
        /// Pair set: a folder with lq/ and hq/ whose files match by name.
        #[arg(long)]
        pairs: PathBuf,
        /// Held-out pair set for validation (PSNR/SSIM of fast restorations).
        #[arg(long)]
        val: Option<PathBuf>,
        /// Start from this model's weights (fine-tuning; same network as --config). Ignored on
        /// --resume, whose state holds the weights.
        #[arg(long)]
        init: Option<PathBuf>,
    },
    /// The LQ domain's model: unconditional, trained on any folder of LQ images (DRRs).
    DdpmLq {
        #[command(flatten)]
        common: Common,
        /// LQ images: a folder (e.g. a `dxr drr` set's png16/) or one image.
        #[arg(long)]
        lq: PathBuf,
        /// Held-out LQ images for validation (noise-prediction loss).
        #[arg(long)]
        val: Option<PathBuf>,
    },
    /// MUNIT-LQ: unpaired HQ ↔ LQ translation (GAN); --config picks the MUNIT size.
    Munit {
        #[command(flatten)]
        common: Common,
        /// HQ radiographs (a file or folder); the right-most --holdout of each is not used.
        #[arg(long)]
        hq: PathBuf,
        /// LQ images (DRRs).
        #[arg(long)]
        lq: PathBuf,
        /// Fraction of HQ columns (right-most, as displayed) held out; validated on.
        #[arg(long, default_value_t = 1.0 / 3.0)]
        holdout: f64,
    },
}

fn open_device(name: &str) -> Result<Device> {
    device::open(name.parse::<DeviceChoice>()?)
}

fn ddpm_settings(c: &Common, channels: usize) -> Result<DdpmSettings> {
    Ok(DdpmSettings {
        spec: {
            let mut spec = train::preset(&c.config, channels)?;
            if let Some(p) = &c.prediction {
                spec.prediction = p.parse()?;
            }
            spec
        },
        batch: c.batch,
        patch: c.patch,
        lr: c.lr.unwrap_or(5e-5),
        betas: (0.9, 0.999),
        ema_decay: c.ema,
        seed: c.seed,
        val_steps: c.val_steps,
    })
}

pub fn run_train(cmd: &TrainCommand) -> Result<()> {
    // Ctrl-C is caught from the start: while the data loads it stops the run after its first step.
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let flag = cancel.clone();
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    }
    let (common, mut trainer): (&Common, Box<dyn Trainer>) = match cmd {
        TrainCommand::DdpmHq {
            common,
            pairs,
            val,
            init,
        } => {
            let device = open_device(&common.device)?;
            let mut settings = ddpm_settings(common, 2)?;
            settings.spec.scale = model_scale(common, read_set_scale(pairs)?)?;
            let val = match val {
                Some(v) => DdpmVal::Pairs(val_pairs(&PairSet::load(v)?, settings.patch.max(64))),
                None => DdpmVal::None,
            };
            let data = DdpmData::Pairs(PairSet::load(pairs)?);
            let mut t = DdpmTrainer::new(settings, data, val, &device)?;
            if let (Some(path), false) = (init, common.resume) {
                let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
                t.init_from(&load_bytes(&bytes, None, &device)?)?;
                eprintln!("starting from the weights of {}", path.display());
            }
            (common, Box::new(t))
        }
        TrainCommand::DdpmLq { common, lq, val } => {
            let device = open_device(&common.device)?;
            let mut settings = ddpm_settings(common, 1)?;
            let domain = Domain::load(lq, Columns::All)?;
            let measured = typical_chest_px(&domain.images).map(|chest_px| ModelScale {
                pixel_mm: None,
                chest_px,
            });
            settings.spec.scale = model_scale(common, measured)?;
            let val = match val {
                Some(v) => {
                    let d = Domain::load(v, Columns::All)?;
                    d.check_patch(settings.patch)?;
                    DdpmVal::Patches(
                        (0..8)
                            .map(|k| d.patch(99, 0, k, settings.patch, &Augment::NONE))
                            .collect(),
                    )
                }
                None => DdpmVal::None,
            };
            let data = DdpmData::Domain(domain, Augment::FLIP);
            (
                common,
                Box::new(DdpmTrainer::new(settings, data, val, &device)?),
            )
        }
        TrainCommand::Munit {
            common,
            hq,
            lq,
            holdout,
        } => {
            let device = open_device(&common.device)?;
            let settings = MunitSettings {
                config: MunitConfig::preset(&common.config)?,
                weights: MunitWeights::default(),
                batch: common.batch,
                patch: common.patch,
                lr: common.lr.unwrap_or(1e-4),
                betas: (0.5, 0.999),
                ema_decay: common.ema,
                seed: common.seed,
            };
            let held = Domain::load(hq, columns("heldout", *holdout)?)?;
            let val = if *holdout > 0.0 && held.check_patch(settings.patch).is_ok() {
                (0..4)
                    .map(|k| held.patch(77, 0, k, settings.patch, &Augment::NONE))
                    .collect()
            } else {
                Vec::new()
            };
            let hq = Domain::load(hq, columns("train", *holdout)?)?;
            let lq = Domain::load(lq, Columns::All)?;
            (
                common,
                Box::new(MunitTrainer::new(settings, hq, lq, val, &device)?),
            )
        }
    };
    drive(trainer.as_mut(), common, &cancel)
}

/// The run loop with a progress bar and Ctrl-C (save and stop).
fn drive(trainer: &mut dyn Trainer, c: &Common, cancel: &AtomicBool) -> Result<()> {
    let opts = RunOptions {
        out: c.out.clone(),
        steps: c.steps,
        resume: c.resume,
        val_every: c.val_every,
        save_every: c.save_every,
    };
    let bar = ProgressBar::new(c.steps);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} steps, ETA {eta} {msg}",
        )
        .expect("valid template"),
    );
    let mut last_val = String::new();
    let summary = train::run(trainer, &opts, &mut |p| {
        bar.set_position(p.step);
        if let Some(v) = p.val {
            last_val = match (v.psnr, v.ssim, v.loss) {
                (Some(a), Some(b), _) => format!(" val PSNR {a:.2} dB SSIM {b:.4}"),
                (_, _, Some(l)) => format!(" val loss {l:.4}"),
                _ => String::new(),
            };
        }
        bar.set_message(format!("loss {:.4}{last_val}", p.loss));
        !cancel.load(Ordering::SeqCst)
    })?;
    bar.finish_and_clear();
    let first = summary.rows.iter().find(|r| r.step > summary.first_step);
    let last = summary.rows.last();
    if let (Some(a), Some(b)) = (first, last) {
        eprintln!(
            "{}: steps {}→{}, loss {:.4} (step {}) → {:.4} (step {}); state and model in {}",
            trainer.kind(),
            summary.first_step,
            summary.last_step,
            a.loss,
            a.step,
            b.loss,
            b.step,
            c.out.display()
        );
    }
    if summary.cancelled {
        eprintln!(
            "stopped at step {}: state saved, continue with --resume",
            summary.last_step
        );
        return Err(Error::Cancelled);
    }
    Ok(())
}

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
}

fn columns(region: &str, holdout: f64) -> Result<Columns> {
    if !(0.0..1.0).contains(&holdout) {
        return Err(Error::Image(format!(
            "--holdout {holdout} must be in [0, 1)"
        )));
    }
    match region {
        "train" => Ok(Columns::Train(holdout)),
        "heldout" => Ok(Columns::HeldOut(holdout)),
        "all" => Ok(Columns::All),
        r => Err(Error::Image(format!(
            "--region {r:?}: use train, heldout or all"
        ))),
    }
}

/// A degradation HQ → LQ.
enum Degrade {
    Bicubic(f64),
    Drr(dxr::train::degrade::DrrLike),
    Ddpm {
        model: LoadedModel,
        schedule: dxr::diffusion::schedule::Schedule,
        strength: f64,
        steps: usize,
        ilvr: Option<usize>,
        device: Device,
    },
    Munit {
        config: MunitConfig,
        generator: MunitGen,
        /// An LQ image whose style every translation takes; else a random style per image.
        style: Option<GrayImage>,
        device: Device,
    },
}

impl Degrade {
    fn apply(&self, img: &GrayImage, seed: u64) -> Result<GrayImage> {
        match self {
            Degrade::Bicubic(k) => bicubic_degrade(img, *k),
            Degrade::Drr(d) => Ok(d.apply(img, seed)),
            Degrade::Ddpm {
                model,
                schedule,
                strength,
                steps,
                ilvr,
                device,
            } => sdedit(
                model,
                schedule,
                img,
                &Sdedit {
                    strength: *strength,
                    steps: *steps,
                    ilvr: *ilvr,
                    seed,
                },
                device,
            ),
            Degrade::Munit {
                config,
                generator,
                style,
                device,
            } => {
                let style = match style {
                    Some(s) => Style::Of(s),
                    None => Style::Random(seed),
                };
                translate(config, generator, img, style, device)
            }
        }
    }
}

fn degrade_for(how: &Degradation) -> Result<Degrade> {
    let Degradation {
        method,
        weights,
        scale,
        strength,
        steps,
        ilvr,
        style,
        device,
        ..
    } = how;
    let style = style.as_deref().filter(|p| p.as_os_str() != "random");
    let weights = weights.as_deref();
    let (scale, strength, steps, ilvr) = (*scale, *strength, *steps, *ilvr);
    match method.as_str() {
        "bicubic" => Ok(Degrade::Bicubic(scale)),
        "drr" => {
            let w = weights.ok_or_else(|| {
                Error::Config(
                    "--method drr needs --weights (the degradation.json of `dxr fit-drr-look`)"
                        .into(),
                )
            })?;
            let text = std::fs::read_to_string(w).map_err(|e| Error::io(w, e))?;
            let d = serde_json::from_str(&text).map_err(|e| {
                Error::Config(format!("{}: not a fitted DRR look ({e})", w.display()))
            })?;
            Ok(Degrade::Drr(d))
        }
        "ddpm" => {
            let w = weights.ok_or_else(|| {
                Error::Config("--method ddpm needs --weights (a DDPM-LQ model.safetensors)".into())
            })?;
            let device = open_device(device)?;
            let bytes = std::fs::read(w).map_err(|e| Error::io(w, e))?;
            let model = load_bytes(&bytes, None, &device)?;
            let schedule = model.spec.schedule.build()?;
            Ok(Degrade::Ddpm {
                model,
                schedule,
                strength,
                steps,
                ilvr: (ilvr > 1).then_some(ilvr),
                device,
            })
        }
        "munit" => {
            let w = weights.ok_or_else(|| {
                Error::Config("--method munit needs --weights (a munit.safetensors)".into())
            })?;
            let device = open_device(device)?;
            let (config, generator) = load_munit(w, &device)?;
            let style = style.map(io::read).transpose()?;
            Ok(Degrade::Munit {
                config,
                generator,
                style,
                device,
            })
        }
        m => Err(Error::Config(format!(
            "--method {m:?}: use bicubic, ddpm or munit"
        ))),
    }
}

pub fn run_pairs(a: &PairsArgs) -> Result<()> {
    let degrade = degrade_for(&a.how)?;
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
    let bar = ProgressBar::new(a.count as u64);
    for k in 0..a.count {
        let data = hq.patch(a.how.seed, k as u64, 0, a.size, &Augment::NONE);
        let crop = GrayImage {
            width: a.size,
            height: a.size,
            data,
        };
        let lq = degrade.apply(&crop, a.how.seed.wrapping_add(k as u64))?;
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
    let mut files = Vec::new();
    for i in &a.inputs {
        files.extend(dxr::train::data::image_files(i)?);
    }
    let bar = ProgressBar::new(files.len() as u64);
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

#[derive(Args)]
pub struct EvalArgs {
    /// Restored images (scored against --reference by file name).
    #[arg(long, requires = "reference", conflicts_with_all = ["weights", "pairs"])]
    restored: Option<PathBuf>,
    #[arg(long)]
    reference: Option<PathBuf>,
    /// A restoration model: restores --pairs' lq/ and scores against hq/.
    #[arg(long, requires = "pairs")]
    weights: Option<PathBuf>,
    #[arg(long)]
    pairs: Option<PathBuf>,
    #[arg(long, default_value = "dpmpp")]
    sampler: String,
    #[arg(long, default_value_t = 25)]
    steps: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Where to write the CSV (default: eval.csv in the restored folder, or beside the weights).
    #[arg(long)]
    csv: Option<PathBuf>,
}

pub fn run_eval(a: &EvalArgs) -> Result<()> {
    let (rows, default_csv) = match (&a.restored, &a.reference, &a.weights, &a.pairs) {
        (Some(r), Some(refd), None, None) => (eval::eval_dirs(r, refd)?, r.join("eval.csv")),
        (None, None, Some(w), Some(p)) => {
            let device = open_device(&a.device)?;
            let bytes = std::fs::read(w).map_err(|e| Error::io(w, e))?;
            let restorer = Restorer::new(dxr::checkpoint::load(
                &read_checkpoint(&bytes)?,
                None,
                &device,
            )?)?;
            let settings = SamplerSettings {
                kind: a.sampler.parse::<SamplerKind>()?,
                steps: a.steps,
                eta: 0.0,
                clip_denoised: true,
            };
            let pairs = PairSet::load(p)?;
            let bar = ProgressBar::new(pairs.names.len() as u64);
            let rows = eval::eval_model(
                &restorer,
                &pairs,
                &settings,
                a.seed,
                &device,
                &mut |k, _| {
                    bar.set_position(k as u64);
                    true
                },
            )?;
            bar.finish_and_clear();
            (rows, w.with_file_name("eval.csv"))
        }
        _ => {
            return Err(Error::Config(
                "give --restored DIR --reference DIR, or --weights FILE --pairs DIR".into(),
            ));
        }
    };
    print!("{}", eval::markdown(&rows));
    let path = a.csv.clone().unwrap_or(default_csv);
    write_atomic(&path, eval::csv(&rows).as_bytes())?;
    eprintln!("CSV: {}", path.display());
    Ok(())
}

#[derive(Args)]
pub struct RealismArgs {
    /// Images (a folder or files).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Real radiograph(s) whose intensity distribution the images are compared with.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Use only the held-out right-most fraction of the reference's columns (0 = all).
    #[arg(long, default_value_t = 0.0)]
    reference_holdout: f64,
    /// A `dxr drr` set folder: its labels/NAME.json give the nodules of the image NAME.png.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// CSV with one row per image.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// The DRRs the images restore (matched by file stem): runs the checks of a restoration
    /// (detail, texture, intensities, nodules, nothing invented) with a pass/fail line each.
    /// Needs --reference and --labels.
    #[arg(long)]
    before: Option<PathBuf>,
    /// The nodule-free twins of the DRRs (a set's clean/ folder), for "nothing invented".
    #[arg(long, requires = "clean_after")]
    clean_before: Option<PathBuf>,
    /// Their restorations.
    #[arg(long, requires = "clean_before")]
    clean_after: Option<PathBuf>,
}

/// Files of `dir` by stem.
fn by_stem(dir: &std::path::Path) -> Result<std::collections::BTreeMap<String, PathBuf>> {
    Ok(dxr::train::data::image_files(dir)?
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

/// `img` at the size of `like` (unchanged when it already is).
fn at_size(img: GrayImage, like: &GrayImage) -> GrayImage {
    if [img.width, img.height] == [like.width, like.height] {
        img
    } else {
        img.resized(
            like.width,
            like.height,
            image::imageops::FilterType::Triangle,
        )
    }
}

/// `dxr realism --before`: the checks of a restoration.
fn run_checks(a: &RealismArgs, before: &std::path::Path, reference: &[GrayImage]) -> Result<()> {
    use dxr::drr::dataset::ViewLabel;
    use dxr::train::checks::{self, Reference, Twin, View};
    let labels = a.labels.as_ref().ok_or_else(|| {
        Error::Config("--before needs --labels (the DRR set the nodules come from)".into())
    })?;
    let pitch = |file: &std::path::Path, img: &GrayImage| -> Option<f64> {
        let l = ViewLabel::for_image(labels, file).ok()?;
        Some(l.pixel_mm() * l.width as f64 / img.width as f64)
    };
    let befores = by_stem(before)?;
    let mut views = Vec::new();
    for dir in &a.images {
        for (stem, file) in by_stem(dir)? {
            let Some(src) = befores.get(&stem) else {
                continue;
            };
            let after = io::read(&file)?;
            let input = at_size(io::read(src)?, &after);
            let nodules = nodule_labels(labels, src, &input)?
                .into_iter()
                .map(|n| (n.centre, n.radius))
                .collect();
            views.push(View {
                pixel_mm: pitch(src, &input),
                name: stem,
                before: input,
                after,
                nodules,
            });
        }
    }
    let mut twins = Vec::new();
    if let (Some(cb), Some(ca)) = (&a.clean_before, &a.clean_after) {
        let cbs = by_stem(cb)?;
        for (stem, file) in by_stem(ca)? {
            let Some(src) = cbs.get(&stem) else { continue };
            let after = io::read(&file)?;
            let input = at_size(io::read(src)?, &after);
            twins.push(Twin {
                pixel_mm: pitch(src, &input),
                name: stem,
                before: input,
                after,
            });
        }
    }
    let reference = Reference::from_images(&reference.iter().collect::<Vec<_>>())?;
    println!(
        "checks of {} restored views ({} twins) against {}",
        views.len(),
        twins.len(),
        a.reference
            .as_ref()
            .map_or("?".into(), |p| p.display().to_string())
    );
    println!("| check | before | after | target | result |");
    println!("|---|---|---|---|---|");
    let results = checks::run(&views, &twins, &reference)?;
    for c in &results {
        println!(
            "| {} | {} | {} | {} | {} |",
            c.name,
            c.before,
            c.after,
            c.target,
            if c.pass { "pass" } else { "FAIL" }
        );
    }
    let passed = results.iter().filter(|c| c.pass).count();
    println!("{passed} of {} checks pass", results.len());
    Ok(())
}

pub fn run_realism(a: &RealismArgs) -> Result<()> {
    use dxr::train::realism;
    let mut files = Vec::new();
    for i in &a.images {
        files.extend(dxr::train::data::image_files(i)?);
    }
    let reference_crops = match &a.reference {
        Some(r) => {
            let cols = if a.reference_holdout > 0.0 {
                Columns::HeldOut(a.reference_holdout)
            } else {
                Columns::All
            };
            let crops = Domain::load(r, cols)?.region_images();
            Some(crops)
        }
        None => None,
    };
    if let Some(before) = &a.before {
        let reference = reference_crops.as_ref().ok_or_else(|| {
            Error::Config("--before needs --reference (the real radiograph)".into())
        })?;
        return run_checks(a, before, reference);
    }
    let reference_cdf = reference_crops
        .as_ref()
        .map(|crops| realism::cdf(&crops.iter().collect::<Vec<_>>()));
    let mut csv =
        String::from("image,hist_distance,spectrum_slope,edge_sharpness,nodules,mean_cnr\n");
    let (mut hd, mut sl, mut es, mut cnrs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for f in &files {
        let img = io::read(f)?;
        let h = reference_cdf
            .as_ref()
            .map(|c| realism::wasserstein(&realism::cdf(&[&img]), c));
        let slope = realism::spectrum_slope(&img)?;
        let edge = realism::edge_sharpness(&img);
        let mut these = Vec::new();
        if let Some(dir) = &a.labels {
            for n in nodule_labels(dir, f, &img)? {
                if let Some(v) = realism::nodule_cnr(&img, n.centre, n.radius) {
                    these.push(v);
                }
            }
        }
        let mean_cnr = (!these.is_empty()).then(|| these.iter().sum::<f64>() / these.len() as f64);
        let name = f.file_name().unwrap_or_default().to_string_lossy();
        let opt = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
        csv.push_str(&format!(
            "{name},{},{slope:.6},{edge:.6},{},{}\n",
            opt(h),
            these.len(),
            opt(mean_cnr)
        ));
        if let Some(h) = h {
            hd.push(h);
        }
        sl.push(slope);
        es.push(edge);
        cnrs.extend(these);
    }
    let ms = |v: &[f64]| -> String {
        if v.is_empty() {
            return "–".into();
        }
        let (m, s) = eval::mean_std(v.iter().copied());
        format!("{m:.4} ± {s:.4}")
    };
    println!(
        "| images | histogram distance to the reference | spectrum slope | edge sharpness | nodule CNR (n) |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| {} ({}) | {} | {} | {} | {} ({}) |",
        a.images
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        files.len(),
        ms(&hd),
        ms(&sl),
        ms(&es),
        ms(&cnrs),
        cnrs.len()
    );
    if let Some(p) = &a.csv {
        write_atomic(p, csv.as_bytes())?;
    }
    Ok(())
}

/// A nodule of a `dxr drr` label, in the pixels of the image it is used on.
struct NoduleBox {
    centre: [f64; 2],
    radius: f64,
    bbox: [f64; 4],
}

/// The nodules of `image` (a file named like a view of the DRR set `dir`, at any size: the label's
/// pixels are scaled to the image's).
fn nodule_labels(
    dir: &std::path::Path,
    image: &std::path::Path,
    img: &GrayImage,
) -> Result<Vec<NoduleBox>> {
    let stem = image.file_stem().unwrap_or_default().to_string_lossy();
    let path = dir.join("labels").join(format!("{stem}.json"));
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let label: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Image(format!("{}: {e}", path.display())))?;
    let sx = img.width as f64 / label["width"].as_f64().unwrap_or(img.width as f64);
    let sy = img.height as f64 / label["height"].as_f64().unwrap_or(img.height as f64);
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    Ok(label["nodules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| NoduleBox {
            centre: [num(&n["centre_px"][0]) * sx, num(&n["centre_px"][1]) * sy],
            radius: num(&n["radius_px"]) * 0.5 * (sx + sy),
            bbox: [
                num(&n["bbox_px"][0]) * sx,
                num(&n["bbox_px"][1]) * sy,
                num(&n["bbox_px"][2]) * sx,
                num(&n["bbox_px"][3]) * sy,
            ],
        })
        .collect())
}

#[derive(Args)]
pub struct SheetArgs {
    /// Folders of images, one per column (a row is the images of the same name, matched by file
    /// stem, in the order of the first folder).
    #[arg(required = true)]
    columns: Vec<PathBuf>,
    /// Output PNG.
    #[arg(short, long)]
    out: PathBuf,
    /// Rows (the first N names of the first folder).
    #[arg(long, default_value_t = 6)]
    count: usize,
    /// A `dxr drr` set folder: draws each image's nodule boxes from its labels/NAME.json.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Longer side of a cell, in pixels.
    #[arg(long, default_value_t = 256)]
    thumb: usize,
}

/// Before/after sheets: rows = images, columns = folders (input, restorations, reference).
pub fn run_sheet(a: &SheetArgs) -> Result<()> {
    use dxr::io::sheet::{Cell, grid_png};
    let stem = |p: &std::path::Path| {
        p.file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    let lists = a
        .columns
        .iter()
        .map(|c| dxr::train::data::image_files(c))
        .collect::<Result<Vec<_>>>()?;
    let mut rows = Vec::new();
    for first in lists[0].iter().take(a.count.max(1)) {
        let name = stem(first);
        let mut row = Vec::new();
        for (col, list) in a.columns.iter().zip(&lists) {
            let file = list.iter().find(|p| stem(p) == name).ok_or_else(|| {
                Error::Image(format!(
                    "{}: no image named {name} (as in {})",
                    col.display(),
                    a.columns[0].display()
                ))
            })?;
            let img = io::read(file)?;
            let boxes = match &a.labels {
                Some(dir) => nodule_labels(dir, file, &img)?
                    .into_iter()
                    .map(|n| n.bbox)
                    .collect(),
                None => vec![],
            };
            row.push((img, boxes));
        }
        rows.push(row);
    }
    let cells: Vec<Vec<Cell>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|(image, boxes)| Cell {
                    image,
                    boxes: boxes.clone(),
                })
                .collect()
        })
        .collect();
    write_atomic(&a.out, &grid_png(&cells, a.thumb)?)?;
    eprintln!(
        "wrote {} ({} rows × {} columns)",
        a.out.display(),
        rows.len(),
        a.columns.len()
    );
    Ok(())
}

#[derive(Args)]
pub struct FitDrrLookArgs {
    /// HQ radiograph(s); only the training columns (left of --holdout) are used.
    #[arg(long)]
    hq: PathBuf,
    /// DRRs whose look the degraded radiograph should take (a set's png16/ of training views).
    #[arg(long)]
    drr: PathBuf,
    /// Fraction of HQ columns (right-most) held out.
    #[arg(long, default_value_t = 1.0 / 3.0)]
    holdout: f64,
    /// Blur widths (pixels at the HQ scale) to try.
    #[arg(long, num_args = 1.., default_values_t = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0])]
    sigma: Vec<f64>,
    /// White-noise levels (standard deviation, grey levels in [0, 1]) to try with each blur.
    #[arg(long, num_args = 1.., default_values_t = [0.0, 0.005, 0.01, 0.02, 0.04])]
    noise: Vec<f64>,
    /// Where the fitted degradation goes (JSON, for `dxr pairs --method drr --weights`).
    #[arg(short, long)]
    out: PathBuf,
    /// Also write the fixed-filter baseline (DRR → radiograph tone curve + unsharp mask) here.
    #[arg(long)]
    filter_out: Option<PathBuf>,
}

/// `dxr fit-drr-look`: the DRR look as a tone curve and a blur, chosen by measurement.
pub fn run_fit_drr_look(a: &FitDrrLookArgs) -> Result<()> {
    use dxr::scale::estimate_chest_px;
    use dxr::train::degrade::{DrrLike, FixedFilter};
    let hq = Domain::load(&a.hq, columns("train", a.holdout)?)?;
    let hq_chest = typical_chest_px(&hq.images);
    let hq_imgs = hq.region_images();
    // the DRRs at the radiograph's scale (lung-field widths matched)
    let mut drrs = Vec::new();
    for f in dxr::train::data::image_files(&a.drr)? {
        let img = io::read(&f)?;
        let k = match (hq_chest, estimate_chest_px(&img)) {
            (Some(h), Some(d)) => h / d,
            _ => 1.0,
        };
        drrs.push(if (k - 1.0).abs() < 0.02 {
            img
        } else {
            let (w, h) = (
                ((img.width as f64 * k).round() as usize).max(16),
                ((img.height as f64 * k).round() as usize).max(16),
            );
            img.resized(w, h, image::imageops::FilterType::Triangle)
        });
    }
    let hq_refs: Vec<&GrayImage> = hq_imgs.iter().collect();
    let drr_refs: Vec<&GrayImage> = drrs.iter().collect();
    let (fit, target, rows) = DrrLike::fit(&hq_refs, &drr_refs, &a.sigma, &a.noise)?;
    println!(
        "DRR look fitted on {} radiograph(s) (training columns) and {} DRRs at the radiograph's scale",
        hq_imgs.len(),
        drrs.len()
    );
    println!(
        "| LQ | blur σ px | noise σ | spectrum slope | edge sharpness | window-free histogram distance to the DRRs |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| DRRs (target) | – | – | {:.3} | {:.4} | {:.4} |",
        target.slope, target.sharpness, target.histogram_distance
    );
    for r in &rows {
        println!(
            "| radiograph, tone curve + blur + noise{} | {:.1} | {:.3} | {:.3} | {:.4} | {:.4} |",
            if (r.sigma, r.noise) == (fit.sigma, fit.noise) {
                " (chosen)"
            } else {
                ""
            },
            r.sigma,
            r.noise,
            r.slope,
            r.sharpness,
            r.histogram_distance
        );
    }
    write_atomic(&a.out, &serde_json::to_vec(&fit).expect("serialisable"))?;
    if let Some(p) = &a.filter_out {
        let f = FixedFilter::fit(&drr_refs, &hq_refs)?;
        write_atomic(p, &serde_json::to_vec(&f).expect("serialisable"))?;
    }
    Ok(())
}

#[derive(Args)]
pub struct FilterArgs {
    /// The fixed filter's JSON (`dxr fit-drr-look --filter-out`).
    #[arg(long)]
    filter: PathBuf,
    /// Images or folders.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    #[arg(short, long)]
    out: PathBuf,
}

/// `dxr filter`: the no-learning baseline (tone curve + unsharp mask) over images.
pub fn run_filter(a: &FilterArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.filter).map_err(|e| Error::io(&a.filter, e))?;
    let f: dxr::train::degrade::FixedFilter = serde_json::from_str(&text)
        .map_err(|e| Error::Config(format!("{}: not a fixed filter ({e})", a.filter.display())))?;
    std::fs::create_dir_all(&a.out).map_err(|e| Error::io(&a.out, e))?;
    for i in &a.inputs {
        for file in dxr::train::data::image_files(i)? {
            let out = f.apply(&io::read(&file)?);
            let stem = file.file_stem().unwrap_or_default().to_string_lossy();
            write_atomic(
                &a.out.join(format!("{stem}.png")),
                &encode_png(&out, BitDepth::Sixteen)?,
            )?;
        }
    }
    Ok(())
}
