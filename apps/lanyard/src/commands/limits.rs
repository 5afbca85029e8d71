//! The descriptor budget, shared by `lanyard up`, `lanyard bridge` and `lanyard gateway`: each raises its
//! soft descriptor limit to the hard one, and the bridge sizes its connection caps from the result.

use ::bridge::connections::{ConnectionCaps, DescriptorCosts};
use ::bridge::descriptors::{self, DescriptorLimit};
use node_kit::protocol::{BridgeCapsHealth, LimitsHealth, MAX_FRAME_BYTES, UNPAIRED_MAX_FRAME_BYTES};

/// Raises the descriptor limit to the hard limit; `None` on a system that will not say.
pub(crate) fn raise_descriptor_limit() -> Option<DescriptorLimit> {
    descriptors::raise_to_hard_limit()
        .inspect_err(|e| tracing::warn!(error = %e, "cannot read the descriptor limit; sizing for 1024"))
        .ok()
}

/// The bridge's caps for `limit` (1024 when unknown), leaving `kept` descriptors for something else in the
/// process (`lanyard up`'s console), at `costs` descriptors a connection.
pub(crate) fn bridge_caps(limit: Option<DescriptorLimit>, kept: u64, costs: DescriptorCosts) -> ConnectionCaps {
    let soft = limit.map_or(1024, |limit| limit.soft);
    ConnectionCaps::for_descriptors(soft.saturating_sub(kept), costs)
}

/// The limits as `health` reports them.
pub(crate) fn limits_health(limit: Option<DescriptorLimit>, caps: Option<ConnectionCaps>) -> Option<LimitsHealth> {
    let limit = limit?;
    Some(LimitsHealth {
        open_files: limit.soft,
        open_files_hard: limit.hard,
        bridge: caps.map(|caps| BridgeCapsHealth {
            unpaired: caps.unpaired,
            unpaired_per_address: caps.unpaired_per_address,
            unpaired_per_key: caps.unpaired_per_key,
            paired: caps.paired,
            unpaired_max_frame_bytes: UNPAIRED_MAX_FRAME_BYTES,
            max_frame_bytes: MAX_FRAME_BYTES,
        }),
    })
}
