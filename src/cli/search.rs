use anyhow::{bail, Result};

use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args, _ctx: &Context) -> Result<()> {
    bail!("`attempt-pkg search` is not implemented yet")
}
