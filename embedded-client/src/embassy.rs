//! The async driver on an embassy-net [`Stack`]: a [`Herald`] handle that tasks use to
//! register services and await events, and a [`Runner`] task that moves datagrams
//! between the stack and the core client, in the manner of embassy-net's own
//! `Stack`/`Runner` pair.
//!
//! ```text
//! static RESOURCES: StaticCell<Resources<'static>> = StaticCell::new();
//! let (herald, runner) = herald_embedded::embassy::new(stack, config, RESOURCES.init(Resources::new()))?;
//! spawner.spawn(herald_task(runner).unwrap()); // async fn herald_task(mut r: Runner<'static>) -> ! { r.run().await }
//! herald.register(registration)?;
//! loop { let event = herald.next_event().await; /* … */ }
//! ```

use crate::config::{Config, Error};
use crate::session::{Session, TRANSMIT_BURST};
use crate::storage::{
    Buffers, DEFAULT_DATAGRAM, DEFAULT_PACKETS, DEFAULT_SERVICES, DEFAULT_SOCKET_BYTES,
};
use crate::time::{from_embassy, to_embassy};
use core::cell::RefCell;
use core::future::{pending, poll_fn};
use core::task::{Context, Poll, Waker};
use embassy_futures::select::select3;
use embassy_futures::yield_now;
use embassy_net::udp::{RecvError, UdpSocket};
use embassy_net::Stack;
use embassy_sync::waitqueue::WakerRegistration;
use embassy_time::{with_timeout, Duration, Timer};
use herald_core::{Client, ClientError, ClientEvent, Instant, Registration, Service, ServiceName};

/// Longest a datagram may wait for room in the socket before it is dropped (the core
/// retransmits requests by itself).
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Default number of services a client registers itself (the core's default).
pub const DEFAULT_REGISTRATIONS: usize = 4;

/// The state the handle and the runner share.
struct Shared<'d, const R: usize> {
    session: Session<'d, R>,
    /// The runner, waiting for a datagram, its deadline or a call on the handle.
    runner: WakerRegistration,
    /// The task awaiting [`Herald::next_event`].
    events: WakerRegistration,
    /// A call on the handle queued work for the runner.
    poked: bool,
}

/// All the memory of one embassy driver: [`Buffers`] (sizes `N`, `P`, `S`, `D`, see
/// there) and room for the shared state of a client that registers up to `R` services
/// (default [`DEFAULT_REGISTRATIONS`]). Put it in a `static` (e.g. with `static_cell`).
pub struct Resources<
    'd,
    const N: usize = DEFAULT_SERVICES,
    const R: usize = DEFAULT_REGISTRATIONS,
    const P: usize = DEFAULT_PACKETS,
    const S: usize = DEFAULT_SOCKET_BYTES,
    const D: usize = DEFAULT_DATAGRAM,
> {
    buffers: Buffers<N, P, S, D>,
    shared: Option<RefCell<Shared<'d, R>>>,
}

impl<const N: usize, const R: usize, const P: usize, const S: usize, const D: usize>
    Resources<'_, N, R, P, S, D>
{
    /// Empty resources.
    pub const fn new() -> Self {
        Resources {
            buffers: Buffers::new(),
            shared: None,
        }
    }
}

impl<const N: usize, const R: usize, const P: usize, const S: usize, const D: usize> Default
    for Resources<'_, N, R, P, S, D>
{
    fn default() -> Self {
        Self::new()
    }
}

/// The handle tasks use: register and unregister services, await events, look up what
/// is known. It is `Copy`; every task may hold one, but only one task at a time should
/// await [`Herald::next_event`].
#[derive(Clone, Copy)]
pub struct Herald<'d, const R: usize = DEFAULT_REGISTRATIONS> {
    shared: &'d RefCell<Shared<'d, R>>,
}

/// The task that drives the client: run [`Runner::run`] in its own embassy task.
pub struct Runner<'d, const R: usize = DEFAULT_REGISTRATIONS> {
    shared: &'d RefCell<Shared<'d, R>>,
    socket: UdpSocket<'d>,
    datagram: &'d mut [u8],
}

/// Makes a client on `stack`: binds a UDP socket to the group's port, joins the group,
/// and returns the handle and the runner.
pub fn new<'d, const N: usize, const R: usize, const P: usize, const S: usize, const D: usize>(
    stack: Stack<'d>,
    config: Config,
    resources: &'d mut Resources<'d, N, R, P, S, D>,
) -> Result<(Herald<'d, R>, Runner<'d, R>), Error> {
    let Resources { buffers, shared } = resources;
    let parts = buffers.parts();
    let session = Session::new(config, parts.slots, parts.index, parts.datagram.len())?;
    let group = session.group();
    let mut socket = UdpSocket::new(stack, parts.rx_meta, parts.rx, parts.tx_meta, parts.tx);
    socket.bind(group.port).map_err(|_| Error::Bind)?;
    stack
        .join_multicast_group(group.addr)
        .map_err(|_| Error::Join)?;
    info!(
        "herald: listening on port {}, joined {}",
        group.port, group.addr
    );
    let shared = &*shared.insert(RefCell::new(Shared {
        session,
        runner: WakerRegistration::new(),
        events: WakerRegistration::new(),
        poked: false,
    }));
    let runner = Runner {
        shared,
        socket,
        datagram: parts.datagram,
    };
    Ok((Herald { shared }, runner))
}

fn now() -> Instant {
    from_embassy(embassy_time::Instant::now())
}

impl<'d, const R: usize> Herald<'d, R> {
    /// Runs `f` on the shared state, then wakes the runner to act on it.
    fn act<T>(&self, f: impl FnOnce(&mut Client<'d, R>, Instant) -> T) -> T {
        let mut shared = self.shared.borrow_mut();
        let result = f(shared.session.client_mut(), now());
        shared.poked = true;
        shared.runner.wake();
        result
    }

    /// Registers a service (or updates one this client registered); the runner keeps its
    /// lease alive until [`Herald::unregister`].
    pub fn register(&self, registration: Registration) -> Result<(), ClientError> {
        self.act(|client, now| client.register(now, registration))
    }

    /// Unregisters one of this client's services.
    pub fn unregister(&self, name: &ServiceName) -> Result<(), ClientError> {
        self.act(|client, now| client.unregister(now, name))
    }

    /// Asks the directory for everything it holds; [`ClientEvent::SnapshotComplete`]
    /// follows.
    pub fn request_snapshot(&self) {
        self.act(|client, now| client.request_snapshot(now))
    }

    /// The next event, waiting for one if there is none.
    pub async fn next_event(&self) -> ClientEvent {
        poll_fn(|cx| {
            let mut shared = self.shared.borrow_mut();
            match shared.session.poll_event() {
                Some(event) => Poll::Ready(event),
                None => {
                    shared.events.register(cx.waker());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// The next event, if there is one now.
    pub fn try_next_event(&self) -> Option<ClientEvent> {
        self.shared.borrow_mut().session.poll_event()
    }

    /// A known service, by name.
    pub fn service(&self, name: &str) -> Option<Service> {
        self.with_client(|client| client.service(name).cloned())
    }

    /// Runs `f` with read access to the client: its services, directories and counters.
    pub fn with_client<T>(&self, f: impl FnOnce(&Client<'d, R>) -> T) -> T {
        f(self.shared.borrow().session.client())
    }
}

impl<const R: usize> Runner<'_, R> {
    /// Drives the client for ever.
    pub async fn run(&mut self) -> ! {
        loop {
            let more = self.exchange().await;
            self.shared.borrow_mut().events.wake();
            if more {
                yield_now().await;
            } else {
                self.wait().await;
            }
        }
    }

    /// One turn of the core's poll order: feed what arrived, the deadline, then send.
    /// True when datagrams are left to send.
    async fn exchange(&mut self) -> bool {
        let now = now();
        // Never more than the socket can have queued; what arrives meanwhile wakes us.
        for _ in 0..=self.socket.packet_recv_capacity() {
            let mut cx = Context::from_waker(Waker::noop());
            match self.socket.poll_recv_from(self.datagram, &mut cx) {
                Poll::Ready(Ok((len, meta))) => {
                    let bytes = &self.datagram[..len];
                    self.shared
                        .borrow_mut()
                        .session
                        .receive(now, meta.endpoint, bytes);
                }
                Poll::Ready(Err(RecvError::Truncated)) => {
                    warn!("herald: dropped a datagram longer than the buffer")
                }
                Poll::Pending => break,
            }
        }
        self.shared.borrow_mut().session.handle_timeout(now);
        for _ in 0..TRANSMIT_BURST {
            let transmit = self
                .shared
                .borrow_mut()
                .session
                .poll_transmit(now, self.datagram);
            let Some((destination, len)) = transmit else {
                return false;
            };
            let sent = with_timeout(
                SEND_TIMEOUT,
                self.socket.send_to(&self.datagram[..len], destination),
            )
            .await;
            if !matches!(sent, Ok(Ok(()))) {
                debug!("herald: could not send to {}", destination);
            }
        }
        true
    }

    /// Sleeps until a datagram arrives, the client's deadline passes, or the handle
    /// queues work.
    async fn wait(&mut self) {
        let deadline = self.shared.borrow().session.poll_timeout();
        let timer = async {
            match deadline {
                Some(deadline) => Timer::at(to_embassy(deadline)).await,
                None => pending().await,
            }
        };
        let poked = poll_fn(|cx| {
            let mut shared = self.shared.borrow_mut();
            if core::mem::take(&mut shared.poked) {
                Poll::Ready(())
            } else {
                shared.runner.register(cx.waker());
                Poll::Pending
            }
        });
        select3(self.socket.wait_recv_ready(), timer, poked).await;
    }
}
