//! Seeded generator of randomuser.me-shaped records, for `--source generate`
//! (these machines, and many CI runners, have no internet).
//!
//! Record `i` depends only on `(seed, i)`, so the same seed gives the same users
//! however they are batched. It writes JSON bytes straight into the caller's
//! buffer from static tables: no allocation per record, well over a million
//! records a second on one core (benches/generator.rs).

/// One nationality's names and places. Every string here is JSON-safe as it
/// stands (no `"` or `\`), so it is copied without escaping.
struct Nat {
    code: &'static str,
    country: &'static str,
    male: &'static [&'static str],
    female: &'static [&'static str],
    last: &'static [&'static str],
    /// (city, state)
    places: &'static [(&'static str, &'static str)],
    streets: &'static [&'static str],
    postcode: Postcode,
    phone: &'static str,
    id_name: &'static str,
    tz: (&'static str, &'static str),
}

/// How a nationality's postcodes look; `#` is a digit, `A` a capital letter.
enum Postcode {
    /// A JSON number with this many digits (no leading zero).
    Number(u32),
    /// A JSON string from this pattern.
    Text(&'static str),
}

const NATS: &[Nat] = &[
    Nat {
        code: "US",
        country: "United States",
        male: &["James", "Michael", "Robert", "David", "William", "Jesse", "Brandon"],
        female: &["Jennie", "Mary", "Patricia", "Linda", "Barbara", "Addison", "Zoe"],
        last: &["Nichols", "Smith", "Johnson", "Williams", "Brown", "O'Connor", "Garcia"],
        places: &[("Billings", "Michigan"), ("Austin", "Texas"), ("Fresno", "California"), ("Albany", "New York")],
        streets: &["Valwood Pkwy", "Main St", "Oak Lawn Ave", "Pecan Acres Ln", "Hickory Creek Dr"],
        postcode: Postcode::Number(5),
        phone: "(###) ###-####",
        id_name: "SSN",
        tz: ("-5:00", "Eastern Time (US & Canada), Bogota, Lima"),
    },
    Nat {
        code: "GB",
        country: "United Kingdom",
        male: &["Oliver", "Harry", "George", "Jack", "Charlie"],
        female: &["Olivia", "Amelia", "Isla", "Ava", "Siobhan"],
        last: &["Taylor", "Davies", "Evans", "Thomas", "O'Neill"],
        places: &[("Leeds", "West Yorkshire"), ("Bristol", "Avon"), ("Durham", "County Durham")],
        streets: &["Church Road", "Station Road", "The Crescent", "Mill Lane"],
        postcode: Postcode::Text("AA# #AA"),
        phone: "0####-######",
        id_name: "NINO",
        tz: ("0:00", "Western Europe Time, London, Lisbon, Casablanca"),
    },
    Nat {
        code: "FR",
        country: "France",
        male: &["Tomás", "Théo", "Hugo", "Lucas", "Jérôme", "Noël"],
        female: &["Léa", "Chloé", "Manon", "Inès", "Océane"],
        last: &["Öberg", "Martin", "Bernard", "Lefèvre", "Girard", "D'Arcy"],
        places: &[("Lyon", "Rhône"), ("Nantes", "Loire-Atlantique"), ("Besançon", "Doubs")],
        streets: &["Rue de l'Église", "Avenue Jean-Jaurès", "Rue Pasteur", "Place du Marché"],
        postcode: Postcode::Text("0####"),
        phone: "0#-##-##-##-##",
        id_name: "INSEE",
        tz: ("+1:00", "Brussels, Copenhagen, Madrid, Paris"),
    },
    Nat {
        code: "DE",
        country: "Germany",
        male: &["Jürgen", "Lukas", "Maximilian", "Günther", "Felix"],
        female: &["Jana", "Lena", "Sophie", "Jördis", "Mia"],
        last: &["Müller", "Schäfer", "Weiß", "Schmidt", "Groß"],
        places: &[("München", "Bayern"), ("Köln", "Nordrhein-Westfalen"), ("Dresden", "Sachsen")],
        streets: &["Schulstraße", "Hauptstraße", "Gartenweg", "Bahnhofstraße"],
        postcode: Postcode::Number(5),
        phone: "0###-#######",
        id_name: "SVNR",
        tz: ("+1:00", "Brussels, Copenhagen, Madrid, Paris"),
    },
    Nat {
        code: "ES",
        country: "Spain",
        male: &["Alejandro", "José", "Álvaro", "Íñigo", "Sergio"],
        female: &["María", "Lucía", "Begoña", "Nuria", "Pilar"],
        last: &["García", "Fernández", "Núñez", "Ibáñez", "Rodríguez"],
        places: &[("Sevilla", "Andalucía"), ("Bilbao", "País Vasco"), ("Zaragoza", "Aragón")],
        streets: &["Calle Mayor", "Calle de Alcalá", "Paseo de Extremadura"],
        postcode: Postcode::Number(5),
        phone: "9##-###-###",
        id_name: "DNI",
        tz: ("+1:00", "Brussels, Copenhagen, Madrid, Paris"),
    },
    Nat {
        code: "BR",
        country: "Brazil",
        male: &["João", "Thiago", "Caetano", "Luís", "Otávio"],
        female: &["Ana", "Luíza", "Conceição", "Iara", "Lívia"],
        last: &["Silva", "Gonçalves", "Araújo", "Peixoto", "Conceição"],
        places: &[("São Paulo", "São Paulo"), ("Belém", "Pará"), ("Maceió", "Alagoas")],
        streets: &["Rua São Jorge", "Rua Três", "Avenida Brasil"],
        postcode: Postcode::Number(8),
        phone: "(##) ####-####",
        id_name: "CPF",
        tz: ("-3:00", "Brazil, Buenos Aires, Georgetown"),
    },
    Nat {
        code: "IE",
        country: "Ireland",
        male: &["Seán", "Oisín", "Cian", "Darragh"],
        female: &["Aoife", "Saoirse", "Niamh", "Róisín"],
        last: &["O'Brien", "Murphy", "Ó Súilleabháin", "Byrne", "McCarthy"],
        places: &[("Galway", "Connacht"), ("Cork", "Munster"), ("Kilkenny", "Leinster")],
        streets: &["Main Street", "Church Street", "Strand Road"],
        postcode: Postcode::Text("A## A#A#"),
        phone: "0##-###-####",
        id_name: "PPS",
        tz: ("0:00", "Western Europe Time, London, Lisbon, Casablanca"),
    },
    Nat {
        code: "NL",
        country: "Netherlands",
        male: &["Daan", "Sem", "Jurriën", "Bram"],
        female: &["Emma", "Fenna", "Anouk", "Eliën"],
        last: &["de Jong", "van den Berg", "Bakker", "van 't Hof"],
        places: &[("Utrecht", "Utrecht"), ("Groningen", "Groningen"), ("Tilburg", "Noord-Brabant")],
        streets: &["Kerkstraat", "Dorpsstraat", "Molenweg"],
        postcode: Postcode::Text("#### AA"),
        phone: "(0###) ######",
        id_name: "BSN",
        tz: ("+1:00", "Brussels, Copenhagen, Madrid, Paris"),
    },
    Nat {
        code: "NO",
        country: "Norway",
        male: &["Søren", "Håkon", "Bjørn", "Ørjan"],
        female: &["Ingrid", "Åse", "Sølvi", "Kari"],
        last: &["Hansen", "Løkken", "Bråten", "Ødegård"],
        places: &[("Tromsø", "Troms"), ("Bergen", "Vestland"), ("Ålesund", "Møre og Romsdal")],
        streets: &["Storgata", "Kirkeveien", "Fjellveien"],
        postcode: Postcode::Text("####"),
        phone: "########",
        id_name: "FN",
        tz: ("+1:00", "Brussels, Copenhagen, Madrid, Paris"),
    },
    Nat {
        code: "TR",
        country: "Turkey",
        male: &["Çağan", "Mehmet", "Oğuz", "İsmail"],
        female: &["Ayşe", "Gülşen", "Şebnem", "Özge"],
        last: &["Çelik", "Yılmaz", "Öztürk", "Doğan"],
        places: &[("İstanbul", "İstanbul"), ("Eskişehir", "Eskişehir"), ("Muğla", "Muğla")],
        streets: &["Atatürk Cd", "Bağdat Cd", "Şehitler Cd"],
        postcode: Postcode::Number(5),
        phone: "(###)-###-####",
        id_name: "",
        tz: ("+3:00", "Baghdad, Riyadh, Moscow, St. Petersburg"),
    },
    Nat {
        code: "PL",
        country: "Poland",
        male: &["Łukasz", "Wojciech", "Paweł", "Zbigniew"],
        female: &["Zofia", "Małgorzata", "Jadwiga", "Żaneta"],
        last: &["Nowak", "Wiśniewski", "Wójcik", "Kowalczyk"],
        places: &[("Łódź", "łódzkie"), ("Kraków", "małopolskie"), ("Gdańsk", "pomorskie")],
        streets: &["ul. Długa", "ul. Świętojańska", "ul. Żeromskiego"],
        postcode: Postcode::Text("##-###"),
        phone: "## ### ## ##",
        id_name: "PESEL",
        tz: ("+1:00", "Brussels, Copenhagen, Madrid, Paris"),
    },
    Nat {
        code: "IN",
        country: "India",
        male: &["Aarav", "Vihaan", "Arjun", "Rohan"],
        female: &["Ananya", "Diya", "Ishita", "Saanvi"],
        last: &["Sharma", "Patel", "Iyer", "Reddy"],
        places: &[("Pune", "Maharashtra"), ("Kochi", "Kerala"), ("Jaipur", "Rajasthan")],
        streets: &["MG Road", "Station Road", "Nehru Nagar"],
        postcode: Postcode::Number(6),
        phone: "##########",
        id_name: "UIDAI",
        tz: ("+5:30", "Bombay, Calcutta, Madras, New Delhi"),
    },
];

const TITLES_MALE: &[&str] = &["Mr", "Monsieur", "Mr"];
const TITLES_FEMALE: &[&str] = &["Ms", "Mrs", "Miss", "Madame"];
const ADJECTIVES: &[&str] =
    &["quiet", "yellow", "happy", "brave", "silver", "lazy", "crazy", "organic", "tiny", "blue"];
const ANIMALS: &[&str] = &["fox", "peacock", "bear", "koala", "swan", "lion", "frog", "tiger", "owl", "goose"];
const PASSWORDS: &[&str] =
    &["addison", "sunshine", "qwerty12", "dragon", "p@ss`w0rd", "letmein", "$(whoami)", "trustno1"];
const HEX: &[u8; 16] = b"0123456789abcdef";
const ALNUM: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Ages are computed against this instant (2026-01-01T00:00:00Z), so output never depends on the clock.
const REFERENCE_DAY: i64 = 20454;

/// Seeded generator of randomuser.me-shaped records.
pub struct Generator {
    seed: u64,
    /// An update stream: the records cycle over this many users, each round a
    /// new version of every one (`updating`).
    ids: Option<u64>,
}

/// splitmix64: a tiny, fast, well-mixed PRNG, seeded per record.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform-enough in `0..n` (n is small; the modulo bias is negligible).
    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        Self { seed, ids: None }
    }

    /// An update stream over `ids` users: record i is version i / ids of user
    /// i % ids, the same user but for its email, which carries the version
    /// (`+v<version>` before the @) from the second version on.
    pub fn updating(seed: u64, ids: u64) -> Self {
        Self { seed, ids: Some(ids.max(1)) }
    }

    /// Records 0 to `n` - 1, each in a buffer of its own (a warm-up's, a test's).
    pub fn records(&self, n: u64) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let mut out = Vec::new();
                self.write_record(i, &mut out);
                out
            })
            .collect()
    }

    /// Append record number `index` (one JSON object, no newline) to `out` and
    /// return its login.uuid as 36 ASCII bytes. Record i depends only on (seed, i),
    /// so the same seed gives the same records however they are batched.
    pub fn write_record(&self, index: u64, out: &mut Vec<u8>) -> [u8; 36] {
        let (user, version) = self.ids.map_or((index, 0), |n| (index % n, index / n));
        let mut r = Rng(self.seed.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ user.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.next();
        let nat = &NATS[r.below(NATS.len())];
        let female = r.next() & 1 == 0;
        let first = r.pick(if female { nat.female } else { nat.male });
        let last = r.pick(nat.last);
        let (city, state) = nat.places[r.below(nat.places.len())];
        let uuid = uuid_v4(r.next(), r.next());
        let portrait = r.below(100);

        out.extend_from_slice(if female { b"{\"gender\":\"female\"" } else { b"{\"gender\":\"male\"" });
        out.extend_from_slice(b",\"name\":{\"title\":\"");
        put(out, r.pick(if female { TITLES_FEMALE } else { TITLES_MALE }));
        out.extend_from_slice(b"\",\"first\":\"");
        put(out, first);
        out.extend_from_slice(b"\",\"last\":\"");
        put(out, last);
        out.extend_from_slice(b"\"},\"location\":{\"street\":{\"number\":");
        put_uint(out, 1 + r.below(9999) as u64);
        out.extend_from_slice(b",\"name\":\"");
        put(out, r.pick(nat.streets));
        out.extend_from_slice(b"\"},\"city\":\"");
        put(out, city);
        out.extend_from_slice(b"\",\"state\":\"");
        put(out, state);
        out.extend_from_slice(b"\",\"country\":\"");
        put(out, nat.country);
        out.extend_from_slice(b"\",\"postcode\":");
        match nat.postcode {
            Postcode::Number(digits) => {
                let lo = 10u64.pow(digits - 1);
                put_uint(out, lo + r.next() % (9 * lo));
            }
            Postcode::Text(pattern) => {
                out.push(b'"');
                put_pattern(out, pattern, &mut r);
                out.push(b'"');
            }
        }
        out.extend_from_slice(b",\"coordinates\":{\"latitude\":\"");
        put_fixed4(out, r.next() % 1_800_000, 900_000);
        out.extend_from_slice(b"\",\"longitude\":\"");
        put_fixed4(out, r.next() % 3_600_000, 1_800_000);
        out.extend_from_slice(b"\"},\"timezone\":{\"offset\":\"");
        put(out, nat.tz.0);
        out.extend_from_slice(b"\",\"description\":\"");
        put(out, nat.tz.1);
        out.extend_from_slice(b"\"}},\"email\":\"");
        put_ascii_lower(out, first);
        out.push(b'.');
        put_ascii_lower(out, last);
        if version > 0 {
            out.extend_from_slice(b"+v");
            put_uint(out, version);
        }
        out.extend_from_slice(b"@example.com\",\"login\":{\"uuid\":\"");
        out.extend_from_slice(&uuid);
        out.extend_from_slice(b"\",\"username\":\"");
        put(out, r.pick(ADJECTIVES));
        put(out, r.pick(ANIMALS));
        put_uint(out, 100 + r.below(900) as u64);
        out.extend_from_slice(b"\",\"password\":\"");
        put(out, r.pick(PASSWORDS));
        out.extend_from_slice(b"\",\"salt\":\"");
        for _ in 0..8 {
            out.push(ALNUM[r.below(ALNUM.len())]);
        }
        for (name, len) in [(&b"md5"[..], 32), (b"sha1", 40), (b"sha256", 64)] {
            out.extend_from_slice(b"\",\"");
            out.extend_from_slice(name);
            out.extend_from_slice(b"\":\"");
            put_hex(out, len, &mut r);
        }
        out.extend_from_slice(b"\"},\"dob\":");
        // Born 18 to 80 years before the reference day; registered 1 to 20 years before it.
        put_dated(out, REFERENCE_DAY - 365 * 18 - r.below(365 * 62) as i64, &mut r);
        out.extend_from_slice(b",\"registered\":");
        put_dated(out, REFERENCE_DAY - 365 - r.below(365 * 19) as i64, &mut r);
        out.extend_from_slice(b",\"phone\":\"");
        put_pattern(out, nat.phone, &mut r);
        out.extend_from_slice(b"\",\"cell\":\"");
        put_pattern(out, nat.phone, &mut r);
        out.extend_from_slice(b"\",\"id\":{\"name\":\"");
        put(out, nat.id_name);
        if nat.id_name.is_empty() {
            // The API sends a null value for nationalities without an id scheme.
            out.extend_from_slice(b"\",\"value\":null}");
        } else {
            out.extend_from_slice(b"\",\"value\":\"");
            put_pattern(out, "###-##-####", &mut r);
            out.extend_from_slice(b"\"}");
        }
        let who: &[u8] = if female { b"women/" } else { b"men/" };
        for (size, dir) in [(&b"large"[..], &b""[..]), (b"medium", b"med/"), (b"thumbnail", b"thumb/")] {
            out.extend_from_slice(if size == b"large" { b",\"picture\":{\"" } else { b"\",\"" });
            out.extend_from_slice(size);
            out.extend_from_slice(b"\":\"https://randomuser.me/api/portraits/");
            out.extend_from_slice(dir);
            out.extend_from_slice(who);
            put_uint(out, portrait as u64);
            out.extend_from_slice(b".jpg");
        }
        out.extend_from_slice(b"\"},\"nat\":\"");
        put(out, nat.code);
        out.extend_from_slice(b"\"}");
        uuid
    }
}

fn put(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
}

fn put_uint(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// `n` zero-padded to `width` digits.
fn put_padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut v = n;
    for slot in buf[20 - width..].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&buf[20 - width..]);
}

/// `(v - offset) / 10^4` with four decimals, e.g. "-69.8246".
fn put_fixed4(out: &mut Vec<u8>, v: u64, offset: u64) {
    let (neg, abs) = if v < offset { (true, offset - v) } else { (false, v - offset) };
    if neg {
        out.push(b'-');
    }
    put_uint(out, abs / 10_000);
    out.push(b'.');
    put_padded(out, abs % 10_000, 4);
}

fn put_hex(out: &mut Vec<u8>, len: usize, r: &mut Rng) {
    let mut bits = 0u64;
    for i in 0..len {
        if i % 16 == 0 {
            bits = r.next();
        }
        out.push(HEX[(bits & 15) as usize]);
        bits >>= 4;
    }
}

/// Expand `#` to a digit and `A` to a capital letter; other characters stay.
fn put_pattern(out: &mut Vec<u8>, pattern: &str, r: &mut Rng) {
    for b in pattern.bytes() {
        match b {
            b'#' => out.push(b'0' + r.below(10) as u8),
            b'A' => out.push(b'A' + r.below(26) as u8),
            other => out.push(other),
        }
    }
}

/// Email-safe form of a name: ASCII letters lowercased, accents folded, the rest dropped.
fn put_ascii_lower(out: &mut Vec<u8>, s: &str) {
    for c in s.chars() {
        let folded = match c {
            'a'..='z' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' | 'Á' | 'Å' => 'a',
            'é' | 'è' | 'ê' | 'ë' | 'É' => 'e',
            'í' | 'ì' | 'î' | 'ï' | 'ı' | 'İ' | 'Í' => 'i',
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' | 'ø' | 'Ö' | 'Ø' | 'Ó' => 'o',
            'ú' | 'ù' | 'û' | 'ü' | 'Ú' | 'Ü' => 'u',
            'ç' | 'Ç' => 'c',
            'ñ' => 'n',
            'ß' => 's',
            'ğ' => 'g',
            'ş' | 'Ş' | 'ś' => 's',
            'ł' | 'Ł' => 'l',
            'ż' | 'ź' | 'Ż' => 'z',
            _ => continue,
        };
        out.push(folded as u8);
    }
}

/// `{"date":"YYYY-MM-DDTHH:MM:SS.mmmZ","age":N}` for a day number (days since 1970-01-01).
fn put_dated(out: &mut Vec<u8>, day: i64, r: &mut Rng) {
    let (y, m, d) = civil_from_days(day);
    out.extend_from_slice(b"{\"date\":\"");
    put_padded(out, y as u64, 4);
    out.push(b'-');
    put_padded(out, m as u64, 2);
    out.push(b'-');
    put_padded(out, d as u64, 2);
    out.push(b'T');
    let ms_of_day = r.next() % 86_400_000;
    put_padded(out, ms_of_day / 3_600_000, 2);
    out.push(b':');
    put_padded(out, ms_of_day / 60_000 % 60, 2);
    out.push(b':');
    put_padded(out, ms_of_day / 1000 % 60, 2);
    out.push(b'.');
    put_padded(out, ms_of_day % 1000, 3);
    out.extend_from_slice(b"Z\",\"age\":");
    put_uint(out, ((REFERENCE_DAY - day) / 365) as u64);
    out.push(b'}');
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A version-4, variant-1 UUID in lowercase hex.
fn uuid_v4(hi: u64, lo: u64) -> [u8; 36] {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&hi.to_be_bytes());
    bytes[8..].copy_from_slice(&lo.to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut out = [0u8; 36];
    let mut j = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[j] = b'-';
            j += 1;
        }
        out[j] = HEX[(b >> 4) as usize];
        out[j + 1] = HEX[(b & 15) as usize];
        j += 2;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seed: u64, i: u64) -> (Vec<u8>, [u8; 36]) {
        let mut out = Vec::new();
        let uuid = Generator::new(seed).write_record(i, &mut out);
        (out, uuid)
    }

    #[test]
    fn an_update_stream_repeats_its_users_with_the_version_in_the_email() {
        let g = Generator::updating(9, 3);
        let records: Vec<serde_json::Value> = g.records(7).iter().map(|r| serde_json::from_slice(r).unwrap()).collect();
        let id = |i: usize| records[i]["login"]["uuid"].as_str().unwrap().to_owned();
        assert_eq!((id(0), id(1), id(2)), (id(3), id(4), id(5)), "round two: the same users");
        assert_eq!(id(6), id(0));
        assert_ne!(id(0), id(1));
        let email = |i: usize| records[i]["email"].as_str().unwrap().to_owned();
        assert!(!email(0).contains("+v") && email(3).contains("+v1@") && email(6).contains("+v2@"), "{}", email(6));
        assert_eq!(records[0]["name"], records[3]["name"], "the rest of the user unchanged");
        // Without an update stream, every record is a user of its own.
        let plain = Generator::new(9).records(4);
        assert_eq!(plain[0], Generator::updating(9, 4).records(1)[0]);
    }

    #[test]
    fn records_are_valid_json_with_every_field() {
        let mut numbers = 0;
        let mut strings = 0;
        let mut non_ascii = 0;
        let mut nats = std::collections::HashSet::new();
        for i in 0..10_000 {
            let (bytes, uuid) = record(42, i);
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("record {i} is not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
            let u = v["login"]["uuid"].as_str().unwrap();
            assert_eq!(u.as_bytes(), uuid);
            let parsed = ::uuid::Uuid::parse_str(u).unwrap();
            assert_eq!(parsed.get_version_num(), 4);
            for path in [
                "/gender",
                "/name/title",
                "/name/first",
                "/name/last",
                "/location/street/name",
                "/location/city",
                "/location/state",
                "/location/country",
                "/location/coordinates/latitude",
                "/location/coordinates/longitude",
                "/location/timezone/offset",
                "/location/timezone/description",
                "/email",
                "/login/username",
                "/login/password",
                "/login/salt",
                "/login/md5",
                "/login/sha1",
                "/login/sha256",
                "/dob/date",
                "/registered/date",
                "/phone",
                "/cell",
                "/id/name",
                "/picture/large",
                "/picture/medium",
                "/picture/thumbnail",
                "/nat",
            ] {
                assert!(v.pointer(path).is_some_and(|x| x.is_string()), "{path} missing in record {i}: {v}");
            }
            assert!(v["location"]["street"]["number"].is_u64());
            assert!(v["dob"]["age"].is_u64() && v["registered"]["age"].is_u64());
            assert_eq!(v["login"]["sha256"].as_str().unwrap().len(), 64);
            chrono::DateTime::parse_from_rfc3339(v["dob"]["date"].as_str().unwrap()).unwrap();
            match &v["location"]["postcode"] {
                serde_json::Value::Number(_) => numbers += 1,
                serde_json::Value::String(_) => strings += 1,
                other => panic!("postcode {other}"),
            }
            if !v["name"]["last"].as_str().unwrap().is_ascii() {
                non_ascii += 1;
            }
            nats.insert(v["nat"].as_str().unwrap().to_owned());
        }
        assert!(numbers > 1000 && strings > 1000, "{numbers} numeric, {strings} string postcodes");
        assert!(non_ascii > 500, "{non_ascii} non-ASCII last names");
        assert!(nats.len() >= 10, "{nats:?}");
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        assert_eq!(record(7, 123), record(7, 123));
        assert_ne!(record(7, 123).0, record(8, 123).0);
        assert_ne!(record(7, 123).0, record(7, 124).0);
    }

    #[test]
    fn dates_are_right() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(REFERENCE_DAY), (2026, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
