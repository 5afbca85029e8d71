//! Who may use the console: a one-time login token (from `lanyard open`, through the operator method
//! `console.login`) is exchanged once for a session cookie; each session has its own CSRF token. All of it
//! in memory: a gateway restart logs everyone out, which is the safe way round.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
// tokio's clock, so that tests can move time on.
use subtle::ConstantTimeEq;
use tokio::time::Instant;

/// How long a login link works.
pub(crate) const LOGIN_TTL: Duration = Duration::from_secs(120);
/// A session unused this long is logged out.
pub(crate) const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// Login tokens and sessions held at once; the oldest go first.
const MAX_LOGINS: usize = 8;
const MAX_SESSIONS: usize = 16;

fn secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    data_encoding::BASE64URL_NOPAD.encode(&bytes)
}

/// A logged-in browser.
#[derive(Clone)]
pub(crate) struct Session {
    pub csrf: String,
}

struct Live {
    session: Session,
    last_used: Instant,
}

#[derive(Default)]
pub(crate) struct ConsoleAuth {
    logins: Mutex<Vec<(String, Instant)>>,
    sessions: Mutex<HashMap<String, Live>>,
}

/// Compares secrets in constant time.
fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl ConsoleAuth {
    /// A fresh one-time login token, valid [`LOGIN_TTL`].
    pub(crate) fn login_token(&self) -> String {
        let token = secret();
        let mut logins = self.logins.lock().expect("logins lock");
        logins.retain(|(_, issued)| issued.elapsed() < LOGIN_TTL);
        if logins.len() >= MAX_LOGINS {
            logins.remove(0);
        }
        logins.push((token.clone(), Instant::now()));
        token
    }

    /// Spends a login token: a new session's cookie value, or `None` for a token that is unknown,
    /// expired or already used.
    pub(crate) fn redeem(&self, token: &str) -> Option<String> {
        let mut logins = self.logins.lock().expect("logins lock");
        let at = logins.iter().position(|(known, issued)| same(known, token) && issued.elapsed() < LOGIN_TTL)?;
        logins.remove(at);
        drop(logins);
        let cookie = secret();
        let mut sessions = self.sessions.lock().expect("sessions lock");
        sessions.retain(|_, live| live.last_used.elapsed() < SESSION_IDLE);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, live)| live.last_used).map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(cookie.clone(), Live { session: Session { csrf: secret() }, last_used: Instant::now() });
        Some(cookie)
    }

    /// The session a cookie names, if it is live; using it keeps it alive.
    pub(crate) fn session(&self, cookie: &str) -> Option<Session> {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        let key = sessions.keys().find(|known| same(known, cookie))?.clone();
        let live = sessions.get_mut(&key)?;
        if live.last_used.elapsed() >= SESSION_IDLE {
            sessions.remove(&key);
            return None;
        }
        live.last_used = Instant::now();
        Some(live.session.clone())
    }

    pub(crate) fn logout(&self, cookie: &str) {
        self.sessions.lock().expect("sessions lock").retain(|known, _| !same(known, cookie));
    }

    /// Whether `presented` is the session's CSRF token.
    pub(crate) fn csrf_ok(session: &Session, presented: &str) -> bool {
        same(&session.csrf, presented)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The durations are the documented ones, written out: a changed constant fails these tests.
    #[tokio::test(start_paused = true)]
    async fn login_tokens_live_two_minutes_and_sessions_twelve_idle_hours() {
        let auth = ConsoleAuth::default();
        let (a, b) = (auth.login_token(), auth.login_token());
        assert!(auth.redeem(&a).is_some() && auth.redeem(&b).is_some(), "two fresh tokens both work");
        let (in_time, late) = (auth.login_token(), auth.login_token());
        tokio::time::advance(Duration::from_secs(119)).await;
        assert!(auth.redeem(&in_time).is_some(), "a token works for two minutes");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(auth.redeem(&late).is_none(), "a token is dead at two minutes");
        let cookie = auth.redeem(&auth.login_token()).unwrap();
        let hours = |n: u64| Duration::from_secs(n * 3600);
        tokio::time::advance(hours(12) - Duration::from_secs(1)).await;
        assert!(auth.session(&cookie).is_some(), "use keeps a session alive");
        tokio::time::advance(hours(12) - Duration::from_secs(1)).await;
        assert!(auth.session(&cookie).is_some());
        tokio::time::advance(hours(12)).await;
        assert!(auth.session(&cookie).is_none(), "twelve idle hours end it");
    }

    #[test]
    fn a_login_token_works_once() {
        let auth = ConsoleAuth::default();
        let token = auth.login_token();
        let cookie = auth.redeem(&token).expect("the first time");
        assert!(auth.redeem(&token).is_none(), "a second time");
        assert!(auth.redeem("made-up").is_none());
        assert!(auth.session(&cookie).is_some());
    }

    #[test]
    fn sessions_end_at_logout_and_have_their_own_csrf_token() {
        let auth = ConsoleAuth::default();
        let (a, b) = (auth.redeem(&auth.login_token()).unwrap(), auth.redeem(&auth.login_token()).unwrap());
        let (sa, sb) = (auth.session(&a).unwrap(), auth.session(&b).unwrap());
        assert!(ConsoleAuth::csrf_ok(&sa, &sa.csrf));
        assert!(!ConsoleAuth::csrf_ok(&sa, &sb.csrf));
        assert!(!ConsoleAuth::csrf_ok(&sa, ""));
        auth.logout(&a);
        assert!(auth.session(&a).is_none());
        assert!(auth.session(&b).is_some());
    }

    #[test]
    fn login_tokens_and_sessions_are_bounded() {
        let auth = ConsoleAuth::default();
        let first = auth.login_token();
        let second = auth.login_token();
        for _ in 0..7 {
            auth.login_token();
        }
        assert!(auth.redeem(&first).is_none(), "8 login tokens at once: the oldest went first");
        assert!(auth.redeem(&second).is_some());
        let cookies: Vec<String> = (0..17).map(|_| auth.redeem(&auth.login_token()).unwrap()).collect();
        assert!(auth.session(&cookies[0]).is_none(), "16 sessions at once: the least recently used went first");
        assert!(cookies[1..].iter().all(|cookie| auth.session(cookie).is_some()));
    }
}
