//! A load generator that speaks the protocol through herald-core's own [`Client`]:
//! many registrations from one process, each name renewed and unregistered exactly as
//! the real client does, without one process per service. Bounded in count and time.

use herald_core::{
    Client, ClientConfig, ClientEvent, Duration as CoreDuration, Environment,
    Instant as CoreInstant, Location, Registration, ServiceName,
};
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Names one core client registers (its const capacity).
pub const PER_CLIENT: usize = 128;
/// Most services one load generator registers.
pub const MAX_SERVICES: usize = 20_000;

/// What to register.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Directories, in order of preference.
    pub directories: Vec<SocketAddr>,
    /// The environment.
    pub environment: String,
    /// Names are this prefix and a five-digit number.
    pub prefix: String,
    /// How many services.
    pub count: usize,
    /// The address each service claims (the port varies per service).
    pub service_ip: IpAddr,
    /// The local address the sockets bind.
    pub bind: IpAddr,
    /// Lease asked for.
    pub lease: Duration,
    /// Most core clients registering at once (the rest wait), to bound bursts.
    pub parallel: usize,
}

struct Member {
    socket: UdpSocket,
    client: Box<Client<'static, PER_CLIENT>>,
    names: Vec<ServiceName>,
    service_ports: Vec<u16>,
    started: bool,
    registered: usize,
    released: usize,
    confirmed: usize,
}

/// The running generator.
pub struct Load {
    config: LoadConfig,
    members: Vec<Member>,
    epoch: Instant,
    problems: Vec<String>,
    buf: Vec<u8>,
}

/// The name of service number `i`.
pub fn service_name(prefix: &str, i: usize) -> String {
    format!("{prefix}{i:05}")
}

impl Load {
    /// Sockets and clients for `config` (nothing is sent yet).
    pub fn new(config: LoadConfig) -> Result<Load, String> {
        if config.count > MAX_SERVICES {
            return Err(format!("at most {MAX_SERVICES} services"));
        }
        let environment =
            Environment::new(&config.environment).map_err(|e| format!("environment: {e}"))?;
        let mut members = Vec::new();
        let mut next = 0;
        for m in 0..config.count.div_ceil(PER_CLIENT) {
            let mut cc = ClientConfig::new(
                0x10ad_0000_0000 + (std::process::id() as u64) * 65_536 + m as u64,
            );
            cc.environment = environment.clone();
            cc.lease = CoreDuration::from_millis(config.lease.as_millis() as u64);
            for d in &config.directories {
                let l =
                    Location::from_socket_addr(*d).map_err(|e| format!("directory {d}: {e}"))?;
                cc.directories
                    .push(l)
                    .map_err(|_| "at most 4 directories")?;
            }
            let client = Client::new(cc, &mut [], &mut []).map_err(|e| format!("client: {e}"))?;
            let socket = UdpSocket::bind((config.bind, 0)).map_err(|e| format!("bind: {e}"))?;
            socket.set_nonblocking(true).map_err(|e| e.to_string())?;
            let mut names = Vec::new();
            let mut service_ports = Vec::new();
            while names.len() < PER_CLIENT && next < config.count {
                let name = ServiceName::new(&service_name(&config.prefix, next))
                    .map_err(|e| format!("name: {e}"))?;
                names.push(name);
                service_ports.push(10_000 + (next % 50_000) as u16);
                next += 1;
            }
            members.push(Member {
                socket,
                client: Box::new(client),
                names,
                service_ports,
                started: false,
                registered: 0,
                released: 0,
                confirmed: 0,
            });
        }
        Ok(Load {
            config,
            members,
            epoch: Instant::now(),
            problems: Vec::new(),
            buf: vec![0; 65_536],
        })
    }

    fn now(&self) -> CoreInstant {
        CoreInstant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    /// Services registered (acknowledged) so far.
    pub fn registered(&self) -> usize {
        self.members.iter().map(|m| m.registered).sum()
    }

    /// Unregistrations finished so far, and how many a directory confirmed.
    pub fn released(&self) -> (usize, usize) {
        let r = self.members.iter().map(|m| m.released).sum();
        let c = self.members.iter().map(|m| m.confirmed).sum();
        (r, c)
    }

    /// Rejections and other trouble seen so far.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    fn start_more(&mut self, now: CoreInstant) -> Result<(), String> {
        let busy = self
            .members
            .iter()
            .filter(|m| m.started && m.registered < m.names.len())
            .count();
        let room = self.config.parallel.max(1).saturating_sub(busy);
        let ip = self.config.service_ip;
        for m in self.members.iter_mut().filter(|m| !m.started).take(room) {
            m.started = true;
            for (name, port) in m.names.iter().zip(&m.service_ports) {
                let at = Location::new(ip, *port).map_err(|e| format!("location: {e}"))?;
                let reg = Registration::new(name.clone(), &[at]).map_err(|e| e.to_string())?;
                m.client
                    .register(now, reg)
                    .map_err(|e| format!("register: {e}"))?;
            }
        }
        Ok(())
    }

    /// One pass over every client: start waiting ones, feed what arrived, fire timers,
    /// send, take events. Returns whether anything was received or sent.
    pub fn pump(&mut self) -> Result<bool, String> {
        let now = self.now();
        self.start_more(now)?;
        let mut busy = false;
        for m in &mut self.members {
            for _ in 0..4 * PER_CLIENT {
                match m.socket.recv_from(&mut self.buf) {
                    Ok((n, from)) => {
                        busy = true;
                        m.client.handle_datagram(now, from, &self.buf[..n]);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
                    Err(e) => return Err(format!("recv: {e}")),
                }
            }
            if m.client.poll_timeout().is_some_and(|t| t <= now) {
                m.client.handle_timeout(now);
            }
            for _ in 0..4 * PER_CLIENT {
                let Some(t) = m.client.poll_transmit(now, &mut self.buf) else {
                    break;
                };
                busy = true;
                // A full socket buffer is a lost datagram: the client retries.
                let _ = m.socket.send_to(&self.buf[..t.len], t.destination);
            }
            for _ in 0..4 * PER_CLIENT {
                let Some(event) = m.client.poll_event() else {
                    break;
                };
                match event {
                    ClientEvent::Registered { .. } => m.registered += 1,
                    ClientEvent::Released { confirmed, .. } => {
                        m.released += 1;
                        m.confirmed += usize::from(confirmed);
                    }
                    ClientEvent::Rejected { name, reason, .. } => self
                        .problems
                        .push(format!("{name:?} rejected: {}", reason.label())),
                    ClientEvent::Unreachable => self.problems.push("unreachable".into()),
                    _ => {}
                }
            }
        }
        Ok(busy)
    }

    /// Pumps until `done` or `timeout`; sleeps a millisecond when idle.
    pub fn pump_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&Load) -> bool,
    ) -> Result<bool, String> {
        let deadline = Instant::now() + timeout;
        let max_passes = timeout.as_millis() as u64 * 4 + 1;
        for _ in 0..max_passes {
            if done(self) {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                break;
            }
            if !self.pump()? {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(done(self))
    }

    /// Registers everything; returns how long it took.
    pub fn register_all(&mut self, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let count = self.config.count;
        if self.pump_until(timeout, |l| l.registered() >= count)? {
            Ok(start.elapsed())
        } else {
            Err(format!(
                "{} of {count} registered after {timeout:?}; problems: {:?}",
                self.registered(),
                self.problems.iter().take(5).collect::<Vec<_>>()
            ))
        }
    }

    /// Unregisters everything; returns how many a directory confirmed.
    pub fn unregister_all(&mut self, timeout: Duration) -> Result<usize, String> {
        let now = self.now();
        for m in &mut self.members {
            for name in &m.names {
                m.client
                    .unregister(now, name)
                    .map_err(|e| format!("unregister {name}: {e}"))?;
            }
        }
        let count = self.config.count;
        self.pump_until(timeout, |l| l.released().0 >= count)?;
        let (released, confirmed) = self.released();
        if released < count {
            return Err(format!("{released} of {count} released after {timeout:?}"));
        }
        Ok(confirmed)
    }
}
