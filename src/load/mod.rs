//! `rtds load`.

use anyhow::Result;

use crate::cli::{GlobalOpts, LoadArgs};

pub async fn run(_global: &GlobalOpts, _args: &LoadArgs) -> Result<()> {
    anyhow::bail!("rtds load is not implemented yet")
}
