//! The kiosk as an OSDP peripheral device (PD) on the panel's RS-485 bus (IEC 60839-11-5), through
//! libosdp.
//!
//! - A grant goes to the panel as a card read: the person's credential in the panel's Wiegand format
//!   ([`WiegandFrame`]), in the next reply to the panel's poll. A denial sends nothing.
//! - The link runs in the Secure Channel only (AES-128, the secure channel base key from a key file):
//!   the install-mode default key is never accepted, so a panel that does not know the key gets no
//!   reads.
//! - The panel's LED and buzzer commands become [`Indication`]s the kiosk shows on its screen.
//! - The kiosk's tamper input goes to the panel as local status.
//! - A panel that stops polling is reported once ([`LinkNotice::Offline`]), and again when it is
//!   back; reads are not held for it: a read older than `max_read_age_ms` when the link would carry
//!   it is dropped, so that nobody is let in late.
//!
//! libosdp is driven from one thread of ours, refreshed every [`REFRESH`].

use std::io::{Read, Write};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use libosdp::{
    Channel, ChannelError, OsdpCommand, OsdpEvent, OsdpEventCardRead, OsdpFlag, OsdpLedColor,
    OsdpStatusReport, OsdpStatusReportType, PdCapEntity, PdCapability, PdInfoBuilder,
    PeripheralDevice,
};
use serde::Deserialize;

use crate::wiegand::WiegandFrame;
use crate::DoorIoError;

/// How often libosdp is given the CPU: well inside the panel's 200 ms reply time.
pub const REFRESH: Duration = Duration::from_millis(5);

/// Serial speeds OSDP devices use.
pub const BAUD_RATES: [u32; 6] = [9_600, 19_200, 38_400, 57_600, 115_200, 230_400];

/// `[panel.osdp]` in kiosk.toml.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsdpConfig {
    /// The serial device of the RS-485 adapter, e.g. `/dev/ttyUSB0`.
    pub device: String,
    /// Its speed, as set on the panel.
    #[serde(default = "default_baud_rate")]
    pub baud_rate: u32,
    /// The kiosk's address on the bus, 0–126, as set on the panel.
    pub address: u8,
    /// The secure channel base key (SCBK): 32 hex digits, readable by the kiosk's user only.
    pub key_file: std::path::PathBuf,
    /// A read the link has not carried this long after the grant is dropped.
    #[serde(default = "default_max_read_age_ms")]
    pub max_read_age_ms: u64,
}

fn default_baud_rate() -> u32 {
    9_600
}

fn default_max_read_age_ms() -> u64 {
    2_000
}

impl OsdpConfig {
    /// The address and speed as OSDP allows them.
    pub fn check(&self) -> Result<(), DoorIoError> {
        DoorIoError::check_range("OSDP address", self.address.into(), (0, 126), "")?;
        if !BAUD_RATES.contains(&self.baud_rate) {
            return Err(DoorIoError::Osdp {
                device: self.device.clone(),
                detail: format!("baud rate {} is not one of {BAUD_RATES:?}", self.baud_rate),
            });
        }
        DoorIoError::check_range(
            "OSDP max_read_age_ms",
            self.max_read_age_ms,
            (100, 10_000),
            "ms",
        )?;
        Ok(())
    }
}

/// A colour the panel asked the reader's LED to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedColor {
    /// Off.
    Off,
    /// Red: usually a denial or a locked door.
    Red,
    /// Green: usually a grant.
    Green,
    /// Amber.
    Amber,
    /// Blue.
    Blue,
    /// Another colour code.
    Other(u8),
}

impl From<OsdpLedColor> for LedColor {
    fn from(color: OsdpLedColor) -> Self {
        match color {
            OsdpLedColor::None => LedColor::Off,
            OsdpLedColor::Red => LedColor::Red,
            OsdpLedColor::Green => LedColor::Green,
            OsdpLedColor::Amber => LedColor::Amber,
            OsdpLedColor::Blue => LedColor::Blue,
            OsdpLedColor::Magenta => LedColor::Other(5),
            OsdpLedColor::Cyan => LedColor::Other(6),
            OsdpLedColor::Unknown(code) => LedColor::Other(code),
        }
    }
}

/// What the panel asked the reader to show, as the screen shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Indication {
    /// The LED's colour, once the panel has set one.
    pub led: Option<LedColor>,
    /// The buzzer sounds.
    pub buzzer: bool,
}

/// The link to the panel as the kiosk last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkState {
    /// The panel polls us.
    pub online: bool,
    /// In the Secure Channel.
    pub secure: bool,
    /// The panel's last LED and buzzer commands.
    pub indication: Indication,
    /// Card reads queued for the panel's next polls.
    pub reads_queued: u64,
    /// Card reads dropped because the link could not carry them in time.
    pub reads_dropped: u64,
}

/// A change on the link the kiosk reports as an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkNotice {
    /// The panel polls us in the Secure Channel.
    Online,
    /// The panel stopped polling (wiring cut, panel down, wrong key).
    Offline,
    /// The panel changed the LED or buzzer.
    Indication(Indication),
    /// A read was not sent: the link could not carry it in time.
    ReadDropped {
        /// How old the grant was.
        age: Duration,
    },
}

enum Request {
    CardRead {
        frame: WiegandFrame,
        granted: Instant,
    },
    Tamper(bool),
    Stop,
}

/// The kiosk's OSDP peripheral device, running on its own thread.
pub struct OsdpPeripheral {
    requests: Sender<Request>,
    state: Arc<Mutex<LinkState>>,
    worker: Option<JoinHandle<()>>,
}

impl OsdpPeripheral {
    /// The PD on the serial device `config` names, with `key` as its secure channel base key;
    /// `notices` hears every change of the link.
    pub fn open(
        config: &OsdpConfig,
        key: [u8; 16],
        notices: Box<dyn FnMut(LinkNotice) + Send>,
    ) -> Result<Self, DoorIoError> {
        config.check()?;
        let port = serialport::new(&config.device, config.baud_rate)
            .timeout(Duration::from_millis(1))
            .open_native()
            .map_err(|e| DoorIoError::Osdp {
                device: config.device.clone(),
                detail: e.to_string(),
            })?;
        Self::start(config, key, Box::new(SerialChannel(port)), notices)
    }

    /// The PD on any byte stream (a serial port, a socket); `config.device` names it in errors.
    pub fn start(
        config: &OsdpConfig,
        key: [u8; 16],
        channel: Box<dyn Channel>,
        notices: Box<dyn FnMut(LinkNotice) + Send>,
    ) -> Result<Self, DoorIoError> {
        config.check()?;
        let setup = |detail: String| DoorIoError::Osdp {
            device: config.device.clone(),
            detail,
        };
        let state = Arc::new(Mutex::new(LinkState::default()));
        let max_age = Duration::from_millis(config.max_read_age_ms);
        let (address, baud_rate) = (config.address, config.baud_rate);
        let (requests, receiver) = mpsc::channel();
        let (ready, setup_result) = mpsc::channel();
        let worker_state = state.clone();
        let worker = std::thread::Builder::new()
            .name("osdp-pd".into())
            .spawn(move || {
                let device = match pd_info(address, baud_rate, key)
                    .and_then(|info| PeripheralDevice::new(info, channel))
                {
                    Ok(device) => {
                        let _ = ready.send(Ok(()));
                        device
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e.to_string()));
                        return;
                    }
                };
                Link {
                    device,
                    state: worker_state,
                    notices,
                    indication: Arc::new(Mutex::new(None)),
                    max_age,
                }
                .run(&receiver);
            })
            .map_err(|e| setup(e.to_string()))?;
        setup_result
            .recv()
            .map_err(|_| setup("the OSDP thread stopped".into()))?
            .map_err(setup)?;
        Ok(OsdpPeripheral {
            requests,
            state,
            worker: Some(worker),
        })
    }

    /// Queues `frame` as a card read for the panel's next poll; `granted` is when the kiosk decided.
    pub fn card_read(&self, frame: WiegandFrame, granted: Instant) -> Result<(), DoorIoError> {
        self.send(Request::CardRead { frame, granted })
    }

    /// Reports the kiosk's tamper switch to the panel.
    pub fn tamper(&self, active: bool) -> Result<(), DoorIoError> {
        self.send(Request::Tamper(active))
    }

    /// The link as last seen.
    pub fn state(&self) -> LinkState {
        *self.state.lock().expect("OSDP state lock")
    }

    fn send(&self, request: Request) -> Result<(), DoorIoError> {
        self.requests.send(request).map_err(|_| DoorIoError::Osdp {
            device: "OSDP".into(),
            detail: "the OSDP thread has stopped".into(),
        })
    }
}

impl Drop for OsdpPeripheral {
    fn drop(&mut self) {
        let _ = self.requests.send(Request::Stop);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// What the panel learns of the kiosk: a card reader with an LED and a buzzer, in the Secure Channel
/// with `key` only.
fn pd_info(
    address: u8,
    baud_rate: u32,
    key: [u8; 16],
) -> Result<PdInfoBuilder, libosdp::OsdpError> {
    Ok(PdInfoBuilder::new()
        .name("gait-kiosk")?
        .address(address.into())?
        .baud_rate(baud_rate as i32)?
        .flag(OsdpFlag::EnforceSecure)
        .capabilities(&[
            PdCapability::CardDataFormat(PdCapEntity::new(1, 0)),
            PdCapability::LedControl(PdCapEntity::new(1, 1)),
            PdCapability::AudibleOutput(PdCapEntity::new(1, 1)),
            PdCapability::CommunicationSecurity(PdCapEntity::new(1, 1)),
            PdCapability::ContactStatusMonitoring(PdCapEntity::new(1, 0)),
        ])
        .secure_channel_key(key))
}

/// The libosdp side, owned by the PD's thread.
struct Link {
    device: PeripheralDevice,
    state: Arc<Mutex<LinkState>>,
    notices: Box<dyn FnMut(LinkNotice) + Send>,
    /// The panel's last LED or buzzer command, set from libosdp's command callback.
    indication: Arc<Mutex<Option<Indication>>>,
    max_age: Duration,
}

impl Link {
    fn run(mut self, requests: &Receiver<Request>) {
        let commanded = self.indication.clone();
        let mut shown = Indication::default();
        self.device.set_command_callback(move |command| {
            let mut slot = commanded.lock().expect("OSDP indication lock");
            let mut next = slot.unwrap_or(shown);
            if indicate(command, &mut next) {
                shown = next;
                *slot = Some(next);
            }
            0
        });
        let mut online = false;
        loop {
            match requests.recv_timeout(REFRESH) {
                Ok(Request::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(Request::CardRead { frame, granted }) => self.card_read(&frame, granted),
                Ok(Request::Tamper(active)) => self.tamper(active),
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.device.refresh();
            let now_online = self.device.is_online() && self.device.is_sc_active();
            if now_online != online {
                online = now_online;
                (self.notices)(if online {
                    LinkNotice::Online
                } else {
                    LinkNotice::Offline
                });
            }
            let indication = self.indication.lock().expect("OSDP indication lock").take();
            let mut state = self.state.lock().expect("OSDP state lock");
            state.online = online;
            state.secure = self.device.is_sc_active();
            if let Some(indication) = indication {
                state.indication = indication;
                drop(state);
                (self.notices)(LinkNotice::Indication(indication));
            }
        }
    }

    fn card_read(&mut self, frame: &WiegandFrame, granted: Instant) {
        let age = granted.elapsed();
        let online = self.state.lock().expect("OSDP state lock").online;
        if !online || age > self.max_age {
            self.state.lock().expect("OSDP state lock").reads_dropped += 1;
            (self.notices)(LinkNotice::ReadDropped { age });
            return;
        }
        let read = OsdpEventCardRead::new_wiegand(frame.bits().len(), frame.to_bytes())
            .expect("a frame's bytes hold its bits");
        match self.device.notify_event(OsdpEvent::CardRead(read)) {
            Ok(()) => self.state.lock().expect("OSDP state lock").reads_queued += 1,
            Err(e) => {
                log::error!("OSDP: the card read could not be queued: {e}");
                self.state.lock().expect("OSDP state lock").reads_dropped += 1;
                (self.notices)(LinkNotice::ReadDropped { age });
            }
        }
    }

    fn tamper(&mut self, active: bool) {
        let mut report = [0u8; 64];
        report[0] = u8::from(active);
        let status = OsdpStatusReport {
            type_: OsdpStatusReportType::Local,
            nr_entries: 2,
            report,
        };
        if let Err(e) = self.device.notify_event(OsdpEvent::Status(status)) {
            log::error!("OSDP: the tamper status could not be queued: {e}");
        }
    }
}

/// Applies the panel's LED or buzzer command to `indication`; whether it was one.
fn indicate(command: &OsdpCommand, indication: &mut Indication) -> bool {
    const SET_TEMPORARY: u8 = 2;
    const SET_PERMANENT: u8 = 1;
    const TONE: u8 = 2;
    match command {
        OsdpCommand::Led(led) => {
            if led.temporary.control_code == SET_TEMPORARY {
                indication.led = Some(led.temporary.on_color.into());
            } else if led.permanent.control_code == SET_PERMANENT {
                indication.led = Some(led.permanent.on_color.into());
            }
            true
        }
        OsdpCommand::Buzzer(buzzer) => {
            indication.buzzer = buzzer.control_code == TONE;
            true
        }
        _ => false,
    }
}

/// A byte stream as libosdp's channel: nothing to read yet is not an error.
pub struct SerialChannel<P: Read + Write + Send>(pub P);

impl<P: Read + Write + Send> Channel for SerialChannel<P> {
    fn get_id(&self) -> i32 {
        0
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ChannelError> {
        match self.0.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if quiet(&e) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    fn write(&mut self, buf: &[u8]) -> Result<usize, ChannelError> {
        match self.0.write(buf) {
            Ok(n) => Ok(n),
            Err(e) if quiet(&e) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    fn flush(&mut self) -> Result<(), ChannelError> {
        self.0.flush().map_err(Into::into)
    }

    fn close(&mut self) -> Result<(), ChannelError> {
        Ok(())
    }
}

fn quiet(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}
