//! `dxr compare` and `dxr resize`: two images compared, radiographs brought to a width.

use std::path::{Path, PathBuf};

use clap::Args;

use dxr::io::{self, BitDepth, GrayImage};
use dxr::{Error, Result};

#[derive(Args)]
pub struct CompareArgs {
    a: PathBuf,
    b: PathBuf,
}

#[derive(Args)]
pub struct ResizeArgs {
    /// Image files or folders of images.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output folder (created if missing).
    #[arg(short, long)]
    out: PathBuf,
    /// Width in pixels (of the crop, when there is one).
    #[arg(long)]
    width: usize,
    /// Keep only the region x0,y0,x1,y1 first, in fractions of the width and height: e.g. to
    /// leave out burned-in markers and text.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    crop: Option<Vec<f64>>,
}

/// Prints max |a − b| in 8-bit steps, PSNR and SSIM as JSON.
pub fn run_compare(a: &CompareArgs) -> Result<()> {
    let c = dxr::eval::metrics::compare_8bit(&io::read(&a.a)?, &io::read(&a.b)?)?;
    println!("{}", serde_json::to_string(&c).expect("serialisable"));
    Ok(())
}

pub fn run_resize(a: &ResizeArgs) -> Result<()> {
    let crop = a
        .crop
        .as_deref()
        .map(|c| crate::common::crop_fractions("resize", c))
        .transpose()?;
    resize(&a.inputs, &a.out, a.width, crop)
}

fn resize(inputs: &[PathBuf], out: &Path, width: usize, crop: Option<[f64; 4]>) -> Result<()> {
    let files = io::image_inputs(inputs)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    for f in &files {
        let img = io::read(f)?;
        let img = match crop {
            Some(c) => dxr::eval::sheet::crop(&img, &[], c)?.0,
            None => img,
        };
        let height =
            ((img.height as f64 * width as f64 / img.width as f64).round() as usize).max(1);
        GrayImage::check_size(width, height)?;
        let small = img.resized(width, height, image::imageops::FilterType::Triangle);
        let name = format!(
            "{}.png",
            f.file_stem().unwrap_or_default().to_string_lossy()
        );
        let path = out.join(name);
        if files.iter().any(|i| i == &path) {
            return Err(Error::Config(format!(
                "{}: would overwrite an input",
                path.display()
            )));
        }
        io::write_atomic(&path, &io::encode_png(&small, BitDepth::Sixteen)?)?;
        eprintln!(
            "{} {}×{} → {} {width}×{height}",
            f.display(),
            img.width,
            img.height,
            path.display()
        );
    }
    Ok(())
}
