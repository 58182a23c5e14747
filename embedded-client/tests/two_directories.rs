//! The bare smoltcp driver with two herald-core directories that share their registry
//! (a publisher and a replica, as `herald serve` runs them on etcd), all on smoltcp's
//! in-memory loopback device. The client is configured with no directory: it learns
//! both from their beacons, follows the publisher, and when the publisher stops and the
//! replica takes over publishing, it moves there without reporting its service gone.

mod support;

use herald_core::{Directory, DirectoryConfig, DirectoryStorage, Record};
use herald_embedded::{bare, Buffers, ClientEvent, Config, Interest};
use smoltcp::iface::{SocketSet, SocketStorage};
use smoltcp::time::{Duration, Instant};
use support::{local, loopback, sensor, DirectoryNode, SocketBuffers};

#[test]
fn learns_both_directories_and_follows_the_publisher_through_a_takeover() {
    let (mut device, mut iface) = loopback(11);
    let mut socket_storage: [SocketStorage<'_>; 3] = Default::default();
    let mut sockets = SocketSet::new(&mut socket_storage[..]);
    let (first, second) = (local(37399), local(37400));
    let (mut buffers_a, mut buffers_b) = (SocketBuffers::new(), SocketBuffers::new());
    let mut storage_a = DirectoryStorage::<8>::new();
    let mut storage_b = DirectoryStorage::<8>::new();
    let (slots_a, index_a) = storage_a.parts();
    let (slots_b, index_b) = storage_b.parts();
    let group = herald_embedded::DEFAULT_GROUP;
    let mut nodes = [
        DirectoryNode::new(
            Directory::new(DirectoryConfig::new(first, group), slots_a, index_a).unwrap(),
            37399,
            &mut buffers_a,
            &mut sockets,
        ),
        DirectoryNode::new(
            Directory::new(DirectoryConfig::new(second, group), slots_b, index_b).unwrap(),
            37400,
            &mut buffers_b,
            &mut sockets,
        ),
    ];
    nodes[1]
        .directory
        .set_publishing(herald_core::Instant::ZERO, false);

    // No directory configured: both are learned from their beacons.
    let mut config = Config::new(0xfeed);
    config.client.interest = Some(Interest::all());
    let mut buffers: Buffers<8> = Buffers::new();
    let mut herald =
        bare::Herald::<2>::new(config, &mut buffers, &mut iface, &mut sockets).unwrap();
    let (name, _, registration) = sensor();
    herald.register(Instant::ZERO, registration).unwrap();

    let mut now = Instant::ZERO;
    let mut seen = Vec::new();
    let mut stopped_at = None;
    let mut promoted = false;
    // 30 simulated seconds at most, in 5 ms steps.
    for _ in 0..6000 {
        iface.poll(now, &mut device, &mut sockets);
        let mut stored = Vec::new();
        for node in &mut nodes {
            stored.extend(node.poll(now, &mut sockets));
        }
        // The shared store: every change reaches every running directory.
        let core_now = herald_embedded::time::from_smoltcp(now);
        for record in stored {
            for node in nodes.iter_mut().filter(|n| n.running) {
                node.directory.apply(core_now, record.clone()).unwrap();
            }
        }
        iface.poll(now, &mut device, &mut sockets);
        herald.poll(now, &mut sockets);
        while let Some(event) = herald.poll_event() {
            seen.push(event);
        }
        let known = herald.client().directories().count();
        let discovered = seen
            .iter()
            .any(|e| matches!(e, ClientEvent::Discovered(s) if s.name() == &name));
        if stopped_at.is_none() && discovered && known == 2 {
            assert_eq!(herald.client().current_directory(), Some(first));
            assert!(nodes[1]
                .directory
                .record("sensor")
                .is_some_and(Record::is_live));
            nodes[0].running = false;
            stopped_at = Some(now);
        }
        // An election takes a second.
        if let Some(t) = stopped_at {
            if !promoted && now - t >= Duration::from_secs(1) {
                nodes[1].directory.set_publishing(core_now, true);
                promoted = true;
            }
            if now - t >= Duration::from_secs(12) {
                break;
            }
        }
        now += Duration::from_millis(5);
    }
    assert!(
        stopped_at.is_some(),
        "never learned both directories: {seen:?}"
    );
    assert_eq!(herald.client().current_directory(), Some(second));
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, ClientEvent::Unregistered(_))),
        "spurious unregistered: {seen:?}"
    );
    // The registration lives on, renewed through the second directory.
    let record = nodes[1].directory.record("sensor").unwrap();
    assert!(record.is_live());
    assert!(nodes[1].directory.stats().renewals > 0);
    assert!(herald.client().service("sensor").is_some());
}
