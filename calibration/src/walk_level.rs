//! Walk-level open-set rates: what the door *does* with each labelled walk. Every walk is searched
//! as the door searches it (the walk so far, after each window, against the gallery of its camera)
//! and the door's own decision policy (`access::decision::DecisionPolicy`, the same code) is
//! replayed over those searches, frame by frame as the door takes them, until it decides or the
//! walk ends. Rates then count walk-ups, not searches:
//!
//! - **FPIR**: walk-ups granted as someone they are not, per walk-up of a person not enrolled.
//!   Counted conservatively: an enrolled person granted as someone else counts too, in the numerator
//!   (the door opened for the wrong name), while the denominator stays the non-mated walk-ups.
//! - **FNIR**: walk-ups of enrolled people not granted as themselves, per such walk-up.
//!
//! The galleries, the leave-one-person-out and the cameras are those of [`crate::open_set`].

use std::collections::BTreeMap;

use access::decision::{DecisionConfig, DecisionPolicy, Verdict, WindowOutcome};
use access::matcher::{Candidate, Identity, MatchIndex, Ranking};
use hstl::Embedding;

use crate::cohort::{CohortNormalisation, CohortStanding};
use crate::open_set::{
    by_camera, gallery_and_probes, GalleryTemplates, LabelledWalk, OpenSetPoint,
};
use crate::thresholds::ThresholdError;

/// At most this many accept distances are replayed for the curve; the operating point is then
/// refined over every observed distance between the last two of them that bracket it.
const CURVE_THRESHOLDS: usize = 1_500;

/// One walk's searches, in the order the door makes them.
#[derive(Debug, Clone)]
struct ReplayedWalk {
    /// The walker's number among every person seen: `None` for a non-mated walk-up (the walker is
    /// left out of the gallery), since no grant can then be right.
    own: Option<usize>,
    /// Each search's two nearest identities, numbered as people are, and the frames of the walk
    /// so far when it was made.
    searches: Vec<(Ranking, usize)>,
}

/// What the door does with one walk-up at one accept distance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WalkOutcome {
    /// Granted as themselves, after this many frames of the walk.
    GrantedAsSelf { frames: usize },
    /// Granted as someone they are not.
    GrantedAsOther,
    /// Not granted.
    Denied,
}

/// One point of the walk-level curve, with what lies behind its rates.
#[derive(Debug, Clone, PartialEq)]
pub struct WalkLevelPoint {
    /// FPIR and FNIR at this accept distance, per walk-up.
    pub rates: OpenSetPoint,
    /// Walk-ups of people not enrolled that were granted.
    pub strangers_granted: usize,
    /// Walk-ups of enrolled people granted as someone else.
    pub granted_as_someone_else: usize,
    /// Walk-ups of enrolled people granted as themselves.
    pub granted_as_themselves: usize,
    /// For each of those: frames of the walk so far when the door granted.
    pub frames_to_grant: Vec<usize>,
}

impl WalkLevelPoint {
    /// The `quantile` (0 to 1) of the frames the door took to grant the people it granted.
    pub fn frames_to_grant_quantile(&self, quantile: f64) -> Option<usize> {
        let mut frames = self.frames_to_grant.clone();
        frames.sort_unstable();
        let last = frames.len().checked_sub(1)?;
        Some(frames[((last as f64) * quantile.clamp(0.0, 1.0)).round() as usize])
    }
}

/// The searches of every labelled walk, ready to be replayed through the door's policy at any
/// accept distance.
pub struct WalkLevelRates {
    config: DecisionConfig,
    mated: Vec<ReplayedWalk>,
    non_mated: Vec<ReplayedWalk>,
    /// Every best-candidate distance of every search, sorted and without repeats: the accept
    /// distances at which a vote can change.
    distances: Vec<f32>,
}

impl WalkLevelRates {
    /// Leave-one-person-out walk-ups within each camera's walks, pooled (as
    /// [`crate::open_set::OpenSetRates::leave_one_out`]): the first `gallery_walks` walks of each
    /// person at a camera are enrolled there as `templates` says; each of their other walks is a
    /// mated walk-up, and each of their walks a non-mated walk-up against everyone else's gallery.
    /// `config` is the policy replayed (the door's: consensus, relative margin).
    pub fn leave_one_out(
        walks: &[LabelledWalk],
        gallery_walks: usize,
        templates: GalleryTemplates,
        config: DecisionConfig,
    ) -> Result<Self, ThresholdError> {
        Self::replayed(walks, gallery_walks, templates, config, None)
    }

    /// [`WalkLevelRates::leave_one_out`] with every search scored by `cohort` (adaptive S-norm)
    /// before the policy sees it: each identity's score is its best normalised template score.
    pub fn leave_one_out_normalised(
        walks: &[LabelledWalk],
        gallery_walks: usize,
        templates: GalleryTemplates,
        config: DecisionConfig,
        cohort: &CohortNormalisation,
    ) -> Result<Self, ThresholdError> {
        Self::replayed(walks, gallery_walks, templates, config, Some(cohort))
    }

    fn replayed(
        walks: &[LabelledWalk],
        gallery_walks: usize,
        templates: GalleryTemplates,
        config: DecisionConfig,
        cohort: Option<&CohortNormalisation>,
    ) -> Result<Self, ThresholdError> {
        let mut people: Vec<&str> = Vec::new();
        for walk in walks {
            if !people.contains(&walk.person.as_str()) {
                people.push(&walk.person);
            }
        }
        let number_of = |person: &str| people.iter().position(|p| *p == person);
        let mut mated = Vec::new();
        let mut non_mated = Vec::new();
        for seen in by_camera(walks) {
            let (gallery, probes) = gallery_and_probes(&seen, gallery_walks);
            let enrolled: Vec<(usize, Vec<Embedding>)> = gallery
                .iter()
                .map(|(person, walks)| {
                    let number = number_of(person).expect("a person of these walks");
                    Ok((number, templates.of(walks)?))
                })
                .collect::<Result<_, _>>()
                .map_err(|e: hstl::HstlError| ThresholdError::Incomparable(e.to_string()))?;
            let camera = CameraGallery::new(&enrolled, cohort)?;
            for walk in &probes {
                let own = number_of(&walk.person).expect("a person of these walks");
                mated.push(ReplayedWalk {
                    own: Some(own),
                    searches: camera.searches_of(walk, None)?,
                });
            }
            for (person, _) in &enrolled {
                for walk in seen
                    .iter()
                    .filter(|w| number_of(&w.person) == Some(*person))
                {
                    non_mated.push(ReplayedWalk {
                        own: None,
                        searches: camera.searches_of(walk, Some(*person))?,
                    });
                }
            }
        }
        if mated.is_empty() || non_mated.is_empty() {
            return Err(ThresholdError::TooFewSearches {
                mated: mated.len(),
                non_mated: non_mated.len(),
            });
        }
        let mut distances: Vec<f32> = mated
            .iter()
            .chain(&non_mated)
            .flat_map(|walk| &walk.searches)
            .filter_map(|(ranking, _)| ranking.best.as_ref().map(|best| best.distance))
            .collect();
        if let Some(bad) = distances.iter().find(|d| !d.is_finite()) {
            return Err(ThresholdError::NotFinite(*bad));
        }
        distances.sort_by(f32::total_cmp);
        distances.dedup();
        Ok(WalkLevelRates {
            config,
            mated,
            non_mated,
            distances,
        })
    }

    /// Walk-ups of enrolled people.
    pub fn mated_walks(&self) -> usize {
        self.mated.len()
    }

    /// Walk-ups of people not enrolled.
    pub fn non_mated_walks(&self) -> usize {
        self.non_mated.len()
    }

    /// The smallest FPIR step these walk-ups can resolve.
    pub fn fpir_resolution(&self) -> f64 {
        1.0 / self.non_mated.len() as f64
    }

    /// The policy replayed.
    pub fn config(&self) -> &DecisionConfig {
        &self.config
    }

    /// What the door does with every walk-up when it accepts up to `threshold`.
    pub fn at(&self, threshold: f32) -> WalkLevelPoint {
        let mut policy = DecisionPolicy::new(self.config.clone(), threshold);
        let mut point = WalkLevelPoint {
            rates: OpenSetPoint {
                threshold,
                fpir: 0.0,
                fnir: 0.0,
            },
            strangers_granted: 0,
            granted_as_someone_else: 0,
            granted_as_themselves: 0,
            frames_to_grant: Vec::new(),
        };
        for (track, walk) in self.mated.iter().chain(&self.non_mated).enumerate() {
            match replay(&mut policy, track as u64, walk) {
                WalkOutcome::GrantedAsSelf { frames } => {
                    point.granted_as_themselves += 1;
                    point.frames_to_grant.push(frames);
                }
                WalkOutcome::GrantedAsOther if walk.own.is_some() => {
                    point.granted_as_someone_else += 1
                }
                WalkOutcome::GrantedAsOther => point.strangers_granted += 1,
                WalkOutcome::Denied => {}
            }
        }
        point.rates.fpir = (point.strangers_granted + point.granted_as_someone_else) as f64
            / self.non_mated.len() as f64;
        point.rates.fnir = 1.0 - point.granted_as_themselves as f64 / self.mated.len() as f64;
        point
    }

    /// The accept distances replayed for the curve: every observed distance when there are few, an
    /// even spread of them otherwise, increasing.
    fn curve_thresholds(&self) -> Vec<f32> {
        let count = self.distances.len();
        if count <= CURVE_THRESHOLDS {
            return self.distances.clone();
        }
        let mut chosen: Vec<f32> = (0..CURVE_THRESHOLDS)
            .map(|i| self.distances[i * (count - 1) / (CURVE_THRESHOLDS - 1)])
            .collect();
        chosen.dedup();
        chosen
    }

    /// The DET curve: one point per replayed accept distance, by increasing distance.
    pub fn curve(&self) -> Vec<OpenSetPoint> {
        self.curve_thresholds()
            .into_iter()
            .map(|t| self.at(t).rates)
            .collect()
    }

    /// The most permissive accept distance at which the door keeps walk-level FPIR at or under
    /// `target`, at it and at every smaller distance replayed (a vote can change either way as the
    /// margin, a share of the accept distance, grows: the point never sits beyond a distance that
    /// broke the target). Refined over every observed distance between the two replayed ones that
    /// bracket it. Just below every observed distance when even the smallest breaks the target.
    pub fn threshold_for_fpir(&self, target: f64) -> Result<WalkLevelPoint, ThresholdError> {
        if !(0.0..1.0).contains(&target) {
            return Err(ThresholdError::BadTarget(target));
        }
        let coarse = self.curve_thresholds();
        let within = |t: f32| self.at(t).rates.fpir <= target;
        let broken = coarse.iter().position(|&t| !within(t));
        let Some(broken) = broken else {
            return Ok(self.at(*coarse.last().expect("at least one distance")));
        };
        let below = self.distances[0].next_down();
        let mut chosen = if broken == 0 {
            below
        } else {
            coarse[broken - 1]
        };
        let from = self.distances.partition_point(|&d| d <= chosen);
        let to = self.distances.partition_point(|&d| d < coarse[broken]);
        for &t in &self.distances[from..to] {
            if !within(t) {
                break;
            }
            chosen = t;
        }
        Ok(self.at(chosen))
    }
}

/// Replays one walk's searches through `policy` as track `track`: the door's outcome.
fn replay(policy: &mut DecisionPolicy, track: u64, walk: &ReplayedWalk) -> WalkOutcome {
    let mut decided = None;
    for (ranking, frames) in &walk.searches {
        let outcome = WindowOutcome::Matched {
            ranking: ranking.clone(),
            frames: *frames,
        };
        if let Some(decision) = policy.observe(track, &outcome, 1) {
            decided = Some((decision.verdict, *frames));
            break;
        }
    }
    let verdict = match decided {
        Some(verdict) => {
            policy.track_ended(track);
            Some(verdict)
        }
        None => policy.track_ended(track).map(|d| (d.verdict, 0)),
    };
    match verdict {
        Some((Verdict::Granted { identity }, frames)) if Some(identity) == walk.own => {
            WalkOutcome::GrantedAsSelf { frames }
        }
        Some((Verdict::Granted { .. }, _)) => WalkOutcome::GrantedAsOther,
        _ => WalkOutcome::Denied,
    }
}

/// One camera's gallery, searched as the door searches it or with cohort-normalised scores.
enum CameraGallery<'a> {
    /// The door's own search (`access::matcher`), one index per person left out.
    Raw {
        everyone: Box<NumberedIndex>,
        without: BTreeMap<usize, NumberedIndex>,
    },
    /// Every template's normalised score, each template standing among the cohort.
    Normalised {
        cohort: &'a CohortNormalisation,
        templates: Vec<(usize, Embedding, CohortStanding)>,
    },
}

impl<'a> CameraGallery<'a> {
    fn new(
        enrolled: &[(usize, Vec<Embedding>)],
        cohort: Option<&'a CohortNormalisation>,
    ) -> Result<Self, ThresholdError> {
        Ok(match cohort {
            None => CameraGallery::Raw {
                everyone: Box::new(index_of(enrolled, None)?),
                without: enrolled
                    .iter()
                    .map(|(person, _)| Ok((*person, index_of(enrolled, Some(*person))?)))
                    .collect::<Result<_, ThresholdError>>()?,
            },
            Some(cohort) => CameraGallery::Normalised {
                cohort,
                templates: enrolled
                    .iter()
                    .flat_map(|(person, templates)| templates.iter().map(move |t| (*person, t)))
                    .map(|(person, template)| {
                        Ok((person, template.clone(), cohort.standing(template)?))
                    })
                    .collect::<Result<_, ThresholdError>>()?,
            },
        })
    }

    /// Every search the door makes of `walk`, people numbered, with `excluded` left out.
    fn searches_of(
        &self,
        walk: &LabelledWalk,
        excluded: Option<usize>,
    ) -> Result<Vec<(Ranking, usize)>, ThresholdError> {
        walk.prefixes
            .iter()
            .map(|prefix| Ok((self.ranking(&prefix.embedding, excluded)?, prefix.frames)))
            .collect()
    }

    fn ranking(
        &self,
        probe: &Embedding,
        excluded: Option<usize>,
    ) -> Result<Ranking, ThresholdError> {
        match self {
            CameraGallery::Raw { everyone, without } => {
                let gallery = match excluded {
                    None => everyone.as_ref(),
                    Some(person) => &without[&person],
                };
                let ranking = gallery
                    .index
                    .search(probe)
                    .map_err(|e| ThresholdError::Incomparable(e.to_string()))?;
                let renumber = |candidate: Option<Candidate>| {
                    candidate.map(|c| Candidate {
                        identity: gallery.numbers[&c.identity],
                        distance: c.distance,
                    })
                };
                Ok(Ranking {
                    best: renumber(ranking.best),
                    second: renumber(ranking.second),
                })
            }
            CameraGallery::Normalised { cohort, templates } => {
                let standing = cohort.standing(probe)?;
                let mut best_by_person: BTreeMap<usize, f32> = BTreeMap::new();
                for (person, template, template_standing) in templates {
                    if Some(*person) == excluded {
                        continue;
                    }
                    let distance = probe
                        .distance(template)
                        .map_err(|e| ThresholdError::Incomparable(e.to_string()))?;
                    let score = cohort.normalised(distance, standing, *template_standing);
                    let best = best_by_person.entry(*person).or_insert(f32::INFINITY);
                    *best = best.min(score);
                }
                let mut ranked: Vec<Candidate> = best_by_person
                    .into_iter()
                    .map(|(identity, distance)| Candidate { identity, distance })
                    .collect();
                ranked.sort_by(|a, b| a.distance.total_cmp(&b.distance));
                let mut ranked = ranked.into_iter();
                Ok(Ranking {
                    best: ranked.next(),
                    second: ranked.next(),
                })
            }
        }
    }
}

/// A match index of `enrolled` (each person's number and templates), leaving out `excluded`.
fn index_of(
    enrolled: &[(usize, Vec<Embedding>)],
    excluded: Option<usize>,
) -> Result<NumberedIndex, ThresholdError> {
    let shape = enrolled
        .iter()
        .flat_map(|(_, templates)| templates.first())
        .map(|t| (t.parts(), t.channels()))
        .next()
        .ok_or(ThresholdError::TooFewSearches {
            mated: 0,
            non_mated: 0,
        })?;
    let mut index = MatchIndex::new(shape.0, shape.1, 1);
    let mut numbers = BTreeMap::new();
    for (person, templates) in enrolled.iter().filter(|(p, _)| Some(*p) != excluded) {
        let identity = index.add_identity(Identity {
            person_id: *person as i64,
            pseudonym: person.to_string(),
            name: person.to_string(),
            credential: None,
        });
        numbers.insert(identity, *person);
        for template in templates {
            index
                .push(identity, template)
                .map_err(|e| ThresholdError::Incomparable(e.to_string()))?;
        }
    }
    index.prepare();
    Ok(NumberedIndex { index, numbers })
}

/// A match index whose identities are people's numbers.
struct NumberedIndex {
    index: MatchIndex,
    numbers: BTreeMap<usize, usize>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::open_set::Prefix;

    fn walk(person: &str, prefixes: &[f32]) -> LabelledWalk {
        LabelledWalk {
            person: person.into(),
            camera: "door".into(),
            prefixes: prefixes
                .iter()
                .enumerate()
                .map(|(i, &x)| Prefix {
                    embedding: Embedding::new(1, 1, vec![x]).unwrap(),
                    frames: 30 + 15 * i,
                })
                .collect(),
        }
    }

    fn door() -> DecisionConfig {
        DecisionConfig {
            relative_margin: 0.05,
            consensus_windows: 2,
            ..DecisionConfig::default()
        }
    }

    #[test]
    fn a_walk_up_counts_once_whatever_its_searches() {
        // A enrolled near 0, B near 10. A's second walk is searched three times near A: one walk-up,
        // granted as A after its second search (45 frames).
        let walks = vec![
            walk("A", &[0.0]),
            walk("B", &[10.0]),
            walk("A", &[0.5, 0.4, 0.3]),
        ];
        let rates = WalkLevelRates::leave_one_out(&walks, 1, GalleryTemplates::EveryPrefix, door())
            .unwrap();
        assert_eq!(rates.mated_walks(), 1);
        // Every walk against the other person's gallery: A's two walks against B, B's against A.
        assert_eq!(rates.non_mated_walks(), 3);
        let point = rates.at(1.0);
        assert_eq!(point.granted_as_themselves, 1);
        assert_eq!(point.frames_to_grant, vec![45]);
        assert_eq!(point.rates.fnir, 0.0);
        assert_eq!(point.rates.fpir, 0.0);
    }

    #[test]
    fn one_lucky_search_opens_no_door_but_two_agreeing_ones_do() {
        // A stranger C whose walk so far comes near A once and then drifts away: the policy's
        // consensus of two searches keeps the door shut; a second close search opens it.
        let drifting = vec![
            walk("A", &[0.0]),
            walk("B", &[10.0]),
            walk("A", &[0.2]),
            walk("C", &[0.5, 3.0, 3.0]),
        ];
        let rates =
            WalkLevelRates::leave_one_out(&drifting, 1, GalleryTemplates::EveryPrefix, door())
                .unwrap();
        assert_eq!(rates.at(1.0).strangers_granted, 0);
        let lingering = vec![
            walk("A", &[0.0]),
            walk("B", &[10.0]),
            walk("A", &[0.2]),
            walk("C", &[0.5, 0.6, 3.0]),
        ];
        let rates =
            WalkLevelRates::leave_one_out(&lingering, 1, GalleryTemplates::EveryPrefix, door())
                .unwrap();
        // C's only walk is enrolled (one gallery walk), so C appears as a non-mated walk-up only,
        // against A and B: granted as A.
        assert_eq!(rates.at(1.0).strangers_granted, 1);
    }

    #[test]
    fn an_enrolled_person_granted_as_someone_else_counts_against_fpir() {
        // A's second walk lies nearer B's template than A's own.
        let walks = vec![walk("A", &[0.0]), walk("B", &[3.0]), walk("A", &[2.6, 2.7])];
        let rates = WalkLevelRates::leave_one_out(&walks, 1, GalleryTemplates::EveryPrefix, door())
            .unwrap();
        let point = rates.at(1.0);
        assert_eq!(point.granted_as_someone_else, 1);
        assert_eq!(point.granted_as_themselves, 0);
        assert_eq!(point.rates.fnir, 1.0);
        // The same walk, A left out of the gallery, is a stranger granted as B: with the wrong-name
        // grant, two of the three non-mated walk-ups' worth.
        assert_eq!(point.strangers_granted, 1);
        assert_eq!(point.rates.fpir, 2.0 / 3.0);
    }

    #[test]
    fn normalised_searches_rank_by_score_not_distance() {
        // B's second walk lies nearer A's template (1.0) than B's own (1.5), but A's template sits
        // amid the cohort, where a distance of 1 is common, and B's apart from it.
        let walks = vec![
            walk("A", &[1.0]),
            walk("B", &[-1.5]),
            walk("B", &[0.0, 0.0]),
        ];
        let raw = WalkLevelRates::leave_one_out(&walks, 1, GalleryTemplates::EveryPrefix, door())
            .unwrap();
        assert_eq!(raw.at(2.0).granted_as_someone_else, 1);
        let cohort: Vec<LabelledWalk> = [0.8, 1.25, 1.5, 1.7]
            .iter()
            .enumerate()
            .map(|(i, &x)| walk(&format!("c{i}"), &[x]))
            .collect();
        let cohort = CohortNormalisation::new(&cohort, 2).unwrap();
        let normalised = WalkLevelRates::leave_one_out_normalised(
            &walks,
            1,
            GalleryTemplates::EveryPrefix,
            door(),
            &cohort,
        )
        .unwrap();
        let point = normalised.at(1.0);
        assert_eq!(point.granted_as_themselves, 1);
        assert_eq!(point.granted_as_someone_else, 0);
    }

    #[test]
    fn the_operating_point_never_lies_beyond_a_distance_that_broke_the_target() {
        let walks = vec![
            walk("A", &[0.0]),
            walk("B", &[10.0]),
            walk("C", &[20.0]),
            walk("A", &[0.5, 0.6]),
            walk("B", &[11.0, 11.5]),
            walk("D", &[4.0, 4.2]),
        ];
        let rates = WalkLevelRates::leave_one_out(&walks, 1, GalleryTemplates::EveryPrefix, door())
            .unwrap();
        let point = rates.threshold_for_fpir(0.0).unwrap();
        assert_eq!(point.strangers_granted, 0);
        assert_eq!(point.granted_as_themselves, 2);
        assert!(point.rates.threshold < 4.0, "{}", point.rates.threshold);
        // Looser than D's walk: D, who is enrolled nowhere else, is let in as A.
        assert!(rates.at(4.2).strangers_granted >= 1);
        assert!(matches!(
            rates.threshold_for_fpir(1.0),
            Err(ThresholdError::BadTarget(_))
        ));
    }
}
