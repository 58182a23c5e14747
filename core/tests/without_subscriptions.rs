//! A build without subscription mode (herald-core with `listen` but not `subscribe`):
//! a configuration that subscribes is refused with a clear error, and a listener that
//! asks to subscribe later stays a multicast listener and sends no Subscribe.
#![cfg(all(feature = "listen", not(feature = "subscribe")))]

use herald_core::*;
use std::net::{IpAddr, Ipv4Addr};

const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[test]
fn a_configuration_that_subscribes_is_refused_with_a_clear_error() {
    for subscribe in [Subscribe::Always, Subscribe::WithoutBeacons] {
        let mut table = ClientStorage::<4>::new();
        let (known, index) = table.parts();
        let mut config = ClientConfig::new(7);
        config.interest = Some(Interest::all());
        config.subscribe = subscribe;
        let refused = Client::<'_, 1>::new(config, known, index).err();
        assert_eq!(refused, Some(ClientError::NoSubscriptions), "{subscribe:?}");
    }
    assert!(ClientError::NoSubscriptions
        .to_string()
        .contains("`subscribe`"));
}

#[test]
fn asking_to_subscribe_sends_no_subscribe() {
    let directory = Location::new(IP, 37399).unwrap();
    let mut table = ClientStorage::<4>::new();
    let (known, index) = table.parts();
    let mut config = ClientConfig::new(7);
    config.interest = Some(Interest::all());
    config.directories.push(directory).unwrap();
    let mut client = Client::<'_, 1>::new(config, known, index).unwrap();
    let now = Instant::from_millis(1);
    client.subscribe(now);
    assert!(!client.is_subscribed());
    client.request_snapshot(now);
    let mut buf = [0u8; 1400];
    let mut kinds = Vec::new();
    for ms in (1..5_000).step_by(100) {
        let now = Instant::from_millis(ms);
        client.handle_timeout(now);
        while let Some(t) = client.poll_transmit(now, &mut buf) {
            kinds.push(format!(
                "{:?}",
                wire::decode(&buf[..t.len]).unwrap().message
            ));
        }
    }
    assert!(!kinds.is_empty(), "the listener asks for its snapshot");
    assert!(
        kinds.iter().all(|k| k.starts_with("SnapshotRequest")),
        "{kinds:?}"
    );
}
