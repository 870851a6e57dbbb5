//! `dxr eval`, `dxr realism` and `dxr sheet`: how restorations score against references, how
//! radiograph-like they are (the default model's checks), and a sheet to look at.

use std::path::PathBuf;

use clap::Args;

use dxr::checkpoint::read_checkpoint;
use dxr::diffusion::sampler::SamplerSettings;
use dxr::drr::dataset::{ViewLabel, nodule_spots};
use dxr::eval::{checks, realism, tables};
use dxr::io::{self, GrayImage, write_atomic};
use dxr::restore::Restorer;
use dxr::train::data::{Columns, Domain, PairSet};
use dxr::{Error, Result};

use crate::common::{by_stem, open_device, progress_bar};

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
        (Some(r), Some(refd), None, None) => (tables::eval_dirs(r, refd)?, r.join("eval.csv")),
        (None, None, Some(w), Some(p)) => {
            let device = open_device(&a.device)?;
            let bytes = dxr::checkpoint::read_file(w)?;
            let restorer = Restorer::new(dxr::checkpoint::load(
                &read_checkpoint(&bytes)?,
                None,
                &device,
            )?)?;
            let settings = SamplerSettings::named(&a.sampler, a.steps, 0.0)?;
            let pairs = PairSet::load(p)?;
            let bar = progress_bar(pairs.names.len() as u64, "pairs");
            let rows = tables::eval_model(
                &restorer,
                &pairs.names,
                &pairs.lq,
                &pairs.hq,
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
    print!("{}", tables::markdown(&rows));
    let path = a.csv.clone().unwrap_or(default_csv);
    write_atomic(&path, tables::csv(&rows).as_bytes())?;
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

/// The lung fields the DRR set `labels` drew for the view `file` (its label's `lungs`), at the
/// size of `like`; `None` for a set written before sets had them.
fn lung_fields(
    labels: &std::path::Path,
    file: &std::path::Path,
    like: &GrayImage,
) -> Result<Option<Vec<bool>>> {
    // read leniently, as the nodules are: a label needs only its `lungs`
    let stem = file.file_stem().unwrap_or_default().to_string_lossy();
    let path = labels.join("labels").join(format!("{stem}.json"));
    let Some(label) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    else {
        return Ok(None);
    };
    let Some(rel) = label.get("lungs").and_then(|l| l.as_str()) else {
        return Ok(None);
    };
    let fields = at_size(io::read(&labels.join(rel))?, like);
    Ok(Some(fields.data.iter().map(|v| *v >= 0.5).collect()))
}

/// `dxr realism --before`: the checks of a restoration.
fn run_checks(a: &RealismArgs, before: &std::path::Path, radiograph: &[GrayImage]) -> Result<()> {
    use dxr::eval::checks::{Reference, Twin, View};
    let labels = a.labels.as_ref().ok_or_else(|| {
        Error::Usage("--before needs --labels (the DRR set the nodules come from)".into())
    })?;
    let pitch = |file: &std::path::Path, img: &GrayImage| -> Option<f64> {
        let l = ViewLabel::for_image(labels, file).ok()?;
        Some(l.pixel_mm() * l.width as f64 / img.width as f64)
    };
    let befores = by_stem(before)?;
    let mut views = Vec::new();
    // each view's lung fields, for the lungs' detail (by threshold when the set has none)
    let mut view_lungs = Vec::new();
    for dir in &a.images {
        for (stem, file) in by_stem(dir)? {
            let Some(src) = befores.get(&stem) else {
                continue;
            };
            let after = io::read(&file)?;
            let input = at_size(io::read(src)?, &after);
            let nodules = nodule_spots(labels, src, input.width, input.height)?
                .into_iter()
                .map(|n| (n.centre_px, n.radius_px))
                .collect();
            let lungs = lung_fields(labels, src, &input)?;
            view_lungs.push(
                lungs
                    .clone()
                    .unwrap_or_else(|| dxr::eval::realism::lung_mask(&input)),
            );
            views.push(View {
                lungs,
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
                lungs: lung_fields(labels, src, &input)?,
                name: stem,
                before: input,
                after,
            });
        }
    }
    let reference = Reference::from_images(&radiograph.iter().collect::<Vec<_>>())?;
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
            match (c.required, c.pass) {
                (false, _) => "report",
                (true, true) => "pass",
                (true, false) => "FAIL",
            }
        );
    }
    let required: Vec<_> = results.iter().filter(|c| c.required).collect();
    let passed = required.iter().filter(|c| c.pass).count();
    println!(
        "{passed} of {} checks pass (check 3 is a report)",
        required.len()
    );
    // what a grey-level map alone would score: the difference is what the restoration adds
    let (tv, tt) = checks::tone_curves_alone(&views, &twins)?;
    print_lung_detail(&views, &tv, &view_lungs, radiograph);
    let alone = checks::run(&tv, &tt, &reference)?;
    let numbers: Vec<String> = alone
        .iter()
        .filter(|c| c.required && c.pass)
        .map(|c| c.name.split(' ').next().unwrap_or("?").to_string())
        .collect();
    println!(
        "the restorations' tone curves alone (each input histogram-matched to its restoration) \
         pass {} checks{}; detail: {}; nodules: {}",
        numbers.len(),
        if numbers.is_empty() {
            String::new()
        } else {
            format!(" ({})", numbers.join(", "))
        },
        alone.first().map_or("–", |c| c.after.as_str()),
        alone.get(3).map_or("–", |c| c.after.as_str()),
    );
    Ok(())
}

/// What the before/after sheet shows of the lungs: their detail
/// ([`dxr::eval::realism::lung_detail`]) before and after, medians over the views, and the
/// radiograph's (its lungs by threshold, at the pixel scale of a 256² DRR). Not one of the
/// checks: a reading of how much sharper (or softer) the lungs and ribs come out.
fn print_lung_detail(
    views: &[dxr::eval::checks::View],
    tone_alone: &[dxr::eval::checks::View],
    lungs: &[Vec<bool>],
    reference: &[GrayImage],
) {
    use dxr::eval::realism::{LUNG_DETAIL_MM, lung_detail, lung_mask};
    let median = |mut v: Vec<f64>| -> Option<f64> {
        v.sort_by(f64::total_cmp);
        (!v.is_empty()).then(|| v[v.len() / 2])
    };
    let side = |views: &[dxr::eval::checks::View], after: bool| {
        median(
            views
                .iter()
                .zip(lungs)
                .filter_map(|(v, m)| {
                    lung_detail(if after { &v.after } else { &v.before }, m, v.pixel_mm)
                })
                .collect(),
        )
    };
    let radiograph = median(
        reference
            .iter()
            .filter_map(|g| lung_detail(g, &lung_mask(g), None))
            .collect(),
    );
    if let (Some(b), Some(a)) = (side(views, false), side(views, true)) {
        println!(
            "lungs' detail (not a check: the RMS of the {}–{} mm band in the lung fields over the \
             1–99 % range, median over the views): {b:.4} → {a:.4} (×{:.2}){}{}",
            LUNG_DETAIL_MM[0],
            LUNG_DETAIL_MM[1],
            a / b,
            side(tone_alone, true).map_or(String::new(), |t| format!(
                "; through the tone curve alone: {t:.4} (×{:.2})",
                t / b
            )),
            radiograph.map_or(String::new(), |r| format!("; the radiograph's {r:.4}"))
        );
    }
}

pub fn run_realism(a: &RealismArgs) -> Result<()> {
    let files = io::image_inputs(&a.images)?;
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
            Error::Usage("--before needs --reference (the real radiograph)".into())
        })?;
        return run_checks(a, before, reference);
    }
    let reference_cdf = reference_crops
        .as_ref()
        .map(|crops| realism::cdf(&crops.iter().collect::<Vec<_>>()));
    let mut csv = String::from(
        "image,hist_distance,spectrum_slope,edge_sharpness,nodules,mean_cnr,lung_detail\n",
    );
    let (mut hd, mut sl, mut es, mut cnrs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut ld = Vec::new();
    for f in &files {
        let img = io::read(f)?;
        let h = reference_cdf
            .as_ref()
            .map(|c| realism::wasserstein(&realism::cdf(&[&img]), c));
        let slope = realism::spectrum_slope(&img)?;
        let edge = realism::edge_sharpness(&img);
        // the lungs by threshold, the pitch from a DRR label when there is one
        let pitch = a
            .labels
            .as_ref()
            .and_then(|dir| ViewLabel::for_image(dir, f).ok())
            .map(|l| l.pixel_mm() * l.width as f64 / img.width as f64);
        let lungs = realism::lung_detail(&img, &realism::lung_mask(&img), pitch);
        let mut these = Vec::new();
        if let Some(dir) = &a.labels {
            for n in nodule_spots(dir, f, img.width, img.height)? {
                if let Some(v) = realism::nodule_cnr(&img, n.centre_px, n.radius_px) {
                    these.push(v);
                }
            }
        }
        let mean_cnr = (!these.is_empty()).then(|| these.iter().sum::<f64>() / these.len() as f64);
        let name = f.file_name().unwrap_or_default().to_string_lossy();
        let opt = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
        csv.push_str(&format!(
            "{name},{},{slope:.6},{edge:.6},{},{},{}\n",
            opt(h),
            these.len(),
            opt(mean_cnr),
            opt(lungs)
        ));
        ld.extend(lungs);
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
        let (m, s) = tables::mean_std(v.iter().copied());
        format!("{m:.4} ± {s:.4}")
    };
    println!(
        "| images | histogram distance to the reference | spectrum slope | edge sharpness | nodule CNR (n) | lungs' detail |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} ({}) | {} | {} | {} | {} ({}) | {} |",
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
        cnrs.len(),
        ms(&ld)
    );
    if let Some(p) = &a.csv {
        write_atomic(p, csv.as_bytes())?;
    }
    Ok(())
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
    /// A close-up: only the region x0,y0,x1,y1 of every image, in fractions of its width and
    /// height (e.g. 0.1,0.2,0.5,0.7 for a right lung); cells are never upscaled, so the pixels show.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    crop: Option<Vec<f64>>,
}

/// Before/after sheets: rows = images, columns = folders (input, restorations, reference).
pub fn run_sheet(a: &SheetArgs) -> Result<()> {
    use dxr::eval::sheet::{Cell, grid_png};
    let stem = |p: &std::path::Path| {
        p.file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    let lists = a
        .columns
        .iter()
        .map(|c| dxr::io::image_files(c))
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
            let boxes: Vec<[f64; 4]> = match &a.labels {
                Some(dir) => nodule_spots(dir, file, img.width, img.height)?
                    .into_iter()
                    .map(|n| n.bbox_px)
                    .collect(),
                None => vec![],
            };
            row.push(match a.crop.as_deref() {
                Some(c) => dxr::eval::sheet::crop(
                    &img,
                    &boxes,
                    crate::common::crop_fractions("sheet", c)?,
                )?,
                None => (img, boxes),
            });
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
