//! The capture thread: frames through the silhouette stage; windows, track ends, previews and the
//! camera's state to the decision thread.

use super::*;

/// How long a recorded source sleeps while inference catches up.
const BACKPRESSURE_POLL: Duration = Duration::from_millis(2);
/// A preview silhouette goes to the screen every this many frames.
const PREVIEW_EVERY_FRAMES: u64 = 5;

/// The capture thread's counts, read by the decision thread while both run.
#[derive(Default)]
pub(super) struct CaptureCounters {
    pub(super) frames: AtomicU64,
    pub(super) windows_dropped: AtomicU64,
}

/// The capture side of the loop: frames through the silhouette stage, windows and track ends to the
/// decision thread.
pub(super) struct Capture {
    pub(super) live: bool,
    pub(super) max_windows_in_flight: usize,
    pub(super) in_flight: Arc<AtomicUsize>,
    pub(super) jobs: mpsc::Sender<Job>,
    pub(super) pipeline: SilhouettePipeline,
    pub(super) counters: Arc<CaptureCounters>,
}

impl Capture {
    pub(super) fn run(mut self, source: &mut dyn FrameSource, stop: &AtomicBool) {
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
