//! A strict JSON reader (RFC 8259) for the decode step: one pass over a record
//! validates all of it and notes where each value of a field the schema knows
//! lies, without building a tree or copying a byte. Values of other fields are
//! validated and skipped. The decoder (`decode.rs`) then copies the noted
//! values into Arrow builders, so a record that fails leaves nothing behind.
//!
//! Why not arrow-json's tape decoder: alone it accepts what is not JSON (`01`,
//! `1.`, trailing commas, raw newlines in strings), so it needed a second,
//! validating pass over every record (bench/README.md).

use std::ops::Range;

use arrow::datatypes::{DataType, Fields};

/// How deep objects and arrays may nest (serde_json's limit too).
const MAX_DEPTH: u32 = 128;

/// What the reader looks for: the schema as a tree of objects whose leaves are
/// slots. Leaves and objects are numbered depth first, so the slots and
/// objects under an object are ranges.
#[derive(Debug)]
pub struct Shape {
    nodes: Vec<Node>,
    /// Each leaf's kind, by slot.
    pub leaves: Vec<Leaf>,
    /// Each object's dotted path, by object number (the root, 0, is "").
    pub objects: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    /// Text; numbers and booleans are taken as the text they were written as.
    Text,
    /// A 64-bit integer, written as a number or as a string holding one.
    Int,
}

#[derive(Debug)]
enum Node {
    Object { object: usize, fields: Vec<(Name, usize)>, slots: Range<usize>, objects: Range<usize> },
    Leaf { slot: usize, path: String },
}

impl Shape {
    /// The shape of `fields` (Utf8, Int64 and Struct fields; others are not
    /// read, and stay null).
    pub fn of(fields: &Fields) -> Self {
        let mut shape = Shape { nodes: Vec::new(), leaves: Vec::new(), objects: Vec::new() };
        shape.object(fields, "");
        shape
    }

    fn object(&mut self, fields: &Fields, path: &str) -> usize {
        let node = self.nodes.len();
        let object = self.objects.len();
        self.objects.push(path.to_owned());
        let (first_slot, first_object) = (self.leaves.len(), object);
        self.nodes.push(Node::Object { object, fields: Vec::new(), slots: 0..0, objects: 0..0 });
        let mut children = Vec::new();
        for f in fields {
            let path = if path.is_empty() { f.name().clone() } else { format!("{path}.{}", f.name()) };
            let child = match f.data_type() {
                DataType::Struct(inner) => self.object(inner, &path),
                DataType::Utf8 => self.leaf(Leaf::Text, path),
                DataType::Int64 => self.leaf(Leaf::Int, path),
                _ => continue,
            };
            children.push((Name::of(f.name()), child));
        }
        let (slots, objects) = (first_slot..self.leaves.len(), first_object..self.objects.len());
        self.nodes[node] = Node::Object { object, fields: children, slots, objects };
        node
    }

    fn leaf(&mut self, kind: Leaf, path: String) -> usize {
        self.nodes.push(Node::Leaf { slot: self.leaves.len(), path });
        self.leaves.push(kind);
        self.nodes.len() - 1
    }

    /// The slot of the leaf at `path` (dotted).
    pub fn slot(&self, path: &str) -> Option<usize> {
        self.nodes.iter().find_map(|n| match n {
            Node::Leaf { slot, path: p } if p == path => Some(*slot),
            _ => None,
        })
    }

    /// Each leaf's dotted path, by slot.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        let mut paths = vec![""; self.leaves.len()];
        for n in &self.nodes {
            if let Node::Leaf { slot, path } = n {
                paths[*slot] = path;
            }
        }
        paths.into_iter()
    }

    /// A fresh record for this shape: every value null.
    pub fn record(&self) -> Slots {
        Slots { values: vec![Value::Null; self.leaves.len()], objects: vec![false; self.objects.len()] }
    }
}

/// A field's name as a record writes it: `quoted` is its text and the closing
/// quote, to match a key without scanning it, when the text needs no escape.
/// Up to 16 bytes of it (most names) are also kept as one word and a mask:
/// one compare instead of a call to `memcmp`.
#[derive(Debug)]
struct Name {
    text: Box<[u8]>,
    quoted: Option<Box<[u8]>>,
    word: u128,
    mask: u128,
}

impl Name {
    fn of(name: &str) -> Self {
        let text: Box<[u8]> = name.as_bytes().into();
        let quoted: Option<Box<[u8]>> = (plain_run(&text) == text.len()).then(|| [&text[..], b"\""].concat().into());
        let (mut word, mut mask) = (0, 0);
        if let Some(q) = quoted.as_deref().filter(|q| q.len() <= 16) {
            let mut bytes = [0u8; 16];
            bytes[..q.len()].copy_from_slice(q);
            word = u128::from_le_bytes(bytes);
            mask = u128::MAX >> (8 * (16 - q.len()));
        }
        Name { text, quoted, word, mask }
    }

    /// Whether `rest` starts with this name and its closing quote.
    fn starts(&self, rest: &[u8]) -> bool {
        match (&self.quoted, rest.first_chunk::<16>()) {
            (Some(_), Some(chunk)) if self.mask != 0 => u128::from_le_bytes(*chunk) & self.mask == self.word,
            (Some(q), _) => rest.starts_with(q),
            (None, _) => false,
        }
    }
}

/// Where a value lies in the record's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// Absent, or JSON null.
    Null,
    /// A string's contents, between its quotes; `escaped` if it holds a `\`.
    Str { start: u32, end: u32, escaped: bool },
    /// A number or a boolean, as written.
    Raw { start: u32, end: u32 },
}

/// One record's values by slot, and which objects it held (not null).
#[derive(Debug, Clone)]
pub struct Slots {
    pub values: Vec<Value>,
    pub objects: Vec<bool>,
}

/// The first `max` characters of `s`, for a message that quotes input.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Not JSON, or more than one value.
    Malformed(String),
    /// JSON, but not an object.
    NotAnObject,
    /// JSON, but a field the schema knows holds a value of another type.
    WrongType(String),
}

/// Read `bytes` (valid UTF-8) into `out`, which it resets first.
pub fn read(shape: &Shape, bytes: &[u8], out: &mut Slots) -> Result<(), Fault> {
    out.values.fill(Value::Null);
    out.objects.fill(false);
    let mut r = Reader { b: bytes, i: 0, depth: 0, wrong: None };
    r.ws();
    if r.peek() == Some(b'{') {
        out.objects[0] = true;
        r.object(shape, Some(0), out)?;
    } else {
        r.value()?;
        r.end()?;
        return Err(Fault::NotAnObject);
    }
    r.end()?;
    // A wrong type counts only once the whole record is known to be JSON.
    match r.wrong {
        Some(why) => Err(Fault::WrongType(why)),
        None => Ok(()),
    }
}

/// The text of a string value (its escapes decoded) into `buf`, cleared first.
/// The reader validated the escapes; anything else cannot happen, and would
/// come out as U+FFFD rather than a panic.
pub fn unescape(raw: &[u8], buf: &mut String) {
    buf.clear();
    let mut i = 0;
    while i < raw.len() {
        let run = raw[i..].iter().position(|&c| c == b'\\').unwrap_or(raw.len() - i);
        buf.push_str(std::str::from_utf8(&raw[i..i + run]).unwrap_or("\u{fffd}"));
        i += run;
        if i >= raw.len() {
            break;
        }
        let c = raw.get(i + 1).copied().unwrap_or(b'?');
        i += 2;
        match c {
            b'b' => buf.push('\u{8}'),
            b'f' => buf.push('\u{c}'),
            b'n' => buf.push('\n'),
            b'r' => buf.push('\r'),
            b't' => buf.push('\t'),
            b'u' => {
                let hi = hex4(raw.get(i..i + 4)).unwrap_or(0xfffd);
                i += 4;
                let code = if (0xd800..0xdc00).contains(&hi) {
                    let lo = hex4(raw.get(i + 2..i + 6)).unwrap_or(0);
                    i += 6;
                    0x10000 + ((hi - 0xd800) << 10) + (lo.wrapping_sub(0xdc00) & 0x3ff)
                } else {
                    hi
                };
                buf.push(char::from_u32(code).unwrap_or('\u{fffd}'));
            }
            other => buf.push(other as char),
        }
    }
}

fn hex4(digits: Option<&[u8]>) -> Option<u32> {
    let digits = digits?;
    let mut v = 0;
    for &d in digits {
        v = v * 16 + (d as char).to_digit(16)?;
    }
    Some(v)
}

/// An `Int` leaf's value, from a number (integral, in range) or a string holding one.
pub fn int(text: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(text).ok()?;
    s.parse::<i64>().ok().or_else(|| {
        let f = s.parse::<f64>().ok()?;
        (f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64).then_some(f as i64)
    })
}

/// Bytes a string may hold as they are; the others end a plain run: the
/// quote, the backslash and the control characters (which JSON forbids raw).
static PLAIN: [bool; 256] = {
    let mut t = [true; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = false;
        c += 1;
    }
    t[b'"' as usize] = false;
    t[b'\\' as usize] = false;
    t
};

/// How many bytes at the start of `b` a string holds as they are: up to the
/// first quote, backslash or control character, or all of `b`. Eight bytes at
/// a time (most of a record is text): a byte-by-byte loop was ~9 instructions
/// a byte, the whole decoder's largest cost (callgrind).
pub(crate) fn plain_run(b: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_in = |v: u64| v.wrapping_sub(ONES) & !v;
    for (k, chunk) in b.chunks_exact(8).enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        // The high bit of each byte that is a quote, a backslash or below 0x20.
        // Borrows can flag bytes after the first hit, never before it.
        let hits =
            (zero_in(w ^ (ONES * b'"' as u64)) | zero_in(w ^ (ONES * b'\\' as u64)) | w.wrapping_sub(ONES * 0x20) & !w)
                & HIGH;
        if hits != 0 {
            return k * 8 + (hits.trailing_zeros() / 8) as usize;
        }
    }
    let tail = b.len() - b.len() % 8;
    tail + b[tail..].iter().position(|&c| !PLAIN[c as usize]).unwrap_or(b.len() - tail)
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
    depth: u32,
    /// The first wrong type seen (the record is read on, in case it is not JSON).
    wrong: Option<String>,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    #[cold]
    #[inline(never)]
    fn fail<T>(&self, what: &str) -> Result<T, Fault> {
        Err(Fault::Malformed(match self.peek() {
            Some(c) if c.is_ascii_graphic() => format!("{what}, found `{}` at byte {}", c as char, self.i),
            Some(c) => format!("{what}, found byte 0x{c:02x} at byte {}", self.i),
            None => format!("{what}, found the end at byte {}", self.i),
        }))
    }

    /// Only whitespace may follow the value.
    fn end(&mut self) -> Result<(), Fault> {
        self.ws();
        match self.peek() {
            None => Ok(()),
            Some(_) => self.fail("trailing characters after the JSON value"),
        }
    }

    fn enter(&mut self) -> Result<(), Fault> {
        self.depth += 1;
        if self.depth > MAX_DEPTH { self.fail("nested too deep") } else { Ok(()) }
    }

    /// Any value, validated and skipped.
    fn value(&mut self) -> Result<(), Fault> {
        match self.peek() {
            Some(b'{') => self.object(&NO_SHAPE, None, &mut Slots { values: Vec::new(), objects: Vec::new() }),
            Some(b'[') => self.array(),
            Some(b'"') => self.string().map(|_| ()),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            _ => self.fail("expected a value"),
        }
    }

    fn array(&mut self) -> Result<(), Fault> {
        self.enter()?;
        self.i += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
        } else {
            loop {
                self.ws();
                self.value()?;
                if self.separator(b']')? {
                    break;
                }
            }
        }
        self.depth -= 1;
        Ok(())
    }

    /// After a member of an array or object: a `,` (false: another follows)
    /// or its `close` (true: it ends here).
    fn separator(&mut self, close: u8) -> Result<bool, Fault> {
        self.ws();
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                Ok(false)
            }
            Some(c) if c == close => {
                self.i += 1;
                Ok(true)
            }
            _ => self.no_separator(close),
        }
    }

    #[cold]
    fn no_separator(&self, close: u8) -> Result<bool, Fault> {
        self.fail(&format!("expected `,` or `{}`", close as char))
    }

    /// An object at `self.i`; with `node`, the fields the shape knows are noted in `out`.
    fn object(&mut self, shape: &Shape, node: Option<usize>, out: &mut Slots) -> Result<(), Fault> {
        self.enter()?;
        self.i += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            self.depth -= 1;
            return Ok(());
        }
        let fields = match node.map(|n| &shape.nodes[n]) {
            Some(Node::Object { fields, .. }) => fields.as_slice(),
            _ => &[],
        };
        // Records keep their fields in one order: the key is most likely the
        // field after the last match, which is compared in place, unscanned.
        let mut next = 0;
        let mut key = String::new();
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return self.fail("expected a field name");
            }
            let guessed = match fields.get(next) {
                Some((name, child)) if name.starts(&self.b[self.i + 1..]) => {
                    self.i += 2 + name.text.len();
                    Some((next, *child))
                }
                _ => None,
            };
            let known = match guessed {
                Some(known) => Some(known),
                None => {
                    let (start, end, escaped) = self.string()?;
                    let name = if escaped {
                        unescape(&self.b[start..end], &mut key);
                        key.as_bytes()
                    } else {
                        &self.b[start..end]
                    };
                    fields.iter().position(|(n, _)| *n.text == *name).map(|k| (k, fields[k].1))
                }
            };
            self.ws();
            if self.peek() != Some(b':') {
                return self.fail("expected `:`");
            }
            self.i += 1;
            self.ws();
            match known {
                Some((k, child)) => {
                    next = k + 1;
                    self.field(shape, child, out)?;
                }
                None => self.value()?,
            }
            if self.separator(b'}')? {
                break;
            }
        }
        self.depth -= 1;
        Ok(())
    }

    /// The value of a field the shape knows (node `child`). The last of
    /// repeated fields wins, as in arrow-json.
    fn field(&mut self, shape: &Shape, child: usize, out: &mut Slots) -> Result<(), Fault> {
        let c = self.peek();
        match &shape.nodes[child] {
            Node::Object { object, slots, objects, .. } => {
                out.values[slots.clone()].fill(Value::Null);
                out.objects[objects.clone()].fill(false);
                match c {
                    Some(b'{') => {
                        out.objects[*object] = true;
                        self.object(shape, Some(child), out)
                    }
                    Some(b'n') => self.literal(b"null"),
                    _ => self.wrong_type(&shape.objects[*object], "an object"),
                }
            }
            Node::Leaf { slot, path } => {
                let start = self.i as u32;
                let value = match c {
                    Some(b'"') => {
                        let (s, e, escaped) = self.string()?;
                        Value::Str { start: s as u32, end: e as u32, escaped }
                    }
                    Some(b'-' | b'0'..=b'9') => {
                        self.number()?;
                        Value::Raw { start, end: self.i as u32 }
                    }
                    Some(b't' | b'f') if shape.leaves[*slot] == Leaf::Text => {
                        self.literal(if c == Some(b't') { b"true" } else { b"false" })?;
                        Value::Raw { start, end: self.i as u32 }
                    }
                    Some(b'n') => {
                        self.literal(b"null")?;
                        Value::Null
                    }
                    _ => {
                        let wanted = if shape.leaves[*slot] == Leaf::Int { "an integer" } else { "text" };
                        return self.wrong_type(path, wanted);
                    }
                };
                if shape.leaves[*slot] == Leaf::Int
                    && let Value::Str { start, end, .. } | Value::Raw { start, end } = value
                    && int(&self.b[start as usize..end as usize]).is_none()
                {
                    self.note_wrong(format!("`{path}` should be an integer, found {}", self.excerpt(start, end)));
                }
                out.values[*slot] = value;
                Ok(())
            }
        }
    }

    /// A value of the wrong type for `path`: noted, then validated and skipped.
    fn wrong_type(&mut self, path: &str, wanted: &str) -> Result<(), Fault> {
        let found = match self.peek() {
            Some(b'{') => "an object",
            Some(b'[') => "an array",
            Some(b'"') => "a string",
            Some(b't' | b'f') => "a boolean",
            Some(b'n') => "null",
            Some(b'-' | b'0'..=b'9') => "a number",
            _ => return self.fail("expected a value"),
        };
        self.note_wrong(format!("`{path}` should be {wanted}, found {found}"));
        self.value()
    }

    fn note_wrong(&mut self, why: String) {
        self.wrong.get_or_insert(why);
    }

    fn excerpt(&self, start: u32, end: u32) -> String {
        let text = String::from_utf8_lossy(&self.b[start as usize..end as usize]);
        format!("{:?}", truncate(&text, 40))
    }

    /// A string at `self.i`: the range of its contents and whether it holds escapes.
    fn string(&mut self) -> Result<(usize, usize, bool), Fault> {
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        loop {
            self.i += plain_run(&self.b[self.i..]);
            let Some(c) = self.peek() else { return self.fail("unterminated string") };
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok((start, self.i - 1, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                _ => return self.fail("control character in a string (it must be escaped)"),
            }
        }
    }

    /// An escape at `self.i` (the backslash).
    fn escape(&mut self) -> Result<(), Fault> {
        self.i += 1;
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.i += 1;
                Ok(())
            }
            Some(b'u') => {
                let code = self.hex_escape()?;
                if (0xdc00..0xe000).contains(&code) {
                    return self.fail("lone low surrogate in a \\u escape");
                }
                if (0xd800..0xdc00).contains(&code) {
                    if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                        return self.fail("high surrogate not followed by a low one in a \\u escape");
                    }
                    self.i += 1;
                    if !(0xdc00..0xe000).contains(&self.hex_escape()?) {
                        return self.fail("high surrogate not followed by a low one in a \\u escape");
                    }
                }
                Ok(())
            }
            _ => self.fail("invalid escape"),
        }
    }

    /// `uXXXX` at `self.i`: its code unit.
    fn hex_escape(&mut self) -> Result<u32, Fault> {
        match hex4(self.b.get(self.i + 1..self.i + 5)) {
            Some(code) => {
                self.i += 5;
                Ok(code)
            }
            None => self.fail("invalid \\u escape"),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    /// A number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Result<(), Fault> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return self.fail("invalid number"),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return self.fail("invalid number: no digit after `.`");
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return self.fail("invalid number: no digit in the exponent");
            }
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Fault> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(())
        } else {
            self.fail("invalid literal")
        }
    }
}

/// The shape of "no field known": objects read through it are only validated.
static NO_SHAPE: Shape = Shape { nodes: Vec::new(), leaves: Vec::new(), objects: Vec::new() };

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;

    fn shape() -> Shape {
        let text = |n: &str| Field::new(n, DataType::Utf8, true);
        let inner = Fields::from(vec![text("a"), Field::new("n", DataType::Int64, true)]);
        Shape::of(&Fields::from(vec![text("s"), Field::new("o", DataType::Struct(inner), true), text("t")]))
    }

    fn read_str(json: &str) -> Result<Vec<String>, Fault> {
        let shape = shape();
        let mut rec = shape.record();
        read(&shape, json.as_bytes(), &mut rec)?;
        let mut buf = String::new();
        Ok(rec
            .values
            .iter()
            .map(|v| match *v {
                Value::Null => "null".to_owned(),
                Value::Raw { start, end } => format!("raw:{}", &json[start as usize..end as usize]),
                Value::Str { start, end, .. } => {
                    unescape(&json.as_bytes()[start as usize..end as usize], &mut buf);
                    format!("str:{buf}")
                }
            })
            .collect())
    }

    #[test]
    fn values_are_noted_where_they_lie_and_unknown_fields_skipped() {
        let got = read_str(r#" {"x":[1,{"y":null}],"s":"h\u00e9\n\"","o":{"n":"42","a":1.50},"t":true} "#).unwrap();
        assert_eq!(got, ["str:hé\n\"", "raw:1.50", "str:42", "raw:true"]);
        assert_eq!(read_str(r#"{"s":"\ud83d\ude00","o":null}"#).unwrap(), ["str:😀", "null", "null", "null"]);
    }

    #[test]
    fn keys_match_whole_escaped_or_not_and_near_misses_are_unknown() {
        // In order (each key compared in place), escaped, longer, shorter, and out of order.
        assert_eq!(read_str(r#"{"s":"1","o":{"a":"2","n":3},"t":"4"}"#).unwrap(), ["str:1", "str:2", "raw:3", "str:4"]);
        assert_eq!(read_str(r#"{"\u0073":"1","o":{"\u0061":"2"}}"#).unwrap(), ["str:1", "str:2", "null", "null"]);
        assert_eq!(read_str(r#"{"ss":"1","o":{"ab":"2","":3},"t ":"4"}"#).unwrap(), ["null", "null", "null", "null"]);
        assert_eq!(read_str(r#"{"t":"4","o":{"n":3,"a":"2"},"s":"1"}"#).unwrap(), ["str:1", "str:2", "raw:3", "str:4"]);
        assert!(matches!(read_str(r#"{"s":"1","o":{"a":"2"},"t"}"#), Err(Fault::Malformed(_))));
        assert!(matches!(read_str(r#"{"s":"1","o":{"a"#), Err(Fault::Malformed(_))));
    }

    #[test]
    fn long_names_match_whole_in_place_or_scanned() {
        let names = ["abcdefghijklmn", "abcdefghijklmno", "abcdefghijklmnop"];
        let shape = Shape::of(&names.iter().map(|n| Field::new(*n, DataType::Utf8, true)).collect());
        let read_values = |json: &str| {
            let mut rec = shape.record();
            read(&shape, json.as_bytes(), &mut rec).unwrap();
            rec.values.iter().map(|v| matches!(v, Value::Str { .. })).collect::<Vec<_>>()
        };
        let all = r#"{"abcdefghijklmn":"1","abcdefghijklmno":"2","abcdefghijklmnop":"3"}"#;
        assert_eq!(read_values(all), [true, true, true]);
        let near = r#"{"abcdefghijklmnX":"1","abcdefghijklmnoX":"2","abcdefghijklmnopX":"3","abcdefghijklm":"4"}"#;
        assert_eq!(read_values(near), [false, false, false]);
    }

    #[test]
    fn the_last_of_repeated_fields_wins() {
        let got = read_str(r#"{"o":{"a":"first","n":1},"s":"x","o":{"n":2},"s":"y"}"#).unwrap();
        assert_eq!(got, ["str:y", "null", "raw:2", "null"]);
    }

    #[test]
    fn what_is_not_json_is_malformed() {
        for bad in [
            r#"{"s":01}"#,
            r#"{"s":1.}"#,
            r#"{"s":1e}"#,
            r#"{"s":-}"#,
            r#"{"s":1,}"#,
            r#"{"x":[1,2,]}"#,
            "{\"s\":\"a\nb\"}",
            r#"{"s":1}{"t":2}"#,
            r#"{"s":1} x"#,
            r#"{"s":"\x"}"#,
            r#"{"s":"\u12"}"#,
            r#"{"s":"\udc00"}"#,
            r#"{"s":"\ud800x"}"#,
            r#"{"s":NaN}"#,
            r#"{"s":tru}"#,
            r#"{"s" 1}"#,
            r#"{s:1}"#,
            r#"{"s":"open"#,
            r#"{"s":1"#,
            "[1,2",
            "",
        ] {
            assert!(matches!(read_str(bad), Err(Fault::Malformed(_))), "{bad:?}: {:?}", read_str(bad));
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(read_str(&deep), Err(Fault::Malformed(m)) if m.contains("deep")));
    }

    #[test]
    fn json_that_is_not_an_object_or_has_a_wrong_type_says_so() {
        for not_object in ["[1,2,3]", "null", r#""s""#, " 42 "] {
            assert_eq!(read_str(not_object), Err(Fault::NotAnObject), "{not_object}");
        }
        for (json, says) in [
            (r#"{"o":"just a string"}"#, "`o` should be an object, found a string"),
            (r#"{"s":{"a":1}}"#, "`s` should be text, found an object"),
            (r#"{"o":{"n":"x"}}"#, "`o.n` should be an integer, found \"x\""),
            (r#"{"o":{"n":1.5}}"#, "`o.n` should be an integer, found \"1.5\""),
            (r#"{"o":{"n":true}}"#, "`o.n` should be an integer, found a boolean"),
        ] {
            assert_eq!(read_str(json), Err(Fault::WrongType(says.into())), "{json}");
        }
        // Not JSON comes first: a wrong type in a malformed record is a malformed record.
        assert!(matches!(read_str(r#"{"o":"x","s":01}"#), Err(Fault::Malformed(_))));
    }

    #[test]
    fn plain_runs_end_where_a_byte_by_byte_scan_ends() {
        use rand::{Rng, SeedableRng};
        let slow = |b: &[u8]| b.iter().position(|&c| !PLAIN[c as usize]).unwrap_or(b.len());
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // Every byte value at every position of a 20-byte plain run, and random mixes.
        for at in 0..20 {
            for c in 0..=255u8 {
                let mut b = vec![b'a'; 20];
                b[at] = c;
                assert_eq!(plain_run(&b), slow(&b), "{b:?}");
            }
        }
        let alphabet = [b'a', b'"', b'\\', 0x1f, 0x20, 0x7f, 0x80, 0xc3, 0xff, b'0'];
        for _ in 0..20_000 {
            let len = rng.random_range(0..40);
            let b: Vec<u8> = (0..len).map(|_| alphabet[rng.random_range(0..alphabet.len())]).collect();
            assert_eq!(plain_run(&b), slow(&b), "{b:?}");
        }
    }

    #[test]
    fn integers_come_from_numbers_or_strings() {
        assert_eq!(int(b"36"), Some(36));
        assert_eq!(int(b"-7"), Some(-7));
        assert_eq!(int(b"36.0"), Some(36));
        assert_eq!(int(b"1e2"), Some(100));
        assert_eq!(int(b"36.5"), None);
        assert_eq!(int(b"99999999999999999999"), None);
    }
}
