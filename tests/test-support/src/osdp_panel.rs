//! libosdp's own control panel (CP) as the kiosk's peer, on the master side of a pseudo-terminal
//! pair: the kiosk opens the slave's device path as it opens an RS-485 adapter.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use door_io::osdp::SerialChannel;
use door_io::wiegand::{Credential, WiegandFrame};
use libosdp::{ControlPanelBuilder, OsdpCommand, OsdpEvent, OsdpFlag, PdInfoBuilder};
use serialport::{SerialPort, TTYPort};

/// A terminal pair: the slave's path for the kiosk (the pair keeps the slave open, so that the master
/// never sees it hang up) and the pair itself.
pub fn terminal() -> (String, TTYPort, TTYPort) {
    let (mut master, slave) = TTYPort::pair().expect("a pseudo-terminal pair");
    master
        .set_timeout(Duration::from_millis(1))
        .expect("a master timeout");
    let path = slave.name().expect("the slave's path");
    (path, master, slave)
}

/// A card read as the panel decoded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRead {
    /// The bits the read carried.
    pub bits: usize,
    /// The credential in them, parities checked.
    pub credential: Credential,
    /// When the panel's callback had it.
    pub at: Instant,
}

/// libosdp's control panel for one PD, on its own thread.
pub struct Panel {
    /// Every event the PD reported, with when.
    pub events: Arc<Mutex<Vec<(OsdpEvent, Instant)>>>,
    /// Commands for the PD.
    pub commands: Sender<OsdpCommand>,
    online: Arc<AtomicBool>,
    stop: Sender<()>,
    worker: Option<JoinHandle<()>>,
}

impl Panel {
    /// A panel polling the PD at `address` on `master`, in the Secure Channel with `key` only.
    pub fn start(master: TTYPort, address: u8, key: [u8; 16]) -> Panel {
        let events = Arc::new(Mutex::new(Vec::new()));
        let (commands, command_queue) = mpsc::channel::<OsdpCommand>();
        let (stop, stopped) = mpsc::channel::<()>();
        let seen = events.clone();
        let online = Arc::new(AtomicBool::new(false));
        let link_up = online.clone();
        let worker = std::thread::spawn(move || {
            let pd = PdInfoBuilder::new()
                .name("kiosk")
                .and_then(|pd| pd.address(address.into()))
                .and_then(|pd| pd.baud_rate(9_600))
                .expect("the PD's settings")
                .flag(OsdpFlag::EnforceSecure)
                .secure_channel_key(key);
            let mut cp = ControlPanelBuilder::new()
                .add_channel(Box::new(SerialChannel(master)), vec![pd])
                .build()
                .expect("libosdp's control panel");
            cp.set_event_callback(move |_, event| {
                seen.lock()
                    .expect("events lock")
                    .push((event, Instant::now()));
                0
            });
            while stopped.try_recv().is_err() {
                cp.refresh();
                link_up.store(cp.is_online(0) && cp.is_sc_active(0), Ordering::SeqCst);
                for command in command_queue.try_iter() {
                    cp.send_command(0, command).expect("a command queued");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Panel {
            events,
            commands,
            online,
            stop,
            worker: Some(worker),
        }
    }

    /// Waits until the PD answers in the Secure Channel; false if it has not within `patience`.
    pub fn wait_online(&self, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        while !self.online.load(Ordering::SeqCst) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// The card reads received so far, decoded as a panel decodes Wiegand data.
    pub fn card_reads(&self) -> Vec<CardRead> {
        self.events
            .lock()
            .expect("events lock")
            .iter()
            .filter_map(|(event, at)| match event {
                OsdpEvent::CardRead(read) => {
                    let bits: Vec<bool> = (0..read.nr_bits)
                        .map(|i| read.data[i / 8] & (0x80 >> (i % 8)) != 0)
                        .collect();
                    Some(CardRead {
                        bits: read.nr_bits,
                        credential: WiegandFrame::decode(&bits).expect("a valid frame"),
                        at: *at,
                    })
                }
                _ => None,
            })
            .collect()
    }
}

impl Drop for Panel {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}
