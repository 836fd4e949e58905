//! The signed session: the token the app connects with, when it expires, and when to fetch a
//! fresh one from the application's token URL.
//!
//! Pure bookkeeping, like the rest of the library: the UI asks [`Session::refresh_due`] on a
//! timer, fetches from [`Session::begin_fetch`]'s URL, and reports the outcome with
//! [`Session::fetched`] or [`Session::fetch_failed`]. What the server says about tokens
//! (`welcome`'s and `refreshed`'s `exp`, a refused `refresh`, close code 4001) comes in through
//! [`Chat`](crate::state::Chat), which owns a `Session`.

use skat_protocol::ClientFrame;
use skat_protocol::api::{TokenResponse, TokenSubject, decode_api};

/// A token is refreshed once this share of its remaining life has passed...
pub const REFRESH_SHARE: f64 = 0.8;
/// ...or this long (ms) before it expires, whichever comes first.
pub const REFRESH_LEAD_MS: f64 = 60_000.0;
/// After a failed fetch or a refused `refresh`, the next try comes this much later (ms).
pub const REFRESH_RETRY_MS: f64 = 5_000.0;

/// When to refresh a token expiring at `expires_ms`, learnt at `now` (both Unix ms): at
/// [`REFRESH_SHARE`] of its remaining life or [`REFRESH_LEAD_MS`] before it expires, whichever
/// is earlier, but never in the past. A token with less than the lead left (a short-lived one)
/// is refreshed at the share alone, so that tokens of a few seconds are not refreshed in a loop.
pub fn refresh_time(expires_ms: f64, now: f64) -> f64 {
    let at_share = now + (expires_ms - now) * REFRESH_SHARE;
    let before = expires_ms - REFRESH_LEAD_MS;
    let at = if before >= now {
        at_share.min(before)
    } else {
        at_share
    };
    at.max(now)
}

/// Reads the token URL's answer: a JSON object with a string `token` ([`TokenResponse`]).
pub fn parse_token_response(body: &str) -> Result<String, String> {
    let TokenResponse { token } = decode_api(body)
        .map_err(|e| format!("the token URL did not answer {{\"token\": \"...\"}}: {e}"))?;
    if token.is_empty() {
        return Err("the token URL's answer has an empty \"token\"".to_owned());
    }
    Ok(token)
}

/// The `sub` of a JWT, read without checking the signature (the server checks it): the name the
/// token vouches for, and so the only name `hello` can claim with it. A token fetched from the
/// token URL thus decides who the page is, whatever name the page was opened with.
pub fn token_subject(token: &str) -> Option<String> {
    let payload = base64url_decode(token.split('.').nth(1)?)?;
    let claims: TokenSubject = decode_api(std::str::from_utf8(&payload).ok()?).ok()?;
    Some(claims.sub)
}

/// Decodes base64url (RFC 4648 section 5, as JWTs use it: padding optional); `None` on any
/// other character.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(text.len() * 3 / 4);
    let (mut bits, mut count) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        let sextet = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(sextet);
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push(u8::try_from(bits >> count).ok()?);
            bits &= (1 << count) - 1;
        }
    }
    Some(bytes)
}

/// Where a fresh token stands.
#[derive(Debug, Clone, Default, PartialEq)]
enum Renewal {
    /// Nothing under way.
    #[default]
    Idle,
    /// A fetch from the token URL is in flight.
    Fetching,
    /// A `refresh` carrying this token awaits its `refreshed`.
    Sent(String),
}

/// What to do with a token the UI fetched.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    /// Send this `refresh` on the live connection.
    Refresh(ClientFrame),
    /// A connection was waiting for it: connect now.
    Connect,
    /// Kept for the next connection; nothing to do now.
    Keep,
}

/// The token side of the connection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Session {
    /// The token `hello` carries (signed mode).
    pub token: Option<String>,
    /// Where fresh tokens come from, if the application gave one.
    pub token_url: Option<String>,
    /// When the live connection's token expires (Unix ms), if the server said.
    pub expires_at: Option<f64>,
    /// When to fetch a fresh token for the live connection (Unix ms).
    refresh_at: Option<f64>,
    renewal: Renewal,
    /// The next connection must fetch a token first (none given, or the last one expired).
    needs_token: bool,
    /// `token` was fetched and no server has accepted it yet: if `hello` is refused with it,
    /// fetching again would not help.
    fresh: bool,
}

impl Session {
    /// A session starting with `token`; with a `token_url` and no token, the first connection
    /// fetches one.
    pub fn new(token: Option<String>, token_url: Option<String>) -> Self {
        Self {
            needs_token: token.is_none() && token_url.is_some(),
            token,
            token_url,
            ..Self::default()
        }
    }

    /// Whether the next connection must wait for a fetched token.
    pub fn needs_token(&self) -> bool {
        self.needs_token
    }

    /// When the next refresh is due (Unix ms), if one is planned.
    pub fn refresh_at(&self) -> Option<f64> {
        self.refresh_at
    }

    /// `welcome` (or `refreshed`) said the connection's token expires at `exp` (Unix seconds).
    pub fn on_expiry(&mut self, exp: Option<u64>, now: f64) {
        self.expires_at = exp.map(|s| s as f64 * 1000.0);
        self.refresh_at = self
            .expires_at
            .filter(|_| self.token_url.is_some())
            .map(|at| refresh_time(at, now));
    }

    /// `welcome`: the server accepted `token`.
    pub fn on_welcome(&mut self, exp: Option<u64>, now: f64) {
        self.fresh = false;
        self.on_expiry(exp, now);
    }

    /// `refreshed`: the token sent in `refresh` now vouches for the connection, and is the one
    /// to reconnect with.
    pub fn on_refreshed(&mut self, exp: Option<u64>, now: f64) {
        if let Renewal::Sent(token) = std::mem::take(&mut self.renewal) {
            self.token = Some(token);
        }
        self.on_expiry(exp, now);
    }

    /// Whether a fresh token should be fetched for the live connection now.
    pub fn refresh_due(&self, now: f64) -> bool {
        self.renewal == Renewal::Idle && self.refresh_at.is_some_and(|at| now >= at)
    }

    /// Starts a fetch: the URL to fetch from, unless there is none or a fetch is in flight.
    pub fn begin_fetch(&mut self) -> Option<String> {
        if self.renewal == Renewal::Fetching {
            return None;
        }
        let url = self.token_url.clone()?;
        self.renewal = Renewal::Fetching;
        Some(url)
    }

    /// The fetch brought `token`; `online`: whether the connection is live.
    pub fn fetched(&mut self, token: String, online: bool) -> Fetched {
        if self.needs_token {
            self.needs_token = false;
            self.fresh = true;
            self.renewal = Renewal::Idle;
            self.token = Some(token);
            Fetched::Connect
        } else if online {
            self.renewal = Renewal::Sent(token.clone());
            Fetched::Refresh(ClientFrame::Refresh { token })
        } else {
            self.renewal = Renewal::Idle;
            self.token = Some(token);
            Fetched::Keep
        }
    }

    /// The fetch failed at `now`: the live connection tries again a little later. Returns
    /// whether a connection was waiting for the token (it should back off and retry).
    pub fn fetch_failed(&mut self, now: f64) -> bool {
        self.renewal = Renewal::Idle;
        if self.needs_token {
            return true;
        }
        self.retry_later(now);
        false
    }

    /// The server answered our `refresh` with `unauthorized` at `now`: the connection keeps its
    /// old token; another fetch comes a little later. Returns whether a refresh was in flight
    /// (otherwise the refusal is about something else: a `hello`).
    pub fn refresh_refused(&mut self, now: f64) -> bool {
        if !matches!(self.renewal, Renewal::Sent(_)) {
            return false;
        }
        self.renewal = Renewal::Idle;
        self.retry_later(now);
        true
    }

    /// `hello` was refused: whether to fetch a fresh token and connect again (there is a token
    /// URL and the refused token was not just fetched from it). If so, the next connection
    /// fetches first.
    pub fn refetch_after_refusal(&mut self) -> bool {
        if self.token_url.is_none() || self.fresh {
            return false;
        }
        self.needs_token = true;
        true
    }

    /// The server closed the connection because its token expired: whether a fresh one can be
    /// fetched for the next connection (there is a token URL).
    pub fn on_expired(&mut self) -> bool {
        self.needs_token = self.token_url.is_some();
        self.needs_token
    }

    /// The connection closed: its expiry no longer applies, and a token sent in a `refresh`
    /// that got no answer is newer than the one we had, so the next `hello` carries it.
    pub fn on_close(&mut self) {
        match std::mem::take(&mut self.renewal) {
            Renewal::Sent(token) => self.token = Some(token),
            // A fetch in flight finishes, and keeps its token for the next connection.
            other => self.renewal = other,
        }
        self.expires_at = None;
        self.refresh_at = None;
    }

    fn retry_later(&mut self, now: f64) {
        if self.token_url.is_some() {
            self.refresh_at = Some(now + REFRESH_RETRY_MS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_comes_at_the_earlier_of_the_share_and_the_lead_never_in_the_past() {
        // An hour: 80% of it (48 min) is earlier than a minute before expiry.
        assert_eq!(refresh_time(3_600_000.0, 0.0), 2_880_000.0);
        // Five minutes: a minute before (4 min) equals 80%; ten: a minute before is later.
        assert_eq!(refresh_time(300_000.0, 0.0), 240_000.0);
        assert_eq!(refresh_time(120_000.0, 0.0), 60_000.0);
        // Under a minute left: at 80%, not at once (no loop for short tokens).
        assert_eq!(refresh_time(8_000.0, 0.0), 6_400.0);
        assert_eq!(
            refresh_time(1_000_000.0 + 8_000.0, 1_000_000.0),
            1_006_400.0
        );
        // Already expired (a skewed clock): now.
        assert_eq!(refresh_time(500.0, 1_000.0), 1_000.0);
    }

    #[test]
    fn a_tokens_subject_is_read_from_its_payload() {
        assert_eq!(
            token_subject("h.eyJzdWIiOiJncmFjZSIsImV4cCI6MX0.s").as_deref(),
            Some("grace")
        );
        // Padded or not, and any UTF-8.
        assert_eq!(
            token_subject("h.eyJzdWIiOiLDqWzDqW9ub3JlIn0=.s").as_deref(),
            Some("\u{e9}l\u{e9}onore")
        );
        for bad in [
            "",
            "no-dots",
            "h.!!!.s",
            "h.bm90IGpzb24.s",
            "h.eyJleHAiOjF9.s",
        ] {
            assert_eq!(token_subject(bad), None, "{bad}");
        }
    }

    #[test]
    fn token_responses_are_json_with_a_token() {
        assert_eq!(
            parse_token_response(r#"{"token":"a.b.c","exp":1}"#),
            Ok("a.b.c".to_owned())
        );
        for bad in ["", "a.b.c", "{}", r#"{"token":""}"#, r#"{"token":5}"#] {
            assert!(parse_token_response(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_live_connection_refreshes_and_reconnects_with_the_new_token() {
        let mut s = Session::new(Some("t1".into()), Some("/token".into()));
        assert!(!s.needs_token());
        s.on_welcome(Some(10), 0.0);
        assert_eq!(s.expires_at, Some(10_000.0));
        assert!(!s.refresh_due(7_999.0));
        assert!(s.refresh_due(8_000.0));
        assert_eq!(s.begin_fetch().as_deref(), Some("/token"));
        assert!(!s.refresh_due(9_000.0), "one fetch at a time");
        assert_eq!(s.begin_fetch(), None);
        assert_eq!(
            s.fetched("t2".into(), true),
            Fetched::Refresh(ClientFrame::Refresh { token: "t2".into() })
        );
        assert_eq!(s.token.as_deref(), Some("t1"), "until the server takes it");
        s.on_refreshed(Some(20), 9_000.0);
        assert_eq!(s.token.as_deref(), Some("t2"));
        assert_eq!(s.refresh_at(), Some(9_000.0 + 11_000.0 * REFRESH_SHARE));
    }

    #[test]
    fn failures_retry_later_and_keep_the_old_token() {
        let mut s = Session::new(Some("t1".into()), Some("/token".into()));
        s.on_welcome(Some(100), 0.0);
        s.begin_fetch();
        assert!(!s.fetch_failed(90_000.0), "no connection was waiting");
        assert_eq!(s.refresh_at(), Some(90_000.0 + REFRESH_RETRY_MS));
        s.begin_fetch();
        s.fetched("bad".into(), true);
        assert!(s.refresh_refused(95_000.0));
        assert_eq!(s.token.as_deref(), Some("t1"));
        assert_eq!(s.refresh_at(), Some(95_000.0 + REFRESH_RETRY_MS));
        assert!(
            !s.refresh_refused(96_000.0),
            "nothing in flight: a hello refusal"
        );
    }

    #[test]
    fn without_a_token_url_nothing_is_refreshed() {
        let mut s = Session::new(Some("t1".into()), None);
        s.on_welcome(Some(10), 0.0);
        assert_eq!(s.refresh_at(), None);
        assert!(!s.refresh_due(1e15));
        assert_eq!(s.begin_fetch(), None);
        assert!(!s.on_expired());
        assert!(!s.refetch_after_refusal());
    }

    #[test]
    fn expiry_and_a_stale_token_fetch_before_connecting_but_a_fresh_refusal_is_final() {
        // No token given: the first connection fetches one.
        let mut s = Session::new(None, Some("/token".into()));
        assert!(s.needs_token());
        s.begin_fetch();
        assert_eq!(s.fetched("t1".into(), false), Fetched::Connect);
        assert!(!s.needs_token());
        assert!(!s.refetch_after_refusal(), "refused though just fetched");
        s.on_welcome(Some(10), 0.0);
        // Expired (4001): fetch again, then connect.
        s.on_close();
        assert!(s.on_expired());
        assert!(s.needs_token());
        s.begin_fetch();
        assert!(s.fetch_failed(0.0), "the waiting connection backs off");
        assert!(s.needs_token());
        s.begin_fetch();
        assert_eq!(s.fetched("t2".into(), false), Fetched::Connect);
        s.on_welcome(Some(20), 0.0);
        // A token the server once took, refused later (expired while offline): fetch.
        assert!(s.refetch_after_refusal());
        assert!(s.needs_token());
    }

    #[test]
    fn a_refresh_cut_off_by_a_close_hands_its_token_to_the_next_hello() {
        let mut s = Session::new(Some("t1".into()), Some("/token".into()));
        s.on_welcome(Some(10), 0.0);
        s.begin_fetch();
        s.fetched("t2".into(), true);
        s.on_close();
        assert_eq!(s.token.as_deref(), Some("t2"));
        assert_eq!(s.refresh_at(), None);
        // A fetch finishing while offline keeps its token for the next connection.
        s.on_welcome(Some(10), 0.0);
        s.begin_fetch();
        s.on_close();
        assert_eq!(s.fetched("t3".into(), false), Fetched::Keep);
        assert_eq!(s.token.as_deref(), Some("t3"));
    }
}
