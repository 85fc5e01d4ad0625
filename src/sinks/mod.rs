//! The stores `rtds load` writes to, a folder each (`src/sinks/<name>/`): its
//! options, its connection, the writer of a batch, the read-back `rtds
//! reconcile` uses and the probe `rtds check` uses, behind `Connector`. The
//! list of sinks is `registry!` below, one line a sink: everything else
//! (`--sink`'s values, the options each subcommand takes, the dispatch) comes
//! from it. A write either succeeds for every row it did not reject, or fails
//! as a whole; offsets are committed only after success.

pub mod cassandra;
mod columns;
pub mod delta;
pub mod files;
pub mod keyed;
pub mod parquet;
pub mod postgres;
mod read_back;
mod writer;

use std::future::Future;

use anyhow::Result;

pub use columns::{check_columns, check_have, column_ddl};
pub use files::{FileSinkOpts, FilesOpts};
pub use read_back::{Held, Present, qualified, uuids};
pub use writer::{ReadAt, Rejected, Retry, WriteError, Writer};

use crate::row::UserRow;

/// Records a load batch holds by default: a store gains from larger writes
/// (fewer commits), and a store falling behind catches up in larger batches
/// only if they are there to take (bench/README.md, "Why the defaults").
pub const BATCH_SIZE: usize = 5000;

/// What a sink's folder provides. Its options are flattened into every
/// subcommand that reaches a store (load, reconcile, check).
pub trait Connector {
    type Options: clap::Args + clap::FromArgMatches + Clone + std::fmt::Debug + Send + Sync;

    /// The settings it reads only from the environment (secrets, and what
    /// names them), as `(variable, what it holds)`, for `--help`.
    const ENV_ONLY: &'static [(&'static str, &'static str)];

    /// The server `rtds check` reaches, as it names it; `None` for a sink
    /// with no server (files).
    const SERVER: Option<&'static str>;

    /// Records a load batch holds unless `--batch-size` says otherwise: a
    /// store whose write carries a fixed cost (a Delta commit) takes more.
    const BATCH_SIZE: usize = BATCH_SIZE;

    /// Open `table` for writing: created if absent, checked against the row
    /// contract if not.
    fn open(opts: &Self::Options, table: &str) -> impl Future<Output = Result<Box<dyn Writer>>> + Send;

    /// Open `table` for keyed rows of `shape` (an aggregate's windows):
    /// created if absent. A sink that cannot upsert by key refuses.
    fn open_keyed(
        _opts: &Self::Options,
        _table: &str,
        _shape: &keyed::Shape,
    ) -> impl Future<Output = Result<Box<dyn keyed::KeyedWriter>>> + Send {
        async { crate::error::usage("this sink cannot hold windows: use --sink postgres or --sink cassandra") }
    }

    /// Which of `ids` the load's `store` (as its summary names it) holds, as
    /// which versions. (Not `Send`: reconcile awaits it on its own task.)
    fn read_back(opts: &Self::Options, store: &str, ids: &[String]) -> impl Future<Output = Result<Held>>;

    /// Where the server is, for messages (never a password).
    fn address(opts: &Self::Options) -> String;

    /// Reach the server: its version.
    fn server_version(opts: &Self::Options) -> impl Future<Output = Result<String>> + Send;
}

/// The sinks, one line each: `module => Type(options)`, where
/// `src/sinks/<module>/` holds `Type`, its `Connector`, the module's name is
/// the sink's, and `options` names the group of `SinkOpts` it takes (the
/// groups are listed first: sinks that need the same settings, the file
/// sinks' `--out`, share one).
macro_rules! registry {
    (
        options { $($field:ident: $group:ty),+ $(,)? }
        sinks { $($module:ident => $connector:ident($of:ident)),+ $(,)? }
    ) => {
        /// Which sink a load writes to (`--sink`), as summaries name it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
        #[serde(rename_all = "lowercase")]
        pub enum Sink {
            $($connector),+
        }

        /// Every sink's own options, flattened into the subcommands that reach a store.
        #[derive(Debug, Clone, clap::Args)]
        pub struct SinkOpts {
            $(
                #[command(flatten)]
                pub $field: $group,
            )+
        }

        impl Sink {
            pub const ALL: &[Sink] = &[$(Sink::$connector),+];

            pub fn name(self) -> &'static str {
                match self { $(Sink::$connector => stringify!($module)),+ }
            }

            pub fn env_only(self) -> &'static [(&'static str, &'static str)] {
                match self { $(Sink::$connector => <$module::$connector as Connector>::ENV_ONLY),+ }
            }

            pub fn batch_size(self) -> usize {
                match self { $(Sink::$connector => <$module::$connector as Connector>::BATCH_SIZE),+ }
            }

            pub fn server(self) -> Option<&'static str> {
                match self { $(Sink::$connector => <$module::$connector as Connector>::SERVER),+ }
            }

            /// Open `table` of this sink.
            pub async fn open(self, opts: &SinkOpts, table: &str) -> Result<Table> {
                let writer = match self {
                    $(Sink::$connector => <$module::$connector as Connector>::open(&opts.$of, table).await?),+
                };
                Ok(Table { sink: self, writer })
            }

            /// Open `table` of this sink for keyed rows of `shape`.
            pub async fn open_keyed(self, opts: &SinkOpts, table: &str, shape: &keyed::Shape) -> Result<Box<dyn keyed::KeyedWriter>> {
                match self {
                    $(Sink::$connector => <$module::$connector as Connector>::open_keyed(&opts.$of, table, shape).await),+
                }
            }

            pub async fn read_back(self, opts: &SinkOpts, store: &str, ids: &[String]) -> Result<Held> {
                match self {
                    $(Sink::$connector => <$module::$connector as Connector>::read_back(&opts.$of, store, ids).await),+
                }
            }

            pub fn address(self, opts: &SinkOpts) -> String {
                match self { $(Sink::$connector => <$module::$connector as Connector>::address(&opts.$of)),+ }
            }

            pub async fn server_version(self, opts: &SinkOpts) -> Result<String> {
                match self {
                    $(Sink::$connector => <$module::$connector as Connector>::server_version(&opts.$of).await),+
                }
            }
        }
    };
}

registry! {
    options {
        cassandra: cassandra::CassandraOpts,
        postgres: postgres::PostgresOpts,
        files: FileSinkOpts,
    }
    sinks {
        cassandra => Cassandra(cassandra),
        postgres => Postgres(postgres),
        parquet => Parquet(files),
        delta => Delta(files),
    }
}

impl Sink {
    /// The sink a summary names, if any.
    pub fn named(name: &str) -> Option<Sink> {
        Sink::ALL.iter().copied().find(|s| s.name() == name)
    }
}

/// An open table of a sink: where a load writes.
pub struct Table {
    pub sink: Sink,
    writer: Box<dyn Writer>,
}

impl Table {
    pub fn name(&self) -> &'static str {
        self.sink.name()
    }

    pub fn location(&self) -> String {
        self.writer.location()
    }

    /// Write `rows`, read at `at` (upsert by id where the store can).
    pub async fn write(&mut self, rows: &[UserRow], at: ReadAt<'_>) -> Result<Rejected, WriteError> {
        self.writer.write(rows, at).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn each_sink_is_named_as_sink_takes_it() {
        for sink in Sink::ALL {
            let value = sink.to_possible_value().unwrap();
            assert_eq!(value.get_name(), sink.name());
            assert_eq!(Sink::named(sink.name()), Some(*sink));
        }
        assert_eq!(Sink::named("nosuch"), None);
    }
}
