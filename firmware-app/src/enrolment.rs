//! Templates from recorded walks, made the way the kiosk will see probes: windows of the same length
//! and hop, from the same silhouette stage.

use hstl::Embedder;
use image::GrayImage;

use crate::extract::Walk;
use crate::gallery::NewTemplate;
use crate::kiosk::window_input;
use crate::matcher::{MatchError, MatchIndex};
use crate::windows::WindowConfig;

#[derive(Debug, thiserror::Error)]
pub enum EnrolmentError {
    #[error(
        "{source_name}: the walk has {valid} usable silhouettes, at least {required} are needed"
    )]
    TooFewSilhouettes {
        source_name: String,
        valid: usize,
        required: usize,
    },
    #[error("embedding {source_name}: {error}")]
    Embed {
        source_name: String,
        error: hstl::HstlError,
    },
}

/// The windows a walk's silhouettes are cut into: `frames` long every `hop`, or the whole walk when it
/// is shorter than one window but has enough silhouettes.
pub fn walk_windows<'a>(
    silhouettes: &'a [GrayImage],
    config: &WindowConfig,
) -> Vec<&'a [GrayImage]> {
    if silhouettes.len() < config.frames {
        return if silhouettes.len() >= config.min_valid_frames {
            vec![silhouettes]
        } else {
            Vec::new()
        };
    }
    (0..=silhouettes.len() - config.frames)
        .step_by(config.hop.max(1))
        .map(|start| &silhouettes[start..start + config.frames])
        .collect()
}

/// One template per window of the walk.
pub fn templates_from_walk(
    embedder: &dyn Embedder,
    walk: &Walk,
    source_name: &str,
    config: &WindowConfig,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<NewTemplate>, EnrolmentError> {
    let windows = walk_windows(&walk.silhouettes, config);
    if windows.is_empty() {
        return Err(EnrolmentError::TooFewSilhouettes {
            source_name: source_name.to_string(),
            valid: walk.silhouettes.len(),
            required: config.min_valid_frames,
        });
    }
    let mut templates = Vec::with_capacity(windows.len());
    for (i, window) in windows.iter().enumerate() {
        let embed_error = |error| EnrolmentError::Embed {
            source_name: source_name.to_string(),
            error,
        };
        let embedding = embedder
            .embed(&window_input(window).map_err(embed_error)?)
            .map_err(embed_error)?;
        templates.push(NewTemplate {
            embedding,
            frames: window.len(),
            source: format!("{source_name} window {}", i + 1),
        });
        progress(i + 1, windows.len());
    }
    Ok(templates)
}

/// The enrolled identity nearest to any of `templates`, and its distance: a new person this close to
/// someone already enrolled will be confused with them.
pub fn nearest_enrolled(
    index: &MatchIndex,
    templates: &[NewTemplate],
) -> Result<Option<(usize, f32)>, MatchError> {
    let mut nearest: Option<(usize, f32)> = None;
    for template in templates {
        if let Some(best) = index.search(&template.embedding)?.best {
            if nearest.is_none_or(|(_, d)| best.distance < d) {
                nearest = Some((best.identity, best.distance));
            }
        }
    }
    Ok(nearest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_the_walk_with_the_kiosk_hop() {
        let config = WindowConfig::default();
        let walk = vec![GrayImage::new(64, 64); 70];
        let windows = walk_windows(&walk, &config);
        assert_eq!(windows.len(), 3);
        assert!(windows.iter().all(|w| w.len() == 30));
        assert_eq!(walk_windows(&walk[..20], &config).len(), 1);
        assert!(walk_windows(&walk[..5], &config).is_empty());
    }
}
