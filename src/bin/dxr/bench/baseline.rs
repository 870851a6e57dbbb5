//! `--baseline`: which of our own choices a benchmark undoes, to measure what each one pays.

/// What a bench may measure our own choices against (`--baseline a,b`).
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
pub enum Baseline {
    /// glibc's default allocator thresholds (freed feature maps returned to the system at once)
    Malloc,
    /// burn's own convolution weight gradient (not our im2col + matmul)
    Conv,
    /// burn's own GroupNorm and SiLU (not our fused, threaded ones)
    Norm,
}

/// "; baseline: …" for a header line, when any of our choices is undone.
pub(crate) fn describe_baselines(b: &[Baseline]) -> String {
    if b.is_empty() {
        return String::new();
    }
    let names: Vec<String> = b.iter().map(|x| format!("{x:?}").to_lowercase()).collect();
    format!("; baseline (ours undone): {}", names.join(", "))
}

/// Applies a bench's `--baseline` to the library's ops (the allocator is main's).
pub fn apply_baselines(args: &[Baseline]) {
    dxr::model::baseline::use_burn_conv(args.contains(&Baseline::Conv));
    dxr::model::baseline::use_burn_norm(args.contains(&Baseline::Norm));
}
