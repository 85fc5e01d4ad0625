//! Validation of everything a user names: topics, keyspaces, tables, addresses,
//! durations, rates. Each parser returns a one-line message that clap prints
//! before exiting with code 2.

use std::time::Duration;

/// Kafka topic: 1–249 of `[A-Za-z0-9._-]`, not `.` or `..` (Kafka's own rule).
pub fn parse_topic(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 249
        && s != "."
        && s != ".."
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("invalid topic name {s:?}: use 1-249 letters, digits, '.', '_' or '-'"))
    }
}

/// CQL/SQL identifier for keyspaces, schemas and tables: a lower-case letter,
/// then lower-case letters, digits or underscores, at most 48 characters
/// (Cassandra's limit), and not a reserved word of CQL or PostgreSQL. Never
/// quoted, so no quoting tricks can reach a statement; lower case because both
/// fold an unquoted name to it (`MyKs` would be created as `myks`, then not
/// found by its own name).
pub fn parse_identifier(s: &str) -> Result<String, String> {
    let mut bytes = s.bytes();
    let ok = s.len() <= 48
        && bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ok {
        return Err(format!("invalid name {s:?}: use a letter then up to 47 letters, digits or '_'"));
    }
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "invalid name {s:?}: use lower case ({:?}); CQL and PostgreSQL fold unquoted names to it",
            s.to_ascii_lowercase()
        ));
    }
    if RESERVED.contains(&s) {
        return Err(format!("invalid name {s:?}: a reserved word of CQL or PostgreSQL"));
    }
    Ok(s.to_owned())
}

/// Reserved words of CQL (Cassandra 5) and PostgreSQL 15 (those not allowed
/// as a table or schema name), lower case.
const RESERVED: &[&str] = &[
    "add",
    "all",
    "allow",
    "alter",
    "analyse",
    "analyze",
    "and",
    "any",
    "apply",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "authorize",
    "batch",
    "begin",
    "binary",
    "both",
    "by",
    "case",
    "cast",
    "check",
    "collate",
    "collation",
    "column",
    "columnfamily",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "delete",
    "desc",
    "describe",
    "distinct",
    "do",
    "drop",
    "else",
    "end",
    "entries",
    "except",
    "execute",
    "false",
    "fetch",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "if",
    "ilike",
    "in",
    "index",
    "infinity",
    "initially",
    "inner",
    "insert",
    "intersect",
    "into",
    "is",
    "isnull",
    "join",
    "keyspace",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "materialized",
    "mbean",
    "mbeans",
    "modify",
    "nan",
    "natural",
    "norecursive",
    "not",
    "notnull",
    "null",
    "of",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "overlaps",
    "placing",
    "primary",
    "references",
    "rename",
    "replace",
    "returning",
    "revoke",
    "right",
    "schema",
    "select",
    "session_user",
    "set",
    "similar",
    "some",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "to",
    "token",
    "trailing",
    "true",
    "truncate",
    "union",
    "unique",
    "unlogged",
    "unset",
    "update",
    "use",
    "user",
    "using",
    "variadic",
    "verbose",
    "view",
    "when",
    "where",
    "window",
    "with",
];

/// Comma-separated `host:port` list.
pub fn parse_brokers(s: &str) -> Result<String, String> {
    for addr in s.split(',') {
        parse_host_port(addr.trim())?;
    }
    Ok(s.to_owned())
}

/// `host:port` with a non-empty host and a port in 1..=65535.
pub fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let bad = || format!("invalid address {s:?}: expected host:port, e.g. 127.0.0.1:9092");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b)) {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

/// `key=value` for librdkafka settings.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!("invalid setting {s:?}: expected key=value")),
    }
}

/// Settings whose values are secrets and therefore never accepted on the command line.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "ssl.key.pem", "ssl.keystore", "sasl.jaas", "token"].iter().any(|s| k.contains(s))
}

/// Human durations: `60s`, `5m`, `200ms`, `1h 30m`.
/// A share `K/N` of a run's partitions: 1 <= K <= N.
pub fn parse_share(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("share must be K/N with 1 <= K <= N (e.g. 2/3), not '{s}'");
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let (k, n): (u32, u32) = (k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if k == 0 || n == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

/// A share of a whole: `1%`, `0.5%`, or a fraction `0.01`; from 0 to 1.
pub fn parse_share_of_one(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let value = match t.strip_suffix('%') {
        Some(pct) => pct.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    };
    match value {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a share from 0 to 1 (e.g. 1%, 0.05, 0)")),
    }
}

/// The SQL of a `--sql` file; one it cannot read is a usage error (exit 2).
pub fn read_sql_file(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .or_else(|e| crate::error::usage(format!("cannot read --sql file {}: {e}", path.display())))
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?}: {e} (e.g. 60s, 5m, 200ms)"))?;
    if d.is_zero() {
        return Err(format!("invalid duration {s:?}: must be more than zero"));
    }
    Ok(d)
}

/// The longest `--linger` (a window longer than this is a batch job, not a stream).
pub const MAX_LINGER: Duration = Duration::from_secs(10);

/// How long a record may wait to be sent with others: 0 (at once) to `MAX_LINGER`.
pub fn parse_linger(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s.trim()) {
        Ok(d) if d <= MAX_LINGER => Ok(d),
        _ => Err(format!(
            "invalid linger {s:?}: a duration from 0 to {} (e.g. 25ms, 0ms)",
            humantime::format_duration(MAX_LINGER)
        )),
    }
}

/// A size in bytes: `1048576`, `512KB`, `128MB`, `1GB` (powers of 1024).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "KB" | "KIB" => 10,
        "MB" | "MIB" => 20,
        "GB" | "GIB" => 30,
        _ => return Err(format!("invalid size {s:?}: expected bytes, e.g. 128MB")),
    };
    match num.parse::<u64>().ok().and_then(|n| n.checked_mul(1 << shift)) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(format!("invalid size {s:?}: expected a positive size, e.g. 128MB")),
    }
}

/// A point in time, RFC 3339 (`2026-12-05T22:00:00Z`, `2026-12-05T23:00:00+01:00`).
pub fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("invalid time {s:?}: {e} (RFC 3339, e.g. 2026-12-05T22:00:00Z)"))
}

/// `--from-time` before `--to-time`, when both are given (a usage error otherwise).
pub fn check_time_range(
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: Option<chrono::DateTime<chrono::Utc>>,
) -> anyhow::Result<()> {
    match (from, to) {
        (Some(from), Some(to)) if from >= to => crate::error::usage(format!(
            "--from-time {} is not before --to-time {}",
            from.to_rfc3339(),
            to.to_rfc3339()
        )),
        _ => Ok(()),
    }
}

/// A rate in records per second: `100`, `100/s`, `6000/m`.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let bad = || format!("invalid rate {s:?}: expected a positive number per second, e.g. 100/s");
    let (num, per) = match s.trim().split_once('/') {
        Some((n, unit)) => (n, unit.trim()),
        None => (s.trim(), "s"),
    };
    let secs = match per {
        "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    let n: f64 = num.trim().parse().map_err(|_| bad())?;
    if !(n.is_finite() && n > 0.0) {
        return Err(bad());
    }
    Ok(n / secs)
}

/// An absolute http(s) URL.
pub fn parse_http_url(s: &str) -> Result<String, String> {
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(s.to_owned()),
        Ok(_) => Err(format!("invalid URL {s:?}: expected http:// or https:// with a host")),
        Err(e) => Err(format!("invalid URL {s:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_and_times_parse() {
        assert_eq!(super::parse_bytes("128MB"), Ok(128 << 20));
        assert_eq!(super::parse_bytes("4096"), Ok(4096));
        assert!(super::parse_bytes("0").is_err());
        assert!(super::parse_bytes("12 parsecs").is_err());
        let t = super::parse_time("2026-12-05T23:00:00+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-05T22:00:00+00:00");
        assert!(super::parse_time("yesterday").is_err());
    }

    use super::*;

    #[test]
    fn shares_of_one() {
        assert_eq!(parse_share_of_one("1%"), Ok(0.01));
        assert_eq!(parse_share_of_one("0.05"), Ok(0.05));
        assert_eq!(parse_share_of_one("0"), Ok(0.0));
        assert_eq!(parse_share_of_one("100%"), Ok(1.0));
        for bad in ["", "-1%", "101%", "2", "x%", "NaN"] {
            assert!(parse_share_of_one(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shares() {
        assert_eq!(parse_share("2/3"), Ok((2, 3)));
        assert_eq!(parse_share("1/1"), Ok((1, 1)));
        for bad in ["0/3", "4/3", "1/0", "3", "a/b", "-1/2", ""] {
            assert!(parse_share(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn topics() {
        assert!(parse_topic("users_raw").is_ok());
        assert!(parse_topic("a.b-c_1").is_ok());
        for bad in ["", ".", "..", "a b", "x;DROP", "é", &"x".repeat(250)] {
            assert!(parse_topic(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn identifiers() {
        assert!(parse_identifier("spark_streams").is_ok());
        for bad in ["x; DROP", "1abc", "", "a-b", "\"q\"", &"k".repeat(49), "MyKs", "Created_users"] {
            assert!(parse_identifier(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(parse_identifier("MyKs").unwrap_err().contains("use lower case (\"myks\")"));
        for reserved in ["table", "select", "user", "keyspace", "order"] {
            assert!(parse_identifier(reserved).unwrap_err().contains("reserved"), "{reserved}");
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_host_port("127.0.0.1:9092").unwrap().1, 9092);
        assert!(parse_brokers("a:1,b:2").is_ok());
        for bad in ["nohost", ":9092", "h:0", "h:99999", "h:x", "a b:1"] {
            assert!(parse_host_port(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn rates_and_durations() {
        assert_eq!(parse_rate("100/s").unwrap(), 100.0);
        assert_eq!(parse_rate("60/m").unwrap(), 1.0);
        assert_eq!(parse_rate("5").unwrap(), 5.0);
        for bad in ["0", "-1", "x/s", "1/y", "inf"] {
            assert!(parse_rate(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn secrets_and_urls() {
        assert!(is_secret_key("sasl.password"));
        assert!(is_secret_key("ssl.key.password"));
        assert!(!is_secret_key("security.protocol"));
        assert!(parse_http_url("http://127.0.0.1:8080/api/").is_ok());
        assert!(parse_http_url("ftp://x/").is_err());
        assert!(parse_http_url("not a url").is_err());
    }
}
