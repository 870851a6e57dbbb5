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

pub mod journal;
pub mod labels;
pub mod manifest;
pub mod settings;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::prelude::Device;
use serde::{Deserialize, Serialize};

use crate::diffusion::sampler::{SamplerSettings, SeededNoise};
use crate::drr::dataset::{Renderer, display, lung_fields, lung_volume, render_view};
use crate::drr::{Scene, load_scene};
use crate::io::{BitDepth, GrayImage, InputScale, encode_png, with_png_text, write_atomic};
use crate::restore::{RestoreOptions, RestorePlan, Restorer};
use crate::spec::ToneSpec;
use crate::{Error, Result};
use journal::{Journal, Line, check_files, sha256_hex};
use labels::{ItemLabel, SetInfo, write_set_files};
pub use manifest::Manifest;
pub use settings::{GenerateSettings, RenderSettings, Shard, item_name, item_seed};

/// What `DATASET/generate.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetFile {
    pub format: String,
    pub shard: Shard,
    pub settings: GenerateSettings,
    /// Manifest entries refused before generating (`--skip-bad`), as `origin: problem`.
    #[serde(default)]
    pub refused: Vec<String>,
}

const FORMAT: &str = "dxr-generate/1";
const SETTINGS_FILE: &str = "generate.json";

impl DatasetFile {
    /// Reads `dir/generate.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(SETTINGS_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let f: Self = serde_json::from_str(&text)
            .map_err(|e| Error::Drr(format!("{}: not a dxr dataset ({e})", path.display())))?;
        if f.format != FORMAT {
            return Err(Error::Drr(format!(
                "{}: format {:?}, this dxr reads {FORMAT:?}",
                path.display(),
                f.format
            )));
        }
        Ok(f)
    }

    /// Every item of the dataset in manifest order: (CT index, view).
    pub fn all_items(&self) -> Result<Vec<(usize, usize)>> {
        let mut out = Vec::new();
        for (c, ct) in self.settings.cts.iter().enumerate() {
            let views = self.settings.render.with_overrides(&ct.overrides)?.views;
            out.extend((0..views).map(|v| (c, v)));
        }
        Ok(out)
    }

    /// The names of this file's shard's items, in order.
    pub fn shard_items(&self) -> Result<Vec<(usize, usize)>> {
        let all = self.all_items()?;
        Ok(all[self.shard.range(all.len())].to_vec())
    }
}

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

/// Checks `dir/generate.json` against the job's (writing it for a new dataset).
fn claim(dir: &Path, file: &DatasetFile) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    match DatasetFile::read(dir) {
        Ok(old) => {
            let diffs = old.settings.differences(&file.settings);
            if !diffs.is_empty() {
                return Err(Error::Drr(format!(
                    "{} was made with other settings; use another --out, or the same settings to resume. Differences (was → now):\n  {}",
                    dir.display(),
                    diffs.join("\n  ")
                )));
            }
            if old.shard != file.shard {
                return Err(Error::Drr(format!(
                    "{} holds shard {}, not {}",
                    dir.display(),
                    old.shard,
                    file.shard
                )));
            }
            Ok(())
        }
        Err(_) if !dir.join(SETTINGS_FILE).exists() => {
            let busy = std::fs::read_dir(dir)
                .map_err(|e| Error::io(dir, e))?
                .next()
                .is_some();
            if busy {
                return Err(Error::Drr(format!(
                    "{} holds files but is not a dxr dataset: give a new or empty folder",
                    dir.display()
                )));
            }
            let mut b = serde_json::to_vec_pretty(file).expect("serialisable");
            b.push(b'\n');
            write_atomic(&dir.join(SETTINGS_FILE), &b)
        }
        Err(e) => Err(e),
    }
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
    let [w, h] = set.geometry.pixels;
    let v = render_view(scene, Some(lungs), renderer, &set, 0)?;
    let fields = lung_fields(lung, &v.projection);
    let drr_png = encode_png(
        &display(&v.with_nodules, [w, h], v.window),
        BitDepth::Sixteen,
    )?;
    let clean_png = encode_png(&display(&v.clean, [w, h], v.window), BitDepth::Sixteen)?;
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
            * (set.geometry.detector_mm[0] / w as f64 + set.geometry.detector_mm[1] / h as f64),
        geometry: set.geometry,
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

/// Writes the set files of `file`'s shard from the journal's items, in manifest order.
fn write_sets(dir: &Path, file: &DatasetFile, journal: &Journal) -> Result<()> {
    let done = journal.items();
    let skipped = journal.skipped();
    let mut items = Vec::new();
    for (c, v) in file.shard_items()? {
        let ct = &file.settings.cts[c].id;
        if skipped.contains_key(ct.as_str()) {
            continue;
        }
        let name = item_name(ct, v);
        if !done.contains_key(name.as_str()) {
            return Err(Error::Drr(format!(
                "item {name} is not finished: run dxr generate again to complete the dataset"
            )));
        }
        let path = dir.join(format!("items/{ct}/{name}.json"));
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        items
            .push(serde_json::from_str::<ItemLabel>(&text).map_err(|e| {
                Error::Drr(format!("{}: damaged item label ({e})", path.display()))
            })?);
    }
    let info = SetInfo {
        settings: &file.settings,
        skipped: skipped
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        refused: &file.refused,
    };
    write_set_files(dir, &items, &info)
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default)]
pub struct Verified {
    /// Items of the dataset's shard, and how many the journal holds.
    pub expected: usize,
    pub finished: usize,
    /// Files missing or changed since the journal recorded them.
    pub problems: Vec<String>,
}

/// Checks every file of every finished item against the journal.
pub fn verify(dir: &Path) -> Result<Verified> {
    let file = DatasetFile::read(dir)?;
    let journal = Journal::open(dir)?;
    let done = journal.items();
    let skipped = journal.skipped();
    let mut out = Verified::default();
    for (c, v) in file.shard_items()? {
        let ct = &file.settings.cts[c].id;
        if skipped.contains_key(ct.as_str()) {
            continue;
        }
        out.expected += 1;
        if let Some(files) = done.get(item_name(ct, v).as_str()) {
            out.finished += 1;
            out.problems.extend(check_files(dir, files));
        }
    }
    Ok(out)
}

/// Joins finished shards of one dataset into `out` (new or empty): the items, a journal in
/// manifest order and the set files, byte-identical to what one unsharded run writes.
pub fn merge(shards: &[PathBuf], out: &Path) -> Result<usize> {
    let files: Vec<DatasetFile> = shards
        .iter()
        .map(|d| DatasetFile::read(d))
        .collect::<Result<_>>()?;
    let first = files
        .first()
        .ok_or_else(|| Error::Drr("merge needs at least one shard folder".into()))?;
    let n = first.shard.count;
    let mut seen = vec![None; n];
    for (f, dir) in files.iter().zip(shards) {
        let diffs = first.settings.differences(&f.settings);
        if !diffs.is_empty() {
            return Err(Error::Drr(format!(
                "{} was made with other settings than {}:\n  {}",
                dir.display(),
                shards[0].display(),
                diffs.join("\n  ")
            )));
        }
        if f.shard.count != n {
            return Err(Error::Drr(format!(
                "{} is shard {} but {} is one of {n}",
                dir.display(),
                f.shard,
                shards[0].display()
            )));
        }
        if let Some(other) = seen[f.shard.index].replace(dir) {
            return Err(Error::Drr(format!(
                "{} and {} are both shard {}",
                other.display(),
                dir.display(),
                f.shard
            )));
        }
    }
    if let Some(missing) = seen.iter().position(Option::is_none) {
        return Err(Error::Drr(format!(
            "shard {missing}/{n} is missing: give every shard's folder"
        )));
    }
    if out.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        return Err(Error::Drr(format!(
            "{} is not empty: merge into a new folder",
            out.display()
        )));
    }
    // every shard finished and intact
    for (f, dir) in files.iter().zip(shards) {
        let v = verify(dir)?;
        if v.finished < v.expected || !v.problems.is_empty() {
            return Err(Error::Drr(format!(
                "shard {} ({}) is not finished or not intact: {} of {} items done{}; run it again (or `dxr generate --verify`)",
                f.shard,
                dir.display(),
                v.finished,
                v.expected,
                v.problems
                    .first()
                    .map(|p| format!(", {p}"))
                    .unwrap_or_default()
            )));
        }
    }
    let journals: Vec<Journal> = shards
        .iter()
        .map(|d| Journal::open(d))
        .collect::<Result<_>>()?;
    let whole = DatasetFile {
        shard: Shard::WHOLE,
        ..first.clone()
    };
    claim(out, &whole)?;
    let mut journal = Journal::open(out)?;
    // the lines in the order one run writes them: manifest order, a skipped CT where its first
    // item would be
    let mut lines: BTreeMap<usize, Line> = BTreeMap::new();
    let all = whole.all_items()?;
    let position: BTreeMap<String, usize> = all
        .iter()
        .enumerate()
        .map(|(k, &(c, v))| (item_name(&whole.settings.cts[c].id, v), k))
        .collect();
    let first_of_ct = |id: &str| {
        all.iter()
            .position(|&(c, _)| whole.settings.cts[c].id == id)
            .unwrap_or(usize::MAX)
    };
    let mut skipped_seen = std::collections::BTreeSet::new();
    for (j, dir) in journals.iter().zip(shards) {
        for line in &j.lines {
            match line {
                Line::Item { item, files } => {
                    for rel in files.keys() {
                        let bytes = std::fs::read(dir.join(rel))
                            .map_err(|e| Error::io(dir.join(rel), e))?;
                        let path = out.join(rel);
                        if let Some(p) = path.parent() {
                            std::fs::create_dir_all(p).map_err(|e| Error::io(p, e))?;
                        }
                        write_atomic(&path, &bytes)?;
                    }
                    let at = position.get(item).copied().unwrap_or(usize::MAX);
                    lines.insert(at, line.clone());
                }
                Line::Skipped { skipped, .. } => {
                    // a CT split over two shards is skipped by both: keep one line
                    if skipped_seen.insert(skipped.clone()) {
                        lines.insert(first_of_ct(skipped), line.clone());
                    }
                }
            }
        }
    }
    let count = lines.len();
    for (_, l) in lines {
        journal.append(l)?;
    }
    write_sets(out, &whole, &journal)?;
    Ok(count)
}
