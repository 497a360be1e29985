//! `commucat pair`: the operator issues a pairing code for an account, as a device of that
//! account would with `POST /api/pair`; the new device claims it with `POST /api/pair/claim`.

use anyhow::{Result, anyhow, bail};
use commucat_server::admin::{issue_pairing_code, pairing_ttl};
use commucat_server::clock::{secs, unix_now};
use commucat_store::DeviceStatus;

use crate::context::{self, ConfigArgs};
use crate::devices::user_by_handle;

/// Arguments of `pair`.
#[derive(Debug, clap::Args)]
pub(crate) struct PairArgs {
    /// Handle of the account the new device joins.
    #[arg(long)]
    pub(crate) user: String,
    /// The account's device recorded as issuer (default: its oldest active device).
    #[arg(long, value_name = "DEVICE_ID")]
    pub(crate) device: Option<String>,
    /// Lifetime of the code in seconds; at most `devices.pairing_ttl`, at least 60.
    #[arg(long, value_name = "SECONDS")]
    pub(crate) ttl: Option<i64>,
}

/// Runs `pair`.
pub(crate) fn run(config_args: &ConfigArgs, args: &PairArgs) -> Result<()> {
    let config = config_args.load()?;
    let ttl = pairing_ttl(args.ttl, secs(config.devices.pairing_ttl));
    let (code, record) = context::runtime()?.block_on(async {
        let store = context::open_store(&config).await?;
        let user = user_by_handle(store.as_ref(), &args.user).await?;
        let devices = store.devices_of_user(&user.user_id).await?;
        let issuer = match &args.device {
            Some(id) => devices
                .iter()
                .find(|d| &d.device_id == id)
                .ok_or_else(|| anyhow!("{} has no device {id:?}", user.handle))?,
            None => devices
                .iter()
                .find(|d| d.status == DeviceStatus::Active)
                .ok_or_else(|| anyhow!("{} has no active device to issue from", user.handle))?,
        };
        if issuer.status != DeviceStatus::Active {
            bail!("device {} is revoked", issuer.device_id);
        }
        let now = unix_now();
        let record = issue_pairing_code(
            store.as_ref(),
            &user.user_id,
            &issuer.device_id,
            now,
            now.saturating_add(ttl),
        )
        .await?;
        Ok::<_, anyhow::Error>((record.code.clone(), record))
    })?;
    let ledger = context::ledger(&config)?;
    ledger.record("pairing", || {
        serde_json::json!({"event": "issue", "device": record.issuer_device_id,
                           "user": record.user_id, "ttl": ttl,
                           "expires_at": record.expires_at, "via": "cli"})
    });
    ledger.flush();
    println!("pairing code {code}");
    println!(
        "expires {} (in {ttl} s)",
        commucat_server::clock::rfc3339(record.expires_at)
    );
    Ok(())
}
