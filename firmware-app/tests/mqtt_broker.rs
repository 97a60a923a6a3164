//! The MQTT sink against a real mosquitto on loopback: events wait on disk while the broker is away,
//! across a kiosk restart, and arrive in order, on their topics, once it is back.
#![cfg(feature = "mqtt")]

mod common;

use site::tls::TlsSettings;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use access::events::{Event, EventKind, EventSink};
use access::vocabulary::DenialReason;
use common::broker::{mosquitto_binary, subscribe, tls_broker, Broker};
use firmware_app::mqtt::{MqttConfig, MqttSink};

/// The sink's configuration for a broker on a free loopback port, its queue in `dir`; and the port.
fn sink_config(dir: &Path, max_queued: usize) -> (MqttConfig, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = MqttConfig {
        host: "127.0.0.1".into(),
        port,
        client_id: None,
        topic_prefix: None,
        username: None,
        password_file: None,
        tls: TlsSettings {
            plaintext: true,
            ..TlsSettings::default()
        },
        queue_path: dir.join("mqtt-queue.jsonl"),
        max_queued,
    };
    (config, port)
}

fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn event(at_ms: i64, kind: EventKind) -> Event {
    Event {
        at_ms,
        track: Some(at_ms as u64),
        person: Some("0a1b2c3d".into()),
        decided: None,
        ..Event::new("front", "model", kind)
    }
}

fn events_received(received: &Mutex<Vec<(String, String)>>) -> Vec<(String, i64)> {
    received
        .lock()
        .unwrap()
        .iter()
        .filter(|(topic, _)| topic.contains("/events/"))
        .map(|(topic, payload)| {
            let event: Event = serde_json::from_str(payload).unwrap();
            (topic.clone(), event.at_ms)
        })
        .collect()
}

#[test]
fn events_wait_on_disk_for_the_broker_and_arrive_in_order() {
    let Some(mosquitto) = mosquitto_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (config, port) = sink_config(dir.path(), 1000);

    // The broker is down: events are accepted and kept on disk, and survive a kiosk restart.
    let mut sink = MqttSink::start(&config, "front").unwrap();
    sink.deliver(&event(1, EventKind::Granted)).unwrap();
    sink.deliver(&event(
        2,
        EventKind::Denied {
            reason: DenialReason::Unknown,
        },
    ))
    .unwrap();
    sink.deliver(&event(
        3,
        EventKind::Denied {
            reason: DenialReason::Tailgating,
        },
    ))
    .unwrap();
    assert!(!sink.is_connected());
    assert_eq!(sink.waiting(), 3);
    assert_eq!(sink.backlog(), 3, "what the kiosk's health report shows");
    drop(sink);
    let on_disk = std::fs::read_to_string(&config.queue_path).unwrap();
    assert_eq!(on_disk.lines().count(), 3);

    let broker = Broker::start(&mosquitto, dir.path(), port);
    let received = subscribe(port, "kiosk/front/#");
    let mut sink = MqttSink::start(&config, "front").unwrap();
    wait_for("three events", || events_received(&received).len() >= 3);
    assert_eq!(
        events_received(&received),
        [
            ("kiosk/front/events/granted".to_owned(), 1),
            ("kiosk/front/events/denied".to_owned(), 2),
            ("kiosk/front/events/tailgating".to_owned(), 3),
        ]
    );
    wait_for("the queue to empty", || sink.waiting() == 0);
    assert!(received
        .lock()
        .unwrap()
        .contains(&("kiosk/front/status".to_owned(), "online".to_owned())));

    // The broker goes away while the kiosk runs, and comes back.
    drop(broker);
    wait_for("the sink to notice", || !sink.is_connected());
    sink.deliver(&event(4, EventKind::Granted)).unwrap();
    sink.deliver(&event(
        5,
        EventKind::CameraLost {
            detail: "unplugged".into(),
        },
    ))
    .unwrap();
    assert_eq!(sink.waiting(), 2);
    let _broker = Broker::start(&mosquitto, dir.path(), port);
    wait_for("the two later events", || {
        events_received(&received).len() >= 5
    });
    assert_eq!(
        events_received(&received)[3..],
        [
            ("kiosk/front/events/granted".to_owned(), 4),
            ("kiosk/front/events/camera_lost".to_owned(), 5),
        ]
    );
    wait_for("the queue to empty", || sink.waiting() == 0);
    drop(sink);
    assert_eq!(std::fs::read_to_string(&config.queue_path).unwrap(), "");
}

#[test]
fn a_broker_that_flaps_every_second_for_a_minute_loses_no_event() {
    const FLAPPING: Duration = Duration::from_secs(60);
    const EVERY: Duration = Duration::from_millis(100);
    let Some(mosquitto) = mosquitto_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (config, port) = sink_config(dir.path(), 10_000);
    let mut broker = Some(Broker::start(&mosquitto, dir.path(), port));
    let received = subscribe(port, "kiosk/front/#");
    let mut sink = MqttSink::start(&config, "front").unwrap();

    // One event every 100 ms (a busy door) while the broker is up for a second, then down for one.
    let started = Instant::now();
    let mut delivered = Vec::new();
    let mut flips = 0;
    let mut next_flip = started + Duration::from_secs(1);
    while started.elapsed() < FLAPPING {
        let at_ms = delivered.len() as i64 + 1;
        sink.deliver(&event(at_ms, EventKind::Granted))
            .expect("the sink accepts every event, broker or not");
        delivered.push(at_ms);
        if Instant::now() >= next_flip {
            broker = match broker.take() {
                Some(up) => {
                    drop(up);
                    None
                }
                None => Some(Broker::start(&mosquitto, dir.path(), port)),
            };
            flips += 1;
            next_flip += Duration::from_secs(1);
        }
        std::thread::sleep(EVERY);
    }
    assert!(flips >= 50, "{flips} flips");
    if broker.is_none() {
        broker = Some(Broker::start(&mosquitto, dir.path(), port));
    }
    wait_for("every event", || {
        let got: std::collections::BTreeSet<i64> = events_received(&received)
            .into_iter()
            .map(|(_, at)| at)
            .collect();
        got.len() == delivered.len()
    });
    wait_for("the queue to empty", || sink.waiting() == 0);
    let arrivals: Vec<i64> = events_received(&received)
        .into_iter()
        .map(|(_, at)| at)
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    let first_arrivals: Vec<i64> = arrivals
        .iter()
        .copied()
        .filter(|at| seen.insert(*at))
        .collect();
    assert_eq!(first_arrivals, delivered, "every event arrived, in order");
    eprintln!(
        "{} events through {flips} broker flips: {} messages received ({} repeated by QoS 1 redelivery)",
        delivered.len(),
        arrivals.len(),
        arrivals.len() - delivered.len()
    );
    drop(sink);
    drop(broker);
}

#[test]
fn over_tls_the_kiosk_verifies_the_broker_and_a_wrong_certificate_is_refused_by_name() {
    let Some(mosquitto) = mosquitto_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let authority = test_support::certificates::Authority::new(dir.path(), "site-ca");
    let stranger = test_support::certificates::Authority::new(dir.path(), "other-ca");
    let kiosk = authority.client("kiosk-front");
    let (mut config, tls_port) = sink_config(dir.path(), 100);
    let plain_port = test_support::postgres_server::free_port();
    let _broker = tls_broker(&mosquitto, dir.path(), &authority, (tls_port, plain_port));
    let received = subscribe(plain_port, "kiosk/front/#");
    config.tls = TlsSettings {
        ca_file: Some(authority.cert.clone()),
        cert_file: Some(kiosk.cert.clone()),
        key_file: Some(kiosk.key.clone()),
        ..TlsSettings::default()
    };
    config.host = "localhost".into();

    let mut sink = MqttSink::start(&config, "front").unwrap();
    sink.deliver(&event(1, EventKind::Granted)).unwrap();
    wait_for("the event over TLS", || {
        events_received(&received).len() == 1
    });
    wait_for("the queue to empty", || sink.waiting() == 0);
    drop(sink);

    // A broker whose certificate another authority signed: refused, the reason logged and kept.
    let mut wrong = config.clone();
    wrong.queue_path = dir.path().join("wrong-queue.jsonl");
    wrong.tls.ca_file = Some(stranger.cert.clone());
    let mut sink = MqttSink::start(&wrong, "front").unwrap();
    sink.deliver(&event(2, EventKind::Granted)).unwrap();
    wait_for("the refusal", || sink.last_error().is_some());
    let refusal = sink.last_error().unwrap();
    assert!(refusal.to_lowercase().contains("certificate"), "{refusal}");
    assert!(!sink.is_connected());
    assert_eq!(sink.waiting(), 1, "the event waits on disk");
    drop(sink);

    // Without a client certificate the broker refuses the kiosk.
    let mut anonymous = config.clone();
    anonymous.queue_path = dir.path().join("anonymous-queue.jsonl");
    anonymous.tls.cert_file = None;
    anonymous.tls.key_file = None;
    let mut sink = MqttSink::start(&anonymous, "front").unwrap();
    sink.deliver(&event(3, EventKind::Granted)).unwrap();
    wait_for("the broker's refusal", || sink.last_error().is_some());
    std::thread::sleep(Duration::from_millis(500));
    assert!(!sink.is_connected());
    assert_eq!(events_received(&received).len(), 1);
}

#[test]
fn the_broker_retains_the_newest_audit_head_for_verify_log_to_check_against() {
    use access::vocabulary::ChainHead;
    use firmware_app::mqtt::retained_audit_head;

    let Some(mosquitto) = mosquitto_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (config, port) = sink_config(dir.path(), 1000);
    let patience = Duration::from_secs(5);
    // No broker: said so, by its address.
    let error = retained_audit_head(&config, "front", patience).unwrap_err();
    assert!(
        error.to_string().contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );

    let _broker = Broker::start(&mosquitto, dir.path(), port);
    assert_eq!(
        retained_audit_head(&config, "front", patience).unwrap(),
        None
    );
    let mut sink = MqttSink::start(&config, "front").unwrap();
    for (at_ms, seq) in [(1, 4), (2, 9)] {
        sink.deliver(&event(
            at_ms,
            EventKind::AuditHead {
                seq,
                mac: format!("{seq:064x}"),
            },
        ))
        .unwrap();
    }
    sink.deliver(&event(3, EventKind::Started)).unwrap();
    wait_for("the events to leave the queue", || sink.waiting() == 0);
    drop(sink);
    // Read by a client of its own after the kiosk has gone: the newest head, not a later event.
    assert_eq!(
        retained_audit_head(&config, "front", patience).unwrap(),
        Some(ChainHead {
            seq: 9,
            mac: format!("{:064x}", 9)
        })
    );
    assert_eq!(
        retained_audit_head(&config, "back", patience).unwrap(),
        None
    );
}
