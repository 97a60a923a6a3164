//! The door inputs of a stand-alone door, watched on a thread of their own: the door-position
//! switch and the request-to-exit button through [`DoorMonitor`], and the kiosk's tamper switch.
//!
//! A request to exit releases the relay from this thread at once (nobody waits behind a network
//! inference to leave); everything is reported to the decision loop as [`DoorNews`]. An input that
//! cannot be read is reported once, and the door is taken to be as it was last seen until it reads
//! again.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use access::events::{Event, EventKind, EventSink, SinkError};
use door_io::door_inputs::{Debounced, DoorInputsConfig, DoorMonitor, DoorSignal, DoorTimings};
use door_io::line::{open_input, InputLine};
use door_io::DoorIoError;

use crate::kiosk_loop::DoorNews;
use crate::relay::{grant_too_old, RelayConfig, Releaser};
use crate::threads::{spawn, SpawnError};

/// How often the inputs are read: well under any debounce time.
pub const POLL: Duration = Duration::from_millis(5);

/// One wired input, with its name for reports.
pub struct WatchedInput {
    name: &'static str,
    line: Box<dyn InputLine>,
    failing: bool,
}

impl WatchedInput {
    /// `line`, reported as `name`.
    pub fn new(name: &'static str, line: Box<dyn InputLine>) -> Self {
        WatchedInput {
            name,
            line,
            failing: false,
        }
    }

    /// The line's level, or `None` (reported once) while it cannot be read.
    fn read(&mut self, news: &Sender<DoorNews>) -> Option<bool> {
        match self.line.is_active() {
            Ok(level) => {
                if std::mem::take(&mut self.failing) {
                    let _ = news.send(DoorNews::Event(EventKind::DoorInputRestored));
                }
                Some(level)
            }
            Err(e) => {
                if !std::mem::replace(&mut self.failing, true) {
                    log::error!("{}: {e}", self.name);
                    let _ = news.send(DoorNews::Event(EventKind::DoorInputFault {
                        detail: format!("{}: {e}", self.name),
                    }));
                }
                None
            }
        }
    }
}

/// The inputs a door has wired.
#[derive(Default)]
pub struct DoorLines {
    /// The door-position switch.
    pub door_position: Option<WatchedInput>,
    /// The request-to-exit button.
    pub request_to_exit: Option<WatchedInput>,
    /// The kiosk's tamper switch.
    pub tamper: Option<WatchedInput>,
}

impl DoorLines {
    /// The GPIO lines `config` names.
    pub fn open(config: &DoorInputsConfig) -> Result<Self, DoorIoError> {
        let open = |name, line: &Option<door_io::line::LineConfig>, consumer| {
            line.as_ref()
                .map(|line| {
                    Ok::<_, DoorIoError>(WatchedInput::new(name, open_input(line, consumer)?))
                })
                .transpose()
        };
        Ok(DoorLines {
            door_position: open(
                "door-position switch",
                &config.door_position,
                "kiosk-door-position",
            )?,
            request_to_exit: open(
                "request-to-exit",
                &config.request_to_exit,
                "kiosk-request-to-exit",
            )?,
            tamper: open("tamper switch", &config.tamper, "kiosk-tamper")?,
        })
    }
}

enum Command {
    Released,
    Stop,
}

/// What the watch acts on besides reporting: the relay for a request to exit, the panel for tamper.
#[derive(Default)]
pub struct WatchOutputs {
    /// Pulses the relay.
    pub relay: Option<Releaser>,
    /// Tells the panel about the tamper switch.
    pub tamper_to_panel: Option<Box<dyn Fn(bool) + Send>>,
}

/// The door inputs' thread, and an event sink that tells it of every grant (the door-position
/// switch is masked while the door is released).
pub struct DoorWatch {
    commands: Sender<Command>,
    worker: Option<JoinHandle<()>>,
    max_grant_age: Duration,
}

impl DoorWatch {
    /// Watches `lines` with `timings`; a release (grant or request to exit) lasts as long as
    /// `relay`'s pulse, and a grant releases only while the relay would still act on it. Without a
    /// relay (a panel owns the lock) nothing is released.
    pub fn start(
        lines: DoorLines,
        timings: DoorTimings,
        relay: Option<&RelayConfig>,
        outputs: WatchOutputs,
        news: Sender<DoorNews>,
    ) -> Result<Self, SpawnError> {
        let release = Duration::from_millis(relay.map_or(0, |r| r.pulse_ms));
        let max_grant_age = Duration::from_millis(relay.map_or(0, |r| r.max_grant_age_ms));
        let (commands, receiver) = mpsc::channel();
        let worker = spawn("door-inputs", move || {
            watch(lines, timings, release, outputs, &news, &receiver)
        })?;
        Ok(DoorWatch {
            commands,
            worker: Some(worker),
            max_grant_age,
        })
    }
}

fn watch(
    mut lines: DoorLines,
    timings: DoorTimings,
    release: Duration,
    outputs: WatchOutputs,
    news: &Sender<DoorNews>,
    commands: &Receiver<Command>,
) {
    let started = Instant::now();
    let mut monitor = DoorMonitor::new(timings, release);
    let mut tamper: Option<Debounced> = None;
    loop {
        match commands.recv_timeout(POLL) {
            Ok(Command::Released) => monitor.released(started.elapsed()),
            Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        let now = started.elapsed();
        let door_open = lines.door_position.as_mut().and_then(|l| l.read(news));
        let exit_pressed = lines.request_to_exit.as_mut().and_then(|l| l.read(news));
        for signal in monitor.update(now, door_open, exit_pressed) {
            if signal == DoorSignal::ExitRequested {
                if let Some(relay) = &outputs.relay {
                    if !relay.release() {
                        log::error!("request to exit: the relay has stopped");
                    }
                }
            }
            let _ = news.send(DoorNews::Event(event_of(signal)));
        }
        let Some(raw) = lines.tamper.as_mut().and_then(|l| l.read(news)) else {
            continue;
        };
        let changed = match &mut tamper {
            Some(state) => state.update(now, raw, timings.debounce),
            None => {
                tamper = Some(Debounced::new(raw));
                raw.then_some(true)
            }
        };
        if let Some(active) = changed {
            if let Some(panel) = &outputs.tamper_to_panel {
                panel(active);
            }
            let _ = news.send(DoorNews::Event(EventKind::Tamper { active }));
        }
    }
}

/// The event a door signal is reported as.
fn event_of(signal: DoorSignal) -> EventKind {
    let ms = |d: Duration| d.as_millis() as u64;
    match signal {
        DoorSignal::ExitRequested => EventKind::ExitRequested,
        DoorSignal::Forced => EventKind::DoorForced,
        DoorSignal::HeldOpenWarning { open_for } => EventKind::DoorHeldOpenWarning {
            open_ms: ms(open_for),
        },
        DoorSignal::HeldOpen { open_for } => EventKind::DoorHeldOpen {
            open_ms: ms(open_for),
        },
        DoorSignal::Secured { open_for } => EventKind::DoorSecured {
            open_ms: ms(open_for),
        },
    }
}

impl EventSink for DoorWatch {
    fn name(&self) -> &str {
        "door inputs"
    }

    fn deliver(&mut self, event: &Event) -> Result<(), SinkError> {
        if event.kind != EventKind::Granted
            || grant_too_old(event.at_ms, event.decided, self.max_grant_age).is_some()
        {
            return Ok(());
        }
        self.commands
            .send(Command::Released)
            .map_err(|_| SinkError {
                sink: self.name().into(),
                detail: "the door inputs' thread has stopped".into(),
            })
    }
}

impl Drop for DoorWatch {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use door_io::line::OutputLine;

    use crate::relay::DoorRelay;

    /// An input whose level (or failure) the test sets.
    #[derive(Clone)]
    struct ScriptedLine(Arc<Mutex<Result<bool, String>>>);

    impl ScriptedLine {
        fn new(level: bool) -> Self {
            ScriptedLine(Arc::new(Mutex::new(Ok(level))))
        }

        fn set(&self, level: Result<bool, &str>) {
            *self.0.lock().unwrap() = level.map_err(str::to_string);
        }
    }

    impl InputLine for ScriptedLine {
        fn is_active(&mut self) -> Result<bool, DoorIoError> {
            self.0
                .lock()
                .unwrap()
                .clone()
                .map_err(|detail| DoorIoError::Line {
                    chip: "script".into(),
                    line: 0,
                    detail,
                })
        }
    }

    /// The relay's line: every level driven.
    #[derive(Clone, Default)]
    struct RelayLine(Arc<Mutex<Vec<bool>>>);

    impl OutputLine for RelayLine {
        fn set_active(&mut self, active: bool) -> Result<(), DoorIoError> {
            self.0.lock().unwrap().push(active);
            Ok(())
        }
    }

    const TIMINGS: DoorTimings = DoorTimings {
        debounce: Duration::from_millis(10),
        held_open: Duration::from_millis(3_000),
        pre_alarm: Duration::from_millis(1_000),
    };

    struct Door {
        position: ScriptedLine,
        exit: ScriptedLine,
        tamper: ScriptedLine,
        relay_line: RelayLine,
        told_panel: Arc<Mutex<Vec<bool>>>,
        news: Receiver<DoorNews>,
        watch: DoorWatch,
        _relay: DoorRelay,
    }

    fn door() -> Door {
        let (position, exit, tamper) = (
            ScriptedLine::new(false),
            ScriptedLine::new(false),
            ScriptedLine::new(false),
        );
        let relay_line = RelayLine::default();
        let relay_config = RelayConfig {
            chip: "test".into(),
            line: 1,
            active_low: false,
            pulse_ms: 300,
            max_grant_age_ms: 2_000,
        };
        let relay = DoorRelay::start(Box::new(relay_line.clone()), &relay_config).unwrap();
        let told_panel = Arc::new(Mutex::new(Vec::new()));
        let told = told_panel.clone();
        let outputs = WatchOutputs {
            relay: Some(relay.releaser()),
            tamper_to_panel: Some(Box::new(move |active| told.lock().unwrap().push(active))),
        };
        let lines = DoorLines {
            door_position: Some(WatchedInput::new(
                "door-position switch",
                Box::new(position.clone()),
            )),
            request_to_exit: Some(WatchedInput::new("request-to-exit", Box::new(exit.clone()))),
            tamper: Some(WatchedInput::new("tamper switch", Box::new(tamper.clone()))),
        };
        let (sender, news) = mpsc::channel();
        let watch = DoorWatch::start(lines, TIMINGS, Some(&relay_config), outputs, sender).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        Door {
            position,
            exit,
            tamper,
            relay_line,
            told_panel,
            news,
            watch,
            _relay: relay,
        }
    }

    fn next_event(news: &Receiver<DoorNews>) -> EventKind {
        match news.recv_timeout(Duration::from_secs(5)) {
            Ok(DoorNews::Event(kind)) => kind,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    fn grant() -> Event {
        Event {
            at_ms: access::events::now_ms(),
            ..Event::new("front", "m", EventKind::Granted)
        }
    }

    #[test]
    fn a_request_to_exit_pulses_the_relay_and_masks_the_door_position_switch() {
        let door = door();
        door.exit.set(Ok(true));
        assert_eq!(next_event(&door.news), EventKind::ExitRequested);
        door.exit.set(Ok(false));
        door.position.set(Ok(true));
        std::thread::sleep(Duration::from_millis(100));
        door.position.set(Ok(false));
        let deadline = Instant::now() + Duration::from_secs(5);
        while door.relay_line.0.lock().unwrap().len() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(*door.relay_line.0.lock().unwrap(), [false, true, false]);
        assert!(door.news.try_recv().is_err(), "no forced-door alarm");
    }

    #[test]
    fn a_door_opened_without_a_grant_is_forced_and_one_opened_after_a_grant_is_not() {
        let mut door = door();
        door.position.set(Ok(true));
        assert_eq!(next_event(&door.news), EventKind::DoorForced);
        door.position.set(Ok(false));
        assert!(matches!(
            next_event(&door.news),
            EventKind::DoorSecured { .. }
        ));
        door.watch.deliver(&grant()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        door.position.set(Ok(true));
        std::thread::sleep(Duration::from_millis(100));
        door.position.set(Ok(false));
        std::thread::sleep(Duration::from_millis(100));
        assert!(door.news.try_recv().is_err(), "no alarm after a grant");
    }

    #[test]
    fn a_stale_grant_does_not_mask_the_switch() {
        let mut door = door();
        let mut stale = grant();
        stale.decided = Some(Instant::now() - Duration::from_secs(10));
        door.watch.deliver(&stale).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        door.position.set(Ok(true));
        assert_eq!(next_event(&door.news), EventKind::DoorForced);
    }

    #[test]
    fn a_failing_input_is_reported_once_and_its_return_too() {
        let door = door();
        door.position.set(Err("EIO"));
        match next_event(&door.news) {
            EventKind::DoorInputFault { detail } => {
                assert!(detail.starts_with("door-position switch"), "{detail}");
                assert!(detail.contains("EIO"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
        assert!(door.news.try_recv().is_err(), "reported once");
        door.position.set(Ok(false));
        assert_eq!(next_event(&door.news), EventKind::DoorInputRestored);
    }

    #[test]
    fn the_tamper_switch_is_reported_and_told_to_the_panel() {
        let door = door();
        door.tamper.set(Ok(true));
        assert_eq!(next_event(&door.news), EventKind::Tamper { active: true });
        door.tamper.set(Ok(false));
        assert_eq!(next_event(&door.news), EventKind::Tamper { active: false });
        assert_eq!(*door.told_panel.lock().unwrap(), [true, false]);
    }
}
