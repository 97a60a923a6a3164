//! Open-set identification rates (FPIR and FNIR, as ISO/IEC 19795-1 defines them), the kiosk's case: each search of a window
//! against the whole gallery either returns its nearest identity (distance at most the threshold) or
//! "unknown".
//!
//! - **FPIR**: the share of *non-mated* searches (the person is not enrolled) that return anyone.
//! - **FNIR**: the share of *mated* searches whose nearest identity is not their own or is too far.
//!
//! Searches come from labelled walks by leaving each person out in turn: a person's first walks are
//! their gallery; their other walks are mated searches against everyone's gallery, and all their walks
//! are non-mated searches against the gallery of everyone else. A door's gallery is enrolled at its
//! own camera, so walks are grouped by camera: people are enrolled and searched within one camera's
//! walks (one CASIA-B view), and the searches of every camera are pooled.

use hstl::Embedding;

use crate::thresholds::{most_permissive_threshold, ThresholdError};

/// The searches the door makes of one walk of one person.
#[derive(Debug, Clone)]
pub struct LabelledWalk {
    /// Who walked: searches are mated when the gallery holds this name.
    pub person: String,
    /// The camera that saw it: galleries and searches never mix cameras.
    pub camera: String,
    /// One per window the kiosk would decide on: the walk so far once that window is taken, as the
    /// door searches it and as enrolment keeps it.
    pub prefixes: Vec<Prefix>,
}

/// The walk so far at one of the door's searches.
#[derive(Debug, Clone)]
pub struct Prefix {
    /// Its embedding.
    pub embedding: Embedding,
    /// The silhouettes it was made of.
    pub frames: usize,
}

/// What a person's enrolled walks leave in the gallery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GalleryTemplates {
    /// Every walk so far of every walk (what enrolment keeps: a replayed enrolment walk asks exactly
    /// what was enrolled at each search).
    EveryPrefix,
    /// Each walk whole: one template per walk.
    WholeWalks,
    /// The mean of the whole walks: one template per person.
    MeanOfWalks,
    /// Each walk whole and their mean.
    WholeWalksAndMean,
}

impl GalleryTemplates {
    /// Every kind, each with the name `calibrate --templates` and operating points call it by.
    pub const NAMED: [(&'static str, GalleryTemplates); 4] = [
        ("every-prefix", GalleryTemplates::EveryPrefix),
        ("whole-walks", GalleryTemplates::WholeWalks),
        ("mean-of-walks", GalleryTemplates::MeanOfWalks),
        ("whole-walks-and-mean", GalleryTemplates::WholeWalksAndMean),
    ];

    /// Its name in [`GalleryTemplates::NAMED`].
    pub fn name(self) -> &'static str {
        Self::NAMED
            .iter()
            .find(|(_, kind)| *kind == self)
            .map(|(name, _)| *name)
            .expect("every kind is named")
    }

    /// The templates `walks` (one person's enrolled walks, none empty) leave in the gallery.
    pub fn of(self, walks: &[&LabelledWalk]) -> Result<Vec<Embedding>, hstl::HstlError> {
        let whole: Vec<&Embedding> = walks
            .iter()
            .filter_map(|walk| walk.prefixes.last().map(|p| &p.embedding))
            .collect();
        let mean = || mean_of(&whole);
        Ok(match self {
            GalleryTemplates::EveryPrefix => walks
                .iter()
                .flat_map(|walk| walk.prefixes.iter().map(|p| p.embedding.clone()))
                .collect(),
            GalleryTemplates::WholeWalks => whole.into_iter().cloned().collect(),
            GalleryTemplates::MeanOfWalks => vec![mean()?],
            GalleryTemplates::WholeWalksAndMean => {
                let mut templates: Vec<Embedding> = whole.iter().map(|e| (*e).clone()).collect();
                if templates.len() > 1 {
                    templates.push(mean()?);
                }
                templates
            }
        })
    }
}

/// The element-wise mean of `embeddings` (at least one, all of one shape).
fn mean_of(embeddings: &[&Embedding]) -> Result<Embedding, hstl::HstlError> {
    let first = embeddings
        .first()
        .ok_or_else(|| hstl::HstlError::Incomparable("the mean of no embedding".to_string()))?;
    let mut sum = vec![0f32; first.as_slice().len()];
    for embedding in embeddings {
        if (embedding.parts(), embedding.channels()) != (first.parts(), first.channels()) {
            return Err(hstl::HstlError::Incomparable(format!(
                "{}x{} against {}x{}",
                embedding.parts(),
                embedding.channels(),
                first.parts(),
                first.channels()
            )));
        }
        for (total, value) in sum.iter_mut().zip(embedding.as_slice()) {
            *total += value;
        }
    }
    let count = embeddings.len() as f32;
    Embedding::new(
        first.parts(),
        first.channels(),
        sum.into_iter().map(|total| total / count).collect(),
    )
}

/// `walks` grouped by the camera that saw them, cameras and walks in order of appearance.
pub(crate) fn by_camera(walks: &[LabelledWalk]) -> Vec<Vec<&LabelledWalk>> {
    let mut cameras: Vec<&str> = Vec::new();
    for walk in walks {
        if !cameras.contains(&walk.camera.as_str()) {
            cameras.push(&walk.camera);
        }
    }
    cameras
        .into_iter()
        .map(|camera| walks.iter().filter(|w| w.camera == camera).collect())
        .collect()
}

/// One camera's walks split as a door is enrolled: each person's first `gallery_walks` walks
/// (people in order of first appearance), and every other walk, a probe.
pub(crate) fn gallery_and_probes<'a>(
    walks: &[&'a LabelledWalk],
    gallery_walks: usize,
) -> (Vec<(&'a str, Vec<&'a LabelledWalk>)>, Vec<&'a LabelledWalk>) {
    let mut gallery: Vec<(&str, Vec<&LabelledWalk>)> = Vec::new();
    let mut probes = Vec::new();
    for &walk in walks {
        let position = match gallery.iter().position(|(p, _)| *p == walk.person) {
            Some(position) => position,
            None => {
                gallery.push((&walk.person, Vec::new()));
                gallery.len() - 1
            }
        };
        let enrolled = &mut gallery[position].1;
        if enrolled.len() < gallery_walks {
            enrolled.push(walk);
        } else {
            probes.push(walk);
        }
    }
    gallery.retain(|(_, enrolled)| !enrolled.is_empty());
    (gallery, probes)
}

/// One point of the DET curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenSetPoint {
    /// The accept distance of this point.
    pub threshold: f32,
    /// Share of non-mated searches accepted at it.
    pub fpir: f64,
    /// Share of mated searches not accepted as their own person at it.
    pub fnir: f64,
}

/// The outcomes of a set of open-set searches, from which every threshold's FPIR and FNIR follow.
#[derive(Debug, Clone)]
pub struct OpenSetRates {
    /// Mated searches: the distance when the nearest identity was the right one, `None` when it was
    /// someone else (a miss at every threshold). Sorted, misses last.
    mated: Vec<Option<f32>>,
    /// Non-mated searches: the distance to the nearest identity. Sorted.
    non_mated: Vec<f32>,
}

impl OpenSetRates {
    /// Leave-one-person-out searches within each camera's walks, pooled; the first `gallery_walks`
    /// walks of each person at a camera form their gallery there, as `templates` says.
    pub fn leave_one_out(
        walks: &[LabelledWalk],
        gallery_walks: usize,
        templates: GalleryTemplates,
    ) -> Result<Self, ThresholdError> {
        let mut mated = Vec::new();
        let mut non_mated = Vec::new();
        for seen in by_camera(walks) {
            let (camera_mated, camera_non_mated) =
                leave_one_out_searches(&seen, gallery_walks, templates)?;
            mated.extend(camera_mated);
            non_mated.extend(camera_non_mated);
        }
        Self::new(mated, non_mated)
    }

    /// From the searches themselves: each mated search's distance to its own person (`None` when someone else was nearer) and each non-mated search's distance to its nearest identity.
    pub fn new(
        mut mated: Vec<Option<f32>>,
        mut non_mated: Vec<f32>,
    ) -> Result<Self, ThresholdError> {
        if mated.is_empty() || non_mated.is_empty() {
            return Err(ThresholdError::TooFewSearches {
                mated: mated.len(),
                non_mated: non_mated.len(),
            });
        }
        if let Some(bad) = mated
            .iter()
            .flatten()
            .chain(&non_mated)
            .find(|d| !d.is_finite())
        {
            return Err(ThresholdError::NotFinite(*bad));
        }
        mated.sort_by(|a, b| match (a, b) {
            (Some(a), Some(b)) => a.total_cmp(b),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
        non_mated.sort_by(f32::total_cmp);
        Ok(OpenSetRates { mated, non_mated })
    }

    /// Searches whose person is enrolled.
    pub fn mated_searches(&self) -> usize {
        self.mated.len()
    }

    /// Searches whose person is not enrolled.
    pub fn non_mated_searches(&self) -> usize {
        self.non_mated.len()
    }

    /// Mated searches whose nearest identity was someone else: FNIR never falls below their share.
    pub fn rank1_misses(&self) -> usize {
        self.mated.iter().filter(|m| m.is_none()).count()
    }

    /// FPIR and FNIR at `threshold`, counted with the accept rule (`hstl::accepts`).
    pub fn at(&self, threshold: f32) -> OpenSetPoint {
        let hits = self
            .mated
            .partition_point(|m| m.is_some_and(|d| hstl::accepts(d, threshold)));
        let false_positives = self
            .non_mated
            .partition_point(|&d| hstl::accepts(d, threshold));
        OpenSetPoint {
            threshold,
            fpir: false_positives as f64 / self.non_mated.len() as f64,
            fnir: 1.0 - hits as f64 / self.mated.len() as f64,
        }
    }

    /// One point per observed distance, by increasing threshold.
    pub fn curve(&self) -> Vec<OpenSetPoint> {
        let mut thresholds: Vec<f32> = self
            .mated
            .iter()
            .flatten()
            .chain(&self.non_mated)
            .copied()
            .collect();
        thresholds.sort_by(f32::total_cmp);
        thresholds.dedup();
        thresholds.into_iter().map(|t| self.at(t)).collect()
    }

    /// Where FPIR and FNIR are closest; both reported as their mean.
    pub fn equal_error_rate(&self) -> OpenSetPoint {
        equal_error_point(&self.curve()).unwrap_or_else(|| self.at(0.0))
    }

    /// The most permissive threshold whose FPIR does not exceed `target`.
    pub fn threshold_for_fpir(&self, target: f64) -> Result<OpenSetPoint, ThresholdError> {
        let threshold = most_permissive_threshold(
            &self.non_mated,
            self.mated.iter().flatten().copied(),
            target,
        )?;
        Ok(self.at(threshold))
    }

    /// The smallest FPIR step these searches can resolve.
    pub fn fpir_resolution(&self) -> f64 {
        1.0 / self.non_mated.len() as f64
    }
}

/// The point of `curve` where FPIR and FNIR are closest, both reported as their mean; `None` for an
/// empty curve.
pub fn equal_error_point(curve: &[OpenSetPoint]) -> Option<OpenSetPoint> {
    let best = curve
        .iter()
        .min_by(|a, b| (a.fpir - a.fnir).abs().total_cmp(&(b.fpir - b.fnir).abs()))?;
    let mean = (best.fpir + best.fnir) / 2.0;
    Some(OpenSetPoint {
        fpir: mean,
        fnir: mean,
        ..*best
    })
}

/// The searches of one camera's walks: each mated search's distance to its own person (`None` when
/// someone else was nearer), each non-mated search's distance to its nearest identity.
fn leave_one_out_searches(
    walks: &[&LabelledWalk],
    gallery_walks: usize,
    templates: GalleryTemplates,
) -> Result<(Vec<Option<f32>>, Vec<f32>), ThresholdError> {
    let (enrolled, probe_walks) = gallery_and_probes(walks, gallery_walks);
    let mut gallery: Vec<(&str, Embedding)> = Vec::new();
    for (person, walks) in &enrolled {
        let made = templates
            .of(walks)
            .map_err(|e| ThresholdError::Incomparable(e.to_string()))?;
        gallery.extend(made.into_iter().map(|t| (*person, t)));
    }
    fn searches<'a>(walks: &[&'a LabelledWalk]) -> Vec<(&'a str, &'a Embedding)> {
        walks
            .iter()
            .flat_map(|w| w.prefixes.iter().map(|p| (w.person.as_str(), &p.embedding)))
            .collect()
    }
    let probes = searches(&probe_walks);
    let enrolled_walks: Vec<&LabelledWalk> = enrolled
        .iter()
        .flat_map(|(_, walks)| walks.iter().copied())
        .collect();
    let enrolment_searches = searches(&enrolled_walks);

    let nearest = |probe: &Embedding,
                   excluded: Option<&str>|
     -> Result<Option<(f32, &str)>, ThresholdError> {
        let mut best: Option<(f32, &str)> = None;
        for (person, template) in &gallery {
            if Some(*person) == excluded {
                continue;
            }
            let d = probe
                .distance(template)
                .map_err(|e| ThresholdError::Incomparable(e.to_string()))?;
            if best.is_none_or(|(b, _)| d < b) {
                best = Some((d, person));
            }
        }
        Ok(best)
    };

    let mut mated = Vec::with_capacity(probes.len());
    for (person, window) in &probes {
        if let Some((d, who)) = nearest(window, None)? {
            mated.push((who == *person).then_some(d));
        }
    }
    let mut non_mated = Vec::new();
    for (person, window) in enrolment_searches.iter().chain(&probes) {
        if let Some((d, _)) = nearest(window, Some(person))? {
            non_mated.push(d);
        }
    }
    Ok((mated, non_mated))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emb(x: f32) -> Embedding {
        Embedding::new(1, 1, vec![x]).unwrap()
    }

    fn walk(person: &str, prefixes: &[f32]) -> LabelledWalk {
        LabelledWalk {
            person: person.into(),
            camera: "door".into(),
            prefixes: prefixes
                .iter()
                .map(|&x| Prefix {
                    embedding: emb(x),
                    frames: 30,
                })
                .collect(),
        }
    }

    #[test]
    fn rates_count_searches_not_pairs() {
        let rates = OpenSetRates::new(
            vec![Some(0.1), Some(0.3), None, Some(0.2)],
            vec![0.25, 0.5, 0.9, 0.05],
        )
        .unwrap();
        let p = rates.at(0.2);
        assert_eq!(p.fnir, 0.5);
        assert_eq!(p.fpir, 0.25);
        // A rank-1 miss stays a miss at any threshold.
        assert_eq!(rates.at(10.0).fnir, 0.25);
        assert_eq!(rates.rank1_misses(), 1);
    }

    #[test]
    fn the_fpir_target_is_met_with_the_most_permissive_threshold() {
        let rates = OpenSetRates::new(
            vec![Some(0.1), Some(0.2), Some(0.4)],
            vec![0.3, 0.5, 0.6, 0.7],
        )
        .unwrap();
        let zero = rates.threshold_for_fpir(0.0).unwrap();
        assert_eq!((zero.threshold, zero.fpir), (0.2, 0.0));
        assert!((zero.fnir - 1.0 / 3.0).abs() < 1e-12);
        let quarter = rates.threshold_for_fpir(0.25).unwrap();
        assert_eq!(
            (quarter.threshold, quarter.fpir, quarter.fnir),
            (0.4, 0.25, 0.0)
        );
        assert_eq!(rates.fpir_resolution(), 0.25);
    }

    #[test]
    fn galleries_and_searches_stay_within_one_camera() {
        let at = |camera: &str, person: &str, x: f32| LabelledWalk {
            camera: camera.into(),
            ..walk(person, &[x])
        };
        // Seen from the side, A is near 0 and B near 10; seen from the front, A is near 100 and B
        // near 110. Enrolled from the side only, A's frontal walk would be nearest B's side walk.
        let walks = vec![
            at("side", "A", 0.0),
            at("side", "B", 10.0),
            at("side", "A", 0.5),
            at("front", "A", 100.0),
            at("front", "B", 110.0),
            at("front", "A", 100.5),
        ];
        let rates = OpenSetRates::leave_one_out(&walks, 1, GalleryTemplates::EveryPrefix).unwrap();
        // A's second walk at each camera, searched against that camera's gallery only.
        assert_eq!(rates.mated_searches(), 2);
        assert_eq!(rates.rank1_misses(), 0);
        assert_eq!(rates.at(0.5).fnir, 0.0);
        // Non-mated: every walk against the other person's gallery at its own camera.
        assert_eq!(rates.non_mated_searches(), 6);
        assert_eq!(rates.at(9.0).fpir, 0.0);
    }

    #[test]
    fn leave_one_out_builds_mated_and_non_mated_searches() {
        // Two walks each for A (near 0) and B (near 10); C has one walk near 5 and no probes.
        let walks = vec![
            walk("A", &[0.0]),
            walk("B", &[10.0]),
            walk("A", &[0.5, 1.0]),
            walk("B", &[9.0]),
            walk("C", &[5.0]),
        ];
        let rates = OpenSetRates::leave_one_out(&walks, 1, GalleryTemplates::EveryPrefix).unwrap();
        // Mated: A's 0.5 and 1.0 (nearest A, at 0.5 and 1.0), B's 9.0 (nearest B at 1.0).
        assert_eq!(rates.mated_searches(), 3);
        assert_eq!(rates.rank1_misses(), 0);
        // Non-mated: every window of every person, with their own gallery removed: 6 searches.
        assert_eq!(rates.non_mated_searches(), 6);
        // A's 0.0 without A: nearest C at 5. C's 5.0 without C: nearest A or B at 5.
        assert_eq!(rates.at(1.0).fnir, 0.0);
        // Without their own gallery the nearest is 4 away at best (A's 1.0 and B's 9.0 to C).
        assert_eq!(rates.at(3.9).fpir, 0.0);
        assert_eq!(rates.at(4.0).fpir, 2.0 / 6.0);
    }

    #[test]
    fn too_few_searches_are_refused() {
        let lonely = vec![walk("A", &[0.0]), walk("A", &[1.0])];
        assert!(matches!(
            OpenSetRates::leave_one_out(&lonely, 1, GalleryTemplates::EveryPrefix),
            Err(ThresholdError::TooFewSearches { .. })
        ));
    }
}
