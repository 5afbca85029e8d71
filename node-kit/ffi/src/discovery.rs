//! Finding computers: node-kit's own mDNS browser, or the platform's (NWBrowser, NsdManager) fed in by
//! the app, since phones restrict raw multicast.

use crate::{NodeKitError, RUNTIME, TaskHandle};
use node_kit::discovery::{
    BridgeHint, DiscoveredBridge, Discovery, DiscoveryError, DiscoveryEvent, DiscoveryStream, MdnsDiscovery,
};
use std::sync::Arc;
use tokio::sync::mpsc;

/// A computer a browser found. Nothing here is verified: pairing and the pinned key are.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct DiscoveredComputer {
    /// Names the announcement, for [`DiscoveryListener::on_lost`].
    pub instance: String,
    /// `host:port` addresses to try, best first.
    pub addresses: Vec<String>,
    pub name: Option<String>,
    /// The start of the computer's key ID, as announced (the TXT record's `id`).
    pub id_hint: Option<String>,
}

/// Receives what [`discover_computers`] finds.
#[uniffi::export(with_foreign)]
pub trait DiscoveryListener: Send + Sync {
    fn on_found(&self, computer: DiscoveredComputer);
    fn on_lost(&self, instance: String);
}

/// Browses the local network with mDNS (`_lanyard._tcp`) until the handle is cancelled. `interfaces`
/// limits the browse to those (every interface when empty); `port` is for test networks (5353 when none).
#[uniffi::export]
pub fn discover_computers(
    interfaces: Vec<String>,
    port: Option<u16>,
    listener: Arc<dyn DiscoveryListener>,
) -> Result<Arc<TaskHandle>, NodeKitError> {
    let discovery = mdns(interfaces, port);
    let mut stream = {
        let _runtime = RUNTIME.enter();
        discovery.watch().map_err(discovery_error)?
    };
    Ok(TaskHandle::spawn(async move {
        while let Some(event) = stream.next().await {
            match event {
                DiscoveryEvent::Found(bridge) => listener.on_found(DiscoveredComputer {
                    instance: bridge.instance,
                    addresses: bridge.addresses,
                    name: bridge.hint.name,
                    id_hint: bridge.hint.id_hint,
                }),
                DiscoveryEvent::Lost { instance } => listener.on_lost(instance),
            }
        }
    }))
}

pub(crate) fn mdns(interfaces: Vec<String>, port: Option<u16>) -> MdnsDiscovery {
    let discovery = MdnsDiscovery::new().interfaces(interfaces);
    match port {
        Some(port) => discovery.port(port),
        None => discovery,
    }
}

fn discovery_error(e: DiscoveryError) -> NodeKitError {
    NodeKitError::Unreachable { detail: e.to_string() }
}

/// The app's own service browser. node-kit calls `start` when it begins looking for a computer and
/// `stop` when it no longer needs to; between the two the app reports what it sees to the sink.
#[uniffi::export(with_foreign)]
pub trait BrowseSource: Send + Sync {
    fn start(&self, sink: Arc<BrowseSink>);
    fn stop(&self);
}

/// Where the app's browser reports computers (found with their resolved addresses, and lost).
#[derive(uniffi::Object)]
pub struct BrowseSink {
    events: mpsc::Sender<DiscoveryEvent>,
}

#[uniffi::export]
impl BrowseSink {
    /// A `_lanyard._tcp` service resolved: its instance name, `host:port` addresses, and its TXT `id`
    /// and `name`. Returns false once node-kit stopped listening.
    pub fn found(&self, computer: DiscoveredComputer) -> bool {
        let hint = BridgeHint { id_hint: computer.id_hint, bridge_id: None, name: computer.name, protocol: None };
        let bridge = DiscoveredBridge { instance: computer.instance, addresses: computer.addresses, hint };
        self.events.try_send(DiscoveryEvent::Found(bridge)).is_ok()
    }

    /// The service went away.
    pub fn lost(&self, instance: String) -> bool {
        self.events.try_send(DiscoveryEvent::Lost { instance }).is_ok()
    }
}

/// node-kit's discovery over the app's browser.
pub(crate) struct Browsed(pub Arc<dyn BrowseSource>);

impl Discovery for Browsed {
    fn watch(&self) -> Result<DiscoveryStream, DiscoveryError> {
        let (events, stream) = DiscoveryStream::channel();
        let source = self.0.clone();
        let closed = events.clone();
        source.start(Arc::new(BrowseSink { events }));
        RUNTIME.spawn(async move {
            closed.closed().await;
            source.stop();
        });
        Ok(stream)
    }
}
