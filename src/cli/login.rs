use std::io::BufRead;

use anyhow::{bail, Context as _, Result};

use super::Context;
use crate::registry::remote::Credentials;
use crate::registry::{resolve_target, RegistryTarget};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  attempt-pkg login --registry team --token apk_…\n  \
echo \"$TOKEN\" | attempt-pkg login --registry http://127.0.0.1:8080/index/\n\n\
The token is stored in $ATTEMPT_HOME/credentials.toml (mode 0600) under the registry's name, or its \
index URL. `--token` on publish/yank and the ATTEMPT_TOKEN variable override it.")]
pub struct Args {
    /// The token (default: read one line from standard input, so it stays out of shell history).
    #[arg(long)]
    pub token: Option<String>,
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let target = match resolve_target(ctx.global.registry.as_deref(), &ctx.home)? {
        RegistryTarget::Remote(t) => t,
        RegistryTarget::Dir(dir) => bail!(
            "`{}` is a registry directory; tokens are for remote registries: pass --registry NAME (from config.toml) or an http(s) URL",
            dir.root.display()
        ),
    };
    let token = match args.token {
        Some(t) => t,
        None => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).context("reading the token from standard input")?;
            line
        }
    };
    let token = token.trim();
    if token.is_empty() || token.chars().any(char::is_whitespace) {
        bail!("the token is empty or contains spaces; pass the value `attempt-pkg token create` printed");
    }
    let key = target.name.clone().unwrap_or_else(|| target.index_url.to_string());
    let path = Credentials::store(&ctx.home, &key, token)?;
    println!("Stored the token for registry {key} in {}", path.display());
    Ok(())
}
