//! Who holds a connection to the bridge, and the caps that keep strangers from crowding out paired nodes.
//!
//! Every accepted connection is an entry from before its TLS handshake to its end. Until the gateway
//! confirms its key is paired it counts as *unpaired*: against a cap for all addresses together and one per
//! source address, both checked before any TLS work. Paired nodes count against their own, larger cap, so a
//! table full of strangers never keeps them out. Before TLS nobody can tell a paired node from a stranger,
//! so a full unpaired pool never refuses a newcomer: it ends the oldest connection of the busiest address.
//! A handshake takes milliseconds and the oldest connections are the ones lingering, so the owner's device
//! gets through a full pool; what strangers can still do is push each other (and a device waiting to be
//! approved) out. One key holds at most a few unpaired connections; a paired node's newer connection
//! replaces its older one.

use crate::source::Source;
use certs::KeyId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

/// Connection caps. [`ConnectionCaps::for_descriptors`] sizes them from the process's descriptor limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCaps {
    /// Connections not yet known to be paired (TLS, `connect`, the pairing dialogue), all addresses together.
    pub unpaired: usize,
    /// Unpaired connections from one source address.
    pub unpaired_per_address: usize,
    /// Live unpaired connections of one key.
    pub unpaired_per_key: usize,
    /// Paired nodes connected at once.
    pub paired: usize,
}

/// Descriptors kept for the process itself: listeners, mDNS sockets, files, the CLI's own links.
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// Descriptors one connection costs the bridge's process, which depends on where the gateway runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorCosts {
    /// A paired node: its socket, and its link to the gateway.
    pub paired: u64,
    /// An unpaired connection at most: its socket, and while it waits for the owner a pairing link.
    pub unpaired: u64,
}

impl DescriptorCosts {
    /// The gateway in the same process (`lanyard up`): links are in-process, so a connection costs its socket.
    pub const GATEWAY_IN_PROCESS: DescriptorCosts = DescriptorCosts { paired: 1, unpaired: 1 };
    /// The gateway in another process (`lanyard bridge`): a connection's socket and its link's socket (the
    /// link's other end is the gateway process's).
    pub const GATEWAY_APART: DescriptorCosts = DescriptorCosts { paired: 2, unpaired: 2 };
}

impl ConnectionCaps {
    /// Caps that fit in `limit` descriptors at `costs` each: strangers get at most a quarter of what is
    /// left after the reserve (never more than 1024 connections), paired nodes the rest. Because the two
    /// pools are separate, a full stranger pool leaves every paired slot and the reserve untouched.
    pub fn for_descriptors(limit: u64, costs: DescriptorCosts) -> ConnectionCaps {
        let usable = limit.saturating_sub(RESERVED_DESCRIPTORS).max(32);
        let unpaired = (usable / 4 / costs.unpaired).clamp(4, 1024);
        let paired = (usable - unpaired * costs.unpaired).max(costs.paired) / costs.paired;
        ConnectionCaps {
            unpaired: unpaired as usize,
            unpaired_per_address: 8.min(unpaired as usize),
            unpaired_per_key: 2,
            paired: paired as usize,
        }
    }
}

impl Default for ConnectionCaps {
    /// The caps for the usual soft limit of 1024 descriptors and a gateway in another process.
    fn default() -> Self {
        ConnectionCaps::for_descriptors(1024, DescriptorCosts::GATEWAY_APART)
    }
}

/// Why a connection was turned away or ended by the table; the words appear in the refusal summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooManyFromAddress,
    TooManyForKey,
    PairedFull,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::TooManyFromAddress => "address-cap",
            Refusal::TooManyForKey => "key-cap",
            Refusal::PairedFull => "paired-full",
        }
    }
}

/// Why the table ended a connection it had admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Its slot in a full unpaired pool went to a newcomer.
    Evicted,
    /// The same paired node connected again.
    Replaced,
}

impl Ended {
    pub fn reason(self) -> &'static str {
        match self {
            Ended::Evicted => "too many connections from this address",
            Ended::Replaced => "replaced by a newer connection of this node",
        }
    }
}

/// Live connection counts, for `health` and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectionCounts {
    pub unpaired: usize,
    pub paired: usize,
}

pub(crate) struct ConnectionTable {
    caps: ConnectionCaps,
    inner: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    /// Entry ids grow with time, so the smallest id of an address is its oldest connection.
    next_id: u64,
    entries: HashMap<u64, Entry>,
    unpaired_by_address: HashMap<Source, usize>,
    counts: ConnectionCounts,
}

struct Entry {
    addr: Source,
    key: Option<KeyId>,
    paired: bool,
    stop: CancellationToken,
    ended: Arc<OnceLock<Ended>>,
}

impl ConnectionTable {
    pub(crate) fn new(caps: ConnectionCaps) -> Arc<ConnectionTable> {
        Arc::new(ConnectionTable { caps, inner: Mutex::new(Table::default()) })
    }

    pub(crate) fn caps(&self) -> ConnectionCaps {
        self.caps
    }

    pub(crate) fn counts(&self) -> ConnectionCounts {
        self.inner.lock().expect("connection table lock").counts
    }

    /// Admits a new connection from `addr` as unpaired, before any TLS work. `shutdown` ends it with the
    /// bridge.
    pub(crate) fn admit(self: &Arc<Self>, addr: Source, shutdown: &CancellationToken) -> Result<Admission, Refusal> {
        let mut table = self.inner.lock().expect("connection table lock");
        let from_here = table.unpaired_by_address.get(&addr).copied().unwrap_or(0);
        if from_here >= self.caps.unpaired_per_address {
            return Err(Refusal::TooManyFromAddress);
        }
        if table.counts.unpaired >= self.caps.unpaired {
            table.evict_one();
        }
        table.next_id += 1;
        let id = table.next_id;
        let stop = shutdown.child_token();
        let ended = Arc::new(OnceLock::new());
        table.entries.insert(id, Entry { addr, key: None, paired: false, stop: stop.clone(), ended: ended.clone() });
        *table.unpaired_by_address.entry(addr).or_default() += 1;
        table.counts.unpaired += 1;
        Ok(Admission { table: self.clone(), id, stop, ended })
    }
}

impl Table {
    /// Makes room in a full unpaired pool: ends the oldest connection of the busiest address (the oldest
    /// of all when every address holds as many).
    fn evict_one(&mut self) {
        let busiest = self.unpaired_by_address.values().copied().max().unwrap_or(0);
        let victim = self
            .entries
            .iter()
            .filter(|(_, e)| !e.paired && self.unpaired_by_address.get(&e.addr) == Some(&busiest))
            .map(|(id, _)| *id)
            .min();
        if let Some(id) = victim {
            self.remove(id, Some(Ended::Evicted));
        }
    }

    /// Drops an entry; with `ended`, also stops its connection and says why.
    fn remove(&mut self, id: u64, ended: Option<Ended>) {
        let Some(entry) = self.entries.remove(&id) else { return };
        if entry.paired {
            self.counts.paired -= 1;
        } else {
            self.release_unpaired(entry.addr);
        }
        if let Some(why) = ended {
            let _ = entry.ended.set(why);
            entry.stop.cancel();
        }
    }

    /// One unpaired connection from `addr` fewer.
    fn release_unpaired(&mut self, addr: Source) {
        self.counts.unpaired -= 1;
        if let Some(held) = self.unpaired_by_address.get_mut(&addr) {
            *held -= 1;
            if *held == 0 {
                self.unpaired_by_address.remove(&addr);
            }
        }
    }

    fn ids_of_key(&self, key: &KeyId, paired: bool) -> Vec<u64> {
        self.entries
            .iter()
            .filter(|(_, e)| e.paired == paired && e.key.as_ref() == Some(key))
            .map(|(id, _)| *id)
            .collect()
    }
}

/// One connection's place in the table; dropping it frees the place.
pub(crate) struct Admission {
    table: Arc<ConnectionTable>,
    id: u64,
    stop: CancellationToken,
    ended: Arc<OnceLock<Ended>>,
}

impl Admission {
    /// Records the key the TLS handshake proved; refused when that key already holds its unpaired cap.
    pub(crate) fn identify(&self, key: KeyId) -> Result<(), Refusal> {
        let mut table = self.table.inner.lock().expect("connection table lock");
        if table.ids_of_key(&key, false).len() >= self.table.caps.unpaired_per_key {
            return Err(Refusal::TooManyForKey);
        }
        if let Some(entry) = table.entries.get_mut(&self.id) {
            entry.key = Some(key);
        }
        Ok(())
    }

    /// Moves the connection to the paired pool once the gateway accepted its key, ending the node's older
    /// connections.
    pub(crate) fn promote(&self) -> Result<(), Refusal> {
        let mut table = self.table.inner.lock().expect("connection table lock");
        let Some(key) = table.entries.get(&self.id).and_then(|e| e.key) else {
            return Err(Refusal::TooManyForKey);
        };
        let older = table.ids_of_key(&key, true);
        if table.counts.paired - older.len() >= self.table.caps.paired {
            return Err(Refusal::PairedFull);
        }
        for id in older {
            table.remove(id, Some(Ended::Replaced));
        }
        let entry = table.entries.get_mut(&self.id).expect("a live admission has its entry");
        if entry.paired {
            return Ok(());
        }
        entry.paired = true;
        let addr = entry.addr;
        table.release_unpaired(addr);
        table.counts.paired += 1;
        Ok(())
    }

    /// Resolves when the connection must end: the bridge stops, or the table evicted or replaced it.
    pub(crate) async fn stopped(&self) {
        self.stop.cancelled().await
    }

    /// Why [`Admission::stopped`] resolved: `None` when the bridge is shutting down.
    pub(crate) fn ended(&self) -> Option<Ended> {
        self.ended.get().copied()
    }

    /// The close frame for a connection [`Admission::stopped`] ended.
    pub(crate) fn close_reason(&self) -> (CloseCode, &'static str) {
        match self.ended() {
            Some(Ended::Replaced) => (CloseCode::Policy, Ended::Replaced.reason()),
            Some(Ended::Evicted) => (CloseCode::Again, Ended::Evicted.reason()),
            None => (CloseCode::Away, "the bridge is shutting down"),
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.table.inner.lock().expect("connection table lock").remove(self.id, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(unpaired: usize, per_address: usize, paired: usize) -> ConnectionCaps {
        ConnectionCaps { unpaired, unpaired_per_address: per_address, unpaired_per_key: 2, paired }
    }

    fn ip(last: u8) -> Source {
        Source::Lan(std::net::IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn per_address_cap_then_freed_on_drop() {
        let table = ConnectionTable::new(caps(10, 2, 10));
        let stop = CancellationToken::new();
        let a = table.admit(ip(1), &stop).unwrap();
        let _b = table.admit(ip(1), &stop).unwrap();
        assert_eq!(table.admit(ip(1), &stop).err(), Some(Refusal::TooManyFromAddress));
        table.admit(ip(2), &stop).unwrap();
        drop(a);
        table.admit(ip(1), &stop).unwrap();
    }

    #[test]
    fn a_full_pool_ends_the_busiest_address_oldest_connection_for_a_newcomer() {
        let table = ConnectionTable::new(caps(4, 3, 10));
        let stop = CancellationToken::new();
        let first = table.admit(ip(1), &stop).unwrap();
        let second = table.admit(ip(1), &stop).unwrap();
        let other = table.admit(ip(2), &stop).unwrap();
        let third = table.admit(ip(1), &stop).unwrap();
        let newcomer = table.admit(ip(3), &stop).unwrap();
        assert_eq!(first.ended(), Some(Ended::Evicted));
        assert!(first.stop.is_cancelled());
        assert!(second.ended().is_none() && third.ended().is_none() && other.ended().is_none());
        assert_eq!(table.counts().unpaired, 4);
        // 1.1 still holds two: its older one goes next, not 1.2's, though 1.2's is older.
        let _fourth = table.admit(ip(4), &stop).unwrap();
        assert_eq!(second.ended(), Some(Ended::Evicted));
        assert!(other.ended().is_none());
        // Now every address holds one: the oldest of all goes.
        let _fifth = table.admit(ip(5), &stop).unwrap();
        assert_eq!(other.ended(), Some(Ended::Evicted));
        assert!(third.ended().is_none() && newcomer.ended().is_none());
    }

    #[test]
    fn paired_nodes_have_their_own_pool() {
        let table = ConnectionTable::new(caps(2, 2, 1));
        let stop = CancellationToken::new();
        let node = table.admit(ip(9), &stop).unwrap();
        node.identify(KeyId::of_spki(b"node")).unwrap();
        node.promote().unwrap();
        let _s1 = table.admit(ip(1), &stop).unwrap();
        let _s2 = table.admit(ip(1), &stop).unwrap();
        assert_eq!(table.counts(), ConnectionCounts { unpaired: 2, paired: 1 });
        // The paired pool is full: a second paired key is refused at promotion, not before.
        let other = table.admit(ip(8), &stop).unwrap();
        other.identify(KeyId::of_spki(b"other")).unwrap();
        assert_eq!(other.promote().err(), Some(Refusal::PairedFull));
    }

    #[test]
    fn one_key_holds_few_unpaired_and_one_paired_connection() {
        let table = ConnectionTable::new(caps(10, 10, 10));
        let stop = CancellationToken::new();
        let key = KeyId::of_spki(b"k");
        let a = table.admit(ip(1), &stop).unwrap();
        a.identify(key).unwrap();
        let b = table.admit(ip(2), &stop).unwrap();
        b.identify(key).unwrap();
        let c = table.admit(ip(3), &stop).unwrap();
        assert_eq!(c.identify(key).err(), Some(Refusal::TooManyForKey));
        a.promote().unwrap();
        b.promote().unwrap();
        assert_eq!(a.ended(), Some(Ended::Replaced));
        assert!(a.stop.is_cancelled());
        assert_eq!(table.counts(), ConnectionCounts { unpaired: 1, paired: 1 });
    }

    #[test]
    fn a_promoted_connection_frees_its_address_and_is_never_evicted() {
        let table = ConnectionTable::new(caps(2, 1, 10));
        let stop = CancellationToken::new();
        let node = table.admit(ip(1), &stop).unwrap();
        node.identify(KeyId::of_spki(b"node")).unwrap();
        node.promote().unwrap();
        // Its address holds no unpaired slot any more, and the full unpaired pool evicts strangers only.
        let stranger = table.admit(ip(1), &stop).unwrap();
        let _other = table.admit(ip(2), &stop).unwrap();
        let _third = table.admit(ip(3), &stop).unwrap();
        assert_eq!(stranger.ended(), Some(Ended::Evicted));
        assert!(node.ended().is_none());
        assert_eq!(table.counts(), ConnectionCounts { unpaired: 2, paired: 1 });
        drop(node);
        assert_eq!(table.counts(), ConnectionCounts { unpaired: 2, paired: 0 });
    }

    #[test]
    fn caps_fit_the_descriptor_limit() {
        for costs in [DescriptorCosts::GATEWAY_IN_PROCESS, DescriptorCosts::GATEWAY_APART] {
            for limit in [256, 1024, 65_536, 1 << 20] {
                let caps = ConnectionCaps::for_descriptors(limit, costs);
                let worst =
                    RESERVED_DESCRIPTORS + caps.unpaired as u64 * costs.unpaired + caps.paired as u64 * costs.paired;
                assert!(worst <= limit, "{limit}: {caps:?} needs {worst}");
                assert!(caps.paired >= caps.unpaired, "{limit}: {caps:?}");
            }
            assert!(ConnectionCaps::for_descriptors(65_536, costs).paired >= 10_000);
        }
    }
}

/// The table's invariants under any interleaving of connections arriving, identifying, being promoted and
/// going away, checked against its own entries after every step.
#[cfg(test)]
mod invariants {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    /// One step: a connection arrives from one of a few addresses, or the connection at `slot` (modulo
    /// those held) proves a key (one of a few), is promoted, or goes away. Each connection identifies and
    /// is promoted at most once, in that order, as a session does.
    #[derive(Debug, Clone)]
    enum Step {
        Arrive(u8),
        Identify(usize, u8),
        Promote(usize),
        Leave(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0u8..4).prop_map(Step::Arrive),
            2 => (any::<usize>(), 0u8..3).prop_map(|(slot, key)| Step::Identify(slot, key)),
            2 => any::<usize>().prop_map(Step::Promote),
            2 => any::<usize>().prop_map(Step::Leave),
        ]
    }

    fn caps() -> impl Strategy<Value = ConnectionCaps> {
        (1usize..6, 1usize..4, 1usize..3, 1usize..4).prop_map(
            |(unpaired, unpaired_per_address, unpaired_per_key, paired)| ConnectionCaps {
                unpaired,
                unpaired_per_address,
                unpaired_per_key,
                paired,
            },
        )
    }

    /// A connection the test holds, with how far its session got.
    struct Held {
        admission: Admission,
        identified: bool,
        promoted: bool,
    }

    fn ip(last: u8) -> Source {
        Source::Lan(std::net::IpAddr::from([10, 0, 0, last]))
    }

    /// Everything that must hold between any two steps.
    fn check(table: &ConnectionTable, held: &[Held]) -> Result<(), TestCaseError> {
        let caps = table.caps;
        let inner = table.inner.lock().unwrap();
        let unpaired: Vec<&Entry> = inner.entries.values().filter(|e| !e.paired).collect();
        let paired: Vec<&Entry> = inner.entries.values().filter(|e| e.paired).collect();
        prop_assert_eq!(inner.counts, ConnectionCounts { unpaired: unpaired.len(), paired: paired.len() });
        prop_assert!(
            unpaired.len() <= caps.unpaired && paired.len() <= caps.paired,
            "{:?} over {caps:?}",
            inner.counts
        );
        let mut by_address: HashMap<Source, usize> = HashMap::new();
        for entry in &unpaired {
            *by_address.entry(entry.addr).or_default() += 1;
        }
        prop_assert_eq!(&inner.unpaired_by_address, &by_address);
        prop_assert!(by_address.values().all(|&n| n <= caps.unpaired_per_address));
        let mut keys = HashSet::new();
        for entry in &paired {
            prop_assert!(keys.insert(entry.key), "one paired connection per key");
        }
        for key in unpaired.iter().filter_map(|e| e.key) {
            prop_assert!(unpaired.iter().filter(|e| e.key == Some(key)).count() <= caps.unpaired_per_key);
        }
        // A held connection has its entry exactly while the table has not ended it; an ended one is told.
        prop_assert_eq!(
            inner.entries.len(),
            held.len() - held.iter().filter(|h| h.admission.ended().is_some()).count()
        );
        for h in held {
            let live = inner.entries.contains_key(&h.admission.id);
            prop_assert_eq!(live, h.admission.ended().is_none());
            prop_assert_eq!(h.admission.stop.is_cancelled(), !live);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn counts_and_caps_hold_under_any_interleaving(caps in caps(), steps in proptest::collection::vec(step(), 1..40)) {
            let table = ConnectionTable::new(caps);
            let shutdown = CancellationToken::new();
            let mut held: Vec<Held> = Vec::new();
            for step in steps {
                match step {
                    Step::Arrive(address) => {
                        let from_here = table.inner.lock().unwrap().unpaired_by_address.get(&ip(address)).copied();
                        match table.admit(ip(address), &shutdown) {
                            Ok(admission) => held.push(Held { admission, identified: false, promoted: false }),
                            Err(refusal) => {
                                prop_assert_eq!(refusal, Refusal::TooManyFromAddress);
                                prop_assert_eq!(from_here, Some(caps.unpaired_per_address));
                            }
                        }
                    }
                    Step::Identify(slot, key) if !held.is_empty() => {
                        let count = held.len();
                        let h = &mut held[slot % count];
                        if !h.identified {
                            h.identified = true;
                            if let Err(refusal) = h.admission.identify(KeyId::from_digest([key; 32])) {
                                prop_assert_eq!(refusal, Refusal::TooManyForKey);
                            }
                        }
                    }
                    Step::Promote(slot) if !held.is_empty() => {
                        let count = held.len();
                        let h = &mut held[slot % count];
                        if h.identified && !h.promoted {
                            h.promoted = true;
                            let _ = h.admission.promote();
                        }
                    }
                    Step::Leave(slot) if !held.is_empty() => {
                        let slot = slot % held.len();
                        held.swap_remove(slot);
                    }
                    Step::Identify(..) | Step::Promote(_) | Step::Leave(_) => {}
                }
                check(&table, &held)?;
            }
            held.clear();
            let inner = table.inner.lock().unwrap();
            prop_assert!(inner.entries.is_empty() && inner.unpaired_by_address.is_empty());
            prop_assert_eq!(inner.counts, ConnectionCounts::default());
        }
    }
}
