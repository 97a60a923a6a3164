//! The door relay: a bounded pulse on every grant, and fail-secure everywhere else.
//!
//! - The line is driven inactive (door locked) when the relay is created, after every pulse, when the
//!   relay is dropped (normal exit, or a panic unwinding through its owner) and when the pulsing thread
//!   itself panics.
//! - The pulse length is bounded by configuration checks, and a stop during a pulse ends it at once.
//! - A grant is acted on only while it is fresh: a grant that waited in a queue (the relay was
//!   failing) never opens the door later for someone who has walked away.
//!
//! The hardware line is a [`door_io::line::OutputLine`]; the kernel's GPIO character device needs
//! the `gpio` feature.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::threads::{spawn, SpawnError};
use access::events::{now_ms, Event, EventKind, EventSink, SinkError};
use door_io::line::{open_output, LineConfig, OutputLine};
use door_io::DoorIoError;

/// The shortest release a relay is asked for.
pub const MIN_PULSE_MS: u64 = 100;
/// The longest release: a door never stays released longer on one grant.
pub const MAX_PULSE_MS: u64 = 15_000;

/// Why the relay cannot be driven.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// A pulse outside the allowed range.
    #[error("relay pulse of {0} ms is outside {MIN_PULSE_MS}..={MAX_PULSE_MS} ms")]
    PulseOutOfRange(u64),
    /// The line refused, or GPIO is not built in.
    #[error(transparent)]
    Line(#[from] DoorIoError),
    /// The relay's thread.
    #[error(transparent)]
    Thread(#[from] SpawnError),
}

/// `[relay]` in kiosk.toml.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// The GPIO character device, e.g. `/dev/gpiochip0`.
    pub chip: String,
    /// Line offset on that chip (`gpioinfo` lists them).
    pub line: u32,
    /// The relay driver energises on a low level.
    #[serde(default)]
    pub active_low: bool,
    /// How long the door is released per grant.
    #[serde(default = "default_pulse_ms")]
    pub pulse_ms: u64,
    /// Grants older than this when the relay gets them are not acted on.
    #[serde(default = "default_max_grant_age_ms")]
    pub max_grant_age_ms: u64,
}

fn default_pulse_ms() -> u64 {
    3_000
}

fn default_max_grant_age_ms() -> u64 {
    2_000
}

impl RelayConfig {
    /// The configuration within its ranges.
    pub fn check(&self) -> Result<(), RelayError> {
        if !(MIN_PULSE_MS..=MAX_PULSE_MS).contains(&self.pulse_ms) {
            return Err(RelayError::PulseOutOfRange(self.pulse_ms));
        }
        Ok(())
    }
}

enum Command {
    Pulse {
        granted_at_ms: i64,
        decided: Option<Instant>,
    },
    Stop,
}

/// The relay as an event sink: `Granted` pulses it, every other event leaves it locked.
pub struct DoorRelay {
    commands: Sender<Command>,
    worker: Option<JoinHandle<()>>,
    last_error: Arc<Mutex<Option<String>>>,
}

impl DoorRelay {
    /// Locks the door through `line` and starts the pulsing thread.
    pub fn start(mut line: Box<dyn OutputLine>, config: &RelayConfig) -> Result<Self, RelayError> {
        config.check()?;
        line.set_active(false)?;
        let (commands, receiver) = mpsc::channel();
        let last_error = Arc::new(Mutex::new(None));
        let worker_error = last_error.clone();
        let pulse = Duration::from_millis(config.pulse_ms);
        let max_age = Duration::from_millis(config.max_grant_age_ms);
        let worker = spawn("door-relay", move || {
            let mut guard = LockOnDrop(line);
            pulse_loop(&mut guard, &receiver, pulse, max_age, &worker_error);
        })?;
        Ok(DoorRelay {
            commands,
            worker: Some(worker),
            last_error,
        })
    }

    /// A handle that releases the door for a request to exit, as a grant does.
    pub fn releaser(&self) -> Releaser {
        Releaser(self.commands.clone())
    }

    /// The last hardware error, if the most recent operation failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

impl EventSink for DoorRelay {
    fn name(&self) -> &str {
        "door relay"
    }

    fn deliver(&mut self, event: &Event) -> Result<(), SinkError> {
        if event.kind != EventKind::Granted {
            return Ok(());
        }
        self.commands
            .send(Command::Pulse {
                granted_at_ms: event.at_ms,
                decided: event.decided,
            })
            .map_err(|_| SinkError {
                sink: self.name().into(),
                detail: "the relay thread has stopped".into(),
            })
    }
}

/// Releases the door from another thread (the door inputs' request to exit).
#[derive(Clone)]
pub struct Releaser(Sender<Command>);

impl Releaser {
    /// One pulse of the relay, now; false when the relay has stopped.
    pub fn release(&self) -> bool {
        self.0
            .send(Command::Pulse {
                granted_at_ms: now_ms(),
                decided: Some(Instant::now()),
            })
            .is_ok()
    }
}

impl Drop for DoorRelay {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Drives the line inactive when it goes out of scope, including while a panic unwinds.
struct LockOnDrop(Box<dyn OutputLine>);

impl Drop for LockOnDrop {
    fn drop(&mut self) {
        if let Err(e) = self.0.set_active(false) {
            log::error!("could not lock the door on exit: {e}");
        }
    }
}

fn pulse_loop(
    line: &mut LockOnDrop,
    commands: &Receiver<Command>,
    pulse: Duration,
    max_age: Duration,
    last_error: &Mutex<Option<String>>,
) {
    let record = |result: Result<(), DoorIoError>| {
        let message = result.err().map(|e| e.to_string());
        if let Some(m) = &message {
            log::error!("door relay: {m}");
        }
        if let Ok(mut slot) = last_error.lock() {
            *slot = message;
        }
    };
    while let Ok(command) = commands.recv() {
        let Command::Pulse {
            granted_at_ms,
            decided,
        } = command
        else {
            return;
        };
        if let Some(age) = grant_too_old(granted_at_ms, decided, max_age) {
            log::warn!("door relay: {age}; the door stays locked");
            continue;
        }
        let opened = line.0.set_active(true);
        let stop = opened.is_ok()
            && matches!(
                commands.recv_timeout(pulse),
                Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected)
            );
        let locked = line.0.set_active(false);
        record(opened.and(locked));
        if stop {
            return;
        }
    }
}

/// Why a grant is too old to act on, if it is: by the monotonic clock when the kiosk stamped it, else
/// by the wall clock, where a grant that seems to come from the future (the clock was stepped back) is
/// not trusted either.
pub(crate) fn grant_too_old(
    granted_at_ms: i64,
    decided: Option<Instant>,
    max_age: Duration,
) -> Option<String> {
    match decided {
        Some(decided) => {
            let age = decided.elapsed();
            (age > max_age).then(|| format!("grant is {} ms old", age.as_millis()))
        }
        None => {
            let age = now_ms() - granted_at_ms;
            if age < 0 {
                Some(format!(
                    "grant is stamped {} ms in the future (the wall clock moved)",
                    -age
                ))
            } else {
                (age > max_age.as_millis() as i64).then(|| format!("grant is {age} ms old"))
            }
        }
    }
}

/// The relay line the configuration names, inactive (locked) from the first instant.
pub fn open_line(config: &RelayConfig) -> Result<Box<dyn OutputLine>, RelayError> {
    let line = LineConfig {
        chip: config.chip.clone(),
        line: config.line,
        active_low: config.active_low,
    };
    Ok(open_output(&line, "kiosk-door-relay")?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use access::vocabulary::DenialReason;
    use std::time::Instant;

    /// Records every level the relay drives, with when; can be told to fail.
    #[derive(Clone, Default)]
    struct RecordingLine {
        levels: Arc<Mutex<Vec<(bool, Instant)>>>,
        broken: Arc<Mutex<bool>>,
    }

    impl OutputLine for RecordingLine {
        fn set_active(&mut self, active: bool) -> Result<(), DoorIoError> {
            if *self.broken.lock().unwrap() && active {
                return Err(DoorIoError::Line {
                    chip: "test".into(),
                    line: 1,
                    detail: "EIO".into(),
                });
            }
            self.levels.lock().unwrap().push((active, Instant::now()));
            Ok(())
        }
    }

    impl RecordingLine {
        fn levels(&self) -> Vec<bool> {
            self.levels.lock().unwrap().iter().map(|l| l.0).collect()
        }
    }

    /// Waits for the relay thread (slow under emulation) rather than for a fixed time.
    fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn config(pulse_ms: u64) -> RelayConfig {
        RelayConfig {
            chip: "/dev/gpiochip0".into(),
            line: 17,
            active_low: false,
            pulse_ms,
            max_grant_age_ms: 2_000,
        }
    }

    fn event(kind: EventKind, at_ms: i64) -> Event {
        Event {
            at_ms,
            track: Some(1),
            decided: None,
            ..Event::new("front", "m", kind)
        }
    }

    #[test]
    fn a_grant_pulses_once_and_everything_else_stays_locked() {
        let line = RecordingLine::default();
        let mut relay = DoorRelay::start(Box::new(line.clone()), &config(150)).unwrap();
        relay
            .deliver(&event(
                EventKind::Denied {
                    reason: DenialReason::Unknown,
                },
                now_ms(),
            ))
            .unwrap();
        relay.deliver(&event(EventKind::Granted, now_ms())).unwrap();
        wait_for("the pulse to end", || line.levels().len() == 3);
        let recorded = line.levels.lock().unwrap().clone();
        assert_eq!(line.levels(), [false, true, false]);
        let held = recorded[2].1 - recorded[1].1;
        assert!(
            held >= Duration::from_millis(150) && held < Duration::from_secs(2),
            "{held:?}"
        );
        drop(relay);
        assert_eq!(line.levels().last(), Some(&false));
    }

    #[test]
    fn a_grants_age_follows_the_monotonic_clock_whatever_the_wall_clock_does() {
        let max_age = Duration::from_millis(2_000);
        let hour_ms = 3_600_000;
        // The wall clock was stepped an hour forward, or back, since the grant was stamped.
        for step in [hour_ms, -hour_ms] {
            let stamped = now_ms() - step;
            assert_eq!(grant_too_old(stamped, Some(Instant::now()), max_age), None);
        }
        let Some(five_seconds_ago) = Instant::now().checked_sub(Duration::from_secs(5)) else {
            return;
        };
        assert!(grant_too_old(now_ms(), Some(five_seconds_ago), max_age).is_some());
        // Grants read back without the kiosk's monotonic stamp: the wall clock, and never the future.
        assert_eq!(grant_too_old(now_ms(), None, max_age), None);
        assert!(grant_too_old(now_ms() - 5_000, None, max_age).is_some());
        let future = grant_too_old(now_ms() + hour_ms, None, max_age).unwrap();
        assert!(future.contains("future"), "{future}");
    }

    #[test]
    fn stopping_during_a_pulse_locks_at_once() {
        let line = RecordingLine::default();
        let mut relay = DoorRelay::start(Box::new(line.clone()), &config(10_000)).unwrap();
        relay.deliver(&event(EventKind::Granted, now_ms())).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let stopping = Instant::now();
        drop(relay);
        assert!(stopping.elapsed() < Duration::from_secs(1));
        // Locked when the pulse is cut short, and once more as the thread exits.
        assert_eq!(line.levels(), [false, true, false, false]);
    }

    #[test]
    fn a_stale_grant_does_not_open_the_door() {
        let line = RecordingLine::default();
        let mut relay = DoorRelay::start(Box::new(line.clone()), &config(100)).unwrap();
        relay
            .deliver(&event(EventKind::Granted, now_ms() - 5_000))
            .unwrap();
        drop(relay);
        assert!(!line.levels().contains(&true), "{:?}", line.levels());
    }

    #[test]
    fn a_failing_line_is_reported_and_the_kiosk_goes_on() {
        let line = RecordingLine::default();
        *line.broken.lock().unwrap() = true;
        let mut relay = DoorRelay::start(Box::new(line.clone()), &config(100)).unwrap();
        relay.deliver(&event(EventKind::Granted, now_ms())).unwrap();
        wait_for("the error", || relay.last_error().is_some());
        assert!(relay.last_error().unwrap().contains("EIO"));
        *line.broken.lock().unwrap() = false;
        relay.deliver(&event(EventKind::Granted, now_ms())).unwrap();
        wait_for("a clean pulse", || {
            relay.last_error().is_none() && line.levels().contains(&true)
        });
    }

    #[test]
    fn the_relay_thread_panicking_still_locks_the_door() {
        struct PanickingLine(RecordingLine, bool);
        impl OutputLine for PanickingLine {
            fn set_active(&mut self, active: bool) -> Result<(), DoorIoError> {
                self.0.set_active(active)?;
                if active && !self.1 {
                    self.1 = true;
                    panic!("driver bug while the door is open");
                }
                Ok(())
            }
        }
        let line = RecordingLine::default();
        let mut relay =
            DoorRelay::start(Box::new(PanickingLine(line.clone(), false)), &config(5_000)).unwrap();
        relay.deliver(&event(EventKind::Granted, now_ms())).unwrap();
        wait_for("the panic to unwind", || line.levels().len() == 3);
        assert_eq!(
            line.levels(),
            [false, true, false],
            "unwinding locked the door"
        );
        wait_for("the sink to report the dead thread", || {
            relay.deliver(&event(EventKind::Granted, now_ms())).is_err()
        });
    }

    #[test]
    fn pulse_lengths_are_bounded() {
        assert!(matches!(
            config(50).check(),
            Err(RelayError::PulseOutOfRange(50))
        ));
        assert!(matches!(
            config(60_000).check(),
            Err(RelayError::PulseOutOfRange(60_000))
        ));
        assert!(config(3_000).check().is_ok());
        let line = RecordingLine::default();
        assert!(DoorRelay::start(Box::new(line.clone()), &config(0)).is_err());
        assert!(line.levels().is_empty());
    }
}
