//! A door kiosk put together from its configuration: the network, the gallery it watches, the
//! decision policy on the model's calibrated accept distance, and every output the configuration
//! names. The `kiosk` binary and the demo build it this way; only its source differs.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};

use access::audit::{AuditError, AuditLog, ChainKey};
use access::decision::{accept_distance, AcceptDistanceError, DecisionPolicy};
use access::event_store::EventStore;
use access::events::{EventDispatcher, EventKind};
use access::gallery::{Gallery, GalleryError, TemplateKey};
use access::matcher::{MatchError, MatchIndex};
use hstl::operating_point::OperatingPointError;
use hstl::streaming::StreamingEmbedder;
use hstl::{model_id, HstlError, OperatingPoint};
use silhouette::source::FrameSource;
use silhouette::SilhouetteConfig;

use crate::config::KioskConfig;
use crate::door_inputs::{DoorLines, DoorWatch, WatchOutputs};
use crate::framebuffer::{Framebuffer, FramebufferError};
use crate::kiosk_loop::{
    run, DecisionRecord, DoorEngine, DoorNews, KioskError, KioskStats, LoopConfig, Outputs,
    StatusObserver, STATUS_EVERY,
};
use crate::mqtt::{open_sink, MqttError};
use crate::panel::{PanelError, PanelReader};
use crate::relay::{open_line, DoorRelay, RelayError};
use crate::site_sync::{SiteOutbox, SiteSyncError};

/// Events a sink may owe before the oldest are dropped (and counted).
pub const MAX_QUEUED_EVENTS: usize = 100_000;

/// Why a kiosk does not come up: each names the file or output at fault.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The network or its file.
    #[error(transparent)]
    Model(#[from] HstlError),
    /// The model's operating point.
    #[error(transparent)]
    OperatingPoint(#[from] OperatingPointError),
    /// No accept distance a door may run on.
    #[error(transparent)]
    AcceptDistance(#[from] AcceptDistanceError),
    /// The gallery or the template key.
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    /// Building the match index.
    #[error(transparent)]
    Match(#[from] MatchError),
    /// The audit log.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The door relay.
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// The access-control panel or the door inputs.
    #[error(transparent)]
    Panel(#[from] PanelError),
    /// The MQTT sink.
    #[error(transparent)]
    Mqtt(#[from] MqttError),
    /// The site this door belongs to.
    #[error(transparent)]
    Site(#[from] SiteSyncError),
    /// The framebuffer.
    #[error(transparent)]
    Framebuffer(#[from] FramebufferError),
    /// The folder for status screens.
    #[error("creating {path}: {source}")]
    ScreenDir {
        /// The folder.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A sink refused the start event: a door must not run unrecorded.
    #[error("the {sink} cannot store events (see the error logged above): a door must not run unrecorded")]
    Unrecorded {
        /// The sink that refused.
        sink: String,
    },
}

/// A running door: its engine, its outputs, and how its loop treats sources.
pub struct Kiosk {
    /// Embeds, matches and decides.
    pub engine: DoorEngine,
    /// Where events and screens go.
    pub outputs: Outputs,
    silhouettes: SilhouetteConfig,
    max_windows_in_flight: usize,
}

impl Kiosk {
    /// The door `config` describes: its network on the configured backend, its model's calibrated
    /// operating point (refused when missing or looser than the configuration), its gallery and
    /// every output. The start event is published and stored before this returns.
    pub fn open(config: &KioskConfig) -> Result<Self, SetupError> {
        for (name, why) in config.decision.checks_switched_off() {
            log::warn!("[decision] unsafe_allow \"{name}\": {why}");
        }
        let plaintext = [
            ("[site]", config.site.as_ref().map(|s| &s.tls)),
            ("[mqtt]", config.mqtt.as_ref().map(|m| &m.tls)),
        ];
        for (section, _) in plaintext
            .iter()
            .filter(|(_, tls)| tls.is_some_and(|tls| tls.unsafe_plaintext))
        {
            log::warn!("{section} unsafe_plaintext: the door talks to a server elsewhere without TLS; everything it sends crosses the network in clear");
        }
        let key = config
            .gallery
            .key_file
            .as_deref()
            .map(TemplateKey::read_file)
            .transpose()?;
        let embedder = StreamingEmbedder::load(
            &config.model.path,
            config.model.backend,
            config.model.threads,
            config.model.precision,
        )?;
        log::info!("{}", embedder.describe());
        let model_id = model_id(&config.model.path)?;
        let point = OperatingPoint::load_for(&config.model.path, &model_id)?;
        if let Some(point) = &point {
            let path = OperatingPoint::path_for(&config.model.path);
            match &key {
                Some(key) => point.check_seal(&key.operating_point_key(), &path)?,
                None => log::warn!(
                    "{} is not checked against a seal: without [gallery] key_file, whoever can write the model's folder can set this door's accept distance",
                    path.display()
                ),
            }
        }
        let accept = accept_distance(
            config.decision.accept_distance,
            point.as_ref(),
            &config.model.path,
        )?;
        if let Some(point) = &point {
            log::info!(
                "accept distance {accept} (model calibrated at {} for FPIR {}: FNIR {:.2} %, measured on {})",
                point.accept_distance,
                point.target_fpir,
                100.0 * point.fnir,
                point.measured_on
            );
            if let Some(shipped) = point.looser_than_shipped {
                log::warn!(
                    "the model's operating point accepts at {}, looser than the {shipped} it was shipped with (saved with --looser-than-shipped): strangers are let in more often than the project calibrated for",
                    point.accept_distance
                );
            }
        }
        Self::assemble(config, key.as_ref(), embedder, model_id, accept)
    }

    /// The door of `config` on a network already loaded and an accept distance already decided:
    /// gallery, engine and outputs.
    fn assemble(
        config: &KioskConfig,
        key: Option<&TemplateKey>,
        embedder: StreamingEmbedder,
        model_id: String,
        accept_distance: f32,
    ) -> Result<Self, SetupError> {
        let (news, news_inbox) = mpsc::channel();
        // A door of a site catches its replica up before the index is built from it.
        let site = config
            .site
            .as_ref()
            .map(|site| {
                SiteOutbox::start(
                    site,
                    &config.door,
                    &config.gallery.path,
                    key,
                    &model_id,
                    news.clone(),
                )
            })
            .transpose()?;
        let gallery = Gallery::open_existing(&config.gallery.path, key)?;
        gallery.check_model(&model_id)?;
        let index =
            MatchIndex::from_gallery(&gallery, embedder.embedding_shape(), config.model.threads)?;
        log::info!(
            "gallery {}: {} people, {} templates",
            config.gallery.path.display(),
            index.identities().len(),
            index.template_count()
        );
        for person in gallery.people()? {
            if person.window_templates > 0 {
                log::warn!(
                    "person {}: {} templates of single windows, enrolled before doors searched the walk so far, are not searched{}: enrol them again",
                    person.pseudonym,
                    person.window_templates,
                    if person.templates == 0 {
                        ", so they are not recognised"
                    } else {
                        ""
                    }
                );
            }
        }
        if key.is_none() {
            log::warn!("no [gallery] key_file: templates are stored in clear");
        }
        let outputs = outputs(config, gallery, site, (news, news_inbox))?;
        let mut engine = DoorEngine::new(
            config.door.clone(),
            model_id,
            embedder,
            index,
            DecisionPolicy::new(config.decision.clone(), accept_distance),
        );
        engine.watch_gallery(Gallery::open_existing(&config.gallery.path, key)?);
        let mut kiosk = Kiosk {
            engine,
            outputs,
            silhouettes: SilhouetteConfig::default(),
            max_windows_in_flight: config.max_windows_in_flight,
        };
        kiosk.publish(EventKind::Started);
        if let Some((sink, _)) = kiosk.owed().into_iter().next() {
            return Err(SetupError::Unrecorded { sink });
        }
        Ok(kiosk)
    }

    /// Runs `source` through the door until it ends or `stop` is set; `live` for a camera (windows
    /// are dropped when the network is behind), not for a recording (which waits).
    pub fn run(
        &mut self,
        source: Box<dyn FrameSource>,
        live: bool,
        stop: Arc<AtomicBool>,
        on_decision: &mut dyn FnMut(&DecisionRecord),
    ) -> Result<KioskStats, KioskError> {
        let config = LoopConfig {
            live,
            silhouettes: self.silhouettes.clone(),
            max_windows_in_flight: self.max_windows_in_flight,
            status_every: STATUS_EVERY,
        };
        run(
            source,
            &config,
            &mut self.engine,
            &mut self.outputs,
            stop,
            on_decision,
        )
    }

    /// The distance this door accepts searches up to.
    pub fn accept_distance(&self) -> f32 {
        self.engine.policy().accept_distance()
    }

    /// `on_status` sees the kiosk's health every [`STATUS_EVERY`] while it runs.
    pub fn watch_status(&mut self, on_status: StatusObserver) {
        self.outputs.on_status = Some(on_status);
    }

    /// Publishes an event of this door that is not a decision.
    pub fn publish(&mut self, kind: EventKind) {
        self.outputs.dispatcher.publish(&self.engine.event(kind));
    }

    /// The stop event published; the sinks that still owe events, with how many.
    pub fn stop(mut self) -> Vec<(String, usize)> {
        self.publish(EventKind::Stopped);
        self.owed()
    }

    /// The sinks that still owe events, with how many.
    fn owed(&self) -> Vec<(String, usize)> {
        self.outputs
            .dispatcher
            .pending()
            .into_iter()
            .filter(|(_, pending)| *pending > 0)
            .collect()
    }
}

/// Every output `config` names, with the audit log and the gallery's event table always.
fn outputs(
    config: &KioskConfig,
    gallery: Gallery,
    site: Option<SiteOutbox>,
    (news, news_inbox): (mpsc::Sender<DoorNews>, mpsc::Receiver<DoorNews>),
) -> Result<Outputs, SetupError> {
    let mut dispatcher = EventDispatcher::new(MAX_QUEUED_EVENTS);
    let audit = AuditLog::open(
        config.audit.clone(),
        Some(ChainKey::open_or_create(&config.audit)?),
    )?;
    let audit_head = audit.head_handle();
    dispatcher.add(Box::new(audit));
    dispatcher.add(Box::new(EventStore::of(&gallery)?));
    let mut watch_outputs = WatchOutputs::default();
    if let Some(relay) = &config.relay {
        let door_relay = DoorRelay::start(open_line(relay)?, relay)?;
        watch_outputs.relay = Some(door_relay.releaser());
        dispatcher.add(Box::new(door_relay));
        log::info!(
            "door relay on {} line {} ({} ms pulse), locked",
            relay.chip,
            relay.line,
            relay.pulse_ms
        );
    }
    if let Some(panel) = &config.panel {
        let reader = PanelReader::open(panel, news.clone())?;
        watch_outputs.tamper_to_panel = reader.tamper_reporter();
        dispatcher.add(Box::new(reader));
        log::info!(
            "reads to the access-control panel by {:?}, {}, facility code {}",
            panel.mode,
            panel.format,
            panel.facility_code
        );
    }
    if let Some(inputs) = &config.door_inputs {
        let timings = inputs.check().map_err(PanelError::Io)?;
        let lines = DoorLines::open(inputs).map_err(PanelError::Io)?;
        dispatcher.add(Box::new(
            DoorWatch::start(
                lines,
                timings,
                config.relay.as_ref(),
                watch_outputs,
                news.clone(),
            )
            .map_err(PanelError::Thread)?,
        ));
    }
    if let Some(mqtt) = &config.mqtt {
        dispatcher.add(open_sink(mqtt, &config.door)?);
        log::info!(
            "events to mqtt://{}:{} under {}/events/",
            mqtt.host,
            mqtt.port,
            mqtt.prefix(&config.door)
        );
    }
    if let Some(site) = site {
        dispatcher.add(Box::new(site));
        log::info!("events to the site database through the replica's outbox");
    }
    if let Some(dir) = &config.display.screen_dir {
        std::fs::create_dir_all(dir).map_err(|source| SetupError::ScreenDir {
            path: dir.clone(),
            source,
        })?;
    }
    Ok(Outputs {
        dispatcher,
        screen_dir: config.display.screen_dir.clone(),
        framebuffer: config
            .display
            .framebuffer
            .as_deref()
            .map(Framebuffer::open)
            .transpose()?,
        audit_head: Some(audit_head),
        news: Some(news_inbox),
        on_status: None,
    })
}
