//! 1:N matching of a probe embedding against every template of the gallery, with the reference
//! distance (hstl-spec §7: the Euclidean distance of each part, averaged over the parts).
//!
//! The templates live in one contiguous array so that a search is a single pass over memory; a person's
//! distance is the smallest over their templates.

use hstl::Embedding;

use crate::gallery::{Gallery, GalleryError};

/// Below this many templates a second thread costs more than it saves.
const TEMPLATES_PER_THREAD_MIN: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum MatchError {
    #[error(
        "probe is {probe_parts}x{probe_channels}, the gallery holds {parts}x{channels} templates"
    )]
    ShapeMismatch {
        probe_parts: usize,
        probe_channels: usize,
        parts: usize,
        channels: usize,
    },
    #[error(transparent)]
    Gallery(#[from] GalleryError),
}

/// Who a template belongs to, as the matcher reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub person_id: i64,
    pub pseudonym: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Index into [`MatchIndex::identities`].
    pub identity: usize,
    pub distance: f32,
}

/// The two closest identities (not templates) to a probe.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ranking {
    pub best: Option<Candidate>,
    pub second: Option<Candidate>,
}

pub struct MatchIndex {
    parts: usize,
    channels: usize,
    identities: Vec<Identity>,
    owners: Vec<usize>,
    values: Vec<f32>,
    threads: usize,
}

impl MatchIndex {
    pub fn new(parts: usize, channels: usize, threads: usize) -> Self {
        MatchIndex {
            parts,
            channels,
            identities: Vec::new(),
            owners: Vec::new(),
            values: Vec::new(),
            threads: threads.max(1),
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
            });
        }
        for template in templates {
            let Some(&slot) = slots.get(&template.person_id) else {
                continue;
            };
            index.push(slot, &template.embedding)?;
        }
        Ok(index)
    }

    pub fn add_identity(&mut self, identity: Identity) -> usize {
        self.identities.push(identity);
        self.identities.len() - 1
    }

    pub fn push(&mut self, identity: usize, template: &Embedding) -> Result<(), MatchError> {
        self.check_shape(template)?;
        self.owners.push(identity);
        self.values.extend_from_slice(template.as_slice());
        Ok(())
    }

    pub fn identities(&self) -> &[Identity] {
        &self.identities
    }

    pub fn identity(&self, index: usize) -> &Identity {
        &self.identities[index]
    }

    pub fn template_count(&self) -> usize {
        self.owners.len()
    }

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

    /// The reference distance from `probe` to every template, in template order.
    pub fn distances(&self, probe: &Embedding) -> Result<Vec<f32>, MatchError> {
        self.check_shape(probe)?;
        let stride = self.parts * self.channels;
        let count = self.template_count();
        let mut distances = vec![0.0f32; count];
        let threads = self
            .threads
            .min(count.div_ceil(TEMPLATES_PER_THREAD_MIN))
            .max(1);
        let per_thread = count.div_ceil(threads).max(1);
        let probe = probe.as_slice();
        std::thread::scope(|scope| {
            for (chunk, out) in self
                .values
                .chunks(per_thread * stride)
                .zip(distances.chunks_mut(per_thread))
            {
                scope.spawn(move || {
                    for (template, distance) in chunk.chunks_exact(stride).zip(out.iter_mut()) {
                        *distance = part_mean_distance(probe, template, self.channels);
                    }
                });
            }
        });
        Ok(distances)
    }

    /// The closest and second-closest identities.
    pub fn search(&self, probe: &Embedding) -> Result<Ranking, MatchError> {
        let distances = self.distances(probe)?;
        let mut per_identity = vec![f32::INFINITY; self.identities.len()];
        for (&owner, &distance) in self.owners.iter().zip(&distances) {
            if distance < per_identity[owner] {
                per_identity[owner] = distance;
            }
        }
        let mut ranking = Ranking::default();
        for (identity, &distance) in per_identity.iter().enumerate() {
            if !distance.is_finite() {
                continue;
            }
            let candidate = Candidate { identity, distance };
            match &ranking.best {
                Some(best) if distance >= best.distance => {
                    if ranking
                        .second
                        .as_ref()
                        .is_none_or(|s| distance < s.distance)
                    {
                        ranking.second = Some(candidate);
                    }
                }
                _ => ranking.second = ranking.best.replace(candidate),
            }
        }
        Ok(ranking)
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
        }
    }

    #[test]
    fn distances_equal_the_reference_metric_with_any_thread_count() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let probe = random_embedding(&mut rng, 73, 128);
        for threads in [1, 2, 3] {
            let mut index = MatchIndex::new(73, 128, threads);
            let mut templates = Vec::new();
            for i in 0..1500 {
                let slot = index.add_identity(identity(i));
                let template = random_embedding(&mut rng, 73, 128);
                index.push(slot, &template).unwrap();
                templates.push(template);
            }
            let distances = index.distances(&probe).unwrap();
            for (template, distance) in templates.iter().zip(&distances) {
                let reference = probe.distance(template).unwrap();
                assert!(
                    (reference - distance).abs() < 1e-5 * reference,
                    "{reference} vs {distance}"
                );
            }
        }
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
