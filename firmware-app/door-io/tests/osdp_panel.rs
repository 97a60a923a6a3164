//! The kiosk's OSDP peripheral device against libosdp's control panel, over a pseudo-terminal pair:
//! the PD opens the terminal's device path as it opens an RS-485 adapter, the panel drives the other
//! end. Secure Channel throughout; a panel with another key never gets a read.
//!
//! `cargo test --workspace --features door-io/osdp,test-support/osdp --test osdp_panel`

use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use door_io::indication::{Indication, LedColor};
use door_io::osdp::{LinkNotice, OsdpConfig, OsdpPeripheral};
use door_io::wiegand::{Credential, WiegandFormat};
use libosdp::{
    OsdpCommand, OsdpCommandBuzzer, OsdpCommandLed, OsdpEvent, OsdpLedColor, OsdpLedParams,
    OsdpStatusReportType,
};
use test_support::osdp_panel::{terminal, Panel};

const KEY: [u8; 16] = [
    0x3a, 0x91, 0x07, 0xc4, 0x5e, 0x22, 0xd8, 0x6f, 0x10, 0xab, 0x49, 0xe3, 0x77, 0x05, 0xbc, 0x68,
];
const ADDRESS: u8 = 17;
const MAX_READ_AGE: Duration = Duration::from_secs(2);
const PATIENCE: Duration = Duration::from_secs(20);

fn config(device: String) -> OsdpConfig {
    OsdpConfig {
        device,
        baud_rate: 9_600,
        address: ADDRESS,
        key_file: "unused-the-key-is-given".into(),
    }
}

fn kiosk(device: String) -> (OsdpPeripheral, Receiver<LinkNotice>) {
    let (notices, heard) = mpsc::channel();
    let peripheral = OsdpPeripheral::open(
        &config(device),
        KEY,
        MAX_READ_AGE,
        Box::new(move |notice| {
            let _ = notices.send(notice);
        }),
    )
    .unwrap();
    (peripheral, heard)
}

fn wait_for(heard: &Receiver<LinkNotice>, wanted: impl Fn(&LinkNotice) -> bool) -> LinkNotice {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match heard.recv_timeout(left) {
            Ok(notice) if wanted(&notice) => return notice,
            Ok(_) => {}
            Err(e) => panic!("no such notice in {PATIENCE:?}: {e}"),
        }
    }
}

fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "{what} within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_grant_reaches_the_panel_as_a_secure_card_read_and_the_panel_drives_the_indication() {
    let (path, master, _slave) = terminal();
    let (kiosk, heard) = kiosk(path);
    let panel = Panel::start(master, ADDRESS, KEY);
    wait_for(&heard, |n| *n == LinkNotice::Online);
    assert!(kiosk.state().secure);

    let credential = Credential {
        facility: 101,
        number: 40_961,
    };
    let frame = WiegandFormat::Bits26.encode(credential).unwrap();
    let granted = Instant::now();
    kiosk.card_read(frame.clone(), granted).unwrap();
    eventually("the card read", || !panel.card_reads().is_empty());
    let reads = panel.card_reads();
    assert_eq!(reads.len(), 1);
    assert_eq!((reads[0].bits, reads[0].credential), (26, credential));
    println!(
        "decision to the panel's receipt of the read: {:.1} ms",
        (reads[0].at - granted).as_secs_f64() * 1e3
    );

    let green = OsdpLedParams {
        control_code: 2,
        on_count: 10,
        off_count: 0,
        on_color: OsdpLedColor::Green,
        off_color: OsdpLedColor::None,
        timer_count: 30,
    };
    panel
        .commands
        .send(OsdpCommand::Led(OsdpCommandLed {
            temporary: green,
            ..OsdpCommandLed::default()
        }))
        .unwrap();
    panel
        .commands
        .send(OsdpCommand::Buzzer(OsdpCommandBuzzer {
            reader: 0,
            control_code: 2,
            on_count: 2,
            off_count: 0,
            rep_count: 1,
        }))
        .unwrap();
    wait_for(&heard, |n| {
        *n == LinkNotice::Indication(Indication {
            led: Some(LedColor::Green),
            buzzer: true,
        })
    });

    kiosk.tamper(true).unwrap();
    eventually("the tamper status", || {
        panel.events.lock().unwrap().iter().any(|(event, _)| {
            matches!(event, OsdpEvent::Status(s)
                if s.type_ == OsdpStatusReportType::Local && s.report[0] == 1)
        })
    });

    drop(panel);
    wait_for(&heard, |n| *n == LinkNotice::Offline);
    kiosk.card_read(frame, Instant::now()).unwrap();
    wait_for(&heard, |n| matches!(n, LinkNotice::ReadDropped { .. }));
    assert_eq!(kiosk.state().reads_dropped, 1);
}

#[test]
fn a_panel_with_another_key_never_gets_the_link_or_a_read() {
    let (path, master, _slave) = terminal();
    let (kiosk, heard) = kiosk(path);
    let mut wrong = KEY;
    wrong[0] ^= 0xff;
    let panel = Panel::start(master, ADDRESS, wrong);
    std::thread::sleep(Duration::from_secs(3));
    assert!(!kiosk.state().online);
    kiosk
        .card_read(
            WiegandFormat::Bits26
                .encode(Credential {
                    facility: 1,
                    number: 1,
                })
                .unwrap(),
            Instant::now(),
        )
        .unwrap();
    wait_for(&heard, |n| matches!(n, LinkNotice::ReadDropped { .. }));
    std::thread::sleep(Duration::from_millis(500));
    assert!(panel.card_reads().is_empty());
}

#[test]
fn a_stale_grant_is_not_sent() {
    let (path, master, _slave) = terminal();
    let (kiosk, heard) = kiosk(path);
    let panel = Panel::start(master, ADDRESS, KEY);
    wait_for(&heard, |n| *n == LinkNotice::Online);
    let frame = WiegandFormat::Bits34
        .encode(Credential {
            facility: 9,
            number: 9,
        })
        .unwrap();
    kiosk
        .card_read(frame, Instant::now() - Duration::from_secs(5))
        .unwrap();
    wait_for(
        &heard,
        |n| matches!(n, LinkNotice::ReadDropped { age } if *age >= Duration::from_secs(5)),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(panel.card_reads().is_empty());
}

#[test]
fn a_missing_serial_device_is_named() {
    let (notices, _heard) = mpsc::channel();
    let error = OsdpPeripheral::open(
        &config("/dev/no-such-rs485-adapter".into()),
        KEY,
        MAX_READ_AGE,
        Box::new(move |notice| {
            let _ = notices.send(notice);
        }),
    )
    .err()
    .unwrap();
    assert!(
        error
            .to_string()
            .starts_with("OSDP on /dev/no-such-rs485-adapter"),
        "{error}"
    );
}
