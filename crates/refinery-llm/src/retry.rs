//! When and how long to wait before retrying a model call.

use std::time::Duration;

/// Exponential backoff with jitter, bounded by attempt count.
///
/// Defaults: 4 attempts, 0.5 s base doubling to at most 30 s. A `retry-after` from the
/// server wins over the computed delay (it knows its own rate window), but is capped at
/// `max_delay` so a hostile or buggy header cannot stall a run for hours; the overall
/// deadline still applies on top.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts, the first one included (1 = no retries).
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The wait before attempt `attempt + 1`, after attempt `attempt` (1-based) failed.
    ///
    /// `jitter` is a number in `[0, 1)`; the computed delay is spread over
    /// `[delay/2, delay)` ("equal jitter") so many clients hitting one 429 do not return
    /// in lockstep, while the wait never collapses to zero.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        if let Some(retry_after) = retry_after {
            return retry_after.min(self.max_delay);
        }
        let exponent = attempt.saturating_sub(1).min(20);
        let full = self
            .base_delay
            .saturating_mul(1_u32 << exponent)
            .min(self.max_delay);
        let jitter = jitter.clamp(0.0, 1.0);
        full.mul_f64(0.5 + jitter / 2.0)
    }
}

/// Read a server's retry hint: `retry-after-ms` (OpenAI), then `retry-after` in seconds
/// (integer or decimal). An HTTP-date `retry-after` is ignored and backoff applies.
pub fn retry_after_from_headers(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let read = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    };
    if let Some(millis) = read("retry-after-ms").and_then(|value| value.parse::<f64>().ok())
        && millis.is_finite()
        && millis >= 0.0
    {
        return Some(Duration::from_secs_f64(millis / 1000.0));
    }
    let seconds = read("retry-after")?.parse::<f64>().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn delays() {
        let policy = RetryPolicy::default();
        let cases = [
            // attempt, retry_after, jitter, expected
            (1, None, 0.0, Duration::from_millis(250)),
            (1, None, 0.999_999, Duration::from_millis(500)),
            (2, None, 0.0, Duration::from_millis(500)),
            (3, None, 0.0, Duration::from_secs(1)),
            (10, None, 0.0, Duration::from_secs(15)),
            (40, None, 0.0, Duration::from_secs(15)),
            (1, Some(Duration::from_secs(2)), 0.7, Duration::from_secs(2)),
            (
                1,
                Some(Duration::from_hours(1)),
                0.7,
                Duration::from_secs(30),
            ),
        ];
        for (attempt, retry_after, jitter, expected) in cases {
            let delay = policy.delay(attempt, retry_after, jitter);
            let difference = delay.abs_diff(expected);
            assert!(
                difference < Duration::from_millis(1),
                "attempt {attempt} {retry_after:?}: {delay:?} != {expected:?}"
            );
        }
    }

    #[test]
    fn retry_after_headers() {
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<Duration>);
        let cases: &[Case] = &[
            (&[], None),
            (&[("retry-after", "2")], Some(Duration::from_secs(2))),
            (&[("retry-after", "0.5")], Some(Duration::from_millis(500))),
            (&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")], None),
            (&[("retry-after", "-1")], None),
            (
                &[("retry-after-ms", "150"), ("retry-after", "9")],
                Some(Duration::from_millis(150)),
            ),
            (
                &[("retry-after-ms", "junk"), ("retry-after", "1")],
                Some(Duration::from_secs(1)),
            ),
        ];
        for (pairs, expected) in cases {
            let mut headers = HeaderMap::new();
            for (name, value) in *pairs {
                headers.insert(*name, HeaderValue::from_static(value));
            }
            assert_eq!(retry_after_from_headers(&headers), *expected, "{pairs:?}");
        }
    }
}
