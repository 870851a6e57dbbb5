//! `dxr sheet`: folders tiled by name with the nodule boxes drawn.

use super::*;

#[test]
fn sheet_command_tiles_folders_by_name_and_draws_the_nodule_boxes() {
    let dir = Scratch::new("sheet");
    fake_drr_set(&dir);
    // a second column at twice the size, as a restoration of other size would be
    for k in 0..2 {
        write_png(
            &dir.path(&format!("big/{k:05}.png")),
            &blobs(k as u64, 128, 128),
        );
    }
    let p = |s: &str| dir.path(s).to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        common::cli::command()
            .arg("sheet")
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        &p("set/png16"),
        &p("big"),
        "--labels",
        &p("set"),
        "--thumb",
        "32",
        "-o",
        &p("s.png"),
    ]);
    common::cli::assert_ok(&out);
    let sheet = image::open(dir.path("s.png")).unwrap().to_rgb8();
    // 2 rows × 2 columns of 32² cells with 4-px gaps
    assert_eq!((sheet.width(), sheet.height()), (76, 76));
    // the disk's box [24,28,36,40] of 64 px → [12,14,18,20] in a 32-px cell, grown by a pixel:
    // its left edge at x = 4 + 11 in the first column and 40 + 11 in the second (label scaled)
    for x0 in [4, 40] {
        assert_eq!(
            *sheet.get_pixel(x0 + 11, 4 + 16),
            image::Rgb([255, 40, 40]),
            "cell at x {x0}"
        );
    }
    // a close-up: the right half of every image, at its own pixels (64² → 32×64, 128² → 64×128
    // scaled to the first cell's 32×64); the box moves with the crop
    let out = run(&[
        &p("set/png16"),
        &p("big"),
        "--labels",
        &p("set"),
        "--crop",
        "0.25,0,0.75,1",
        "-o",
        &p("c.png"),
    ]);
    common::cli::assert_ok(&out);
    let close = image::open(dir.path("c.png")).unwrap().to_rgb8();
    assert_eq!(
        (close.width(), close.height()),
        (4 + 32 + 4 + 32 + 4, 4 + 64 + 4 + 64 + 4)
    );
    // the box [24,28,36,40] less the crop's 16 px → its left edge at x = 8 - 1 in the cell
    assert_eq!(*close.get_pixel(4 + 7, 4 + 34), image::Rgb([255, 40, 40]));
    for bad in ["0.25,0,0.75", "0.8,0,0.2,1"] {
        let out = run(&[&p("set/png16"), "--crop", bad, "-o", &p("bad.png")]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("crop"));
        assert!(!dir.path("bad.png").exists());
    }
    // a folder without one of the names is refused by name, and nothing is written
    std::fs::remove_file(dir.path("big/00001.png")).unwrap();
    let out = run(&[&p("set/png16"), &p("big"), "-o", &p("t.png")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no image named 00001"));
    assert!(!dir.path("t.png").exists());
}
