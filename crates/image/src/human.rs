//! Times shown the way docker's CLI shows them (`3 days ago`), so `images`/`history` output reads
//! the same as docker's.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch of an RFC 3339 time.
fn parse(rfc3339: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()?;
    Some(t.unix_timestamp())
}

/// Docker's (go-units) human duration for `secs`.
fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let minutes = secs / 60;
    let hours = (secs + 1800) / 3600;
    match () {
        _ if secs < 1 => "Less than a second".into(),
        _ if secs == 1 => "1 second".into(),
        _ if secs < 60 => format!("{secs} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

/// `"<duration> ago"` for an RFC 3339 time, or `N/A` when there is none (reproducible images).
pub(crate) fn since(created: Option<&str>, now: SystemTime) -> String {
    let Some(then) = created.and_then(parse) else {
        return "N/A".into();
    };
    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    format!("{} ago", human_duration(now.saturating_sub(then)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn matches_docker_wording() {
        let base = "2026-11-26T00:00:00Z";
        let t0 = UNIX_EPOCH + Duration::from_secs(parse(base).unwrap() as u64);
        let table: &[(u64, &str)] = &[
            (0, "Less than a second ago"),
            (1, "1 second ago"),
            (59, "59 seconds ago"),
            (60, "About a minute ago"),
            (60 * 59, "59 minutes ago"),
            (3600, "About an hour ago"),
            (3600 * 5, "5 hours ago"),
            (3600 * 24 * 3, "3 days ago"),
            (3600 * 24 * 21, "3 weeks ago"),
            (3600 * 24 * 90, "3 months ago"),
            (3600 * 24 * 365 * 3, "3 years ago"),
        ];
        for (secs, want) in table {
            assert_eq!(
                since(Some(base), t0 + Duration::from_secs(*secs)),
                *want,
                "{secs}"
            );
        }
        assert_eq!(since(None, t0), "N/A");
        assert_eq!(since(Some("yesterday"), t0), "N/A");
        assert_eq!(
            since(Some("2026-11-26T01:00:00+01:00"), t0),
            "Less than a second ago"
        );
    }
}
