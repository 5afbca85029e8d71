//! `pair.rename` (operators): gives a paired node another name.

use super::{Context, parse_params};
use node_kit::protocol::{ErrorShape, PairRenameParams, PairRenamed, display_safe_name, method};
use serde_json::Value;

pub(crate) struct PairRename {
    params: PairRenameParams,
}

impl PairRename {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        Ok(PairRename { params: parse_params(method::PAIR_RENAME, params)? })
    }

    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let PairRenameParams { node_id, name } = self.params;
        let name = display_safe_name(&name);
        if !ctx.state.paired.rename(&node_id, name.clone()).map_err(|e| super::store_failed(&e))? {
            return Err(super::not_paired(&node_id));
        }
        let renamed = PairRenamed { node_id, name };
        ctx.state.nodes.renamed(&renamed);
        Ok(serde_json::to_value(renamed).expect("payloads serialise"))
    }
}
