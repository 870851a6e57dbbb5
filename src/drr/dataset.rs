//! A labelled DRR set: N seeded views of one scene, each with and without K nodules, written as
//! 16- and 8-bit PNGs (and optionally the raw line integrals as `.npy`), one label JSON per image,
//! a COCO file for the set and an optional contact sheet.
//!
//! Layout of `out/`:
//! `png16/NAME.png`, `png8/NAME.png` (with nodules), `clean/png16|png8/NAME.png` (the same view
//! without, when K > 0), `raw/NAME.npy` and `clean/raw/NAME.npy` (`--raw`), `lungs/NAME.png` (the
//! view's lung fields, white: where "in the lungs" is asked, as by `dxr realism`),
//! `labels/NAME.json`, `coco.json`, `meta.json`, `contact_sheet.png`.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::Scene;
use super::coco::{coco_annotation, coco_file};
use super::geometry::{Geometry, Pose, Projection};
use super::gpu::GpuProjector;
use super::nodule::{LungRegion, Nodule, NoduleLabel, NoduleSettings};
use super::project::{self, MuVolume};
#[cfg(not(target_arch = "wasm32"))]
use crate::eval::sheet::{self, Cell};
use crate::io::GrayImage;
use crate::spec::Size;
// writing sets is native only (files); the page's studio encodes one view (`drr::studio`)
#[cfg(not(target_arch = "wasm32"))]
use crate::io::{BitDepth, encode_png, write_atomic};
use crate::{Error, Result};

/// How line integrals become grey levels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    /// Per view, from the nodule-free image: black at the `low` percentile of the pixels the
    /// body covers, white at the `high` one (defaults 1 and 99.8).
    Auto { low: f64, high: f64 },
    /// The same line-integral range for every view.
    Fixed { low: f64, high: f64 },
}

impl Default for Window {
    fn default() -> Self {
        Window::Auto {
            low: 1.0,
            high: 99.8,
        }
    }
}

impl Window {
    /// `[low, high]` line integrals for `image`.
    pub fn range(&self, image: &[f32]) -> [f64; 2] {
        match *self {
            Window::Fixed { low, high } => [low, high],
            Window::Auto { low, high } => {
                let peak = image.iter().cloned().fold(0.0f32, f32::max);
                let mut body: Vec<f32> =
                    image.iter().cloned().filter(|v| *v > 0.02 * peak).collect();
                if body.len() < 2 {
                    return [0.0, (peak as f64).max(1e-6)];
                }
                body.sort_by(f32::total_cmp);
                let at =
                    |q: f64| body[((q / 100.0) * (body.len() - 1) as f64).round() as usize] as f64;
                let (lo, hi) = (at(low), at(high));
                if hi > lo { [lo, hi] } else { [lo, lo + 1e-6] }
            }
        }
    }
}

/// Displayed radiograph: −log I windowed to [0, 1], dense = bright.
pub fn display(image: &[f32], size: Size, [lo, hi]: [f64; 2]) -> GrayImage {
    GrayImage {
        width: size.width,
        height: size.height,
        data: image
            .iter()
            .map(|v| ((*v as f64 - lo) / (hi - lo)).clamp(0.0, 1.0) as f32)
            .collect(),
    }
}

/// A float32 C-order NumPy array file (format 1.0) of a `[rows, columns]` image.
pub fn npy_bytes(data: &[f32], rows: usize, cols: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    let unpadded = 10 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let header_len = dict.len() + pad + 1;
    let mut out = Vec::with_capacity(10 + header_len + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header_len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    out.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    out
}

/// How each view is drawn: the detector, the pose and its jitter, the nodules and the display
/// window. A `dxr drr` set and each CT of a dataset ([`crate::factory::RenderSettings`]) hold one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ViewSettings {
    pub geometry: Geometry,
    /// Pose every view starts from.
    pub pose: Pose,
    /// Each view adds a uniform rotation in ±these degrees (x, y, z) and shift in ±these mm.
    pub rotation_jitter_deg: [f64; 3],
    pub translation_jitter_mm: [f64; 3],
    /// Nodules per view.
    pub nodules: usize,
    pub nodule: NoduleSettings,
    pub window: Window,
}

impl Default for ViewSettings {
    fn default() -> Self {
        Self {
            geometry: Geometry::default(),
            pose: Pose::default(),
            rotation_jitter_deg: [3.0, 3.0, 3.0],
            translation_jitter_mm: [10.0, 10.0, 10.0],
            nodules: 0,
            nodule: NoduleSettings::default(),
            window: Window::default(),
        }
    }
}

/// Everything a set is made from (written to `meta.json`, the view settings' keys at the top
/// level).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetSettings {
    pub count: usize,
    /// Seed of the whole set; view `i` draws from its own stream, so it does not depend on
    /// `count` or on the threads.
    pub seed: u64,
    /// Index of the first view (names and streams): sets with disjoint ranges are disjoint.
    pub first_index: usize,
    #[serde(flatten)]
    pub view: ViewSettings,
    /// Also write the line integrals as `.npy`.
    pub raw: bool,
    /// Views on the contact sheet (0 = none).
    pub contact_sheet: usize,
}

impl Default for SetSettings {
    fn default() -> Self {
        Self {
            count: 1,
            seed: 0,
            first_index: 0,
            view: ViewSettings::default(),
            raw: false,
            contact_sheet: 0,
        }
    }
}

/// Where rays are traced.
pub enum Renderer {
    Cpu,
    Gpu(Box<GpuProjector>),
}

impl Renderer {
    #[cfg(not(target_arch = "wasm32"))]
    pub fn render(&self, scene: &Scene, proj: &Projection) -> Result<Vec<f32>> {
        match self {
            Renderer::Cpu => Ok(scene.render(proj)),
            Renderer::Gpu(g) => g.render(proj),
        }
    }

    /// [`Renderer::render`] for a caller that cannot block (the page: WebGPU answers through
    /// the browser's event loop).
    pub async fn render_async(&self, scene: &Scene, proj: &Projection) -> Result<Vec<f32>> {
        match self {
            Renderer::Cpu => Ok(scene.render(proj)),
            Renderer::Gpu(g) => g.render_async(proj).await,
        }
    }

    pub fn name(&self) -> String {
        match self {
            Renderer::Cpu => format!("CPU ({} threads)", rayon::current_num_threads()),
            Renderer::Gpu(g) => format!("GPU {}", g.adapter),
        }
    }
}

/// One rendered view.
pub struct View {
    pub name: String,
    pub projection: Projection,
    pub pose: Pose,
    pub nodules: Vec<Nodule>,
    /// Line integrals without and with the nodules (row-major).
    pub clean: Vec<f32>,
    pub with_nodules: Vec<f32>,
    pub labels: Vec<NoduleLabel>,
    pub window: [f64; 2],
}

/// The pose of view `index` (base pose + jitter), and its random stream, which then draws the
/// nodules.
pub fn draw_pose(s: &SetSettings, index: usize) -> (Pose, ChaCha8Rng) {
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    rng.set_stream((s.first_index + index) as u64);
    let mut jitter = |range: [f64; 3]| -> [f64; 3] {
        std::array::from_fn(|c| {
            if range[c] > 0.0 {
                rng.random_range(-range[c]..=range[c])
            } else {
                0.0
            }
        })
    };
    let rot = jitter(s.view.rotation_jitter_deg);
    let shift = jitter(s.view.translation_jitter_mm);
    let pose = Pose {
        rotation_deg: std::array::from_fn(|c| s.view.pose.rotation_deg[c] + rot[c]),
        translation_mm: std::array::from_fn(|c| s.view.pose.translation_mm[c] + shift[c]),
    };
    (pose, rng)
}

/// Draws and renders view `index` of a set.
#[cfg(not(target_arch = "wasm32"))]
pub fn render_view(
    scene: &Scene,
    lungs: Option<&LungRegion>,
    renderer: &Renderer,
    s: &SetSettings,
    index: usize,
) -> Result<View> {
    // 1. pose
    let (pose, rng, projection) = view_projection(scene, s, index)?;
    // 2. the nodule-free view
    let clean = renderer.render(scene, &projection)?;
    // 3. nodules and labels
    finish_view(scene, lungs, s, index, (pose, rng, projection), clean, &[])
}

/// Step 1 of [`render_view`]: the pose of view `index`, its random stream and its projection.
pub fn view_projection(
    scene: &Scene,
    s: &SetSettings,
    index: usize,
) -> Result<(Pose, ChaCha8Rng, Projection)> {
    let (pose, rng) = draw_pose(s, index);
    let projection = Projection::new(s.view.geometry, &pose, scene.isocentre)?;
    Ok((pose, rng, projection))
}

/// Steps 3–4 of [`render_view`] once the nodule-free line integrals `clean` are traced (by any
/// renderer, awaited or not): `s.view.nodules` random nodules, then `placed` (nodules put at chosen
/// points), each traced through its own window only; their labels.
pub fn finish_view(
    scene: &Scene,
    lungs: Option<&LungRegion>,
    s: &SetSettings,
    index: usize,
    (pose, mut rng, projection): (Pose, ChaCha8Rng, Projection),
    clean: Vec<f32>,
    placed: &[Nodule],
) -> Result<View> {
    let [w, h] = s.view.geometry.pixels;
    if clean.len() != w * h {
        return Err(Error::Drr(format!(
            "the renderer returned {} line integrals for a {w}×{h} detector",
            clean.len()
        )));
    }
    // 3. nodules, each traced through its own window only; the random ones are drawn as
    // `dxr drr` draws them (placed ones were kept clear of them when they were placed)
    let mut nodules: Vec<Nodule> = Vec::with_capacity(s.view.nodules + placed.len());
    if s.view.nodules > 0 {
        let lungs = lungs.ok_or_else(|| Error::Drr("nodules need a lung region".into()))?;
        for _ in 0..s.view.nodules {
            let n = lungs.place(&mut rng, &scene.ct, &s.view.nodule, &nodules)?;
            nodules.push(n);
        }
    }
    nodules.extend_from_slice(placed);
    let mut with_nodules = clean.clone();
    for n in &nodules {
        let block = scene.nodule_block(n)?;
        n.add_to(&mut with_nodules, &block, &scene.ct, &projection);
    }
    // 4. labels and window
    let labels = nodules
        .iter()
        .enumerate()
        .filter_map(|(k, n)| n.label(k, &scene.ct, &projection))
        .collect();
    let window = s.view.window.range(&clean);
    Ok(View {
        name: format!("{:05}", s.first_index + index),
        projection,
        pose,
        nodules,
        clean,
        with_nodules,
        labels,
        window,
    })
}

/// A ray counts as lung in a view's lung mask when it crosses at least this much lung (mm): one
/// that only grazes a lung's edge does not.
pub const LUNG_MIN_PATH_MM: f32 = 10.0;

/// The lungs of `scene` laid out like its attenuation, 1/mm inside and 0 outside: traced along a
/// view's rays, it gives each pixel's path length through lung (mm).
pub fn lung_volume(scene: &Scene, lungs: &LungRegion) -> Result<MuVolume> {
    let m = &scene.mu;
    let mut hi = [0usize; 3];
    for a in 0..3 {
        hi[m.perm[a]] = m.lo[m.perm[a]] + m.dims[a];
    }
    let ct = &scene.ct;
    MuVolume::from_fn(ct, m.perm, m.lo, hi, |i, j, k| {
        if lungs.inside[ct.index(i, j, k)] {
            1.0
        } else {
            0.0
        }
    })
}

/// The lung fields of one view: pixels whose ray crosses at least [`LUNG_MIN_PATH_MM`] of the
/// lungs of [`lung_volume`] (row-major, `true` = lung).
pub fn lung_fields(lung: &MuVolume, proj: &Projection) -> Vec<bool> {
    project::render(lung, proj)
        .into_iter()
        .map(|mm| mm >= LUNG_MIN_PATH_MM)
        .collect()
}

/// Label file of one view.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewLabel {
    pub image: String,
    pub image_8bit: String,
    pub clean_image: Option<String>,
    pub raw: Option<String>,
    /// The view's lung fields (`lungs/NAME.png`); absent in sets written before they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lungs: Option<String>,
    pub width: usize,
    pub height: usize,
    pub geometry: Geometry,
    pub pose: Pose,
    /// Line integrals shown as black and white.
    pub window: [f64; 2],
    pub nodules: Vec<NoduleLabel>,
}

impl ViewLabel {
    /// The label [`write_set`] writes for view `v` of the set `s` (file names relative to the
    /// set's folder).
    pub fn of_view(v: &View, s: &SetSettings) -> Self {
        let rel = |d: &str, ext: &str| format!("{d}/{}.{ext}", v.name);
        let has_clean = s.view.nodules > 0 || !v.nodules.is_empty();
        ViewLabel {
            image: rel("png16", "png"),
            image_8bit: rel("png8", "png"),
            clean_image: has_clean.then(|| rel("clean/png16", "png")),
            raw: s.raw.then(|| rel("raw", "npy")),
            lungs: None,
            width: s.view.geometry.pixels[0],
            height: s.view.geometry.pixels[1],
            geometry: s.view.geometry,
            pose: v.pose,
            window: v.window,
            nodules: v.labels.clone(),
        }
    }

    /// Reads the label of a view written by [`write_set`].
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// Parses a label's JSON; `origin` names it in the error.
    pub fn from_json(text: &str, origin: &str) -> Result<Self> {
        serde_json::from_str(text)
            .map_err(|e| Error::Drr(format!("{origin}: not a dxr drr label ({e})")))
    }

    /// The label of image `image` in the set `dir` (`dir/labels/<stem>.json`).
    pub fn for_image(dir: &Path, image: &Path) -> Result<Self> {
        let stem = image.file_stem().unwrap_or_default().to_string_lossy();
        Self::read(&dir.join("labels").join(format!("{stem}.json")))
    }

    /// Millimetres per pixel at the detector (the mean of the two axes).
    pub fn pixel_mm(&self) -> f64 {
        let g = &self.geometry;
        0.5 * (g.detector_mm[0] / g.pixels[0] as f64 + g.detector_mm[1] / g.pixels[1] as f64)
    }

    /// The same label for the image resampled to `width × height`: the pixel grid changes, the
    /// detector and the anatomy do not.
    pub fn resized(&self, width: usize, height: usize) -> Self {
        let (fx, fy) = (
            width as f64 / self.width as f64,
            height as f64 / self.height as f64,
        );
        let mut out = self.clone();
        out.width = width;
        out.height = height;
        out.geometry.pixels = [width, height];
        for n in &mut out.nodules {
            (n.centre_px, n.radius_px, n.bbox_px) =
                scaled_projection(n.centre_px, n.radius_px, n.bbox_px, fx, fy);
        }
        out
    }
}

/// A nodule as the evaluation reads it from a view's label: its projection only.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct NoduleSpot {
    pub centre_px: [f64; 2],
    pub radius_px: f64,
    /// `[x0, y0, x1, y1]`.
    pub bbox_px: [f64; 4],
}

/// The part of a [`ViewLabel`] the evaluation needs, so that a label with only these fields
/// (another tool's, or a hand-made one) is read too; a missing size means the image's own.
#[derive(Debug, Clone, Deserialize)]
struct Spots {
    width: Option<f64>,
    height: Option<f64>,
    #[serde(default)]
    nodules: Vec<NoduleSpot>,
}

/// The nodules of image `image` of the set `dir` (`dir/labels/<stem>.json`), in the pixels of a
/// `width × height` copy of it (a restoration may have another size than the view).
pub fn nodule_spots(
    dir: &Path,
    image: &Path,
    width: usize,
    height: usize,
) -> Result<Vec<NoduleSpot>> {
    let stem = image.file_stem().unwrap_or_default().to_string_lossy();
    let path = dir.join("labels").join(format!("{stem}.json"));
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    spots_from_json(&text, &path.display().to_string(), width, height)
}

/// The nodules of a label's JSON text in the pixels of a `width × height` image; `origin` names
/// the label in errors. Sizes must be positive and every position finite.
pub fn spots_from_json(
    text: &str,
    origin: &str,
    width: usize,
    height: usize,
) -> Result<Vec<NoduleSpot>> {
    let bad = |m: String| Error::Drr(format!("{origin}: {m}"));
    let spots: Spots =
        serde_json::from_str(text).map_err(|e| bad(format!("not a nodule label ({e})")))?;
    let side = |v: Option<f64>, own: usize, what: &str| match v {
        None => Ok(own as f64),
        Some(v) if v.is_finite() && v > 0.0 => Ok(v),
        Some(v) => Err(bad(format!("{what} {v} is not a positive size"))),
    };
    let sx = width as f64 / side(spots.width, width, "width")?;
    let sy = height as f64 / side(spots.height, height, "height")?;
    spots
        .nodules
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            let finite = n.centre_px.iter().chain(&n.bbox_px).all(|v| v.is_finite());
            if !finite || !(n.radius_px.is_finite() && n.radius_px >= 0.0) {
                return Err(bad(format!(
                    "nodule {i} has a position or radius that is not a finite number"
                )));
            }
            let (centre_px, radius_px, bbox_px) =
                scaled_projection(n.centre_px, n.radius_px, n.bbox_px, sx, sy);
            Ok(NoduleSpot {
                centre_px,
                radius_px,
                bbox_px,
            })
        })
        .collect()
}

/// A nodule's projection (centre, radius, box) on a pixel grid scaled by `fx`, `fy`.
fn scaled_projection(
    c: [f64; 2],
    r: f64,
    b: [f64; 4],
    fx: f64,
    fy: f64,
) -> ([f64; 2], f64, [f64; 4]) {
    (
        [c[0] * fx, c[1] * fy],
        r * 0.5 * (fx + fy),
        [b[0] * fx, b[1] * fy, b[2] * fx, b[3] * fy],
    )
}

/// What [`write_set`] did.
pub struct SetSummary {
    pub written: usize,
    pub cancelled: bool,
    pub renderer: String,
}

/// Renders and writes views `0..count`; `progress(done, total)` returns false to stop after
/// the current view (what was written stays valid: every file is written atomically and the set
/// files list only finished views).
#[cfg(not(target_arch = "wasm32"))]
pub fn write_set(
    scene: &Scene,
    lungs: Option<&LungRegion>,
    renderer: &Renderer,
    s: &SetSettings,
    out: &Path,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<SetSummary> {
    s.view.geometry.validate()?;
    s.view.nodule.validate()?;
    let [w, h] = s.view.geometry.pixels;
    let dirs: Vec<&str> = {
        let mut d = vec!["png16", "png8", "labels"];
        if lungs.is_some() {
            d.push("lungs");
        }
        if s.view.nodules > 0 {
            d.extend(["clean/png16", "clean/png8"]);
        }
        if s.raw {
            d.push("raw");
            if s.view.nodules > 0 {
                d.push("clean/raw");
            }
        }
        d
    };
    for d in &dirs {
        std::fs::create_dir_all(out.join(d)).map_err(|e| Error::io(out.join(d), e))?;
    }
    let lung = lungs.map(|l| lung_volume(scene, l)).transpose()?;
    let mut labels = Vec::new();
    let mut sheet = Vec::new();
    let mut cancelled = false;
    for i in 0..s.count {
        let v = render_view(scene, lungs, renderer, s, i)?;
        let rel = |d: &str, ext: &str| format!("{d}/{}.{ext}", v.name);
        let put = |rel: &str, bytes: &[u8]| write_atomic(&out.join(rel), bytes);
        let shown = display(&v.with_nodules, Size::new(w, h), v.window);
        put(
            &rel("png16", "png"),
            &encode_png(&shown, BitDepth::Sixteen)?,
        )?;
        put(&rel("png8", "png"), &encode_png(&shown, BitDepth::Eight)?)?;
        let shown_clean = display(&v.clean, Size::new(w, h), v.window);
        if s.view.nodules > 0 {
            put(
                &rel("clean/png16", "png"),
                &encode_png(&shown_clean, BitDepth::Sixteen)?,
            )?;
            put(
                &rel("clean/png8", "png"),
                &encode_png(&shown_clean, BitDepth::Eight)?,
            )?;
        }
        if s.raw {
            put(&rel("raw", "npy"), &npy_bytes(&v.with_nodules, h, w))?;
            if s.view.nodules > 0 {
                put(&rel("clean/raw", "npy"), &npy_bytes(&v.clean, h, w))?;
            }
        }
        let mut label = ViewLabel::of_view(&v, s);
        if let Some(lung) = &lung {
            let fields = lung_fields(lung, &v.projection);
            let img = GrayImage {
                width: w,
                height: h,
                data: fields.iter().map(|&f| if f { 1.0 } else { 0.0 }).collect(),
            };
            put(&rel("lungs", "png"), &encode_png(&img, BitDepth::Eight)?)?;
            label.lungs = Some(rel("lungs", "png"));
        }
        put(
            &rel("labels", "json"),
            &serde_json::to_vec_pretty(&label).expect("serialisable"),
        )?;
        labels.push(label);
        if sheet.len() < s.contact_sheet {
            sheet.push((shown_clean, shown, v.labels));
        }
        if !progress(i + 1, s.count) {
            cancelled = i + 1 < s.count;
            break;
        }
    }
    // set files: only finished views
    write_atomic(
        &out.join("coco.json"),
        &serde_json::to_vec_pretty(&coco(&labels)).expect("serialisable"),
    )?;
    let meta = serde_json::json!({
        "settings": s,
        "renderer": renderer.name(),
        "views": labels.len(),
        "mu_water_per_mm": scene.mu_water,
        "isocentre_mm": scene.isocentre,
        "pixel_convention": "pixel i covers [i, i+1); the centre of pixel i is i + 0.5",
    });
    write_atomic(
        &out.join("meta.json"),
        &serde_json::to_vec_pretty(&meta).expect("serialisable"),
    )?;
    if !sheet.is_empty() {
        let png = contact_sheet(&sheet)?;
        write_atomic(&out.join("contact_sheet.png"), &png)?;
    }
    Ok(SetSummary {
        written: labels.len(),
        cancelled,
        renderer: renderer.name(),
    })
}

/// COCO detection file: one category, boxes as `[x, y, width, height]` in pixels.
pub fn coco(labels: &[ViewLabel]) -> serde_json::Value {
    let mut annotations = Vec::new();
    let images: Vec<_> = labels
        .iter()
        .enumerate()
        .map(|(id, l)| {
            for n in &l.nodules {
                annotations.push(coco_annotation(
                    annotations.len() + 1,
                    id + 1,
                    n.bbox_px,
                    serde_json::json!({
                        "centre_px": n.centre_px,
                        "radius_px": n.radius_px,
                        "radius_mm": n.radius_mm,
                        "hu": n.hu,
                        "shape": n.shape,
                    }),
                ));
            }
            serde_json::json!({"id": id + 1, "file_name": l.image, "width": l.width, "height": l.height})
        })
        .collect();
    coco_file(
        "DiffusionXRay synthetic DRRs with inserted lung nodules",
        images,
        annotations,
    )
}

/// Grid of views, each as [without | with nodules], nodule boxes drawn in red.
#[cfg(not(target_arch = "wasm32"))]
fn contact_sheet(items: &[(GrayImage, GrayImage, Vec<NoduleLabel>)]) -> Result<Vec<u8>> {
    let cols = (items.len() as f64).sqrt().ceil() as usize;
    let rows: Vec<Vec<Cell>> = items
        .chunks(cols)
        .map(|row| {
            row.iter()
                .flat_map(|(clean, with, labels)| {
                    [
                        Cell {
                            image: clean,
                            boxes: vec![],
                        },
                        Cell {
                            image: with,
                            boxes: labels.iter().map(|l| l.bbox_px).collect(),
                        },
                    ]
                })
                .collect()
        })
        .collect();
    sheet::grid_png(&rows, 256)
}

#[cfg(test)]
#[path = "dataset_tests.rs"]
mod tests;
