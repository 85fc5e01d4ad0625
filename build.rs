//! How the binary is linked: with packed relative relocations (DT_RELR, from
//! glibc 2.36 and binutils 2.38: Debian 12 on), which the loader reads at start
//! and keeps in memory far smaller than RELA entries (bench/README.md, "Where
//! the transform's peak RSS is").

fn main() {
    let env = |key: &str| std::env::var(key).unwrap_or_default();
    if env("CARGO_CFG_TARGET_OS") == "linux" && env("CARGO_CFG_TARGET_ENV") == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
