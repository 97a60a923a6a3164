//! The peripheral device on libosdp, on a thread of its own.

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

use super::{LinkNotice, LinkState, OsdpConfig, REFRESH};
use crate::indication::{Indication, LedColor};
use crate::wiegand::WiegandFrame;
use crate::DoorIoError;

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
    /// The PD on the serial device `config` names, with `key` as its secure channel base key; a
    /// read not carried within `max_read_age` of its grant is dropped; `notices` hears every change
    /// of the link.
    pub fn open(
        config: &OsdpConfig,
        key: [u8; 16],
        max_read_age: Duration,
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
        Self::start(
            config,
            key,
            max_read_age,
            Box::new(SerialChannel(port)),
            notices,
        )
    }

    /// The PD on any byte stream (a serial port, a socket); `config.device` names it in errors.
    pub fn start(
        config: &OsdpConfig,
        key: [u8; 16],
        max_read_age: Duration,
        channel: Box<dyn Channel>,
        notices: Box<dyn FnMut(LinkNotice) + Send>,
    ) -> Result<Self, DoorIoError> {
        config.check()?;
        let setup = |detail: String| DoorIoError::Osdp {
            device: config.device.clone(),
            detail,
        };
        let state = Arc::new(Mutex::new(LinkState::default()));
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
                    max_age: max_read_age,
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
            let secure = self.device.is_sc_active();
            let now_online = self.device.is_online() && secure;
            let indication = self.indication.lock().expect("OSDP indication lock").take();
            // The state is updated before any notice goes out, so that whoever hears a notice
            // reads the state it announces.
            {
                let mut state = self.state.lock().expect("OSDP state lock");
                state.online = now_online;
                state.secure = secure;
                if let Some(indication) = indication {
                    state.indication = indication;
                }
            }
            if now_online != online {
                online = now_online;
                (self.notices)(if online {
                    LinkNotice::Online
                } else {
                    LinkNotice::Offline
                });
            }
            if let Some(indication) = indication {
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
