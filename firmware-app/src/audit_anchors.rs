//! Checking a door's audit log against every place its chain heads were published.
//!
//! The door's own gallery holds every head it published, but whoever can write the gallery can
//! delete them. The site's database keeps the heads the door uploaded (a door's role can add events
//! but never change or remove one) and the MQTT broker retains the newest; `kiosk verify-log`
//! checks the log against each place it can reach, says which it checked, and fails when no
//! published head at all vouches for the log.

use access::audit::{verify, Anchors, AuditError, ChainKey, Verification};
use access::event_store::EventStore;
use access::gallery::{GalleryError, TemplateKey};

use crate::config::KioskConfig;

/// How long `verify-log` waits for the MQTT broker.
#[cfg(feature = "mqtt")]
const BROKER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a door's log could not be checked, or did not pass.
#[derive(Debug, thiserror::Error)]
pub enum VerifyLogError {
    /// The log itself: a seal, the chain, a cut end, a head that differs.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The door's gallery, where its published heads are kept.
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    /// No published head anywhere: nothing vouches for the log.
    #[error("no published chain head of {log} was found ({}): nothing vouches for the log (a kiosk publishes a head at every stop, so heads were deleted or the log was never written)", .looked.join("; "))]
    NoAnchors {
        /// The log.
        log: String,
        /// Where heads were looked for, and what each place said.
        looked: Vec<String>,
    },
}

/// A checked log, and the places whose heads could not be read (each with why).
#[derive(Debug)]
pub struct CheckedLog {
    /// What the check found.
    pub verification: Verification,
    /// Places configured but not reachable now, with what failed.
    pub unreachable: Vec<String>,
}

/// Checks the audit log of the door `config` describes: every seal under the door's chain key, and
/// every head published to its gallery, its site and its broker that can be reached.
pub fn verify_door_log(
    config: &KioskConfig,
    template_key: Option<&TemplateKey>,
) -> Result<CheckedLog, VerifyLogError> {
    let mut anchors = vec![Anchors {
        source: format!("gallery {}", config.gallery.path.display()),
        heads: EventStore::open_existing(&config.gallery.path, template_key)?.audit_heads()?,
    }];
    let mut unreachable = Vec::new();
    if let Some(site) = &config.site {
        let source = format!("site database {}", site.server());
        match site::published_audit_heads(site) {
            Ok(heads) => anchors.push(Anchors { source, heads }),
            Err(error) => unreachable.push(format!("{source}: {error}")),
        }
    }
    #[cfg(feature = "mqtt")]
    if let Some(mqtt) = &config.mqtt {
        let source = format!("MQTT broker {}:{} (retained head)", mqtt.host, mqtt.port);
        match crate::mqtt::retained_audit_head(mqtt, &config.door, BROKER_PATIENCE) {
            Ok(head) => anchors.push(Anchors {
                source,
                heads: head.into_iter().collect(),
            }),
            Err(error) => unreachable.push(format!("{source}: {error}")),
        }
    }
    if anchors.iter().all(|a| a.heads.is_empty()) {
        let looked = anchors
            .iter()
            .map(|a| format!("{}: none", a.source))
            .chain(unreachable.iter().cloned())
            .collect();
        return Err(VerifyLogError::NoAnchors {
            log: config.audit.path.display().to_string(),
            looked,
        });
    }
    let verification = verify(
        &config.audit,
        Some(&ChainKey::read(&config.audit)?),
        &anchors,
    )?;
    Ok(CheckedLog {
        verification,
        unreachable,
    })
}
