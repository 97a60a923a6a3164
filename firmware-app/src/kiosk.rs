//! The kiosk loop (`ARCHITECTURE.md`, "Threads and queues"): capture and silhouettes on one thread, embedding,
//! matching, decisions and sinks on another.
//!
//! The two are joined by a channel on which at most `max_windows_in_flight` windows wait. A live camera
//! never waits for inference: when the limit is reached a whole window is dropped and counted. Recorded
//! sources (files, the synthetic scene) wait instead, so that a replay is deterministic. Track ends and
//! camera state travel on the same channel, behind the windows they follow, and are never dropped.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use door_io::indication::Indication;
use hstl::{Embedder, Silhouettes};
use image::GrayImage;

use crate::display::{draw_status, Alarms, DoorState, MemoryDisplay, StatusView};
use crate::framebuffer::Framebuffer;
use access::audit::ChainHead;
use access::decision::{
    Decision, DecisionPolicy, SteadyArrivals, SteadyCount, TailgateAlarm, TailgateWatch, Verdict,
    WindowOutcome,
};
use access::events::{now_ms, Event, EventDispatcher, EventKind};
use access::gallery::Gallery;
use access::matcher::{MatchError, MatchIndex};
use silhouette::normalise::PRETREATED_SIZE;
use silhouette::source::FrameSource;
use silhouette::tracking::TrackId;
use silhouette::windows::{Window, WindowQuality};
use silhouette::{SilhouetteConfig, SilhouettePipeline};

/// How long a recorded source sleeps while inference catches up.
const BACKPRESSURE_POLL: Duration = Duration::from_millis(2);
/// A preview silhouette goes to the screen every this many frames.
const PREVIEW_EVERY_FRAMES: u64 = 5;

/// Why the kiosk could not decide on a window.
#[derive(Debug, thiserror::Error)]
pub enum KioskError {
    /// The network failed.
    #[error("embedding a window: {0}")]
    Embed(#[from] hstl::HstlError),
    /// The search or the gallery failed.
    #[error(transparent)]
    Match(#[from] MatchError),
    /// The model's operating point is unusable.
    #[error(transparent)]
    Model(#[from] hstl::operating_point::OperatingPointError),
    /// The capture thread died.
    #[error("the capture thread stopped unexpectedly")]
    CaptureThread,
}

/// Network input for a window of normalised silhouettes.
pub fn window_input(silhouettes: &[GrayImage]) -> Result<Silhouettes, hstl::HstlError> {
    let stacked = silhouette::windows::stack(silhouettes);
    Silhouettes::from_u8(
        &[
            silhouettes.len(),
            PRETREATED_SIZE as usize,
            PRETREATED_SIZE as usize,
        ],
        &stacked,
    )
}

/// Embeds windows, matches them against the gallery and applies the policy.
pub struct DoorEngine {
    /// The door's name.
    pub door: String,
    /// SHA-256 of the model.
    pub model_id: String,
    embedder: Box<dyn Embedder>,
    index: MatchIndex,
    policy: DecisionPolicy,
    window_frames: usize,
    /// The gallery the index was built from, watched for changes made by other processes.
    watched: Option<Gallery>,
    /// The last reload failed: nobody is matched until one succeeds.
    reload_pending: bool,
}

/// A decision with its event and how long it took.
#[derive(Debug, Clone)]
pub struct DecisionRecord {
    /// What was decided.
    pub decision: Decision,
    /// The event published for it.
    pub event: Event,
    /// The gallery name, for the screen only (events carry the pseudonym).
    pub name: Option<String>,
    /// From the capture of the window's last frame (or the track's end) to the event.
    pub latency: Duration,
}

impl DoorEngine {
    /// An engine deciding with `policy` on searches of `index`, embeddings by `embedder`.
    pub fn new(
        door: String,
        model_id: String,
        embedder: Box<dyn Embedder>,
        index: MatchIndex,
        policy: DecisionPolicy,
    ) -> Self {
        DoorEngine {
            door,
            model_id,
            embedder,
            index,
            policy,
            window_frames: silhouette::windows::WindowConfig::default().frames,
            watched: None,
            reload_pending: false,
        }
    }

    /// Rebuilds the index whenever another process commits to `gallery` (an enrolment, an erasure):
    /// checked before every search and every track's end, so an erased person is never matched again.
    pub fn watch_gallery(&mut self, gallery: Gallery) {
        self.watched = Some(gallery);
    }

    fn follow_gallery(&mut self) -> Result<(), KioskError> {
        let Some(gallery) = self.watched.as_mut() else {
            return Ok(());
        };
        if !gallery
            .roster_changed_elsewhere()
            .map_err(MatchError::from)?
            && !self.reload_pending
        {
            return Ok(());
        }
        self.policy.forget_identities();
        let shape = self.index.shape();
        let threads = self.index.threads();
        let reloaded = gallery
            .check_model(&self.model_id)
            .map_err(MatchError::from)
            .and_then(|()| MatchIndex::from_gallery(gallery, shape, threads));
        match reloaded {
            Ok(index) => {
                log::info!(
                    "gallery {} changed: now {} people, {} templates",
                    gallery.path().display(),
                    index.identities().len(),
                    index.template_count()
                );
                self.index = index;
                self.reload_pending = false;
                Ok(())
            }
            Err(e) => {
                // Fail secure: the old index may hold someone just erased.
                self.index = MatchIndex::new(shape.0, shape.1, threads);
                self.reload_pending = true;
                Err(e.into())
            }
        }
    }

    /// The templates it searches.
    pub fn index(&self) -> &MatchIndex {
        &self.index
    }

    /// The policy it decides with.
    pub fn policy(&self) -> &DecisionPolicy {
        &self.policy
    }

    /// One window of a track: embedded, searched and voted on; a decision when the track's votes settle.
    pub fn on_window(
        &mut self,
        window: &Window,
        people_in_view: usize,
        completed_at: Instant,
    ) -> Result<Option<DecisionRecord>, KioskError> {
        self.follow_gallery()?;
        if !self.policy.wants(window, self.window_frames) {
            return Ok(None);
        }
        let outcome = match window.quality {
            WindowQuality::Good => {
                let embedding = self.embedder.embed(&window_input(&window.silhouettes)?)?;
                WindowOutcome::Matched {
                    ranking: self.index.search(&embedding)?,
                    frames: window.silhouettes.len(),
                }
            }
            WindowQuality::TooFewValidFrames { .. } => WindowOutcome::PoorQuality,
            WindowQuality::NotAWalker(_) => WindowOutcome::NotAWalker,
        };
        let decision = self.policy.observe(window.track, &outcome, people_in_view);
        Ok(decision.map(|d| self.record(d, completed_at)))
    }

    /// A track left: an undecided track is decided now (denied, with the reason its votes point to).
    pub fn on_track_ended(&mut self, track: TrackId, ended_at: Instant) -> Option<DecisionRecord> {
        if let Err(e) = self.follow_gallery() {
            log::error!("{e}; nobody is recognised until the gallery reloads");
        }
        self.policy
            .track_ended(track)
            .map(|d| self.record(d, ended_at))
    }

    fn record(&mut self, decision: Decision, since: Instant) -> DecisionRecord {
        let (kind, identity) = match &decision.verdict {
            Verdict::Granted { identity } => (EventKind::Granted, Some(*identity)),
            Verdict::Denied { reason, identity } => {
                (EventKind::Denied { reason: *reason }, *identity)
            }
        };
        let identity = identity.map(|i| self.index.identity(i).clone());
        let event = Event {
            at_ms: now_ms(),
            door: self.door.clone(),
            kind,
            track: Some(decision.track),
            person: identity.as_ref().map(|i| i.pseudonym.clone()),
            figures: decision.figures.clone(),
            model_id: self.model_id.clone(),
            decided: Some(Instant::now()),
            credential: identity
                .as_ref()
                .filter(|_| matches!(decision.verdict, Verdict::Granted { .. }))
                .and_then(|i| i.credential),
        };
        DecisionRecord {
            decision,
            event,
            name: identity.map(|i| i.name),
            latency: since.elapsed(),
        }
    }

    /// An event of this door that is not a decision.
    pub fn event(&self, kind: EventKind) -> Event {
        Event {
            at_ms: now_ms(),
            door: self.door.clone(),
            kind,
            track: None,
            person: None,
            figures: None,
            model_id: self.model_id.clone(),
            decided: Some(Instant::now()),
            credential: None,
        }
    }
}

enum Job {
    Window {
        window: Window,
        people_in_view: usize,
        completed_at: Instant,
    },
    TrackEnded {
        track: TrackId,
        at: Instant,
    },
    Preview {
        silhouette: GrayImage,
        people_in_view: usize,
        frames_per_second: f32,
    },
    /// The number of people in view changed at this frame of the source.
    PeopleInView {
        frame: u64,
        people: usize,
    },
    /// Someone came into view at this frame of the source and stayed.
    Arrived {
        frame: u64,
        track: TrackId,
    },
    SourceLost(String),
    SourceRestored,
}

/// What the door's own hardware tells the decision loop, besides the camera's windows: the door
/// inputs, the panel link.
#[derive(Debug, Clone, PartialEq)]
pub enum DoorNews {
    /// An event to publish (and show, when it is an alarm).
    Event(EventKind),
    /// What the panel asks the reader's LED and buzzer to show.
    Indication(Indication),
}

/// How often the decision loop hears the door's news while no window arrives.
pub const NEWS_POLL: Duration = Duration::from_millis(20);

/// Where decisions and the screen go.
pub struct Outputs {
    /// Every sink of the door.
    pub dispatcher: EventDispatcher,
    /// Status screens are written here as PNG, one per decision, when set.
    pub screen_dir: Option<std::path::PathBuf>,
    /// The live status screen, redrawn at most every [`SCREEN_REFRESH`].
    pub framebuffer: Option<Framebuffer>,
    /// The audit log's chain head, published as an anchor every [`STATUS_EVERY`] and at the end.
    pub audit_head: Option<Arc<Mutex<Option<ChainHead>>>>,
    /// The door inputs' and the panel link's news.
    pub news: Option<Receiver<DoorNews>>,
    /// Sees the kiosk's health every [`STATUS_EVERY`] (a soak's sampler, a fleet monitor).
    pub on_status: Option<StatusObserver>,
}

impl Outputs {
    /// Publishes the audit chain's head, unless nothing but the last anchor was written since.
    /// `anchored` is the sequence number the last anchor's own line took.
    fn anchor_audit_log(&mut self, engine: &DoorEngine, anchored: &mut Option<u64>) {
        let Some(handle) = &self.audit_head else {
            return;
        };
        let head = handle.lock().expect("audit head lock").clone();
        let Some(head) = head.filter(|h| Some(h.seq) != *anchored) else {
            return;
        };
        *anchored = Some(head.seq + 1);
        self.dispatcher.publish(&engine.event(EventKind::AuditHead {
            seq: head.seq,
            mac: head.mac,
        }));
    }
}

/// How often the live screen is redrawn between decisions.
pub const SCREEN_REFRESH: Duration = Duration::from_millis(200);

/// How often a running kiosk logs its throughput, drops and latency.
pub const STATUS_EVERY: Duration = Duration::from_secs(60);

/// What sees a running kiosk's health (see [`Outputs::on_status`]).
pub type StatusObserver = Box<dyn FnMut(&KioskStatus) + Send>;

/// A running kiosk's health, taken every [`STATUS_EVERY`]: what it logs, and what
/// [`Outputs::on_status`] sees.
#[derive(Debug, Clone, PartialEq)]
pub struct KioskStatus {
    /// Since the loop started.
    pub uptime: Duration,
    /// Frames read so far.
    pub frames: u64,
    /// Frames per second as the capture thread last measured them.
    pub frames_per_second: f32,
    /// Windows that went through the network so far.
    pub windows_embedded: u64,
    /// Windows dropped whole because the network was behind, so far.
    pub windows_dropped: u64,
    /// Windows waiting for the network now.
    pub windows_in_flight: usize,
    /// Decisions made so far.
    pub decisions: u64,
    /// The median latency of the last (at most) 100 decisions.
    pub recent_median_latency: Duration,
    /// Events each sink has not taken yet, by sink.
    pub pending_events: Vec<(String, usize)>,
    /// Events each sink took but has not passed on yet (the MQTT queue, the site outbox), by sink.
    pub sink_backlogs: Vec<(String, usize)>,
    /// Events dropped from full sink queues so far.
    pub events_dropped: u64,
    /// The process's resident memory now, in KiB, where the system says.
    pub resident_kib: Option<u64>,
}

/// What a run of the loop did.
#[derive(Debug, Clone, Default)]
pub struct KioskStats {
    /// Frames read.
    pub frames: u64,
    /// Windows that went through the network.
    pub windows_embedded: u64,
    /// Windows dropped because the network was behind (a live camera only).
    pub windows_dropped: u64,
    /// Decisions made.
    pub decisions: u64,
    /// From the last frame of each deciding window to its event: the last [`LATENCIES_KEPT`]
    /// decisions' (a kiosk runs for months).
    pub recent_latencies: VecDeque<Duration>,
    /// The longest latency of the whole run.
    pub slowest: Duration,
    /// How long the run took.
    pub elapsed: Duration,
    /// Times the source failed.
    pub source_errors: u64,
    /// Tailgate alarms raised.
    pub tailgate_alarms: u64,
}

impl KioskStats {
    /// Frames read per second of the run.
    pub fn frames_per_second(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The median latency of the recent decisions (zero before the first decision).
    pub fn median_latency(&self) -> Duration {
        let recent: Vec<Duration> = self.recent_latencies.iter().copied().collect();
        median_latency(&recent)
    }

    fn record_latency(&mut self, latency: Duration) {
        if self.recent_latencies.len() == LATENCIES_KEPT {
            self.recent_latencies.pop_front();
        }
        self.recent_latencies.push_back(latency);
        self.slowest = self.slowest.max(latency);
    }
}

/// Decisions whose latencies [`KioskStats`] keeps for its median.
pub const LATENCIES_KEPT: usize = 1000;

/// The median of decision latencies, the figure the kiosk and the demo report (zero for none).
pub fn median_latency(latencies: &[Duration]) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

/// How the loop treats its source.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// A live camera drops whole windows when inference is behind; a recording waits.
    pub live: bool,
    /// The silhouette stage.
    pub silhouettes: SilhouetteConfig,
    /// Windows waiting for the network at most.
    pub max_windows_in_flight: usize,
    /// How often the kiosk reports its health ([`STATUS_EVERY`] on a door).
    pub status_every: Duration,
}

/// Runs the loop until the source ends or `stop` is set: the capture thread cuts windows, this
/// thread decides. `on_decision` sees every decision after the sinks have.
pub fn run(
    mut source: Box<dyn FrameSource>,
    config: &LoopConfig,
    engine: &mut DoorEngine,
    outputs: &mut Outputs,
    stop: Arc<AtomicBool>,
    on_decision: &mut dyn FnMut(&DecisionRecord),
) -> Result<KioskStats, KioskError> {
    let started = Instant::now();
    engine.window_frames = config.silhouettes.windows.frames;
    let frame_rate = source.frame_rate();
    let (jobs, receiver) = mpsc::channel::<Job>();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let counters = Arc::new(CaptureCounters::default());
    let capture = Capture {
        live: config.live,
        max_windows_in_flight: config.max_windows_in_flight.max(1),
        in_flight: in_flight.clone(),
        jobs,
        pipeline: SilhouettePipeline::new(config.silhouettes.clone()),
        counters: counters.clone(),
    };
    let capture = std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || capture.run(source.as_mut(), &stop))
        .map_err(|_| KioskError::CaptureThread)?;

    let mut decisions =
        DecisionLoop::new(engine, outputs, frame_rate, in_flight, counters, started);
    decisions.status_every = config.status_every;
    loop {
        let source_ended = match receiver.recv_timeout(NEWS_POLL) {
            Ok(job) => {
                decisions.take(job, on_decision);
                false
            }
            Err(RecvTimeoutError::Timeout) => {
                decisions.report_when_due();
                decisions.refresh_screen(false);
                false
            }
            Err(RecvTimeoutError::Disconnected) => true,
        };
        decisions.hear_the_door();
        if source_ended {
            break;
        }
    }
    capture.join().map_err(|_| KioskError::CaptureThread)?;
    decisions.finish(started.elapsed())
}

/// The decision side of the loop: jobs from the capture thread in, decisions, alarms, anchors and
/// screens out.
struct DecisionLoop<'a> {
    engine: &'a mut DoorEngine,
    outputs: &'a mut Outputs,
    tailgate: TailgateWatch,
    frame_ms: f64,
    in_flight: Arc<AtomicUsize>,
    counters: Arc<CaptureCounters>,
    started: Instant,
    status_every: Duration,
    /// Dropped windows already reported by a `windows_dropped` event.
    drops_reported: u64,
    stats: KioskStats,
    view: StatusView,
    screen: MemoryDisplay,
    last_shown: Instant,
    last_status: Instant,
    /// The sequence number of the last published audit anchor's own line.
    anchored: Option<u64>,
    /// The last window the network could not take, reported if no window was embedded at all.
    error: Option<KioskError>,
}

impl<'a> DecisionLoop<'a> {
    fn new(
        engine: &'a mut DoorEngine,
        outputs: &'a mut Outputs,
        frame_rate: f64,
        in_flight: Arc<AtomicUsize>,
        counters: Arc<CaptureCounters>,
        started: Instant,
    ) -> Self {
        let view = StatusView {
            door: engine.door.clone(),
            state: DoorState::Watching,
            distance: None,
            margin: None,
            silhouette: None,
            frames_per_second: 0.0,
            people_in_view: 0,
            alarms: Alarms::default(),
            indication: None,
        };
        DecisionLoop {
            tailgate: TailgateWatch::new(engine.policy().config(), frame_rate),
            frame_ms: 1000.0 / frame_rate.max(1e-3),
            engine,
            outputs,
            in_flight,
            counters,
            started,
            status_every: STATUS_EVERY,
            drops_reported: 0,
            stats: KioskStats::default(),
            view,
            screen: MemoryDisplay::new(crate::display::SCREEN_WIDTH, crate::display::SCREEN_HEIGHT),
            last_shown: Instant::now(),
            last_status: Instant::now(),
            anchored: None,
            error: None,
        }
    }

    fn take(&mut self, job: Job, on_decision: &mut dyn FnMut(&DecisionRecord)) {
        let mut alarm = None;
        let record = match job {
            Job::Window {
                window,
                people_in_view,
                completed_at,
            } => self.decide(&window, people_in_view, completed_at, &mut alarm),
            Job::TrackEnded { track, at } => self.engine.on_track_ended(track, at),
            Job::Preview {
                silhouette,
                people_in_view,
                frames_per_second,
            } => {
                self.view.silhouette = Some(silhouette);
                self.view.people_in_view = people_in_view;
                self.view.frames_per_second = frames_per_second;
                None
            }
            Job::SourceLost(detail) => {
                self.stats.source_errors += 1;
                self.publish(EventKind::CameraLost { detail });
                None
            }
            Job::SourceRestored => {
                self.publish(EventKind::CameraRestored);
                None
            }
            Job::PeopleInView { frame, people } => {
                log::debug!("frame {frame}: {people} in view");
                self.tailgate.people_in_view(frame, people);
                None
            }
            Job::Arrived { frame, track } => {
                log::debug!("frame {frame}: track {track} arrived");
                alarm = self.tailgate.arrived(frame, track);
                None
            }
        };
        let decided = record.is_some();
        if let Some(record) = record {
            self.announce(&record);
            on_decision(&record);
        }
        if let Some(alarm) = alarm {
            self.raise(alarm);
        }
        self.report_when_due();
        self.refresh_screen(decided);
    }

    /// The health report and the audit anchor, every `status_every`, busy or idle.
    fn report_when_due(&mut self) {
        if self.last_status.elapsed() >= self.status_every {
            self.report_status();
            self.outputs
                .anchor_audit_log(self.engine, &mut self.anchored);
            self.last_status = Instant::now();
        }
    }

    /// One window through the engine; a grant starts the tailgate watch.
    fn decide(
        &mut self,
        window: &Window,
        people_in_view: usize,
        completed_at: Instant,
        alarm: &mut Option<TailgateAlarm>,
    ) -> Option<DecisionRecord> {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.stats.windows_embedded += 1;
        let crowd = self
            .tailgate
            .most_in_view(window.first_frame, window.last_frame)
            .max(people_in_view);
        match self.engine.on_window(window, crowd, completed_at) {
            Ok(Some(record)) => {
                if matches!(record.decision.verdict, Verdict::Granted { .. }) {
                    log::debug!(
                        "track {} granted on frames {}..={}",
                        record.decision.track,
                        window.first_frame,
                        window.last_frame
                    );
                    *alarm = self
                        .tailgate
                        .granted(window.last_frame, record.decision.track);
                }
                Some(record)
            }
            Ok(None) => None,
            Err(e) => {
                // A window the network cannot take is lost; the kiosk goes on.
                log::error!("track {}: {e}", window.track);
                self.error = Some(e);
                None
            }
        }
    }

    fn publish(&mut self, kind: EventKind) {
        self.outputs.dispatcher.publish(&self.engine.event(kind));
    }

    /// Publishes what the door inputs and the panel reported, and shows it.
    fn hear_the_door(&mut self) {
        let Some(news) = &self.outputs.news else {
            return;
        };
        let heard: Vec<DoorNews> = news.try_iter().collect();
        for item in heard {
            match item {
                DoorNews::Event(kind) => {
                    self.view.alarms.apply(&kind);
                    self.publish(kind);
                }
                DoorNews::Indication(indication) => self.view.indication = Some(indication),
            }
        }
    }

    /// A decision to the sinks, the status view and, when asked, a PNG of the screen.
    fn announce(&mut self, record: &DecisionRecord) {
        self.stats.decisions += 1;
        self.stats.record_latency(record.latency);
        self.outputs.dispatcher.publish(&record.event);
        self.view.state = match &record.decision.verdict {
            Verdict::Granted { .. } => DoorState::Granted {
                name: record.name.clone().unwrap_or_default(),
            },
            Verdict::Denied { reason, .. } => DoorState::Denied { reason: *reason },
        };
        let figures = record.decision.figures.as_ref();
        self.view.distance = figures.map(|f| (f.distance, self.engine.policy().accept_distance()));
        self.view.margin = figures.and_then(|f| f.margin);
        if let Some(dir) = &self.outputs.screen_dir {
            let _ = draw_status(&self.view, &mut self.screen);
            let path = dir.join(format!(
                "decision-{}-track-{}.png",
                record.event.at_ms, record.decision.track
            ));
            if let Err(e) = self.screen.save_png(&path) {
                log::warn!("screen {}: {e}", path.display());
            }
        }
    }

    fn raise(&mut self, alarm: TailgateAlarm) {
        self.stats.tailgate_alarms += 1;
        let after_grant_ms = (alarm.frames_after_grant as f64 * self.frame_ms).round() as u64;
        log::warn!(
            "track {}: someone followed {after_grant_ms} ms after the grant",
            alarm.granted_track
        );
        self.outputs.dispatcher.publish(&Event {
            track: Some(alarm.granted_track),
            ..self
                .engine
                .event(EventKind::TailgateAlarm { after_grant_ms })
        });
    }

    /// The kiosk's health now: logged, handed to [`Outputs::on_status`], and windows dropped since
    /// the last report published as one event (a months-long run does not wait for its end).
    fn report_status(&mut self) {
        self.report_dropped_windows();
        let latencies = &self.stats.recent_latencies;
        let recent: Vec<Duration> = latencies
            .range(latencies.len().saturating_sub(100)..)
            .copied()
            .collect();
        let status = KioskStatus {
            uptime: self.started.elapsed(),
            frames: self.counters.frames.load(Ordering::Relaxed),
            frames_per_second: self.view.frames_per_second,
            windows_embedded: self.stats.windows_embedded,
            windows_dropped: self.counters.windows_dropped.load(Ordering::Relaxed),
            windows_in_flight: self.in_flight.load(Ordering::SeqCst),
            decisions: self.stats.decisions,
            recent_median_latency: median_latency(&recent),
            pending_events: self.outputs.dispatcher.pending(),
            sink_backlogs: self.outputs.dispatcher.backlogs(),
            events_dropped: self.outputs.dispatcher.dropped(),
            resident_kib: hstl::process_memory::resident_kib(),
        };
        log::info!(
            "{:.1} frames/s, {} windows embedded, {} dropped, {} decisions, {} tailgate alarms, median latency of the last {} decisions {:.0} ms, {} windows in flight, {} MiB resident",
            status.frames_per_second,
            status.windows_embedded,
            status.windows_dropped,
            status.decisions,
            self.stats.tailgate_alarms,
            recent.len(),
            status.recent_median_latency.as_secs_f64() * 1e3,
            status.windows_in_flight,
            status
                .resident_kib
                .map_or("?".to_string(), |k| (k / 1024).to_string())
        );
        if let Some(on_status) = self.outputs.on_status.as_mut() {
            on_status(&status);
        }
    }

    /// One `windows_dropped` event for the windows dropped since the last one.
    fn report_dropped_windows(&mut self) {
        let dropped = self.counters.windows_dropped.load(Ordering::Relaxed);
        if dropped > self.drops_reported {
            self.publish(EventKind::WindowsDropped {
                count: dropped - self.drops_reported,
            });
            self.drops_reported = dropped;
        }
    }

    /// Redraws the live screen at each decision and at least every [`SCREEN_REFRESH`]; a screen that
    /// fails is dropped and the kiosk goes on.
    fn refresh_screen(&mut self, decided: bool) {
        let Some(framebuffer) = self.outputs.framebuffer.as_mut() else {
            return;
        };
        if decided || self.last_shown.elapsed() >= SCREEN_REFRESH {
            let _ = draw_status(&self.view, &mut self.screen);
            if let Err(e) = framebuffer.show(&self.screen) {
                log::error!("{e}; the kiosk goes on without its screen");
                self.outputs.framebuffer = None;
            }
            self.last_shown = Instant::now();
        }
    }

    /// After the source: dropped windows reported, the audit log anchored, queued events offered once
    /// more.
    fn finish(mut self, elapsed: Duration) -> Result<KioskStats, KioskError> {
        self.stats.frames = self.counters.frames.load(Ordering::Relaxed);
        self.stats.windows_dropped = self.counters.windows_dropped.load(Ordering::Relaxed);
        self.stats.elapsed = elapsed;
        self.report_dropped_windows();
        self.outputs
            .anchor_audit_log(self.engine, &mut self.anchored);
        self.outputs.dispatcher.retry();
        match self.error {
            Some(e) if self.stats.windows_embedded == 0 => Err(e),
            _ => Ok(self.stats),
        }
    }
}

/// The capture thread's counts, read by the decision thread while both run.
#[derive(Default)]
struct CaptureCounters {
    frames: AtomicU64,
    windows_dropped: AtomicU64,
}

/// The capture side of the loop: frames through the silhouette stage, windows and track ends to the
/// decision thread.
struct Capture {
    live: bool,
    max_windows_in_flight: usize,
    in_flight: Arc<AtomicUsize>,
    jobs: mpsc::Sender<Job>,
    pipeline: SilhouettePipeline,
    counters: Arc<CaptureCounters>,
}

impl Capture {
    fn run(mut self, source: &mut dyn FrameSource, stop: &AtomicBool) {
        let mut lost = false;
        let mut crowd = SteadyCount::default();
        let mut arrivals = SteadyArrivals::default();
        let mut active: BTreeSet<TrackId> = BTreeSet::new();
        let started = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            let frame = match source.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    if !lost {
                        log::error!("{}: {e}", source.describe());
                        self.send(Job::SourceLost(e.to_string()));
                        lost = true;
                    }
                    if self.live {
                        continue;
                    }
                    break;
                }
            };
            if lost {
                lost = false;
                self.send(Job::SourceRestored);
            }
            let frames = self.counters.frames.fetch_add(1, Ordering::Relaxed) + 1;
            let report = self.pipeline.process(&frame);
            let people_in_view = report.tracks.len() + report.occluded.len();
            if let Some((people, since)) = crowd.observe(frame.index, people_in_view) {
                self.send(Job::PeopleInView {
                    frame: since,
                    people,
                });
            }
            let in_view = report.tracks.iter().map(|t| t.track);
            for (track, first) in
                arrivals.observe(frame.index, in_view.chain(report.occluded.iter().copied()))
            {
                self.send(Job::Arrived {
                    frame: first,
                    track,
                });
            }
            active.extend(report.tracks.iter().map(|t| t.track));
            for window in report.windows {
                self.send_window(window, people_in_view);
            }
            for track in report.ended {
                active.remove(&track);
                arrivals.ended(track);
                self.send(Job::TrackEnded {
                    track,
                    at: Instant::now(),
                });
            }
            if frame.index % PREVIEW_EVERY_FRAMES == 0 {
                let preview = report
                    .tracks
                    .iter()
                    .find_map(|t| t.silhouette.as_ref().ok());
                if let Some(silhouette) = preview {
                    self.send(Job::Preview {
                        silhouette: silhouette.clone(),
                        people_in_view,
                        frames_per_second: frames as f32
                            / started.elapsed().as_secs_f32().max(1e-3),
                    });
                }
            }
        }
        for window in self.pipeline.finish() {
            self.send_window(window, 0);
        }
        for track in active {
            self.send(Job::TrackEnded {
                track,
                at: Instant::now(),
            });
        }
    }

    fn send(&self, job: Job) {
        // The decision thread only stops when this one has: a send cannot fail while it matters.
        let _ = self.jobs.send(job);
    }

    /// A window to the network, waiting while too many are in flight; a live camera drops it instead.
    fn send_window(&mut self, window: Window, people_in_view: usize) {
        while self.in_flight.load(Ordering::SeqCst) >= self.max_windows_in_flight {
            if self.live {
                self.counters
                    .windows_dropped
                    .fetch_add(1, Ordering::Relaxed);
                log::warn!("inference behind: window of track {} dropped", window.track);
                return;
            }
            std::thread::sleep(BACKPRESSURE_POLL);
        }
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.send(Job::Window {
            window,
            people_in_view,
            completed_at: Instant::now(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_run_keeps_a_bounded_number_of_latencies_and_the_slowest() {
        let mut stats = KioskStats::default();
        stats.record_latency(Duration::from_secs(9));
        for ms in 0..(3 * LATENCIES_KEPT as u64) {
            stats.record_latency(Duration::from_millis(ms % 200));
        }
        assert_eq!(stats.recent_latencies.len(), LATENCIES_KEPT);
        assert_eq!(stats.slowest, Duration::from_secs(9));
        let median = stats.median_latency();
        assert!(
            (Duration::from_millis(90)..=Duration::from_millis(110)).contains(&median),
            "{median:?}"
        );
    }
}
