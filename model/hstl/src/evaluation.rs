//! The CASIA-B test protocol of the HSTL paper and OpenGait: gallery nm-01..04; probe sets NM (nm-05/06), BG
//! (bg-01/02) and CL (cl-01/02); rank-1 for every (probe view, gallery view) pair with the identical
//! view left out, averaged over gallery views, then over probe views.

use std::fmt;

use crate::embedding::Embedding;
use crate::error::Result;

/// The gallery of the protocol: the first four normal walks of each subject.
pub const GALLERY_CONDITIONS: [&str; 4] = ["nm-01", "nm-02", "nm-03", "nm-04"];
/// The probe sets: normal walking, carrying a bag, wearing a coat.
pub const PROBE_SETS: [(&str, [&str; 2]); 3] = [
    ("NM", ["nm-05", "nm-06"]),
    ("BG", ["bg-01", "bg-02"]),
    ("CL", ["cl-01", "cl-02"]),
];

/// The embedding of one walk and what it is.
#[derive(Debug, Clone)]
pub struct LabelledEmbedding {
    /// Subject id.
    pub subject: String,
    /// Condition of the walk.
    pub condition: String,
    /// Camera view of the walk.
    pub view: String,
    /// The network's embedding of the walk.
    pub embedding: Embedding,
}

/// Rank-1 accuracy (%) per probe set and probe view, identical gallery views excluded.
#[derive(Debug, Clone, PartialEq)]
pub struct Rank1Table {
    /// Probe views, in order.
    pub views: Vec<String>,
    /// (probe set name, accuracy per entry of `views`; `None` where no pair could be scored).
    pub sets: Vec<(String, Vec<Option<f64>>)>,
}

impl Rank1Table {
    /// The mean over the probe views that could be scored.
    pub fn mean(&self, set: &str) -> Option<f64> {
        let (_, per_view) = self.sets.iter().find(|(name, _)| name == set)?;
        let scored: Vec<f64> = per_view.iter().flatten().copied().collect();
        (!scored.is_empty()).then(|| scored.iter().sum::<f64>() / scored.len() as f64)
    }
}

impl fmt::Display for Rank1Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<6}", "probe")?;
        for view in &self.views {
            write!(f, "{view:>7}")?;
        }
        writeln!(f, "{:>8}", "mean")?;
        for (name, per_view) in &self.sets {
            write!(f, "{name:<6}")?;
            for accuracy in per_view {
                match accuracy {
                    Some(a) => write!(f, "{a:>7.1}")?,
                    None => write!(f, "{:>7}", "-")?,
                }
            }
            match self.mean(name) {
                Some(m) => writeln!(f, "{m:>8.2}")?,
                None => writeln!(f, "{:>8}", "-")?,
            }
        }
        Ok(())
    }
}

/// Scores every probe set against the gallery. Walks of other conditions are ignored.
pub fn casia_b_rank1(walks: &[LabelledEmbedding]) -> Result<Rank1Table> {
    let mut views: Vec<String> = walks.iter().map(|w| w.view.clone()).collect();
    views.sort();
    views.dedup();
    let gallery: Vec<&LabelledEmbedding> = walks
        .iter()
        .filter(|w| GALLERY_CONDITIONS.contains(&w.condition.as_str()))
        .collect();
    let mut sets = Vec::new();
    for (name, conditions) in PROBE_SETS {
        let probes: Vec<&LabelledEmbedding> = walks
            .iter()
            .filter(|w| conditions.contains(&w.condition.as_str()))
            .collect();
        let mut per_view = Vec::with_capacity(views.len());
        for probe_view in &views {
            let mut accuracies = Vec::new();
            for gallery_view in views.iter().filter(|v| *v != probe_view) {
                if let Some(a) = rank1(&probes, &gallery, probe_view, gallery_view)? {
                    accuracies.push(a);
                }
            }
            per_view.push(
                (!accuracies.is_empty())
                    .then(|| accuracies.iter().sum::<f64>() / accuracies.len() as f64),
            );
        }
        sets.push((name.to_owned(), per_view));
    }
    Ok(Rank1Table { views, sets })
}

/// The share (%) of probes in `probe_view` whose nearest walk in `gallery_view` is the same subject.
fn rank1(
    probes: &[&LabelledEmbedding],
    gallery: &[&LabelledEmbedding],
    probe_view: &str,
    gallery_view: &str,
) -> Result<Option<f64>> {
    let candidates: Vec<&LabelledEmbedding> = gallery
        .iter()
        .copied()
        .filter(|g| g.view == gallery_view)
        .collect();
    if candidates.is_empty() {
        return Ok(None);
    }
    let mut scored = 0usize;
    let mut correct = 0usize;
    for probe in probes.iter().filter(|p| p.view == probe_view) {
        let mut best: Option<(f32, &str)> = None;
        for candidate in &candidates {
            let d = probe.embedding.distance(&candidate.embedding)?;
            if best.is_none_or(|(b, _)| d < b) {
                best = Some((d, &candidate.subject));
            }
        }
        scored += 1;
        correct += usize::from(best.is_some_and(|(_, s)| s == probe.subject));
    }
    Ok((scored > 0).then(|| 100.0 * correct as f64 / scored as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(subject: &str, condition: &str, view: &str, value: f32) -> LabelledEmbedding {
        LabelledEmbedding {
            subject: subject.into(),
            condition: condition.into(),
            view: view.into(),
            embedding: Embedding::new(1, 1, vec![value]).unwrap(),
        }
    }

    #[test]
    fn identical_views_are_excluded_and_views_averaged() {
        // Subject A sits at 0, B at 10. In view 090 B's probe looks like A, so only the pairs whose
        // probe view is 090 lose B; the (000, 000) pair, which would be perfect, must not count.
        let walks = vec![
            walk("A", "nm-01", "000", 0.0),
            walk("B", "nm-01", "000", 10.0),
            walk("A", "nm-01", "090", 0.0),
            walk("B", "nm-01", "090", 10.0),
            walk("A", "nm-05", "000", 0.5),
            walk("B", "nm-05", "000", 9.5),
            walk("A", "nm-05", "090", 0.5),
            walk("B", "nm-05", "090", 1.0),
        ];
        let table = casia_b_rank1(&walks).unwrap();
        assert_eq!(table.views, ["000", "090"]);
        let nm = &table.sets[0];
        assert_eq!(nm.0, "NM");
        assert_eq!(nm.1, [Some(100.0), Some(50.0)]);
        assert_eq!(table.mean("NM"), Some(75.0));
        assert_eq!(table.mean("BG"), None);
        assert!(table.to_string().contains("75.00"));
    }

    #[test]
    fn a_view_without_probes_is_not_scored() {
        let walks = vec![
            walk("A", "nm-02", "000", 0.0),
            walk("A", "nm-02", "018", 0.0),
            walk("A", "cl-01", "000", 0.1),
        ];
        let table = casia_b_rank1(&walks).unwrap();
        assert_eq!(table.sets[2].1, [Some(100.0), None]);
    }
}
