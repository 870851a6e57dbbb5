//! Nodule spots, the .npy header and the automatic window.

use super::*;

#[test]
fn nodule_spots_are_scaled_and_bad_sizes_are_named() {
    let text = r#"{"width": 100, "height": 50, "nodules": [
        {"centre_px": [10, 20], "radius_px": 4, "bbox_px": [6, 16, 14, 24]}]}"#;
    let s = spots_from_json(text, "a.json", 200, 100).unwrap();
    assert_eq!(s[0].centre_px, [20.0, 40.0]);
    assert_eq!(s[0].radius_px, 8.0);
    assert_eq!(s[0].bbox_px, [12.0, 32.0, 28.0, 48.0]);
    for (bad, names) in [
        (r#"{"width": 0, "nodules": []}"#, "width 0"),
        (r#"{"height": -3, "nodules": []}"#, "height -3"),
        (
            r#"{"nodules": [{"centre_px": [1, 1], "radius_px": -1, "bbox_px": [0, 0, 2, 2]}]}"#,
            "nodule 0",
        ),
        ("[1, 2", "not a nodule label"),
    ] {
        let e = spots_from_json(bad, "a.json", 10, 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains(names) && e.contains("a.json"), "{bad}: {e}");
    }
}

#[test]
fn npy_header_is_numpy_format_1() {
    let b = npy_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3);
    assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
    let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
    assert_eq!((10 + hl) % 64, 0, "data starts 64-byte aligned");
    let header = std::str::from_utf8(&b[10..10 + hl]).unwrap();
    assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
    assert!(header.ends_with('\n'));
    assert_eq!(b.len(), 10 + hl + 24);
    assert_eq!(
        f32::from_le_bytes(b[10 + hl + 20..].try_into().unwrap()),
        6.0
    );
}

#[test]
fn auto_window_spans_the_body_not_the_air() {
    let mut img = vec![0.0f32; 1000];
    for (k, v) in img.iter_mut().enumerate().skip(500) {
        *v = 1.0 + (k - 500) as f32 / 100.0;
    }
    let [lo, hi] = Window::default().range(&img);
    assert!(lo > 1.0 && lo < 1.1 && hi > 5.8 && hi <= 5.99, "{lo} {hi}");
    let shown = display(&img, crate::spec::Size::new(100, 10), [lo, hi]);
    assert_eq!(shown.data[0], 0.0);
    assert_eq!(shown.data[999], 1.0);
}
