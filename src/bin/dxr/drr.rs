//! `dxr drr`, `dxr drr-bench` and `dxr ct-to-dicom`: labelled DRR sets from a chest CT, their
//! speed, and a CT written as a DICOM series.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use clap::Args;

use dxr::drr::dataset::{self, Renderer, SetSettings, ViewSettings, Window};
use dxr::drr::gpu::{AdapterChoice, GpuProjector};
use dxr::drr::nodule::LungRegion;
use dxr::drr::project::{MARCH_STEP_FRACTION, render_march};
use dxr::drr::{
    Geometry, NoduleSettings, Pose, Prep, Projection, Scene, Shape, View, load_scene, read_volume,
};
use dxr::factory::RenderSettings;
use dxr::{Error, Result};

/// How a CT is prepared (`dxr drr` and `dxr generate`).
#[derive(Args, Clone)]
pub struct PrepArgs {
    /// Attenuation of water (1/mm): μ = μ_water·(1 + HU/1000), air clamped to 0.
    #[arg(long, default_value_t = dxr::drr::MU_WATER_PER_MM)]
    mu_water: f64,
    /// Keep the scanner table and everything outside the body.
    #[arg(long)]
    keep_table: bool,
    /// Keep contrast agent (by default: mask labels 51–68, or HU > --contrast-hu without a
    /// mask, become soft tissue).
    #[arg(long)]
    keep_contrast: bool,
    /// Without a mask, voxels above this HU count as contrast agent.
    #[arg(long, default_value_t = 1500.0)]
    contrast_hu: f32,
}

impl PrepArgs {
    pub fn prep(&self) -> Prep {
        Prep {
            mu_water: self.mu_water,
            keep_table: self.keep_table,
            keep_contrast: self.keep_contrast,
            contrast_hu: self.contrast_hu,
        }
    }
}

/// The CT and how it is prepared.
#[derive(Args, Clone)]
pub struct CtArgs {
    /// Chest CT: NIfTI file (.nii, .nii.gz) or a folder holding one DICOM series.
    #[arg(long)]
    ct: PathBuf,
    /// Label map on the CT's grid (NIfTI): lobes 10–14 place nodules, 51–68 are contrast-filled
    /// heart and vessels. Without it, nodules go into aerated lung found by threshold.
    #[arg(long)]
    mask: Option<PathBuf>,
    #[command(flatten)]
    prep: PrepArgs,
}

impl CtArgs {
    fn load(&self) -> Result<(Scene, Option<LungRegion>)> {
        let (scene, lungs) = load_scene(&self.ct, self.mask.as_deref(), &self.prep.prep())?;
        Ok((scene, Some(lungs)))
    }
}

/// How views are drawn and rendered (`dxr drr` and `dxr generate`).
#[derive(Args, Clone)]
pub struct ViewArgs {
    /// Detector pixels per side (256, 512, 1024, …).
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Nodules per view.
    #[arg(long, default_value_t = 0)]
    nodules: usize,
    /// pa or ap.
    #[arg(long, default_value = "pa")]
    view: String,
    /// Source → detector distance (mm).
    #[arg(long, default_value_t = 1800.0)]
    sdd: f64,
    /// Source → isocentre distance (mm).
    #[arg(long, default_value_t = 1650.0)]
    sid: f64,
    /// Detector side (mm).
    #[arg(long, default_value_t = 400.0)]
    detector_mm: f64,
    /// Base rotation about x,y,z (degrees).
    #[arg(long, default_value = "0,0,0", value_parser = triple)]
    rotation: [f64; 3],
    /// Base shift along x,y,z (mm).
    #[arg(long, default_value = "0,0,0", value_parser = triple)]
    shift: [f64; 3],
    /// Per-view rotation jitter: uniform ± degrees about x,y,z.
    #[arg(long, default_value = "3,3,3", value_parser = triple)]
    rotation_jitter: [f64; 3],
    /// Per-view shift jitter: uniform ± mm along x,y,z.
    #[arg(long, default_value = "10,10,10", value_parser = triple)]
    shift_jitter: [f64; 3],
    /// Nodule radius range (mm), MIN:MAX.
    #[arg(long, default_value = "3:15", value_parser = range)]
    nodule_radius: [f64; 2],
    /// Nodule density range (HU), MIN:MAX.
    #[arg(long, default_value = "20:100", value_parser = range)]
    nodule_hu: [f64; 2],
    /// sphere, lobulated or mixed.
    #[arg(long, default_value = "mixed")]
    nodule_shape: String,
    /// Soft-edge width (mm).
    #[arg(long, default_value_t = 2.0)]
    nodule_edge: f64,
    /// Clearance from the lobe boundary (mm).
    #[arg(long, default_value_t = 3.0)]
    nodule_margin: f64,
    /// auto (per view, percentiles 1–99.8 of the body) or LOW:HIGH line integrals.
    #[arg(long, default_value = "auto")]
    window: String,
}

#[derive(Args)]
pub struct DrrArgs {
    #[command(flatten)]
    ct: CtArgs,
    #[command(flatten)]
    views: ViewArgs,
    /// Output folder: png16/, png8/, clean/, raw/, labels/, coco.json, meta.json.
    #[arg(long)]
    out: PathBuf,
    /// Number of views.
    #[arg(long, default_value_t = 1)]
    count: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Index of the first view: sets with disjoint index ranges draw disjoint poses and nodules.
    #[arg(long, default_value_t = 0)]
    first_index: usize,
    /// Also write the line integrals as float32 .npy files.
    #[arg(long)]
    raw: bool,
    /// Write contact_sheet.png with this many views (with and without nodules, boxes drawn).
    #[arg(long, default_value_t = 0)]
    contact_sheet: usize,
    /// auto (a GPU when one exists, else the CPU), cpu, gpu, or wgpu (any wgpu adapter, a
    /// software one included).
    #[arg(long, default_value = "auto")]
    device: String,
}

pub fn triple(s: &str) -> std::result::Result<[f64; 3], String> {
    let v: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("{s:?}: {e}"))?;
    <[f64; 3]>::try_from(v).map_err(|_| format!("{s:?}: expected three numbers X,Y,Z"))
}

pub fn range(s: &str) -> std::result::Result<[f64; 2], String> {
    let (a, b) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: expected MIN:MAX"))?;
    let p = |x: &str| x.trim().parse::<f64>().map_err(|e| format!("{s:?}: {e}"));
    Ok([p(a)?, p(b)?])
}

pub fn renderer(device: &str, scene: &Scene) -> Result<Renderer> {
    let gpu = |choice| GpuProjector::new(&scene.mu, choice).map(|g| Renderer::Gpu(Box::new(g)));
    match device {
        "cpu" => Ok(Renderer::Cpu),
        "gpu" => gpu(AdapterChoice::GpuOnly),
        "wgpu" => gpu(AdapterChoice::AnyAdapter),
        "auto" => Ok(gpu(AdapterChoice::GpuOnly).unwrap_or(Renderer::Cpu)),
        other => Err(Error::Usage(format!(
            "--device {other:?}: use auto, cpu, gpu or wgpu"
        ))),
    }
}

impl ViewArgs {
    /// The render settings these flags give, with `views` views per CT and `prep`.
    pub fn render_settings(&self, views: usize, prep: Prep) -> Result<RenderSettings> {
        let a = self;
        let view = match a.view.to_ascii_lowercase().as_str() {
            "pa" => View::Pa,
            "ap" => View::Ap,
            v => return Err(Error::Usage(format!("--view {v:?}: use pa or ap"))),
        };
        let shape = match a.nodule_shape.as_str() {
            "sphere" => Shape::Sphere,
            "lobulated" => Shape::Lobulated,
            "mixed" => Shape::Mixed,
            s => {
                return Err(Error::Usage(format!(
                    "--nodule-shape {s:?}: use sphere, lobulated or mixed"
                )));
            }
        };
        let window = if a.window == "auto" {
            Window::default()
        } else {
            let [low, high] =
                range(&a.window).map_err(|e| Error::Usage(format!("--window {e}")))?;
            if !(high > low) {
                return Err(Error::Usage(format!(
                    "--window {low}:{high}: HIGH must exceed LOW"
                )));
            }
            Window::Fixed { low, high }
        };
        let view_settings = ViewSettings {
            geometry: Geometry {
                sdd: a.sdd,
                sid: a.sid,
                detector_mm: [a.detector_mm; 2],
                pixels: [a.size; 2],
                view,
            },
            pose: Pose {
                rotation_deg: a.rotation,
                translation_mm: a.shift,
            },
            rotation_jitter_deg: a.rotation_jitter.map(f64::abs),
            translation_jitter_mm: a.shift_jitter.map(f64::abs),
            nodules: a.nodules,
            nodule: NoduleSettings {
                radius_mm: a.nodule_radius,
                hu: a.nodule_hu,
                shape,
                edge_mm: a.nodule_edge,
                margin_mm: a.nodule_margin,
            },
            window,
        };
        let s = RenderSettings {
            views,
            view: view_settings,
            prep,
        };
        s.view.geometry.validate()?;
        s.view.nodule.validate()?;
        Ok(s)
    }
}

fn settings(a: &DrrArgs) -> Result<SetSettings> {
    if a.count == 0 {
        return Err(Error::Usage("--count must be at least 1".into()));
    }
    let r = a.views.render_settings(1, a.ct.prep.prep())?;
    let mut s = r.set_settings(a.count, a.seed, a.first_index);
    s.raw = a.raw;
    s.contact_sheet = a.contact_sheet;
    Ok(s)
}

pub fn run(a: &DrrArgs) -> Result<()> {
    let s = settings(a)?;
    let t0 = Instant::now();
    let (scene, lungs) = a.ct.load()?;
    let renderer = renderer(&a.device, &scene)?;
    eprintln!(
        "CT {:?} voxels ready in {:.1} s; rendering {} view(s) of {}² on {}",
        scene.ct.dims,
        t0.elapsed().as_secs_f64(),
        s.count,
        a.views.size,
        renderer.name()
    );
    let cancel = crate::common::cancel_on_ctrl_c();
    let bar = crate::common::progress_bar(s.count as u64, "views");
    let t1 = Instant::now();
    let summary = dataset::write_set(
        &scene,
        lungs.as_ref(),
        &renderer,
        &s,
        &a.out,
        &mut |done, _| {
            bar.set_position(done as u64);
            !cancel.load(Ordering::SeqCst)
        },
    )?;
    bar.finish_and_clear();
    let secs = t1.elapsed().as_secs_f64();
    eprintln!(
        "wrote {} view(s) to {} in {secs:.1} s ({:.2} views/s) on {}",
        summary.written,
        a.out.display(),
        summary.written as f64 / secs,
        summary.renderer
    );
    if summary.cancelled {
        eprintln!("stopped: the finished views are complete and listed; no partial file was left");
        return Err(Error::Cancelled);
    }
    Ok(())
}

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    ct: CtArgs,
    /// Detector sizes to time.
    #[arg(long, num_args = 1.., default_values_t = [256, 512])]
    size: Vec<usize>,
    /// Timed views per method (median reported).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Nodules per view in the "pair" timing (a view with and without nodules).
    #[arg(long, default_value_t = 3)]
    nodules: usize,
    /// Also time the GPU path on a software adapter (llvmpipe) when no GPU exists.
    #[arg(long)]
    any_adapter: bool,
}

/// Median of `repeats` timings of `f` (seconds), after one warm-up.
fn median_secs(repeats: usize, mut f: impl FnMut(usize) -> Result<()>) -> Result<f64> {
    f(0)?;
    let mut t = Vec::with_capacity(repeats);
    for r in 0..repeats.max(1) {
        let t0 = Instant::now();
        f(r + 1)?;
        t.push(t0.elapsed().as_secs_f64());
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

pub fn bench(a: &BenchArgs) -> Result<()> {
    let (scene, lungs) = a.ct.load()?;
    let gpu = GpuProjector::new(
        &scene.mu,
        if a.any_adapter {
            AdapterChoice::AnyAdapter
        } else {
            AdapterChoice::GpuOnly
        },
    );
    println!(
        "DRR benchmark: CT {:?} (cropped to {:?}), {} CPU threads, median of {} after a warm-up",
        scene.ct.dims,
        scene.mu.dims,
        rayon::current_num_threads(),
        a.repeats
    );
    match &gpu {
        Ok(g) => println!("GPU: {}", g.adapter),
        Err(e) => println!("GPU: none ({e})"),
    }
    let spacing = scene.ct.spacing().into_iter().fold(f64::MAX, f64::min);
    let step = spacing * MARCH_STEP_FRACTION;
    println!("| size | method | s/DRR | DRRs/s | vs trilinear march |");
    println!("|---|---|---|---|---|");
    for &size in &a.size {
        let mut s = SetSettings::default();
        s.view.nodules = a.nodules;
        s.view.geometry.pixels = [size, size];
        let proj = |r: usize| {
            Projection::new(
                s.view.geometry,
                &dataset::draw_pose(&s, r).0,
                scene.isocentre,
            )
        };
        let march = median_secs(a.repeats.min(3), |r| {
            render_march(&scene.mu, &proj(r)?, step);
            Ok(())
        })?;
        let row = |name: &str, t: f64| {
            println!(
                "| {size}² | {name} | {t:.4} | {:.2} | {:.1}× |",
                1.0 / t,
                march / t
            )
        };
        row(
            &format!("trilinear march, step {step:.2} mm (CPU, reference)"),
            march,
        );
        for r in std::iter::once(Renderer::Cpu).chain(
            gpu.as_ref()
                .ok()
                .map(|g| Renderer::Gpu(Box::new(g.clone()))),
        ) {
            let t = median_secs(a.repeats, |k| r.render(&scene, &proj(k)?).map(|_| ()))?;
            row(&format!("Siddon–Jacobs traversal, {}", r.name()), t);
            let t = median_secs(a.repeats, |k| {
                dataset::render_view(&scene, lungs.as_ref(), &r, &s, k).map(|_| ())
            })?;
            row(
                &format!(
                    "pair (view without + with {} nodules), {}",
                    a.nodules,
                    r.name()
                ),
                t,
            );
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct CtToDicomArgs {
    /// Chest CT: NIfTI file (.nii, .nii.gz) or a folder holding one DICOM series.
    ct: PathBuf,
    /// Folder for the slices (IM00001.dcm …); created, and refused if it holds files already.
    out: PathBuf,
}

/// Writes a CT as DICOM slices (what the page's studio and DICOM viewers read).
pub fn ct_to_dicom(a: &CtToDicomArgs) -> Result<()> {
    let vol = read_volume(&a.ct)?;
    let files = dxr::drr::dicom_series::series_bytes(&vol)?;
    if a.out.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        return Err(Error::Drr(format!(
            "{} is not empty: write the slices into a new folder",
            a.out.display()
        )));
    }
    std::fs::create_dir_all(&a.out).map_err(|e| Error::io(&a.out, e))?;
    for (name, bytes) in &files {
        dxr::io::write_atomic(&a.out.join(name), bytes)?;
    }
    eprintln!(
        "{} slices of {}×{} written to {}",
        files.len(),
        vol.dims[0],
        vol.dims[1],
        a.out.display()
    );
    Ok(())
}
