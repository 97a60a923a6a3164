//! The soak: the kiosk on an endless synthetic site, paced like a live camera, for as long as asked.
//! Enrolled people and strangers walk up one after another with empty room between them; every
//! minute the kiosk's health ([`KioskStatus`]) is kept as one row, and every decision is judged
//! against the walk-up it was made on.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use access::decision::Verdict;
use access::vocabulary::DenialReason;
use firmware_app::kiosk_loop::{DecisionRecord, KioskStats, KioskStatus};
use firmware_app::mqtt::MqttConfig;
use firmware_app::Kiosk;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use silhouette::frame::Frame;
use silhouette::source::{FrameSource, SourceError};
use synthetic_scene::{SyntheticScene, WalkerIdentity};

use crate::{enrol_site, scene, walk, DemoConfig, DemoError, EnrolledSite, FRAME_RATE};

/// Empty room before each walk-up: long enough for the last one's decision to be made first.
const GAP_S: f32 = 4.0;
/// The room's texture and sensor noise, the same for every walk-up: one camera, one door.
const ROOM_SEED: u64 = 0x5_0A4;

#[derive(Debug, Clone)]
pub struct SoakConfig {
    pub demo: DemoConfig,
    /// How long the site runs (wall clock: frames are paced at the camera's rate).
    pub duration: Duration,
    /// Share of walk-ups made by strangers.
    pub stranger_share: f64,
    /// Events also go to this broker, through the kiosk's MQTT queue.
    pub mqtt: Option<MqttConfig>,
}

/// Who walked up.
#[derive(Debug, Clone, PartialEq)]
pub enum Visitor {
    Enrolled(String),
    Stranger,
}

/// How a walk-up ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// An enrolled person granted as themselves, or a stranger denied as unknown.
    Right,
    /// Anyone granted as someone they are not.
    WrongGrant,
    /// An enrolled person denied as unknown.
    Rejected,
    /// Denied for another reason (quality, consensus, ambiguity).
    DeniedOther,
    /// Nothing decided.
    Undecided,
}

#[derive(Debug, Clone)]
pub struct SoakReport {
    pub samples: Vec<KioskStatus>,
    pub stats: KioskStats,
    /// Walk-ups by visitor kind (enrolled, stranger) and outcome.
    pub outcomes: BTreeMap<(bool, Outcome), usize>,
    pub decisions: u64,
    pub accept_distance: f32,
    /// Events each sink still owed when the kiosk stopped.
    pub owed: Vec<(String, usize)>,
    pub site: EnrolledSite,
}

/// The walk-ups of the soak so far: who, and the first decision made while they were at the door.
#[derive(Default)]
struct Ledger {
    visits: Vec<(Visitor, Option<DecisionRecord>)>,
}

/// Walk-up after walk-up, paced at the camera's frame rate, until `until`.
struct EndlessSite {
    people: Vec<(String, WalkerIdentity)>,
    stranger_share: f64,
    rng: ChaCha8Rng,
    current: Option<SyntheticScene>,
    ledger: Arc<Mutex<Ledger>>,
    started: Instant,
    until: Instant,
    delivered: u64,
}

impl EndlessSite {
    fn next_visit(&mut self) -> SyntheticScene {
        let (visitor, identity) = if self.rng.random_bool(self.stranger_share) {
            (Visitor::Stranger, WalkerIdentity::random(&mut self.rng))
        } else {
            let (name, identity) = &self.people[self.rng.random_range(0..self.people.len())];
            (Visitor::Enrolled(name.clone()), identity.clone())
        };
        let walk = walk(&identity, &mut self.rng, GAP_S);
        self.ledger
            .lock()
            .expect("the ledger's users do not panic")
            .visits
            .push((visitor, None));
        scene(ROOM_SEED, vec![walk])
    }
}

impl FrameSource for EndlessSite {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let due = self.started + Duration::from_secs_f64(self.delivered as f64 / FRAME_RATE);
        if due >= self.until {
            return Ok(None);
        }
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        loop {
            let scene = match &mut self.current {
                Some(scene) => scene,
                None => {
                    let next = self.next_visit();
                    self.current.insert(next)
                }
            };
            if let Some(mut frame) = scene.next_frame()? {
                frame.index = self.delivered;
                frame.timestamp = Duration::from_secs_f64(self.delivered as f64 / FRAME_RATE);
                self.delivered += 1;
                return Ok(Some(frame));
            }
            self.current = None;
        }
    }

    fn frame_rate(&self) -> f64 {
        FRAME_RATE
    }

    fn describe(&self) -> String {
        format!(
            "endless synthetic site: {} enrolled people and strangers ({:.0} %), paced at {FRAME_RATE} frames/s",
            self.people.len(),
            100.0 * self.stranger_share
        )
    }
}

/// What the first decision on a walk-up by `visitor` means.
pub fn judge(visitor: &Visitor, decision: Option<&DecisionRecord>) -> Outcome {
    let Some(record) = decision else {
        return Outcome::Undecided;
    };
    match (&record.decision.verdict, visitor) {
        (Verdict::Granted { .. }, Visitor::Enrolled(name))
            if record.name.as_deref() == Some(name.as_str()) =>
        {
            Outcome::Right
        }
        (Verdict::Granted { .. }, _) => Outcome::WrongGrant,
        (
            Verdict::Denied {
                reason: DenialReason::Unknown,
                ..
            },
            Visitor::Stranger,
        ) => Outcome::Right,
        (
            Verdict::Denied {
                reason: DenialReason::Unknown,
                ..
            },
            Visitor::Enrolled(_),
        ) => Outcome::Rejected,
        (Verdict::Denied { .. }, _) => Outcome::DeniedOther,
    }
}

/// Enrols the site, then runs its kiosk live on the endless site for `config.duration`, keeping the
/// kiosk's health every minute.
pub fn run_soak(config: &SoakConfig) -> Result<SoakReport, DemoError> {
    let mut site = enrol_site(&config.demo)?;
    site.door.mqtt = config.mqtt.clone();
    // One screen per decision for an hour is commissioning clutter, not health.
    site.door.display.screen_dir = None;
    let mut kiosk = Kiosk::open(&site.door)?;
    let samples = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&samples);
    kiosk.watch_status(Box::new(move |status: &KioskStatus| {
        kept.lock()
            .expect("the sample list's users do not panic")
            .push(status.clone());
    }));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let started = Instant::now();
    let source = EndlessSite {
        people: site.people.clone(),
        stranger_share: config.stranger_share,
        rng: ChaCha8Rng::seed_from_u64(site.rng.random()),
        current: None,
        ledger: Arc::clone(&ledger),
        started,
        until: started + config.duration,
        delivered: 0,
    };
    let mut decisions = 0u64;
    let stats = kiosk.run(
        Box::new(source),
        true,
        Arc::new(AtomicBool::new(false)),
        &mut |record| {
            decisions += 1;
            let mut ledger = ledger.lock().expect("the ledger's users do not panic");
            if let Some((_, first @ None)) = ledger.visits.last_mut() {
                *first = Some(record.clone());
            }
        },
    )?;
    let accept_distance = kiosk.accept_distance();
    let owed = kiosk.stop();
    let mut outcomes = BTreeMap::new();
    for (visitor, decision) in &ledger
        .lock()
        .expect("the ledger's users do not panic")
        .visits
    {
        let enrolled = matches!(visitor, Visitor::Enrolled(_));
        *outcomes
            .entry((enrolled, judge(visitor, decision.as_ref())))
            .or_insert(0) += 1;
    }
    let samples = samples
        .lock()
        .expect("the sample list's users do not panic")
        .clone();
    Ok(SoakReport {
        samples,
        stats,
        outcomes,
        decisions,
        accept_distance,
        owed,
        site,
    })
}

/// The samples as CSV, one row a minute: what the soak's PNG is drawn from.
pub fn samples_csv(samples: &[KioskStatus]) -> String {
    let mut csv = String::from(
        "uptime_s,frames,frames_per_second,windows_embedded,windows_dropped,windows_in_flight,decisions,recent_median_latency_ms,pending_events,sink_backlog,events_dropped,resident_kib\n",
    );
    for s in samples {
        let pending: usize = s.pending_events.iter().map(|(_, n)| n).sum();
        let backlog: usize = s.sink_backlogs.iter().map(|(_, n)| n).sum();
        csv.push_str(&format!(
            "{:.0},{},{:.2},{},{},{},{},{:.1},{pending},{backlog},{},{}\n",
            s.uptime.as_secs_f64(),
            s.frames,
            s.frames_per_second,
            s.windows_embedded,
            s.windows_dropped,
            s.windows_in_flight,
            s.decisions,
            s.recent_median_latency.as_secs_f64() * 1e3,
            s.events_dropped,
            s.resident_kib.map_or(String::new(), |kib| kib.to_string()),
        ));
    }
    csv
}
