//! A tap on a multicast group (loopback only): records every Herald frame a directory
//! announces, decoded with herald-core, to count notifications on the wire.

use herald_core::wire::{self, Change, Message};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One frame heard on the group.
#[derive(Clone, Debug)]
pub struct Heard {
    /// When it arrived.
    pub at: Instant,
    /// Its source address.
    pub from: SocketAddr,
    /// `announce`, `sync`, `beacon`, or `other`.
    pub kind: &'static str,
    /// Names announced registered.
    pub registered: Vec<String>,
    /// Names announced unregistered.
    pub unregistered: Vec<String>,
}

/// The longest a tap listens.
const LIFETIME: Duration = Duration::from_secs(900);

/// A running tap; stops when dropped.
pub struct Tap {
    heard: Arc<Mutex<Vec<Heard>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn summarize(bytes: &[u8], from: SocketAddr) -> Heard {
    let mut h = Heard {
        at: Instant::now(),
        from,
        kind: "other",
        registered: Vec::new(),
        unregistered: Vec::new(),
    };
    match wire::decode(bytes).map(|f| f.message) {
        Ok(Message::Announce(_, items)) => {
            h.kind = "announce";
            for change in items {
                match change {
                    Change::Registered(s) => h.registered.push(s.name().as_str().to_owned()),
                    Change::Unregistered { name, .. } => {
                        h.unregistered.push(name.as_str().to_owned())
                    }
                }
            }
        }
        Ok(Message::SyncPage(..)) => h.kind = "sync",
        Ok(Message::Beacon(_)) => h.kind = "beacon",
        _ => {}
    }
    h
}

impl Tap {
    /// Joins `group` on loopback and starts recording.
    pub fn start(group: SocketAddrV4) -> Tap {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
        s.set_reuse_address(true).expect("SO_REUSEADDR");
        s.bind(&SockAddr::from(group)).expect("bind the group port");
        s.join_multicast_v4(group.ip(), &Ipv4Addr::LOCALHOST)
            .expect("join the group on loopback");
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let socket: UdpSocket = s.into();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, st) = (heard.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut buf = vec![0u8; 65_536];
            while !st.load(Ordering::Relaxed) && start.elapsed() < LIFETIME {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    let record = summarize(&buf[..n], from);
                    h.lock().unwrap_or_else(|e| e.into_inner()).push(record);
                }
            }
        });
        Tap {
            heard,
            stop,
            thread: Some(thread),
        }
    }

    /// Everything heard so far.
    pub fn heard(&self) -> Vec<Heard> {
        self.heard.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many times `name` was announced unregistered, and when.
    pub fn unregistered(&self, name: &str) -> Vec<Instant> {
        self.heard()
            .iter()
            .flat_map(|h| {
                h.unregistered
                    .iter()
                    .filter(|n| n.as_str() == name)
                    .map(move |_| h.at)
            })
            .collect()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
