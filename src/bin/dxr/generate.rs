//! `dxr generate` and `dxr merge`: a labelled (and restored) training set from many CTs,
//! resumable and splittable into shards, over the library's dataset factory.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use clap::Args;

use dxr::device::{self, DeviceChoice};
use dxr::diffusion::sampler::{SamplerKind, SamplerSettings};
use dxr::factory::settings::{GenerateSettings, RestoreSettings, SplitSettings};
use dxr::factory::{self, Job, Manifest, Restoration, Shard};
use dxr::restore::{RestoreOptions, Restorer};
use dxr::{Error, Result};

use crate::drr::{PrepArgs, ViewArgs, renderer};

#[derive(Args)]
pub struct GenerateArgs {
    /// The CTs: a JSONL manifest (one `{"id", "ct", "mask"?, overrides…}` a line; paths relative
    /// to the manifest) or a folder of NIfTI files and DICOM series folders.
    #[arg(long, required_unless_present = "verify")]
    cts: Option<PathBuf>,
    /// The dataset folder (new, or one to resume with the same settings).
    #[arg(long, required_unless_present = "verify")]
    out: Option<PathBuf>,
    /// Check every file of DATASET against its journal and say what is missing; makes nothing.
    #[arg(long, value_name = "DATASET", conflicts_with_all = ["cts", "out"])]
    verify: Option<PathBuf>,
    /// Print the manifest's CTs and the items per shard; render nothing.
    #[arg(long)]
    dry_run: bool,
    /// Render the manifest's usable CTs and list the bad ones (default: refuse a bad manifest).
    #[arg(long)]
    skip_bad: bool,
    /// Views per CT (a manifest line may set its own "views").
    #[arg(long, default_value_t = 1)]
    views: usize,
    /// Dataset seed: item (CT, view) draws from SHA-256 of (seed, CT id, view).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    view: ViewArgs,
    #[command(flatten)]
    prep: PrepArgs,
    /// Make only part I of N of the items (0 ≤ I < N), for a job array; join with `dxr merge`.
    #[arg(long, default_value = "0/1")]
    shard: Shard,
    /// Fraction of the CTs held out for validation (the split is by CT).
    #[arg(long, default_value_t = 0.2)]
    validation: f64,
    /// Seed of the split [default: --seed].
    #[arg(long)]
    split_seed: Option<u64>,
    /// Projector: auto (a GPU when one exists, else the CPU), cpu, gpu, or wgpu.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Restore every DRR with a model (images/ then holds the restoration, drr/ the DRR).
    #[arg(long)]
    restore: bool,
    /// Checkpoint for --restore [default: the bundled model].
    #[arg(long, requires = "restore")]
    weights: Option<PathBuf>,
    /// Sampler for --restore (ddim, plms, ddpm, dpmpp).
    #[arg(long, default_value_t = crate::restore::default_sampler())]
    sampler: String,
    /// Sampler steps [default: what the model records].
    #[arg(long)]
    steps: Option<usize>,
    /// DDIM η.
    #[arg(long, default_value_t = SamplerSettings::new().eta)]
    eta: f64,
    /// Backend of the restoration: cpu (flex), flex, ndarray or gpu.
    #[arg(long, default_value = "cpu")]
    restore_device: String,
    /// Memory one network call may use, in MiB [default: the device's].
    #[arg(long)]
    memory_mib: Option<u64>,
    /// The model's tone curve strength, 0–1, as `dxr restore --tone`.
    #[arg(long, default_value_t = 0.0)]
    tone: f32,
    /// CPU threads (rendering and the CPU backends) [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Args)]
pub struct MergeArgs {
    /// The shards' folders (`dxr generate --shard I/N --out …`), all N of them.
    #[arg(required = true)]
    shards: Vec<PathBuf>,
    /// The merged dataset (a new or empty folder).
    #[arg(short, long)]
    out: PathBuf,
}

pub fn run_merge(a: &MergeArgs) -> Result<()> {
    let n = factory::merge(&a.shards, &a.out)?;
    println!(
        "merged {} shard(s) into {}: {n} journal entries",
        a.shards.len(),
        a.out.display()
    );
    Ok(())
}

fn verify(dir: &std::path::Path) -> Result<()> {
    let v = factory::verify(dir)?;
    for p in &v.problems {
        println!("{p}");
    }
    println!(
        "{}: {} of {} items finished, {} file problem(s)",
        dir.display(),
        v.finished,
        v.expected,
        v.problems.len()
    );
    if !v.problems.is_empty() {
        return Err(Error::Failed(format!(
            "{} file(s) missing or changed",
            v.problems.len()
        )));
    }
    if v.finished < v.expected {
        return Err(Error::Failed(format!(
            "{} item(s) not made yet: run dxr generate again to finish",
            v.expected - v.finished
        )));
    }
    Ok(())
}

pub fn run(a: &GenerateArgs) -> Result<()> {
    if let Some(dir) = &a.verify {
        return verify(dir);
    }
    let (cts, out) = (
        a.cts.as_ref().expect("required"),
        a.out.as_ref().expect("required"),
    );
    if let Some(t) = a.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t.max(1))
            .build_global()
            .map_err(|e| Error::Usage(format!("--threads {t}: {e}")))?;
    }
    if !(0.0..1.0).contains(&a.validation) {
        return Err(Error::Usage(format!(
            "--validation {} must be in [0, 1)",
            a.validation
        )));
    }
    let render = a.view.render_settings(a.views, a.prep.prep())?;
    render.validate()?;
    let manifest = Manifest::read(cts, &render)?;
    if !manifest.bad.is_empty() {
        let list = manifest.describe_bad();
        if !a.skip_bad {
            return Err(Error::Drr(format!(
                "{} bad manifest entr{} (nothing rendered; fix them or pass --skip-bad):\n{list}",
                manifest.bad.len(),
                if manifest.bad.len() == 1 { "y" } else { "ies" }
            )));
        }
        eprintln!("left out ({}):\n{list}", manifest.bad.len());
    }
    // 1. the restoration, when asked for: the model is read before anything is rendered
    let restore_parts = if a.restore {
        a.sampler.parse::<SamplerKind>()?;
        let choice = a.restore_device.parse::<DeviceChoice>()?;
        let mut budget = choice.budget();
        if let Some(mib) = a.memory_mib {
            budget = budget.with_total_mib(mib)?;
        }
        let dev = device::open(choice)?;
        let weights = a
            .weights
            .clone()
            .unwrap_or_else(crate::common::default_model);
        let bytes = std::fs::read(&weights).map_err(|e| Error::io(&weights, e))?;
        let restorer = Restorer::new(crate::common::read_model(&weights, None, &dev)?)?;
        let curve = crate::common::tone_curve(&restorer, a.tone, &weights)?.map(|t| (t, a.tone));
        let sampler = crate::common::sampler_settings(&restorer, &a.sampler, a.steps, a.eta)?;
        let steps = sampler.steps;
        let rs = RestoreSettings {
            model: weights
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            model_sha256: dxr::factory::journal::sha256_hex(&bytes),
            sampler: a.sampler.to_ascii_lowercase(),
            steps,
            eta: a.eta,
            device: choice.name().to_string(),
            memory_mib: budget.total >> 20,
            tone: a.tone,
        };
        Some((restorer, sampler, dev, budget, curve, rs))
    } else {
        None
    };
    let renderer_kind = match a.device.as_str() {
        "auto" => {
            if dxr::drr::gpu::gpu_available() {
                "gpu"
            } else {
                "cpu"
            }
        }
        "wgpu" => "gpu",
        other => other,
    }
    .to_string();
    let settings = GenerateSettings {
        seed: a.seed,
        render,
        renderer: renderer_kind.clone(),
        restore: restore_parts.as_ref().map(|p| p.5.clone()),
        split: SplitSettings {
            validation: a.validation,
            seed: a.split_seed.unwrap_or(a.seed),
        },
        cts: manifest.entries.iter().map(|e| e.spec.clone()).collect(),
    };
    let items: usize = manifest.entries.iter().map(|e| e.render.views).sum();
    if a.dry_run {
        println!("| id | CT | mask | views | from |\n|---|---|---|---|---|");
        for e in &manifest.entries {
            println!(
                "| {} | {} | {} | {} | {} |",
                e.spec.id,
                manifest.resolve(&e.spec.ct).display(),
                e.spec
                    .mask
                    .as_deref()
                    .map_or("–".into(), |m| manifest.resolve(m).display().to_string()),
                e.render.views,
                e.origin
            );
        }
        let r = a.shard.range(items);
        println!(
            "{} CT(s), {items} item(s); shard {} makes items {}..{} ({})",
            manifest.entries.len(),
            a.shard,
            r.start,
            r.end,
            r.len()
        );
        return Ok(());
    }
    let device_flag = if renderer_kind == "gpu" && a.device == "auto" {
        "gpu".to_string()
    } else {
        a.device.clone()
    };
    let make_renderer = move |scene: &dxr::drr::Scene| renderer(&device_flag, scene);
    let restore = restore_parts
        .as_ref()
        .map(|(restorer, sampler, dev, budget, curve, _)| Restoration {
            restorer,
            sampler: sampler.clone(),
            device: dev.clone(),
            opts: RestoreOptions::new(*budget),
            tone: curve.clone(),
            tone_strength: a.tone,
        });
    let job = Job {
        manifest: &manifest,
        settings,
        shard: a.shard,
        out: out.clone(),
        restore,
        renderer: &make_renderer,
        skip_bad: a.skip_bad,
    };
    let cancel = crate::common::cancel_on_ctrl_c();
    let bar = crate::common::progress_bar(0, "items");
    let t0 = Instant::now();
    let sum = factory::generate(&job, &mut |p| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
        if let Some((s, n)) = p.step {
            bar.set_message(format!("restoring, step {s}/{n}"));
        }
        !cancel.load(Ordering::SeqCst)
    })?;
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    let st = sum.stages;
    eprintln!(
        "{} item(s) made, {} already done, {} in this run's part; {:.1} s ({:.2} items/s); load CT {:.1} s, render {:.1} s, restore {:.1} s, write {:.1} s",
        sum.made,
        sum.already,
        sum.total,
        secs,
        sum.made as f64 / secs.max(1e-9),
        st.load.as_secs_f64(),
        st.render.as_secs_f64(),
        st.restore.as_secs_f64(),
        st.write.as_secs_f64()
    );
    for (id, why) in &sum.skipped {
        eprintln!("left out CT {id}: {why}");
    }
    if sum.cancelled {
        eprintln!("stopped: finished items are kept; run the same command again to go on");
        return Err(Error::Cancelled);
    }
    println!("dataset {} is complete", out.display());
    Ok(())
}
