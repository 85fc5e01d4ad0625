//! A clean row of `users_created`, as the load stage reads it. Unknown fields
//! are an error (schema drift must not be silently dropped, as the classic
//! stack dropped `dob`).

use serde::Deserialize;

/// Column names, in the order of every sink's schema.
pub const COLUMNS: [&str; 12] = [
    "id",
    "first_name",
    "last_name",
    "gender",
    "address",
    "post_code",
    "email",
    "username",
    "dob",
    "registered_date",
    "phone",
    "picture",
];

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRow {
    pub id: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub gender: Option<String>,
    pub address: Option<String>,
    pub post_code: Option<String>,
    pub email: Option<String>,
    pub username: Option<String>,
    pub dob: Option<String>,
    pub registered_date: Option<String>,
    pub phone: Option<String>,
    pub picture: Option<String>,
}

impl UserRow {
    /// Parse one `users_created` payload; the error says why, for the DLQ.
    pub fn parse(payload: Option<&[u8]>) -> Result<Self, String> {
        let bytes = payload.ok_or("null payload (record has no value)")?;
        let row: UserRow = serde_json::from_slice(bytes).map_err(|e| format!("not a users_created row: {e}"))?;
        uuid::Uuid::try_parse(&row.id).map_err(|_| format!("id is not a UUID: {:?}", row.id))?;
        Ok(row)
    }

    /// The id as a UUID (checked by `parse`).
    pub fn uuid(&self) -> uuid::Uuid {
        uuid::Uuid::try_parse(&self.id).unwrap_or_default()
    }

    /// Every column as text, in `COLUMNS` order.
    pub fn texts(&self) -> [Option<&str>; 12] {
        [
            Some(self.id.as_str()),
            self.first_name.as_deref(),
            self.last_name.as_deref(),
            self.gender.as_deref(),
            self.address.as_deref(),
            self.post_code.as_deref(),
            self.email.as_deref(),
            self.username.as_deref(),
            self.dob.as_deref(),
            self.registered_date.as_deref(),
            self.phone.as_deref(),
            self.picture.as_deref(),
        ]
    }
}

/// Keep the last row of each id (a batch may carry a replayed row twice; the
/// later one wins, as it would have in the store).
pub fn last_per_id<T>(items: Vec<T>, id: impl Fn(&T) -> &str) -> Vec<T> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<T> = items.into_iter().rev().filter(|t| seen.insert(id(t).to_owned())).collect();
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
        assert_eq!(r.first_name.as_deref(), Some("Tomás"));
        assert_eq!(r.last_name, None);
        assert_eq!(r.texts()[8], Some("1990-02-28T23:59:59.999Z"));
        let drift = ROW.replace(r#""phone":"p""#, r#""phone":"p","cell":"c""#);
        assert!(UserRow::parse(Some(drift.as_bytes())).unwrap_err().contains("unknown field `cell`"));
        let bad_id = ROW.replace("0b6d2f7e-5c1a-4b8e-9f3d-2a7c6e1d9b40", "nope");
        assert!(UserRow::parse(Some(bad_id.as_bytes())).unwrap_err().contains("not a UUID"));
        assert!(UserRow::parse(None).is_err());
        assert!(UserRow::parse(Some(b"{")).is_err());
    }

    #[test]
    fn last_row_of_an_id_wins() {
        let a = UserRow::parse(Some(ROW.as_bytes())).unwrap();
        let mut b = a.clone();
        b.email = Some("newer".into());
        let out = last_per_id(vec![a, b.clone()], |r| &r.id);
        assert_eq!(out, vec![b]);
    }
}
