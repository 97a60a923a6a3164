//! What the kiosk reports, and where it goes.
//!
//! Events name people by their gallery pseudonym only, so that the audit trail still reads after a
//! person is erased and never holds a name. Each sink fails on its own: an event a sink could not take
//! waits in that sink's queue and is offered again with the next event, in order.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use silhouette::tracking::TrackId;

use crate::vocabulary::{DenialReason, MatchFigures};

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// The door opened for someone enrolled.
    Granted,
    /// The door stayed shut for a walk-up.
    Denied {
        /// Why.
        reason: DenialReason,
    },
    /// Someone was enrolled.
    Enrolled {
        /// Templates stored for them.
        templates: usize,
    },
    /// Someone was erased.
    Erased {
        /// Templates removed with them.
        templates: usize,
    },
    /// The camera stopped delivering frames.
    CameraLost {
        /// What the source said.
        detail: String,
    },
    /// Frames again after a loss.
    CameraRestored,
    /// Windows the network could not keep up with, dropped whole (a live camera).
    WindowsDropped {
        /// How many.
        count: u64,
    },
    /// More people came through than were granted, while the door was released.
    TailgateAlarm {
        /// How long after the grant the second person appeared.
        after_grant_ms: u64,
    },
    /// The kiosk came up.
    Started,
    /// The kiosk stopped cleanly.
    Stopped,
    /// The request-to-exit button released the door.
    ExitRequested,
    /// The door opened while locked.
    DoorForced,
    /// The door has been open nearly as long as allowed; the held-open alarm follows.
    DoorHeldOpenWarning {
        /// How long it has been open.
        open_ms: u64,
    },
    /// The door has been open longer than allowed.
    DoorHeldOpen {
        /// How long it has been open.
        open_ms: u64,
    },
    /// A door that raised an alarm (forced, held open) closed.
    DoorSecured {
        /// How long it was open.
        open_ms: u64,
    },
    /// A door input (door position, request to exit, tamper) could not be read; the door is
    /// treated as it was last seen until it can.
    DoorInputFault {
        /// The input and what the line said.
        detail: String,
    },
    /// A door input can be read again.
    DoorInputRestored,
    /// The kiosk's enclosure was opened (`true`) or closed again.
    Tamper {
        /// The tamper switch is active.
        active: bool,
    },
    /// The access-control panel polls the kiosk (again), in the Secure Channel.
    PanelOnline,
    /// The access-control panel stopped polling the kiosk: no reads reach it.
    PanelOffline,
    /// A grant was not reported to the panel: the link could not carry it in time, or the person
    /// has no credential number.
    PanelReadDropped {
        /// Why.
        detail: String,
    },
    /// The site database answers (again) and the door's replica has caught up with it.
    SiteOnline {
        /// The site revision the replica now holds.
        revision: i64,
    },
    /// The site database cannot be reached: the door decides from its replica and keeps its
    /// events until the site is back.
    SiteOffline {
        /// What failed.
        detail: String,
    },
    /// The site allows the person this event names through this door, but the door cannot open
    /// their templates (sealed under another key, damaged): they are not recognised here until the
    /// site sends templates that open. Reported once per person.
    TemplateQuarantined {
        /// The site revision that brought the templates.
        revision: i64,
        /// Why they were refused.
        reason: String,
    },
    /// The audit chain's newest line when this was published: stored by the other sinks, it anchors
    /// the log outside its own file (`kiosk verify-log` checks the log against every anchor).
    AuditHead {
        /// Sequence number of the chain's newest line.
        seq: u64,
        /// Its seal, hex.
        mac: String,
    },
}

impl EventKind {
    /// The label of [`EventKind::AuditHead`], under which the published chain heads are stored.
    pub const AUDIT_HEAD_LABEL: &'static str = "audit_head";

    /// A short stable name (`granted`, `denied`, …), for topics and stored events.
    pub fn label(&self) -> &'static str {
        match self {
            EventKind::Granted => "granted",
            EventKind::Denied {
                reason: DenialReason::Tailgating,
            } => "tailgating",
            EventKind::Denied { .. } => "denied",
            EventKind::Enrolled { .. } => "enrolled",
            EventKind::Erased { .. } => "erased",
            EventKind::CameraLost { .. } => "camera_lost",
            EventKind::CameraRestored => "camera_restored",
            EventKind::WindowsDropped { .. } => "windows_dropped",
            EventKind::TailgateAlarm { .. } => "tailgate_alarm",
            EventKind::ExitRequested => "exit_requested",
            EventKind::DoorForced => "door_forced",
            EventKind::DoorHeldOpenWarning { .. } => "door_held_open_warning",
            EventKind::DoorHeldOpen { .. } => "door_held_open",
            EventKind::DoorSecured { .. } => "door_secured",
            EventKind::DoorInputFault { .. } => "door_input_fault",
            EventKind::DoorInputRestored => "door_input_restored",
            EventKind::Tamper { .. } => "tamper",
            EventKind::PanelOnline => "panel_online",
            EventKind::PanelOffline => "panel_offline",
            EventKind::SiteOnline { .. } => "site_online",
            EventKind::SiteOffline { .. } => "site_offline",
            EventKind::PanelReadDropped { .. } => "panel_read_dropped",
            EventKind::TemplateQuarantined { .. } => "template_quarantined",
            EventKind::Started => "started",
            EventKind::Stopped => "stopped",
            EventKind::AuditHead { .. } => Self::AUDIT_HEAD_LABEL,
        }
    }
}

/// One thing that happened at a door, as every sink receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the Unix epoch, UTC.
    pub at_ms: i64,
    /// The door's name from the configuration.
    pub door: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
    /// The track concerned, for decisions and alarms.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub track: Option<TrackId>,
    /// The gallery pseudonym of the person concerned.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub person: Option<String>,
    /// The match behind a decision.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub figures: Option<MatchFigures>,
    /// SHA-256 of the model that decided.
    pub model_id: String,
    /// When the kiosk made the event, on the monotonic clock: how old a grant is, whatever the wall
    /// clock did since (NTP steps it both ways). Not serialised; absent in events read back.
    #[serde(skip)]
    pub decided: Option<std::time::Instant>,
    /// The granted person's credential number, for a panel's card read. Not serialised: a number
    /// that a Wiegand line would accept is never written to logs, topics or stored events.
    #[serde(skip)]
    pub credential: Option<u32>,
}

impl Event {
    /// An event of `door`, decided by `model_id`, made now, naming no track, person or credential:
    /// what every event starts from (a decision adds its track, person, figures and credential).
    pub fn new(door: &str, model_id: &str, kind: EventKind) -> Self {
        Event {
            at_ms: now_ms(),
            door: door.to_string(),
            kind,
            track: None,
            person: None,
            figures: None,
            model_id: model_id.to_string(),
            decided: Some(std::time::Instant::now()),
            credential: None,
        }
    }
}

/// A sink could not take an event; it stays queued for that sink.
#[derive(Debug, thiserror::Error)]
#[error("{sink}: {detail}")]
pub struct SinkError {
    /// The sink's name.
    pub sink: String,
    /// What went wrong.
    pub detail: String,
}

/// Somewhere events go: the audit log, the gallery's table, the relay, MQTT.
pub trait EventSink: Send {
    /// A name for logs.
    fn name(&self) -> &str;
    /// Takes one event, or refuses it (it is offered again later, in order).
    fn deliver(&mut self, event: &Event) -> Result<(), SinkError>;
    /// Events taken but not yet passed on beyond this machine (a broker's queue file, a site's
    /// outbox); zero for a sink that acts at once.
    fn backlog(&self) -> usize {
        0
    }
}

/// Per-sink queues so that one failing sink neither blocks the others nor loses events.
pub struct EventDispatcher {
    sinks: Vec<(Box<dyn EventSink>, VecDeque<Event>)>,
    max_queued_per_sink: usize,
    dropped: u64,
}

impl EventDispatcher {
    /// A dispatcher that keeps at most this many events per sink (the oldest are dropped and counted).
    pub fn new(max_queued_per_sink: usize) -> Self {
        EventDispatcher {
            sinks: Vec::new(),
            max_queued_per_sink,
            dropped: 0,
        }
    }

    /// Adds a sink; it receives every event published from now on.
    pub fn add(&mut self, sink: Box<dyn EventSink>) {
        self.sinks.push((sink, VecDeque::new()));
    }

    /// Offers `event`, after anything a sink still owes, to every sink.
    pub fn publish(&mut self, event: &Event) {
        self.offer_from(0, event);
    }

    /// Offers `event` to the sinks from the `first`-th on.
    fn offer_from(&mut self, first: usize, event: &Event) {
        for (sink, queue) in self.sinks.iter_mut().skip(first) {
            if queue.len() >= self.max_queued_per_sink {
                queue.pop_front();
                self.dropped += 1;
                log::error!("{}: queue full, oldest pending event dropped", sink.name());
            }
            queue.push_back(event.clone());
            flush_queue(sink.as_mut(), queue);
        }
    }

    /// Offers `event` to the record (the first sink added: the audit log) before any other sink:
    /// when the record still owes earlier events or cannot take this one, no other sink receives
    /// it and `false` is returned. For what must not happen unrecorded: a grant opens nothing
    /// that the log does not hold.
    pub fn publish_recorded(&mut self, event: &Event) -> bool {
        let Some((record, queue)) = self.sinks.first_mut() else {
            return false;
        };
        flush_queue(record.as_mut(), queue);
        if !queue.is_empty() {
            return false;
        }
        if let Err(e) = record.deliver(event) {
            log::error!("{e}: the event is not passed on");
            return false;
        }
        self.offer_from(1, event);
        true
    }

    /// Events the record (the first sink) has not taken yet.
    pub fn record_owes(&self) -> usize {
        self.sinks.first().map_or(0, |(_, queue)| queue.len())
    }

    /// Offers pending events again (call periodically while idle).
    pub fn retry(&mut self) {
        for (sink, queue) in &mut self.sinks {
            flush_queue(sink.as_mut(), queue);
        }
    }

    /// Events waiting, per sink name.
    pub fn pending(&self) -> Vec<(String, usize)> {
        self.sinks
            .iter()
            .map(|(s, q)| (s.name().to_string(), q.len()))
            .collect()
    }

    /// Each sink's backlog ([`EventSink::backlog`]), by name.
    pub fn backlogs(&self) -> Vec<(String, usize)> {
        self.sinks
            .iter()
            .map(|(s, _)| (s.name().to_string(), s.backlog()))
            .collect()
    }

    /// Events dropped from full queues so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

fn flush_queue(sink: &mut dyn EventSink, queue: &mut VecDeque<Event>) {
    while let Some(event) = queue.front() {
        match sink.deliver(event) {
            Ok(()) => {
                queue.pop_front();
            }
            Err(e) => {
                log::warn!("{e} ({} event(s) waiting)", queue.len());
                return;
            }
        }
    }
}

/// The wall clock in milliseconds since the Unix epoch, as events carry it (0 before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn event(kind: EventKind) -> Event {
        Event {
            at_ms: 1_700_000_000_000,
            track: Some(3),
            person: Some("0a1b2c3d4e5f6071".into()),
            figures: Some(MatchFigures {
                distance: 1.5,
                margin: Some(0.4),
                windows: 2,
                frames_used: 58,
            }),
            decided: None,
            ..Event::new("front", "sha256:00", kind)
        }
    }

    struct Flaky {
        up: Arc<Mutex<bool>>,
        got: Arc<Mutex<Vec<i64>>>,
    }

    impl EventSink for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        fn deliver(&mut self, event: &Event) -> Result<(), SinkError> {
            if !*self.up.lock().unwrap() {
                return Err(SinkError {
                    sink: "flaky".into(),
                    detail: "down".into(),
                });
            }
            self.got.lock().unwrap().push(event.at_ms);
            Ok(())
        }
    }

    #[test]
    fn a_failing_sink_gets_every_event_in_order_once_it_recovers() {
        let up = Arc::new(Mutex::new(true));
        let got = Arc::new(Mutex::new(Vec::new()));
        let steady = Arc::new(Mutex::new(Vec::new()));
        let mut dispatcher = EventDispatcher::new(100);
        dispatcher.add(Box::new(Flaky {
            up: up.clone(),
            got: got.clone(),
        }));
        dispatcher.add(Box::new(Flaky {
            up: Arc::new(Mutex::new(true)),
            got: steady.clone(),
        }));
        for at in 0..3 {
            dispatcher.publish(&Event {
                at_ms: at,
                ..event(EventKind::Granted)
            });
        }
        *up.lock().unwrap() = false;
        for at in 3..6 {
            dispatcher.publish(&Event {
                at_ms: at,
                ..event(EventKind::Granted)
            });
        }
        assert_eq!(dispatcher.pending()[0].1, 3);
        assert_eq!(*steady.lock().unwrap(), vec![0, 1, 2, 3, 4, 5]);
        *up.lock().unwrap() = true;
        dispatcher.retry();
        assert_eq!(*got.lock().unwrap(), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(dispatcher.pending()[0].1, 0);
        assert_eq!(dispatcher.dropped(), 0);
    }

    #[test]
    fn events_serialise_with_their_kind_and_reason() {
        let json = serde_json::to_string(&event(EventKind::Denied {
            reason: DenialReason::Tailgating,
        }))
        .unwrap();
        assert!(json.contains(r#""kind":"denied""#), "{json}");
        assert!(json.contains(r#""reason":"tailgating""#), "{json}");
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back.kind.label(), "tailgating");
    }
}
