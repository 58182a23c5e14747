//! A history checker for the simulator: runs a random [`Schedule`] of faults on the
//! simulated network, records every request, every listener event and every
//! announcement sent as a [`History`], and checks it with a [`Checker`]:
//!
//! - per listener and name, events come in version order;
//! - no `discovered` after an `unregistered` unless the name was really registered again;
//! - the publisher sends exactly N notifications per removal (fewer when the name was
//!   registered again meanwhile, a few more across a change of publisher);
//! - once the faults stop, every listener's view equals the registry of the directory
//!   it follows within [`CONVERGENCE`] (plus a second of margin) with the sweep an hour
//!   apart (convergence comes from the announcement chain, beacons and repairs), and, a
//!   lease later,
//!   the registry equals what the registrants hold (but for what a directory restart
//!   keeps for its restore grace, see `World::kept_by_restore`);
//! - no `unregistered` for a registration its registrant kept renewing, under the loss
//!   ceiling of [`FaultClasses::expiry_loss_ceiling`] and with no directory outage.

pub mod checker;
pub mod schedule;

pub use checker::{port, Checker, Violation};
#[allow(unused_imports)]
pub use schedule::{Bytes, Choose, FaultClasses, Schedule, Step, Topology, PER_REGISTRANT};

use super::*;
use herald_core::auth::{self, Key, Keys};
use std::fmt::Write as _;

/// One recorded happening.
#[derive(Clone, Debug)]
pub struct Entry {
    /// When (to the recording slice, 50 ms).
    pub at: Instant,
    /// The name it concerns, if one.
    pub name: Option<String>,
    /// A step of the schedule or a fault, rather than traffic.
    pub step: bool,
    /// What happened.
    pub text: String,
}

/// Everything that happened in a run, in order.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// The entries.
    pub entries: Vec<Entry>,
}

impl History {
    fn push(&mut self, at: Instant, name: Option<&str>, text: String) {
        self.entries.push(Entry {
            at,
            name: name.map(str::to_string),
            step: false,
            text,
        });
    }

    fn step(&mut self, at: Instant, text: String) {
        self.entries.push(Entry {
            at,
            name: None,
            step: true,
            text,
        });
    }

    /// The last `most` entries about `name` up to `until`, with the steps among them.
    pub fn excerpt(&self, name: Option<&str>, until: Instant, most: usize) -> Vec<&Entry> {
        let about: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| {
                e.at <= until && (e.step || name.is_some_and(|n| e.name.as_deref() == Some(n)))
            })
            .collect();
        about[about.len().saturating_sub(most)..].to_vec()
    }
}

/// The result of one run.
pub struct Outcome {
    /// The seed it was drawn from (`None` when the schedule was chosen otherwise).
    pub seed: Option<u64>,
    /// What was run.
    pub schedule: Schedule,
    /// What happened.
    pub history: History,
    /// What broke.
    pub violations: Vec<Violation>,
    /// When something broke: the directories', listeners' and registrants' counters at
    /// the end.
    pub stats: Vec<String>,
}

impl Outcome {
    /// The invariants broken, each once, in order of first occurrence.
    pub fn invariants(&self) -> Vec<&'static str> {
        let mut seen = Vec::new();
        for v in &self.violations {
            if !seen.contains(&v.invariant) {
                seen.push(v.invariant);
            }
        }
        seen
    }

    /// The seed, the schedule, each invariant's first violation with the history
    /// excerpt that led to it, and how to replay it.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let seed = self
            .seed
            .map_or("fuzz input".into(), |s| format!("seed {s}"));
        let _ = writeln!(out, "== {seed}: {}", self.schedule.summary());
        for invariant in self.invariants() {
            let all: Vec<&Violation> = self
                .violations
                .iter()
                .filter(|v| v.invariant == invariant)
                .collect();
            let v = all[0];
            let _ = writeln!(
                out,
                "-- violated: {invariant} ({} times); first at {}: {}",
                all.len(),
                v.at,
                v.detail
            );
            for e in self.history.excerpt(v.name.as_deref(), v.at, excerpt_len()) {
                let _ = writeln!(
                    out,
                    "   {:>12} {}{}",
                    e.at.to_string(),
                    if e.step { "## " } else { "" },
                    e.text
                );
            }
        }
        for line in &self.stats {
            let _ = writeln!(out, "   {line}");
        }
        if let Some(s) = self.seed {
            let _ = writeln!(
                out,
                "   replay: HERALD_SIM_SEED={s} cargo test -p herald-core --test history"
            );
        }
        out
    }
}

/// Entries shown before each violation: 40, or `HERALD_SIM_EXCERPT`.
fn excerpt_len() -> usize {
    std::env::var("HERALD_SIM_EXCERPT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

/// Draws the schedule of `seed` and runs it.
pub fn run_seed(seed: u64, classes: &FaultClasses) -> Outcome {
    let mut rng = Rng::new(seed);
    let schedule = Schedule::generate(&mut rng, classes, 14);
    let mut outcome = run(seed, schedule, classes);
    outcome.seed = Some(seed);
    outcome
}

/// Runs `schedule` (the network's randomness and the choices within steps drawn from
/// `seed`) and checks its history.
pub fn run(seed: u64, schedule: Schedule, classes: &FaultClasses) -> Outcome {
    let mut world = World::new(seed, schedule, classes);
    world.play();
    let stats = if world.checker.violations.is_empty() {
        Vec::new()
    } else {
        world.stats()
    };
    Outcome {
        seed: None,
        stats,
        violations: world.checker.violations,
        history: world.history,
        schedule: world.schedule,
    }
}

/// Recording granularity.
const SLICE: Duration = Duration::from_millis(50);

/// How soon a multicast listener whose table the registry overflowed holds all of it
/// once it fits: three beacon intervals (two beacons whose count differs, then a
/// snapshot); a subscriber, a third of its lease later (its renewal subscribes afresh).
const ROOM_NOTICED: Duration = Duration::from_secs(3);

/// How long after the faults stop (and after the last failover grace) every listener's
/// view must equal its directory's registry: two beacon intervals (the beacon that
/// shows a listener behind, and the one after if it crossed an announcement in flight)
/// plus the repair's round trips with their retries, with no sweep.
const CONVERGENCE: Duration = Duration::from_secs(2);
/// Most recorded datagrams kept for replays.
const POOL: usize = 512;

/// One registration call, identified by its port.
struct Incarnation {
    name: String,
    /// Which registrant made it.
    registrant: usize,
    /// When its registrant gave it up (unregistered it, or was refused).
    ended: Option<Instant>,
    /// When its registrant last gave the name up, if it did less than 2 s before this
    /// registration (an unregistration and a registration that may be reordered).
    flap: Option<Instant>,
    /// Every request its registrant sent for it: when, and to which directory.
    sent: Vec<(Instant, usize)>,
}

/// A registrant's last unregistration of a name, and how it ended.
#[derive(Clone, Copy, Debug)]
struct Release {
    /// When the registrant unregistered the name.
    began: Instant,
    /// The highest version an acknowledgement of it carried (the version removed, or
    /// what the directory held of the name; 0: nothing).
    removed: Option<u64>,
    /// When the client reported it released, and whether a directory confirmed it.
    outcome: Option<(Instant, bool)>,
}

struct World {
    sim: Sim,
    schedule: Schedule,
    ceiling: f64,
    rng: Rng,
    history: History,
    checker: Checker,
    keys: Option<Keys>,
    capacity: usize,
    registrants: Vec<usize>,
    listeners: Vec<usize>,
    /// Per registrant: name → port of the registration it holds.
    holdings: Vec<BTreeMap<String, u16>>,
    incarnations: HashMap<u16, Incarnation>,
    /// The registrations each keep-alive sent was for, by (sender, request).
    keep_alives: HashMap<(SocketAddr, u32), Vec<String>>,
    /// When each registrant last gave each name up.
    given_up: HashMap<(usize, String), Instant>,
    /// Each registrant's last unregistration of each name.
    releases: HashMap<(usize, String), Release>,
    /// Live records restored by a directory restart from the store: (name, version) →
    /// when (the last such restart).
    restored: HashMap<(String, u64), Instant>,
    next_port: u32,
    publisher: usize,
    /// Directories to bring back: (when, which, restart from the store).
    ups: Vec<(Instant, usize, bool)>,
    /// Registrants whose process stopped: which → when the next starts, and the names
    /// it registers again.
    stopped: BTreeMap<usize, (Instant, Vec<String>)>,
    /// Registrations (ports) whose registrant's process stopped while it held them or
    /// before their unregistration was answered: nobody can remove them any more.
    abandoned: HashSet<u16>,
    /// Per registrant and name: when its last unregistration that a directory confirmed
    /// began (every registration of the name given up by then was removed).
    removed_by: HashMap<(usize, String), Instant>,
    /// Directory outages: (from, to).
    outages: Vec<(Instant, Instant)>,
    /// Changes of publisher.
    elections: Vec<Instant>,
    /// Per node: events already looked at, view violations already reported.
    seen: Vec<(usize, usize)>,
    /// Per listener node: the version space it follows.
    space: HashMap<usize, usize>,
    /// Requests sent: (client address, request id) → name.
    requests: HashMap<(SocketAddr, u32), String>,
    /// When a listener last moved to another directory, and the end of its failover
    /// grace then.
    settled: Instant,
    /// Per listener: when the registry of the directory it follows last held more
    /// services than its table, or its table last dropped a state (small tables only),
    /// and how many it had dropped then.
    overflowed: Vec<(Option<Instant>, u64)>,
    pool: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
}

fn history_keys() -> Keys {
    Keys::new(Key::new(1, b"herald-history-checker-key-01").unwrap())
}

impl World {
    fn new(seed: u64, schedule: Schedule, classes: &FaultClasses) -> World {
        let capacity = 2 * schedule.max_live + 64;
        let mut config = DirectoryConfig::new(directory_location(), group());
        config.default_lease = Duration::from_secs(3);
        config.min_lease = Duration::from_millis(500);
        // The sweep is a safety net an hour apart: convergence must come from the
        // announcement chain, beacons and repairs.
        config.sweep_period = Duration::from_secs(3600);
        config.version_floor = Version(1_000);
        let keys = schedule.authenticated.then(history_keys);
        config.keys = keys.clone();
        let faults = Faults {
            loss: schedule.loss,
            duplicate: schedule.duplicate,
            max_delay: schedule.max_delay,
        };
        let mut sim = Sim::with_config(seed, faults, capacity, config);
        for _ in 1..schedule.topology.directories() {
            sim.add_directory(capacity);
        }
        for (d, ahead) in schedule.clocks_ahead.iter().enumerate() {
            if *ahead > Duration::ZERO {
                let mut config = sim.directories[d].directory.config().clone();
                config.version_floor = Version(config.version_floor.0 + ahead.as_micros());
                let skewed = new_directory(config, capacity);
                recycle_directory(std::mem::replace(&mut sim.directories[d].directory, skewed));
            }
        }
        if let Topology::Shared { delay, .. } = schedule.topology {
            sim.share_store(delay);
        }
        sim.client_lease = schedule.lease;
        sim.client_keys = keys.clone();
        sim.capture = true;
        let n = schedule.topology.directories();
        let mut listeners = Vec::new();
        let mut space = HashMap::default();
        if schedule.subscribers > 0 {
            sim.unicast_loss = Some(schedule.loss.max(0.2));
        }
        // The multicast listeners first: the first one's announcements are recorded.
        for l in 0..schedule.listeners + schedule.subscribers {
            sim.next_first_directory = l % n;
            let node = if l < schedule.listeners {
                let table = schedule.small_tables[l].unwrap_or(capacity);
                sim.add_client(Some(Interest::all()), table)
            } else {
                let table = schedule.small_tables[l].unwrap_or(capacity);
                sim.add_subscriber(Interest::all(), table)
            };
            listeners.push(node);
            let first = if matches!(schedule.topology, Topology::Independent { .. }) {
                l % n
            } else {
                0
            };
            space.insert(node, first);
        }
        let mut registrants = Vec::new();
        for r in 0..schedule.registrants {
            sim.next_first_directory = r % n;
            registrants.push(sim.add_client(None, 4));
        }
        let checker = Checker::new(usize::from(sim.config.notifications));
        let nodes = sim.nodes.len();
        World {
            sim,
            ceiling: classes.expiry_loss_ceiling,
            rng: Rng::new(seed ^ 0x4849_5354),
            history: History::default(),
            checker,
            keys,
            capacity,
            holdings: vec![BTreeMap::new(); registrants.len()],
            registrants,
            listeners,
            incarnations: HashMap::default(),
            keep_alives: HashMap::default(),
            given_up: HashMap::default(),
            releases: HashMap::default(),
            restored: HashMap::default(),
            next_port: 0,
            publisher: 0,
            ups: Vec::new(),
            stopped: BTreeMap::new(),
            abandoned: HashSet::default(),
            removed_by: HashMap::default(),
            outages: Vec::new(),
            elections: Vec::new(),
            seen: vec![(0, 0); nodes],
            space,
            requests: HashMap::default(),
            settled: Instant::ZERO,
            overflowed: vec![(None, 0); schedule.listeners + schedule.subscribers],
            pool: Vec::new(),
            schedule,
        }
    }

    /// Every directory's and listener's counters, and the registrants' summed.
    fn stats(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .sim
            .directories
            .iter()
            .enumerate()
            .map(|(d, n)| format!("directory {d}: {:?}", n.directory.stats()))
            .collect();
        for (l, node) in self.listeners.iter().enumerate() {
            let stats = self.sim.nodes[*node].client.stats();
            out.push(format!("listener {l}: {stats:?}"));
        }
        let mut sum = ClientStats::default();
        for node in &self.registrants {
            let s = self.sim.nodes[*node].client.stats();
            sum.datagrams_in += s.datagrams_in;
            sum.datagrams_out += s.datagrams_out;
            sum.malformed += s.malformed;
            sum.unauthenticated += s.unauthenticated;
            sum.replayed += s.replayed;
        }
        out.push(format!(
            "registrants (summed): in {}, out {}, malformed {}, unauthenticated {}, replayed {}",
            sum.datagrams_in, sum.datagrams_out, sum.malformed, sum.unauthenticated, sum.replayed
        ));
        out
    }

    fn play(&mut self) {
        let steps = self.schedule.steps.clone();
        for (gap, step) in steps {
            self.advance(gap);
            self.apply(step);
        }
        // Let the last steps play out under the faults, then stop them.
        self.advance(Duration::from_secs(1));
        let pending: Vec<_> = std::mem::take(&mut self.ups);
        for (_, d, restart) in pending {
            self.bring_up(d, restart);
        }
        self.sim.faults = Faults::none();
        self.sim.unicast_loss = None;
        let now = self.sim.now;
        self.history.step(now, "faults stop".into());
        // A listener that moved to another directory removes what it inherited and the
        // new directory does not hold only once its failover grace is over (see
        // PROTOCOL.md, "Failover converges"): the views are compared CONVERGENCE after
        // the faults stopped and after the last grace ended.
        let wait = CONVERGENCE + Duration::from_secs(1);
        let end = self.sim.now + wait;
        self.advance(Duration::from_micros(wait.as_micros() - SLICE.as_micros()));
        // Later if a listener moved meanwhile (its grace then ends later).
        let settled = end.max(self.settled + wait);
        self.check_views_at(
            settled,
            "convergence",
            "3 s after the faults and the failover grace, no sweep",
        );
        let later = self.sim.now + self.schedule.lease + Duration::from_secs(1);
        self.check_views_at(later, "lasting divergence", "a lease later");
        self.check_registry();
        let now = self.sim.now;
        let elections = self.elections.clone();
        let per_election = match self.schedule.topology {
            Topology::Shared { delay, .. } => {
                (delay.as_micros() / self.sim.config.interval.as_micros()) as usize + 2
            }
            Topology::Independent { .. } => 0,
        };
        // A removal whose first notification went out less than N intervals (and a
        // margin) before now may still be counting (a lease that ran out at the end).
        let interval = self.sim.config.interval;
        let count_time = interval.mul(u64::from(self.sim.config.notifications));
        let counting = Instant::from_micros(
            now.as_micros()
                .saturating_sub((count_time + Duration::from_secs(1)).as_micros()),
        );
        self.checker
            .check_notifications(now, counting, |first, last| {
                let margin = Duration::from_secs(2);
                per_election
                    * elections
                        .iter()
                        .filter(|t| **t + margin >= first && **t <= last + margin)
                        .count()
            });
    }

    /// Runs the network for `span`, bringing directories back when due and recording.
    fn advance(&mut self, span: Duration) {
        let end = self.sim.now + span;
        while self.sim.now < end {
            let mut next = (self.sim.now + SLICE).min(end);
            let ups = self.ups.iter().map(|u| u.0);
            if let Some(up) = ups.chain(self.stopped.values().map(|s| s.0)).min() {
                next = next.min(up.max(self.sim.now));
            }
            let span = next.saturating_since(self.sim.now);
            self.sim.run(span);
            self.harvest();
            let now = self.sim.now;
            self.note_overflows(now);
            let (due, later): (Vec<_>, Vec<_>) = self.ups.drain(..).partition(|u| u.0 <= now);
            self.ups = later;
            for (_, d, restart) in due {
                self.bring_up(d, restart);
            }
            let starting: Vec<usize> = self
                .stopped
                .iter()
                .filter(|(_, (at, _))| *at <= now)
                .map(|(r, _)| *r)
                .collect();
            for r in starting {
                self.start_registrant(r);
            }
        }
    }

    /// Notes which small-table listeners the registry they follow overflows now, and
    /// which dropped a state for want of room (a table full of states a page is about
    /// to remove, which stay until their removal is reported, drops a page's newcomer
    /// even when the registry fits).
    fn note_overflows(&mut self, now: Instant) {
        for (l, &node) in self.listeners.iter().enumerate() {
            let client = &self.sim.nodes[node].client;
            let capacity = client.capacity();
            if capacity >= self.capacity {
                continue;
            }
            let following = client.current_directory();
            let d = following.and_then(|loc| self.directory_index(loc.socket_addr()));
            let dropped = client.stats().table_full;
            let over = d.is_some_and(|d| self.sim.directories[d].directory.live() > capacity);
            if over || dropped > self.overflowed[l].1 {
                self.overflowed[l] = (Some(now), dropped);
            }
        }
    }

    /// Registrant `r`'s process stops: every name it held is given up (what it does
    /// not register again runs out a lease later), and after `down` another process
    /// with the same registrant id registers `keep` percent of them again.
    fn stop_registrant(&mut self, r: usize, down: Duration, keep: u64) {
        let now = self.sim.now;
        if self.stopped.contains_key(&r) {
            return;
        }
        let names: Vec<String> = self.holdings[r].keys().cloned().collect();
        let kept = (names.len() as u64 * keep).div_ceil(100) as usize;
        self.history.step(
            now,
            format!(
                "registrant {r} stops for {down}; the next process registers {kept} of its {} names again",
                names.len()
            ),
        );
        let unanswered: Vec<String> = self
            .releases
            .iter()
            .filter(|((owner, _), release)| *owner == r && release.outcome.is_none())
            .map(|((_, name), _)| name.clone())
            .collect();
        for (port, i) in &self.incarnations {
            let held = names.contains(&i.name);
            let unremoved = unanswered.contains(&i.name);
            // Not one a confirmed unregistration removed since it was given up.
            let removed = self
                .removed_by
                .get(&(r, i.name.clone()))
                .is_some_and(|t| i.ended.is_some_and(|e| e <= *t));
            if i.registrant == r && (held || unremoved) && !removed {
                self.abandoned.insert(*port);
            }
        }
        for name in &names {
            self.end(r, name, now);
        }
        self.sim.nodes[self.registrants[r]].crashed = true;
        self.stopped
            .insert(r, (now + down, names.into_iter().take(kept).collect()));
    }

    /// Registrant `r`'s next process starts and registers its names again.
    fn start_registrant(&mut self, r: usize) {
        let Some((_, names)) = self.stopped.remove(&r) else {
            return;
        };
        let now = self.sim.now;
        self.history
            .step(now, format!("registrant {r} starts again"));
        self.sim.restart_client(self.registrants[r]);
        for name in names {
            self.register(r, &name);
        }
    }

    fn directory_index(&self, addr: SocketAddr) -> Option<usize> {
        self.sim
            .directories
            .iter()
            .position(|d| d.location.socket_addr() == addr)
    }

    fn node_index(&self, addr: SocketAddr) -> Option<usize> {
        self.sim.nodes.iter().position(|n| n.addr == addr)
    }

    fn version_space(&self, directory: usize) -> usize {
        match self.schedule.topology {
            Topology::Shared { .. } => 0,
            Topology::Independent { .. } => directory,
        }
    }

    fn apply(&mut self, step: Step) {
        let now = self.sim.now;
        match step {
            Step::Register(n) => {
                self.history.step(now, format!("register {n} names"));
                for _ in 0..n {
                    let with_room: Vec<usize> = (0..self.registrants.len())
                        .filter(|r| self.holdings[*r].len() < PER_REGISTRANT)
                        .filter(|r| !self.stopped.contains_key(r))
                        .collect();
                    if with_room.is_empty() {
                        break;
                    }
                    let r = with_room[self.rng.below(with_room.len() as u64) as usize];
                    let free: Vec<String> = (0..PER_REGISTRANT + 4)
                        .map(|j| format!("r{r}-{j}"))
                        .filter(|name| !self.holdings[r].contains_key(name))
                        .collect();
                    let name = free[self.rng.below(free.len() as u64) as usize].clone();
                    self.register(r, &name);
                }
            }
            Step::Unregister(n) | Step::Flap(n) => {
                let flap = matches!(step, Step::Flap(_));
                let verb = if flap { "flap" } else { "unregister" };
                self.history.step(now, format!("{verb} {n} names"));
                let mut held: Vec<(usize, String)> = self
                    .holdings
                    .iter()
                    .enumerate()
                    .flat_map(|(r, h)| h.keys().map(move |name| (r, name.clone())))
                    .collect();
                for _ in 0..n.min(held.len()) {
                    let (r, name) = held.swap_remove(self.rng.below(held.len() as u64) as usize);
                    self.unregister(r, &name);
                    if flap {
                        self.register(r, &name);
                    }
                }
            }
            Step::Restart { directory, down } | Step::Pause { directory, down } => {
                let restart = matches!(step, Step::Restart { .. });
                if self.sim.directories.iter().any(|d| d.down) {
                    return;
                }
                let verb = if restart {
                    "stops (restarts from its store)"
                } else {
                    "pauses"
                };
                self.history
                    .step(now, format!("directory {directory} {verb} for {down}"));
                self.sim.directories[directory].down = true;
                self.ups.push((now + down, directory, restart));
                self.outages.push((now, now + down));
            }
            Step::Elect(d) => {
                if self.sim.directories[d].down || d == self.publisher {
                    return;
                }
                self.history
                    .step(now, format!("directory {d} becomes the publisher"));
                self.publisher = d;
                self.elections.push(now);
                self.sim.elect(Some(d));
            }
            Step::Replay {
                pick,
                other_source,
                other_destination,
            } => self.replay(pick, other_source, other_destination),
            Step::RestartRegistrant {
                registrant,
                down,
                keep,
            } => {
                // One of those holding names, if any does.
                let holding: Vec<usize> = (0..self.registrants.len())
                    .filter(|r| !self.holdings[*r].is_empty())
                    .collect();
                let r = match holding.len() {
                    0 => registrant % self.registrants.len(),
                    n => holding[registrant % n],
                };
                self.stop_registrant(r, down, keep);
            }
        }
        self.sim.flush();
    }

    fn register(&mut self, r: usize, name: &str) {
        let now = self.sim.now;
        self.next_port += 1;
        let port = 1_024 + (self.next_port % 64_000) as u16;
        let registration = service(name, port);
        let node = self.registrants[r];
        match self.sim.nodes[node].client.register(now, registration) {
            Ok(()) => {
                self.history.push(
                    now,
                    Some(name),
                    format!("registrant {r} registers {name} port {port}"),
                );
                let flap = self
                    .given_up
                    .get(&(r, name.to_string()))
                    .copied()
                    .filter(|t| now.saturating_since(*t) < Duration::from_secs(2));
                self.holdings[r].insert(name.to_string(), port);
                self.incarnations.insert(
                    port,
                    Incarnation {
                        name: name.to_string(),
                        registrant: r,
                        ended: None,
                        flap,
                        sent: Vec::new(),
                    },
                );
            }
            Err(e) => self.history.push(
                now,
                Some(name),
                format!("registrant {r} cannot register {name}: {e}"),
            ),
        }
    }

    fn unregister(&mut self, r: usize, name: &str) {
        let now = self.sim.now;
        let node = self.registrants[r];
        let service_name = ServiceName::new(name).unwrap();
        let result = self.sim.nodes[node].client.unregister(now, &service_name);
        self.history.push(
            now,
            Some(name),
            format!("registrant {r} unregisters {name}: {result:?}"),
        );
        let release = Release {
            began: now,
            removed: None,
            outcome: None,
        };
        self.releases.insert((r, name.to_string()), release);
        self.end(r, name, now);
    }

    /// Registrant `r` gave `name` up.
    fn end(&mut self, r: usize, name: &str, at: Instant) {
        self.given_up.insert((r, name.to_string()), at);
        if let Some(port) = self.holdings[r].remove(name) {
            if let Some(i) = self.incarnations.get_mut(&port) {
                i.ended.get_or_insert(at);
            }
        }
    }

    fn replay(&mut self, pick: u64, other_source: bool, other_destination: bool) {
        let now = self.sim.now;
        if self.pool.is_empty() {
            return;
        }
        let (from, mut to, bytes) = self.pool[(pick % self.pool.len() as u64) as usize].clone();
        let source = if other_source {
            SocketAddr::new(ip(250), 40_000)
        } else {
            from
        };
        if other_destination && self.listeners.len() > 1 {
            if let Some(i) = self
                .listeners
                .iter()
                .position(|l| self.sim.nodes[*l].addr == to)
            {
                to = self.sim.nodes[self.listeners[(i + 1) % self.listeners.len()]].addr;
            }
        }
        let text = self
            .describe(&bytes)
            .unwrap_or_else(|| "undecodable".into());
        self.history.step(
            now,
            format!("replay from {source} (sent by {from}) to {to}: {text}"),
        );
        self.sim.inject(source, to, &bytes);
    }

    fn bring_up(&mut self, d: usize, restart: bool) {
        let now = self.sim.now;
        if !self.sim.directories[d].down {
            return;
        }
        if restart {
            let mut config = self.sim.config.clone();
            config.address = nth_directory(d);
            // As `herald serve` does: the version clock (and the counters) start from the
            // wall clock, which went on while the directory was stopped.
            let ahead = self.schedule.clocks_ahead[d];
            config.version_floor =
                Version(config.version_floor.0 + now.as_micros() + ahead.as_micros());
            let mut directory = new_directory(config, self.capacity);
            // A shared store's records, or (independent directories) its own.
            let records: Vec<Vec<u8>> = match &self.sim.shared {
                Some(s) => s.records.values().cloned().collect(),
                None => self
                    .sim
                    .own_store
                    .get(d)
                    .into_iter()
                    .flat_map(|s| s.values().cloned())
                    .collect(),
            };
            for bytes in records {
                let record = Record::from_bytes(&bytes, wall(now)).unwrap();
                if record.is_live() {
                    let key = (record.name().to_string(), record.service.version.0);
                    self.restored.insert(key, now);
                }
                if let Err(e) = directory.restore(now, record) {
                    self.history
                        .step(now, format!("directory {d} cannot restore a record: {e:?}"));
                }
            }
            if self.sim.shared.is_some() {
                directory.set_publishing(now, d == self.publisher);
                // It has just read the whole store: it holds every write made before.
                directory.caught_up(now);
            }
            let stopped = std::mem::replace(&mut self.sim.directories[d].directory, directory);
            recycle_directory(stopped);
            self.sim.restore_subscribers(d);
            self.sim.read_store(d);
            self.history
                .step(now, format!("directory {d} starts again from its store"));
        } else {
            self.history.step(now, format!("directory {d} resumes"));
        }
        self.sim.directories[d].down = false;
        if !restart {
            self.sim.reload(d);
        }
        self.sim.flush();
    }

    /// The frame, and its counter when authenticated.
    fn decode<'b>(&self, bytes: &'b [u8]) -> Option<(wire::Frame<'b>, Option<u64>)> {
        match &self.keys {
            None => Some((decode(bytes).ok()?, None)),
            Some(keys) => {
                let (inner, counter) = auth::open(keys, bytes).ok()?;
                Some((wire::decode_authenticated(inner).ok()?, Some(counter)))
            }
        }
    }

    /// A short description of a datagram.
    fn describe(&self, bytes: &[u8]) -> Option<String> {
        let (frame, _) = self.decode(bytes)?;
        Some(match frame.message {
            Message::Register(r) => format!(
                "register {} port {} (request {})",
                r.registration.name,
                port(&Service {
                    registration: r.registration.clone(),
                    version: Version(0)
                }),
                r.request
            ),
            Message::Unregister(u) => format!("unregister {} (request {})", u.name, u.request),
            Message::Announce(h, items) => {
                let mut s = format!("announce as of v{}:", h.as_of.0);
                for c in items {
                    let _ = write!(s, " {} v{}", c.name(), c.version().0);
                    if matches!(c, Change::Unregistered { .. }) {
                        s.push_str(" gone");
                    }
                }
                s
            }
            other => format!("{other:?}").chars().take(120).collect(),
        })
    }

    /// Records what the network carried and what the clients reported since last time.
    fn harvest(&mut self) {
        let at = self.sim.now;
        for (d, name, version) in std::mem::take(&mut self.sim.held_live) {
            let space = self.version_space(d);
            self.checker.live_held(space, &name, version);
        }
        let captured = std::mem::take(&mut self.sim.captured);
        for (from, to, bytes) in captured {
            self.observe(at, from, to, &bytes);
            if self.pool.len() < POOL {
                self.pool.push((from, to, bytes));
            } else if self.rng.below(8) == 0 {
                let i = self.rng.below(POOL as u64) as usize;
                self.pool[i] = (from, to, bytes);
            }
        }
        for r in 0..self.registrants.len() {
            let node = self.registrants[r];
            let events = self.sim.nodes[node].events[self.seen[node].0..].to_vec();
            self.seen[node].0 = self.sim.nodes[node].events.len();
            for e in events {
                match &e {
                    ClientEvent::Rejected {
                        name: Some(name),
                        reason,
                        ..
                    } => {
                        self.history.push(
                            at,
                            Some(name.as_str()),
                            format!("registrant {r}: {name} rejected ({reason:?})"),
                        );
                        if *reason != RejectReason::Stale {
                            self.end(r, name.as_str(), at);
                        }
                    }
                    ClientEvent::Registered {
                        name, directory, ..
                    } => self.history.push(
                        at,
                        Some(name.as_str()),
                        format!("registrant {r}: {name} registered at {directory}"),
                    ),
                    ClientEvent::Released {
                        name, confirmed, ..
                    } => {
                        self.history.push(
                            at,
                            Some(name.as_str()),
                            format!("registrant {r}: {name} released (confirmed: {confirmed})"),
                        );
                        if let Some(release) = self.releases.get_mut(&(r, name.to_string())) {
                            release.outcome.get_or_insert((at, *confirmed));
                            if *confirmed {
                                // Every registration of the name given up by then is gone.
                                let began = release.began;
                                let removed = self.removed_by.entry((r, name.to_string()));
                                let t = removed.or_insert(began);
                                *t = (*t).max(began);
                            }
                        }
                    }
                    ClientEvent::DirectoryChanged(l) => {
                        self.history
                            .push(at, None, format!("registrant {r} moves to {l}"))
                    }
                    _ => {}
                }
            }
        }
        for l in 0..self.listeners.len() {
            let node = self.listeners[l];
            let events = self.sim.nodes[node].events[self.seen[node].0..].to_vec();
            self.seen[node].0 = self.sim.nodes[node].events.len();
            for e in events {
                self.listener_event(at, l, node, &e);
            }
            let view = &self.sim.nodes[node].view.violations;
            for v in &view[self.seen[node].1..] {
                self.checker.violations.push(Violation {
                    invariant: "exactly once",
                    at,
                    name: v.split_whitespace().nth(1).map(str::to_string),
                    detail: format!("listener {l}: {v}"),
                });
            }
            self.seen[node].1 = self.sim.nodes[node].view.violations.len();
        }
    }

    fn listener_event(&mut self, at: Instant, l: usize, node: usize, e: &ClientEvent) {
        let service = match e {
            ClientEvent::Discovered(s) | ClientEvent::Changed(s) | ClientEvent::Unregistered(s) => {
                s
            }
            ClientEvent::Evicted(s) => {
                let name = s.name().as_str();
                let (v, p) = (s.version.0, port(s));
                let text = format!("listener {l}: evicted {name} v{v} port {p} (table full)");
                self.history.push(at, Some(name), text);
                self.checker.evicted(l, name);
                return;
            }
            ClientEvent::DirectoryChanged(location) => {
                self.history
                    .step(at, format!("listener {l} moves to {location}"));
                // The simulated clients keep the default grace.
                let grace = ClientConfig::new(0).failover_grace;
                self.settled = self.settled.max(at + grace);
                if let Topology::Independent { .. } = self.schedule.topology {
                    if let Some(d) = self.directory_index(location.socket_addr()) {
                        self.space.insert(node, d);
                        self.checker.forget_listener(l);
                    }
                }
                return;
            }
            _ => return,
        };
        let name = service.name().as_str();
        let kind = match e {
            ClientEvent::Discovered(_) => "discovered",
            ClientEvent::Changed(_) => "changed",
            _ => "unregistered",
        };
        let p = port(service);
        self.history.push(
            at,
            Some(name),
            format!(
                "listener {l}: {kind} {name} v{} port {p}",
                service.version.0
            ),
        );
        let space = self.space[&node];
        let kept_renewing = match e {
            ClientEvent::Unregistered(_) if self.kept_renewing(at, p, name, space) => {
                Some(self.removal_hint(at, space, p, service))
            }
            _ => None,
        };
        self.checker.listener_event(at, l, space, e, kept_renewing);
    }

    /// What is known of a removal, to classify a spurious one.
    fn removal_hint(&self, at: Instant, space: usize, port: u16, service: &Service) -> String {
        let name = service.name().as_str();
        let mut hint = if self
            .checker
            .removal_announced(space, name, service.version.0)
        {
            match self.schedule.topology {
                Topology::Independent { .. } => format!("directory {space} announced this removal"),
                Topology::Shared { .. } => "a directory announced this removal".to_string(),
            }
        } else {
            "no directory announced a removal at this version (the listener inferred it)"
                .to_string()
        };
        if let Some(i) = self.incarnations.get(&port) {
            let registrant = self.registrants[i.registrant];
            let uses = self.sim.nodes[registrant]
                .client
                .current_directory()
                .and_then(|l| self.directory_index(l.socket_addr()));
            let _ = write!(hint, "; its registrant uses directory {uses:?}");
            if let Some(flap) = i.flap {
                let _ = write!(
                    hint,
                    "; registered again within 2 s of an unregistration of the name ({} before this event)",
                    at.saturating_since(flap)
                );
            }
        }
        hint
    }

    /// True when registration `port` of `name` was never given up before `at`, under
    /// conditions where its registrant promises to keep it: loss at most the ceiling,
    /// and no directory outage within a lease before `at` (none at all between
    /// independent directories, where a registrant that moved stays away).
    ///
    /// Between independent directories (`space` is then the directory whose removal the
    /// listener reports), each directory's registry is its own: a registrant that moved
    /// to another directory (a failover) renews there, and the copy it left behind
    /// expires a lease later, rightly — that directory's listeners are told the truth of
    /// its registry. The promise is kept at the directory the registrant renews at: the
    /// removal is spurious only if the registrant's last request for it went to that
    /// directory and none went elsewhere within the lease (and margin) before `at`.
    /// Whether the move itself was needed is the failover promise, not this one.
    fn kept_renewing(&self, at: Instant, port: u16, name: &str, space: usize) -> bool {
        let Some(i) = self.incarnations.get(&port) else {
            return false;
        };
        if i.name != name || i.ended.is_some_and(|t| t < at) {
            return false;
        }
        if let Topology::Independent { .. } = self.schedule.topology {
            let window = self.schedule.lease + Duration::from_secs(1);
            let last_here = i.sent.last().is_none_or(|(_, d)| *d == space);
            let moved = i.sent.iter().any(|(t, d)| *t + window >= at && *d != space);
            if !last_here || moved {
                return false;
            }
        }
        if let Topology::Shared { delay, .. } = self.schedule.topology {
            // A registration made through a replica reaches the publisher up to the
            // store's delay later. A process started again after its predecessor had
            // stopped renewing, registering just before the predecessor's lease ran
            // out, may see that lease expire at the publisher meanwhile (and its own
            // registration announced again after): beyond what the store promises
            // (history seed 4491941: silent 2 s of a 3 s lease, then registered 0.4 s
            // before it ran out, the store 0.75 s late).
            let first = i.sent.first().map(|(t, _)| *t);
            let predecessor = self.incarnations.values().any(|o| {
                o.name == name
                    && o.registrant == i.registrant
                    && o.sent.first().is_some_and(|(t, _)| Some(*t) < first)
            });
            let settling = first.is_some_and(|t| at <= t + delay + Duration::from_secs(1));
            if predecessor && settling {
                return false;
            }
        }
        if self.schedule.loss > self.ceiling {
            return false;
        }
        let window = self.schedule.lease + Duration::from_secs(1);
        let outage = match self.schedule.topology {
            Topology::Independent { .. } => !self.outages.is_empty(),
            Topology::Shared { .. } => self
                .outages
                .iter()
                .any(|(from, to)| *from <= at && *to + window >= at),
        };
        !outage
    }

    fn observe(&mut self, at: Instant, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        let Some((frame, counter)) = self.decode(bytes) else {
            return;
        };
        let first_listener = self.sim.nodes[self.listeners[0]].addr;
        let counter = counter.map_or(String::new(), |c| format!(", counter {c}"));
        match (self.directory_index(from), frame.message) {
            (None, Message::Register(r)) => {
                let node = self.node_index(from).unwrap_or(usize::MAX);
                let name = r.registration.name.as_str();
                self.requests.insert((from, r.request), name.to_string());
                let p = port(&Service {
                    registration: r.registration.clone(),
                    version: Version(0),
                });
                let directory = self.directory_index(to);
                if let (Some(i), Some(d)) = (self.incarnations.get_mut(&p), directory) {
                    i.sent.push((at, d));
                }
                self.history.push(
                    at,
                    Some(name),
                    format!(
                        "node {node} → {to}: register {name} port {p} (request {}{counter})",
                        r.request
                    ),
                );
            }
            (None, Message::Unregister(u)) => {
                let node = self.node_index(from).unwrap_or(usize::MAX);
                let name = u.name.as_str();
                self.requests.insert((from, u.request), name.to_string());
                self.history.push(
                    at,
                    Some(name),
                    format!(
                        "node {node} → {to}: unregister {name} (request {}{counter})",
                        u.request
                    ),
                );
            }
            (Some(d), Message::Ack(a)) => {
                if let Some(name) = self.requests.get(&(to, a.request)).cloned() {
                    if a.lease > Duration::ZERO {
                        // A registration acknowledged is live at that version, announced
                        // or not (a removal right after it supersedes it).
                        let space = self.version_space(d);
                        self.checker.live_acknowledged(space, &name, a.version.0);
                    } else if let Some(r) = self
                        .registrants
                        .iter()
                        .position(|n| self.sim.nodes[*n].addr == to)
                    {
                        // An unregistration's answer: what it removed (0: nothing held).
                        if let Some(release) = self.releases.get_mut(&(r, name.clone())) {
                            let removed = release.removed.get_or_insert(0);
                            *removed = (*removed).max(a.version.0);
                        }
                    }
                    self.history.push(
                        at,
                        Some(&name),
                        format!(
                            "directory {d} → {to}: ack request {} ({name} v{}, lease {}{counter})",
                            a.request, a.version.0, a.lease
                        ),
                    );
                }
            }
            (Some(d), Message::Reject(r)) => {
                let names = match self.requests.get(&(to, r.request)) {
                    Some(name) => vec![name.clone()],
                    None => self
                        .keep_alives
                        .get(&(to, r.request))
                        .cloned()
                        .unwrap_or_default(),
                };
                let text = format!(
                    "directory {d} → {to}: reject request {} {:?}{counter}",
                    r.request, r.reason
                );
                if names.is_empty() {
                    self.history.push(at, None, text.clone());
                }
                for name in names {
                    self.history.push(at, Some(&name), text.clone());
                }
            }
            (Some(d), Message::Announce(h, items)) if to == first_listener => {
                let space = self.version_space(d);
                for change in items {
                    let name = change.name().as_str().to_string();
                    match change {
                        Change::Registered(s) => {
                            self.checker
                                .live_announced(at, d, space, &name, s.version.0);
                            self.history.push(
                                at,
                                Some(&name),
                                format!(
                                    "directory {d} announces {name} v{} port {} (as of v{})",
                                    s.version.0,
                                    port(&s),
                                    h.as_of.0
                                ),
                            );
                        }
                        Change::Unregistered { version, .. } => {
                            self.checker.notification_sent(space, &name, version.0, at);
                            self.history.push(
                                at,
                                Some(&name),
                                format!(
                                    "directory {d} announces {name} v{} unregistered (as of v{})",
                                    version.0, h.as_of.0
                                ),
                            );
                        }
                    }
                }
            }
            (Some(d), Message::SyncPage(_, items)) if to == first_listener => {
                let space = self.version_space(d);
                for s in items {
                    self.checker
                        .live_sent(space, s.name().as_str(), s.version.0);
                }
            }
            (
                Some(d),
                Message::SnapshotPage(_, items) | Message::DeliveredSnapshot(_, _, items),
            ) => {
                let space = self.version_space(d);
                for s in items {
                    self.checker
                        .live_sent(space, s.name().as_str(), s.version.0);
                }
            }
            // A repair's answer or a delivery: its live states were sent (its removals
            // are not notifications: they are not counted against the N per removal).
            (Some(d), Message::ChangesPage(_, items) | Message::DeliveredChanges(_, _, items)) => {
                let space = self.version_space(d);
                for change in items {
                    if let Change::Registered(s) = change {
                        self.checker
                            .live_sent(space, s.name().as_str(), s.version.0);
                    }
                }
            }
            (None, Message::KeepAlive(k)) => {
                // A request for every registration its registrant holds.
                let node = self.node_index(from).unwrap_or(usize::MAX);
                let registrant = self.registrants.iter().position(|&n| n == node);
                let directory = self.directory_index(to);
                let mut names = Vec::new();
                for i in self.incarnations.values_mut() {
                    if Some(i.registrant) == registrant && i.ended.is_none() {
                        i.sent.extend(directory.map(|d| (at, d)));
                        names.push(i.name.clone());
                    }
                }
                let text = format!(
                    "node {node} → {to}: keep-alive of {} registrations (request {}{counter})",
                    k.held.count, k.request
                );
                for name in &names {
                    self.history.push(at, Some(name), text.clone());
                }
                self.keep_alives.insert((from, k.request), names);
            }
            (Some(d), Message::KeepAliveAck(a)) => {
                let names = self.keep_alives.get(&(to, a.request)).cloned();
                let text = format!(
                    "directory {d} → {to}: keep-alive ack request {} ({} held, digest {:x}, lease {}{counter})",
                    a.request, a.held.count, a.held.digest, a.lease
                );
                for name in names.unwrap_or_default() {
                    self.history.push(at, Some(&name), text.clone());
                }
            }
            _ => {}
        }
    }

    /// Runs until `at` and compares the views there (see [`World::check_views`]), with
    /// the registries as they stood a [`SLICE`] before: a listener cannot know of a
    /// change its directory made in the same instant (a lease that ran out just then),
    /// so a name whose registry state changed within that last slice is not compared
    /// (the faults are over: anything older has been delivered).
    fn check_views_at(&mut self, at: Instant, invariant: &'static str, what: &str) {
        let before = Instant::from_micros(at.as_micros().saturating_sub(SLICE.as_micros()));
        self.advance(before.saturating_since(self.sim.now));
        let registries: Vec<_> = (0..self.sim.directories.len())
            .map(|d| self.sim.live_at(d))
            .collect();
        self.advance(at.saturating_since(self.sim.now));
        self.check_views(invariant, what, &registries);
    }

    /// Every listener's view equals the registry of the directory it follows, but for
    /// names whose state there differs from `before` (the registries a moment earlier).
    fn check_views(
        &mut self,
        invariant: &'static str,
        what: &str,
        before: &[BTreeMap<String, Service>],
    ) {
        let now = self.sim.now;
        self.history.step(now, format!("check: views ({what})"));
        for l in 0..self.listeners.len() {
            let node = self.listeners[l];
            let following = self.sim.nodes[node].client.current_directory();
            let Some(d) = following.and_then(|loc| self.directory_index(loc.socket_addr())) else {
                self.checker.violations.push(Violation {
                    invariant,
                    at: now,
                    name: None,
                    detail: format!("listener {l} ({what}) follows no directory ({following:?})"),
                });
                continue;
            };
            if matches!(self.schedule.topology, Topology::Shared { .. }) && d != self.publisher {
                self.checker.violations.push(Violation {
                    invariant,
                    at: now,
                    name: None,
                    detail: format!(
                        "listener {l} ({what}) follows directory {d}, not the publisher {}",
                        self.publisher
                    ),
                });
            }
            let registry = self.sim.live_at(d);
            let view = self.sim.nodes[node].view.services.clone();
            // Names changed in the last slice are left out of both sides.
            let changed = |name: &String| {
                before
                    .get(d)
                    .is_some_and(|e| e.get(name) != registry.get(name))
            };
            let keep = |map: &BTreeMap<String, Service>| -> BTreeMap<String, Service> {
                map.iter()
                    .filter(|(name, _)| !changed(name))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            // A listener whose table the registry overflowed lately, or that dropped a
            // state, is told of room by beacons: two in a row whose count differs from
            // what it holds bring a snapshot. A subscriber subscribes afresh at its next
            // renewal.
            let noticed = if l < self.schedule.listeners {
                ROOM_NOTICED
            } else {
                ROOM_NOTICED + self.schedule.lease.div(3)
            };
            let overflows = registry.len() > self.sim.nodes[node].client.capacity()
                || self.overflowed[l]
                    .0
                    .is_some_and(|t| now.saturating_since(t) < noticed);
            let (view, mut registry) = (keep(&view), keep(&registry));
            if overflows {
                // A table the registry overflows holds a subset of it, each state current.
                registry.retain(|name, _| view.contains_key(name));
            }
            self.checker
                .check_converged(invariant, now, l, &view, &registry, what);
        }
    }

    /// True when `service`, live but held by no registrant, is kept by the restore grace
    /// of a directory restart (see PROTOCOL.md, "Unregistrations reach a directory"): a
    /// restart from the store restored it live less than `restore_grace` ago (a
    /// directory cannot tell a gone registrant from one that could not renew while it
    /// was down, so it keeps every restored lease that long), and its registrant could
    /// not have removed it:
    /// - its unregistration was answered, but removed nothing of this version: the
    ///   Register was overtaken on the way by the Unregister that followed it, which
    ///   found nothing to remove (a directory keeps no order for a name it does not
    ///   hold), and the Register then made the record, with nobody left to renew or
    ///   remove it; without a restart it lives one lease;
    /// - or no directory answered it for a whole lease: every directory was tried, in
    ///   turn, paced like a renewal (a release given up sooner is a client bug, not
    ///   excused);
    /// - or its registrant's process stopped while it held it, or before its
    ///   unregistration was answered (`abandoned`).
    fn kept_by_restore(&self, now: Instant, service: &Service) -> bool {
        let name = service.name().as_str();
        let version = service.version.0;
        let grace = self.sim.config.restore_grace + Duration::from_secs(1);
        let restored = self
            .restored
            .get(&(name.to_string(), version))
            .is_some_and(|t| now <= *t + grace);
        if self.abandoned.contains(&port(service)) {
            return restored;
        }
        let Some(i) = self.incarnations.get(&port(service)) else {
            return false;
        };
        let Some(release) = self.releases.get(&(i.registrant, name.to_string())) else {
            return false;
        };
        let unremovable = match release.outcome {
            Some((_, true)) => release.removed.is_none_or(|v| v < version),
            Some((at, false)) => at.saturating_since(release.began) >= self.schedule.lease,
            None => false,
        };
        restored && unremovable
    }

    /// The publisher's registry holds exactly what the registrants hold (shared store),
    /// except what a restart's restore grace keeps (`kept_by_restore`).
    fn check_registry(&mut self) {
        if !matches!(self.schedule.topology, Topology::Shared { .. }) {
            return;
        }
        let now = self.sim.now;
        let registry = self.sim.live_at(self.publisher);
        let mut held: BTreeMap<String, u16> = BTreeMap::new();
        for h in &self.holdings {
            held.extend(h.iter().map(|(k, v)| (k.clone(), *v)));
        }
        let mut differences = Vec::new();
        for (name, p) in &held {
            match registry.get(name) {
                None => differences.push((
                    name.clone(),
                    format!("{name} port {p} is not in the registry"),
                )),
                Some(s) if port(s) != *p => differences.push((
                    name.clone(),
                    format!(
                        "{name}: registry has port {}, registrant holds port {p}",
                        port(s)
                    ),
                )),
                Some(_) => {}
            }
        }
        for (name, s) in &registry {
            if !held.contains_key(name) && !self.kept_by_restore(now, s) {
                differences.push((
                    name.clone(),
                    format!(
                        "{name} v{} port {} is live but no registrant holds it",
                        s.version.0,
                        port(s)
                    ),
                ));
            }
        }
        let total = differences.len();
        for (name, d) in differences.into_iter().take(5) {
            self.checker.violations.push(Violation {
                invariant: "registry vs registrants",
                at: now,
                name: Some(name),
                detail: format!("{d} ({total} differences in all)"),
            });
        }
    }
}
