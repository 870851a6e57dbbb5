//! DICOM radiographs through dicom-rs: bounded reading (guard.rs), the pixel-data decoders of
//! every transfer syntax we name, and the grayscale pipeline a viewer applies (grey.rs), so
//! that what we restore is what a reader sees.

use std::io::Cursor;

use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;
use dicom_pixeldata::PixelDecoder;

use super::GrayImage;
use crate::error::{Error, Result};

mod grey;
mod guard;
mod write;

pub use grey::WindowPreset;
pub(crate) use grey::modality_frame;

pub use guard::MAX_DICOM_NESTING;
pub(crate) use guard::{check_declared_lengths, check_pixel_module, preamble_of};
pub use write::{DicomWriteOptions, write_u16};

/// True when the bytes carry the `DICM` magic (after the 128-byte preamble, or at the start).
pub fn looks_like_dicom(bytes: &[u8]) -> bool {
    (bytes.len() >= 132 && &bytes[128..132] == b"DICM") || bytes.starts_with(b"DICM")
}

/// Whether the file at `path` starts like a DICOM file (reads its first 132 bytes only; a file
/// shorter than that is not one).
#[cfg(not(target_arch = "wasm32"))]
pub fn file_looks_like_dicom(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|_| looks_like_dicom(&head))
}

/// What the reader decodes, for messages: natively JPEG-LS too (CharLS, a C++ library that does
/// not build for wasm32).
#[cfg(not(target_arch = "wasm32"))]
const SUPPORTED: &str =
    "uncompressed, deflate, RLE, JPEG baseline/lossless, JPEG-LS and JPEG 2000 are";
#[cfg(target_arch = "wasm32")]
const SUPPORTED: &str = "the page reads uncompressed, deflate, RLE, JPEG baseline/lossless and JPEG 2000; `dxr` reads JPEG-LS too";

/// Human name of a transfer syntax UID, for messages.
fn ts_name(uid: &str) -> String {
    use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
    use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
    match TransferSyntaxRegistry.get(uid) {
        Some(ts) => format!("{uid} ({})", ts.name()),
        None => uid.to_string(),
    }
}

/// Decodes the first frame of a single-channel DICOM image to [0, 1].
pub fn decode(bytes: &[u8]) -> Result<GrayImage> {
    decode_with_spacing(bytes).map(|(img, _)| img)
}

/// [`decode`], with the pixel pitch in mm when the file gives one: Imager Pixel Spacing (at the
/// detector, what a radiograph's scale is) before Pixel Spacing; zero or unreadable values count
/// as absent; rows and columns averaged.
/// A colour image is refused (see [`DicomFrame::radiograph`]).
pub fn decode_with_spacing(bytes: &[u8]) -> Result<(GrayImage, Option<(f64, &'static str)>)> {
    decode_frame(bytes, 0)?
        .radiograph()
        .map(|f| (f.image, f.spacing))
}

/// One frame of a DICOM image, read.
#[derive(Debug, Clone)]
pub struct DicomFrame {
    pub image: GrayImage,
    /// Pixel pitch in mm and the tag it came from.
    pub spacing: Option<(f64, &'static str)>,
    /// Frames in the file (Number of Frames; 1 when absent).
    pub frames: u32,
    /// The file's windows, for the display only.
    pub presets: Vec<WindowPreset>,
    /// Why this is not a radiograph (a colour image, shown as its luminance), if it is not:
    /// such a frame is shown, never restored.
    pub colour: Option<String>,
}

/// The refusal of a colour image for restoration.
pub(crate) fn not_restored(why: &str) -> Error {
    Error::Dicom(format!("{why}: not restored"))
}

impl DicomFrame {
    /// The frame, if it is a radiograph to restore; a colour image is refused by name (it may
    /// still be shown).
    pub fn radiograph(self) -> Result<Self> {
        match self.colour {
            Some(why) => Err(not_restored(&why)),
            None => Ok(self),
        }
    }
}

/// Frame `frame` (0-based) of a DICOM image, as [`decode_with_spacing`] reads the first; a
/// frame past the file's is refused with the count.
pub fn decode_frame(bytes: &[u8], frame: u32) -> Result<DicomFrame> {
    check_declared_lengths(bytes)?;
    use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
    use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
    let bad = |m: String| Error::Dicom(m);
    let preamble = preamble_of(bytes);

    // 1. header only: check the transfer syntax and the size before touching pixel data
    let header = OpenFileOptions::new()
        .read_preamble(preamble)
        .read_until(tags::PIXEL_DATA)
        .from_reader(Cursor::new(bytes))
        .map_err(|e| bad(format!("not a readable DICOM file ({e})")))?;
    let uid = header
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .trim()
        .to_string();
    match TransferSyntaxRegistry.get(&uid) {
        Some(ts) if ts.can_decode_all() => {}
        _ => {
            return Err(bad(format!(
                "transfer syntax {} is not supported ({SUPPORTED})",
                ts_name(&uid)
            )));
        }
    }
    let get_u32 = |tag| -> Result<u32> {
        header
            .element(tag)
            .map_err(|_| bad(format!("missing {tag} (not an image?)")))?
            .to_int::<u32>()
            .map_err(|e| bad(format!("{tag}: {e}")))
    };
    let (rows, cols) = (
        get_u32(tags::ROWS)? as usize,
        get_u32(tags::COLUMNS)? as usize,
    );
    GrayImage::check_size(cols, rows).map_err(|e| bad(e.to_string()))?;
    let frames = header
        .element(tags::NUMBER_OF_FRAMES)
        .ok()
        .and_then(|e| e.to_int::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    if frame >= frames {
        return Err(bad(format!(
            "frame {} asked, the file has {frames} frame(s)",
            frame + 1
        )));
    }
    let spacing = [
        (tags::IMAGER_PIXEL_SPACING, "DICOM Imager Pixel Spacing"),
        (tags::PIXEL_SPACING, "DICOM Pixel Spacing"),
    ]
    .into_iter()
    .find_map(|(tag, name)| {
        let v = header.element(tag).ok()?.to_multi_float64().ok()?;
        let ok: Vec<f64> = v
            .into_iter()
            .filter(|s| s.is_finite() && *s > 0.0)
            .collect();
        (ok.len() == 2 || ok.len() == 1).then(|| (ok.iter().sum::<f64>() / ok.len() as f64, name))
    });

    // 2. whole object, decode the frame with the modality LUT (rescale slope/intercept)
    let obj = OpenFileOptions::new()
        .read_preamble(preamble)
        .from_reader(Cursor::new(bytes))
        .map_err(|e| bad(format!("DICOM file is damaged or truncated ({e})")))?;
    check_pixel_module(&obj).map_err(bad)?;
    let pixels = obj.decode_pixel_data_frame(frame).map_err(|e| {
        bad(format!(
            "pixel data cannot be decoded as {} ({e}): damaged or truncated",
            ts_name(&uid)
        ))
    })?;
    // 3. what a reader sees: the file's grayscale pipeline (grey.rs)
    let shown = grey::shown_frame(&obj, &pixels, 0, frame).map_err(bad)?;
    Ok(DicomFrame {
        image: GrayImage {
            width: cols,
            height: rows,
            data: shown.data,
        },
        presets: shown.presets,
        colour: shown.colour,
        spacing,
        frames,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

    fn make_dicom(
        rows: u16,
        cols: u16,
        px: &[u16],
        pi: &str,
        ts: &str,
        rescale: Option<(f64, f64)>,
        window: Option<(f64, f64)>,
    ) -> Vec<u8> {
        write::make_dicom(rows, cols, px, pi, ts, rescale, window).unwrap()
    }

    #[test]
    fn monochrome1_is_inverted_and_monochrome2_is_not() {
        let px: Vec<u16> = (0..64).map(|i| i * 10).collect();
        let m2 = decode(&make_dicom(
            8,
            8,
            &px,
            "MONOCHROME2",
            EXPLICIT_LE,
            None,
            None,
        ))
        .unwrap();
        let m1 = decode(&make_dicom(
            8,
            8,
            &px,
            "MONOCHROME1",
            EXPLICIT_LE,
            None,
            None,
        ))
        .unwrap();
        assert_eq!(m2.data[0], 0.0);
        assert_eq!(m2.data[63], 1.0);
        for (a, b) in m1.data.iter().zip(&m2.data) {
            assert!((a + b - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn rescale_and_window_are_applied() {
        let px: Vec<u16> = (0..64).map(|i| i * 10).collect();
        // Rescale ×2 − 100, window centred at 300 (rescaled units), width 201: pixel 200 → 300.
        let img = decode(&make_dicom(
            8,
            8,
            &px,
            "MONOCHROME2",
            EXPLICIT_LE,
            Some((2.0, -100.0)),
            Some((300.0, 201.0)),
        ))
        .unwrap();
        let at = |raw: u16| img.data[(raw / 10) as usize];
        assert!((at(200) - 0.5).abs() < 0.01, "{}", at(200));
        assert_eq!(at(0), 0.0);
        assert_eq!(at(630), 1.0);
    }

    #[test]
    fn unsupported_transfer_syntax_is_named() {
        let px = vec![0u16; 64];
        let bytes = make_dicom(
            8,
            8,
            &px,
            "MONOCHROME2",
            "1.2.840.10008.1.2.4.100",
            None,
            None,
        );
        let err = decode(&bytes).unwrap_err().to_string();
        assert!(
            err.contains("1.2.840.10008.1.2.4.100") && err.contains("not supported"),
            "{err}"
        );
    }

    #[test]
    fn a_huge_declared_length_is_refused_before_any_allocation() {
        let px: Vec<u16> = (0..64).collect();
        for ts in [EXPLICIT_LE, "1.2.840.10008.1.2"] {
            let mut bytes = make_dicom(8, 8, &px, "MONOCHROME2", ts, None, None);
            assert!(decode(&bytes).is_ok(), "{ts}: the untouched file decodes");
            // Pixel data (7FE0,0010): set its 4-byte length to ~2 GB.
            let tag = [0xE0u8, 0x7F, 0x10, 0x00];
            let at = bytes.windows(4).rposition(|w| w == tag).unwrap();
            let len_at = if ts == EXPLICIT_LE { at + 8 } else { at + 4 };
            bytes[len_at..len_at + 4].copy_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
            let err = decode(&bytes).unwrap_err().to_string();
            assert!(
                err.contains("(7FE0,0010) declares 2147483632 bytes"),
                "{ts}: {err}"
            );
        }
    }

    #[test]
    fn truncated_and_tiny_files_fail_cleanly() {
        let px: Vec<u16> = (0..64).collect();
        let bytes = make_dicom(8, 8, &px, "MONOCHROME2", EXPLICIT_LE, None, None);
        assert!(decode(&bytes[..bytes.len() - 40]).is_err());
        let tiny = make_dicom(1, 1, &[5], "MONOCHROME2", EXPLICIT_LE, None, None);
        assert!(decode(&tiny).unwrap_err().to_string().contains("at least"));
    }
}
