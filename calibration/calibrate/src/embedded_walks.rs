//! The embeddings of labelled walks kept in a file (`calibrate thresholds --embedded-walks`), so that
//! another measurement of the same walks (another gallery, another policy) needs no network. The
//! file is a JSON line (what was embedded, by which model, and each walk's labels and frames)
//! followed by the embeddings as little-endian f32, walk after walk, prefix after prefix.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{bail, Context, Result};
use calibration::open_set::{LabelledWalk, Prefix};
use hstl::Embedding;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Header {
    /// The model and walks they were made from: a file made from others is refused.
    made_from: String,
    parts: usize,
    channels: usize,
    walks: Vec<WalkLabels>,
}

#[derive(Serialize, Deserialize)]
struct WalkLabels {
    person: String,
    camera: String,
    frames: Vec<usize>,
}

/// Writes `walks`, made from `made_from`, to `path` (replaced whole).
pub fn write(path: &Path, made_from: &str, walks: &[LabelledWalk]) -> Result<()> {
    let first = walks
        .iter()
        .flat_map(|w| w.prefixes.first())
        .next()
        .context("no embedding to keep")?;
    let header = Header {
        made_from: made_from.to_string(),
        parts: first.embedding.parts(),
        channels: first.embedding.channels(),
        walks: walks
            .iter()
            .map(|w| WalkLabels {
                person: w.person.clone(),
                camera: w.camera.clone(),
                frames: w.prefixes.iter().map(|p| p.frames).collect(),
            })
            .collect(),
    };
    let mut bytes = serde_json::to_vec(&header)?;
    bytes.push(b'\n');
    for prefix in walks.iter().flat_map(|w| &w.prefixes) {
        for value in prefix.embedding.as_slice() {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
    }
    hstl::files::replace_durably(path, &bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// The walks kept in `path`, which must have been made from `made_from`.
pub fn read(path: &Path, made_from: &str) -> Result<Vec<LabelledWalk>> {
    read_checked(path, |kept| {
        if kept != made_from {
            bail!(
                "{} holds walks made from {kept:?}, not {made_from:?}: give another file, or remove it to embed these walks",
                path.display(),
            );
        }
        Ok(())
    })
}

/// The walks kept in `path`, whatever walks they are, which must have been embedded by the model
/// `model_id`: a normalisation cohort (`calibrate thresholds --cohort`).
pub fn read_cohort(path: &Path, model_id: &str) -> Result<Vec<LabelledWalk>> {
    let by_model = format!("model {model_id};");
    read_checked(path, |kept| {
        if !kept.starts_with(&by_model) {
            bail!(
                "{} holds walks made from {kept:?}: a cohort must be embedded by the model measured ({model_id})",
                path.display(),
            );
        }
        Ok(())
    })
}

fn read_checked(path: &Path, check: impl FnOnce(&str) -> Result<()>) -> Result<Vec<LabelledWalk>> {
    let context = || format!("reading embedded walks from {}", path.display());
    let file = std::fs::File::open(path).with_context(context)?;
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    reader.read_line(&mut line).with_context(context)?;
    let header: Header = serde_json::from_str(&line)
        .with_context(|| format!("{}: not a file of embedded walks", path.display()))?;
    check(&header.made_from)?;
    let size = header.parts * header.channels;
    let mut values = vec![0u8; size * 4];
    let mut walks = Vec::with_capacity(header.walks.len());
    for labels in header.walks {
        let mut prefixes = Vec::with_capacity(labels.frames.len());
        for frames in labels.frames {
            reader.read_exact(&mut values).with_context(|| {
                format!(
                    "{}: cut short (fewer embeddings than its walks list)",
                    path.display()
                )
            })?;
            let embedding = Embedding::new(
                header.parts,
                header.channels,
                values
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            )
            .with_context(context)?;
            prefixes.push(Prefix { embedding, frames });
        }
        walks.push(LabelledWalk {
            person: labels.person,
            camera: labels.camera,
            prefixes,
        });
    }
    if reader.read(&mut [0u8])? != 0 {
        bail!("{}: more bytes than its walks list", path.display());
    }
    Ok(walks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walks() -> Vec<LabelledWalk> {
        let prefix = |x: f32, frames| Prefix {
            embedding: Embedding::new(2, 2, vec![x, x + 1.0, x + 2.0, x + 3.0]).unwrap(),
            frames,
        };
        vec![
            LabelledWalk {
                person: "001".into(),
                camera: "090".into(),
                prefixes: vec![prefix(0.5, 30), prefix(1.5, 45)],
            },
            LabelledWalk {
                person: "002".into(),
                camera: "090".into(),
                prefixes: vec![prefix(-2.0, 30)],
            },
        ]
    }

    #[test]
    fn walks_come_back_as_they_were_kept_and_only_for_what_made_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("walks.bin");
        write(&path, "model a; walks b", &walks()).unwrap();
        let back = read(&path, "model a; walks b").unwrap();
        assert_eq!(back.len(), 2);
        for (kept, read) in walks().iter().zip(&back) {
            assert_eq!((&kept.person, &kept.camera), (&read.person, &read.camera));
            let frames = |w: &LabelledWalk| w.prefixes.iter().map(|p| p.frames).collect::<Vec<_>>();
            assert_eq!(frames(kept), frames(read));
            for (k, r) in kept.prefixes.iter().zip(&read.prefixes) {
                assert_eq!(k.embedding, r.embedding);
            }
        }
        let other = read(&path, "model c; walks b").unwrap_err().to_string();
        assert!(other.contains("model a; walks b"), "{other}");
        // A cohort is any walks of the model measured, and of no other.
        assert_eq!(read_cohort(&path, "a").unwrap().len(), 2);
        let other_model = read_cohort(&path, "c").unwrap_err().to_string();
        assert!(
            other_model.contains("embedded by the model measured (c)"),
            "{other_model}"
        );

        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let short = format!("{:#}", read(&path, "model a; walks b").unwrap_err());
        assert!(short.contains("cut short"), "{short}");
    }
}
