//! The door's link to its site (`[site]` in kiosk.toml): its gallery kept as the replica of the
//! people allowed through this door, and its events sent up through an outbox.
//!
//! - At start the replica catches up with the site before the first decision, when the site
//!   answers within the connect timeout; otherwise the door starts on the replica it has.
//! - A thread pulls changes by revision: at once when the site announces one (LISTEN/NOTIFY),
//!   and every `poll_interval_s` in case an announcement was lost. Each batch is one transaction
//!   on the replica; the decision loop sees the new roster at its next search, as it sees any
//!   change to its gallery.
//! - Every event is stored in the replica's outbox first and leaves it only once the site has
//!   committed it; ids make a resend harmless, so an outage loses and duplicates nothing.
//! - The site gone: one `site_offline` event; back and caught up: one `site_online`. After an
//!   outage the replica catches up (erasures included) before `site_online` is reported.
//! - Someone whose templates the door cannot open is quarantined by the replica and reported once
//!   (a `template_quarantined` event naming them, and the count on the screen and in the status);
//!   every other change goes on being applied.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use access::event_store::EventStore;
use access::events::{Event, EventKind, EventSink, SinkError};
use access::gallery::{Gallery, GalleryError, TemplateKey};
use site::{DoorLink, SiteConfig, SiteError};

use crate::kiosk_loop::DoorNews;
use crate::threads::{spawn, SpawnError};

/// People per batch pulled from the site (each batch is one transaction on the replica).
pub const PEOPLE_PER_BATCH: usize = 500;
/// Events per upload (each upload is one transaction at the site).
pub const EVENTS_PER_UPLOAD: usize = 500;
/// How often the link thread looks for news between announcements.
const LISTEN_SLICE: Duration = Duration::from_millis(100);
/// The longest wait between two attempts to reach the site.
const MAX_RETRY: Duration = Duration::from_secs(10);

/// Why the site link cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SiteSyncError {
    /// The site refused the door (not registered, wrong schema, bad settings).
    #[error(transparent)]
    Site(#[from] SiteError),
    /// The replica.
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    /// The link thread.
    #[error(transparent)]
    Thread(#[from] SpawnError),
}

/// The door's outbox for the site, as an event sink; it owns the link thread and stops it when
/// dropped.
pub struct SiteOutbox {
    outbox: EventStore,
    nudge: Sender<()>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SiteOutbox {
    /// Catches the replica at `gallery_path` up with the site (when it answers), then starts the
    /// link thread. A door the site does not know (or knows under another name than `door`), a
    /// replica that the site's templates do not open, or settings that cannot work are errors; a
    /// site that does not answer is not.
    pub fn start(
        config: &SiteConfig,
        door: &str,
        gallery_path: &Path,
        key: Option<&TemplateKey>,
        model_id: &str,
        news: Sender<DoorNews>,
    ) -> Result<Self, SiteSyncError> {
        config.check()?;
        let key_check = key.ok_or(GalleryError::KeyRequired)?.site_check();
        let mut replica = Gallery::open(gallery_path, key)?;
        let mut link_outbox = EventStore::of(&replica)?;
        let quarantined = replica.quarantined()?.len();
        if quarantined > 0 {
            let _ = news.send(DoorNews::Quarantine {
                newly: Vec::new(),
                total: quarantined,
            });
        }
        let mut link = Link {
            config: config.clone(),
            door_name: door.to_string(),
            model_id: model_id.to_string(),
            key_check,
            door: None,
            online: None,
            news,
        };
        match link.connect_and_catch_up(&mut replica, &mut link_outbox) {
            Ok(()) => {}
            Err(LinkError::Site(error)) if error.is_outage() => link.report_offline(&error),
            Err(LinkError::Site(error)) => return Err(error.into()),
            Err(LinkError::Gallery(error)) => return Err(error.into()),
        }
        let (nudge, nudged) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            spawn("site link", move || {
                link.run(replica, link_outbox, nudged, stop)
            })?
        };
        Ok(SiteOutbox {
            outbox: EventStore::open_existing(gallery_path, key)?,
            nudge,
            stop,
            thread: Some(thread),
        })
    }
}

impl EventSink for SiteOutbox {
    fn name(&self) -> &str {
        "site outbox"
    }

    fn deliver(&mut self, event: &Event) -> Result<(), SinkError> {
        self.outbox.queue_for_site(event).map_err(|e| SinkError {
            sink: "site outbox".into(),
            detail: e.to_string(),
        })?;
        let _ = self.nudge.send(());
        Ok(())
    }

    fn backlog(&self) -> usize {
        self.outbox.site_outbox_len().unwrap_or(0)
    }
}

impl Drop for SiteOutbox {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.nudge.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

enum LinkError {
    Site(SiteError),
    Gallery(GalleryError),
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Site(error) => error.fmt(f),
            LinkError::Gallery(error) => write!(f, "site replica: {error}"),
        }
    }
}

impl From<SiteError> for LinkError {
    fn from(error: SiteError) -> Self {
        LinkError::Site(error)
    }
}

impl From<GalleryError> for LinkError {
    fn from(error: GalleryError) -> Self {
        LinkError::Gallery(error)
    }
}

struct Link {
    config: SiteConfig,
    /// The door's name in its configuration, which the site must know it by.
    door_name: String,
    model_id: String,
    key_check: [u8; 32],
    door: Option<DoorLink>,
    /// What was last reported: `None` before the first report.
    online: Option<bool>,
    news: Sender<DoorNews>,
}

impl Link {
    fn run(
        mut self,
        mut replica: Gallery,
        mut outbox: EventStore,
        nudged: Receiver<()>,
        stop: Arc<AtomicBool>,
    ) {
        let poll = Duration::from_secs_f64(self.config.poll_interval_s);
        let mut retry = Duration::from_millis(500);
        while !stop.load(Ordering::Relaxed) {
            match self.connect_and_catch_up(&mut replica, &mut outbox) {
                Ok(()) => retry = Duration::from_millis(500),
                Err(LinkError::Site(error)) => {
                    if error.is_outage() {
                        self.door = None;
                        self.report_offline(&error);
                    } else {
                        log::error!("site: {error}");
                    }
                    sleep_unless_stopped(retry, &stop, &nudged);
                    retry = (retry * 2).min(MAX_RETRY);
                    continue;
                }
                Err(LinkError::Gallery(error)) => {
                    log::error!("site replica: {error}");
                    sleep_unless_stopped(retry, &stop, &nudged);
                    retry = (retry * 2).min(MAX_RETRY);
                    continue;
                }
            }
            self.wait_for_news(poll, &stop, &nudged);
        }
        // A clean stop sends what the door said last (its stop event) while the site is there.
        if let Some(door) = self.door.as_mut().filter(|door| !door.is_closed()) {
            if let Err(error) = upload_outbox(door, &mut outbox) {
                log::warn!("site: the last events wait in the outbox for the next start: {error}");
            }
        }
    }

    /// Connects when not connected, applies every change the site has, uploads every event
    /// waiting, and reports the site online once that is done.
    fn connect_and_catch_up(
        &mut self,
        replica: &mut Gallery,
        outbox: &mut EventStore,
    ) -> Result<(), LinkError> {
        if self.door.as_ref().is_none_or(DoorLink::is_closed) {
            self.door = Some(DoorLink::connect(
                &self.config,
                &self.door_name,
                &self.model_id,
                &self.key_check,
            )?);
        }
        let door = self.door.as_mut().expect("connected above");
        let mut newly_quarantined = Vec::new();
        while let Some(batch) = door.pull(replica.site_revision()?, PEOPLE_PER_BATCH)? {
            let applied = replica.apply_site_batch(&self.model_id, &batch)?;
            log::info!(
                "site revision {}: {} stored, {} removed ({} erased), {} quarantined",
                batch.revision,
                applied.stored,
                applied.removed,
                applied.erased,
                applied.quarantined.len()
            );
            newly_quarantined.extend(applied.quarantined);
        }
        if !newly_quarantined.is_empty() {
            let _ = self.news.send(DoorNews::Quarantine {
                newly: newly_quarantined,
                total: replica.quarantined()?.len(),
            });
        }
        upload_outbox(door, outbox)?;
        if self.online != Some(true) {
            self.online = Some(true);
            let revision = replica.site_revision()?;
            log::info!(
                "site {} online at revision {revision}",
                self.config.server()
            );
            let _ = self
                .news
                .send(DoorNews::Event(EventKind::SiteOnline { revision }));
        }
        Ok(())
    }

    fn report_offline(&mut self, error: &SiteError) {
        if self.online == Some(false) {
            return;
        }
        self.online = Some(false);
        log::error!("{error}: deciding from the replica until the site is back");
        let _ = self.news.send(DoorNews::Event(EventKind::SiteOffline {
            detail: error.to_string(),
        }));
    }

    /// Until the site announces a change, an event waits, `poll` passes, or the door stops.
    fn wait_for_news(&mut self, poll: Duration, stop: &AtomicBool, nudged: &Receiver<()>) {
        let deadline = Instant::now() + poll;
        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            if nudged.try_recv().is_ok() {
                while nudged.try_recv().is_ok() {}
                return;
            }
            let Some(door) = self.door.as_mut() else {
                return;
            };
            match door.wait_for_change(LISTEN_SLICE) {
                Ok(false) => {}
                Ok(true) => return,
                Err(error) => {
                    log::warn!("site: {error}");
                    return;
                }
            }
        }
    }
}

/// Sends every event waiting in the outbox, oldest first, removing each batch once the site has
/// committed it.
fn upload_outbox(door: &mut DoorLink, outbox: &mut EventStore) -> Result<(), LinkError> {
    loop {
        let waiting = outbox.site_outbox(EVENTS_PER_UPLOAD)?;
        let Some(last) = waiting.last() else {
            return Ok(());
        };
        door.upload(&waiting)?;
        outbox.site_outbox_sent(last.position)?;
    }
}

fn sleep_unless_stopped(duration: Duration, stop: &AtomicBool, nudged: &Receiver<()>) {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        // Events arriving meanwhile wait in the outbox; only the stop ends the wait early.
        let _ = nudged.recv_timeout(LISTEN_SLICE);
    }
}
