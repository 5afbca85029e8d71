//! `lanyard service`: the systemd unit passes `systemd-analyze verify`, the launchd agent parses as a
//! plist with the keys launchd needs, installing twice changes nothing, uninstalling removes it. Every
//! run points LANYARD_SERVICE_DIR at a temporary directory, so no real service is ever started.

#[path = "../../../gateway/tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Dirs {
    _root: tempfile::TempDir,
    home: PathBuf,
    units: PathBuf,
}

impl Dirs {
    fn new() -> Dirs {
        let root = tempfile::tempdir().unwrap();
        // A space and a percent sign in the home: both need care in a unit file.
        let home = root.path().join("my 100% home");
        let units = root.path().join("units");
        Dirs { home, units, _root: root }
    }

    fn lanyard(&self, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_lanyard"))
            .args(args)
            .env("LANYARD_HOME", &self.home)
            .env("LANYARD_SERVICE_DIR", &self.units)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        out
    }

    fn log(&self) -> String {
        self.home.join("logs/lanyard.log").display().to_string()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const TRICKY: &str = "Ada's \"100%\" $HOME";

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let Ok(analyze) = which::which("systemd-analyze") else {
        support::skip("systemd-analyze is not installed (Debian: apt-get install systemd)");
        return;
    };
    let dirs = Dirs::new();
    let out = dirs.lanyard(&["service", "install", "--platform", "linux", "--no-start", "--", "--mdns-name", TRICKY]);
    assert!(text(&out.stdout).contains("installed the Lanyard service"), "{}", text(&out.stdout));
    let unit = dirs.units.join("lanyard.service");
    let written = std::fs::read_to_string(&unit).unwrap();
    assert!(written.contains("Restart=on-failure\n"), "{written}");
    assert!(written.contains(&format!("StandardOutput=append:{}\n", dirs.log().replace('%', "%%"))), "{written}");

    // --user needs a runtime directory even to verify.
    let runtime = tempfile::tempdir().unwrap();
    let verify = |path: &Path| {
        Command::new(&analyze)
            .args(["verify", "--user"])
            .arg(path)
            .env("XDG_RUNTIME_DIR", runtime.path())
            .output()
            .unwrap()
    };
    let out = verify(&unit);
    // It prints bad settings it ignores yet exits 0: silence is the pass.
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(text(&out.stderr) + &text(&out.stdout), "", "{written}");

    // The check above can fail: a unit with a setting systemd cannot parse does not pass it.
    let broken = dirs.units.join("broken.service");
    std::fs::write(&broken, written.replace("Restart=on-failure", "Restart=on-crash")).unwrap();
    let out = verify(&broken);
    assert!(text(&out.stderr).contains("on-crash"), "{}", text(&out.stderr));
}

#[test]
fn the_launchd_agent_is_a_plist_with_the_keys_launchd_needs() {
    let dirs = Dirs::new();
    dirs.lanyard(&["service", "install", "--platform", "macos", "--no-start", "--", "--mdns-name", TRICKY]);
    let plist = plist::Value::from_file(dirs.units.join("dev.lanyard.up.plist")).unwrap();
    let dict = plist.as_dictionary().expect("a dictionary at the top");
    let string = |key: &str| dict.get(key).and_then(plist::Value::as_string).unwrap_or_else(|| panic!("{key}"));
    assert_eq!(string("Label"), "dev.lanyard.up");
    let args: Vec<&str> = dict["ProgramArguments"].as_array().unwrap().iter().map(|v| v.as_string().unwrap()).collect();
    let program = Path::new(env!("CARGO_BIN_EXE_lanyard")).canonicalize().unwrap();
    assert_eq!(args, [program.to_str().unwrap(), "up", "--mdns-name", TRICKY]);
    assert_eq!(dict["RunAtLoad"].as_boolean(), Some(true));
    // Restarted after a crash, not after a clean stop.
    let keep_alive = dict["KeepAlive"].as_dictionary().unwrap();
    assert_eq!(keep_alive["SuccessfulExit"].as_boolean(), Some(false));
    assert_eq!(string("StandardOutPath"), dirs.log());
    assert_eq!(string("StandardErrorPath"), dirs.log());
    assert_eq!(string("StandardInPath"), "/dev/null");
    let env = dict["EnvironmentVariables"].as_dictionary().unwrap();
    assert_eq!(env["LANYARD_HOME"].as_string(), Some(dirs.home.to_str().unwrap()));
    assert!(env.contains_key("PATH"), "claude is found on the installer's PATH");
    assert!(dirs.home.join("logs").is_dir(), "launchd does not create the log's directory");
}

#[test]
fn installing_twice_changes_nothing_and_uninstall_removes_it() {
    for (platform, file) in [("linux", "lanyard.service"), ("macos", "dev.lanyard.up.plist")] {
        let dirs = Dirs::new();
        let path = dirs.units.join(file);
        let install = ["service", "install", "--platform", platform, "--no-start"];
        let status = ["service", "status", "--platform", platform];

        let shown = text(&dirs.lanyard(&status).stdout);
        assert!(shown.contains("not installed"), "{shown}");
        dirs.lanyard(&install);
        let (bytes, modified) = (std::fs::read(&path).unwrap(), std::fs::metadata(&path).unwrap().modified().unwrap());
        std::thread::sleep(std::time::Duration::from_millis(50));
        let again = text(&dirs.lanyard(&install).stdout);
        assert!(again.starts_with(&format!("already installed: {} (unchanged)", path.display())), "{again}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{platform}");
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), modified, "{platform}: rewritten");

        let shown = text(&dirs.lanyard(&status).stdout);
        assert!(shown.contains(&format!("installed at {}", path.display())), "{shown}");
        assert!(shown.contains("`lanyard nodes approve ID` (or in the console)"), "{shown}");
        assert!(shown.contains(&dirs.log()), "{shown}");

        // Other flags for `up` are a change: the file is rewritten.
        let changed = text(&dirs.lanyard(&[&install[..], &["--", "--mdns", "off"]].concat()).stdout);
        assert!(changed.starts_with("updated the Lanyard service"), "{changed}");
        assert_ne!(std::fs::read(&path).unwrap(), bytes);

        let removed = text(&dirs.lanyard(&["service", "uninstall", "--platform", platform]).stdout);
        assert!(removed.starts_with("removed the Lanyard service"), "{removed}");
        assert!(!path.exists());
        let again = text(&dirs.lanyard(&["service", "uninstall", "--platform", platform]).stdout);
        assert!(again.starts_with("not installed"), "{again}");
    }
}

#[test]
fn service_explains_itself() {
    let dirs = Dirs::new();
    let help = text(&dirs.lanyard(&["service", "--help"]).stdout);
    for phrase in ["runs `lanyard up` when you log in", "restarts it if it crashes", "lanyard nodes approve"] {
        assert!(help.contains(phrase), "{help}");
    }
    let help = text(&dirs.lanyard(&["service", "install", "--help"]).stdout);
    assert!(help.contains("--no-start") && !help.contains("--service-dir"), "{help}");
}
