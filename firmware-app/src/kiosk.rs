//! The kiosk loop (`ARCHITECTURE.md`, "Threads and queues"): capture and silhouettes on one thread, embedding,
//! matching, decisions and sinks on another.
//!
//! The two are joined by a channel on which at most `max_windows_in_flight` windows wait. A live camera
//! never waits for inference: when the limit is reached a whole window is dropped and counted. Recorded
//! sources (files, the synthetic scene) wait instead, so that a replay is deterministic. Track ends and
//! camera state travel on the same channel, behind the windows they follow, and are never dropped.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hstl::{Embedder, Silhouettes};
use image::GrayImage;

use crate::display::{draw_status, DoorState, MemoryDisplay, StatusView};
use crate::framebuffer::Framebuffer;
use access::audit::ChainHead;
use access::decision::{Decision, DecisionPolicy, TailgateWatch, Verdict, WindowOutcome};
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

#[derive(Debug, thiserror::Error)]
pub enum KioskError {
    #[error("embedding a window: {0}")]
    Embed(#[from] hstl::HstlError),
    #[error(transparent)]
    Match(#[from] MatchError),
    #[error(transparent)]
    Model(#[from] hstl::operating_point::OperatingPointError),
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
    pub door: String,
    pub model_id: String,
    embedder: Box<dyn Embedder>,
    index: MatchIndex,
    policy: DecisionPolicy,
    decided: std::collections::HashSet<TrackId>,
    window_frames: usize,
    /// The gallery the index was built from, watched for changes made by other processes.
    watched: Option<Gallery>,
    /// The last reload failed: nobody is matched until one succeeds.
    reload_pending: bool,
}

/// A decision with its event and how long it took.
#[derive(Debug, Clone)]
pub struct DecisionRecord {
    pub decision: Decision,
    pub event: Event,
    /// The gallery name, for the screen only (events carry the pseudonym).
    pub name: Option<String>,
    /// From the capture of the window's last frame (or the track's end) to the event.
    pub latency: Duration,
}

impl DoorEngine {
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
            decided: Default::default(),
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
        if !gallery.changed_elsewhere().map_err(MatchError::from)? && !self.reload_pending {
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

    pub fn index(&self) -> &MatchIndex {
        &self.index
    }

    pub fn policy(&self) -> &DecisionPolicy {
        &self.policy
    }

    pub fn on_window(
        &mut self,
        window: &Window,
        people_in_view: usize,
        completed_at: Instant,
    ) -> Result<Option<DecisionRecord>, KioskError> {
        self.follow_gallery()?;
        if self.decided.contains(&window.track) {
            return Ok(None);
        }
        let observed = window.silhouettes.len() + window.rejections.values().sum::<usize>();
        if window.quality != WindowQuality::Good && observed < self.window_frames {
            // A track shorter than one window (a fragment, someone glimpsed at the edge) is not a
            // walk-up: no decision, rather than a "poor quality" denial nobody caused.
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
        };
        let decision = self.policy.observe(window.track, &outcome, people_in_view);
        Ok(decision.map(|d| self.record(d, completed_at)))
    }

    pub fn on_track_ended(&mut self, track: TrackId, ended_at: Instant) -> Option<DecisionRecord> {
        if let Err(e) = self.follow_gallery() {
            log::error!("{e}; nobody is recognised until the gallery reloads");
        }
        let record = self
            .policy
            .track_ended(track)
            .map(|d| self.record(d, ended_at));
        // Track ids are reused when the silhouette stage restarts (a new recording).
        self.decided.remove(&track);
        record
    }

    fn record(&mut self, decision: Decision, since: Instant) -> DecisionRecord {
        self.decided.insert(decision.track);
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
    SourceLost(String),
    SourceRestored,
}

/// Where decisions and the screen go.
pub struct Outputs {
    pub dispatcher: EventDispatcher,
    /// Status screens are written here as PNG, one per decision, when set.
    pub screen_dir: Option<std::path::PathBuf>,
    /// The live status screen, redrawn at most every [`SCREEN_REFRESH`].
    pub framebuffer: Option<Framebuffer>,
    /// The audit log's chain head, published as an anchor every [`STATUS_EVERY`] and at the end.
    pub audit_head: Option<Arc<Mutex<Option<ChainHead>>>>,
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

pub const SCREEN_REFRESH: Duration = Duration::from_millis(200);

/// How often a running kiosk logs its throughput, drops and latency.
pub const STATUS_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Default)]
pub struct KioskStats {
    pub frames: u64,
    pub windows_embedded: u64,
    pub windows_dropped: u64,
    pub decisions: u64,
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
    pub source_errors: u64,
    pub tailgate_alarms: u64,
}

impl KioskStats {
    pub fn frames_per_second(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The median of the decision latencies (zero before the first decision).
    pub fn median_latency(&self) -> Duration {
        median_latency(&self.latencies)
    }
}

/// The median of decision latencies, the figure the kiosk and the demo report (zero for none).
pub fn median_latency(latencies: &[Duration]) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

/// Runs the loop until the source ends or `stop` is set. `on_decision` sees every decision after the
/// sinks have.
#[allow(clippy::too_many_arguments)]
pub fn run(
    mut source: Box<dyn FrameSource>,
    live: bool,
    silhouette_config: SilhouetteConfig,
    max_windows_in_flight: usize,
    engine: &mut DoorEngine,
    outputs: &mut Outputs,
    stop: Arc<AtomicBool>,
    on_decision: &mut dyn FnMut(&DecisionRecord),
) -> Result<KioskStats, KioskError> {
    let started = Instant::now();
    engine.window_frames = silhouette_config.windows.frames;
    let mut tailgate = TailgateWatch::new(engine.policy().config(), source.frame_rate());
    let frame_ms = 1000.0 / source.frame_rate().max(1e-3);
    let (sender, receiver) = mpsc::channel::<Job>();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let capture_in_flight = in_flight.clone();
    let capture_stop = stop.clone();
    let capture = std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || {
            capture_loop(
                source.as_mut(),
                live,
                silhouette_config,
                max_windows_in_flight.max(1),
                &capture_in_flight,
                &capture_stop,
                &sender,
            )
        })
        .map_err(|_| KioskError::CaptureThread)?;

    let mut stats = KioskStats::default();
    let mut view = StatusView {
        door: engine.door.clone(),
        state: DoorState::Watching,
        distance: None,
        margin: None,
        silhouette: None,
        frames_per_second: 0.0,
        people_in_view: 0,
    };
    let mut screen =
        MemoryDisplay::new(crate::display::SCREEN_WIDTH, crate::display::SCREEN_HEIGHT);
    let mut result = Ok(());
    let mut last_shown = Instant::now();
    let mut pending_alarm = None;
    let mut last_status = Instant::now();
    let mut anchored = None;
    for job in receiver {
        let record = match job {
            Job::Window {
                window,
                people_in_view,
                completed_at,
            } => {
                in_flight.fetch_sub(1, Ordering::SeqCst);
                stats.windows_embedded += 1;
                let crowd = tailgate
                    .most_in_view(window.first_frame, window.last_frame)
                    .max(people_in_view);
                match engine.on_window(&window, crowd, completed_at) {
                    Ok(Some(record)) => {
                        if matches!(record.decision.verdict, Verdict::Granted { .. }) {
                            log::debug!(
                                "track {} granted on frames {}..={}",
                                record.decision.track,
                                window.first_frame,
                                window.last_frame
                            );
                            pending_alarm =
                                tailgate.granted(window.last_frame, record.decision.track);
                        }
                        Some(record)
                    }
                    Ok(None) => None,
                    Err(e) => {
                        // A window the network cannot take is lost; the kiosk goes on.
                        log::error!("track {}: {e}", window.track);
                        result = Err(e);
                        None
                    }
                }
            }
            Job::TrackEnded { track, at } => engine.on_track_ended(track, at),
            Job::Preview {
                silhouette,
                people_in_view,
                frames_per_second,
            } => {
                view.silhouette = Some(silhouette);
                view.people_in_view = people_in_view;
                view.frames_per_second = frames_per_second;
                None
            }
            Job::SourceLost(detail) => {
                stats.source_errors += 1;
                outputs
                    .dispatcher
                    .publish(&engine.event(EventKind::CameraLost { detail }));
                None
            }
            Job::SourceRestored => {
                outputs
                    .dispatcher
                    .publish(&engine.event(EventKind::CameraRestored));
                None
            }
            Job::PeopleInView { frame, people } => {
                log::debug!("frame {frame}: {people} in view");
                pending_alarm = tailgate.people_in_view(frame, people);
                None
            }
        };
        let decided = record.is_some();
        if let Some(record) = record {
            stats.decisions += 1;
            stats.latencies.push(record.latency);
            outputs.dispatcher.publish(&record.event);
            view.state = match &record.decision.verdict {
                Verdict::Granted { .. } => DoorState::Granted {
                    name: record.name.clone().unwrap_or_default(),
                },
                Verdict::Denied { reason, .. } => DoorState::Denied { reason: *reason },
            };
            view.distance = record
                .decision
                .figures
                .as_ref()
                .map(|f| (f.distance, engine.policy().accept_distance()));
            view.margin = record.decision.figures.as_ref().and_then(|f| f.margin);
            if let Some(dir) = &outputs.screen_dir {
                let _ = draw_status(&view, &mut screen);
                let path = dir.join(format!(
                    "decision-{}-track-{}.png",
                    record.event.at_ms, record.decision.track
                ));
                if let Err(e) = screen.save_png(&path) {
                    log::warn!("screen {}: {e}", path.display());
                }
            }
            on_decision(&record);
        }
        if let Some(alarm) = pending_alarm.take() {
            stats.tailgate_alarms += 1;
            let after_grant_ms = (alarm.frames_after_grant as f64 * frame_ms).round() as u64;
            log::warn!(
                "track {}: someone followed {after_grant_ms} ms after the grant",
                alarm.granted_track
            );
            outputs.dispatcher.publish(&Event {
                track: Some(alarm.granted_track),
                ..engine.event(EventKind::TailgateAlarm { after_grant_ms })
            });
        }
        if last_status.elapsed() >= STATUS_EVERY {
            let recent = &stats.latencies[stats.latencies.len().saturating_sub(100)..];
            let mut sorted = recent.to_vec();
            sorted.sort();
            log::info!(
                "{:.1} frames/s, {} windows embedded, {} decisions, {} tailgate alarms, median latency of the last {} decisions {:.0} ms, {} windows in flight",
                view.frames_per_second,
                stats.windows_embedded,
                stats.decisions,
                stats.tailgate_alarms,
                sorted.len(),
                sorted.get(sorted.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e3),
                in_flight.load(Ordering::SeqCst)
            );
            outputs.anchor_audit_log(engine, &mut anchored);
            last_status = Instant::now();
        }
        if let Some(framebuffer) = outputs.framebuffer.as_mut() {
            if decided || last_shown.elapsed() >= SCREEN_REFRESH {
                let _ = draw_status(&view, &mut screen);
                if let Err(e) = framebuffer.show(&screen) {
                    log::error!("{e}; the kiosk goes on without its screen");
                    outputs.framebuffer = None;
                }
                last_shown = Instant::now();
            }
        }
    }
    let frames = capture.join().map_err(|_| KioskError::CaptureThread)?;
    stats.frames = frames.frames;
    stats.windows_dropped = frames.windows_dropped;
    stats.elapsed = started.elapsed();
    if stats.windows_dropped > 0 {
        outputs
            .dispatcher
            .publish(&engine.event(EventKind::WindowsDropped {
                count: stats.windows_dropped,
            }));
    }
    outputs.anchor_audit_log(engine, &mut anchored);
    outputs.dispatcher.retry();
    match result {
        Err(e) if stats.windows_embedded == 0 => Err(e),
        _ => Ok(stats),
    }
}

/// A count of people must hold this many frames before it is reported: a blob that splits for a
/// frame or two is not a second person.
const STEADY_FRAMES: u64 = 6;

/// The number of people in view, reported when it changes and holds.
#[derive(Default)]
struct SteadyCount {
    reported: usize,
    candidate: Option<(usize, u64)>,
}

impl SteadyCount {
    /// Returns (count, first frame with it) once a new count has held for [`STEADY_FRAMES`].
    fn observe(&mut self, frame: u64, people: usize) -> Option<(usize, u64)> {
        if people == self.reported {
            self.candidate = None;
            return None;
        }
        let (count, since) = match self.candidate {
            Some((count, since)) if count == people => (count, since),
            _ => {
                self.candidate = Some((people, frame));
                (people, frame)
            }
        };
        if frame + 1 - since >= STEADY_FRAMES {
            self.reported = count;
            self.candidate = None;
            return Some((count, since));
        }
        None
    }
}

struct CaptureStats {
    frames: u64,
    windows_dropped: u64,
}

fn capture_loop(
    source: &mut dyn FrameSource,
    live: bool,
    config: SilhouetteConfig,
    max_windows_in_flight: usize,
    in_flight: &AtomicUsize,
    stop: &AtomicBool,
    jobs: &mpsc::Sender<Job>,
) -> CaptureStats {
    let mut pipeline = SilhouettePipeline::new(config);
    let mut stats = CaptureStats {
        frames: 0,
        windows_dropped: 0,
    };
    let mut lost = false;
    let mut crowd = SteadyCount::default();
    let mut active: std::collections::BTreeSet<TrackId> = Default::default();
    let started = Instant::now();
    let send_window = |window: Window, people_in_view: usize, stats: &mut CaptureStats| {
        while in_flight.load(Ordering::SeqCst) >= max_windows_in_flight {
            if live {
                stats.windows_dropped += 1;
                log::warn!("inference behind: window of track {} dropped", window.track);
                return;
            }
            std::thread::sleep(BACKPRESSURE_POLL);
        }
        in_flight.fetch_add(1, Ordering::SeqCst);
        let _ = jobs.send(Job::Window {
            window,
            people_in_view,
            completed_at: Instant::now(),
        });
    };
    while !stop.load(Ordering::SeqCst) {
        let frame = match source.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                if !lost {
                    log::error!("{}: {e}", source.describe());
                    let _ = jobs.send(Job::SourceLost(e.to_string()));
                    lost = true;
                }
                if live {
                    continue;
                }
                break;
            }
        };
        if lost {
            lost = false;
            let _ = jobs.send(Job::SourceRestored);
        }
        stats.frames += 1;
        let report = pipeline.process(&frame);
        let people_in_view = report.tracks.len() + report.occluded.len();
        if let Some((people, since)) = crowd.observe(frame.index, people_in_view) {
            let _ = jobs.send(Job::PeopleInView {
                frame: since,
                people,
            });
        }
        for track in &report.tracks {
            active.insert(track.track);
        }
        for window in report.windows {
            send_window(window, people_in_view, &mut stats);
        }
        for track in report.ended {
            active.remove(&track);
            let _ = jobs.send(Job::TrackEnded {
                track,
                at: Instant::now(),
            });
        }
        if frame.index % PREVIEW_EVERY_FRAMES == 0 {
            if let Some(silhouette) = report
                .tracks
                .iter()
                .find_map(|t| t.silhouette.as_ref().ok())
            {
                let _ = jobs.send(Job::Preview {
                    silhouette: silhouette.clone(),
                    people_in_view,
                    frames_per_second: stats.frames as f32
                        / started.elapsed().as_secs_f32().max(1e-3),
                });
            }
        }
    }
    for window in pipeline.finish() {
        send_window(window, 0, &mut stats);
    }
    for track in active {
        let _ = jobs.send(Job::TrackEnded {
            track,
            at: Instant::now(),
        });
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::SteadyCount;

    #[test]
    fn a_count_is_reported_once_it_holds() {
        let mut count = SteadyCount::default();
        assert_eq!(count.observe(10, 1), None);
        assert_eq!(count.observe(11, 2), None, "a blob split for one frame");
        for frame in 12..17 {
            assert_eq!(count.observe(frame, 1), None);
        }
        assert_eq!(count.observe(17, 1), Some((1, 12)));
        for frame in 18..23 {
            assert_eq!(count.observe(frame, 2), None);
        }
        assert_eq!(count.observe(23, 2), Some((2, 18)));
        assert_eq!(count.observe(24, 2), None, "reported once");
    }
}
