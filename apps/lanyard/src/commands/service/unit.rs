//! One description of the login service, rendered as a systemd user unit or a launchd agent.

use std::fmt::Write;
use std::path::PathBuf;

/// What runs at login, the same on every platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The launchd label (reverse DNS); systemd names the unit after the file instead.
    pub label: String,
    /// The `lanyard` binary, absolute.
    pub program: PathBuf,
    /// Its arguments: `up` and any flags the owner gave.
    pub args: Vec<String>,
    /// Where it runs: the owner's home, which is where claude works unless `--cwd` says otherwise.
    pub working_dir: PathBuf,
    /// Where stdout and stderr go (the banner and the logs).
    pub log: PathBuf,
    /// The environment it needs: at least `LANYARD_HOME` and `PATH` (for `claude`), never a secret, since
    /// the file is readable.
    pub env: Vec<(String, String)>,
}

/// The systemd user unit (`~/.config/systemd/user/lanyard.service`). Restarts after a crash, never after a
/// clean stop; stdin is /dev/null, so `lanyard up` does not ask at a terminal.
pub fn systemd(spec: &ServiceSpec) -> String {
    let mut unit = String::new();
    unit.push_str(
        "# Written by `lanyard service install`; `lanyard service uninstall` removes it.\n\
         [Unit]\n\
         Description=Lanyard: the gateway and bridge that let your devices drive the agent\n\
         \n\
         [Service]\n\
         Type=simple\n",
    );
    let command: Vec<String> = std::iter::once(spec.program.display().to_string())
        .chain(spec.args.iter().cloned())
        .map(|word| systemd_quote(&word).replace('$', "$$"))
        .collect();
    let _ = writeln!(unit, "ExecStart={}", command.join(" "));
    // Paths are taken as they are, to the end of the line; only specifiers need escaping.
    let _ = writeln!(unit, "WorkingDirectory={}", systemd_escape_specifiers(&spec.working_dir.display().to_string()));
    for (key, value) in &spec.env {
        let _ = writeln!(unit, "Environment={}", systemd_quote(&format!("{key}={value}")));
    }
    let log = systemd_escape_specifiers(&spec.log.display().to_string());
    let _ = write!(
        unit,
        "StandardInput=null\n\
         StandardOutput=append:{log}\n\
         StandardError=append:{log}\n\
         Restart=on-failure\n\
         RestartSec=5\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n"
    );
    unit
}

/// A word in double quotes, with the escapes systemd's unquoting knows and `%` doubled so no specifier is
/// expanded.
fn systemd_quote(word: &str) -> String {
    let mut quoted = String::from("\"");
    for c in systemd_escape_specifiers(word).chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

fn systemd_escape_specifiers(text: &str) -> String {
    text.replace('%', "%%")
}

/// The launchd agent (`~/Library/LaunchAgents/LABEL.plist`). `KeepAlive` with `SuccessfulExit` false
/// restarts it after a crash but not after a clean stop, like systemd's `Restart=on-failure`.
pub fn launchd(spec: &ServiceSpec) -> String {
    let mut plist = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <!-- Written by `lanyard service install`; `lanyard service uninstall` removes it. -->\n\
         <plist version=\"1.0\">\n<dict>\n",
    );
    let string = |key: &str, value: &str| format!("\t<key>{key}</key>\n\t<string>{}</string>\n", xml(value));
    plist.push_str(&string("Label", &spec.label));
    plist.push_str("\t<key>ProgramArguments</key>\n\t<array>\n");
    for word in std::iter::once(spec.program.display().to_string()).chain(spec.args.iter().cloned()) {
        let _ = writeln!(plist, "\t\t<string>{}</string>", xml(&word));
    }
    plist.push_str("\t</array>\n\t<key>EnvironmentVariables</key>\n\t<dict>\n");
    for (key, value) in &spec.env {
        let _ = writeln!(plist, "\t\t<key>{}</key>\n\t\t<string>{}</string>", xml(key), xml(value));
    }
    plist.push_str("\t</dict>\n");
    plist.push_str(&string("WorkingDirectory", &spec.working_dir.display().to_string()));
    plist.push_str(
        "\t<key>RunAtLoad</key>\n\t<true/>\n\
         \t<key>KeepAlive</key>\n\t<dict>\n\t\t<key>SuccessfulExit</key>\n\t\t<false/>\n\t</dict>\n\
         \t<key>ThrottleInterval</key>\n\t<integer>10</integer>\n",
    );
    plist.push_str(&string("StandardInPath", "/dev/null"));
    plist.push_str(&string("StandardOutPath", &spec.log.display().to_string()));
    plist.push_str(&string("StandardErrorPath", &spec.log.display().to_string()));
    plist.push_str("</dict>\n</plist>\n");
    plist
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServiceSpec {
        ServiceSpec {
            label: "dev.lanyard.up".into(),
            program: "/opt/my tools/lanyard".into(),
            args: vec!["up".into(), "--mdns-name".into(), "Ada's \"100%\" $HOME <Mac>".into()],
            working_dir: "/home/ada".into(),
            log: "/home/ada/.lanyard/logs/lanyard.log".into(),
            env: vec![("LANYARD_HOME".into(), "/home/ada/.lanyard".into())],
        }
    }

    #[test]
    fn systemd_quotes_every_word_and_expands_nothing() {
        let unit = systemd(&spec());
        assert!(
            unit.contains(
                "ExecStart=\"/opt/my tools/lanyard\" \"up\" \"--mdns-name\" \"Ada's \\\"100%%\\\" $$HOME <Mac>\"\n"
            ),
            "{unit}"
        );
        assert!(unit.contains("Environment=\"LANYARD_HOME=/home/ada/.lanyard\"\n"), "{unit}");
        assert!(unit.contains("StandardOutput=append:/home/ada/.lanyard/logs/lanyard.log\n"), "{unit}");
        assert!(unit.contains("Restart=on-failure\n"), "{unit}");
        assert!(unit.contains("StandardInput=null\n"), "{unit}");
    }

    #[test]
    fn launchd_escapes_xml() {
        let plist = launchd(&spec());
        assert!(plist.contains("<string>Ada's &quot;100%&quot; $HOME &lt;Mac&gt;</string>"), "{plist}");
        assert!(plist.contains("<key>RunAtLoad</key>\n\t<true/>"), "{plist}");
    }
}
