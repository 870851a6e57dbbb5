//! Evaluation: PSNR and SSIM (as scikit-image computes them, on [0, 1] values with data range 1,
//! which equals the 8-bit figures for 8-bit images) per image, their mean ± std, as a Markdown
//! table and as CSV.

use std::ops::ControlFlow;
use std::path::Path;

use super::metrics;
use crate::device::MemoryBudget;
use crate::diffusion::sampler::{SamplerSettings, SeededNoise};
use crate::io::{self, GrayImage, image_files};
use crate::restore::{RestoreOptions, Restorer};
use crate::{Error, Result};

/// One image's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRow {
    pub name: String,
    pub psnr: f64,
    pub ssim: f64,
}

/// PSNR/SSIM of `test` against `reference` (same size).
pub fn score(name: &str, reference: &GrayImage, test: &GrayImage) -> Result<EvalRow> {
    if (reference.width, reference.height) != (test.width, test.height) {
        return Err(Error::Image(format!(
            "{name}: restored is {}×{}, reference is {}×{}",
            test.width, test.height, reference.width, reference.height
        )));
    }
    let a: Vec<f64> = reference.data.iter().map(|v| *v as f64).collect();
    let b: Vec<f64> = test.data.iter().map(|v| *v as f64).collect();
    Ok(EvalRow {
        name: name.to_string(),
        psnr: metrics::psnr(&a, &b, 1.0)?,
        ssim: metrics::ssim(&a, &b, reference.width, reference.height, 1.0)?,
    })
}

/// Every image of `restored` against the file of the same name in `reference`.
pub fn eval_dirs(restored: &Path, reference: &Path) -> Result<Vec<EvalRow>> {
    let mut rows = Vec::new();
    for path in image_files(restored)? {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let ref_path = reference.join(&name);
        if !ref_path.is_file() {
            return Err(Error::Image(format!(
                "{name}: no file of that name in {}",
                reference.display()
            )));
        }
        rows.push(score(&name, &io::read(&ref_path)?, &io::read(&path)?)?);
    }
    Ok(rows)
}

/// Restores every `lq/` image of a pair set and scores it against its `hq/` twin.
pub fn eval_model(
    restorer: &Restorer,
    names: &[String],
    lq: &[GrayImage],
    hq: &[GrayImage],
    settings: &SamplerSettings,
    seed: u64,
    device: &burn::prelude::Device,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Vec<EvalRow>> {
    let mut rows = Vec::new();
    if lq.len() != names.len() || hq.len() != names.len() {
        return Err(Error::Image(format!(
            "{} names, {} LQ and {} HQ images: one of each per pair",
            names.len(),
            lq.len(),
            hq.len()
        )));
    }
    for (k, ((lq, hq), name)) in lq.iter().zip(hq).zip(names).enumerate() {
        let mut noise = SeededNoise::new(seed);
        // pairs are made at the model's scale: restored as they are
        let opts = RestoreOptions::at_input_pixels(MemoryBudget::cpu());
        let out = restorer
            .restore(lq, &opts, settings, &mut noise, device, &mut |_| {
                ControlFlow::Continue(())
            })?
            .image;
        rows.push(score(name, hq, &out)?);
        if !progress(k + 1, names.len()) {
            return Err(Error::Cancelled);
        }
    }
    Ok(rows)
}

/// Mean and population standard deviation.
pub fn mean_std(v: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = v.clone().count().max(1) as f64;
    let mean = v.clone().sum::<f64>() / n;
    let var = v.map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

pub fn markdown(rows: &[EvalRow]) -> String {
    let mut s = String::from("| image | PSNR (dB) | SSIM |\n|---|---|---|\n");
    for r in rows {
        s.push_str(&format!("| {} | {:.3} | {:.4} |\n", r.name, r.psnr, r.ssim));
    }
    let (pm, ps) = mean_std(rows.iter().map(|r| r.psnr));
    let (sm, ss) = mean_std(rows.iter().map(|r| r.ssim));
    s.push_str(&format!(
        "| **mean ± std** ({} images) | {pm:.3} ± {ps:.3} | {sm:.4} ± {ss:.4} |\n",
        rows.len()
    ));
    s
}

pub fn csv(rows: &[EvalRow]) -> String {
    let mut s = String::from("image,psnr,ssim\n");
    for r in rows {
        s.push_str(&format!("{},{:.9},{:.9}\n", r.name, r.psnr, r.ssim));
    }
    s
}
