//! The row contract: the columns of a clean row (`users_created`), defined
//! once — each one's name and kind, and from its kind how each store holds it.
//! The sinks, the tests, the examples and the bench derive from `COLUMNS`:
//! adding a column means the SQL (sql/format_users.sql) and one line here.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserializer, MapAccess, Visitor};

/// What a column holds, which decides how each store keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The row's key, a UUID: the primary key of Cassandra's and PostgreSQL's tables.
    Id,
    /// Text, as the API sent it.
    Text,
    /// An RFC 3339 timestamp: `timestamptz` in PostgreSQL, text as sent elsewhere.
    Timestamp,
}

impl Kind {
    /// The CQL type (as Cassandra's `system_schema.columns` names it).
    pub fn cql(self) -> &'static str {
        match self {
            Kind::Id => "uuid",
            Kind::Text | Kind::Timestamp => "text",
        }
    }

    /// The PostgreSQL type (as `information_schema.columns` names it; valid in DDL too).
    pub fn postgres(self) -> &'static str {
        match self {
            Kind::Id => "uuid",
            Kind::Text => "text",
            Kind::Timestamp => "timestamp with time zone",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    /// Whether users share values of it (a first name, a gender, a picture):
    /// Parquet keeps a dictionary of those, not of values most users have to
    /// themselves, where it only grows (bench/README.md, "A row in one allocation").
    pub repeats: bool,
}

/// A column; text repeats, ids and timestamps are each user's own.
const fn column(name: &'static str, kind: Kind) -> Column {
    Column { name, kind, repeats: matches!(kind, Kind::Text) }
}

/// A text column whose values are most users' own (an email, a phone number).
const fn own_text(name: &'static str) -> Column {
    Column { name, kind: Kind::Text, repeats: false }
}

/// Columns in a row. A literal, not `COLUMNS.len()`: arrays of this width
/// inside `COLUMNS`'s users made that a const cycle in release builds
/// (E0391; debug builds compiled it).
pub const WIDTH: usize = 12;

/// The columns of a clean row, in the order of every store's schema. The id comes first.
pub const COLUMNS: [Column; WIDTH] = [
    column("id", Kind::Id),
    column("first_name", Kind::Text),
    column("last_name", Kind::Text),
    column("gender", Kind::Text),
    own_text("address"),
    column("post_code", Kind::Text),
    own_text("email"),
    own_text("username"),
    column("dob", Kind::Timestamp),
    column("registered_date", Kind::Timestamp),
    own_text("phone"),
    column("picture", Kind::Text),
];

/// The column names, in order.
pub fn names() -> impl Iterator<Item = &'static str> {
    COLUMNS.iter().map(|c| c.name)
}

/// Beside the contract's columns every store keeps the ingest stamp of each
/// row's version (the record's `rtds-ingested-at` header, RFC 3339): which
/// run's version of a user a store holds, for `rtds reconcile`.
pub const INGESTED_AT: &str = "ingested_at";

/// An ingest stamp as milliseconds since the epoch (how every store's copy compares).
pub fn stamp_millis(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text.trim()).ok().map(|t| t.timestamp_millis())
}

/// An id in its one spelling: a UUID as lower-case hyphenated text, whatever
/// form it came in (upper case, braces, no hyphens); `None` if it is not a
/// UUID. Stores key rows by the parsed UUID, so two spellings of one UUID are
/// one row: the text must be one too, or a batch holding both makes
/// PostgreSQL's upsert touch a row twice and the Parquet files hold two.
pub fn canonical_id(id: &str) -> Option<Cow<'_, str>> {
    if is_canonical(id) {
        return Some(Cow::Borrowed(id));
    }
    uuid::Uuid::try_parse(id).ok().map(|u| Cow::Owned(u.hyphenated().to_string()))
}

/// `id` as `canonical_id` spells it, if it is a UUID; anything else as it is.
pub fn canonical(id: String) -> String {
    match canonical_id(&id) {
        Some(Cow::Owned(c)) => c,
        _ => id,
    }
}

/// Whether `id` is a UUID spelled as `canonical_id` spells it (no parse, no allocation).
fn is_canonical(id: &str) -> bool {
    id.len() == 36
        && id.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// A clean row of `users_created`, as the load stage reads it: a value (or
/// null) per column. A field that is not a column is an error (schema drift
/// must not be silently dropped, as the classic stack dropped `dob`).
#[derive(Clone, PartialEq, Eq)]
pub struct UserRow {
    /// The columns' values one after another, in `COLUMNS` order: one
    /// allocation a row, where a `String` a column made twelve to allocate and free.
    text: String,
    /// Where each column's value ends in `text` (it begins where the one before ends).
    ends: [u32; WIDTH],
    /// Bit `i` set: column `i` is null. The id (first) is always there and a UUID.
    nulls: u16,
    uuid: uuid::Uuid,
    /// The ingest stamp of the record the row came from (`INGESTED_AT`), if it
    /// had one; shared with the rows beside it that have the same (`Stamps`).
    ingested_at: Option<Arc<str>>,
}

const _: () = assert!(WIDTH <= u16::BITS as usize, "a column's null flag is a bit of UserRow::nulls");

impl UserRow {
    /// Parse one `users_created` payload; the error says why, for the DLQ.
    pub fn parse(payload: Option<&[u8]>) -> Result<Self, String> {
        let bytes = payload.ok_or("null payload (record has no value)")?;
        let values = serde_json::from_slice::<Values>(bytes).map_err(|e| format!("not a users_created row: {e}"))?.0;
        Self::of(values.map(|v| v.map(|t| t.0)))
    }

    /// A row of these values (`COLUMNS` order), if its id is a UUID.
    pub fn of<S: AsRef<str>>(values: [Option<S>; WIDTH]) -> Result<Self, String> {
        let id = values[0].as_ref().map(AsRef::as_ref).ok_or("not a users_created row: missing field `id`")?;
        let uuid = uuid::Uuid::try_parse(id).map_err(|_| format!("id is not a UUID: {id:?}"))?;
        // One spelling: a row keyed by another producer's upper-case id is the same row.
        let canonical = (!is_canonical(id)).then(|| uuid.hyphenated().to_string());
        let mut text = String::with_capacity(values.iter().flatten().map(|v| v.as_ref().len()).sum());
        let (mut ends, mut nulls) = ([0; WIDTH], 0);
        for (i, value) in values.iter().enumerate() {
            match (i, value) {
                (0, _) => text.push_str(canonical.as_deref().unwrap_or(id)),
                (_, Some(v)) => text.push_str(v.as_ref()),
                (_, None) => nulls |= 1 << i,
            }
            ends[i] = u32::try_from(text.len()).map_err(|_| "a row of more than 4 GiB of text".to_owned())?;
        }
        Ok(Self { text, ends, nulls, uuid, ingested_at: None })
    }

    /// The row with the ingest stamp of its record (its `rtds-ingested-at`
    /// header), kept once among `stamps`.
    pub fn stamped(mut self, ingested_at: Option<&[u8]>, stamps: &mut Stamps) -> Self {
        self.ingested_at = stamps.of(ingested_at);
        self
    }

    pub fn ingested_at(&self) -> Option<&str> {
        self.ingested_at.as_deref()
    }

    pub fn id(&self) -> &str {
        self.get(0).unwrap_or_default()
    }

    pub fn uuid(&self) -> uuid::Uuid {
        self.uuid
    }

    /// Every column as text, in `COLUMNS` order.
    pub fn texts(&self) -> [Option<&str>; WIDTH] {
        std::array::from_fn(|i| self.get(i))
    }

    /// The value of column `i` (of `COLUMNS`).
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = self.ends[i] as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        (self.nulls & (1 << i) == 0).then(|| &self.text[start..end])
    }

    #[cfg(test)]
    fn set(&mut self, name: &str, value: Option<&str>) {
        let i = names().position(|n| n == name).unwrap();
        let mut values = self.texts().map(|v| v.map(str::to_owned));
        values[i] = value.map(str::to_owned);
        let stamp = self.ingested_at.take();
        *self = Self { ingested_at: stamp, ..Self::of(values).unwrap() };
    }
}

impl fmt::Debug for UserRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRow").field("values", &self.texts()).field("ingested_at", &self.ingested_at).finish()
    }
}

/// The ingest stamps of rows read one after another: a row with the stamp of
/// the one before shares its text. Stamps are in milliseconds and a
/// partition's records come in order, so at full speed dozens of rows in a
/// row have one: an allocation a stamp instead of one a row.
#[derive(Debug, Default)]
pub struct Stamps(Option<Arc<str>>);

impl Stamps {
    /// `stamp` as text (`None` if absent or not UTF-8), shared with the last one if equal.
    pub fn of(&mut self, stamp: Option<&[u8]>) -> Option<Arc<str>> {
        let text = std::str::from_utf8(stamp?).ok()?;
        match &self.0 {
            Some(last) if **last == *text => Some(last.clone()),
            _ => Some(self.0.insert(Arc::from(text)).clone()),
        }
    }
}

/// A JSON object read straight into the columns' slots.
struct Values<'de>([Option<Text<'de>>; WIDTH]);

/// A JSON string: borrowed from the payload when it has no escapes (most do), else decoded.
struct Text<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Str;
        impl<'de> Visitor<'de> for Str {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(Str)
    }
}

impl<'de> de::Deserialize<'de> for Values<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Slots;
        impl<'de> Visitor<'de> for Slots {
            type Value = Values<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object of the row's columns")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Values<'de>, A::Error> {
                let mut values: [Option<Text<'de>>; WIDTH] = Default::default();
                let mut seen = [false; WIDTH];
                // The transform writes the columns in order: the next one is tried first.
                let mut next = 0;
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    let at = |i: &usize| COLUMNS.get(*i).is_some_and(|c| c.name == key);
                    let Some(i) = Some(next).filter(at).or_else(|| (0..WIDTH).find(at)) else {
                        let known: Vec<&str> = names().collect();
                        return Err(de::Error::custom(format!(
                            "unknown field `{key}`, expected one of {}",
                            known.join(", ")
                        )));
                    };
                    if std::mem::replace(&mut seen[i], true) {
                        return Err(de::Error::duplicate_field(COLUMNS[i].name));
                    }
                    values[i] = map.next_value()?;
                    next = i + 1;
                }
                Ok(Values(values))
            }
        }
        d.deserialize_map(Slots)
    }
}

/// Keep the last row of each id (a batch may carry a replayed row twice; the
/// later one wins, as it would have in the store). Keyed by the parsed UUID,
/// which is one per spelling (`canonical_id`); a batch of distinct ids, the
/// usual one, comes back as it was, unmoved.
pub fn last_per_id<T>(items: Vec<T>, id: impl Fn(&T) -> uuid::Uuid) -> Vec<T> {
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    if items.iter().all(|t| seen.insert(id(t))) {
        return items;
    }
    seen.clear();
    let mut out: Vec<T> = items.into_iter().rev().filter(|t| seen.insert(id(t))).collect();
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: &str = r#"{"id":"0b6d2f7e-5c1a-4b8e-9f3d-2a7c6e1d9b40","first_name":"Tomás","last_name":null,"gender":"male","address":"a","post_code":"69002","email":"e","username":"u","dob":"1990-02-28T23:59:59.999Z","registered_date":"2015-06-01T00:00:00.000Z","phone":"p","picture":"x"}"#;

    #[test]
    fn rows_parse_and_drift_is_refused() {
        let r = UserRow::parse(Some(ROW.as_bytes())).unwrap();
        assert_eq!(r.get(1), Some("Tomás"));
        assert_eq!(r.get(2), None);
        assert_eq!(r.texts()[8], Some("1990-02-28T23:59:59.999Z"));
        assert_eq!(r.uuid().to_string(), r.id());
        let drift = ROW.replace(r#""phone":"p""#, r#""phone":"p","cell":"c""#);
        assert!(UserRow::parse(Some(drift.as_bytes())).unwrap_err().contains("unknown field `cell`"));
        let twice = ROW.replace(r#""phone":"p""#, r#""phone":"p","phone":"q""#);
        assert!(UserRow::parse(Some(twice.as_bytes())).unwrap_err().contains("duplicate field `phone`"));
        let bad_id = ROW.replace("0b6d2f7e-5c1a-4b8e-9f3d-2a7c6e1d9b40", "nope");
        assert!(UserRow::parse(Some(bad_id.as_bytes())).unwrap_err().contains("not a UUID"));
        let no_id = ROW.replace(r#""id":"0b6d2f7e-5c1a-4b8e-9f3d-2a7c6e1d9b40","#, "");
        assert!(UserRow::parse(Some(no_id.as_bytes())).unwrap_err().contains("missing field `id`"));
        let number = ROW.replace(r#""post_code":"69002""#, r#""post_code":69002"#);
        assert!(UserRow::parse(Some(number.as_bytes())).unwrap_err().contains("invalid type"));
        assert!(UserRow::parse(None).is_err());
        assert!(UserRow::parse(Some(b"{")).is_err());
        assert!(UserRow::parse(Some(b"[]")).is_err());
    }

    #[test]
    fn fields_in_any_order_and_escaped_text_read_the_same() {
        let r = UserRow::parse(Some(ROW.as_bytes())).unwrap();
        let moved = ROW
            .replace(r#""first_name":"Tomás","#, "")
            .replace(r#""picture":"x""#, r#""picture":"x","first_name":"Tomás""#);
        assert_eq!(UserRow::parse(Some(moved.as_bytes())).unwrap(), r);
        let escaped = ROW.replace("Tomás", r#"To\u006d\u00e1s \"T\"\n"#);
        assert_eq!(UserRow::parse(Some(escaped.as_bytes())).unwrap().get(1), Some("Tomás \"T\"\n"));
        let empty = ROW.replace(r#""address":"a""#, r#""address":"""#);
        let r = UserRow::parse(Some(empty.as_bytes())).unwrap();
        assert_eq!((r.get(3), r.get(4), r.get(5)), (Some("male"), Some(""), Some("69002")), "empty is not null");
    }

    #[test]
    fn an_id_has_one_spelling() {
        let lower = "0b6d2f7e-5c1a-4b8e-9f3d-2a7c6e1d9b40";
        for spelling in [lower, "0B6D2F7E-5C1A-4B8E-9F3D-2A7C6E1D9B40", "0b6d2f7e5c1a4b8e9f3d2a7c6e1d9b40"] {
            assert_eq!(canonical_id(spelling).as_deref(), Some(lower), "{spelling}");
            let row = UserRow::parse(Some(ROW.replace(lower, spelling).as_bytes())).unwrap();
            assert_eq!(row.id(), lower, "{spelling}");
        }
        assert!(matches!(canonical_id(lower), Some(Cow::Borrowed(_))), "no copy when already canonical");
        assert_eq!(canonical_id("not-a-uuid"), None);
    }

    #[test]
    fn a_stamp_like_the_one_before_is_shared() {
        let mut stamps = Stamps::default();
        let a = stamps.of(Some(b"2026-12-07T05:00:00.001Z")).unwrap();
        let again = stamps.of(Some(b"2026-12-07T05:00:00.001Z")).unwrap();
        let b = stamps.of(Some(b"2026-12-07T05:00:00.002Z")).unwrap();
        assert!(Arc::ptr_eq(&a, &again), "the same stamp twice is one text");
        assert_eq!((&*a, &*b), ("2026-12-07T05:00:00.001Z", "2026-12-07T05:00:00.002Z"));
        assert_eq!(stamps.of(None), None);
        assert_eq!(stamps.of(Some(b"\xff")), None, "a stamp that is not text is none");
        let row = UserRow::parse(Some(ROW.as_bytes())).unwrap().stamped(Some(b"2026-12-07T05:00:00.002Z"), &mut stamps);
        assert_eq!(row.ingested_at(), Some("2026-12-07T05:00:00.002Z"));
    }

    #[test]
    fn last_row_of_an_id_wins() {
        let a = UserRow::parse(Some(ROW.as_bytes())).unwrap();
        let mut b = a.clone();
        b.set("email", Some("newer"));
        let out = last_per_id(vec![a, b.clone()], UserRow::uuid);
        assert_eq!(out, vec![b]);
        // Each id's last item, in the order the last ones came; distinct ids as they were.
        let id = |t: &(u128, i32)| uuid::Uuid::from_u128(t.0);
        let items = vec![(7, 1), (9, 2), (7, 3), (8, 4), (9, 5)];
        assert_eq!(last_per_id(items, id), vec![(7, 3), (8, 4), (9, 5)]);
        assert_eq!(last_per_id(vec![(7, 1), (8, 2)], id), vec![(7, 1), (8, 2)]);
    }

    #[test]
    fn the_id_comes_first_and_names_are_unique() {
        assert_eq!(COLUMNS[0], column("id", Kind::Id));
        assert!(COLUMNS[1..].iter().all(|c| c.kind != Kind::Id));
        let unique: std::collections::HashSet<&str> = names().collect();
        assert_eq!(unique.len(), WIDTH);
    }
}
