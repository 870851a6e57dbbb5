//! DICOM CR/DX radiographs through dicom-rs: modality rescale, VOI window when present,
//! MONOCHROME1 inverted so that bone is bright, as on a film viewer.

use std::io::Cursor;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::{PhotometricInterpretation, PixelDecoder};

use super::GrayImage;
use crate::error::{Error, Result};

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

/// Deepest nesting of sequences (a sequence and its item count one level each) a file may have:
/// dicom-rs reads nested data sets recursively, so a file of 100,000 nested sequences would
/// overflow the stack. Real files nest a few levels.
pub const MAX_DICOM_NESTING: usize = 64;

/// Explicit VR little endian, deflated: the data set after the file meta group is a raw
/// deflate stream.
const DEFLATED_UID: &str = "1.2.840.10008.1.2.1.99";

/// Walks the elements (into sequences and items) and refuses one whose declared length runs
/// past the end of the file, and sequences nested deeper than [`MAX_DICOM_NESTING`]: dicom-rs
/// allocates a declared length before reading it and parses nested items recursively, so a
/// damaged or hostile file could otherwise ask for gigabytes or overflow the stack. A deflated
/// data set is inflated (at most [`super::MAX_FILE_BYTES`]) and walked the same way.
pub(crate) fn check_declared_lengths(bytes: &[u8]) -> Result<()> {
    let start = if bytes.starts_with(b"DICM") { 4 } else { 132 };
    match walk(bytes, start, None)? {
        Walked::Done => Ok(()),
        Walked::Deflated(at) => {
            use std::io::Read;
            let mut inflated = Vec::new();
            flate2::read::DeflateDecoder::new(&bytes[at..])
                .take(super::MAX_FILE_BYTES + 1)
                .read_to_end(&mut inflated)
                .map_err(|e| Error::Dicom(format!("the deflated data set is damaged ({e})")))?;
            if inflated.len() as u64 > super::MAX_FILE_BYTES {
                return Err(Error::TooLarge(format!(
                    "the deflated data set inflates past {} MiB",
                    super::MAX_FILE_BYTES >> 20
                )));
            }
            walk(&inflated, 0, Some(false)).map(|_| ())
        }
    }
}

enum Walked {
    Done,
    /// The file meta group ended at this offset and announced a deflated data set.
    Deflated(usize),
}

/// One open sequence or item: closed by a delimiter (undefined length) or at an offset.
#[derive(Clone, Copy)]
struct Open {
    end: Option<usize>,
    /// Encapsulated pixel data: its items are fragments, not data sets.
    fragments: bool,
}

/// The walk of [`check_declared_lengths`] from `pos`; `implicit` is known for an inflated data
/// set, else read from the meta group's transfer syntax.
fn walk(bytes: &[u8], mut pos: usize, known_implicit: Option<bool>) -> Result<Walked> {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    let mut implicit = known_implicit.unwrap_or(false);
    let mut in_meta = known_implicit.is_none();
    // dicom-rs reads the meta group by its group length (0002,0000), whatever the groups of
    // the elements inside it (all explicit VR), and the data set from the first element at or
    // past that length (found by fuzzing: a group-0000 element inside the length was read as
    // explicit VR by dicom-rs and as implicit by this walk, which then missed a 4 GB length)
    let mut meta_end: Option<usize> = None;
    let mut deflated = false;
    let mut open: Vec<Open> = Vec::new();
    // explicit VR big endian (a retired transfer syntax dicom-rs still reads): the data set's
    // tags and lengths are big endian, the meta group's little endian (a fuzzer finding)
    let mut big_endian = false;
    let u16_at = |p: usize, be: bool| {
        let b = [bytes[p], bytes[p + 1]];
        if be {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    };
    let u32_at = |p: usize, be: bool| {
        let b = [bytes[p], bytes[p + 1], bytes[p + 2], bytes[p + 3]];
        if be {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    let past_end = |group: u16, element: u16, len: u32, at: usize| {
        Error::Dicom(format!(
            "element ({group:04X},{element:04X}) declares {len} bytes but only {} remain: the file is truncated or malformed",
            bytes.len() - at.min(bytes.len())
        ))
    };
    while pos + 8 <= bytes.len() {
        while open.last().is_some_and(|o| o.end.is_some_and(|e| pos >= e)) {
            open.pop();
        }
        if in_meta && meta_end.is_some_and(|e| pos >= e) {
            in_meta = false;
            if deflated {
                return Ok(Walked::Deflated(pos));
            }
        }
        let be = big_endian && !in_meta;
        let (group, element) = (u16_at(pos, be), u16_at(pos + 2, be));
        if in_meta && meta_end.is_none() && (group, element) != (0x0002, 0x0000) {
            return Err(Error::Dicom(format!(
                "the file meta group starts with ({group:04X},{element:04X}), not with its group length (0002,0000)"
            )));
        }
        if group == 0xFFFE {
            // items and delimiters: tag + 4-byte length, no VR
            let len = u32_at(pos + 4, be);
            pos += 8;
            match element {
                0xE00D | 0xE0DD => {
                    if let Some(i) = open.iter().rposition(|o| o.end.is_none()) {
                        open.truncate(i);
                    }
                }
                // an item, or any other (FFFE,xxxx), which dicom-rs reads as a UN value (a
                // fuzzer finding: skipped here as 8 bytes, its 4 GB length went unchecked)
                _ if len == u32::MAX => open.push(Open {
                    end: None,
                    fragments: false,
                }),
                0xE000 => {
                    let end = pos + len as usize;
                    if end > bytes.len() {
                        return Err(past_end(group, element, len, pos));
                    }
                    if open.last().is_some_and(|o| o.fragments) {
                        pos = end;
                    } else {
                        open.push(Open {
                            end: Some(end),
                            fragments: false,
                        });
                    }
                }
                _ => {
                    let end = pos + len as usize;
                    if end > bytes.len() {
                        return Err(past_end(group, element, len, pos));
                    }
                    pos = end;
                }
            }
        } else {
            // The file meta group is all explicit VR; the data set follows its transfer syntax.
            let explicit = in_meta || !implicit;
            let (vr, len, header) = if explicit {
                let vr = [bytes[pos + 4], bytes[pos + 5]];
                // the VRs with a 2-byte length; any other, an unknown one included, has
                // 2 reserved bytes and a 4-byte length (as dicom-rs reads it)
                let short = matches!(
                    &vr,
                    b"AE"
                        | b"AS"
                        | b"AT"
                        | b"CS"
                        | b"DA"
                        | b"DS"
                        | b"DT"
                        | b"FL"
                        | b"FD"
                        | b"IS"
                        | b"LO"
                        | b"LT"
                        | b"PN"
                        | b"SH"
                        | b"SL"
                        | b"SS"
                        | b"ST"
                        | b"TM"
                        | b"UI"
                        | b"UL"
                        | b"US"
                );
                if !short {
                    if pos + 12 > bytes.len() {
                        break;
                    }
                    (Some(vr), u32_at(pos + 8, be), 12)
                } else {
                    (Some(vr), u16_at(pos + 6, be) as u32, 8)
                }
            } else {
                (None, u32_at(pos + 4, be), 8)
            };
            pos += header;
            // the VR dicom-rs reads the value as: the one written, or the dictionary's
            let vr = match vr {
                Some(vr) => vr,
                None if (group, element) == (0x7FE0, 0x0010)
                    || (group >> 8 == 0x60 && element == 0x3000) =>
                {
                    *b"OW"
                }
                None => dicom_dictionary_std::StandardDataDictionary
                    .by_tag(dicom_core::Tag(group, element))
                    .map_or(*b"UN", |e| e.vr().relaxed().to_bytes()),
            };
            let is_sq = &vr == b"SQ";
            // dicom-rs reads len / size numbers and consumes only those bytes, so a length that
            // is not a multiple of the size would shift every later element (found by fuzzing:
            // the next "header" then declared 1.3 GB)
            let size = binary_value_size(&vr);
            if len != u32::MAX && len % size != 0 {
                return Err(Error::Dicom(format!(
                    "element ({group:04X},{element:04X}) {} declares {len} bytes, not a multiple of its {size}-byte values: the file is malformed",
                    String::from_utf8_lossy(&vr)
                )));
            }
            if len == u32::MAX {
                open.push(Open {
                    end: None,
                    fragments: (group, element) == (0x7FE0, 0x0010),
                });
            } else {
                let end = pos + len as usize;
                if end > bytes.len() {
                    return Err(past_end(group, element, len, pos));
                }
                if in_meta && meta_end.is_none() {
                    // (0002,0000): 4 bytes, as dicom-rs requires
                    if len != 4 {
                        return Err(Error::Dicom(format!(
                            "the file meta group length (0002,0000) declares {len} bytes, not 4"
                        )));
                    }
                    meta_end = Some(end + u32_at(pos, false) as usize);
                }
                if in_meta && (group, element) == (0x0002, 0x0010) {
                    let uid = String::from_utf8_lossy(&bytes[pos..end]);
                    // trimmed as dicom-rs trims it (any whitespace and NULs: a fuzzer finding)
                    let uid = uid.trim_end_matches(|c: char| c.is_whitespace() || c == '\0');
                    implicit = uid == "1.2.840.10008.1.2";
                    deflated = uid == DEFLATED_UID;
                    big_endian = uid == "1.2.840.10008.1.2.2";
                }
                if is_sq {
                    open.push(Open {
                        end: Some(end),
                        fragments: false,
                    });
                } else {
                    pos = end;
                }
            }
        }
        if open.len() > 2 * MAX_DICOM_NESTING {
            return Err(Error::TooLarge(format!(
                "sequences nest deeper than {MAX_DICOM_NESTING} levels"
            )));
        }
    }
    Ok(Walked::Done)
}

/// The size of one value of a binary VR (1 for strings and bytes, which may have any length).
fn binary_value_size(vr: &[u8; 2]) -> u32 {
    match vr {
        b"US" | b"SS" | b"OW" => 2,
        b"UL" | b"SL" | b"FL" | b"OF" | b"OL" | b"AT" => 4,
        b"FD" | b"OD" | b"SV" | b"UV" | b"OV" => 8,
        _ => 1,
    }
}

/// Bits Allocated and Bits Stored as a greyscale image of up to 32 bits may have them: the pixel
/// decoder asserts (panics) on a Bits Stored of 0 or over 32 (found by fuzzing), so such files
/// are refused by name first.
pub(crate) fn check_pixel_module(
    obj: &dicom_object::DefaultDicomObject,
) -> std::result::Result<(), String> {
    let get = |tag, name: &str| -> std::result::Result<Option<u16>, String> {
        match obj.element_opt(tag) {
            Ok(Some(e)) => e
                .to_int::<u16>()
                .map(Some)
                .map_err(|_| format!("{name} {tag} is not a number")),
            _ => Ok(None),
        }
    };
    let allocated = get(tags::BITS_ALLOCATED, "Bits Allocated")?;
    let stored = get(tags::BITS_STORED, "Bits Stored")?;
    if let Some(a) = allocated
        && !matches!(a, 1 | 8 | 16 | 32)
    {
        return Err(format!(
            "Bits Allocated is {a}; a greyscale image has 1, 8, 16 or 32"
        ));
    }
    if let Some(b) = stored
        && (b == 0 || b > allocated.unwrap_or(32).max(1))
    {
        return Err(format!(
            "Bits Stored is {b}; it must lie in 1..=Bits Allocated ({})",
            allocated.map_or("absent".to_string(), |a| a.to_string())
        ));
    }
    Ok(())
}

/// Files written without the 128-byte preamble start with the magic itself.
pub(crate) fn preamble_of(bytes: &[u8]) -> ReadPreamble {
    if bytes.starts_with(b"DICM") {
        ReadPreamble::Never
    } else {
        ReadPreamble::Always
    }
}

/// Decodes the first frame of a single-channel DICOM image to [0, 1].
pub fn decode(bytes: &[u8]) -> Result<GrayImage> {
    decode_with_spacing(bytes).map(|(img, _)| img)
}

/// [`decode`], with the pixel pitch in mm when the file gives one: Imager Pixel Spacing (at the
/// detector, what a radiograph's scale is) before Pixel Spacing; zero or unreadable values count
/// as absent; rows and columns averaged.
pub fn decode_with_spacing(bytes: &[u8]) -> Result<(GrayImage, Option<(f64, &'static str)>)> {
    decode_frame(bytes, 0).map(|f| (f.image, f.spacing))
}

/// One frame of a DICOM image, read.
#[derive(Debug, Clone)]
pub struct DicomFrame {
    pub image: GrayImage,
    /// Pixel pitch in mm and the tag it came from.
    pub spacing: Option<(f64, &'static str)>,
    /// Frames in the file (Number of Frames; 1 when absent).
    pub frames: u32,
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
    if pixels.samples_per_pixel() != 1 {
        return Err(bad(format!(
            "{} samples per pixel; only greyscale radiographs are supported",
            pixels.samples_per_pixel()
        )));
    }
    let values: Vec<f32> = pixels
        .to_vec_frame(0)
        .map_err(|e| bad(format!("pixel conversion failed ({e})")))?;
    if values.len() != rows * cols {
        return Err(bad(format!(
            "pixel data holds {} values for {rows}×{cols}",
            values.len()
        )));
    }

    // 3. VOI window when given, else the full range
    let window = pixels
        .window()
        .ok()
        .flatten()
        .and_then(|w| w.first().copied())
        .filter(|w| w.width > 1.0);
    let mut data: Vec<f32> = match window {
        Some(w) => {
            let (c, wd) = (w.center as f32, w.width as f32);
            values
                .iter()
                .map(|v| (((v - (c - 0.5)) / (wd - 1.0)) + 0.5).clamp(0.0, 1.0))
                .collect()
        }
        None => {
            let (lo, hi) = values
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
                    (a.min(*v), b.max(*v))
                });
            let span = (hi - lo).max(f32::EPSILON);
            values.iter().map(|v| (v - lo) / span).collect()
        }
    };

    // 4. MONOCHROME1: low values are white
    if matches!(
        pixels.photometric_interpretation(),
        PhotometricInterpretation::Monochrome1
    ) {
        data.iter_mut().for_each(|v| *v = 1.0 - *v);
    }
    Ok(DicomFrame {
        image: GrayImage {
            width: cols,
            height: rows,
            data,
        },
        spacing,
        frames,
    })
}

/// Options of [`write_u16`].
#[derive(Debug, Clone, Default)]
pub struct DicomWriteOptions {
    /// Transfer syntax UID; explicit VR little endian when `None`.
    pub transfer_syntax: Option<String>,
    /// Rescale slope and intercept.
    pub rescale: Option<(f64, f64)>,
    /// VOI window centre and width.
    pub window: Option<(f64, f64)>,
    /// Modality (CR when `None`); `CT` also writes the CT image SOP class.
    pub modality: Option<String>,
    /// Image Position (Patient), LPS mm: one slice of a series.
    pub position: Option<[f64; 3]>,
    /// Image Orientation (Patient): row then column direction cosines.
    pub orientation: Option<[f64; 6]>,
    /// Pixel Spacing: between rows, then between columns (mm).
    pub pixel_spacing: Option<[f64; 2]>,
    /// Pixel Representation 1 (two's complement), as CT slices often are.
    pub signed: bool,
}

/// Writes a 16-bit greyscale radiograph (`photometric` = MONOCHROME1/2, 12 bits stored) as a DICOM
/// file in memory, uncompressed: for exports and for tests of the reader.
pub fn write_u16(
    rows: u16,
    cols: u16,
    pixels: &[u16],
    photometric: &str,
    opts: &DicomWriteOptions,
) -> Result<Vec<u8>> {
    let mut obj = base_object(rows, cols, pixels, photometric, opts.rescale, opts.window);
    let put = |obj: &mut InMemDicomObject, tag, vr, v: PrimitiveValue| {
        obj.put(DataElement::new(tag, vr, v))
    };
    let ds = |v: &[f64]| PrimitiveValue::Strs(v.iter().map(|x| format!("{x}")).collect());
    if let Some(m) = &opts.modality {
        put(
            &mut obj,
            tags::MODALITY,
            VR::CS,
            PrimitiveValue::from(m.as_str()),
        );
    }
    if let Some(p) = opts.position {
        put(&mut obj, tags::IMAGE_POSITION_PATIENT, VR::DS, ds(&p));
    }
    if let Some(o) = opts.orientation {
        put(&mut obj, tags::IMAGE_ORIENTATION_PATIENT, VR::DS, ds(&o));
    }
    if let Some(s) = opts.pixel_spacing {
        put(&mut obj, tags::PIXEL_SPACING, VR::DS, ds(&s));
    }
    if opts.signed {
        put(
            &mut obj,
            tags::PIXEL_REPRESENTATION,
            VR::US,
            PrimitiveValue::from(1u16),
        );
    }
    finish_dicom(
        obj,
        opts.transfer_syntax
            .as_deref()
            .unwrap_or("1.2.840.10008.1.2.1"),
    )
}

#[cfg(test)]
fn make_dicom(
    rows: u16,
    cols: u16,
    pixels: &[u16],
    photometric: &str,
    ts: &str,
    rescale: Option<(f64, f64)>,
    window: Option<(f64, f64)>,
) -> Result<Vec<u8>> {
    finish_dicom(
        base_object(rows, cols, pixels, photometric, rescale, window),
        ts,
    )
}

fn base_object(
    rows: u16,
    cols: u16,
    pixels: &[u16],
    photometric: &str,
    rescale: Option<(f64, f64)>,
    window: Option<(f64, f64)>,
) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    let put = |obj: &mut InMemDicomObject, tag, vr, v: PrimitiveValue| {
        obj.put(DataElement::new(tag, vr, v))
    };
    put(
        &mut obj,
        tags::SOP_CLASS_UID,
        VR::UI,
        PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.1"),
    );
    put(
        &mut obj,
        tags::SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from("1.2.3.4"),
    );
    put(&mut obj, tags::MODALITY, VR::CS, PrimitiveValue::from("CR"));
    put(&mut obj, tags::ROWS, VR::US, PrimitiveValue::from(rows));
    put(&mut obj, tags::COLUMNS, VR::US, PrimitiveValue::from(cols));
    put(
        &mut obj,
        tags::SAMPLES_PER_PIXEL,
        VR::US,
        PrimitiveValue::from(1u16),
    );
    put(
        &mut obj,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        PrimitiveValue::from(photometric),
    );
    put(
        &mut obj,
        tags::BITS_ALLOCATED,
        VR::US,
        PrimitiveValue::from(16u16),
    );
    put(
        &mut obj,
        tags::BITS_STORED,
        VR::US,
        PrimitiveValue::from(12u16),
    );
    put(
        &mut obj,
        tags::HIGH_BIT,
        VR::US,
        PrimitiveValue::from(11u16),
    );
    put(
        &mut obj,
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(0u16),
    );
    if let Some((slope, intercept)) = rescale {
        put(
            &mut obj,
            tags::RESCALE_SLOPE,
            VR::DS,
            PrimitiveValue::from(slope.to_string()),
        );
        put(
            &mut obj,
            tags::RESCALE_INTERCEPT,
            VR::DS,
            PrimitiveValue::from(intercept.to_string()),
        );
    }
    if let Some((c, w)) = window {
        put(
            &mut obj,
            tags::WINDOW_CENTER,
            VR::DS,
            PrimitiveValue::from(c.to_string()),
        );
        put(
            &mut obj,
            tags::WINDOW_WIDTH,
            VR::DS,
            PrimitiveValue::from(w.to_string()),
        );
    }
    let raw: Vec<u8> = pixels.iter().flat_map(|p| p.to_le_bytes()).collect();
    put(
        &mut obj,
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::from(raw),
    );
    obj
}

fn finish_dicom(obj: InMemDicomObject, ts: &str) -> Result<Vec<u8>> {
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(ts)
        .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.1")
        .media_storage_sop_instance_uid("1.2.3.4")
        .build()
        .map_err(|e| Error::Dicom(format!("building the file meta table: {e}")))?;
    let file = obj.with_exact_meta(meta);
    let mut out = Vec::new();
    file.write_all(&mut out)
        .map_err(|e| Error::Dicom(format!("writing DICOM: {e}")))?;
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Preamble, magic and a file meta group announcing transfer syntax `uid`.
    fn meta(uid: &str) -> Vec<u8> {
        let el = |g: u16, e: u16, vr: &[u8; 2], v: &[u8]| {
            let mut b = [g.to_le_bytes(), e.to_le_bytes()].concat();
            b.extend(vr);
            if vr == b"OB" {
                b.extend([0, 0]);
                b.extend((v.len() as u32).to_le_bytes());
            } else {
                b.extend((v.len() as u16).to_le_bytes());
            }
            b.extend(v);
            b
        };
        let mut uid = uid.as_bytes().to_vec();
        if uid.len() % 2 == 1 {
            uid.push(0);
        }
        let group = [
            el(2, 1, b"OB", &[0, 1]),
            el(2, 2, b"UI", b"1.2.840.10008.5.1.4.1.1.1\0"),
            el(2, 3, b"UI", b"1.2.3.4\0"),
            el(2, 0x10, b"UI", &uid),
        ]
        .concat();
        let mut out = vec![0u8; 128];
        out.extend(b"DICM");
        out.extend(el(2, 0, b"UL", &(group.len() as u32).to_le_bytes()));
        out.extend(group);
        out
    }

    /// `depth` nested undefined-length sequences, each with one item, all closed.
    fn nested(depth: usize) -> Vec<u8> {
        let mut b = Vec::new();
        for _ in 0..depth {
            b.extend([0x08, 0x00, 0x15, 0x11]);
            b.extend(b"SQ\0\0");
            b.extend([0xFF; 4]);
            b.extend([0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        for _ in 0..depth {
            b.extend([0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
            b.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        }
        b
    }

    #[test]
    fn sequences_nested_past_the_limit_are_refused_before_parsing() {
        let file = |depth| [meta(EXPLICIT_LE), nested(depth)].concat();
        check_declared_lengths(&file(MAX_DICOM_NESTING)).unwrap();
        for depth in [MAX_DICOM_NESTING + 1, 100_000] {
            let e = check_declared_lengths(&file(depth)).unwrap_err();
            assert!(matches!(e, Error::TooLarge(_)), "{e}");
            assert!(e.to_string().contains("nest deeper than 64"), "{e}");
            // and the decoder says so instead of overflowing its stack
            assert!(
                decode(&file(depth))
                    .unwrap_err()
                    .to_string()
                    .contains("nest deeper")
            );
        }
        // two sequences one after the other are not nesting
        let flat = [
            meta(EXPLICIT_LE),
            nested(MAX_DICOM_NESTING),
            nested(MAX_DICOM_NESTING),
        ]
        .concat();
        check_declared_lengths(&flat).unwrap();
    }

    #[test]
    fn a_binary_value_whose_length_is_not_a_multiple_of_its_size_is_refused() {
        // dicom-rs would read (0028,0002) SL of 2 bytes as 0 numbers and take the next
        // element's header 2 bytes early (a fuzzer finding that then allocated 1.3 GB)
        let el = |g: u16, e: u16, vr: &[u8; 2], v: &[u8]| {
            let mut b = [g.to_le_bytes(), e.to_le_bytes()].concat();
            b.extend(vr);
            b.extend((v.len() as u16).to_le_bytes());
            b.extend(v);
            b
        };
        let file = |vr: &[u8; 2], n: usize| {
            [
                meta(EXPLICIT_LE),
                el(0x28, 2, vr, &vec![1; n]),
                el(0x28, 4, b"CS", b"MONOCHROME2 "),
            ]
            .concat()
        };
        for (vr, size) in [(b"US", 2), (b"SL", 4), (b"FL", 4), (b"FD", 8), (b"AT", 4)] {
            check_declared_lengths(&file(vr, size)).unwrap();
            check_declared_lengths(&file(vr, 2 * size)).unwrap();
            let e = check_declared_lengths(&file(vr, size + 1))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("(0028,0002)") && e.contains("not a multiple"),
                "{e}"
            );
        }
        // strings and bytes may have any length
        check_declared_lengths(&file(b"CS", 3)).unwrap();
        // implicit VR: the dictionary's VR counts (Rows is US)
        let mut rows = [0x28u16.to_le_bytes(), 0x10u16.to_le_bytes()].concat();
        rows.extend(3u32.to_le_bytes());
        rows.extend([1, 2, 3]);
        let e = check_declared_lengths(&[meta("1.2.840.10008.1.2"), rows].concat())
            .unwrap_err()
            .to_string();
        assert!(e.contains("(0028,0010) US declares 3 bytes"), "{e}");
    }

    #[test]
    fn a_deflated_data_set_is_inflated_under_the_file_limit_and_walked() {
        use std::io::Write;
        let deflate = |body: &dyn Fn(&mut dyn Write)| {
            let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
            body(&mut z);
            [meta(DEFLATED_UID), z.finish().unwrap()].concat()
        };
        // nesting hidden inside the deflate stream is found
        let deep = deflate(&|z| z.write_all(&nested(MAX_DICOM_NESTING + 1)).unwrap());
        let e = check_declared_lengths(&deep).unwrap_err().to_string();
        assert!(e.contains("nest deeper"), "{e}");
        let ok = deflate(&|z| z.write_all(&nested(3)).unwrap());
        check_declared_lengths(&ok).unwrap();
        // a bomb: under 1 MB that inflates past the 512 MiB file limit
        let bomb = deflate(&|z| {
            let zeros = vec![0u8; 1 << 20];
            for _ in 0..=(crate::io::MAX_FILE_BYTES >> 20) {
                z.write_all(&zeros).unwrap();
            }
        });
        assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
        let e = check_declared_lengths(&bomb).unwrap_err();
        assert!(
            matches!(e, Error::TooLarge(_)) && e.to_string().contains("inflates past 512 MiB"),
            "{e}"
        );
    }

    #[test]
    fn the_meta_group_ends_where_its_group_length_says_as_dicom_rs_reads_it() {
        // dicom-rs reads every element inside the group length as explicit VR, an off-group one
        // included; the data set (implicit VR here) starts after it (a fuzzer finding: read as
        // implicit, the walk lost its place and missed a 4 GB length dicom-rs then allocated)
        let mut file = meta("1.2.840.10008.1.2");
        let off_group = [&[0x08, 0x00, 0x20, 0x00][..], b"LO", &[4, 0], b"abcd"].concat();
        let at = 128 + 4 + 8; // the value of (0002,0000)
        let length = u32::from_le_bytes(file[at..at + 4].try_into().unwrap());
        file[at..at + 4].copy_from_slice(&(length + off_group.len() as u32).to_le_bytes());
        file.extend(&off_group);
        let element = |len: u32, value: &[u8]| {
            [&[0x10, 0x00, 0x10, 0x00][..], &len.to_le_bytes(), value].concat()
        };
        check_declared_lengths(&[file.clone(), element(4, b"AB^C")].concat()).unwrap();
        let e = check_declared_lengths(&[file.clone(), element(0xFFFF_FF00, &[0; 16])].concat())
            .unwrap_err()
            .to_string();
        assert!(e.contains("(0010,0010) declares 4294967040 bytes"), "{e}");
        // dicom-rs refuses a meta group that does not start with its length; so does the walk
        let mut no_length = meta(EXPLICIT_LE);
        no_length.drain(132..144);
        let e = check_declared_lengths(&no_length).unwrap_err().to_string();
        assert!(e.contains("not with its group length (0002,0000)"), "{e}");
        assert!(decode(&no_length).is_err());
    }

    const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

    fn make_dicom(
        rows: u16,
        cols: u16,
        px: &[u16],
        pi: &str,
        ts: &str,
        rescale: Option<(f64, f64)>,
        window: Option<(f64, f64)>,
    ) -> Vec<u8> {
        super::make_dicom(rows, cols, px, pi, ts, rescale, window).unwrap()
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
