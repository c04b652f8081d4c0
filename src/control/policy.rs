//! One namespace's policy (spec §2.1): its auth mode, which built-in events are on, the room
//! patterns a client may join and publish to, the reserved `ringcast:` prefix, limits and the
//! per-socket event rate. Plain data and pure checks: must not depend on sockets, the runtime
//! or the clock (instants come in).

use std::time::{Duration, Instant};

use super::config::{AuthMode, ConfigError, NamespaceSection, UnknownEvents};

/// Rooms under this prefix are the server's: clients never join, leave or publish to them.
pub(crate) const RESERVED_PREFIX: &str = "ringcast:";

/// The room of a user's sockets.
pub(crate) fn user_room(user: &str) -> String {
    format!("{RESERVED_PREFIX}user:{user}")
}

/// The built-in events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Builtins {
    pub(crate) join: bool,
    pub(crate) leave: bool,
    pub(crate) publish: bool,
    pub(crate) echo: bool,
}

impl Builtins {
    const ALL: Builtins = Builtins {
        join: true,
        leave: true,
        publish: true,
        echo: true,
    };

    fn parse(names: &[String], key: &str) -> Result<Builtins, ConfigError> {
        let mut builtins = Builtins {
            join: false,
            leave: false,
            publish: false,
            echo: false,
        };
        for name in names {
            match name.as_str() {
                "join" => builtins.join = true,
                "leave" => builtins.leave = true,
                "publish" => builtins.publish = true,
                "echo" => builtins.echo = true,
                other => {
                    return Err(ConfigError(format!(
                        "{key}.builtins: unknown built-in `{other}` (join, leave, publish, echo)"
                    )))
                }
            }
        }
        Ok(builtins)
    }
}

/// A room pattern: `*` matches any run of characters (none included), `{user}` the socket's
/// user id literally (never for a socket without a user), the rest is literal. No regex, so a
/// pattern can't be made slow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoomPattern(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Any,
    User,
}

impl RoomPattern {
    pub(crate) fn parse(text: &str) -> RoomPattern {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if c == '*' {
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                if parts.last() != Some(&Part::Any) {
                    parts.push(Part::Any);
                }
                rest = &rest[1..];
            } else if let Some(after) = rest.strip_prefix("{user}") {
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(Part::User);
                rest = after;
            } else {
                literal.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        RoomPattern(parts)
    }

    /// Whether the whole of `room` matches, for a socket of `user`.
    pub(crate) fn matches(&self, room: &str, user: Option<&str>) -> bool {
        if self.0.contains(&Part::User) && user.is_none() {
            return false;
        }
        matches_from(&self.0, room, user.unwrap_or_default())
    }
}

/// Matches `parts` against the whole of `text`. A `*` tries the shortest run first; with no
/// nested alternation this is at most O(parts × text) per `*`, bounded by the room length.
fn matches_from(parts: &[Part], text: &str, user: &str) -> bool {
    match parts.split_first() {
        None => text.is_empty(),
        Some((Part::Literal(literal), rest)) => text
            .strip_prefix(literal.as_str())
            .is_some_and(|after| matches_from(rest, after, user)),
        Some((Part::User, rest)) => text
            .strip_prefix(user)
            .is_some_and(|after| matches_from(rest, after, user)),
        Some((Part::Any, rest)) => {
            if rest.is_empty() {
                return true;
            }
            text.char_indices()
                .map(|(at, _)| at)
                .chain(std::iter::once(text.len()))
                .any(|at| matches_from(rest, &text[at..], user))
        }
    }
}

/// Whether any of `patterns` lets a socket of `user` use `room`.
pub(crate) fn allowed(patterns: &[RoomPattern], room: &str, user: Option<&str>) -> bool {
    patterns.iter().any(|pattern| pattern.matches(room, user))
}

/// A per-socket token bucket over client events: `rate` per second, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rate {
    pub(crate) per_second: f64,
    pub(crate) burst: f64,
}

impl Rate {
    /// `"20/s"`, `"600/m"` or `"36000/h"`.
    fn parse(text: &str, burst: Option<u32>, key: &str) -> Result<Rate, ConfigError> {
        let bad = || {
            ConfigError(format!(
                "{key}.event_rate: `{text}` is not a rate like 20/s"
            ))
        };
        let (count, unit) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: f64 = count.trim().parse().map_err(|_| bad())?;
        let seconds = match unit.trim() {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        if count <= 0.0 || !count.is_finite() {
            return Err(bad());
        }
        let per_second = count / seconds;
        let burst = f64::from(burst.unwrap_or(0))
            .max(per_second.ceil())
            .max(1.0);
        Ok(Rate { per_second, burst })
    }
}

/// One socket's bucket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    tokens: f64,
    updated: Instant,
    /// Violations in the current minute, and when that minute started.
    violations: u32,
    window: Instant,
}

/// Violations within a minute after which the socket is disconnected (`rate limited`).
pub(crate) const MAX_VIOLATIONS: u32 = 10;

/// What the bucket says of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pass,
    /// Over the rate: answer `rate_limited`.
    Limited,
    /// Over the rate too often: disconnect.
    Disconnect,
}

impl Bucket {
    pub(crate) fn full(rate: &Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: rate.burst,
            updated: now,
            violations: 0,
            window: now,
        }
    }

    pub(crate) fn take(&mut self, rate: &Rate, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Pass;
        }
        if now.saturating_duration_since(self.window) > Duration::from_secs(60) {
            self.window = now;
            self.violations = 0;
        }
        self.violations += 1;
        if self.violations >= MAX_VIOLATIONS {
            Verdict::Disconnect
        } else {
            Verdict::Limited
        }
    }
}

/// A namespace's policy, every default filled in.
#[derive(Debug, Clone)]
pub(crate) struct NamespacePolicy {
    pub(crate) auth: AuthMode,
    pub(crate) allow_anonymous: bool,
    pub(crate) builtins: Builtins,
    pub(crate) join: Vec<RoomPattern>,
    pub(crate) publish: Vec<RoomPattern>,
    pub(crate) publish_requires_membership: bool,
    pub(crate) unknown_events: UnknownEvents,
    /// `None`: the server-wide `limits.max_rooms_per_socket` only.
    pub(crate) max_rooms_per_socket: Option<usize>,
    pub(crate) max_room_length: usize,
    pub(crate) rate: Option<Rate>,
    pub(crate) max_sockets_per_user: usize,
    pub(crate) single_session: bool,
}

/// Rooms are at most this many bytes unless a namespace says otherwise.
pub(crate) const MAX_ROOM_LENGTH: usize = 256;

impl NamespacePolicy {
    /// Today's behaviour: no auth, every built-in open to every room.
    pub(crate) fn open() -> NamespacePolicy {
        NamespacePolicy::from_section(&NamespaceSection::default(), AuthMode::None, "")
            .unwrap_or_else(|_| unreachable!("the default section is valid"))
    }

    /// The policy `section` describes, with `default_auth` when it names none. `key` names the
    /// table in errors (`namespaces."/chat"`).
    pub(crate) fn from_section(
        section: &NamespaceSection,
        default_auth: AuthMode,
        key: &str,
    ) -> Result<NamespacePolicy, ConfigError> {
        let auth = section.auth.unwrap_or(default_auth);
        let open = auth == AuthMode::None;
        let patterns = |list: &Option<Vec<String>>| -> Vec<RoomPattern> {
            match list {
                Some(list) => list.iter().map(|p| RoomPattern::parse(p)).collect(),
                None if open => vec![RoomPattern::parse("*")],
                None => Vec::new(),
            }
        };
        let builtins = match &section.builtins {
            Some(names) => Builtins::parse(names, key)?,
            None => Builtins::ALL,
        };
        let rate = section
            .event_rate
            .as_deref()
            .map(|text| Rate::parse(text, section.event_burst, key))
            .transpose()?;
        if section.event_burst.is_some() && rate.is_none() {
            return Err(ConfigError(format!("{key}.event_burst: needs event_rate")));
        }
        if section.allow_anonymous.is_some() && !auth.takes_tokens() {
            return Err(ConfigError(format!(
                "{key}.allow_anonymous: only with auth = \"jwt\" or \"jwt+hook\""
            )));
        }
        let max_room_length = section.max_room_length.unwrap_or(MAX_ROOM_LENGTH);
        if max_room_length == 0 {
            return Err(ConfigError(format!("{key}.max_room_length: at least 1")));
        }
        Ok(NamespacePolicy {
            auth,
            allow_anonymous: section.allow_anonymous.unwrap_or(false),
            builtins,
            join: patterns(&section.join),
            publish: patterns(&section.publish),
            publish_requires_membership: section.publish_requires_membership.unwrap_or(false),
            unknown_events: section.unknown_events.unwrap_or_default(),
            max_rooms_per_socket: section.max_rooms_per_socket,
            max_room_length,
            rate,
            max_sockets_per_user: section.max_sockets_per_user.unwrap_or(0),
            single_session: section.single_session.unwrap_or(false),
        })
    }

    /// Whether its sockets carry state (a grant, an event bucket): otherwise none is looked
    /// up, so an open namespace's built-ins cost what they did before policies.
    pub(crate) fn keeps_state(&self) -> bool {
        self.rate.is_some() || self.auth != AuthMode::None
    }

    /// Why a client may not name `room` at all (join, leave or publish), if it may not: the
    /// reserved prefix, an empty or overlong name, control characters.
    pub(crate) fn room_error(&self, room: &str) -> Option<RoomError> {
        if room.is_empty()
            || room.len() > self.max_room_length
            || room.chars().any(char::is_control)
        {
            return Some(RoomError::Invalid);
        }
        if room.starts_with(RESERVED_PREFIX) {
            return Some(RoomError::Forbidden);
        }
        None
    }
}

/// Why a room was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoomError {
    /// Not a room name a client may use (`invalid_room`).
    Invalid,
    /// Not allowed to this socket (`forbidden`).
    Forbidden,
}

impl RoomError {
    pub(crate) fn code(self) -> &'static str {
        match self {
            RoomError::Invalid => "invalid_room",
            RoomError::Forbidden => "forbidden",
        }
    }

    pub(crate) fn message(self) -> &'static str {
        match self {
            RoomError::Invalid => "invalid room name",
            RoomError::Forbidden => "room not allowed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_names() {
        let team = RoomPattern::parse("team:7:*");
        assert!(team.matches("team:7:x", None));
        assert!(team.matches("team:7:", None));
        assert!(!team.matches("team:8:x", None));
        assert!(!team.matches("xteam:7:x", None));
        let dm = RoomPattern::parse("dm:{user}:*");
        assert!(dm.matches("dm:42:13", Some("42")));
        assert!(!dm.matches("dm:13:42", Some("42")));
        assert!(
            !dm.matches("dm::x", None),
            "{{user}} never matches without a user"
        );
        let any = RoomPattern::parse("*");
        assert!(any.matches("anything at all", None));
        let middle = RoomPattern::parse("a*b*c");
        assert!(middle.matches("abc", None));
        assert!(middle.matches("a-b-b-c", None));
        assert!(!middle.matches("a-b-c-d", None));
        assert!(RoomPattern::parse("exact").matches("exact", None));
        assert!(!RoomPattern::parse("exact").matches("exactly", None));
    }

    #[test]
    fn defaults_follow_the_auth_mode() {
        let open = NamespacePolicy::open();
        assert!(allowed(&open.join, "any", None));
        assert_eq!(open.builtins, Builtins::ALL);
        let section = NamespaceSection {
            auth: Some(AuthMode::Jwt),
            ..NamespaceSection::default()
        };
        let closed = NamespacePolicy::from_section(&section, AuthMode::None, "ns").expect("ok");
        assert!(!allowed(&closed.join, "any", Some("42")));
        assert!(!allowed(&closed.publish, "any", Some("42")));
    }

    #[test]
    fn reserved_and_malformed_rooms_are_refused() {
        let policy = NamespacePolicy::open();
        assert_eq!(
            policy.room_error("ringcast:user:1"),
            Some(RoomError::Forbidden)
        );
        assert_eq!(policy.room_error(""), Some(RoomError::Invalid));
        assert_eq!(policy.room_error("a\nb"), Some(RoomError::Invalid));
        assert_eq!(
            policy.room_error(&"x".repeat(257)),
            Some(RoomError::Invalid)
        );
        assert_eq!(policy.room_error("lobby"), None);
    }

    #[test]
    fn the_bucket_limits_then_disconnects() {
        let section = NamespaceSection {
            event_rate: Some("10/s".to_owned()),
            event_burst: Some(20),
            ..NamespaceSection::default()
        };
        let policy = NamespacePolicy::from_section(&section, AuthMode::None, "ns").expect("ok");
        let rate = policy.rate.expect("a rate");
        let now = Instant::now();
        let mut bucket = Bucket::full(&rate, now);
        let verdicts: Vec<Verdict> = (0..25).map(|_| bucket.take(&rate, now)).collect();
        assert_eq!(verdicts.iter().filter(|v| **v == Verdict::Pass).count(), 20);
        assert_eq!(
            verdicts.iter().filter(|v| **v == Verdict::Limited).count(),
            5
        );
        // A second later, ten more pass.
        let later = now + Duration::from_secs(1);
        assert_eq!(bucket.take(&rate, later), Verdict::Pass);
        let over: Vec<Verdict> = (0..20).map(|_| bucket.take(&rate, later)).collect();
        assert!(over.contains(&Verdict::Disconnect));
    }

    #[test]
    fn bad_policies_name_their_key() {
        let section = NamespaceSection {
            builtins: Some(vec!["jump".to_owned()]),
            ..NamespaceSection::default()
        };
        let error = NamespacePolicy::from_section(&section, AuthMode::None, "namespaces.\"/\"")
            .expect_err("unknown built-in");
        assert!(error.0.contains("jump"), "{}", error.0);
        let section = NamespaceSection {
            event_rate: Some("fast".to_owned()),
            ..NamespaceSection::default()
        };
        assert!(NamespacePolicy::from_section(&section, AuthMode::None, "ns").is_err());
    }
}
