//! Reading radiographs (PNG 8/16-bit, JPEG, TIFF, DICOM) into one grey float image, and writing
//! results as 8- or 16-bit PNG without ever leaving a half-written file behind.

pub mod dicom;

use crate::limits::Limits;
use std::io::Cursor;
#[cfg(not(target_arch = "wasm32"))]
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Largest accepted side, in pixels (a 8192² image already needs GBs in the UNet).
pub const MAX_SIDE: usize = Limits::MAX_SIDE.value as usize;
/// Smallest accepted side: below this there is nothing to restore.
pub const MIN_SIDE: usize = Limits::MIN_SIDE.value as usize;
/// Largest accepted file, in bytes.
pub const MAX_FILE_BYTES: u64 = Limits::FILE_BYTES.value;

/// A single-channel image with values in [0, 1], row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct GrayImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl GrayImage {
    /// A `width × height` image whose pixel (x, y) is `f(x, y)`, filled row by row.
    pub fn from_fn(width: usize, height: usize, mut f: impl FnMut(usize, usize) -> f32) -> Self {
        Self {
            width,
            height,
            data: (0..width * height)
                .map(|p| f(p % width, p / width))
                .collect(),
        }
    }

    /// Resampled to `width`×`height` with `filter` (the filter widens when shrinking, so
    /// downsampling averages instead of aliasing); values clamped to [0, 1].
    pub fn resized(
        &self,
        width: usize,
        height: usize,
        filter: image::imageops::FilterType,
    ) -> Self {
        Self {
            width,
            height,
            data: self
                .resampled_values(width, height, filter)
                .into_iter()
                .map(|v| v.clamp(0.0, 1.0))
                .collect(),
        }
    }

    /// The values of [`Self::resized`] before clamping (filters such as Catmull–Rom overshoot).
    pub fn resampled_values(
        &self,
        width: usize,
        height: usize,
        filter: image::imageops::FilterType,
    ) -> Vec<f32> {
        use image::{ImageBuffer, Luma};
        let buf: ImageBuffer<Luma<f32>, Vec<f32>> =
            ImageBuffer::from_raw(self.width as u32, self.height as u32, self.data.clone())
                .expect("sizes match");
        image::imageops::resize(&buf, width as u32, height as u32, filter).into_raw()
    }

    /// Checks the size against [`MIN_SIDE`] and [`MAX_SIDE`].
    pub fn check_size(width: usize, height: usize) -> Result<()> {
        if width < MIN_SIDE || height < MIN_SIDE {
            return Err(Error::Image(format!(
                "image is {width}×{height}; both sides must be at least {MIN_SIDE} pixels"
            )));
        }
        if width > MAX_SIDE || height > MAX_SIDE {
            return Err(Error::Image(format!(
                "image is {width}×{height}; the limit is {MAX_SIDE}×{MAX_SIDE}"
            )));
        }
        Ok(())
    }
}

/// Decodes an image from bytes; the format is recognised from the content, not the name.
pub fn decode(bytes: &[u8]) -> Result<GrayImage> {
    if bytes.is_empty() {
        return Err(Error::Image("the file is empty".into()));
    }
    if dicom::looks_like_dicom(bytes) {
        return dicom::decode(bytes);
    }
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::Image(e.to_string()))?;
    let format = reader.format().ok_or_else(|| {
        Error::Image("unrecognised format: expected PNG, JPEG, TIFF or DICOM".into())
    })?;
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| Error::Image(format!("{format:?} header is unreadable ({e})")))?;
    GrayImage::check_size(w as usize, h as usize)?;
    let img = image::load_from_memory_with_format(bytes, format)
        .map_err(|e| Error::Image(format!("{format:?} data is damaged or truncated ({e})")))?;
    let luma = img.into_luma16();
    let data = luma.as_raw().iter().map(|v| *v as f32 / 65535.0).collect();
    Ok(GrayImage {
        width: w as usize,
        height: h as usize,
        data,
    })
}

/// What a file (or the user) says about an image's pixel scale; [`crate::scale`] decides
/// from it how far to resample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct InputScale {
    /// Millimetres per pixel at the detector, when the file or the user says it.
    pub pixel_mm: Option<f64>,
    /// Where `pixel_mm` came from ("DICOM Imager Pixel Spacing", "DRR label", "--pixel-mm").
    pub source: Option<String>,
}

impl InputScale {
    /// A known pitch from `source`; non-positive or non-finite values (a DICOM file may hold
    /// `0\0`) count as unknown.
    pub fn known(pixel_mm: f64, source: impl Into<String>) -> Self {
        if pixel_mm.is_finite() && pixel_mm > 0.0 {
            Self {
                pixel_mm: Some(pixel_mm),
                source: Some(source.into()),
            }
        } else {
            Self::default()
        }
    }
}

/// [`decode`], with the pixel scale when the file records it (DICOM spacing tags).
pub fn decode_with_scale(bytes: &[u8]) -> Result<(GrayImage, InputScale)> {
    decode_frame_with_scale(bytes, 0).map(|(img, scale, _)| (img, scale))
}

/// Frame `frame` (0-based) of an image with its scale and the number of frames the file holds:
/// a multi-frame DICOM has several, any other image one (a frame past it is refused by name).
/// A colour DICOM image is refused: it is not a radiograph.
pub fn decode_frame_with_scale(bytes: &[u8], frame: u32) -> Result<(GrayImage, InputScale, u32)> {
    let f = decode_frame_shown(bytes, frame)?;
    if let Some(why) = f.colour {
        return Err(dicom::not_restored(&why));
    }
    Ok((f.image, f.scale, f.frames))
}

/// One frame of an input image as a display shows it.
#[derive(Debug, Clone)]
pub struct ShownFrame {
    pub image: GrayImage,
    pub scale: InputScale,
    /// Frames in the file.
    pub frames: u32,
    /// The file's windows (DICOM), for the display only.
    pub presets: Vec<dicom::WindowPreset>,
    /// Why the image is not a radiograph (a colour DICOM image, shown as its luminance).
    pub colour: Option<String>,
}

/// [`decode_frame_with_scale`] for a display: a colour DICOM image is read too (as its
/// luminance), with the reason it is not restored.
pub fn decode_frame_shown(bytes: &[u8], frame: u32) -> Result<ShownFrame> {
    if !bytes.is_empty() && dicom::looks_like_dicom(bytes) {
        let f = dicom::decode_frame(bytes, frame)?;
        let scale = f
            .spacing
            .map(|(mm, name)| InputScale::known(mm, name))
            .unwrap_or_default();
        return Ok(ShownFrame {
            image: f.image,
            scale,
            frames: f.frames,
            presets: f.presets,
            colour: f.colour,
        });
    }
    if frame > 0 {
        return Err(Error::Image(format!(
            "frame {} asked of an image that is not a multi-frame DICOM file",
            frame + 1
        )));
    }
    Ok(ShownFrame {
        image: decode(bytes)?,
        scale: Default::default(),
        frames: 1,
        presets: Vec::new(),
        colour: None,
    })
}

/// Reads a file as [`decode_with_scale`] does, with [`read`]'s size check.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_with_scale(path: &Path) -> Result<(GrayImage, InputScale)> {
    read_frame_with_scale(path, 0).map(|(img, scale, _)| (img, scale))
}

/// Reads a file as [`decode_frame_with_scale`] does, with [`read`]'s size check.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_frame_with_scale(path: &Path, frame: u32) -> Result<(GrayImage, InputScale, u32)> {
    let bytes = read_bytes(path)?;
    decode_frame_with_scale(&bytes, frame).map_err(|e| with_path(path, e))
}

#[cfg(not(target_arch = "wasm32"))]
fn with_path(path: &Path, e: Error) -> Error {
    match e {
        Error::Image(m) => Error::Image(format!("{}: {m}", path.display())),
        Error::Dicom(m) => Error::Dicom(format!("{}: {m}", path.display())),
        other => other,
    }
}

/// A file's bytes, refusing files over [`MAX_FILE_BYTES`] before reading them.
#[cfg(not(target_arch = "wasm32"))]
fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(Error::Image(format!(
            "{}: {} bytes is over the {} MiB limit",
            path.display(),
            meta.len(),
            MAX_FILE_BYTES >> 20
        )));
    }
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Image extensions read from folders (files without an extension are read when their content
/// is DICOM: PACS exports often have none).
pub const IMAGE_EXT: &[&str] = &["png", "jpg", "jpeg", "tif", "tiff", "dcm", "dicom"];

/// The images a path names: the file itself, or the image files of a folder (not recursive,
/// sorted, hidden files skipped): by extension, or without one when the file is DICOM. An
/// empty folder is an error that names it.
#[cfg(not(target_arch = "wasm32"))]
pub fn image_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Error::io(path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_image_file(p))
        .collect();
    v.sort();
    if v.is_empty() {
        return Err(Error::Image(format!(
            "{}: no images ({}, or DICOM without an extension)",
            path.display(),
            IMAGE_EXT.join(", ")
        )));
    }
    Ok(v)
}

/// [`image_files`] of every path, in order.
#[cfg(not(target_arch = "wasm32"))]
pub fn image_inputs(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        files.extend(image_files(p)?);
    }
    if files.is_empty() {
        return Err(Error::Image("no input images found".into()));
    }
    Ok(files)
}

/// A folder entry to read: not hidden, and an image extension or a DICOM file without one.
#[cfg(not(target_arch = "wasm32"))]
fn is_image_file(p: &Path) -> bool {
    if p.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
    {
        return false;
    }
    match p.extension() {
        Some(e) => IMAGE_EXT.contains(&e.to_string_lossy().to_ascii_lowercase().as_str()),
        None => dicom::file_looks_like_dicom(p),
    }
}

/// Reads and decodes a file, refusing files over [`MAX_FILE_BYTES`] before reading them.
#[cfg(not(target_arch = "wasm32"))]
pub fn read(path: &Path) -> Result<GrayImage> {
    let bytes = read_bytes(path)?;
    decode(&bytes).map_err(|e| with_path(path, e))
}

/// PNG bit depth of an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitDepth {
    Eight,
    Sixteen,
}

/// Encodes a grey image as PNG (values clamped to [0, 1]).
pub fn encode_png(img: &GrayImage, depth: BitDepth) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let enc = image::codecs::png::PngEncoder::new(&mut out);
    use image::ImageEncoder;
    let (w, h) = (img.width as u32, img.height as u32);
    let res = match depth {
        BitDepth::Eight => {
            let px: Vec<u8> = img
                .data
                .iter()
                .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
                .collect();
            enc.write_image(&px, w, h, image::ExtendedColorType::L8)
        }
        BitDepth::Sixteen => {
            let px: Vec<u8> = img
                .data
                .iter()
                .flat_map(|v| ((v.clamp(0.0, 1.0) * 65535.0).round() as u16).to_ne_bytes())
                .collect();
            enc.write_image(&px, w, h, image::ExtendedColorType::L16)
        }
    };
    res.map_err(|e| Error::Image(format!("PNG encoding failed: {e}")))?;
    Ok(out)
}

/// `png` with a text chunk `key` = `value` right after its header (PNG `tEXt`: Latin-1 keyword
/// of 1–79 bytes, no NUL): how an output was made travels with the image.
pub fn with_png_text(png: &[u8], key: &str, value: &str) -> Result<Vec<u8>> {
    const SIGNATURE: usize = 8;
    const IHDR_END: usize = SIGNATURE + 8 + 13 + 4;
    if png.len() < IHDR_END || &png[12..16] != b"IHDR" {
        return Err(Error::Image("not a PNG with a header chunk".into()));
    }
    if key.is_empty() || key.len() > 79 || !key.bytes().all(|b| (32..=126).contains(&b)) {
        return Err(Error::Image(format!(
            "PNG text keyword {key:?}: 1–79 printable bytes"
        )));
    }
    let mut data = Vec::with_capacity(key.len() + 1 + value.len());
    data.extend_from_slice(key.as_bytes());
    data.push(0);
    data.extend(value.bytes().filter(|b| *b != 0));
    let mut chunk = Vec::with_capacity(data.len() + 12);
    chunk.extend_from_slice(&(data.len() as u32).to_be_bytes());
    chunk.extend_from_slice(b"tEXt");
    chunk.extend_from_slice(&data);
    chunk.extend_from_slice(&crc32fast::hash(&chunk[4..]).to_be_bytes());
    let mut out = Vec::with_capacity(png.len() + chunk.len());
    out.extend_from_slice(&png[..IHDR_END]);
    out.extend_from_slice(&chunk);
    out.extend_from_slice(&png[IHDR_END..]);
    Ok(out)
}

/// Writes `bytes` to `path` atomically: a temporary file beside it is renamed into place, so a
/// failure or an interruption never leaves a partial `path`.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = dir.join(format!(".{name}.{}.partial", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_sides_have_limits_just_over_and_under() {
        for (w, h) in [
            (MIN_SIDE, MIN_SIDE),
            (MAX_SIDE, MIN_SIDE),
            (MIN_SIDE, MAX_SIDE),
        ] {
            assert!(GrayImage::check_size(w, h).is_ok(), "{w}×{h}");
        }
        for (w, h) in [
            (MIN_SIDE - 1, 64),
            (64, MIN_SIDE - 1),
            (MAX_SIDE + 1, 64),
            (64, MAX_SIDE + 1),
        ] {
            let e = GrayImage::check_size(w, h).unwrap_err().to_string();
            assert!(e.contains(&format!("{w}×{h}")), "{e}");
        }
        // a file one byte over the limit (sparse: nothing is written) is refused unread; a small
        // one is read
        let dir = std::env::temp_dir().join(format!("dxr-io-limit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.png");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_FILE_BYTES + 1)
            .unwrap();
        let e = read_bytes(&big).unwrap_err().to_string();
        assert!(e.contains("over the 512 MiB limit"), "{e}");
        std::fs::File::create(&big).unwrap().set_len(1000).unwrap();
        assert_eq!(read_bytes(&big).unwrap().len(), 1000);
        std::fs::remove_dir_all(&dir).unwrap();
        // a PNG whose header declares 8193 columns is refused by its declared size
        let e = decode(&png(MAX_SIDE as u32 + 1, 8, false))
            .unwrap_err()
            .to_string();
        assert!(e.contains("8193"), "{e}");
    }

    fn png(w: u32, h: u32, sixteen: bool) -> Vec<u8> {
        let img = GrayImage {
            width: w as usize,
            height: h as usize,
            data: (0..w * h).map(|i| i as f32 / (w * h) as f32).collect(),
        };
        encode_png(
            &img,
            if sixteen {
                BitDepth::Sixteen
            } else {
                BitDepth::Eight
            },
        )
        .unwrap()
    }

    #[test]
    fn png_round_trip_8_and_16_bit() {
        for sixteen in [false, true] {
            let bytes = png(20, 12, sixteen);
            let img = decode(&bytes).unwrap();
            assert_eq!((img.width, img.height), (20, 12));
            let tol = if sixteen {
                1.0 / 65535.0
            } else {
                0.5 / 255.0 + 1e-6
            };
            for (i, v) in img.data.iter().enumerate() {
                assert!((v - i as f32 / 240.0).abs() <= tol, "{sixteen} {i} {v}");
            }
        }
    }

    #[test]
    fn bad_images_are_named() {
        assert!(decode(b"").unwrap_err().to_string().contains("empty"));
        assert!(
            decode(b"hello, I am text, not an image at all")
                .unwrap_err()
                .to_string()
                .contains("unrecognised format")
        );
        let bytes = png(32, 32, false);
        let err = decode(&bytes[..bytes.len() / 2]).unwrap_err().to_string();
        assert!(err.contains("damaged or truncated"), "{err}");
        assert!(
            decode(&png(1, 1, false))
                .unwrap_err()
                .to_string()
                .contains("at least")
        );
        assert!(
            decode(&png(8200, 8, false))
                .unwrap_err()
                .to_string()
                .contains("limit")
        );
    }

    #[test]
    fn colour_becomes_grey() {
        let mut out = Vec::new();
        use image::ImageEncoder;
        let px: Vec<u8> = (0..16 * 16).flat_map(|_| [255u8, 255, 255]).collect();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(&px, 16, 16, image::ExtendedColorType::Rgb8)
            .unwrap();
        let img = decode(&out).unwrap();
        assert!(img.data.iter().all(|v| (*v - 1.0).abs() < 1e-4));
    }

    #[test]
    fn atomic_write_leaves_no_partial_file() {
        let dir = std::env::temp_dir().join(format!("dxr-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("out.png");
        write_atomic(&target, b"abc").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"abc");
        // A target inside a missing folder fails and leaves nothing behind.
        let bad = dir.join("missing").join("x.png");
        assert!(write_atomic(&bad, b"abc").is_err());
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
