//! The greyscale pipeline of PS3.3 C.11, read from the file: stored values (Bits Stored, High
//! Bit, Pixel Representation) → Modality LUT (rescale, or the Modality LUT Sequence) → VOI LUT
//! (the VOI LUT Sequence, else the first usable window with its VOI LUT Function, else the
//! image's own range) → Presentation LUT (INVERSE, or MONOCHROME1 when the file names no shape).
//! Pixel Padding is kept out of all of it and shown black. What a reader sees on a viewer with
//! the file's first settings is what we restore; the file's windows are only offered to the
//! display ([`WindowPreset`]).

use std::borrow::Cow;

use dicom_core::{PrimitiveValue, Tag};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_pixeldata::DecodedPixelData;

type Obj = InMemDicomObject;
type Res<T> = std::result::Result<T, String>;

/// A window the file offers, in the decoded image's [0, 1] units: the page's Window/Level
/// controls (`level` the centre, `width` the span; they may reach past [0, 1] when the window
/// is wider than the one restored).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WindowPreset {
    pub label: String,
    pub level: f32,
    pub width: f32,
}

/// One frame as a reader sees it.
pub(crate) struct Shown {
    /// Row-major values in [0, 1].
    pub data: Vec<f32>,
    pub presets: Vec<WindowPreset>,
    /// Why this is not a radiograph (a colour image, shown as its luminance), if it is not.
    pub colour: Option<String>,
}

/// Where the attributes of one frame are: its per-frame functional group's items, the shared
/// group's, then the data set itself (enhanced multi-frame files keep rescale and windows in
/// the functional groups).
struct Scopes<'a>(Vec<&'a Obj>);

fn item(obj: &Obj, tag: Tag, i: usize) -> Option<&Obj> {
    obj.element_opt(tag).ok()??.items()?.get(i)
}

impl<'a> Scopes<'a> {
    fn new(obj: &'a Obj, frame: u32) -> Self {
        let mut scopes = Vec::new();
        for (group, i) in [
            (tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, frame as usize),
            (tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, 0),
        ] {
            if let Some(g) = item(obj, group, i) {
                for seq in [
                    tags::FRAME_VOILUT_SEQUENCE,
                    tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
                ] {
                    scopes.extend(item(g, seq, 0));
                }
            }
        }
        scopes.push(obj);
        Self(scopes)
    }

    fn element(&self, tag: Tag) -> Option<&'a dicom_object::mem::InMemElement> {
        self.0
            .iter()
            .find_map(|o| o.element_opt(tag).ok().flatten())
    }

    fn floats(&self, tag: Tag) -> Vec<f64> {
        self.element(tag)
            .and_then(|e| e.to_multi_float64().ok())
            .unwrap_or_default()
    }

    fn strs(&self, tag: Tag) -> Vec<String> {
        self.element(tag)
            .and_then(|e| e.to_multi_str().ok().map(Cow::into_owned))
            .unwrap_or_default()
            .into_iter()
            .map(|s| {
                s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                    .to_string()
            })
            .collect()
    }

    fn text(&self, tag: Tag) -> Option<String> {
        self.strs(tag)
            .into_iter()
            .next()
            .map(|s| s.to_ascii_uppercase())
    }
}

/// Integers of a US/SS/OW element as 16-bit words read in the representation of the pixels
/// (the standard's rule for LUT descriptors and padding values, whose VR may be either).
fn words(e: &dicom_object::mem::InMemElement, signed: bool) -> Res<Vec<i64>> {
    let raw: Vec<i64> = match e.value().primitive() {
        // OW read as bytes: little-endian words
        Some(PrimitiveValue::U8(b)) => b
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as i64)
            .collect(),
        _ => e
            .to_multi_int::<i64>()
            .map_err(|err| format!("{} is not a list of numbers ({err})", e.header().tag))?,
    };
    Ok(raw
        .into_iter()
        .map(|v| match (signed, v) {
            (true, 0..=65535) => v as u16 as i16 as i64,
            (false, -32768..=-1) => v as i16 as u16 as i64,
            _ => v,
        })
        .collect())
}

/// How stored values sit in their words.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bits {
    allocated: u16,
    stored: u16,
    high_bit: u16,
    signed: bool,
}

impl Bits {
    pub(crate) fn read(obj: &Obj) -> Res<Self> {
        let get = |tag, name: &str| -> Res<Option<u16>> {
            match obj.element_opt(tag) {
                Ok(Some(e)) => e
                    .to_int::<u16>()
                    .map(Some)
                    .map_err(|_| format!("{name} {tag} is not a number")),
                _ => Ok(None),
            }
        };
        let allocated = get(tags::BITS_ALLOCATED, "Bits Allocated")?.unwrap_or(16);
        let stored = get(tags::BITS_STORED, "Bits Stored")?.unwrap_or(allocated);
        let high_bit = get(tags::HIGH_BIT, "High Bit")?.unwrap_or(stored.saturating_sub(1));
        if !matches!(allocated, 1 | 8 | 16 | 32) {
            return Err(format!(
                "Bits Allocated is {allocated}; an image has 1, 8, 16 or 32"
            ));
        }
        if stored == 0 || stored > allocated {
            return Err(format!(
                "Bits Stored is {stored}; it must lie in 1..=Bits Allocated ({allocated})"
            ));
        }
        if high_bit >= allocated || high_bit + 1 < stored {
            return Err(format!(
                "High Bit is {high_bit}; with Bits Stored {stored} it must lie in {}..{allocated}",
                stored - 1
            ));
        }
        let signed = get(tags::PIXEL_REPRESENTATION, "Pixel Representation")?.unwrap_or(0) == 1;
        Ok(Self {
            allocated,
            stored,
            high_bit,
            signed,
        })
    }

    fn bytes_for(&self, n: usize) -> usize {
        match self.allocated {
            1 => n.div_ceil(8),
            a => n * a as usize / 8,
        }
    }

    /// Stored value `i` of decoded bytes (native byte order, as dicom-pixeldata gives them): the
    /// bits outside Bits Stored (overlays, garbage) dropped, signed values sign-extended.
    fn at(&self, bytes: &[u8], i: usize) -> i64 {
        let word = match self.allocated {
            1 => ((bytes[i / 8] >> (i % 8)) & 1) as u64,
            8 => bytes[i] as u64,
            16 => u16::from_ne_bytes([bytes[2 * i], bytes[2 * i + 1]]) as u64,
            _ => u32::from_ne_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap()) as u64,
        };
        let shift = self.high_bit + 1 - self.stored;
        let v = (word >> shift) & ((1u64 << self.stored) - 1);
        if self.signed && v >> (self.stored - 1) == 1 {
            v as i64 - (1i64 << self.stored)
        } else {
            v as i64
        }
    }
}

/// A lookup table (Modality, VOI or palette): values below `first` take the first entry,
/// past the end the last.
#[derive(Debug, Clone)]
struct Lut {
    first: i64,
    bits: u16,
    data: Vec<u16>,
}

impl Lut {
    /// From its descriptor (entries, first value mapped, bits per entry) and data elements.
    fn read(
        scope: &Obj,
        descriptor: Tag,
        data: Tag,
        signed: bool,
        what: &str,
    ) -> Res<Option<Self>> {
        let (Some(d), Some(v)) = (
            scope.element_opt(descriptor).ok().flatten(),
            scope.element_opt(data).ok().flatten(),
        ) else {
            return Ok(None);
        };
        let d = words(d, false)?;
        if d.len() != 3 {
            return Err(format!(
                "{what}: its descriptor has {} values, not 3",
                d.len()
            ));
        }
        let entries = if d[0] == 0 { 65536 } else { d[0] as usize };
        let first = if signed {
            d[1] as u16 as i16 as i64
        } else {
            d[1]
        };
        let bits = d[2] as u16;
        if !(1..=16).contains(&bits) {
            return Err(format!("{what}: {bits} bits per entry (1 to 16 expected)"));
        }
        let mut data: Vec<u16> = words(v, false)?.into_iter().map(|x| x as u16).collect();
        if data.len() < entries {
            return Err(format!(
                "{what}: its data holds {} entries, its descriptor says {entries}",
                data.len()
            ));
        }
        data.truncate(entries);
        Ok(Some(Self { first, bits, data }))
    }

    fn at(&self, x: f64) -> f64 {
        let i = (x.floor() - self.first as f64).clamp(0.0, (self.data.len() - 1) as f64);
        self.data[i as usize] as f64
    }

    fn top(&self) -> f64 {
        ((1u32 << self.bits) - 1) as f64
    }
}

/// The Modality LUT: stored value → modality value (e.g. HU).
#[derive(Debug, Clone)]
enum Modality {
    Rescale { slope: f64, intercept: f64 },
    Table(Lut),
}

impl Modality {
    fn read(scopes: &Scopes, signed: bool) -> Res<Self> {
        for s in &scopes.0 {
            if let Some(seq) = item(s, tags::MODALITY_LUT_SEQUENCE, 0)
                && let Some(lut) = Lut::read(
                    seq,
                    tags::LUT_DESCRIPTOR,
                    tags::LUT_DATA,
                    signed,
                    "Modality LUT Sequence",
                )?
            {
                return Ok(Self::Table(lut));
            }
        }
        let one = |tag, default: f64| {
            scopes
                .floats(tag)
                .first()
                .copied()
                .filter(|v| v.is_finite())
                .unwrap_or(default)
        };
        let slope = one(tags::RESCALE_SLOPE, 1.0);
        Ok(Self::Rescale {
            slope: if slope == 0.0 { 1.0 } else { slope },
            intercept: one(tags::RESCALE_INTERCEPT, 0.0),
        })
    }

    fn at(&self, v: i64) -> f64 {
        match self {
            Self::Rescale { slope, intercept } => v as f64 * slope + intercept,
            Self::Table(lut) => lut.at(v as f64),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Function {
    Linear,
    LinearExact,
    Sigmoid,
}

/// The VOI LUT: modality value → [0, 1].
#[derive(Debug, Clone)]
enum Voi {
    Window {
        centre: f64,
        width: f64,
        function: Function,
    },
    Table(Lut),
    /// The image's own range (outside padding), when the file gives no window.
    Range {
        lo: f64,
        hi: f64,
    },
}

impl Voi {
    /// The value before clamping to [0, 1] (where the function is affine), so that another
    /// window's ends can be told in these units.
    fn unclamped(&self, x: f64) -> f64 {
        match *self {
            Self::Window {
                centre: c,
                width: w,
                function,
            } => match function {
                // PS3.3 C.11.2.1.2.1
                Function::Linear => (x - (c - 0.5)) / (w - 1.0) + 0.5,
                // C.11.2.1.3.2
                Function::LinearExact => (x - c) / w + 0.5,
                // C.11.2.1.3.1
                Function::Sigmoid => 1.0 / (1.0 + (-4.0 * (x - c) / w).exp()),
            },
            Self::Table(ref lut) => lut.at(x) / lut.top(),
            Self::Range { lo, hi } => (x - lo) / (hi - lo).max(f64::EPSILON),
        }
    }

    fn at(&self, x: f64) -> f64 {
        if let Self::Window {
            centre: c,
            width: w,
            function: Function::Linear,
        } = *self
        {
            // the standard's thresholds, exactly
            if x <= c - 0.5 - (w - 1.0) / 2.0 {
                return 0.0;
            }
            if x > c - 0.5 + (w - 1.0) / 2.0 {
                return 1.0;
            }
        }
        self.unclamped(x).clamp(0.0, 1.0)
    }
}

/// The file's windows (centre, width, explanation), with the VOI LUT Function; those a viewer
/// cannot apply (a LINEAR width under 1, a width of 0, non-finite) left out.
fn windows(scopes: &Scopes) -> Res<Vec<(f64, f64, String, Function)>> {
    let function = match scopes.text(tags::VOILUT_FUNCTION).as_deref() {
        None | Some("") | Some("LINEAR") => Function::Linear,
        Some("LINEAR_EXACT") => Function::LinearExact,
        Some("SIGMOID") => Function::Sigmoid,
        Some(other) => {
            return Err(format!(
                "VOI LUT Function {other} is not one of LINEAR, LINEAR_EXACT, SIGMOID"
            ));
        }
    };
    let (centres, widths) = (
        scopes.floats(tags::WINDOW_CENTER),
        scopes.floats(tags::WINDOW_WIDTH),
    );
    let names = scopes.strs(tags::WINDOW_CENTER_WIDTH_EXPLANATION);
    Ok(centres
        .iter()
        .zip(&widths)
        .enumerate()
        .filter(|(_, (c, w))| {
            c.is_finite()
                && w.is_finite()
                && if function == Function::Linear {
                    **w >= 1.0
                } else {
                    **w > 0.0
                }
        })
        .map(|(i, (&c, &w))| {
            let name = names.get(i).filter(|n| !n.is_empty()).cloned();
            (
                c,
                w,
                name.unwrap_or_else(|| format!("window {}", i + 1)),
                function,
            )
        })
        .collect())
}

/// Stored values that are padding (Pixel Padding Value, up to Pixel Padding Range Limit).
fn padding(obj: &Obj, signed: bool) -> Res<Option<(i64, i64)>> {
    let get = |tag| -> Res<Option<i64>> {
        match obj.element_opt(tag).ok().flatten() {
            Some(e) => Ok(words(e, signed)?.first().copied()),
            None => Ok(None),
        }
    };
    Ok(
        match (
            get(tags::PIXEL_PADDING_VALUE)?,
            get(tags::PIXEL_PADDING_RANGE_LIMIT)?,
        ) {
            (Some(a), Some(b)) => Some((a.min(b), a.max(b))),
            (Some(a), None) => Some((a, a)),
            _ => None,
        },
    )
}

/// Checks that the decoded bytes hold `n` samples of `bits`.
fn check_len(bytes: &[u8], bits: &Bits, n: usize) -> Res<()> {
    let need = bits.bytes_for(n);
    if bytes.len() < need {
        return Err(format!(
            "pixel data holds {} bytes, {n} pixels of {} bits need {need}",
            bytes.len(),
            bits.allocated
        ));
    }
    Ok(())
}

/// Modality values (HU for CT) of frame `frame`: what a CT slice's voxels are.
pub(crate) fn modality_frame(obj: &Obj, pixels: &DecodedPixelData, frame: u32) -> Res<Vec<f32>> {
    let bits = Bits::read(obj)?;
    let n = pixels.rows() as usize * pixels.columns() as usize;
    let bytes = pixels.frame_data(frame).map_err(|e| e.to_string())?;
    check_len(bytes, &bits, n)?;
    let modality = Modality::read(&Scopes::new(obj, frame), bits.signed)?;
    Ok((0..n)
        .map(|i| modality.at(bits.at(bytes, i)) as f32)
        .collect())
}

/// Frame `frame` of the file, decoded as `pixels`' frame `decoded`, as a reader sees it: the
/// pipeline above for greyscale, the luminance of a colour image (RGB, YBR or PALETTE COLOR),
/// which is then marked as not a radiograph.
pub(crate) fn shown_frame(
    obj: &Obj,
    pixels: &DecodedPixelData,
    decoded: u32,
    frame: u32,
) -> Res<Shown> {
    let n = pixels.rows() as usize * pixels.columns() as usize;
    let bits = Bits::read(obj)?;
    let bytes = pixels.frame_data(decoded).map_err(|e| e.to_string())?;
    let photometric = pixels.photometric_interpretation().as_str().to_string();
    let spp = pixels.samples_per_pixel() as usize;
    if spp != 1 {
        return colour_frame(pixels, bytes, &bits, n, spp, &photometric);
    }
    check_len(bytes, &bits, n)?;
    if photometric == "PALETTE COLOR" {
        return palette_frame(obj, bytes, &bits, n);
    }
    let scopes = Scopes::new(obj, frame);
    let modality = Modality::read(&scopes, bits.signed)?;
    let pad = padding(obj, bits.signed)?;
    let is_pad = |v: i64| pad.is_some_and(|(a, b)| (a..=b).contains(&v));
    let windows = windows(&scopes)?;
    let voi_table = scopes
        .0
        .iter()
        .find_map(|s| item(s, tags::VOILUT_SEQUENCE, 0))
        .map(|seq| {
            Lut::read(
                seq,
                tags::LUT_DESCRIPTOR,
                tags::LUT_DATA,
                false,
                "VOI LUT Sequence",
            )
        })
        .transpose()?
        .flatten();
    let voi = if let Some(lut) = voi_table {
        Voi::Table(lut)
    } else if let Some(&(centre, width, _, function)) = windows.first() {
        Voi::Window {
            centre,
            width,
            function,
        }
    } else {
        let (lo, hi) = (0..n)
            .map(|i| bits.at(bytes, i))
            .filter(|v| !is_pad(*v))
            .map(|v| modality.at(v))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
        if lo.is_finite() {
            Voi::Range { lo, hi }
        } else {
            Voi::Range { lo: 0.0, hi: 1.0 }
        }
    };
    let invert = match scopes.text(tags::PRESENTATION_LUT_SHAPE).as_deref() {
        Some("INVERSE") => true,
        Some("IDENTITY") => false,
        _ => photometric == "MONOCHROME1",
    };
    let shown = |y: f64| if invert { 1.0 - y } else { y };
    let data = (0..n)
        .map(|i| {
            let v = bits.at(bytes, i);
            if is_pad(v) {
                0.0
            } else {
                unit(shown(voi.at(modality.at(v))))
            }
        })
        .collect();
    let presets = windows
        .into_iter()
        .filter_map(|(c, w, label, _)| {
            let (a, b) = (
                shown(voi.unclamped(c - w / 2.0)),
                shown(voi.unclamped(c + w / 2.0)),
            );
            let (lo, hi) = (a.min(b), a.max(b));
            (hi - lo > 1e-6 && lo.is_finite() && hi.is_finite()).then(|| WindowPreset {
                label,
                level: ((lo + hi) / 2.0) as f32,
                width: (hi - lo) as f32,
            })
        })
        .collect();
    Ok(Shown {
        data,
        presets,
        colour: None,
    })
}

/// A shown value in [0, 1]: what no LUT can produce (NaN from an infinite rescale of a hostile
/// file) is black.
fn unit(v: f64) -> f32 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(0.0, 1.0) as f32
    }
}

/// ITU-R BT.601 luma.
fn luma(r: f64, g: f64, b: f64) -> f64 {
    0.299 * r + 0.587 * g + 0.114 * b
}

fn colour_frame(
    pixels: &DecodedPixelData,
    bytes: &[u8],
    bits: &Bits,
    n: usize,
    spp: usize,
    photometric: &str,
) -> Res<Shown> {
    if spp != 3 || bits.allocated < 8 {
        return Err(format!(
            "{spp} samples per pixel of {} bits: neither a greyscale nor a colour image",
            bits.allocated
        ));
    }
    check_len(bytes, bits, 3 * n)?;
    let planar = pixels.planar_configuration() == dicom_pixeldata::PlanarConfiguration::PixelFirst;
    let sample = |i: usize, k: usize| {
        let j = if planar { k * n + i } else { 3 * i + k };
        bits.at(bytes, j) as f64
    };
    let top = ((1u64 << bits.stored) - 1) as f64;
    // YBR's first sample is the luma itself
    let ybr = photometric.starts_with("YBR");
    let data = (0..n)
        .map(|i| {
            let y = if ybr {
                sample(i, 0)
            } else {
                luma(sample(i, 0), sample(i, 1), sample(i, 2))
            };
            unit(y / top)
        })
        .collect();
    Ok(Shown {
        data,
        presets: Vec::new(),
        colour: Some(format!(
            "a colour image ({photometric}, 3 samples per pixel) is not a radiograph"
        )),
    })
}

fn palette_frame(obj: &Obj, bytes: &[u8], bits: &Bits, n: usize) -> Res<Shown> {
    let lut = |d, v, name| {
        Lut::read(obj, d, v, false, name)?
            .ok_or_else(|| format!("PALETTE COLOR without its {name}"))
    };
    let [r, g, b] = [
        lut(
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            "red palette",
        )?,
        lut(
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            "green palette",
        )?,
        lut(
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            "blue palette",
        )?,
    ];
    let data = (0..n)
        .map(|i| {
            let v = bits.at(bytes, i) as f64;
            let y = luma(r.at(v) / r.top(), g.at(v) / g.top(), b.at(v) / b.top());
            unit(y)
        })
        .collect();
    Ok(Shown {
        data,
        presets: Vec::new(),
        colour: Some("a PALETTE COLOR image is not a radiograph".to_string()),
    })
}

#[cfg(test)]
#[path = "grey_tests.rs"]
mod tests;
