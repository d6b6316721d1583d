//! A session's one timer: the ping schedule, idle detection and the token's expiry.
//!
//! Owns: the deadlines and what is due when the timer fires. Plain data over `tokio::time::Instant`
//! (so tests run in paused time), no I/O. Must not: send or close anything; the session acts on the
//! [`Beat`] it is handed.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// What the heartbeat timer asks for when it fires.
#[derive(Debug, PartialEq, Eq)]
pub enum Beat {
    Ping,
    /// Nothing heard within the idle timeout: evict.
    Idle,
    /// Less than the notice period is left on the token: tell the client when it expires.
    TokenExpiring(SystemTime),
    /// The token expired (plus leeway) without a refresh: close with 4001.
    TokenExpired,
    /// Fired early (traffic moved the idle deadline): just re-arm.
    Wait,
}

/// When a connection's token needs its expiry notice and when it runs out.
#[derive(Debug)]
pub struct TokenClock {
    expires_at: SystemTime,
    notice_at: Instant,
    close_at: Instant,
    noticed: bool,
}

impl TokenClock {
    /// `remaining`: the time left until `expires_at`, measured at `now`.
    pub fn new(
        now: Instant,
        expires_at: SystemTime,
        remaining: Duration,
        notice: Duration,
        leeway: Duration,
    ) -> Self {
        let expiry = now + remaining;
        let notice_at = expiry.checked_sub(notice).unwrap_or(now).max(now);
        Self { expires_at, notice_at, close_at: expiry + leeway, noticed: false }
    }

    fn deadline(&self) -> Instant {
        if self.noticed {
            self.close_at
        } else {
            self.notice_at
        }
    }
}

/// Ping schedule, idle detection and token expiry on one timer. Traffic only moves `last_seen`; the timer is
/// re-armed when it fires, never per frame.
#[derive(Debug)]
pub struct Heartbeat {
    /// Milliseconds (not `Duration`s): every idle session holds one, and the smaller its task, the less
    /// memory a connection costs.
    interval_ms: u32,
    idle_timeout_ms: u32,
    next_ping: Instant,
    last_seen: Instant,
    /// With authentication on. Boxed: most of the time it only adds a pointer to an idle session.
    pub token: Option<Box<TokenClock>>,
}

impl Heartbeat {
    pub fn new(now: Instant, interval: Duration, idle_timeout: Duration) -> Self {
        let millis = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        let (interval_ms, idle_timeout_ms) = (millis(interval), millis(idle_timeout));
        Self {
            interval_ms,
            idle_timeout_ms,
            next_ping: now + interval,
            last_seen: now,
            token: None,
        }
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.interval_ms))
    }

    fn idle_deadline(&self) -> Instant {
        self.last_seen + Duration::from_millis(u64::from(self.idle_timeout_ms))
    }

    pub fn seen(&mut self, now: Instant) {
        self.last_seen = now;
    }

    pub fn deadline(&self) -> Instant {
        let beat = self.next_ping.min(self.idle_deadline());
        self.token.as_ref().map_or(beat, |token| beat.min(token.deadline()))
    }

    pub fn due(&mut self, now: Instant) -> Beat {
        if let Some(token) = self.token.as_mut().filter(|token| now >= token.deadline()) {
            if token.noticed {
                return Beat::TokenExpired;
            }
            token.noticed = true;
            return Beat::TokenExpiring(token.expires_at);
        }
        if now >= self.idle_deadline() {
            Beat::Idle
        } else if now >= self.next_ping {
            self.next_ping = now + self.interval();
            Beat::Ping
        } else {
            Beat::Wait
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn heartbeat_pings_on_schedule_and_evicts_only_after_silence() {
        let start = Instant::now();
        let mut heartbeat = Heartbeat::new(start, Duration::from_secs(30), Duration::from_secs(60));
        assert_eq!(heartbeat.deadline(), start + Duration::from_secs(30));
        tokio::time::sleep_until(heartbeat.deadline()).await;
        assert_eq!(heartbeat.due(Instant::now()), Beat::Ping);
        tokio::time::advance(Duration::from_secs(10)).await;
        heartbeat.seen(Instant::now());
        tokio::time::sleep_until(heartbeat.deadline()).await;
        assert_eq!(
            heartbeat.due(Instant::now()),
            Beat::Ping,
            "traffic at 40 s keeps it alive at 60 s"
        );
        tokio::time::sleep_until(heartbeat.deadline()).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(90));
        assert_eq!(heartbeat.due(Instant::now()), Beat::Ping);
        tokio::time::sleep_until(heartbeat.deadline()).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(100), "60 s after the last traffic");
        assert_eq!(heartbeat.due(Instant::now()), Beat::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn token_notice_comes_before_expiry_and_a_refresh_moves_both() {
        let start = Instant::now();
        let expires_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let (notice, leeway) = (Duration::from_secs(30), Duration::from_secs(2));
        let mut heartbeat =
            Heartbeat::new(start, Duration::from_secs(300), Duration::from_secs(600));
        heartbeat.token = Some(Box::new(TokenClock::new(
            start,
            expires_at,
            Duration::from_secs(100),
            notice,
            leeway,
        )));
        tokio::time::sleep_until(heartbeat.deadline()).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(70), "30 s before exp");
        assert_eq!(heartbeat.due(Instant::now()), Beat::TokenExpiring(expires_at));
        tokio::time::sleep_until(heartbeat.deadline()).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(102), "exp plus leeway");
        assert_eq!(heartbeat.due(Instant::now()), Beat::TokenExpired);

        let renewed = expires_at + Duration::from_secs(3_600);
        let now = Instant::now();
        heartbeat.token = Some(Box::new(TokenClock::new(
            now,
            renewed,
            Duration::from_secs(3_600),
            notice,
            leeway,
        )));
        assert_eq!(
            heartbeat.deadline(),
            now + Duration::from_secs(198),
            "the ping comes first again"
        );
        assert_eq!(
            heartbeat.token.as_ref().map(|token| token.deadline()),
            Some(now + Duration::from_secs(3_570))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_nearly_spent_at_connect_is_noticed_at_once() {
        let start = Instant::now();
        let expires_at = SystemTime::UNIX_EPOCH;
        let mut heartbeat = Heartbeat::new(start, Duration::from_secs(30), Duration::from_secs(60));
        let clock = TokenClock::new(
            start,
            expires_at,
            Duration::from_secs(5),
            Duration::from_secs(30),
            Duration::ZERO,
        );
        heartbeat.token = Some(Box::new(clock));
        assert_eq!(heartbeat.deadline(), start);
        assert_eq!(heartbeat.due(start), Beat::TokenExpiring(expires_at));
        assert_eq!(heartbeat.deadline(), start + Duration::from_secs(5));
    }
}
