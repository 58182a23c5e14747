//! A client's unregistrations: they fail over like registrations, so that a release
//! reaches some directory while any answers, and are given up only when none answered
//! for a whole lease (see "Unregistrations reach a directory" in docs/PROTOCOL.md).

mod support;

use herald_core::client::ClientStorage;
use herald_core::wire::{self, Ack, Message};
use herald_core::*;
use support::*;

const LEASE: Duration = Duration::from_secs(3);

fn ack(request: u32, lease: Duration) -> Vec<u8> {
    let ack = Ack {
        request,
        lease,
        version: Version(10),
    };
    let mut buf = [0u8; 1400];
    let n = wire::encode(&Environment::default(), &ack, &mut buf).unwrap();
    buf[..n].to_vec()
}

/// What a client sent: (when, to, Register or Unregister, request id).
type Sent = Vec<(Instant, Location, &'static str, u32)>;

/// Runs `client` until `until`, answering every request sent to a directory of
/// `answering` with an acknowledgement, and returns what it sent and reported.
fn run(
    client: &mut Client<'_, 1>,
    now: &mut Instant,
    until: Instant,
    answering: &[Location],
) -> (Sent, Vec<ClientEvent>) {
    let mut buf = [0u8; 1400];
    let mut sent = Vec::new();
    let mut events = Vec::new();
    loop {
        while let Some(t) = client.poll_transmit(*now, &mut buf) {
            let to = Location::from_socket_addr(t.destination).unwrap();
            let (kind, request, lease) = match wire::decode(&buf[..t.len]).unwrap().message {
                Message::Register(r) => ("register", r.request, LEASE),
                Message::Unregister(u) => ("unregister", u.request, Duration::ZERO),
                _ => continue,
            };
            sent.push((*now, to, kind, request));
            if answering.contains(&to) {
                client.handle_datagram(*now, t.destination, &ack(request, lease));
            }
        }
        events.extend(std::iter::from_fn(|| client.poll_event()));
        match client.poll_timeout() {
            Some(t) if t <= until => {
                *now = t.max(*now);
                client.handle_timeout(*now);
            }
            _ => break,
        }
    }
    *now = until;
    (sent, events)
}

/// A registrant whose directory A fell silent moved to B, which has never answered it
/// (down too), and unregisters at once; A is back. The unregistration used to be given
/// up after three attempts at B, as the end of a round of failovers (`Released`
/// unconfirmed) without ever going to A, so a registry shared through A kept the
/// service for its lease — or, restored by a directory restart, for the restore grace
/// (history seeds 488 and 867 with every fault class). It fails over to A now, which
/// removes it.
#[test]
fn an_unregistration_fails_over_to_a_directory_that_answers() {
    let a = nth_directory(0);
    let b = nth_directory(1);
    let mut store = ClientStorage::<1>::new();
    let (known, index) = store.parts();
    let mut config = ClientConfig::new(7);
    config.directories.push(a).unwrap();
    config.directories.push(b).unwrap();
    config.lease = LEASE;
    let mut client: Client<'_, 1> = Client::new(config, known, index).unwrap();
    let mut now = Instant::from_millis(1);
    client.register(now, service("api", 8000)).unwrap();
    let (_, events) = run(&mut client, &mut now, Instant::from_millis(2), &[a]);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ClientEvent::Registered { .. })),
        "{events:?}"
    );

    // A and B are silent: the renewal at A goes unanswered until the client leaves A.
    let mut moved = None;
    while moved.is_none() && now < Instant::from_millis(10_000) {
        let next = now + Duration::from_millis(10);
        let (_, events) = run(&mut client, &mut now, next, &[]);
        moved = events
            .iter()
            .find(|e| matches!(e, ClientEvent::DirectoryChanged(_)))
            .cloned();
    }
    assert_eq!(moved, Some(ClientEvent::DirectoryChanged(b)));

    // It unregisters at once; B stays silent, A answers again.
    let name = ServiceName::new("api").unwrap();
    client.unregister(now, &name).unwrap();
    let until = now + LEASE;
    let (sent, events) = run(&mut client, &mut now, until, &[a]);
    let at_a = sent
        .iter()
        .filter(|(_, to, kind, _)| *to == a && *kind == "unregister")
        .count();
    assert!(at_a > 0, "the unregistration never went to A: {sent:?}");
    assert!(
        events.contains(&ClientEvent::Released {
            name,
            confirmed: true
        }),
        "{events:?}"
    );
}

/// No directory answers at all: the unregistration keeps failing over between them,
/// paced like a renewal (at most a fortieth of the lease apart at each), and is given
/// up, unconfirmed, only once a whole lease has passed without an answer — by then the
/// lease has run out wherever it was held.
#[test]
fn an_unregistration_nobody_answers_is_given_up_after_a_lease() {
    let a = nth_directory(0);
    let b = nth_directory(1);
    let mut store = ClientStorage::<1>::new();
    let (known, index) = store.parts();
    let mut config = ClientConfig::new(8);
    config.directories.push(a).unwrap();
    config.directories.push(b).unwrap();
    config.lease = LEASE;
    let mut client: Client<'_, 1> = Client::new(config, known, index).unwrap();
    let mut now = Instant::from_millis(1);
    client.register(now, service("api", 8000)).unwrap();
    run(&mut client, &mut now, Instant::from_millis(2), &[a]);

    let name = ServiceName::new("api").unwrap();
    let start = now;
    client.unregister(now, &name).unwrap();
    let (sent, events) = run(&mut client, &mut now, start + LEASE.mul(2), &[]);
    let released: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, ClientEvent::Released { .. }))
        .collect();
    assert_eq!(
        released,
        [&ClientEvent::Released {
            name,
            confirmed: false
        }]
    );
    let unregisters: Vec<_> = sent.iter().filter(|s| s.2 == "unregister").collect();
    let last = unregisters.last().unwrap().0;
    assert!(
        last.saturating_since(start) >= LEASE.mul(9).div(10),
        "given up {} after it began",
        last.saturating_since(start)
    );
    for to in [a, b] {
        assert!(
            unregisters.iter().any(|s| s.1 == to),
            "never tried {to}: {sent:?}"
        );
    }
    for pair in unregisters.windows(2) {
        let gap = pair[1].0.saturating_since(pair[0].0);
        assert!(gap <= LEASE.div(40), "{gap} between two attempts: {sent:?}");
    }
}

/// The answer to an unregistration attempt sent to A arrives after the client moved on
/// to B: the release is confirmed by it (A removed the name, or held nothing), and the
/// client stops. It used to be ignored — the attempts were forgotten on the move — so
/// the client went on unregistering at B and back at A, and at 50 % loss with two
/// directories of a shared store each removed the name once (history seed 8845 with
/// every fault class: one removal notified 40 times instead of 20).
#[test]
fn a_late_answer_from_the_directory_left_confirms_an_unregistration() {
    let a = nth_directory(0);
    let b = nth_directory(1);
    let mut store = ClientStorage::<1>::new();
    let (known, index) = store.parts();
    let mut config = ClientConfig::new(9);
    config.directories.push(a).unwrap();
    config.directories.push(b).unwrap();
    config.lease = LEASE;
    let mut client: Client<'_, 1> = Client::new(config, known, index).unwrap();
    let mut now = Instant::from_millis(1);
    let name = ServiceName::new("api").unwrap();
    client.release(now, &name).unwrap();
    // Nobody answers until the client has moved to B.
    let mut sent = Vec::new();
    while !sent
        .iter()
        .any(|s: &(Instant, Location, &str, u32)| s.1 == b)
    {
        let next = now + Duration::from_millis(10);
        sent.extend(run(&mut client, &mut now, next, &[]).0);
        assert!(now < Instant::from_millis(3_000), "{sent:?}");
    }
    let first_at_a = sent.iter().find(|s| s.1 == a).unwrap().3;
    client.handle_datagram(now, a.socket_addr(), &ack(first_at_a, Duration::ZERO));
    let events: Vec<_> = std::iter::from_fn(|| client.poll_event()).collect();
    assert!(
        events.contains(&ClientEvent::Released {
            name,
            confirmed: true
        }),
        "{events:?}"
    );
    let until = now + LEASE;
    let (after, _) = run(&mut client, &mut now, until, &[]);
    assert!(after.is_empty(), "still unregistering: {after:?}");
}
