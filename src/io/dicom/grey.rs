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
        self.0.iter().find_map(|o| o.element_opt(tag).ok().flatten())
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
            .map(|s| s.trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_string())
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
    fn read(obj: &Obj) -> Res<Self> {
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
        if !matches!(allocated, 1 | 8 | 16 | 32) || stored == 0 || stored > allocated {
            return Err(format!(
                "Bits Allocated {allocated} with Bits Stored {stored}: not a greyscale image's"
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
    fn read(scope: &Obj, descriptor: Tag, data: Tag, signed: bool, what: &str) -> Res<Option<Self>> {
        let (Some(d), Some(v)) = (
            scope.element_opt(descriptor).ok().flatten(),
            scope.element_opt(data).ok().flatten(),
        ) else {
            return Ok(None);
        };
        let d = words(d, false)?;
        if d.len() != 3 {
            return Err(format!("{what}: its descriptor has {} values, not 3", d.len()));
        }
        let entries = if d[0] == 0 { 65536 } else { d[0] as usize };
        let first = if signed { d[1] as u16 as i16 as i64 } else { d[1] };
        let bits = d[2] as u16;
        if !(1..=16).contains(&bits) {
            return Err(format!("{what}: {bits} bits per entry (1 to 16 expected)"));
        }
        let data: Vec<u16> = words(v, false)?.into_iter().map(|x| x as u16).collect();
        if data.len() < entries {
            return Err(format!(
                "{what}: its data holds {} entries, its descriptor says {entries}",
                data.len()
            ));
        }
        Ok(Some(Self {
            first,
            bits,
            data: data[..entries].to_vec(),
        }))
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
                && let Some(lut) =
                    Lut::read(seq, tags::LUT_DESCRIPTOR, tags::LUT_DATA, signed, "Modality LUT Sequence")?
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
    Range { lo: f64, hi: f64 },
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
                && if function == Function::Linear { **w >= 1.0 } else { **w > 0.0 }
        })
        .map(|(i, (&c, &w))| {
            let name = names.get(i).filter(|n| !n.is_empty()).cloned();
            (c, w, name.unwrap_or_else(|| format!("window {}", i + 1)), function)
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
    Ok(match (get(tags::PIXEL_PADDING_VALUE)?, get(tags::PIXEL_PADDING_RANGE_LIMIT)?) {
        (Some(a), Some(b)) => Some((a.min(b), a.max(b))),
        (Some(a), None) => Some((a, a)),
        _ => None,
    })
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
    Ok((0..n).map(|i| modality.at(bits.at(bytes, i)) as f32).collect())
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
        .map(|seq| Lut::read(seq, tags::LUT_DESCRIPTOR, tags::LUT_DATA, false, "VOI LUT Sequence"))
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
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
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
                shown(voi.at(modality.at(v))) as f32
            }
        })
        .collect();
    let presets = windows
        .into_iter()
        .filter_map(|(c, w, label, _)| {
            let (a, b) = (shown(voi.unclamped(c - w / 2.0)), shown(voi.unclamped(c + w / 2.0)));
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
            (y / top).clamp(0.0, 1.0) as f32
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
        Lut::read(obj, d, v, false, name)?.ok_or_else(|| format!("PALETTE COLOR without its {name}"))
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
            y.clamp(0.0, 1.0) as f32
        })
        .collect();
    Ok(Shown {
        data,
        presets: Vec::new(),
        colour: Some("a PALETTE COLOR image is not a radiograph".to_string()),
    })
}

#[cfg(test)]
mod tests {
    //! Each rule on a small synthetic file; the expected pixels are computed here from the
    //! standard's formulas, not by the code under test.
    use dicom_core::value::DataSetSequence;
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    use dicom_object::InMemDicomObject;
    use dicom_object::mem::InMemElement;

    use crate::io::dicom::{DicomFrame, decode, decode_frame};

    fn el(tag: dicom_core::Tag, vr: VR, v: impl Into<PrimitiveValue>) -> InMemElement {
        DataElement::new(tag, vr, v.into())
    }

    fn u16s(v: &[u16]) -> PrimitiveValue {
        PrimitiveValue::U16(v.iter().copied().collect())
    }

    fn ds(v: &[f64]) -> PrimitiveValue {
        PrimitiveValue::Strs(v.iter().map(|x| format!("{x}")).collect())
    }

    fn seq(tag: dicom_core::Tag, item: Vec<InMemElement>) -> InMemElement {
        DataElement::new(
            tag,
            VR::SQ,
            DataSetSequence::from(vec![InMemDicomObject::from_element_iter(item)]),
        )
    }

    fn lut(descriptor: [u16; 3], data: &[u16]) -> Vec<InMemElement> {
        vec![
            el(tags::LUT_DESCRIPTOR, VR::US, u16s(&descriptor)),
            el(tags::LUT_DATA, VR::OW, u16s(data)),
        ]
    }

    /// A 16-bit greyscale file whose rows start with `words` (8 rows, at least 8 columns: the
    /// words repeated), Bits Stored/High Bit as given.
    fn file(photometric: &str, stored: u16, high: u16, signed: bool, words: &[u16], extra: Vec<InMemElement>) -> Vec<u8> {
        let cols = words.len().max(8);
        let row: Vec<u16> = words.iter().copied().cycle().take(cols).collect();
        let words: Vec<u16> = row.repeat(8);
        let mut obj = InMemDicomObject::from_element_iter([
            el(tags::SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.1"),
            el(tags::SOP_INSTANCE_UID, VR::UI, "1.2.3.4"),
            el(tags::ROWS, VR::US, 8u16),
            el(tags::COLUMNS, VR::US, cols as u16),
            el(tags::SAMPLES_PER_PIXEL, VR::US, 1u16),
            el(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, photometric),
            el(tags::BITS_ALLOCATED, VR::US, 16u16),
            el(tags::BITS_STORED, VR::US, stored),
            el(tags::HIGH_BIT, VR::US, high),
            el(tags::PIXEL_REPRESENTATION, VR::US, signed as u16),
            el(tags::PIXEL_DATA, VR::OW, u16s(&words)),
        ]);
        for e in extra {
            obj.put(e);
        }
        super::super::write::finish_dicom(obj, "1.2.840.10008.1.2.1").unwrap()
    }

    fn shown(bytes: &[u8]) -> DicomFrame {
        decode_frame(bytes, 0).unwrap()
    }

    /// The first pixels of the first row against `want`.
    fn assert_close(got: &[f32], want: &[f64]) {
        let got = &got[..want.len()];
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((*g as f64 - w).abs() < 1e-5, "pixel {i}: {g} instead of {w}\n{got:?}\n{want:?}");
        }
    }

    /// LINEAR (C.11.2.1.2.1), to [0, 1].
    fn linear(x: f64, c: f64, w: f64) -> f64 {
        if x <= c - 0.5 - (w - 1.0) / 2.0 {
            0.0
        } else if x > c - 0.5 + (w - 1.0) / 2.0 {
            1.0
        } else {
            (x - (c - 0.5)) / (w - 1.0) + 0.5
        }
    }

    fn window(c: f64, w: f64) -> Vec<InMemElement> {
        vec![el(tags::WINDOW_CENTER, VR::DS, ds(&[c])), el(tags::WINDOW_WIDTH, VR::DS, ds(&[w]))]
    }

    #[test]
    fn bits_outside_bits_stored_are_dropped() {
        let values: [u16; 5] = [0, 100, 2000, 3000, 4095];
        let want: Vec<f64> = values.iter().map(|&v| v as f64 / 4095.0).collect();
        // 12 bits at the bottom of the word, garbage (an overlay) in the top 4
        let garbage: Vec<u16> = values.iter().enumerate().map(|(i, v)| v | ((i as u16 % 16) << 12) | 0x8000).collect();
        assert_close(&shown(&file("MONOCHROME2", 12, 11, false, &garbage, vec![])).image.data, &want);
        // High Bit 13: the 12 bits sit at bits 2..=13, garbage below and above
        let shifted: Vec<u16> = values.iter().map(|v| (v << 2) | 0b11 | 0xC000).collect();
        assert_close(&shown(&file("MONOCHROME2", 12, 13, false, &shifted, vec![])).image.data, &want);
    }

    #[test]
    fn signed_values_are_sign_extended_from_bits_stored() {
        // 12-bit two's complement: 0x800 = -2048, 0xFFF = -1, 0x7FF = 2047; garbage above
        let words: [u16; 4] = [0x0800, 0x0FFF | 0xF000, 0x07FF | 0x5000, 0x0000];
        let x = [-2048.0, -1.0, 2047.0, 0.0];
        // rescale ×2 + 10, window centre 10 width 4001 (modality units)
        let mut extra = window(10.0, 4001.0);
        extra.push(el(tags::RESCALE_SLOPE, VR::DS, ds(&[2.0])));
        extra.push(el(tags::RESCALE_INTERCEPT, VR::DS, ds(&[10.0])));
        let want: Vec<f64> = x.iter().map(|v| linear(v * 2.0 + 10.0, 10.0, 4001.0)).collect();
        assert_close(&shown(&file("MONOCHROME2", 12, 11, true, &words, extra)).image.data, &want);
    }

    #[test]
    fn the_modality_lut_sequence_maps_stored_values() {
        // entries 4, first value mapped 10, 16 bits: below 10 the first entry, past 13 the last
        let table = [100u16, 200, 300, 400];
        let px: Vec<u16> = (8..16).collect();
        let mut extra = vec![seq(tags::MODALITY_LUT_SEQUENCE, lut([4, 10, 16], &table))];
        extra.extend(window(250.0, 301.0));
        let want: Vec<f64> = px
            .iter()
            .map(|&v| table[(v as i64 - 10).clamp(0, 3) as usize] as f64)
            .map(|m| linear(m, 250.0, 301.0))
            .collect();
        assert_close(&shown(&file("MONOCHROME2", 16, 15, false, &px, extra)).image.data, &want);
    }

    #[test]
    fn voi_lut_functions_follow_the_standard() {
        let px: Vec<u16> = (0..=20).map(|i| i * 50).collect();
        let (c, w) = (500.0, 600.0);
        for (name, f) in [
            ("LINEAR_EXACT", Box::new(|x: f64| {
                if x <= c - w / 2.0 { 0.0 } else if x > c + w / 2.0 { 1.0 } else { (x - c) / w + 0.5 }
            }) as Box<dyn Fn(f64) -> f64>),
            ("SIGMOID", Box::new(|x: f64| 1.0 / (1.0 + (-4.0 * (x - c) / w).exp()))),
            ("LINEAR", Box::new(|x: f64| linear(x, c, w))),
        ] {
            let mut extra = window(c, w);
            extra.push(el(tags::VOILUT_FUNCTION, VR::CS, name));
            let want: Vec<f64> = px.iter().map(|&v| f(v as f64)).collect();
            assert_close(&shown(&file("MONOCHROME2", 16, 15, false, &px, extra)).image.data, &want);
        }
        let mut extra = window(c, w);
        extra.push(el(tags::VOILUT_FUNCTION, VR::CS, "CUBIC"));
        let e = decode(&file("MONOCHROME2", 16, 15, false, &px, extra)).unwrap_err().to_string();
        assert!(e.contains("VOI LUT Function CUBIC"), "{e}");
    }

    #[test]
    fn the_voi_lut_sequence_is_applied_before_any_window() {
        let px: Vec<u16> = (0..8).collect();
        let table = [0u16, 10, 40, 90, 160, 255];
        // first value mapped 1, 8 bits an entry; a window is there too and loses
        let mut extra = vec![seq(tags::VOILUT_SEQUENCE, lut([6, 1, 8], &table))];
        extra.extend(window(3.0, 2.0));
        let want: Vec<f64> = px.iter().map(|&v| table[(v as i64 - 1).clamp(0, 5) as usize] as f64 / 255.0).collect();
        assert_close(&shown(&file("MONOCHROME2", 16, 15, false, &px, extra)).image.data, &want);
    }

    #[test]
    fn the_first_window_is_restored_and_the_others_are_presets() {
        let px: Vec<u16> = (0..=10).map(|i| i * 100).collect();
        let extra = vec![
            // a LINEAR width under 1 is no window: the first usable one is (500, 401)
            el(tags::WINDOW_CENTER, VR::DS, ds(&[7.0, 500.0, 300.0])),
            el(tags::WINDOW_WIDTH, VR::DS, ds(&[0.5, 401.0, 1001.0])),
            el(tags::WINDOW_CENTER_WIDTH_EXPLANATION, VR::LO, PrimitiveValue::Strs(
                ["BROKEN", "LUNG", "WIDE"].map(String::from).into_iter().collect())),
        ];
        let f = shown(&file("MONOCHROME2", 16, 15, false, &px, extra));
        let want: Vec<f64> = px.iter().map(|&v| linear(v as f64, 500.0, 401.0)).collect();
        assert_close(&f.image.data, &want);
        // a preset's ends are the window's ends in the restored window's units
        let units = |x: f64| (x - 499.5) / 400.0 + 0.5;
        let labels: Vec<&str> = f.presets.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["LUNG", "WIDE"]);
        for (p, (c, w)) in f.presets.iter().zip([(500.0, 401.0), (300.0, 1001.0)]) {
            let (lo, hi) = (units(c - w / 2.0), units(c + w / 2.0));
            assert!((p.level as f64 - (lo + hi) / 2.0).abs() < 1e-5, "{p:?}");
            assert!((p.width as f64 - (hi - lo)).abs() < 1e-5, "{p:?}");
        }
    }

    #[test]
    fn presentation_lut_shape_decides_the_inversion() {
        let px: Vec<u16> = (0..=4).map(|i| i * 1000).collect();
        let plain: Vec<f64> = px.iter().map(|&v| v as f64 / 4000.0).collect();
        let inverted: Vec<f64> = plain.iter().map(|v| 1.0 - v).collect();
        for (pi, shape, want) in [
            ("MONOCHROME2", None, &plain),
            ("MONOCHROME2", Some("INVERSE"), &inverted),
            ("MONOCHROME1", None, &inverted),
            ("MONOCHROME1", Some("INVERSE"), &inverted),
            ("MONOCHROME1", Some("IDENTITY"), &plain),
        ] {
            let extra = shape.map(|s| el(tags::PRESENTATION_LUT_SHAPE, VR::CS, s)).into_iter().collect();
            let got = shown(&file(pi, 16, 15, false, &px, extra)).image.data;
            assert_close(&got, want);
        }
    }

    #[test]
    fn pixel_padding_is_kept_out_of_the_range_and_shown_black() {
        // padding 4090..=4095 (value and range limit in either order), the image 1000..=3000
        let px: Vec<u16> = vec![4095, 1000, 4092, 2000, 3000, 4090];
        let want = [0.0, 0.0, 0.0, 0.5, 1.0, 0.0];
        for (a, b) in [(4095u16, 4090u16), (4090, 4095)] {
            let extra = vec![
                el(tags::PIXEL_PADDING_VALUE, VR::US, a),
                el(tags::PIXEL_PADDING_RANGE_LIMIT, VR::US, b),
            ];
            assert_close(&shown(&file("MONOCHROME2", 12, 11, false, &px, extra)).image.data, &want);
        }
        // MONOCHROME1: the image inverted, the padding still black
        let extra = vec![el(tags::PIXEL_PADDING_VALUE, VR::US, 4095u16)];
        let px = [4095u16, 1000, 3000];
        assert_close(&shown(&file("MONOCHROME1", 12, 11, false, &px, extra)).image.data, &[0.0, 1.0, 0.0]);
    }

    #[test]
    fn a_window_in_the_shared_functional_group_is_used() {
        let px: Vec<u16> = (0..=8).map(|i| i * 100).collect();
        let group = vec![seq(tags::FRAME_VOILUT_SEQUENCE, window(400.0, 201.0))];
        let extra = vec![seq(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, group)];
        let want: Vec<f64> = px.iter().map(|&v| linear(v as f64, 400.0, 201.0)).collect();
        assert_close(&shown(&file("MONOCHROME2", 16, 15, false, &px, extra)).image.data, &want);
    }

    #[test]
    fn colour_images_are_shown_as_luma_and_refused_for_restoration() {
        // RGB, 8 bits, two pixels interleaved
        let mut obj = InMemDicomObject::from_element_iter([
            el(tags::ROWS, VR::US, 8u16),
            el(tags::COLUMNS, VR::US, 8u16),
            el(tags::SAMPLES_PER_PIXEL, VR::US, 3u16),
            el(tags::PLANAR_CONFIGURATION, VR::US, 0u16),
            el(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB"),
            el(tags::BITS_ALLOCATED, VR::US, 8u16),
            el(tags::BITS_STORED, VR::US, 8u16),
            el(tags::HIGH_BIT, VR::US, 7u16),
            el(tags::PIXEL_REPRESENTATION, VR::US, 0u16),
            el(tags::PIXEL_DATA, VR::OB, PrimitiveValue::from([255u8, 0, 0, 10, 200, 30].repeat(32))),
        ]);
        let rgb = super::super::write::finish_dicom(obj.clone(), "1.2.840.10008.1.2.1").unwrap();
        let f = shown(&rgb);
        assert_close(&f.image.data, &[0.299, (0.299 * 10.0 + 0.587 * 200.0 + 0.114 * 30.0) / 255.0]);
        assert!(f.colour.as_deref().unwrap().contains("RGB"), "{:?}", f.colour);
        let e = decode(&rgb).unwrap_err().to_string();
        assert!(e.contains("colour image (RGB") && e.contains("not restored"), "{e}");

        // PALETTE COLOR: indices through three 16-bit tables of 3 entries from 0
        for e in [
            el(tags::SAMPLES_PER_PIXEL, VR::US, 1u16),
            el(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "PALETTE COLOR"),
            el(tags::PIXEL_DATA, VR::OB, PrimitiveValue::from([0u8, 1, 2, 7].repeat(16))),
        ] {
            obj.put(e);
        }
        let (r, g, b) = ([0u16, 65535, 0], [0u16, 0, 65535], [65535u16, 0, 0]);
        for (d, v, t) in [
            (tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR, tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA, r),
            (tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR, tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA, g),
            (tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR, tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA, b),
        ] {
            obj.put(el(d, VR::US, u16s(&[3, 0, 16])));
            obj.put(el(v, VR::OW, u16s(&t)));
        }
        let palette = super::super::write::finish_dicom(obj, "1.2.840.10008.1.2.1").unwrap();
        let f = shown(&palette);
        // index 7 is past the table: its last entry
        assert_close(&f.image.data, &[0.114, 0.299, 0.587, 0.587]);
        assert!(decode(&palette).unwrap_err().to_string().contains("PALETTE COLOR"));
    }
}
