//! Per-user chat rate limits: a token bucket per user, and the count of refusals that ends a
//! flooding connection; and when each user last sent `typing`.
//!
//! Owns: one bucket per user who has chatted, on the shard that owns the user (users are pinned, so
//! all of a user's connections on this instance share it). Plain data, no I/O, no locks. Must not:
//! decide what happens to a refused message; the shard answers and closes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::protocol::UserId;

/// The window over which refusals are counted toward closing a flooding connection.
const FLOOD_WINDOW: Duration = Duration::from_secs(60);

/// What to do with one chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    Allowed,
    /// Over the limit: refuse it.
    Refused,
    /// Over the limit, and refused too often within the window: close the connection.
    Flooding,
}

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Messages per second; 0 turns limiting off.
    pub rate: f64,
    pub burst: f64,
    /// Refusals within a minute after which the connection is closed.
    pub flood_close_after: u32,
}

#[derive(Debug)]
struct UserBudget {
    tokens: f64,
    updated: Instant,
    refused: u32,
    window_started: Instant,
}

#[derive(Debug)]
pub struct RateLimits {
    policy: Policy,
    users: HashMap<UserId, UserBudget>,
    /// When each user last sent a `typing` that was acted on.
    typing: HashMap<UserId, Instant>,
}

impl RateLimits {
    pub fn new(policy: Policy) -> Self {
        Self { policy, users: HashMap::new(), typing: HashMap::new() }
    }

    /// Whether a `typing` of `user` at `now` is acted on: not within
    /// [`super::typing::MIN_INTERVAL`] of its last one.
    pub fn allow_typing(&mut self, user: &UserId, now: Instant) -> bool {
        match self.typing.get_mut(user) {
            Some(last) if now.saturating_duration_since(*last) < super::typing::MIN_INTERVAL => {
                false
            }
            Some(last) => {
                *last = now;
                true
            }
            None => {
                self.typing.insert(user.clone(), now);
                true
            }
        }
    }

    /// Whether `user` sent `typing` within `timeout` (so may still be typing somewhere).
    pub fn typed_lately(&self, user: &str, now: Instant, timeout: Duration) -> bool {
        self.typing.get(user).is_some_and(|last| now.saturating_duration_since(*last) < timeout)
    }

    /// Takes a token for one chat message of `user` at `now`.
    pub fn check(&mut self, user: &UserId, now: Instant) -> Pace {
        let policy = self.policy;
        if policy.rate <= 0.0 {
            return Pace::Allowed;
        }
        let budget = self.users.entry(user.clone()).or_insert_with(|| UserBudget {
            tokens: policy.burst,
            updated: now,
            refused: 0,
            window_started: now,
        });
        let elapsed = now.saturating_duration_since(budget.updated).as_secs_f64();
        budget.tokens = (budget.tokens + elapsed * policy.rate).min(policy.burst);
        budget.updated = now;
        if budget.tokens >= 1.0 {
            budget.tokens -= 1.0;
            return Pace::Allowed;
        }
        if now.saturating_duration_since(budget.window_started) > FLOOD_WINDOW {
            (budget.refused, budget.window_started) = (0, now);
        }
        budget.refused += 1;
        if budget.refused >= policy.flood_close_after {
            Pace::Flooding
        } else {
            Pace::Refused
        }
    }

    /// Drops the budget of a user with no connection left here.
    pub fn forget(&mut self, user: &str) {
        self.users.remove(user);
        self.typing.remove(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RateLimits {
        RateLimits::new(Policy { rate: 10.0, burst: 20.0, flood_close_after: 3 })
    }

    #[test]
    fn a_burst_passes_then_the_rate_refills() {
        let (mut limits, user, start) = (limits(), UserId::from("u"), Instant::now());
        assert!((0..20).all(|_| limits.check(&user, start) == Pace::Allowed));
        assert_eq!(limits.check(&user, start), Pace::Refused);
        assert_eq!(
            limits.check(&user, start + Duration::from_millis(100)),
            Pace::Allowed,
            "one token per 100 ms"
        );
        assert_eq!(limits.check(&user, start + Duration::from_millis(100)), Pace::Refused);
        assert_eq!(
            limits.check(&UserId::from("other"), start),
            Pace::Allowed,
            "budgets are per user"
        );
    }

    #[test]
    fn repeated_refusals_within_a_minute_mean_flooding() {
        let (mut limits, user, start) = (limits(), UserId::from("u"), Instant::now());
        for _ in 0..20 {
            limits.check(&user, start);
        }
        assert_eq!(limits.check(&user, start), Pace::Refused);
        assert_eq!(limits.check(&user, start), Pace::Refused);
        assert_eq!(limits.check(&user, start), Pace::Flooding);
        let later = start + FLOOD_WINDOW + Duration::from_secs(1);
        for _ in 0..20 {
            limits.check(&user, later);
        }
        assert_eq!(
            limits.check(&user, later),
            Pace::Refused,
            "the count starts again after a minute"
        );
    }

    #[test]
    fn a_zero_rate_limits_nothing() {
        let mut limits = RateLimits::new(Policy { rate: 0.0, burst: 0.0, flood_close_after: 1 });
        assert!(
            (0..1000).all(|_| limits.check(&UserId::from("u"), Instant::now()) == Pace::Allowed)
        );
    }
}
