//! Giving back the code pages start-up used once. A stage touches code all
//! over the binary's text before its first record (DataFusion registers its
//! functions and plans, the drivers connect, the transform's warm-up batch),
//! and the kernel maps file pages around each fault, so much of a stage's
//! peak RSS was its own binary, mapped once and kept. Once a stage is set up,
//! `release_startup_code` unmaps the read-only file pages; the batch loop
//! faults back in only the code it runs, from the page cache (minor faults,
//! no disk reads). Measured in bench/README.md, "Where the transform's peak RSS is".

/// Unmap every read-only, file-backed mapping whose pages are all still the
/// file's (the binary's and the shared libraries' text and constants). Their
/// pages stay in the page cache; the next use maps them again with the same
/// bytes. Returns the KB that were resident in them. Best effort: a failure is
/// logged and changes nothing.
pub fn release_startup_code() -> u64 {
    let smaps = match std::fs::read_to_string("/proc/self/smaps") {
        Ok(text) => text,
        Err(e) => {
            tracing::debug!("reading /proc/self/smaps: {e}: code pages kept");
            return 0;
        }
    };
    let mut released = 0;
    for mapping in Mapping::droppable(&smaps) {
        // SAFETY: the range is a whole mapping of this process, private,
        // read-only (not writable, so nothing in the process can have written
        // it since smaps was read), backed by a file and with no anonymous
        // (copy-on-write) pages: its contents are exactly the file's. Dropping
        // such pages is what the kernel does itself under memory pressure;
        // the next access maps the same bytes again from the page cache.
        let rc = unsafe { libc::madvise(mapping.start as *mut libc::c_void, mapping.len, libc::MADV_DONTNEED) };
        if rc == 0 {
            released += mapping.rss_kb;
        } else {
            tracing::debug!("madvise of {:#x}+{:#x}: {}", mapping.start, mapping.len, std::io::Error::last_os_error());
        }
    }
    tracing::debug!(released_kb = released, "start-up code pages unmapped");
    released
}

/// One mapping of /proc/self/smaps, as far as deciding needs.
#[derive(Debug, PartialEq)]
struct Mapping {
    start: usize,
    len: usize,
    rss_kb: u64,
}

impl Mapping {
    /// The mappings of `smaps` whose resident pages can be dropped without
    /// changing what the process reads: private (`p`), not writable, backed
    /// by a file (a path, not `[vdso]` or `[heap]`), and without an anonymous
    /// page, resident or swapped (relocated data made read-only afterwards,
    /// RELRO, has them).
    fn droppable(smaps: &str) -> Vec<Mapping> {
        let mut mappings: Vec<(Mapping, bool)> = Vec::new();
        for line in smaps.lines() {
            if let Some(header) = Self::header(line) {
                mappings.push(header);
                continue;
            }
            let Some((mapping, ok)) = mappings.last_mut() else { continue };
            let kb = |rest: &str| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok();
            if let Some(rest) = line.strip_prefix("Rss:") {
                mapping.rss_kb = kb(rest).unwrap_or(0);
            } else if let Some(rest) = line.strip_prefix("Anonymous:").or_else(|| line.strip_prefix("Swap:")) {
                *ok &= kb(rest) == Some(0);
            }
        }
        mappings.into_iter().filter(|(m, ok)| *ok && m.rss_kb > 0).map(|(m, _)| m).collect()
    }

    /// A mapping's header line (`start-end perms offset dev inode path`), and
    /// whether its kind can be dropped; `None` for the lines of fields.
    fn header(line: &str) -> Option<(Mapping, bool)> {
        let mut fields = line.split_whitespace();
        let (range, perms) = (fields.next()?, fields.next()?);
        let (start, end) = range.split_once('-')?;
        let start = usize::from_str_radix(start, 16).ok()?;
        let end = usize::from_str_radix(end, 16).ok()?;
        let (_offset, _dev, _inode) = (fields.next()?, fields.next()?, fields.next()?);
        let path = fields.next().unwrap_or("");
        let perms = perms.as_bytes();
        let ok = perms.len() == 4 && perms[0] == b'r' && perms[1] == b'-' && perms[3] == b'p' && path.starts_with('/');
        Some((Mapping { start, len: end.checked_sub(start)?, rss_kb: 0 }, ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process's /proc/self/smaps, cut to the fields that matter: its constants, text,
    /// RELRO and data, the heap, a library with nothing resident, the vDSO.
    const SMAPS: &str = include_str!("../tests/fixtures/smaps_sample.txt");

    #[test]
    fn only_untouched_read_only_file_pages_are_dropped() {
        let starts: Vec<usize> = Mapping::droppable(SMAPS).iter().map(|m| m.start).collect();
        // The constants and the text; not RELRO (anonymous pages), data, the
        // heap, a mapping with nothing resident, or the vDSO.
        assert_eq!(starts, vec![0x55d0c8000000, 0x55d0c8a00000]);
        assert_eq!(Mapping::droppable(SMAPS)[1], Mapping { start: 0x55d0c8a00000, len: 0x4600000, rss_kb: 40960 });
    }

    #[test]
    fn the_process_keeps_running_after_its_code_is_unmapped() {
        let released = release_startup_code();
        assert!(released > 0, "a test binary has resident code pages to give back");
        // Code and constants fault back in: parsing runs code not run before.
        let v: serde_json::Value = serde_json::from_str(r#"{"a": [1, 2.5, "x"]}"#).unwrap();
        assert_eq!(v["a"][2], "x");
    }
}
