//! How nodes and requests look in a terminal: tables, scopes, and times as people say them.

use node_kit::protocol::{NodePolicy, PendingPairing, PermissionMode, Scope};

/// A waiting request as the owner sees it, in `lanyard nodes pending` and in `lanyard up`'s prompt: who
/// asks, from where, for what, and the code to compare with the device's screen.
pub(crate) fn describe_request(pending: &PendingPairing, now_ms: u64) -> String {
    let request = &pending.request;
    let device = match &request.device.model {
        Some(model) => format!("{}, {model}", request.device.platform),
        None => request.device.platform.clone(),
    };
    format!(
        "{name} ({device}) at {address}\n  asks for: {scopes}\n  code:     {sas}\n  request:  {id}\n  expires:  {left}",
        name = request.device.name,
        address = request.address,
        scopes = scopes(&request.scopes),
        sas = request.sas,
        id = pending.request_id,
        left = time_left(pending.expires_at_ms, now_ms),
    )
}

/// Scopes as the CLI's `--scopes` takes them.
pub(crate) fn scopes(scopes: &[Scope]) -> String {
    if scopes.is_empty() {
        return "none".to_string();
    }
    scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
}

/// A policy in a table cell: the mode, then how many tool patterns are allowed and denied
/// (`acceptEdits +2/-1`).
pub(super) fn policy_cell(policy: &NodePolicy) -> String {
    let (allowed, denied) = (policy.allowed_tools.len(), policy.denied_tools.len());
    match (allowed, denied) {
        (0, 0) => policy.mode.to_string(),
        (a, 0) => format!("{} +{a}", policy.mode),
        (0, d) => format!("{} -{d}", policy.mode),
        (a, d) => format!("{} +{a}/-{d}", policy.mode),
    }
}

/// A policy in full, indented under the device it belongs to.
pub(super) fn describe_policy(policy: &NodePolicy) -> String {
    let what = match policy.mode {
        PermissionMode::Default => "every tool that needs permission asks",
        PermissionMode::AcceptEdits => "file edits run unasked; commands still ask",
        PermissionMode::Plan => "the agent plans first and asks to go ahead",
    };
    let list = |patterns: &[String]| if patterns.is_empty() { "none".to_string() } else { patterns.join(", ") };
    format!(
        "  mode:    {} ({what})\n  allowed: {}\n  denied:  {}",
        policy.mode,
        list(&policy.allowed_tools),
        list(&policy.denied_tools)
    )
}

/// Left-aligned columns two spaces apart, each as wide as its widest cell.
pub(crate) fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; N]| {
        let padded: Vec<String> = cells.iter().zip(widths).map(|(cell, width)| format!("{cell:width$}")).collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut lines = vec![line(header)];
    lines.extend(rows.iter().map(|row| line(row.each_ref().map(String::as_str))));
    lines.join("\n")
}

/// How long ago `then_ms` was: "now", "5 min ago", "3 h ago", or the date once it is a day or more.
pub(super) fn ago(then_ms: u64, now_ms: u64) -> String {
    match now_ms.saturating_sub(then_ms) / 1000 {
        0..60 => "now".to_string(),
        secs @ 60..3600 => format!("{} min ago", secs / 60),
        secs @ 3600..86_400 => format!("{} h ago", secs / 3600),
        _ => date(then_ms),
    }
}

/// Time until `until_ms`: "in 5 min" (to the nearest minute, so a fresh 5-minute code says 5), "in 30 s",
/// or "now" once it has passed.
pub(crate) fn time_left(until_ms: u64, now_ms: u64) -> String {
    match until_ms.saturating_sub(now_ms) / 1000 {
        0 => "now".to_string(),
        secs @ 1..60 => format!("in {secs} s"),
        secs => format!("in {} min", (secs + 30) / 60),
    }
}

/// The UTC calendar date of a Unix time in milliseconds, e.g. 2023-11-14 (Howard Hinnant's
/// civil-from-days; a date crate for one column is not worth the dependency).
fn date(ms: u64) -> String {
    let z = ms / 86_400_000 + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_people_say_them() {
        let now = 1_700_000_000_000;
        assert_eq!(ago(now - 20_000, now), "now");
        assert_eq!(ago(now + 5_000, now), "now");
        assert_eq!(ago(now - 5 * 60_000, now), "5 min ago");
        assert_eq!(ago(now - 3 * 3_600_000, now), "3 h ago");
        assert_eq!(ago(now - 2 * 86_400_000, now), "2023-11-12");
        assert_eq!(time_left(now + 299_900, now), "in 5 min");
        assert_eq!(time_left(now + 260_000, now), "in 4 min");
        assert_eq!(time_left(now + 30_000, now), "in 30 s");
        assert_eq!(time_left(now - 1, now), "now");
    }

    #[test]
    fn dates_are_right_across_leap_days_and_eras() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400_000), "2000-02-29");
        assert_eq!(date(951_868_800_000), "2000-03-01");
        assert_eq!(date(1_700_000_000_000), "2023-11-14");
        assert_eq!(date(4_107_542_400_000), "2100-03-01");
    }

    #[test]
    fn tables_align_on_the_widest_cell() {
        let rows = [["Zoë's iPad".to_string(), "ios".to_string()], ["x".to_string(), "linux".to_string()]];
        assert_eq!(table(["NAME", "PLATFORM"], &rows), "NAME        PLATFORM\nZoë's iPad  ios\nx           linux");
        assert_eq!(scopes(&[]), "none");
        assert_eq!(scopes(&[Scope::Chat, Scope::Voice]), "chat,voice");
    }

    #[test]
    fn policies_count_their_patterns() {
        let mut policy = NodePolicy::default();
        assert_eq!(policy_cell(&policy), "default");
        policy.mode = PermissionMode::AcceptEdits;
        policy.allowed_tools = vec!["Edit".into(), "Bash(npm test:*)".into()];
        assert_eq!(policy_cell(&policy), "acceptEdits +2");
        policy.denied_tools = vec!["WebFetch".into()];
        assert_eq!(policy_cell(&policy), "acceptEdits +2/-1");
        policy.allowed_tools.clear();
        assert_eq!(policy_cell(&policy), "acceptEdits -1");
        let described = describe_policy(&policy);
        assert!(
            described.contains("mode:    acceptEdits (file edits") && described.contains("allowed: none"),
            "{described}"
        );
        assert!(described.ends_with("denied:  WebFetch"), "{described}");
    }
}
