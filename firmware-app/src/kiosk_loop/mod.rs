//! The kiosk loop (`ARCHITECTURE.md`, "Threads and queues"): capture and silhouettes on one thread, embedding,
//! matching, decisions and sinks on another.
//!
//! The two are joined by a channel on which at most `max_windows_in_flight` windows wait. A live camera
//! never waits for inference: when the limit is reached a whole window is dropped and counted. Recorded
//! sources (files, the synthetic scene) wait instead, so that a replay is deterministic. Track ends and
//! camera state travel on the same channel, behind the windows they follow, and are never dropped.
//!
//! - `engine`: a window's new frames streamed into its track's walk, the walk so far searched and
//!   voted on; a track's end decided.
//! - `capture`: frames through the silhouette stage into windows and track ends (the capture thread).
//! - `decision_loop`: the decision thread: jobs in; decisions, alarms, anchors and screens out.
//! - `status`: the kiosk's health, logged and observed.

mod capture;
mod decision_loop;
mod engine;
mod status;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use door_io::indication::Indication;
use hstl::streaming::StreamingEmbedder;
use image::GrayImage;

use crate::display::{draw_status, Alarms, DoorState, StatusView};
use crate::framebuffer::Framebuffer;
use access::decision::{
    Decision, DecisionPolicy, SteadyArrivals, SteadyCount, TailgateAlarm, TailgateWatch, Verdict,
    WindowOutcome,
};
use access::events::{Event, EventDispatcher, EventKind};
use access::gallery::{Gallery, Quarantined};
use access::matcher::{MatchError, MatchIndex};
use access::vocabulary::ChainHead;
use access::vocabulary::DenialReason;
use embedded_graphics::pixelcolor::{Rgb888, RgbColor};
use rgb_canvas::RgbCanvas;
use silhouette::source::FrameSource;
use silhouette::tracking::TrackId;
use silhouette::windows::{Window, WindowQuality};
use silhouette::{SilhouetteConfig, SilhouettePipeline};
use walk_embedding::WalkSoFar;

use capture::{Capture, CaptureCounters};
use decision_loop::DecisionLoop;
pub use decision_loop::{Outputs, SCREEN_REFRESH};
pub use engine::{DecisionRecord, DoorEngine};
pub use status::{
    median_latency, KioskStats, KioskStatus, StatusObserver, LATENCIES_KEPT, STATUS_EVERY,
};

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
    /// The capture thread could not be started.
    #[error(transparent)]
    Thread(#[from] crate::threads::SpawnError),
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
    /// The site's people this door cannot recognise: those newly quarantined (each reported once,
    /// as an event naming them) and how many are quarantined in all.
    Quarantine {
        /// Quarantined since the last report.
        newly: Vec<Quarantined>,
        /// Quarantined now, in all.
        total: usize,
    },
}

/// How often the decision loop hears the door's news while no window arrives.
pub const NEWS_POLL: Duration = Duration::from_millis(20);

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
    let capture = crate::threads::spawn("capture", move || capture.run(source.as_mut(), &stop))?;

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
