//! `commucat migrate`: applies the store's pending schema migrations and reports the schema.

use anyhow::Result;

use crate::context::{self, ConfigArgs};

/// Runs `migrate`: opens the configured store (which applies every pending migration in its
/// own transaction) and lists the migrations now applied.
pub(crate) fn run(args: &ConfigArgs) -> Result<()> {
    let config = args.load()?;
    context::runtime()?.block_on(async {
        let store = context::open_store(&config).await?;
        let applied = store.applied_migrations().await?;
        let location = match &config.store.url {
            Some(url) => commucat_server::config::redact_url(url),
            None => config
                .server
                .data_dir
                .join(commucat_server::server::DATABASE_FILE)
                .display()
                .to_string(),
        };
        println!(
            "store {location}: schema up to date, {} migrations applied",
            applied.len()
        );
        for (version, description) in applied {
            println!("{version:>6}  {description}");
        }
        Ok(())
    })
}
