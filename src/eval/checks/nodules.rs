//! Check 4, nodules kept at every location: lung field, over the heart or mediastinum, over
//! the diaphragm.

use super::{Check, MIN_KEPT, VISIBLE_CNR, View, mean, median};
use crate::Result;
use crate::eval::anatomy::{Layout, Location};
use crate::eval::realism;

/// Check 4 over `views`, each placed by its `layouts` entry.
pub(super) fn check(views: &[View], layouts: &[Option<Layout>]) -> Result<Check> {
    // 4. nodules, per location: a nodule over the heart or the diaphragm is the hard case a
    //    detector must learn, and a restoration that flattens the anatomy there can keep its
    //    CNR while erasing its background; every location is judged on its own
    let mut per: Vec<NoduleTally> = Location::ALL
        .iter()
        .map(|_| NoduleTally::default())
        .collect();
    for (v, layout) in views.iter().zip(layouts) {
        for &(c, r) in &v.nodules {
            let (Some(b), Some(a)) = (
                realism::nodule_cnr(&v.before, c, r),
                realism::nodule_cnr(&v.after, c, r),
            ) else {
                continue;
            };
            let at = layout
                .as_ref()
                .map_or(Location::LungField, |l| l.locate(c, r));
            let t = &mut per[Location::ALL.iter().position(|x| *x == at).unwrap_or(0)];
            t.cnr_before.push(b);
            if b >= VISIBLE_CNR && a <= 0.0 {
                t.inverted += 1;
            }
            if b > 0.0 {
                t.ratios.push(a / b);
            }
        }
    }
    let all = NoduleTally::merged(&per);
    let located: Vec<String> = Location::ALL
        .iter()
        .zip(&per)
        .map(|(loc, t)| match (t.cnr_before.len(), t.ratios.len()) {
            (0, _) => format!("{}: none", loc.name()),
            (n, 0) => format!("{}: {n}, none with a positive CNR before", loc.name()),
            (n, _) => format!(
                "{}: {n}, median {:.2}, mean {:.2}{}",
                loc.name(),
                median(&t.ratios),
                mean(&t.ratios),
                if t.inverted > 0 {
                    format!(", {} inverted", t.inverted)
                } else {
                    String::new()
                }
            ),
        })
        .collect();
    Ok(Check {
        required: true,
        numbers: [
            ("median kept".to_string(), median(&all.ratios)),
            ("mean kept".to_string(), mean(&all.ratios)),
            ("inverted".to_string(), all.inverted as f64),
        ]
        .into_iter()
        .chain(Location::ALL.iter().zip(&per).flat_map(|(loc, t)| {
            [
                (format!("{} nodules", loc.name()), t.cnr_before.len() as f64),
                (format!("{} median kept", loc.name()), median(&t.ratios)),
            ]
        }))
        .collect(),
        name: "4 nodules kept: CNR after / before, per location",
        before: format!(
            "{} nodules, median CNR {:.2}",
            all.cnr_before.len(),
            median(&all.cnr_before)
        ),
        after: format!(
            "all: median {:.2}, mean {:.2}, {} inverted; {}",
            median(&all.ratios),
            mean(&all.ratios),
            all.inverted,
            located.join("; ")
        ),
        target: "at every location with nodules: median and mean ≥ 0.90, none inverted".into(),
        pass: !all.ratios.is_empty() && per.iter().all(NoduleTally::passes),
    })
}

/// Check 4's figures at one location.
#[derive(Default)]
struct NoduleTally {
    cnr_before: Vec<f64>,
    ratios: Vec<f64>,
    inverted: usize,
}

impl NoduleTally {
    fn merged(all: &[NoduleTally]) -> NoduleTally {
        NoduleTally {
            cnr_before: all.iter().flat_map(|t| t.cnr_before.clone()).collect(),
            ratios: all.iter().flat_map(|t| t.ratios.clone()).collect(),
            inverted: all.iter().map(|t| t.inverted).sum(),
        }
    }

    /// Median and mean of the ratios ≥ 0.9 and none inverted; a location with no nodule passes
    /// (the figures say "none").
    fn passes(&self) -> bool {
        self.inverted == 0
            && (self.ratios.is_empty()
                || (median(&self.ratios) >= MIN_KEPT && mean(&self.ratios) >= MIN_KEPT))
    }
}
