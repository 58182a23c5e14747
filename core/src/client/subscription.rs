//! Subscription mode: a listener that multicast does not reach has its directory send
//! it every matching change by unicast.
//!
//! With [`ClientConfig::subscribe`] (or after [`Client::subscribe`]) a listener
//! subscribes at its current directory with a delivery id of its own and the version
//! up to which it holds the directory's changes (none at first: the first delivery is
//! a snapshot), renews a third of the granted lease after sending the attempt that was
//! acknowledged, and subscribes afresh (a new delivery id, nothing held) whenever it
//! moves to another directory. A directory that forgot it (restarted empty) takes the
//! next renewal as a new subscription and starts from the version it names.
//!
//! Deliveries are pages ([`Message::DeliveredChanges`], or
//! [`Message::DeliveredSnapshot`] for a subscriber too far behind) that name the
//! subscriber (its id) and whose `request` is the delivery id: a page answering a
//! request, or delivered to another subscriber, is never taken as a delivery, whoever
//! replays it here. They are taken from whichever directory sends them: directories
//! that share their subscriber table (the etcd cluster) deliver from the publisher, to
//! subscribers of a replica too, and a new publisher delivers under the stored
//! subscription before the subscriber has moved to it. Acknowledgements go to the
//! directory the subscriber talks to, or, when the last delivery page came from
//! another directory it knows (a new publisher delivering while the one it talks to is
//! dead), to that one: the publisher's re-sends stop at
//! once, not when the subscriber has failed over. (From a directory it does not know,
//! a replica's subscriber leaves them to its replica, which passes the cursor on
//! through the store.) A subscriber
//! told by a replica that it does not deliver moves to another directory if it knows
//! one, and otherwise stays. Their changes go
//! into the same table, through the same checks, as announcements and pages do, so a
//! change is reported once however many ways (multicast, a repair, a delivery, a
//! re-send) it arrives. When pages of a delivery, taken in any order and from any
//! attempts, cover every name (see the stretches module), the listener holds the
//! directory's changes up to the oldest page's `as_of` (a page stamped no later than
//! what is held, a late one of a delivery taken whole, says nothing new and is not
//! counted), and acknowledges that
//! cumulatively with a [`DeliveryAck`] (unless it refused a state as perhaps older than
//! a removal it has forgotten: it then asks for a repair, see the repair module). Every
//! delivery page is answered with one: it also says how far the delivery in flight has
//! come from its start without a gap (`taken`), and the directory's next attempt
//! resumes after that instead of from the start, so each attempt that gets a page
//! through makes progress, whatever the number of pages, the loss and the order.
//!
//! [`DeliveryAck`]: crate::wire::DeliveryAck

use super::stretches::Progress;
use super::*;
use crate::wire::{DeliveryAck, SubscribeAck, SubscribeRequest, UnsubscribeRequest};

/// Where the subscription stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Subscribing or renewing: waiting for an answer.
    Subscribing,
    /// Acknowledged; renew at the deadline.
    Active,
    /// Unsubscribing: waiting for an answer (given up after a few attempts).
    Unsubscribing,
}

/// The subscription at the current directory.
#[derive(Clone, Debug)]
pub(super) struct Subscription {
    /// The id the directory puts on this subscription's deliveries.
    delivery: u32,
    state: State,
    /// The attempts of the request in progress.
    sent: Attempts,
    attempts: u8,
    send: bool,
    /// When to retry (subscribing, unsubscribing) or renew (active).
    deadline: Instant,
    /// The lease granted (until then, the lease asked for).
    granted: Duration,
    progress: Option<Progress>,
    /// The newest `as_of` of a delivery received in full: a page of an older one (a
    /// late copy, or a re-send overtaken by a newer delivery) says nothing new and
    /// may list what is gone since, so it is dropped. None: nothing is held at this
    /// subscription yet, and its Subscribes ask for a snapshot first (no `since`),
    /// even once acknowledged, or a renewal would move the cursor past the snapshot a
    /// fresh subscription is for.
    held: Option<Version>,
    /// A delivery was received in full: acknowledge what is held.
    ack: bool,
    /// The known directory whose delivery page came last, when not the current one:
    /// acknowledgements go there (see the module documentation).
    deliverer: Option<SocketAddr>,
    /// A snapshot was delivered during the failover grace, which kept it from removing
    /// what it did not list: subscribe afresh (for a new snapshot) once the grace ends.
    graced: bool,
    /// A state was dropped for want of room in the table: once there is room, the
    /// renewal subscribes afresh, and the new snapshot brings what was dropped.
    dropped: bool,
}

impl Subscription {
    /// A subscription to start at once, with deliveries numbered `delivery`.
    pub(super) fn start(delivery: u32, lease: Duration, now: Instant) -> Self {
        Subscription {
            delivery,
            state: State::Subscribing,
            sent: Attempts::NONE,
            attempts: 0,
            send: true,
            deadline: now,
            granted: lease,
            progress: None,
            held: None,
            ack: false,
            deliverer: None,
            graced: false,
            dropped: false,
        }
    }
}

impl<const R: usize> Client<'_, R> {
    /// Subscribes at the current directory (and at every directory the client moves
    /// to) to unicast deliveries of the changes that match the interest: for a
    /// listener on a network that drops multicast. Does nothing without an interest,
    /// when already subscribed, or in a build without subscription mode (herald-core's
    /// `subscribe` feature).
    pub fn subscribe(&mut self, now: Instant) {
        self.observe(now);
        if !SUBSCRIBE
            || !self.listening()
            || self
                .subscription
                .as_ref()
                .is_some_and(|s| s.state != State::Unsubscribing)
        {
            return;
        }
        let delivery = self.request_id();
        self.subscription
            .set(Subscription::start(delivery, self.config.lease, self.now));
    }

    /// Ends the subscription (an orderly stop): the directory is told, and deliveries
    /// stop (and the client no longer subscribes by itself, whatever
    /// [`ClientConfig::subscribe`] said). Multicast announcements are still followed.
    pub fn unsubscribe(&mut self, now: Instant) {
        self.observe(now);
        let now = self.now;
        self.config.subscribe = Subscribe::Never;
        if let Some(s) = self.subscription.as_mut() {
            s.state = State::Unsubscribing;
            s.sent.clear();
            s.attempts = 0;
            s.send = true;
            s.deadline = now;
            s.progress = None;
            s.ack = false;
        }
    }

    /// True while the client subscribes (or is subscribing) to unicast deliveries.
    pub fn is_subscribed(&self) -> bool {
        self.subscription
            .as_ref()
            .is_some_and(|s| s.state != State::Unsubscribing)
    }

    /// The client moved to another directory: subscribe there afresh.
    pub(super) fn subscribe_afresh(&mut self) {
        if !self.is_subscribed() {
            self.subscription.clear();
            return;
        }
        let delivery = self.request_id();
        self.subscription
            .set(Subscription::start(delivery, self.config.lease, self.now));
    }

    /// A state was dropped for want of room: see [`Subscription::dropped`].
    pub(super) fn note_dropped(&mut self) {
        if let Some(s) = self.subscription.as_mut() {
            s.dropped = true;
        }
    }

    /// After a failover, once the grace is over: a snapshot delivered during it removed
    /// nothing it did not list (see the listening module), and no beacon will show the
    /// difference to a subscriber that hears no multicast, so it subscribes afresh and
    /// takes the new snapshot in full.
    pub(super) fn settle_subscription(&mut self) {
        let due = self.now >= self.grace_until;
        if due && self.subscription.as_ref().is_some_and(|s| s.graced) {
            self.subscribe_afresh();
        }
    }

    /// With [`Subscribe::WithoutBeacons`]: when a listener not subscribed stops waiting
    /// for a beacon (a directory timeout after the last one, or after it started).
    pub(super) fn beacons_expected(&self) -> Option<Instant> {
        let waiting = self.config.subscribe == Subscribe::WithoutBeacons
            && self.listening()
            && !self.is_subscribed();
        let since = self.last_beacon.or(self.counter_epoch)?;
        waiting.then(|| since + self.config.directory_timeout + Duration::from_micros(1))
    }

    /// Subscribes a listener that has heard no beacon for a directory timeout, when
    /// configured to ([`Subscribe::WithoutBeacons`]).
    pub(super) fn subscribe_without_beacons(&mut self) {
        if self.beacons_expected().is_some_and(|t| t <= self.now) {
            self.subscribe(self.now);
        }
    }

    /// When the subscription next needs `handle_timeout`.
    pub(super) fn subscription_timeout(&self, can_send: bool) -> Option<Instant> {
        let s = self.subscription.as_ref()?;
        if (s.send || s.ack) && can_send {
            return Some(self.now);
        }
        (!s.send).then_some(s.deadline)
    }

    /// Time has reached `now`: renews, or counts an unanswered attempt. True when the
    /// current directory, never having answered, has had `max_attempts` of them.
    pub(super) fn subscription_tick(&mut self, fresh: bool, max_attempts: u8) -> bool {
        let now = self.now;
        let room = !self.table.is_full();
        let Some(s) = self.subscription.as_mut() else {
            return false;
        };
        if s.send || s.deadline > now {
            return false;
        }
        match s.state {
            // What was dropped for want of room is delivered by no change (the
            // acknowledgements went past it): a new subscription's snapshot brings it.
            State::Active if s.dropped && room => {
                self.subscribe_afresh();
                false
            }
            State::Active => {
                s.state = State::Subscribing;
                s.sent.clear();
                s.attempts = 0;
                s.send = true;
                false
            }
            State::Subscribing => {
                s.attempts = s.attempts.saturating_add(1);
                s.send = true;
                fresh && s.attempts >= max_attempts
            }
            State::Unsubscribing => {
                s.attempts = s.attempts.saturating_add(1);
                if s.attempts >= max_attempts {
                    // The lease ends it wherever it is held.
                    self.subscription.clear();
                } else {
                    s.send = true;
                }
                false
            }
        }
    }

    /// Writes the subscription's acknowledgement or request, if one is due (a request
    /// to `destination`, the known directory `directory`).
    pub(super) fn write_subscription(
        &mut self,
        sequence: u64,
        directory: u8,
        destination: SocketAddr,
        buf: &mut [u8],
    ) -> Option<Transmit> {
        if !SUBSCRIBE {
            // A client without subscription mode never subscribes (and links none of
            // this).
            return None;
        }
        let held = self.chain.heard();
        let env = &self.config.environment;
        let s = self.subscription.as_mut()?;
        if s.ack && s.state != State::Unsubscribing {
            s.ack = false;
            let ack = DeliveryAck {
                subscriber: self.config.registrant,
                delivery: s.delivery,
                // Nothing held at this subscription yet: its snapshot is still due,
                // whatever the chain holds.
                as_of: if s.held.is_some() { held } else { Version(0) },
                taken: s.progress.as_ref().and_then(Progress::taken),
            };
            let destination = s.deliverer.unwrap_or(destination);
            let len = wire::encode(env, &ack, buf).ok()?;
            return Some(Transmit { destination, len });
        }
        if !s.send {
            return None;
        }
        let (attempts, granted) = (s.attempts, s.granted);
        let now = self.now;
        let interval = self.retry_interval(attempts, granted);
        let cookie = self.cookie_for(destination);
        let env = &self.config.environment;
        let s = self.subscription.as_mut()?;
        let request = s.sent.send(&mut self.next_request, directory, now);
        s.send = false;
        s.deadline = now + interval;
        let len = match s.state {
            State::Unsubscribing => {
                let message = UnsubscribeRequest {
                    request,
                    subscriber: self.config.registrant,
                };
                wire::encode(env, &message, buf)
            }
            _ => {
                let message = SubscribeRequest {
                    request,
                    subscriber: self.config.registrant,
                    delivery: s.delivery,
                    lease: self.config.lease,
                    interest: self.config.interest_or_all(),
                    since: (s.held.is_some() && held > Version(0)).then_some(held),
                    cookie,
                };
                wire::encode(env, &message, buf)
            }
        }
        .ok()?;
        self.silent_since.get_or_insert(now);
        self.note_sent(request, sequence);
        Some(Transmit { destination, len })
    }

    /// The answer to a Subscribe (a lease) or an Unsubscribe (no lease).
    pub(super) fn handle_subscribe_ack(&mut self, ack: SubscribeAck, from: SocketAddr) {
        let current = self.heard_from_current(from);
        let senders = self.senders(from);
        let Some(s) = self.subscription.as_mut() else {
            return;
        };
        let Some(attempt) = s.sent.answered(ack.request, senders) else {
            if current && s.state == State::Active && ack.lease > Duration::ZERO {
                // It answers none of the attempts: perhaps a late Subscribe of a
                // subscription given up here, with another delivery id, which the
                // directory now takes for this subscriber's. Renew at once, so that it
                // delivers under the current id again.
                s.send = true;
            }
            return;
        };
        match s.state {
            State::Unsubscribing => self.subscription.clear(),
            State::Subscribing | State::Active => {
                s.state = State::Active;
                s.attempts = 0;
                s.send = false;
                s.granted = ack.lease;
                s.deadline = (attempt + ack.lease.div(3)).max(self.now);
            }
        }
        if self.heard_from_current(from) {
            self.answered();
            // Alive: a check of it in progress is answered.
            self.check = None;
            if !ack.delivering && self.is_subscribed() && self.directories.len() > 1 {
                // A replica: it sends nothing. Follow another directory (with none
                // other known, stay: the publisher of a shared table delivers).
                if let Some(i) = self.current {
                    self.directories[i].publishing = false;
                }
                self.fail_over();
            }
        }
    }

    /// A directory's cookie answered the subscription's attempt `request`: send it
    /// again at once, with the cookie.
    /// True when `request` is one of the subscription's remembered attempts at `from`.
    pub(super) fn subscription_asked(&self, request: u32, from: SocketAddr) -> bool {
        let senders = self.senders(from);
        self.subscription
            .as_ref()
            .is_some_and(|s| s.sent.answered(request, senders).is_some())
    }

    pub(super) fn subscription_cookie(&mut self, request: u32, from: SocketAddr) {
        let senders = self.senders(from);
        if let Some(s) = self.subscription.as_mut() {
            if s.sent.answered(request, senders).is_some() && s.sent.last() == Some(request) {
                s.send = true;
            }
        }
    }

    /// True when `reject` answers the subscription's request (and was taken).
    pub(super) fn subscription_rejected(&mut self, reject: &Reject, from: SocketAddr) -> bool {
        let now = self.now;
        let senders = self.senders(from);
        let Some(s) = self.subscription.as_mut() else {
            return false;
        };
        if reject.request == 0 || s.sent.answered(reject.request, senders).is_none() {
            return false;
        }
        match (s.state, reject.reason) {
            (State::Unsubscribing, _) => self.subscription.clear(),
            (_, RejectReason::Stale) => s.send = true,
            _ => {
                // Full, or not possible here: listen on the group meanwhile and try again
                // a lease later.
                s.state = State::Subscribing;
                s.send = false;
                s.attempts = 0;
                s.deadline = now + self.config.lease;
                self.snapshot_rejection =
                    Some((reject.reason, reject.directory_environment.clone()));
            }
        }
        if self.heard_from_current(from) {
            self.answered();
        }
        true
    }

    /// A page delivered to this subscriber under another delivery id than its
    /// subscription's, by the directory it subscribes at: that directory holds an
    /// older subscription of this subscriber's (a late Subscribe of one given up,
    /// taken after the current one, whose answer was lost or came first). The page is
    /// not taken; an active subscription renews at once, so that the directory
    /// delivers under the current id again instead of at the next renewal.
    pub(super) fn delivered_under_another_id(&mut self, from: SocketAddr, request: u32) {
        if !self.heard_from_current(from) {
            return;
        }
        if let Some(s) = self.subscription.as_mut() {
            if s.state == State::Active && s.delivery != request {
                s.send = true;
            }
        }
    }

    /// True when a page delivered to `subscriber` with this `request` is a delivery of
    /// the subscription: this client's, with its delivery id.
    pub(super) fn is_delivery(&self, subscriber: u64, request: u32) -> bool {
        subscriber == self.config.registrant
            && self
                .subscription
                .as_ref()
                .is_some_and(|s| s.state != State::Unsubscribing && s.delivery == request)
    }

    /// A page of changes delivered (by the directory followed, or by the publisher of
    /// directories that share their subscribers).
    pub(super) fn handle_delivered_changes(
        &mut self,
        from: SocketAddr,
        header: PageHeader,
        items: Items<'_, Change>,
    ) {
        if !self.take_delivery(from, &header) {
            return;
        }
        let last = self.apply_changes(header.as_of, items);
        self.delivered(&header, last, false);
    }

    /// A page of a snapshot delivered (like [`handle_delivered_changes`](Self::handle_delivered_changes)).
    pub(super) fn handle_delivered_snapshot(
        &mut self,
        from: SocketAddr,
        header: PageHeader,
        items: Items<'_, Service>,
    ) {
        if !self.take_delivery(from, &header) {
            return;
        }
        let last = items.clone().last().map(|s| s.registration.name);
        self.apply_page(&header, items);
        self.delivered(&header, last, true);
    }

    /// A delivery page: from the directory followed, it is alive (a check of it in
    /// progress is answered); from another known one, acknowledgements go there. True
    /// unless the page is older than a delivery already received in full.
    fn take_delivery(&mut self, from: SocketAddr, header: &PageHeader) -> bool {
        let current = self.heard_from_current(from);
        if current {
            self.answered();
            self.check = None;
        }
        let other = !current && self.is_directory(from);
        let Some(s) = self.subscription.as_mut() else {
            return false;
        };
        let taken = s.held.is_none_or(|held| header.as_of >= held);
        if taken {
            s.deliverer = other.then_some(from);
        }
        taken
    }

    /// Counts the page of a delivery (see the stretches module); once its pages
    /// cover every name, the changes up to the oldest page's `as_of` are held. Every
    /// page is answered with an acknowledgement of what is held and taken, so the
    /// directory's next attempt resumes after it.
    fn delivered(&mut self, header: &PageHeader, last: Option<ServiceName>, snapshot: bool) {
        let Some(s) = self.subscription.as_mut() else {
            return;
        };
        s.ack = true;
        if s.held.is_some_and(|held| header.as_of <= held) {
            // Written no later than what is held (a late page of a delivery taken
            // whole): it says nothing new. Counted with the pages of the delivery in
            // flight, it would complete that one at its own stamp, no further than
            // held, and the directory would wait out its back-off for the rest.
            return;
        }
        let progress = match s.progress.as_mut() {
            Some(p) if p.snapshot == snapshot => p,
            // The directory turned the delivery into a snapshot, or back (or this is
            // its first page): what was taken of the other kind no longer counts.
            _ => s.progress.insert(Progress::new(snapshot)),
        };
        progress.take(header.after.clone(), last, header.complete, header.as_of);
        let Some(as_of) = progress.complete() else {
            return;
        };
        s.progress = None;
        // Held now: later Subscribes name what the chain holds.
        s.held = s.held.max(Some(as_of));
        s.graced |= snapshot && self.now < self.grace_until;
        if snapshot {
            self.chain.settle(as_of);
            self.snapshot_done = Some(self.services().count());
        } else {
            self.chain.advance(as_of);
        }
        if self.chain.heard() < as_of {
            // A state was refused (see the repair module): the chain stops below it,
            // and so do the acknowledgements, and no beacon will show a subscriber
            // that it is behind. Ask for the changes since, as a beacon would have.
            self.request_repair();
        }
    }
}
