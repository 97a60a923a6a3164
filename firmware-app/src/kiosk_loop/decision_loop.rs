//! The decision thread: jobs from the capture thread in; decisions, alarms, anchors and screens out.

use super::*;

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

/// The decision side of the loop: jobs from the capture thread in, decisions, alarms, anchors and
/// screens out.
pub(super) struct DecisionLoop<'a> {
    engine: &'a mut DoorEngine,
    outputs: &'a mut Outputs,
    tailgate: TailgateWatch,
    frame_ms: f64,
    in_flight: Arc<AtomicUsize>,
    counters: Arc<CaptureCounters>,
    started: Instant,
    pub(super) status_every: Duration,
    /// Dropped windows already reported by a `windows_dropped` event.
    drops_reported: u64,
    stats: KioskStats,
    view: StatusView,
    screen: RgbCanvas,
    last_shown: Instant,
    last_status: Instant,
    /// The sequence number of the last published audit anchor's own line.
    anchored: Option<u64>,
    /// The last window the network could not take, reported if no window was embedded at all.
    error: Option<KioskError>,
}

impl<'a> DecisionLoop<'a> {
    pub(super) fn new(
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
            screen: RgbCanvas::new(
                crate::display::SCREEN_WIDTH,
                crate::display::SCREEN_HEIGHT,
                Rgb888::BLACK,
            ),
            last_shown: Instant::now(),
            last_status: Instant::now(),
            anchored: None,
            error: None,
        }
    }

    pub(super) fn take(&mut self, job: Job, on_decision: &mut dyn FnMut(&DecisionRecord)) {
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
    pub(super) fn report_when_due(&mut self) {
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
                let record = self.record_before_granting(record);
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

    /// A grant goes to the audit log before anything acts on it; one the log cannot record becomes
    /// a denial (fail secure), published like any other decision.
    fn record_before_granting(&mut self, mut record: DecisionRecord) -> DecisionRecord {
        let Verdict::Granted { identity } = record.decision.verdict else {
            return record;
        };
        if self.outputs.dispatcher.publish_recorded(&record.event) {
            record.published = true;
            return record;
        }
        log::error!(
            "track {}: granted, but the audit log cannot record it: denied",
            record.decision.track
        );
        self.view.alarms.audit_failing = true;
        let reason = DenialReason::AuditUnavailable;
        record.decision.verdict = Verdict::Denied {
            reason,
            identity: Some(identity),
        };
        record.event.kind = EventKind::Denied { reason };
        record.event.credential = None;
        record
    }

    fn publish(&mut self, kind: EventKind) {
        self.outputs.dispatcher.publish(&self.engine.event(kind));
    }

    /// Publishes what the door inputs and the panel reported, and shows it.
    pub(super) fn hear_the_door(&mut self) {
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
                DoorNews::Quarantine { newly, total } => {
                    self.view.alarms.quarantined = total;
                    for person in newly {
                        log::error!(
                            "site person {} is not recognised at this door: {}",
                            person.pseudonym,
                            person.reason
                        );
                        let event = Event {
                            person: Some(person.pseudonym),
                            ..self.engine.event(EventKind::TemplateQuarantined {
                                revision: person.revision,
                                reason: person.reason,
                            })
                        };
                        self.outputs.dispatcher.publish(&event);
                    }
                }
            }
        }
    }

    /// A decision to the sinks, the status view and, when asked, a PNG of the screen.
    fn announce(&mut self, record: &DecisionRecord) {
        self.stats.decisions += 1;
        self.stats.record_latency(record.latency);
        if !record.published {
            self.outputs.dispatcher.publish(&record.event);
        }
        self.view.alarms.audit_failing = self.outputs.dispatcher.record_owes() > 0;
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
            quarantined_people: self.view.alarms.quarantined,
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
    pub(super) fn refresh_screen(&mut self, decided: bool) {
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
    pub(super) fn finish(mut self, elapsed: Duration) -> Result<KioskStats, KioskError> {
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
