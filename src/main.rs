//! rtds: one binary, one subcommand per pipeline stage (src/entry.rs).

fn main() -> std::process::ExitCode {
    rtds::entry::main()
}
