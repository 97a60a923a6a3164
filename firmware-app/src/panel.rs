//! The door's access-control panel, where it owns the lock: the kiosk is one of its readers, and
//! tells it who was granted as a card read, over OSDP or on Wiegand lines. A denial sends nothing.
//!
//! A grant reaches the panel only while it is fresh (`max_read_age_ms`, by the same rule as the
//! relay's), and only for a person with a credential number that fits the panel's format; every read
//! that is not sent is reported as an event, so that the operator learns why someone waited.

use std::sync::mpsc::{self, Sender};
#[cfg(feature = "osdp")]
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Deserialize;

use access::events::{Event, EventKind, EventSink, SinkError};
use access::secret_file::SecretFileError;
use door_io::line::open_output;
use door_io::osdp::OsdpConfig;
#[cfg(feature = "osdp")]
use door_io::osdp::{LinkNotice, OsdpPeripheral};
use door_io::wiegand::{Credential, WiegandConfig, WiegandFormat, WiegandFrame, WiegandOutput};
use door_io::DoorIoError;

use crate::kiosk_loop::DoorNews;
use crate::relay::grant_too_old;
use crate::threads::{spawn, SpawnError};

/// How reads reach the panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PanelMode {
    /// OSDP on the panel's RS-485 bus, Secure Channel (`[panel.osdp]`).
    Osdp,
    /// Wiegand on two data lines (`[panel.wiegand]`).
    Wiegand,
}

/// `[panel]` in kiosk.toml.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanelConfig {
    /// `osdp` or `wiegand`.
    pub mode: PanelMode,
    /// The panel's card format for the kiosk's reads: 26 (the default) or 34 bits.
    #[serde(default)]
    pub format: WiegandFormat,
    /// The site's facility code, as the panel expects it.
    pub facility_code: u32,
    /// A grant not sent to the panel within this time is dropped.
    #[serde(default = "default_max_read_age_ms")]
    pub max_read_age_ms: u64,
    /// The OSDP link, for `mode = "osdp"`.
    pub osdp: Option<OsdpConfig>,
    /// The Wiegand lines, for `mode = "wiegand"`.
    pub wiegand: Option<WiegandConfig>,
}

fn default_max_read_age_ms() -> u64 {
    2_000
}

/// A read older than this is of no use to anyone at the door.
pub const MAX_READ_AGE_MS: (u64, u64) = (100, 10_000);

impl PanelConfig {
    /// The mode's own section present, the other absent, every value in its range.
    pub fn check(&self) -> Result<(), String> {
        self.format
            .check(Credential {
                facility: self.facility_code,
                number: 0,
            })
            .map_err(|e| e.to_string())?;
        if !(MAX_READ_AGE_MS.0..=MAX_READ_AGE_MS.1).contains(&self.max_read_age_ms) {
            return Err(format!(
                "max_read_age_ms = {}: must be from {} to {}",
                self.max_read_age_ms, MAX_READ_AGE_MS.0, MAX_READ_AGE_MS.1
            ));
        }
        match (self.mode, &self.osdp, &self.wiegand) {
            (PanelMode::Osdp, Some(osdp), None) => osdp.check().map_err(|e| e.to_string()),
            (PanelMode::Wiegand, None, Some(wiegand)) => {
                wiegand.timing().check().map_err(|e| e.to_string())
            }
            (PanelMode::Osdp, _, _) => {
                Err("mode = \"osdp\" needs [panel.osdp] and no [panel.wiegand]".into())
            }
            (PanelMode::Wiegand, _, _) => {
                Err("mode = \"wiegand\" needs [panel.wiegand] and no [panel.osdp]".into())
            }
        }
    }

    fn max_read_age(&self) -> Duration {
        Duration::from_millis(self.max_read_age_ms)
    }
}

/// Why the panel link cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum PanelError {
    /// A line, the serial device or the link.
    #[error("[panel] {0}")]
    Io(#[from] DoorIoError),
    /// The secure channel key file.
    #[error("[panel.osdp] {0}")]
    Key(#[from] SecretFileError),
    /// The Wiegand output's thread.
    #[error("[panel] {0}")]
    Thread(#[from] SpawnError),
}

enum Link {
    #[cfg(feature = "osdp")]
    Osdp(Arc<OsdpPeripheral>),
    Wiegand(WiegandLink),
}

/// The Wiegand thread and its queue; dropping it sends what is queued, then stops the thread.
struct WiegandLink {
    frames: Option<Sender<(WiegandFrame, Instant)>>,
    worker: Option<JoinHandle<()>>,
}

impl WiegandLink {
    fn send(&self, frame: WiegandFrame, granted: Instant) -> bool {
        self.frames
            .as_ref()
            .is_some_and(|frames| frames.send((frame, granted)).is_ok())
    }
}

impl Drop for WiegandLink {
    fn drop(&mut self) {
        self.frames.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// The panel as an event sink: a grant becomes a card read.
pub struct PanelReader {
    link: Link,
    format: WiegandFormat,
    facility: u32,
    max_age: Duration,
    news: Sender<DoorNews>,
}

impl PanelReader {
    /// The link `config` names; what happens on it is reported on `news`.
    pub fn open(config: &PanelConfig, news: Sender<DoorNews>) -> Result<Self, PanelError> {
        match (config.mode, &config.osdp, &config.wiegand) {
            (PanelMode::Osdp, Some(osdp), _) => Self::open_osdp(config, osdp, news),
            (PanelMode::Wiegand, _, Some(wiegand)) => {
                let output = WiegandOutput::new(
                    open_output(&wiegand.d0, "kiosk-wiegand-d0")?,
                    open_output(&wiegand.d1, "kiosk-wiegand-d1")?,
                    wiegand.timing(),
                )?;
                Ok(Self::wiegand(config, output, news)?)
            }
            _ => Err(DoorIoError::Osdp {
                device: "[panel]".into(),
                detail: "the mode's section is missing".into(),
            }
            .into()),
        }
    }

    #[cfg(feature = "osdp")]
    fn open_osdp(
        config: &PanelConfig,
        osdp: &OsdpConfig,
        news: Sender<DoorNews>,
    ) -> Result<Self, PanelError> {
        let key = access::secret_file::read_key_file::<16>(&osdp.key_file)?;
        let peripheral =
            OsdpPeripheral::open(osdp, key, config.max_read_age(), link_notices(news.clone()))?;
        Ok(Self::osdp(config, peripheral, news))
    }

    #[cfg(not(feature = "osdp"))]
    fn open_osdp(
        _config: &PanelConfig,
        _osdp: &OsdpConfig,
        _news: Sender<DoorNews>,
    ) -> Result<Self, PanelError> {
        Err(DoorIoError::NoOsdpSupport.into())
    }

    /// Reads through an OSDP peripheral device already running.
    #[cfg(feature = "osdp")]
    pub fn osdp(config: &PanelConfig, peripheral: OsdpPeripheral, news: Sender<DoorNews>) -> Self {
        PanelReader {
            link: Link::Osdp(Arc::new(peripheral)),
            format: config.format,
            facility: config.facility_code,
            max_age: config.max_read_age(),
            news,
        }
    }

    /// Reads on a Wiegand output, sent from a thread of their own (a frame takes tens of ms).
    pub fn wiegand(
        config: &PanelConfig,
        mut output: WiegandOutput,
        news: Sender<DoorNews>,
    ) -> Result<Self, SpawnError> {
        let (frames, queue) = mpsc::channel::<(WiegandFrame, Instant)>();
        let max_age = config.max_read_age();
        let dropped = news.clone();
        let worker = spawn("wiegand", move || {
            for (frame, granted) in queue {
                let age = granted.elapsed();
                if age > max_age {
                    read_dropped(&dropped, format!("the read waited {} ms", age.as_millis()));
                    continue;
                }
                match output.send(&frame) {
                    Ok(sent) if sent.longest_pulse > Duration::from_micros(200) => {
                        log::warn!(
                                "Wiegand: a pulse stretched to {} µs (the CPU was busy); the panel may reject the read",
                                sent.longest_pulse.as_micros()
                            );
                    }
                    Ok(_) => {}
                    Err(e) => read_dropped(&dropped, e.to_string()),
                }
            }
        })?;
        Ok(PanelReader {
            link: Link::Wiegand(WiegandLink {
                frames: Some(frames),
                worker: Some(worker),
            }),
            format: config.format,
            facility: config.facility_code,
            max_age,
            news,
        })
    }

    /// Where the kiosk's tamper switch is reported to the panel, if the link carries it (OSDP).
    pub fn tamper_reporter(&self) -> Option<Box<dyn Fn(bool) + Send>> {
        match &self.link {
            #[cfg(feature = "osdp")]
            Link::Osdp(peripheral) => {
                let peripheral = peripheral.clone();
                Some(Box::new(move |active| {
                    if let Err(e) = peripheral.tamper(active) {
                        log::error!("OSDP: {e}");
                    }
                }))
            }
            Link::Wiegand(_) => None,
        }
    }

    /// The frame for the person `event` grants, or why there is none.
    fn frame(&self, event: &Event) -> Result<WiegandFrame, String> {
        let number = event.credential.ok_or_else(|| {
            format!(
                "{} has no credential number (`enrol credential`)",
                event.person.as_deref().unwrap_or("the person")
            )
        })?;
        self.format
            .encode(Credential {
                facility: self.facility,
                number,
            })
            .map_err(|e| e.to_string())
    }
}

impl EventSink for PanelReader {
    fn name(&self) -> &str {
        "access-control panel"
    }

    fn deliver(&mut self, event: &Event) -> Result<(), SinkError> {
        if event.kind != EventKind::Granted {
            return Ok(());
        }
        if let Some(age) = grant_too_old(event.at_ms, event.decided, self.max_age) {
            read_dropped(&self.news, age);
            return Ok(());
        }
        let frame = match self.frame(event) {
            Ok(frame) => frame,
            Err(detail) => {
                read_dropped(&self.news, detail);
                return Ok(());
            }
        };
        let granted = event.decided.unwrap_or_else(Instant::now);
        let sent = match &self.link {
            #[cfg(feature = "osdp")]
            Link::Osdp(peripheral) => peripheral.card_read(frame, granted).is_ok(),
            Link::Wiegand(link) => link.send(frame, granted),
        };
        if sent {
            Ok(())
        } else {
            Err(SinkError {
                sink: self.name().into(),
                detail: "the link's thread has stopped".into(),
            })
        }
    }
}

fn read_dropped(news: &Sender<DoorNews>, detail: String) {
    log::warn!("access-control panel: read not sent: {detail}");
    let _ = news.send(DoorNews::Event(EventKind::PanelReadDropped { detail }));
}

/// The OSDP link's notices as the kiosk's news.
#[cfg(feature = "osdp")]
pub fn link_notices(news: Sender<DoorNews>) -> Box<dyn FnMut(LinkNotice) + Send> {
    Box::new(move |notice| {
        let news_item = match notice {
            LinkNotice::Online => DoorNews::Event(EventKind::PanelOnline),
            LinkNotice::Offline => DoorNews::Event(EventKind::PanelOffline),
            LinkNotice::Indication(indication) => DoorNews::Indication(indication),
            LinkNotice::ReadDropped { age } => DoorNews::Event(EventKind::PanelReadDropped {
                detail: format!(
                    "the panel link could not carry the read within {} ms",
                    age.as_millis()
                ),
            }),
        };
        let _ = news.send(news_item);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use access::vocabulary::DenialReason;
    use door_io::line::OutputLine;
    use door_io::wiegand::WiegandTiming;

    /// The data lines' pulses, as the bits they carry.
    #[derive(Clone, Default)]
    struct Bits(Arc<Mutex<Vec<bool>>>);

    struct DataLine {
        bits: Bits,
        one: bool,
    }

    impl OutputLine for DataLine {
        fn set_active(&mut self, active: bool) -> Result<(), DoorIoError> {
            if active {
                self.bits.0.lock().unwrap().push(self.one);
            }
            Ok(())
        }
    }

    fn config() -> PanelConfig {
        PanelConfig {
            mode: PanelMode::Wiegand,
            format: WiegandFormat::Bits26,
            facility_code: 42,
            max_read_age_ms: 2_000,
            osdp: None,
            wiegand: None,
        }
    }

    fn reader() -> (PanelReader, Bits, mpsc::Receiver<DoorNews>) {
        let bits = Bits::default();
        let line = |one| {
            Box::new(DataLine {
                bits: bits.clone(),
                one,
            }) as Box<dyn OutputLine>
        };
        let output = WiegandOutput::new(line(false), line(true), WiegandTiming::default()).unwrap();
        let (news, heard) = mpsc::channel();
        (
            PanelReader::wiegand(&config(), output, news).unwrap(),
            bits,
            heard,
        )
    }

    fn event(kind: EventKind, credential: Option<u32>) -> Event {
        Event {
            at_ms: access::events::now_ms(),
            track: Some(1),
            person: Some("0a1b2c3d4e5f6071".into()),
            credential,
            ..Event::new("front", "m", kind)
        }
    }

    fn dropped(heard: &mpsc::Receiver<DoorNews>) -> String {
        match heard.recv_timeout(Duration::from_secs(5)) {
            Ok(DoorNews::Event(EventKind::PanelReadDropped { detail })) => detail,
            other => panic!("expected a dropped read, got {other:?}"),
        }
    }

    #[test]
    fn a_grant_goes_out_as_the_persons_credential_and_a_denial_sends_nothing() {
        let (mut reader, bits, heard) = reader();
        reader
            .deliver(&event(
                EventKind::Denied {
                    reason: DenialReason::Unknown,
                },
                Some(7),
            ))
            .unwrap();
        reader
            .deliver(&event(EventKind::Granted, Some(51_234)))
            .unwrap();
        drop(reader);
        let sent = bits.0.lock().unwrap().clone();
        assert_eq!(
            WiegandFrame::decode(&sent).unwrap(),
            Credential {
                facility: 42,
                number: 51_234
            }
        );
        assert!(heard.try_recv().is_err());
    }

    #[test]
    fn a_grant_without_a_credential_a_number_too_large_or_a_stale_grant_is_reported_not_sent() {
        let (mut reader, bits, heard) = reader();
        reader.deliver(&event(EventKind::Granted, None)).unwrap();
        assert!(dropped(&heard).contains("has no credential number"));
        reader
            .deliver(&event(EventKind::Granted, Some(70_000)))
            .unwrap();
        assert!(dropped(&heard).contains("credential number 70000 does not fit"));
        let mut stale = event(EventKind::Granted, Some(5));
        stale.decided = Some(Instant::now() - Duration::from_secs(3));
        reader.deliver(&stale).unwrap();
        assert!(dropped(&heard).contains("ms old"));
        drop(reader);
        assert!(bits.0.lock().unwrap().is_empty());
    }
}
