//! `rtds transform`.

use anyhow::Result;

use crate::cli::{GlobalOpts, TransformArgs};

pub async fn run(_global: &GlobalOpts, _args: &TransformArgs) -> Result<()> {
    anyhow::bail!("rtds transform is not implemented yet")
}
