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
fn file(
    photometric: &str,
    stored: u16,
    high: u16,
    signed: bool,
    words: &[u16],
    extra: Vec<InMemElement>,
) -> Vec<u8> {
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
    crate::io::dicom::write::finish_dicom(obj, "1.2.840.10008.1.2.1").unwrap()
}

/// The shown pixels of a 16-bit MONOCHROME2 file whose rows start with `px` (all 16 bits stored).
fn plain16(px: &[u16], extra: Vec<InMemElement>) -> Vec<f32> {
    shown(&file("MONOCHROME2", 16, 15, false, px, extra))
        .image
        .data
}

fn shown(bytes: &[u8]) -> DicomFrame {
    decode_frame(bytes, 0).unwrap()
}

/// The first pixels of the first row against `want`.
fn assert_close(got: &[f32], want: &[f64]) {
    let got = &got[..want.len()];
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (*g as f64 - w).abs() < 1e-5,
            "pixel {i}: {g} instead of {w}\n{got:?}\n{want:?}"
        );
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
    vec![
        el(tags::WINDOW_CENTER, VR::DS, ds(&[c])),
        el(tags::WINDOW_WIDTH, VR::DS, ds(&[w])),
    ]
}

#[test]
fn bits_outside_bits_stored_are_dropped() {
    let values: [u16; 5] = [0, 100, 2000, 3000, 4095];
    let want: Vec<f64> = values.iter().map(|&v| v as f64 / 4095.0).collect();
    // 12 bits at the bottom of the word, garbage (an overlay) in the top 4
    let garbage: Vec<u16> = values
        .iter()
        .enumerate()
        .map(|(i, v)| v | ((i as u16 % 16) << 12) | 0x8000)
        .collect();
    assert_close(
        &shown(&file("MONOCHROME2", 12, 11, false, &garbage, vec![]))
            .image
            .data,
        &want,
    );
    // High Bit 13: the 12 bits sit at bits 2..=13, garbage below and above
    let shifted: Vec<u16> = values.iter().map(|v| (v << 2) | 0b11 | 0xC000).collect();
    assert_close(
        &shown(&file("MONOCHROME2", 12, 13, false, &shifted, vec![]))
            .image
            .data,
        &want,
    );
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
    let want: Vec<f64> = x
        .iter()
        .map(|v| linear(v * 2.0 + 10.0, 10.0, 4001.0))
        .collect();
    assert_close(
        &shown(&file("MONOCHROME2", 12, 11, true, &words, extra))
            .image
            .data,
        &want,
    );
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
    assert_close(&plain16(&px, extra), &want);
}

#[test]
fn voi_lut_functions_follow_the_standard() {
    let px: Vec<u16> = (0..=20).map(|i| i * 50).collect();
    let (c, w) = (500.0, 600.0);
    for (name, f) in [
        (
            "LINEAR_EXACT",
            Box::new(|x: f64| {
                if x <= c - w / 2.0 {
                    0.0
                } else if x > c + w / 2.0 {
                    1.0
                } else {
                    (x - c) / w + 0.5
                }
            }) as Box<dyn Fn(f64) -> f64>,
        ),
        (
            "SIGMOID",
            Box::new(|x: f64| 1.0 / (1.0 + (-4.0 * (x - c) / w).exp())),
        ),
        ("LINEAR", Box::new(|x: f64| linear(x, c, w))),
    ] {
        let mut extra = window(c, w);
        extra.push(el(tags::VOILUT_FUNCTION, VR::CS, name));
        let want: Vec<f64> = px.iter().map(|&v| f(v as f64)).collect();
        assert_close(&plain16(&px, extra), &want);
    }
    let mut extra = window(c, w);
    extra.push(el(tags::VOILUT_FUNCTION, VR::CS, "CUBIC"));
    let e = decode(&file("MONOCHROME2", 16, 15, false, &px, extra))
        .unwrap_err()
        .to_string();
    assert!(e.contains("VOI LUT Function CUBIC"), "{e}");
}

#[test]
fn the_voi_lut_sequence_is_applied_before_any_window() {
    let px: Vec<u16> = (0..8).collect();
    let table = [0u16, 10, 40, 90, 160, 255];
    // first value mapped 1, 8 bits an entry; a window is there too and loses
    let mut extra = vec![seq(tags::VOILUT_SEQUENCE, lut([6, 1, 8], &table))];
    extra.extend(window(3.0, 2.0));
    let want: Vec<f64> = px
        .iter()
        .map(|&v| table[(v as i64 - 1).clamp(0, 5) as usize] as f64 / 255.0)
        .collect();
    assert_close(&plain16(&px, extra), &want);
}

#[test]
fn the_first_window_is_restored_and_the_others_are_presets() {
    let px: Vec<u16> = (0..=10).map(|i| i * 100).collect();
    let extra = vec![
        // a LINEAR width under 1 is no window: the first usable one is (500, 401)
        el(tags::WINDOW_CENTER, VR::DS, ds(&[7.0, 500.0, 300.0])),
        el(tags::WINDOW_WIDTH, VR::DS, ds(&[0.5, 401.0, 1001.0])),
        el(
            tags::WINDOW_CENTER_WIDTH_EXPLANATION,
            VR::LO,
            PrimitiveValue::Strs(
                ["BROKEN", "LUNG", "WIDE"]
                    .map(String::from)
                    .into_iter()
                    .collect(),
            ),
        ),
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
        let extra = shape
            .map(|s| el(tags::PRESENTATION_LUT_SHAPE, VR::CS, s))
            .into_iter()
            .collect();
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
        assert_close(
            &shown(&file("MONOCHROME2", 12, 11, false, &px, extra))
                .image
                .data,
            &want,
        );
    }
    // MONOCHROME1: the image inverted, the padding still black
    let extra = vec![el(tags::PIXEL_PADDING_VALUE, VR::US, 4095u16)];
    let px = [4095u16, 1000, 3000];
    assert_close(
        &shown(&file("MONOCHROME1", 12, 11, false, &px, extra))
            .image
            .data,
        &[0.0, 1.0, 0.0],
    );
}

#[test]
fn a_window_in_the_shared_functional_group_is_used() {
    let px: Vec<u16> = (0..=8).map(|i| i * 100).collect();
    let group = vec![seq(tags::FRAME_VOILUT_SEQUENCE, window(400.0, 201.0))];
    let extra = vec![seq(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, group)];
    let want: Vec<f64> = px.iter().map(|&v| linear(v as f64, 400.0, 201.0)).collect();
    assert_close(&plain16(&px, extra), &want);
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
        el(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::from([255u8, 0, 0, 10, 200, 30].repeat(32)),
        ),
    ]);
    let rgb = crate::io::dicom::write::finish_dicom(obj.clone(), "1.2.840.10008.1.2.1").unwrap();
    let f = shown(&rgb);
    assert_close(
        &f.image.data,
        &[0.299, (0.299 * 10.0 + 0.587 * 200.0 + 0.114 * 30.0) / 255.0],
    );
    assert!(
        f.colour.as_deref().unwrap().contains("RGB"),
        "{:?}",
        f.colour
    );
    let e = decode(&rgb).unwrap_err().to_string();
    assert!(
        e.contains("colour image (RGB") && e.contains("not restored"),
        "{e}"
    );

    // PALETTE COLOR: indices through three 16-bit tables of 3 entries from 0
    for e in [
        el(tags::SAMPLES_PER_PIXEL, VR::US, 1u16),
        el(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "PALETTE COLOR"),
        el(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::from([0u8, 1, 2, 7].repeat(16)),
        ),
    ] {
        obj.put(e);
    }
    let (r, g, b) = ([0u16, 65535, 0], [0u16, 0, 65535], [65535u16, 0, 0]);
    for (d, v, t) in [
        (
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            r,
        ),
        (
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            g,
        ),
        (
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            b,
        ),
    ] {
        obj.put(el(d, VR::US, u16s(&[3, 0, 16])));
        obj.put(el(v, VR::OW, u16s(&t)));
    }
    let palette = crate::io::dicom::write::finish_dicom(obj, "1.2.840.10008.1.2.1").unwrap();
    let f = shown(&palette);
    // index 7 is past the table: its last entry
    assert_close(&f.image.data, &[0.114, 0.299, 0.587, 0.587]);
    assert!(
        decode(&palette)
            .unwrap_err()
            .to_string()
            .contains("PALETTE COLOR")
    );
}

#[test]
fn a_hostile_rescale_gives_values_in_the_unit_range() {
    // slope 1e308: the modality values overflow to infinity, the range is infinite
    let px: Vec<u16> = (0..8).collect();
    let extra = vec![
        el(tags::RESCALE_SLOPE, VR::DS, ds(&[1e308])),
        el(tags::RESCALE_INTERCEPT, VR::DS, ds(&[-1e308])),
    ];
    let got = plain16(&px, extra);
    assert!(got.iter().all(|v| (0.0..=1.0).contains(v)), "{got:?}");
}
