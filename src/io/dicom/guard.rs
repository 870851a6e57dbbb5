//! Bounds checked on the raw bytes before dicom-rs parses them: declared lengths, nesting,
//! the pixel module's bit depths, a JPEG 2000 stream's size against the header's.

use crate::limits::Limits;
use dicom_object::file::ReadPreamble;

use crate::error::{Error, Result};

/// Deepest nesting of sequences (a sequence and its item count one level each) a file may have:
/// dicom-rs reads nested data sets recursively, so a file of 100,000 nested sequences would
/// overflow the stack. Real files nest a few levels.
pub const MAX_DICOM_NESTING: usize = Limits::DICOM_NESTING.value as usize;

/// Explicit VR little endian, deflated: the data set after the file meta group is a raw
/// deflate stream.
const DEFLATED_UID: &str = "1.2.840.10008.1.2.1.99";

/// Walks the elements (into sequences and items) and refuses one whose declared length runs
/// past the end of the file, and sequences nested deeper than [`MAX_DICOM_NESTING`]: dicom-rs
/// allocates a declared length before reading it and parses nested items recursively, so a
/// damaged or hostile file could otherwise ask for gigabytes or overflow the stack. A deflated
/// data set is inflated (at most [`crate::io::MAX_FILE_BYTES`]) and walked the same way.
pub(crate) fn check_declared_lengths(bytes: &[u8]) -> Result<()> {
    let start = if bytes.starts_with(b"DICM") { 4 } else { 132 };
    match walk(bytes, start, None)? {
        Walked::Done => Ok(()),
        Walked::Deflated(at) => {
            use std::io::Read;
            let mut inflated = Vec::new();
            flate2::read::DeflateDecoder::new(&bytes[at..])
                .take(crate::io::MAX_FILE_BYTES + 1)
                .read_to_end(&mut inflated)
                .map_err(|e| Error::Dicom(format!("the deflated data set is damaged ({e})")))?;
            if inflated.len() as u64 > crate::io::MAX_FILE_BYTES {
                return Err(Error::TooLarge(format!(
                    "the deflated data set inflates past {} MiB",
                    crate::io::MAX_FILE_BYTES >> 20
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

/// Bits Allocated, Bits Stored and High Bit as an image of up to 32 bits may have them: the
/// pixel decoder asserts (panics) on a Bits Stored of 0 or over 32 (found by fuzzing), so such
/// files are refused by name before it runs ([`super::grey::Bits`] reads them).
pub(crate) fn check_pixel_module(
    obj: &dicom_object::DefaultDicomObject,
) -> std::result::Result<(), String> {
    super::grey::Bits::read(obj)?;
    if JPEG_2000_UIDS.contains(&obj.meta().transfer_syntax().trim_end_matches(['\0', ' '])) {
        check_jpeg_2000_frames(obj)?;
    }
    Ok(())
}

/// JPEG 2000 (lossless, lossy, Part 2 and the high-throughput syntaxes).
const JPEG_2000_UIDS: [&str; 7] = [
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.92",
    "1.2.840.10008.1.2.4.93",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
];

/// Every JPEG 2000 codestream in the pixel data (a fragment that starts one, or a JP2 file's
/// `jp2c` box) must make no more components than Samples per Pixel and no component larger
/// than Rows × Columns: dicom-rs's JPEG 2000 adapter copies the decoded samples into a frame of
/// the header's size without checking, and panics past its end (found by fuzzing).
fn check_jpeg_2000_frames(
    obj: &dicom_object::DefaultDicomObject,
) -> std::result::Result<(), String> {
    use dicom_dictionary_std::tags;
    let get = |tag| -> u64 {
        obj.element_opt(tag)
            .ok()
            .flatten()
            .and_then(|e| e.to_int::<u16>().ok())
            .map_or(1, u64::from)
    };
    let (rows, cols, samples) = (
        get(tags::ROWS),
        get(tags::COLUMNS),
        get(tags::SAMPLES_PER_PIXEL),
    );
    let Some(fragments) = obj
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .and_then(|e| e.value().fragments())
    else {
        return Ok(());
    };
    for (k, fragment) in fragments.iter().enumerate() {
        let Some(siz) = codestream_size(fragment) else {
            continue;
        };
        let (components, largest) = siz?;
        if components > samples || largest > rows * cols {
            return Err(format!(
                "the JPEG 2000 stream in fragment {k} holds {components} component(s) of up to \
                 {largest} samples, but the header says {samples} of {rows}×{cols}"
            ));
        }
    }
    Ok(())
}

/// The component count and the largest component's samples (SIZ marker) of the JPEG 2000
/// codestream a fragment starts, or that a JP2 file holds; None where it starts neither.
fn codestream_size(fragment: &[u8]) -> Option<std::result::Result<(u64, u64), String>> {
    const SOC_SIZ: [u8; 4] = [0xFF, 0x4F, 0xFF, 0x51];
    const JP2_SIGNATURE: [u8; 12] = [0, 0, 0, 12, b'j', b'P', b' ', b' ', 13, 10, 0x87, 10];
    // (a fragment that continues a codestream may start with any bytes, so only the two
    // markers that begin one count)
    let at = if fragment.starts_with(&SOC_SIZ) {
        0
    } else if fragment.starts_with(&JP2_SIGNATURE) {
        fragment.windows(4).position(|w| w == SOC_SIZ)?
    } else {
        return None;
    };
    let siz = &fragment[at..];
    let short = || Err("the JPEG 2000 stream's size marker (SIZ) is cut short".to_string());
    let u32_at = |i: usize| {
        siz.get(i..i + 4)
            .map(|b| u64::from(u32::from_be_bytes(b.try_into().unwrap())))
    };
    // SOC, SIZ, Lsiz, Rsiz, then Xsiz, Ysiz, XOsiz, YOsiz, 4 tile fields, Csiz, 3 bytes a component
    let (Some(x1), Some(y1), Some(x0), Some(y0)) = (u32_at(8), u32_at(12), u32_at(16), u32_at(20))
    else {
        return Some(short());
    };
    let Some(components) = siz
        .get(40..42)
        .map(|b| u64::from(u16::from_be_bytes([b[0], b[1]])))
    else {
        return Some(short());
    };
    let mut largest = 0;
    for c in 0..components as usize {
        let Some(&[_, dx, dy]) = siz.get(42 + 3 * c..45 + 3 * c) else {
            return Some(short());
        };
        let (dx, dy) = (u64::from(dx.max(1)), u64::from(dy.max(1)));
        let w = x1.div_ceil(dx).saturating_sub(x0.div_ceil(dx));
        let h = y1.div_ceil(dy).saturating_sub(y0.div_ceil(dy));
        largest = largest.max(w * h);
    }
    Some(Ok((components, largest)))
}

/// Files written without the 128-byte preamble start with the magic itself.
pub(crate) fn preamble_of(bytes: &[u8]) -> ReadPreamble {
    if bytes.starts_with(b"DICM") {
        ReadPreamble::Never
    } else {
        ReadPreamble::Always
    }
}

#[cfg(test)]
mod tests {
    use super::check_declared_lengths;
    use super::*;
    use crate::io::dicom::decode;
    use crate::io::dicom::tests::EXPLICIT_LE;

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
}
