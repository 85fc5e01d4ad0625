//! The Confluent wire format: a zero byte, the schema's id as 4 bytes big
//! endian, then the Avro binary. The first byte tells it from JSON, which
//! never starts with a zero byte.

/// The first byte of a framed record.
pub const MAGIC: u8 = 0;
/// Bytes before the Avro body.
pub const HEADER_LEN: usize = 5;

/// The header that names schema `id`.
pub fn header(id: u32) -> [u8; HEADER_LEN] {
    let [a, b, c, d] = id.to_be_bytes();
    [MAGIC, a, b, c, d]
}

/// Whether `bytes` are framed (else JSON, or nothing rtds reads).
pub fn is_framed(bytes: &[u8]) -> bool {
    bytes.first() == Some(&MAGIC)
}

/// The schema id and the Avro body of a framed record; `None` when `bytes`
/// are not framed or too short to be.
pub fn split(bytes: &[u8]) -> Option<(u32, &[u8])> {
    match bytes {
        [MAGIC, a, b, c, d, body @ ..] => Some((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_splits_back_into_its_id_and_body() {
        let mut framed = header(0x0102_0304).to_vec();
        framed.extend_from_slice(b"avro");
        assert_eq!(framed[..5], [0, 1, 2, 3, 4]);
        assert!(is_framed(&framed));
        assert_eq!(split(&framed), Some((0x0102_0304, &b"avro"[..])));
    }

    #[test]
    fn json_and_short_records_are_not_framed() {
        assert!(!is_framed(br#"{"a":1}"#));
        assert_eq!(split(br#"{"a":1}"#), None);
        assert_eq!(split(&[0, 0, 0]), None);
        assert!(!is_framed(b""));
    }
}
