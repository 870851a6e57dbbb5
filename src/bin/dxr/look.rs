//! `dxr fit-drr-look` and `dxr filter`: the measured DRR look that `dxr pairs --method drr`
//! gives radiographs, and the fixed-filter baseline every learned model is compared with.

use std::path::PathBuf;

use clap::Args;

use dxr::io::{self, BitDepth, GrayImage, encode_png, write_atomic};
use dxr::scale::{estimate_chest_px, typical_chest_px};
use dxr::train::data::Domain;
use dxr::train::degrade::{DrrLike, FixedFilter};
use dxr::{Error, Result};

use crate::common::{by_stem, columns};

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
    let hq = Domain::load(&a.hq, columns("train", a.holdout)?)?;
    let hq_chest = typical_chest_px(&hq.images);
    let hq_imgs = hq.region_images();
    // the DRRs at the radiograph's scale (lung-field widths matched)
    let mut drrs = Vec::new();
    for f in dxr::io::image_files(&a.drr)? {
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
    #[arg(long, required_unless_present = "tone_of", conflicts_with = "tone_of")]
    filter: Option<PathBuf>,
    /// Instead of the fixed filter, a restoration's tone curve alone: each input is
    /// histogram-matched to the image of the same name in this folder (its restoration), which
    /// moves no structure. A sheet column of it shows what a model adds beyond its grey scale.
    #[arg(long, value_name = "RESTORED_DIR")]
    tone_of: Option<PathBuf>,
    /// Images or folders.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    #[arg(short, long)]
    out: PathBuf,
}

/// `dxr filter`: the no-learning baselines over images: the fixed filter (tone curve + unsharp
/// mask), or a restoration's own tone curve alone.
pub fn run_filter(a: &FilterArgs) -> Result<()> {
    let fixed: Option<FixedFilter> = match &a.filter {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            Some(serde_json::from_str(&text).map_err(|e| {
                Error::Config(format!("{}: not a fixed filter ({e})", path.display()))
            })?)
        }
        None => None,
    };
    // the restorations by name, listed once
    let restored = a.tone_of.as_deref().map(by_stem).transpose()?;
    // every input and its match first, so that a missing one leaves nothing written
    let mut jobs = Vec::new();
    for i in &a.inputs {
        for file in dxr::io::image_files(i)? {
            let stem = file
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let like = match (&a.tone_of, &restored) {
                (Some(dir), Some(by_name)) => {
                    Some(by_name.get(&stem).cloned().ok_or_else(|| {
                        Error::Usage(format!(
                            "--tone-of {}: no image named {stem} to match {}",
                            dir.display(),
                            file.display()
                        ))
                    })?)
                }
                _ => None,
            };
            jobs.push((file, stem, like));
        }
    }
    std::fs::create_dir_all(&a.out).map_err(|e| Error::io(&a.out, e))?;
    // what this run wrote, taken back if a later image fails (a DRR and its restoration of
    // different sizes, an unreadable file), so that no half-done folder passes for a whole one
    let mut written = Vec::new();
    for (file, stem, like) in jobs {
        let one = || -> Result<()> {
            let img = io::read(&file)?;
            let out = match (&fixed, like) {
                (Some(f), _) => f.apply(&img),
                (None, Some(like)) => {
                    let like = io::read(&like)?;
                    dxr::eval::realism::tone_aligned(&img, &like).map_err(|e| {
                        Error::Image(format!("{} against {stem}: {e}", file.display()))
                    })?
                }
                (None, None) => {
                    return Err(Error::Config("give --filter FILE or --tone-of DIR".into()));
                }
            };
            let path = a.out.join(format!("{stem}.png"));
            write_atomic(&path, &encode_png(&out, BitDepth::Sixteen)?)?;
            written.push(path);
            Ok(())
        };
        if let Err(e) = one() {
            for p in &written {
                let _ = std::fs::remove_file(p);
            }
            let _ = std::fs::remove_dir(&a.out);
            return Err(e);
        }
    }
    Ok(())
}
