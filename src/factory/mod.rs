//! The dataset factory (`dxr generate`): many CTs in, a labelled (and restored) training set out.
//!
//! An item is (CT id, view index); its seed is a hash of (dataset seed, CT id, view), so an item
//! is the same bytes on any run, shard count and machine (for one backend). A run goes CT by CT
//! (one CT resident): load → render each view → restore it (optional) → write its files, each
//! atomically → append the item to the journal. A run on an existing dataset with the same
//! settings skips what the journal holds; other settings are refused by name. `--shard I/N`
//! makes a contiguous block of the items, and [`merge`] joins the shards into the dataset one
//! run would have made. The set files (COCO, MONAI, YOLO, split, card) are written from the
//! items' labels once every item of the run is done.

mod dataset;
pub mod journal;
pub mod labels;
pub mod manifest;
mod merge;
pub mod settings;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use burn::prelude::Device;

use crate::diffusion::sampler::{SamplerSettings, SeededNoise};
use crate::drr::dataset::{Renderer, display, lung_fields, lung_volume, render_view};
use crate::drr::{Scene, load_scene};
use crate::io::{BitDepth, GrayImage, InputScale, encode_png, with_png_text, write_atomic};
use crate::restore::{RestoreOptions, RestorePlan, Restorer};
use crate::spec::ToneSpec;
use crate::{Error, Result};
pub use dataset::DatasetFile;
use dataset::{FORMAT, claim, write_sets};
use journal::{Journal, Line, sha256_hex};
use labels::ItemLabel;
pub use manifest::Manifest;
pub use merge::{Verified, merge, verify};
pub use settings::{GenerateSettings, RenderSettings, Shard, item_name, item_seed};

/// How items are restored.
pub struct Restoration<'a> {
    pub restorer: &'a Restorer,
    pub sampler: SamplerSettings,
    pub device: Device,
    pub opts: RestoreOptions,
    /// The model's tone curve and its strength (> 0), when asked for.
    pub tone: Option<(ToneSpec, f32)>,
    /// The strength recorded in the PNGs (as `dxr restore` records it).
    pub tone_strength: f32,
}

/// One run of the factory.
pub struct Job<'a> {
    pub manifest: &'a Manifest,
    pub settings: GenerateSettings,
    pub shard: Shard,
    pub out: PathBuf,
    pub restore: Option<Restoration<'a>>,
    /// The projector for a loaded CT (the CPU, or a GPU holding the CT).
    pub renderer: &'a dyn Fn(&Scene) -> Result<Renderer>,
    /// Leave out (and list) CTs that cannot be read instead of stopping.
    pub skip_bad: bool,
}

/// Time spent per stage.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    pub load: Duration,
    pub render: Duration,
    pub restore: Duration,
    pub write: Duration,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Items of this run (its shard) and how many were already done before it started.
    pub total: usize,
    pub already: usize,
    /// Items made by this run.
    pub made: usize,
    /// CTs left out (id, why).
    pub skipped: Vec<(String, String)>,
    pub cancelled: bool,
    pub stages: StageTimes,
}

/// Progress of a run: items done of the total, and the restoration's step within the current
/// item when there is one. The callback returns false to stop (the run ends cleanly).
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
    pub step: Option<(usize, usize)>,
}

/// Runs `job`: makes every item of its shard that the journal does not hold, then the set files.
pub fn generate(job: &Job, progress: &mut dyn FnMut(Progress) -> bool) -> Result<Summary> {
    let file = DatasetFile {
        format: FORMAT.into(),
        shard: job.shard,
        settings: job.settings.clone(),
        refused: job
            .manifest
            .bad
            .iter()
            .map(|b| format!("{}: {}", b.origin, b.problem))
            .collect(),
    };
    claim(&job.out, &file)?;
    let mut journal = Journal::open(&job.out)?;
    let items = file.shard_items()?;
    let done: std::collections::BTreeSet<String> =
        journal.items().keys().map(|s| s.to_string()).collect();
    let mut skipped: BTreeMap<String, String> = journal
        .skipped()
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let cts = &job.settings.cts;
    let name = |(c, v): (usize, usize)| item_name(&cts[c].id, v);
    let mut sum = Summary {
        total: items.len(),
        already: items
            .iter()
            .filter(|&&i| done.contains(&name(i)) || skipped.contains_key(&cts[i.0].id))
            .count(),
        ..Default::default()
    };
    let mut count = sum.already;
    if !progress(Progress {
        done: count,
        total: sum.total,
        step: None,
    }) {
        sum.cancelled = true;
        return Ok(sum);
    }
    // CT by CT, in manifest order
    let mut k = 0;
    while k < items.len() {
        let c = items[k].0;
        let end = k + items[k..].iter().take_while(|i| i.0 == c).count();
        let todo: Vec<usize> = items[k..end]
            .iter()
            .map(|i| i.1)
            .filter(|&v| !done.contains(&item_name(&cts[c].id, v)))
            .collect();
        k = end;
        if todo.is_empty() || skipped.contains_key(&cts[c].id) {
            continue;
        }
        let entry = job
            .manifest
            .entries
            .iter()
            .find(|e| e.spec.id == cts[c].id)
            .ok_or_else(|| Error::Drr(format!("CT {} is not in the manifest", cts[c].id)))?;
        let t = Instant::now();
        let loaded = load_scene(
            &job.manifest.resolve(&entry.spec.ct),
            entry
                .spec
                .mask
                .as_deref()
                .map(|m| job.manifest.resolve(m))
                .as_deref(),
            &entry.render.prep,
        )
        .and_then(|(scene, lungs)| {
            let lung = lung_volume(&scene, &lungs)?;
            let renderer = (job.renderer)(&scene)?;
            Ok((scene, lungs, lung, renderer))
        });
        sum.stages.load += t.elapsed();
        let (scene, lungs, lung, renderer) = match loaded {
            Ok(x) => x,
            Err(e) if job.skip_bad => {
                let why = format!("{}: {e}", entry.origin);
                journal.append(Line::Skipped {
                    skipped: entry.spec.id.clone(),
                    error: why.clone(),
                })?;
                skipped.insert(entry.spec.id.clone(), why);
                count += todo.len();
                continue;
            }
            Err(e) => {
                return Err(Error::Drr(format!(
                    "CT {} ({}): {e}",
                    entry.spec.id, entry.origin
                )));
            }
        };
        // views are rendered one by one and restored in batches of what one network call
        // takes (render only: one at a time), then written and journalled in order
        let mut pending: Vec<Rendered> = Vec::new();
        let mut cap = None;
        let last = *todo.last().expect("not empty");
        for view in todo {
            let t = Instant::now();
            pending.push(render_item(
                job,
                &entry.spec.id,
                &entry.render,
                view,
                (&scene, &lungs, &lung, &renderer),
            )?);
            sum.stages.render += t.elapsed();
            let cap = match (cap, &job.restore) {
                (Some(c), _) => c,
                (None, Some(r)) => {
                    let plan = r
                        .restorer
                        .plan(&pending[0].input, &restore_opts(r, &pending[0]))?;
                    *cap.insert(r.restorer.batch_size(&plan, &r.opts.budget))
                }
                (None, None) => 1,
            };
            if pending.len() < cap && view != last {
                continue;
            }
            let batch = std::mem::take(&mut pending);
            let made = finish_items(job, batch, &mut sum.stages, &mut |step| {
                progress(Progress {
                    done: count,
                    total: sum.total,
                    step: Some(step),
                })
            });
            let made = match made {
                Ok(f) => f,
                Err(Error::Cancelled) => {
                    sum.cancelled = true;
                    return Ok(sum);
                }
                Err(e) => return Err(e),
            };
            for (item, files) in made {
                journal.append(Line::Item { item, files })?;
                sum.made += 1;
                count += 1;
            }
            if !progress(Progress {
                done: count,
                total: sum.total,
                step: None,
            }) && count < sum.total
            {
                sum.cancelled = true;
                return Ok(sum);
            }
        }
    }
    sum.skipped = skipped.into_iter().collect();
    let t = Instant::now();
    write_sets(&job.out, &file, &journal)?;
    sum.stages.write += t.elapsed();
    Ok(sum)
}

/// A rendered item waiting for its restoration and its files.
struct Rendered {
    name: String,
    label: ItemLabel,
    /// The DRR as its PNG holds it (what `dxr restore` would read from that file).
    input: GrayImage,
    drr_png: Vec<u8>,
    clean_png: Vec<u8>,
    lungs_png: Vec<u8>,
}

/// The options `dxr restore --pixel-mm <the DRR's pitch>` uses.
fn restore_opts(r: &Restoration, item: &Rendered) -> RestoreOptions {
    let mut opts = r.opts.clone();
    opts.input_scale = InputScale::known(item.label.pixel_mm, "DRR label");
    opts
}

/// Renders view `view` of CT `id` and encodes its images; the label says where each goes.
fn render_item(
    job: &Job,
    id: &str,
    render: &RenderSettings,
    view: usize,
    (scene, lungs, lung, renderer): (
        &Scene,
        &crate::drr::nodule::LungRegion,
        &crate::drr::MuVolume,
        &Renderer,
    ),
) -> Result<Rendered> {
    let name = item_name(id, view);
    let seed = item_seed(job.settings.seed, id, view);
    let set = render.set_settings(1, seed, 0);
    let [w, h] = set.view.geometry.pixels;
    let v = render_view(scene, Some(lungs), renderer, &set, 0)?;
    let fields = lung_fields(lung, &v.projection);
    let drr_png = encode_png(
        &display(&v.with_nodules, crate::spec::Size::new(w, h), v.window),
        BitDepth::Sixteen,
    )?;
    let clean_png = encode_png(
        &display(&v.clean, crate::spec::Size::new(w, h), v.window),
        BitDepth::Sixteen,
    )?;
    let mask = GrayImage {
        width: w,
        height: h,
        data: fields.iter().map(|&f| if f { 1.0 } else { 0.0 }).collect(),
    };
    let rel = |d: &str, ext: &str| format!("{d}/{id}/{name}.{ext}");
    let restored = job.restore.is_some();
    let label = ItemLabel {
        item: name.clone(),
        ct: id.to_string(),
        view,
        seed,
        image: rel("images", "png"),
        drr: restored.then(|| rel("drr", "png")),
        clean: rel("clean", "png"),
        lungs: rel("lungs", "png"),
        yolo: rel("labels", "txt"),
        width: w,
        height: h,
        pixel_mm: 0.5
            * (set.view.geometry.detector_mm[0] / w as f64
                + set.view.geometry.detector_mm[1] / h as f64),
        geometry: set.view.geometry,
        pose: v.pose,
        window: v.window,
        restoration: None,
        nodules: v.labels,
    };
    Ok(Rendered {
        name,
        label,
        input: crate::io::decode(&drr_png)?,
        drr_png,
        clean_png,
        lungs_png: encode_png(&mask, BitDepth::Eight)?,
    })
}

/// Restores `batch` (one network batch) when the job restores, then writes each item's files,
/// each atomically, the label last; returns each item's files with their SHA-256.
fn finish_items(
    job: &Job,
    batch: Vec<Rendered>,
    times: &mut StageTimes,
    step: &mut dyn FnMut((usize, usize)) -> bool,
) -> Result<Vec<(String, BTreeMap<String, String>)>> {
    // 1. restore, each item with its own seed's noise, items of one plan (size and scale: the
    // scale is estimated per view) in one network batch
    let mut restored: Vec<Option<(Vec<u8>, String)>> = vec![None; batch.len()];
    if let Some(r) = &job.restore {
        let t = Instant::now();
        let opts = restore_opts(r, &batch[0]);
        let mut groups: Vec<(RestorePlan, Vec<usize>)> = Vec::new();
        for (k, b) in batch.iter().enumerate() {
            let plan = r.restorer.plan(&b.input, &opts)?;
            let same = |p: &RestorePlan| {
                p.model == plan.model && p.grid == plan.grid && p.input == plan.input
            };
            match groups.iter_mut().find(|(p, _)| same(p)) {
                Some((_, members)) => members.push(k),
                None => groups.push((plan, vec![k])),
            }
        }
        let total = r.sampler.steps;
        for (_, members) in groups {
            let inputs: Vec<GrayImage> = members.iter().map(|&k| batch[k].input.clone()).collect();
            let noises = members
                .iter()
                .map(|&k| SeededNoise::new(batch[k].label.seed))
                .collect();
            let out = r.restorer.restore_batch(
                &inputs,
                &opts,
                &r.sampler,
                noises,
                &r.device,
                &mut |info| {
                    if step((info.step.min(total), total)) {
                        ControlFlow::Continue(())
                    } else {
                        ControlFlow::Break(())
                    }
                },
            )?;
            for (&k, res) in members.iter().zip(out) {
                let mut image = res.image;
                if let Some((curve, s)) = &r.tone {
                    curve.apply(&mut image.data, *s);
                }
                let png = with_png_text(
                    &encode_png(&image, BitDepth::Sixteen)?,
                    "dxr:tone",
                    &format!("{}", r.tone_strength),
                )?;
                restored[k] = Some((png, res.plan.describe()));
            }
        }
        times.restore += t.elapsed();
    }
    // 2. write
    let t = Instant::now();
    let mut done = Vec::with_capacity(batch.len());
    for (item, restored) in batch.into_iter().zip(restored) {
        let mut label = item.label;
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        match restored {
            Some((png, how)) => {
                label.restoration = Some(how);
                files.push((label.image.clone(), png));
                files.push((label.drr.clone().expect("restored"), item.drr_png));
            }
            None => files.push((label.image.clone(), item.drr_png)),
        }
        files.push((label.clean.clone(), item.clean_png));
        files.push((label.lungs.clone(), item.lungs_png));
        files.push((label.yolo.clone(), label.yolo_text().into_bytes()));
        let mut json = serde_json::to_vec_pretty(&label).expect("serialisable");
        json.push(b'\n');
        let ct = &label.ct;
        files.push((format!("items/{ct}/{}.json", item.name), json));
        let mut out = BTreeMap::new();
        for (rel, bytes) in &files {
            let path = job.out.join(rel);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            write_atomic(&path, bytes)?;
            out.insert(rel.clone(), sha256_hex(bytes));
        }
        done.push((item.name, out));
    }
    times.write += t.elapsed();
    Ok(done)
}
