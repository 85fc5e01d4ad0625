//! How the binary is linked, for the memory a running stage keeps (bench/README.md,
//! "Where the transform's peak RSS is" and "The loop's code side by side").
//!
//! - Packed relative relocations (DT_RELR: glibc >= 2.36, binutils >= 2.38,
//!   Debian 12 on). Being position independent, the binary carries ~380,000
//!   relocations; as RELA entries they took 9.2 MB, which the loader read at
//!   every start and which stayed in the process's memory.
//! - The functions in link/hot-functions.txt first in the text, in that order:
//!   the code a stage runs once set up side by side, then its set-up code,
//!   instead of spread over ~70 MB, of which this kernel maps whole page-cache
//!   folios (tens to hundreds of KB) around every function run. Only LLVM's
//!   linker (lld) takes the list: rustc links with it by default on
//!   x86_64-unknown-linux-gnu since 1.90. Symbols the binary lacks are skipped.

use std::process::Command;

fn main() {
    let env = |key: &str| std::env::var(key).unwrap_or_default();
    if env("CARGO_CFG_TARGET_OS") == "linux" && env("CARGO_CFG_TARGET_ENV") == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let order = std::path::Path::new(&env("CARGO_MANIFEST_DIR")).join("link/hot-functions.txt");
    if env("TARGET") == "x86_64-unknown-linux-gnu" && links_with_lld(&env("RUSTC")) && order.exists() {
        // The linker reads a copy in OUT_DIR, not the file in the source tree:
        // cargo keeps this script's output for a clone elsewhere that shares the
        // target directory (its file no newer), and a path into the first
        // clone then broke the link once that clone was gone.
        let copy = std::path::Path::new(&env("OUT_DIR")).join("hot-functions.txt");
        match std::fs::copy(&order, &copy) {
            Ok(_) => {
                println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", copy.display());
                println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
            }
            Err(e) => println!("cargo:warning=linking without the function order: copying {}: {e}", order.display()),
        }
    }
    println!("cargo:rerun-if-changed=link/hot-functions.txt");
    println!("cargo:rerun-if-changed=build.rs");
}

/// Whether rustc links with its own lld on x86_64 Linux: from 1.90 on, unless
/// the flags name another linker.
fn links_with_lld(rustc: &str) -> bool {
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.contains("linker") {
        return false;
    }
    let Ok(out) = Command::new(rustc).arg("-vV").output() else { return false };
    let text = String::from_utf8_lossy(&out.stdout);
    let release = text.lines().find_map(|l| l.strip_prefix("release: ")).unwrap_or("");
    let mut parts = release.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
