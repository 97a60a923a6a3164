//! The gait embedding and the reference distance between two of them (the reference implementation's; `model/PARITY.md` pins it).

use crate::error::{HstlError, Result};

/// `[parts, channels]` row-major: the BatchNorm output after the per-part head, not normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    parts: usize,
    channels: usize,
    values: Vec<f32>,
}

impl Embedding {
    /// An embedding of `parts` × `channels` values, row-major; refused when a value is not finite.
    pub fn new(parts: usize, channels: usize, values: Vec<f32>) -> Result<Self> {
        if parts == 0 || channels == 0 || values.len() != parts * channels {
            return Err(HstlError::Incomparable(format!(
                "{} values cannot form a {parts}x{channels} embedding",
                values.len()
            )));
        }
        if let Some(position) = values.iter().position(|v| !v.is_finite()) {
            return Err(HstlError::NotFinite {
                part: position / channels,
                channel: position % channels,
                value: values[position],
            });
        }
        Ok(Embedding {
            parts,
            channels,
            values,
        })
    }

    /// Body parts (horizontal strips at every level of the hierarchy).
    pub fn parts(&self) -> usize {
        self.parts
    }

    /// Channels per part.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Every value, part by part.
    pub fn as_slice(&self) -> &[f32] {
        &self.values
    }

    /// The channels of one part.
    pub fn part(&self, index: usize) -> &[f32] {
        &self.values[index * self.channels..(index + 1) * self.channels]
    }

    /// The reference metric: the Euclidean distance of each part, averaged over the parts.
    pub fn distance(&self, other: &Embedding) -> Result<f32> {
        if (self.parts, self.channels) != (other.parts, other.channels) {
            return Err(HstlError::Incomparable(format!(
                "{}x{} against {}x{} (embeddings from different model variants)",
                self.parts, self.channels, other.parts, other.channels
            )));
        }
        let total: f64 = (0..self.parts)
            .map(|p| {
                let squared: f64 = self
                    .part(p)
                    .iter()
                    .zip(other.part(p))
                    .map(|(a, b)| {
                        let d = (*a - *b) as f64;
                        d * d
                    })
                    .sum();
                squared.sqrt()
            })
            .sum();
        Ok((total / self.parts as f64) as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_averages_per_part_euclidean_norms() {
        let a = Embedding::new(2, 2, vec![0.0, 0.0, 1.0, 1.0]).unwrap();
        let b = Embedding::new(2, 2, vec![3.0, 4.0, 1.0, 1.0]).unwrap();
        assert_eq!(a.distance(&b).unwrap(), 2.5);
        assert_eq!(b.distance(&a).unwrap(), 2.5);
        assert_eq!(a.distance(&a).unwrap(), 0.0);
    }

    #[test]
    fn embeddings_of_different_variants_are_not_compared() {
        let a = Embedding::new(73, 1, vec![0.0; 73]).unwrap();
        let b = Embedding::new(1, 73, vec![0.0; 73]).unwrap();
        assert!(a.distance(&b).is_err());
        assert!(Embedding::new(2, 2, vec![0.0; 3]).is_err());
    }

    #[test]
    fn non_finite_values_are_refused_where_the_embedding_is_made() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let error = Embedding::new(2, 2, vec![0.0, 0.0, 0.0, bad]).unwrap_err();
            assert!(
                matches!(
                    error,
                    HstlError::NotFinite {
                        part: 1,
                        channel: 1,
                        ..
                    }
                ),
                "{error}"
            );
        }
    }
}
