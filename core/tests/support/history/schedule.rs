//! Random fault schedules for the history checker: which faults a run suffers, and the
//! steps it takes, drawn from a seed (or from a fuzzer's bytes).

use super::super::Rng;
use herald_core::Duration;

/// A source of choices: a seeded PRNG in tests, the fuzzer's bytes in the fuzz target.
pub trait Choose {
    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64;

    /// One of `options`, which must not be empty.
    fn pick<T: Copy>(&mut self, options: &[T]) -> T {
        options[self.below(options.len() as u64) as usize]
    }
}

impl Choose for Rng {
    fn below(&mut self, n: u64) -> u64 {
        Rng::below(self, n)
    }
}

/// Choices read from a fuzzer's input, two bytes each; zeros once it runs out.
pub struct Bytes<'a> {
    bytes: &'a [u8],
}

impl<'a> Bytes<'a> {
    /// Choices read from `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Bytes { bytes }
    }
}

impl Choose for Bytes<'_> {
    fn below(&mut self, n: u64) -> u64 {
        let mut word = [0u8; 2];
        let take = self.bytes.len().min(2);
        word[..take].copy_from_slice(&self.bytes[..take]);
        self.bytes = &self.bytes[take..];
        if n == 0 {
            0
        } else {
            u64::from(u16::from_le_bytes(word)) % n
        }
    }
}

/// Which fault classes schedules may contain, each switchable on its own, and the
/// limits the invariants are asserted under.
///
/// `HERALD_SIM_FAULTS` switches classes off (`-replays,-restarts`) or starts from none
/// (`none,+loss`); `HERALD_SIM_EXPIRY_LOSS` sets [`expiry_loss_ceiling`](Self::expiry_loss_ceiling).
#[derive(Clone, Debug)]
pub struct FaultClasses {
    /// Independent datagram loss, 0 to 50 %.
    pub loss: bool,
    /// Duplicated datagrams.
    pub duplication: bool,
    /// Delays of up to 1 s, which reorder datagrams.
    pub reordering: bool,
    /// Bursts of up to 1,000 registrations or removals (otherwise up to 20).
    pub big_bursts: bool,
    /// An unregistration at once followed by a registration of the same names.
    pub flaps: bool,
    /// A directory stops and starts again from what its store holds.
    pub restarts: bool,
    /// A directory stops answering for a while (clients fail over).
    pub failovers: bool,
    /// Another directory of a shared store becomes the publisher.
    pub publisher_changes: bool,
    /// A shared store replicates changes up to 1.5 s late.
    pub replication_delay: bool,
    /// Recorded datagrams are sent again, from their sender or another address
    /// (authenticated environments only).
    pub replays: bool,
    /// Two directories that share nothing (otherwise every topology shares a store).
    pub independent_directories: bool,
    /// Some listeners are on a network that drops multicast: they subscribe to unicast
    /// deliveries, whose path loses at least 20 % of datagrams.
    pub unicast: bool,
    /// Directories whose version clocks disagree by up to 10 s (their wall clocks, as
    /// `herald serve` starts its version clock from one).
    pub clock_skew: bool,
    /// A registrant's process stops and another starts with the same registrant id
    /// and a clock (its requests come after the first's), registering again some of
    /// the names the first held (on new ports).
    pub registrant_restarts: bool,
    /// Some listeners (multicast or subscribers) have a table smaller than the registry
    /// may grow (down to one entry): they hold a subset, never report a live service
    /// unregistered, and converge whenever the registry fits.
    pub small_tables: bool,
    /// "No `unregistered` for a registrant that kept renewing" is asserted only for
    /// schedules whose loss is at most this.
    pub expiry_loss_ceiling: f64,
}

impl FaultClasses {
    /// Every fault class, spurious expiry asserted up to 40 % loss.
    pub fn all() -> Self {
        FaultClasses {
            loss: true,
            duplication: true,
            reordering: true,
            big_bursts: true,
            flaps: true,
            restarts: true,
            failovers: true,
            publisher_changes: true,
            replication_delay: true,
            replays: true,
            independent_directories: true,
            // Only a build with subscription mode has subscribers.
            unicast: subscription_mode(),
            clock_skew: true,
            registrant_restarts: true,
            small_tables: true,
            expiry_loss_ceiling: 0.4,
        }
    }

    /// No fault at all: small bursts on a perfect network.
    pub fn none() -> Self {
        FaultClasses {
            loss: false,
            duplication: false,
            reordering: false,
            big_bursts: false,
            flaps: false,
            restarts: false,
            failovers: false,
            publisher_changes: false,
            replication_delay: false,
            replays: false,
            independent_directories: false,
            unicast: false,
            clock_skew: false,
            registrant_restarts: false,
            small_tables: false,
            expiry_loss_ceiling: 0.4,
        }
    }

    /// Every class ([`all`](Self::all)), changed by `HERALD_SIM_FAULTS` (`-replays`,
    /// `none,+loss`) and `HERALD_SIM_EXPIRY_LOSS`.
    pub fn from_env() -> Self {
        let spec = std::env::var("HERALD_SIM_FAULTS").unwrap_or_default();
        let mut classes = FaultClasses::from_spec(&spec);
        if let Ok(ceiling) = std::env::var("HERALD_SIM_EXPIRY_LOSS") {
            classes.expiry_loss_ceiling = ceiling.parse().expect("HERALD_SIM_EXPIRY_LOSS");
        }
        classes
    }

    /// The classes whose bit is set in `mask`, in field order (bit 0: loss, 1:
    /// duplication, 2: reordering, 3: big bursts, 4: flaps, 5: restarts, 6: failovers,
    /// 7: publisher changes, 8: replication delay, 9: replays, 10: independent
    /// directories, 11: unicast subscribers, 12: clock skew, 13: registrant restarts,
    /// 14: small tables), spurious expiry asserted up to 40 % loss.
    pub fn from_mask(mask: u16) -> Self {
        let bit = |i: u16| mask & (1 << i) != 0;
        FaultClasses {
            loss: bit(0),
            duplication: bit(1),
            reordering: bit(2),
            big_bursts: bit(3),
            flaps: bit(4),
            restarts: bit(5),
            failovers: bit(6),
            publisher_changes: bit(7),
            replication_delay: bit(8),
            replays: bit(9),
            independent_directories: bit(10),
            unicast: bit(11) && subscription_mode(),
            clock_skew: bit(12),
            registrant_restarts: bit(13),
            small_tables: bit(14),
            expiry_loss_ceiling: 0.4,
        }
    }

    /// Every class, changed by the comma-separated words of `spec` (as in
    /// `HERALD_SIM_FAULTS`: `-replays`, `none,+loss`).
    pub fn from_spec(spec: &str) -> Self {
        let mut classes = FaultClasses::all();
        for word in spec.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            classes.switch(word);
        }
        classes
    }

    /// Applies one word of `HERALD_SIM_FAULTS`: `none`, `all`, `+class` or `-class`.
    pub fn switch(&mut self, word: &str) {
        let ceiling = self.expiry_loss_ceiling;
        match word {
            "none" => *self = FaultClasses::none(),
            "all" => *self = FaultClasses::all(),
            _ => {
                let (on, class) = match word.split_at(1) {
                    ("+", class) => (true, class),
                    ("-", class) => (false, class),
                    _ => panic!("HERALD_SIM_FAULTS: `{word}` is not none, all, +class or -class"),
                };
                let flag = match class {
                    "loss" => &mut self.loss,
                    "duplication" => &mut self.duplication,
                    "reordering" => &mut self.reordering,
                    "big_bursts" => &mut self.big_bursts,
                    "flaps" => &mut self.flaps,
                    "restarts" => &mut self.restarts,
                    "failovers" => &mut self.failovers,
                    "publisher_changes" => &mut self.publisher_changes,
                    "replication_delay" => &mut self.replication_delay,
                    "replays" => &mut self.replays,
                    "independent_directories" => &mut self.independent_directories,
                    "unicast" => &mut self.unicast,
                    "clock_skew" => &mut self.clock_skew,
                    "registrant_restarts" => &mut self.registrant_restarts,
                    "small_tables" => &mut self.small_tables,
                    _ => panic!("HERALD_SIM_FAULTS: no fault class `{class}`"),
                };
                // Only a build with subscription mode has subscribers.
                *flag = on && (class != "unicast" || subscription_mode());
            }
        }
        self.expiry_loss_ceiling = ceiling;
    }
}

/// How the directories are arranged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Directories sharing one replicated store (one of them publishes).
    Shared {
        /// How many.
        directories: usize,
        /// How late the store's changes reach the directories.
        delay: Duration,
    },
    /// Directories that share nothing, each publishing its own registry.
    Independent {
        /// How many.
        directories: usize,
    },
}

impl Topology {
    /// How many directories there are.
    pub fn directories(&self) -> usize {
        match *self {
            Topology::Shared { directories, .. } | Topology::Independent { directories } => {
                directories
            }
        }
    }
}

/// One step of a schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Register this many names, spread over the registrants with room.
    Register(usize),
    /// Unregister this many of the names registered.
    Unregister(usize),
    /// Unregister this many names and register each again at once.
    Flap(usize),
    /// Directory `directory` stops for `down`, then starts from what its store holds
    /// (the shared store, or its own).
    Restart {
        /// Which directory.
        directory: usize,
        /// For how long.
        down: Duration,
    },
    /// Directory `directory` stops answering for `down`, keeping its state.
    Pause {
        /// Which directory.
        directory: usize,
        /// For how long.
        down: Duration,
    },
    /// Directory `directory` becomes the publisher of the shared store.
    Elect(usize),
    /// A recorded datagram, chosen by `pick`, is sent again.
    Replay {
        /// Which of the recorded datagrams.
        pick: u64,
        /// Sent from another address than its sender's.
        other_source: bool,
        /// Sent to another listener than its first receiver (announcements).
        other_destination: bool,
    },
    /// Registrant `registrant`'s process stops; after `down` another starts with the
    /// same registrant id and registers again `keep` percent of the names the first
    /// held.
    RestartRegistrant {
        /// Which registrant (modulo the number of those holding names).
        registrant: usize,
        /// For how long no process runs.
        down: Duration,
        /// Percent of the names registered again.
        keep: u64,
    },
}

/// A run: the network's faults, the parties, and the steps, each after a pause.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// How the directories are arranged.
    pub topology: Topology,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram is duplicated.
    pub duplicate: f64,
    /// Each datagram is delayed by up to this (which reorders them).
    pub max_delay: Duration,
    /// The lease registrants ask for.
    pub lease: Duration,
    /// Frames are authenticated (replays happen only then).
    pub authenticated: bool,
    /// Listeners (each follows all names).
    pub listeners: usize,
    /// Listeners besides those (each follows all names) that hear no multicast and
    /// subscribe to unicast deliveries instead.
    pub subscribers: usize,
    /// Registrants (each holds at most 8 names).
    pub registrants: usize,
    /// Most names live at once.
    pub max_live: usize,
    /// How far each directory's version clock runs ahead of the slowest one's.
    pub clocks_ahead: Vec<Duration>,
    /// Per listener (multicast listeners first, then subscribers): a table smaller than
    /// the registry may grow, if any.
    pub small_tables: Vec<Option<usize>>,
    /// Each step, after a pause.
    pub steps: Vec<(Duration, Step)>,
}

/// A burst size of at most `most`, from 1 to 1,000 on a logarithmic scale.
fn burst(c: &mut impl Choose, most: usize) -> usize {
    let scale = c.pick(&[1usize, 10, 100, 1_000]);
    1 + c.below(scale.min(most.max(1)) as u64) as usize
}

/// Most registrations one simulated registrant holds (the simulator's `Client<8>`).
pub const PER_REGISTRANT: usize = 8;

impl Schedule {
    /// A schedule of the enabled fault classes drawn from `c`; `max_steps` bounds its
    /// length (and so its cost).
    pub fn generate(c: &mut impl Choose, classes: &FaultClasses, max_steps: u64) -> Schedule {
        let independent = classes.independent_directories && c.below(4) == 0;
        let lease = Duration::from_secs(c.pick(&[3, 6, 15]));
        let topology = if independent {
            Topology::Independent { directories: 2 }
        } else {
            let delays: &[u64] = if classes.replication_delay {
                &[3, 50, 500, 1500]
            } else {
                &[3]
            };
            // A copy later than a quarter of the lease would expire renewed leases at a
            // new publisher: that is beyond what the shared store promises.
            let delay = c.pick(delays).min(lease.as_millis() / 4);
            Topology::Shared {
                directories: 1 + c.below(3) as usize,
                delay: Duration::from_millis(delay),
            }
        };
        let loss = if classes.loss {
            c.pick(&[0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5])
        } else {
            0.0
        };
        let duplicate = if classes.duplication {
            c.pick(&[0.0, 0.05, 0.2])
        } else {
            0.0
        };
        let max_delay = Duration::from_micros(if classes.reordering {
            c.pick(&[200, 20_000, 200_000, 1_000_000])
        } else {
            200
        });
        // (Drawn in every build, so that a seed gives the same schedule with or without
        // herald-core's `auth` feature apart from this; without it no key can be made.
        // Asked of the core, not of `cfg!`: the fuzz crate includes this file too.)
        let keys = herald_core::auth::Key::new(1, &[0; herald_core::auth::MIN_KEY_LEN]).is_ok();
        let authenticated = classes.replays && c.below(2) == 0 && keys;
        // Big bursts cost most (a registrant holds 8 names): rarer, in shorter schedules.
        let big = classes.big_bursts && c.below(16) == 0;
        let max_steps = if big { max_steps.min(5) } else { max_steps };
        let max_live: usize = if big { 1_000 } else { 24 };
        let directories = topology.directories();
        let shared = matches!(topology, Topology::Shared { .. });

        let mut steps = Vec::new();
        let mut live = 0usize;
        for _ in 0..2 + c.below(max_steps.max(1)) {
            let gap = if c.below(4) == 0 {
                Duration::ZERO
            } else {
                Duration::from_millis(c.below(2_000))
            };
            let step = match c.below(12) {
                0..=4 if live < max_live => {
                    let n = burst(c, max_live - live);
                    live += n;
                    Step::Register(n)
                }
                5..=6 if live > 0 => {
                    let n = burst(c, live);
                    live -= n.min(live);
                    Step::Unregister(n)
                }
                7 if live > 0 && classes.flaps => Step::Flap(burst(c, live)),
                8 if classes.restarts && shared => Step::Restart {
                    directory: c.below(directories as u64) as usize,
                    down: Duration::from_millis(100 + c.below(lease.as_millis() / 4)),
                },
                9 if classes.failovers && directories > 1 => Step::Pause {
                    directory: c.below(directories as u64) as usize,
                    down: Duration::from_millis(100 + c.below(lease.as_millis())),
                },
                10 if classes.publisher_changes && shared && directories > 1 => {
                    Step::Elect(c.below(directories as u64) as usize)
                }
                11 if authenticated => Step::Replay {
                    pick: c.below(u64::from(u16::MAX)),
                    other_source: c.below(2) == 0,
                    other_destination: c.below(2) == 0,
                },
                _ => continue,
            };
            steps.push((gap, step));
        }
        // Drawn after everything else, so that the class leaves the rest of a seed's
        // schedule as it was.
        let listeners = 1 + c.below(2) as usize;
        let subscribers = if classes.unicast && c.below(3) == 0 {
            1 + c.below(2) as usize
        } else {
            0
        };
        let clocks_ahead = (0..directories)
            .map(|_| {
                let ahead = if classes.clock_skew && c.below(2) == 0 {
                    c.pick(&[0, 1, 300, 2_000, 10_000])
                } else {
                    0
                };
                Duration::from_millis(ahead)
            })
            .collect();
        // Independent directories restart from their own storage (drawn here, after
        // everything else, so that the schedules drawn before it stay as they were).
        if classes.restarts && independent && c.below(2) == 0 {
            let at = c.below(steps.len() as u64 + 1) as usize;
            let step = Step::Restart {
                directory: c.below(directories as u64) as usize,
                down: Duration::from_millis(100 + c.below(lease.as_millis() / 4)),
            };
            steps.insert(at, (Duration::ZERO, step));
        }
        if classes.registrant_restarts && c.below(3) == 0 {
            for _ in 0..1 + c.below(2) {
                let at = c.below(steps.len() as u64 + 1) as usize;
                let step = Step::RestartRegistrant {
                    registrant: c.below(64) as usize,
                    down: Duration::from_millis(c.pick(&[0, 20, 500, 2_000, 4_000])),
                    keep: c.pick(&[0, 50, 100]),
                };
                // At the instant of the step before: the others keep their times.
                steps.insert(at, (Duration::ZERO, step));
            }
        }
        // Drawn last too: listeners whose tables the registry may overflow.
        let small = classes.small_tables && c.below(3) == 0;
        let small_tables = (0..listeners + subscribers)
            .map(|_| {
                (small && c.below(2) == 0).then(|| {
                    let fraction = c.pick(&[0, 25, 50, 75, 100]);
                    1 + max_live * fraction / 100
                })
            })
            .collect();
        Schedule {
            topology,
            loss,
            duplicate,
            max_delay,
            lease,
            authenticated,
            listeners,
            subscribers,
            registrants: max_live.div_ceil(PER_REGISTRANT) + 2,
            max_live,
            clocks_ahead,
            small_tables,
            steps,
        }
    }

    /// True when the schedule stops or pauses a directory.
    pub fn has_outages(&self) -> bool {
        self.steps
            .iter()
            .any(|(_, s)| matches!(s, Step::Restart { .. } | Step::Pause { .. }))
    }

    /// The parameters, without the steps.
    pub fn summary(&self) -> String {
        format!(
            "{:?}, clocks ahead {:?}, loss {:.0} %, duplication {:.0} %, delay up to {}, lease {}, {}authenticated, {} listeners (and {} by unicast){}, {} registrants, {} steps",
            self.topology,
            self.clocks_ahead.iter().map(|d| d.as_millis()).collect::<Vec<_>>(),
            self.loss * 100.0,
            self.duplicate * 100.0,
            self.max_delay,
            self.lease,
            if self.authenticated { "" } else { "not " },
            self.listeners,
            self.subscribers,
            if self.small_tables.iter().any(Option::is_some) {
                format!(", tables {:?}", self.small_tables)
            } else {
                String::new()
            },
            self.registrants,
            self.steps.len()
        )
    }
}

/// True when herald-core was built with subscription mode (its `subscribe` feature):
/// asked of the client itself, since this file is built into the fuzz crate too, whose
/// own features do not say.
fn subscription_mode() -> bool {
    let mut storage = herald_core::ClientStorage::<1>::new();
    let (known, index) = storage.parts();
    let mut config = herald_core::ClientConfig::new(1);
    config.interest = Some(herald_core::Interest::all());
    config.subscribe = herald_core::Subscribe::Always;
    herald_core::Client::<'_, 1>::new(config, known, index).is_ok()
}
