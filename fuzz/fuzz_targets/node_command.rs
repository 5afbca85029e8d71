//! `NodeCommand::parse` (`COMMAND\nPARAMS-JSON`), which checks a `node.invoke`'s command params before they
//! reach a node: never a panic; only the protocol's names parse, each to itself; a parsed command written
//! back (`{command, params}`) reads as the same command.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use node_kit::protocol::NodeCommand;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (name, params) = text.split_once('\n').unwrap_or((text, ""));
    let params = if params.trim().is_empty() {
        Value::Null
    } else {
        match serde_json::from_str::<Value>(params) {
            Ok(params) => params,
            Err(_) => return,
        }
    };
    match NodeCommand::parse(name, &params) {
        Ok(Some(command)) => {
            assert_eq!(command.name(), name);
            common::assert_round_trip(&command);
        }
        Ok(None) => assert!(!NodeCommand::ALL.contains(&name)),
        Err(why) => assert!(NodeCommand::ALL.contains(&name) && why.starts_with("invalid params for"), "{why}"),
    }
});
