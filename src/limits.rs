//! Every hard limit on what an input may make us allocate or compute, in one place: its value,
//! what it bounds and where it is enforced. The modules' `MAX_*` constants are these values;
//! `docs/limits.md` shows each (a test in `tests/structure.rs` keeps the table and [`Limits::ALL`]
//! equal). An input past a limit is refused by name before anything large is allocated.

/// How a limit's value reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Pixels,
    Voxels,
    Count,
    Levels,
    Ratio,
}

/// One hard limit.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// Its name in [`Limits`] (and in `docs/limits.md`).
    pub name: &'static str,
    pub value: u64,
    pub unit: Unit,
    /// What it bounds.
    pub bounds: &'static str,
    /// Where it is checked.
    pub enforced: &'static str,
}

impl Limit {
    /// The value as `docs/limits.md` writes it: bytes in KiB/MiB/GiB, powers of two as 2^n,
    /// other counts with thousands separators.
    pub fn shown(&self) -> String {
        let v = self.value;
        match self.unit {
            Unit::Bytes => {
                let (n, u) = if v >= 1 << 30 && v % (1 << 30) == 0 {
                    (v >> 30, "GiB")
                } else if v >= 1 << 20 && v % (1 << 20) == 0 {
                    (v >> 20, "MiB")
                } else {
                    (v >> 10, "KiB")
                };
                format!("{n} {u}")
            }
            Unit::Ratio => format!("{v}×"),
            _ if v >= 1 << 20 && v.is_power_of_two() => format!("2^{}", v.trailing_zeros()),
            _ => {
                let digits = v.to_string();
                let mut out = String::new();
                for (i, c) in digits.chars().enumerate() {
                    if i > 0 && (digits.len() - i) % 3 == 0 {
                        out.push(',');
                    }
                    out.push(c);
                }
                out
            }
        }
    }
}

/// The limits, by name.
pub struct Limits;

/// Declares each limit as a constant of [`Limits`] and lists it in [`Limits::ALL`], from one line
/// per limit: name, value, unit, what it bounds, where it is enforced.
macro_rules! limits {
    ($($name:ident, $value:expr, $unit:ident, $bounds:expr, $enforced:expr;)*) => {
        impl Limits {
            $(
                pub const $name: Limit = Limit {
                    name: stringify!($name),
                    value: $value,
                    unit: Unit::$unit,
                    bounds: $bounds,
                    enforced: $enforced,
                };
            )*
            pub const ALL: &'static [Limit] = &[$(Self::$name),*];
        }
    };
}

#[rustfmt::skip]
limits! {
    FILE_BYTES, 512 << 20, Bytes, "an image or DICOM file (and a deflated DICOM data set, inflated)", "io::read_bytes, io::dicom::guard; the page's limits.js";
    MIN_SIDE, 8, Pixels, "an image's shorter side", "io::GrayImage::check_size";
    MAX_SIDE, 8192, Pixels, "an image's longer side", "io::GrayImage::check_size";
    CHECKPOINT_BYTES, 2 << 30, Bytes, "a checkpoint file (and one tensor storage of a .pt, inflated)", "checkpoint::read_file, checkpoint::torch";
    TENSORS, 100_000, Count, "tensors in a checkpoint", "checkpoint::read_checkpoint";
    TENSOR_ELEMENTS, 1 << 28, Count, "elements of one tensor", "checkpoint::read_checkpoint";
    PICKLE_BYTES, 64 << 20, Bytes, "a .pt's pickle stream, inflated", "checkpoint::torch";
    PICKLE_DEPTH, 64, Levels, "nesting of a pickle's containers", "checkpoint::pickle";
    PICKLE_VALUES, 1 << 20, Count, "values a pickle builds, memo copies counted", "checkpoint::pickle";
    PICKLE_MEMO, 1 << 20, Count, "a pickle's memo entries", "checkpoint::pickle";
    NIFTI_BYTES, 8 << 30, Bytes, "a NIfTI file's content, inflated", "drr::nifti";
    DEFLATE_RATIO, 1032, Ratio, "a .nii.gz header's declared size over its gzip stream (DEFLATE's most)", "drr::nifti";
    VOLUME_SIDE, 4096, Voxels, "a CT volume's side", "drr::volume::Volume::new";
    VOLUME_VOXELS, 1 << 31, Voxels, "a CT volume", "drr::volume::Volume::new";
    SLICE_BYTES, 256 << 20, Bytes, "one DICOM CT slice file", "drr::dicom_series";
    DICOM_NESTING, 64, Levels, "nesting of DICOM sequences", "io::dicom::guard::check_declared_lengths";
    TIMESTEPS, 100_000, Count, "a schedule's T", "diffusion::schedule";
    DETECTOR_PIXELS, 8192, Pixels, "a DRR detector's side", "drr::geometry";
    STUDIO_VOXELS, 160_000_000, Voxels, "a CT in the page's studio", "drr::studio";
    VIEWS_PER_CT, 100_000, Count, "views per CT in a dataset", "factory::settings";
    MANIFEST_BYTES, 64 << 20, Bytes, "a dataset manifest", "factory::manifest";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_as_the_table_writes_them() {
        assert_eq!(Limits::FILE_BYTES.shown(), "512 MiB");
        assert_eq!(Limits::NIFTI_BYTES.shown(), "8 GiB");
        assert_eq!(Limits::TENSORS.shown(), "100,000");
        assert_eq!(Limits::VOLUME_VOXELS.shown(), "2^31");
        assert_eq!(Limits::STUDIO_VOXELS.shown(), "160,000,000");
        assert_eq!(Limits::DEFLATE_RATIO.shown(), "1032×");
        assert_eq!(Limits::PICKLE_DEPTH.shown(), "64");
        let names: std::collections::BTreeSet<_> = Limits::ALL.iter().map(|l| l.name).collect();
        assert_eq!(names.len(), Limits::ALL.len(), "every limit once");
    }
}
