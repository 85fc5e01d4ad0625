//! Secrets come from the environment or from files, never from argv, and are
//! never logged. `RTDS_X_FILE` names a file holding the value of `RTDS_X`.

use anyhow::{Context, Result};

/// The value of `name`, or the trimmed content of the file named by `name_FILE`.
pub fn env(name: &str) -> Result<Option<String>> {
    if let Ok(v) = std::env::var(name) {
        return Ok(Some(v));
    }
    let file_var = format!("{name}_FILE");
    match std::env::var_os(&file_var) {
        None => Ok(None),
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {file_var} ({})", path.to_string_lossy()))?;
            Ok(Some(text.trim_end_matches(['\n', '\r']).to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_variant_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\n").unwrap();
        // SAFETY: this test owns these variable names; no other test reads them.
        unsafe { std::env::set_var("RTDS_TEST_SECRET_FILE", &f) };
        assert_eq!(super::env("RTDS_TEST_SECRET").unwrap().as_deref(), Some("s3cret"));
        assert_eq!(super::env("RTDS_TEST_ABSENT").unwrap(), None);
    }
}
