//! A real mosquitto for the tests of the `mqtt` feature: plain, or TLS with client certificates, and
//! a subscriber that records what it receives.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event as Notification, MqttOptions, Packet, QoS};

/// mosquitto from the system's packages; `None` (with a message) when it is missing and not
/// required (`CI`, `REQUIRE_MOSQUITTO`).
pub fn mosquitto_binary() -> Option<PathBuf> {
    let found = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        if std::env::var("CI").is_ok() || std::env::var("REQUIRE_MOSQUITTO").is_ok() {
            panic!("mosquitto is not installed (apt-get install mosquitto)");
        }
        eprintln!("SKIPPED: mosquitto is not installed");
    }
    found
}

/// A running mosquitto, stopped (SIGTERM) when dropped.
pub struct Broker(Child);

impl Broker {
    /// A broker with persistence in `dir`, anonymous, on loopback `port`.
    pub fn start(binary: &Path, dir: &Path, port: u16) -> Broker {
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n\
                 persistence true\npersistence_location {}/\n",
                dir.display()
            ),
        )
        .unwrap();
        let child = Command::new(binary).arg("-c").arg(&config).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker(child)
    }
}

impl Drop for Broker {
    /// SIGTERM, so that the broker saves its sessions (the subscriber's subscription) as it would
    /// on a real restart.
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

/// Messages received under `filter` by a subscriber with a persistent session, which reconnects by
/// itself when the broker comes back.
pub fn subscribe(port: u16, filter: &str) -> Arc<Mutex<Vec<(String, String)>>> {
    let received = Arc::new(Mutex::new(Vec::new()));
    let mut options = MqttOptions::new("integrator", "127.0.0.1", port);
    options.set_clean_session(false);
    let (client, mut connection) = Client::new(options, 16);
    client.subscribe(filter, QoS::AtLeastOnce).unwrap();
    let sink = received.clone();
    let (ready, subscribed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _client = client;
        for notification in connection.iter() {
            match notification {
                Ok(Notification::Incoming(Packet::SubAck(_))) => {
                    let _ = ready.send(());
                }
                Ok(Notification::Incoming(Packet::Publish(p))) => sink.lock().unwrap().push((
                    p.topic.clone(),
                    String::from_utf8_lossy(&p.payload).into_owned(),
                )),
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    });
    subscribed
        .recv_timeout(Duration::from_secs(10))
        .expect("subscribed");
    received
}

/// A broker that takes kiosks over TLS only, with a client certificate of the site's authority,
/// on `tls_port`; and, for the test's own subscriber, plain text on `plain_port`.
pub fn tls_broker(
    binary: &Path,
    dir: &Path,
    authority: &test_support::certificates::Authority,
    (tls_port, plain_port): (u16, u16),
) -> Broker {
    let server = authority.server("broker");
    let config = dir.join("mosquitto-tls.conf");
    std::fs::write(
        &config,
        format!(
            "per_listener_settings true\nuser root\n\
             listener {plain_port} 127.0.0.1\nallow_anonymous true\n\
             listener {tls_port} 127.0.0.1\nallow_anonymous true\n\
             cafile {}\ncertfile {}\nkeyfile {}\n\
             require_certificate true\nuse_identity_as_username true\n",
            authority.cert.display(),
            server.cert.display(),
            server.key.display()
        ),
    )
    .unwrap();
    let child = Command::new(binary).arg("-c").arg(&config).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Broker(child)
}
