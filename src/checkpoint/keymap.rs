//! Rules between the references' tensor names and our module paths.
//!
//! Each rule is a pair of rewrites (reference → module, module → reference) applied in order to
//! the whole name. Our structs keep the reference's names wherever Rust allows; the rules only
//! replace positional indices (`downs.3.0.` → `downs.3.block1.`) and wrapper levels
//! (`.fn.fn.`) by field names.

use std::sync::OnceLock;

use regex::Regex;

use crate::spec::Family;

/// (reference pattern, module replacement, module pattern, reference replacement).
type RuleText = (&'static str, &'static str, &'static str, &'static str);

const CHEFF_RULES: &[RuleText] = &[
    (
        r"^time_mlp\.1\.",
        "time_mlp.lin1.",
        r"^time_mlp\.lin1\.",
        "time_mlp.1.",
    ),
    (
        r"^time_mlp\.3\.",
        "time_mlp.lin2.",
        r"^time_mlp\.lin2\.",
        "time_mlp.3.",
    ),
    (
        r"^(downs|ups)\.(\d+)\.0\.",
        "$1.$2.block1.",
        r"^(downs|ups)\.(\d+)\.block1\.",
        "$1.$2.0.",
    ),
    (
        r"^(downs|ups)\.(\d+)\.1\.",
        "$1.$2.block2.",
        r"^(downs|ups)\.(\d+)\.block2\.",
        "$1.$2.1.",
    ),
    (
        r"^(downs|ups)\.(\d+)\.2\.fn\.norm\.",
        "$1.$2.attn.norm.",
        r"^(downs|ups)\.(\d+)\.attn\.norm\.",
        "$1.$2.2.fn.norm.",
    ),
    (
        r"^(downs|ups)\.(\d+)\.2\.fn\.fn\.to_qkv\.",
        "$1.$2.attn.to_qkv.",
        r"^(downs|ups)\.(\d+)\.attn\.to_qkv\.",
        "$1.$2.2.fn.fn.to_qkv.",
    ),
    (
        r"^(downs|ups)\.(\d+)\.2\.fn\.fn\.to_out\.0\.",
        "$1.$2.attn.to_out.",
        r"^(downs|ups)\.(\d+)\.attn\.to_out\.",
        "$1.$2.2.fn.fn.to_out.0.",
    ),
    (
        r"^(downs|ups)\.(\d+)\.2\.fn\.fn\.to_out\.1\.",
        "$1.$2.attn.out_norm.",
        r"^(downs|ups)\.(\d+)\.attn\.out_norm\.",
        "$1.$2.2.fn.fn.to_out.1.",
    ),
    (
        r"^downs\.(\d+)\.3\.",
        "downs.$1.downsample.",
        r"^downs\.(\d+)\.downsample\.",
        "downs.$1.3.",
    ),
    (
        r"^ups\.(\d+)\.3\.",
        "ups.$1.upsample.",
        r"^ups\.(\d+)\.upsample\.",
        "ups.$1.3.",
    ),
    (r"\.mlp\.1\.", ".mlp.", r"\.mlp\.", ".mlp.1."),
    (
        r"^mid_attn\.fn\.norm\.",
        "mid_attn.norm.",
        r"^mid_attn\.norm\.",
        "mid_attn.fn.norm.",
    ),
    (
        r"^mid_attn\.fn\.fn\.",
        "mid_attn.",
        r"^mid_attn\.(to_qkv|to_out)\.",
        "mid_attn.fn.fn.$1.",
    ),
    (
        r"^final_conv\.0\.fn\.0\.",
        "final_res.block1.",
        r"^final_res\.block1\.",
        "final_conv.0.fn.0.",
    ),
    (
        r"^final_conv\.0\.fn\.1\.",
        "final_res.block2.",
        r"^final_res\.block2\.",
        "final_conv.0.fn.1.",
    ),
    (
        r"^final_conv\.1\.",
        "final_conv.",
        r"^final_conv\.(weight|bias)$",
        "final_conv.1.$1",
    ),
];

const SR3_RULES: &[RuleText] = &[
    (r"^denoise_fn\.", "", r"^", "denoise_fn."),
    (
        r"^noise_level_mlp\.1\.",
        "noise_level_mlp.lin1.",
        r"^noise_level_mlp\.lin1\.",
        "noise_level_mlp.1.",
    ),
    (
        r"^noise_level_mlp\.3\.",
        "noise_level_mlp.lin2.",
        r"^noise_level_mlp\.lin2\.",
        "noise_level_mlp.3.",
    ),
    (
        r"\.block\.0\.",
        ".norm.",
        r"(^|\.)(block1|block2|final_conv)\.norm\.",
        "$1$2.block.0.",
    ),
    (
        r"\.block\.3\.",
        ".conv.",
        r"(^|\.)(block1|block2|final_conv)\.conv\.",
        "$1$2.block.3.",
    ),
    (
        r"\.noise_func\.noise_func\.0\.",
        ".noise_func.",
        r"\.noise_func\.",
        ".noise_func.noise_func.0.",
    ),
];

/// SR3 `.pth` files also hold the schedule as buffers; they are not network weights.
const SR3_BUFFERS: &[&str] = &[
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
];

struct Rules {
    to_module: Vec<(Regex, &'static str)>,
    to_reference: Vec<(Regex, &'static str)>,
}

fn compile(text: &[RuleText]) -> Rules {
    Rules {
        to_module: text
            .iter()
            .map(|r| (Regex::new(r.0).unwrap(), r.1))
            .collect(),
        // Inverse rules run in reverse order so that nested renames unwind correctly.
        to_reference: text
            .iter()
            .rev()
            .map(|r| (Regex::new(r.2).unwrap(), r.3))
            .collect(),
    }
}

fn rules(family: Family) -> &'static Rules {
    static CHEFF: OnceLock<Rules> = OnceLock::new();
    static SR3: OnceLock<Rules> = OnceLock::new();
    match family {
        Family::Cheff => CHEFF.get_or_init(|| compile(CHEFF_RULES)),
        Family::Sr3 => SR3.get_or_init(|| compile(SR3_RULES)),
    }
}

fn rewrite(name: &str, rules: &[(Regex, &str)]) -> String {
    rules.iter().fold(name.to_string(), |s, (re, rep)| {
        re.replace(&s, *rep).into_owned()
    })
}

/// Reference tensor name → our module path.
pub fn to_module_path(family: Family, name: &str) -> String {
    rewrite(name, &rules(family).to_module)
}

/// Our module path → reference tensor name (SR3 names get the `denoise_fn.` prefix of `.pth`).
pub fn to_reference_name(family: Family, path: &str) -> String {
    rewrite(path, &rules(family).to_reference)
}

/// Stored tensors that are not network weights.
pub fn is_ignored(family: Family, name: &str) -> bool {
    family == Family::Sr3 && SR3_BUFFERS.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cheff_names_round_trip() {
        for name in [
            "init_conv.weight",
            "time_mlp.1.weight",
            "time_mlp.3.bias",
            "downs.0.0.mlp.1.weight",
            "downs.0.0.block1.proj.weight",
            "downs.1.1.block2.norm.bias",
            "downs.0.0.res_conv.weight",
            "downs.2.2.fn.norm.weight",
            "downs.2.2.fn.fn.to_qkv.weight",
            "downs.2.2.fn.fn.to_out.0.bias",
            "downs.2.2.fn.fn.to_out.1.weight",
            "downs.0.3.weight",
            "ups.1.3.bias",
            "mid_block1.mlp.1.weight",
            "mid_attn.fn.norm.weight",
            "mid_attn.fn.fn.to_qkv.weight",
            "mid_attn.fn.fn.to_out.bias",
            "final_conv.0.fn.0.proj.weight",
            "final_conv.0.fn.1.norm.bias",
            "final_conv.1.weight",
        ] {
            let path = to_module_path(Family::Cheff, name);
            assert!(!path.split('.').any(|s| s == "fn"), "{name} -> {path}");
            assert_eq!(to_reference_name(Family::Cheff, &path), name, "via {path}");
        }
        assert_eq!(
            to_module_path(Family::Cheff, "downs.2.2.fn.fn.to_out.1.weight"),
            "downs.2.attn.out_norm.weight"
        );
        assert_eq!(
            to_module_path(Family::Cheff, "ups.0.0.mlp.1.weight"),
            "ups.0.block1.mlp.weight"
        );
    }

    #[test]
    fn sr3_names_round_trip() {
        for name in [
            "denoise_fn.noise_level_mlp.1.weight",
            "denoise_fn.noise_level_mlp.3.bias",
            "denoise_fn.downs.0.weight",
            "denoise_fn.downs.1.res_block.block1.block.0.weight",
            "denoise_fn.downs.1.res_block.block2.block.3.bias",
            "denoise_fn.downs.1.res_block.noise_func.noise_func.0.weight",
            "denoise_fn.downs.3.res_block.res_conv.weight",
            "denoise_fn.downs.3.attn.qkv.weight",
            "denoise_fn.downs.2.conv.weight",
            "denoise_fn.mid.0.attn.norm.bias",
            "denoise_fn.ups.2.conv.bias",
            "denoise_fn.final_conv.block.0.weight",
            "denoise_fn.final_conv.block.3.weight",
        ] {
            let path = to_module_path(Family::Sr3, name);
            assert!(
                !path.contains(".block.") && !path.starts_with("denoise_fn"),
                "{name} -> {path}"
            );
            assert_eq!(to_reference_name(Family::Sr3, &path), name, "via {path}");
        }
        assert!(is_ignored(Family::Sr3, "posterior_mean_coef1"));
        assert!(!is_ignored(Family::Cheff, "betas"));
    }
}
