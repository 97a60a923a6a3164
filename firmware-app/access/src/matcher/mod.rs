//! 1:N matching of a probe embedding against every template of the gallery, with the reference
//! distance (the Euclidean distance of each part, averaged over the parts, as the reference computes it).
//!
//! The templates live in one contiguous array; a person's distance is the smallest over their
//! templates. A search first bounds every template's distance from 8-bit codes ([`prefilter`]), a
//! quarter of the memory traffic, then measures exactly, nearest bound first, only the templates that
//! could still belong to the two closest identities. The result is the exhaustive search's.

mod prefilter;

use std::sync::OnceLock;

use hstl::Embedding;

use crate::gallery::{Gallery, GalleryError};
use prefilter::Prefilter;

/// Below this many templates a second thread costs more than it saves.
const TEMPLATES_PER_THREAD_MIN: usize = 512;

/// Why a search or an index build failed.
#[derive(Debug, thiserror::Error)]
pub enum MatchError {
    /// A probe from another model than the templates.
    #[error(
        "probe is {probe_parts}x{probe_channels}, the gallery holds {parts}x{channels} templates"
    )]
    ShapeMismatch {
        /// Parts of the probe.
        probe_parts: usize,
        /// Channels of the probe.
        probe_channels: usize,
        /// Parts of the templates.
        parts: usize,
        /// Channels of the templates.
        channels: usize,
    },
    /// Reading the gallery failed.
    #[error(transparent)]
    Gallery(#[from] GalleryError),
}

/// Who a template belongs to, as the matcher reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Row id in the gallery.
    pub person_id: i64,
    /// What events name them by.
    pub pseudonym: String,
    /// For the screen only.
    pub name: String,
    /// The number the door's panel knows them by.
    pub credential: Option<u32>,
}

/// An identity and its distance to the probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Index into [`MatchIndex::identities`].
    pub identity: usize,
    /// The smallest distance of the probe to any of the identity's templates.
    pub distance: f32,
}

/// The two closest identities (not templates) to a probe.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ranking {
    /// The nearest identity.
    pub best: Option<Candidate>,
    /// The next nearest other identity.
    pub second: Option<Candidate>,
}

/// A ranking and how many templates it took measuring exactly.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Search {
    /// The two nearest identities.
    pub ranking: Ranking,
    /// Templates measured in f32 after the prefilter.
    pub exact_measurements: usize,
}

/// Every template of a gallery in one array, searched exactly for the two nearest identities.
pub struct MatchIndex {
    parts: usize,
    channels: usize,
    identities: Vec<Identity>,
    owners: Vec<usize>,
    values: Vec<f32>,
    threads: usize,
    /// Built by the first search after a change to the templates.
    prefilter: OnceLock<Prefilter>,
}

impl MatchIndex {
    /// An empty index for embeddings of `parts` × `channels`, searched on `threads` threads.
    pub fn new(parts: usize, channels: usize, threads: usize) -> Self {
        MatchIndex {
            parts,
            channels,
            identities: Vec::new(),
            owners: Vec::new(),
            values: Vec::new(),
            threads: threads.max(1),
            prefilter: OnceLock::new(),
        }
    }

    /// Every template of the gallery, for embeddings of `(parts, channels)`.
    pub fn from_gallery(
        gallery: &Gallery,
        shape: (usize, usize),
        threads: usize,
    ) -> Result<Self, MatchError> {
        let people = gallery.people()?;
        let templates = gallery.templates()?;
        let mut index = MatchIndex::new(shape.0, shape.1, threads);
        let mut slots = std::collections::HashMap::new();
        for person in people {
            slots.insert(person.id, index.identities.len());
            index.identities.push(Identity {
                person_id: person.id,
                pseudonym: person.pseudonym,
                name: person.name,
                credential: person.credential,
            });
        }
        for template in templates {
            let Some(&slot) = slots.get(&template.person_id) else {
                continue;
            };
            index.push(slot, &template.embedding)?;
        }
        index.prepare();
        Ok(index)
    }

    /// Builds now what the first search would otherwise build: the prefilter's codes (0.6 s for 10,000
    /// templates on two x86 cores).
    pub fn prepare(&self) -> &Self {
        self.prefilter
            .get_or_init(|| Prefilter::build(&self.values, self.parts, self.channels));
        self
    }

    /// Adds an identity; its index is returned.
    pub fn add_identity(&mut self, identity: Identity) -> usize {
        self.identities.push(identity);
        self.identities.len() - 1
    }

    /// Adds a template of `identity`.
    pub fn push(&mut self, identity: usize, template: &Embedding) -> Result<(), MatchError> {
        self.check_shape(template)?;
        self.owners.push(identity);
        self.values.extend_from_slice(template.as_slice());
        self.prefilter = OnceLock::new();
        Ok(())
    }

    /// Every identity, by index.
    pub fn identities(&self) -> &[Identity] {
        &self.identities
    }

    /// One identity.
    pub fn identity(&self, index: usize) -> &Identity {
        &self.identities[index]
    }

    /// Templates held.
    pub fn template_count(&self) -> usize {
        self.owners.len()
    }

    /// Threads a search uses.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// `(parts, channels)` of the embeddings it holds.
    pub fn shape(&self) -> (usize, usize) {
        (self.parts, self.channels)
    }

    fn check_shape(&self, embedding: &Embedding) -> Result<(), MatchError> {
        if (embedding.parts(), embedding.channels()) != (self.parts, self.channels) {
            return Err(MatchError::ShapeMismatch {
                probe_parts: embedding.parts(),
                probe_channels: embedding.channels(),
                parts: self.parts,
                channels: self.channels,
            });
        }
        Ok(())
    }

    /// The closest and second-closest identities.
    pub fn search(&self, probe: &Embedding) -> Result<Ranking, MatchError> {
        Ok(self.search_counting(probe)?.ranking)
    }

    /// [`MatchIndex::search`], also saying how many templates were measured exactly.
    pub fn search_counting(&self, probe: &Embedding) -> Result<Search, MatchError> {
        self.check_shape(probe)?;
        let prefilter = self.prepare().prefilter.get().expect("prepared");
        let bounds = prefilter.bounds(probe.as_slice(), self.threads, TEMPLATES_PER_THREAD_MIN);

        // The second-closest identity is no farther than the second-smallest of the identities'
        // upper bounds, so a template whose lower bound is beyond that cannot matter.
        let mut upper_by_identity = vec![f32::INFINITY; self.identities.len()];
        for (&owner, bound) in self.owners.iter().zip(&bounds) {
            upper_by_identity[owner] = upper_by_identity[owner].min(bound.upper);
        }
        let reach = second_smallest(&upper_by_identity);
        let mut candidates: Vec<usize> = (0..bounds.len())
            .filter(|&template| bounds[template].lower <= reach)
            .collect();
        candidates.sort_unstable_by(|&a, &b| bounds[a].lower.total_cmp(&bounds[b].lower));

        let stride = self.parts * self.channels;
        let probe = probe.as_slice();
        let mut closest = vec![f32::INFINITY; self.identities.len()];
        let mut ranking = Ranking::default();
        let mut exact_measurements = 0;
        for template in candidates {
            if ranking
                .second
                .as_ref()
                .is_some_and(|second| bounds[template].lower > second.distance)
            {
                break;
            }
            let values = &self.values[template * stride..(template + 1) * stride];
            let distance = part_mean_distance(probe, values, self.channels);
            exact_measurements += 1;
            let identity = self.owners[template];
            if distance < closest[identity] {
                closest[identity] = distance;
                ranking.improve(Candidate { identity, distance });
            }
        }
        Ok(Search {
            ranking,
            exact_measurements,
        })
    }
}

impl Ranking {
    /// Takes in an identity's new, smaller distance.
    fn improve(&mut self, candidate: Candidate) {
        let same =
            |c: &Option<Candidate>| c.as_ref().is_some_and(|c| c.identity == candidate.identity);
        let beats =
            |c: &Option<Candidate>| c.as_ref().is_none_or(|c| candidate.distance < c.distance);
        if same(&self.best) {
            self.best = Some(candidate);
        } else if beats(&self.best) {
            self.second = self.best.replace(candidate);
        } else if same(&self.second) || beats(&self.second) {
            self.second = Some(candidate);
        }
    }
}

/// The second-smallest value, or the smallest when there is only one, or infinity when none.
fn second_smallest(values: &[f32]) -> f32 {
    let (mut first, mut second) = (f32::INFINITY, f32::INFINITY);
    for &value in values {
        if value < first {
            second = first;
            first = value;
        } else if value < second {
            second = value;
        }
    }
    if second.is_finite() {
        second
    } else {
        first
    }
}

/// Mean over parts of the per-part Euclidean distance. Eight independent accumulators let the compiler
/// keep the inner loop in vector registers.
fn part_mean_distance(probe: &[f32], template: &[f32], channels: usize) -> f32 {
    let mut total = 0.0f32;
    for (a, b) in probe
        .chunks_exact(channels)
        .zip(template.chunks_exact(channels))
    {
        let mut lanes = [0.0f32; 8];
        let mut a_chunks = a.chunks_exact(8);
        let mut b_chunks = b.chunks_exact(8);
        for (x, y) in (&mut a_chunks).zip(&mut b_chunks) {
            for lane in 0..8 {
                let d = x[lane] - y[lane];
                lanes[lane] += d * d;
            }
        }
        let mut squared: f32 = lanes.iter().sum();
        for (x, y) in a_chunks.remainder().iter().zip(b_chunks.remainder()) {
            squared += (x - y) * (x - y);
        }
        total += squared.sqrt();
    }
    total / (probe.len() / channels) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// `(parts, channels)` of the kiosk's network, the compact HSTL.
    const KIOSK_SHAPE: (usize, usize) = (41, 64);

    fn random_embedding(rng: &mut impl Rng, parts: usize, channels: usize) -> Embedding {
        let values = (0..parts * channels)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        Embedding::new(parts, channels, values).unwrap()
    }

    fn identity(i: usize) -> Identity {
        Identity {
            person_id: i as i64,
            pseudonym: format!("p{i}"),
            name: format!("person {i}"),
            credential: None,
        }
    }

    /// The two closest identities by measuring every template with the reference metric.
    fn exhaustive(templates: &[(usize, Embedding)], probe: &Embedding) -> (usize, f32, usize, f32) {
        let mut closest = std::collections::BTreeMap::new();
        for (owner, template) in templates {
            let distance = probe.distance(template).unwrap();
            let entry = closest.entry(*owner).or_insert(f32::INFINITY);
            *entry = entry.min(distance);
        }
        let mut sorted: Vec<(usize, f32)> = closest.into_iter().collect();
        sorted.sort_by(|a, b| a.1.total_cmp(&b.1));
        (sorted[0].0, sorted[0].1, sorted[1].0, sorted[1].1)
    }

    #[test]
    fn search_finds_what_measuring_every_template_finds() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (parts, channels) = KIOSK_SHAPE;
        // People as points with their walks scattered around them, on a common offset.
        let centres: Vec<Embedding> = (0..120)
            .map(|_| random_embedding(&mut rng, parts, channels))
            .collect();
        let walk = |rng: &mut rand_chacha::ChaCha8Rng, centre: &Embedding, spread: f32| {
            let values = centre
                .as_slice()
                .iter()
                .map(|v| 5.0 + v + spread * rng.random_range(-1.0f32..1.0))
                .collect();
            Embedding::new(parts, channels, values).unwrap()
        };
        let mut templates = Vec::new();
        for (person, centre) in centres.iter().enumerate() {
            for _ in 0..1 + person % 4 {
                templates.push((person, walk(&mut rng, centre, 0.3)));
            }
        }
        let mut probes: Vec<Embedding> = (0..6)
            .map(|i| walk(&mut rng, &centres[i * 17], 0.3))
            .collect();
        probes.push(random_embedding(&mut rng, parts, channels));
        probes.push(walk(&mut rng, &centres[5], 40.0));
        probes.push(templates[7].1.clone());
        let expected: Vec<_> = probes.iter().map(|p| exhaustive(&templates, p)).collect();
        for threads in [1, 2, 3] {
            let mut index = MatchIndex::new(parts, channels, threads);
            for person in 0..centres.len() {
                index.add_identity(identity(person));
            }
            for (owner, template) in &templates {
                index.push(*owner, template).unwrap();
            }
            for (probe, &(best, best_distance, second, second_distance)) in
                probes.iter().zip(&expected)
            {
                let search = index.search_counting(probe).unwrap();
                let found = search.ranking;
                assert_eq!(found.best.as_ref().unwrap().identity, best);
                assert_eq!(found.second.as_ref().unwrap().identity, second);
                let best_found = found.best.unwrap().distance;
                let second_found = found.second.unwrap().distance;
                assert!((best_found - best_distance).abs() <= 1e-5 * best_distance);
                assert!((second_found - second_distance).abs() <= 1e-5 * second_distance);
                assert!(search.exact_measurements >= 2);
            }
        }
    }

    #[test]
    fn a_probe_near_one_person_is_measured_against_few_templates() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let mut index = MatchIndex::new(KIOSK_SHAPE.0, KIOSK_SHAPE.1, 2);
        let mut first = None;
        for person in 0..400 {
            let slot = index.add_identity(identity(person));
            let template = random_embedding(&mut rng, KIOSK_SHAPE.0, KIOSK_SHAPE.1);
            first.get_or_insert(template.clone());
            index.push(slot, &template).unwrap();
        }
        let search = index.search_counting(&first.unwrap()).unwrap();
        assert_eq!(search.ranking.best.unwrap().distance, 0.0);
        assert!(
            search.exact_measurements < 40,
            "{} of 400 templates measured exactly",
            search.exact_measurements
        );
    }

    #[test]
    fn templates_added_after_a_search_are_searched() {
        let mut index = MatchIndex::new(1, 2, 1);
        let ada = index.add_identity(identity(0));
        let bob = index.add_identity(identity(1));
        let at = |x: f32| Embedding::new(1, 2, vec![x, 0.0]).unwrap();
        index.push(ada, &at(1.0)).unwrap();
        index.push(bob, &at(2.0)).unwrap();
        assert_eq!(index.search(&at(3.0)).unwrap().best.unwrap().identity, bob);
        let cy = index.add_identity(identity(2));
        index.push(cy, &at(3.5)).unwrap();
        let ranking = index.search(&at(3.0)).unwrap();
        assert_eq!(ranking.best.unwrap().identity, cy);
        assert_eq!(ranking.second.unwrap().identity, bob);
    }

    #[test]
    fn ranking_is_by_identity_over_all_of_its_templates() {
        let mut index = MatchIndex::new(1, 2, 1);
        let ada = index.add_identity(identity(0));
        let bob = index.add_identity(identity(1));
        let cy = index.add_identity(identity(2));
        let at = |x: f32| Embedding::new(1, 2, vec![x, 0.0]).unwrap();
        index.push(ada, &at(5.0)).unwrap();
        index.push(ada, &at(1.0)).unwrap();
        index.push(bob, &at(1.5)).unwrap();
        index.push(bob, &at(1.4)).unwrap();
        index.push(cy, &at(9.0)).unwrap();
        let ranking = index.search(&at(0.0)).unwrap();
        assert_eq!(
            ranking.best,
            Some(Candidate {
                identity: ada,
                distance: 1.0
            })
        );
        assert_eq!(ranking.second.as_ref().map(|c| c.identity), Some(bob));
        assert!((ranking.second.unwrap().distance - 1.4).abs() < 1e-6);
    }

    #[test]
    fn an_empty_gallery_ranks_nobody_and_a_wrong_shape_is_an_error() {
        let index = MatchIndex::new(73, 128, 2);
        let probe = Embedding::new(73, 128, vec![0.0; 73 * 128]).unwrap();
        assert_eq!(index.search(&probe).unwrap(), Ranking::default());
        let other = Embedding::new(50, 256, vec![0.0; 50 * 256]).unwrap();
        assert!(matches!(
            index.search(&other),
            Err(MatchError::ShapeMismatch { .. })
        ));
    }
}
