//! `commucat device list|revoke`: an account's devices, on the store the server uses.

use anyhow::{Result, anyhow, bail};
use clap::Subcommand;
use commucat_server::clock::unix_now;
use commucat_server::registry::key_event;
use commucat_store::{DeviceKeyEvent, DeviceStatus, Store, UserRecord};

use crate::context::{self, ConfigArgs};

/// What to do with devices.
#[derive(Debug, Subcommand)]
pub(crate) enum DeviceCommand {
    /// List an account's devices (active and revoked), oldest first.
    List {
        /// The account's handle.
        #[arg(long)]
        user: String,
    },
    /// Revoke a device: its handshakes are refused and its REST sessions deleted.
    ///
    /// A session the device has open on a running server ends when it reconnects; revoke
    /// through `POST /api/devices/revoke` from another device to end it at once.
    Revoke {
        /// The device id.
        device_id: String,
    },
}

/// The user with `handle`, or an error naming it.
pub(crate) async fn user_by_handle(store: &dyn Store, handle: &str) -> Result<UserRecord> {
    store
        .user_by_handle(handle)
        .await?
        .ok_or_else(|| anyhow!("no user with handle {handle:?}"))
}

/// Runs `device …`.
pub(crate) fn run(args: &ConfigArgs, command: &DeviceCommand) -> Result<()> {
    let config = args.load()?;
    context::runtime()?.block_on(async {
        let store = context::open_store(&config).await?;
        match command {
            DeviceCommand::List { user } => {
                let user = user_by_handle(store.as_ref(), user).await?;
                let devices = store.devices_of_user(&user.user_id).await?;
                println!(
                    "user {} ({}): {} devices",
                    user.handle,
                    user.user_id,
                    devices.len()
                );
                for device in devices {
                    println!(
                        "{}  {:<7}  {}  {}",
                        device.device_id,
                        device.status.as_str(),
                        commucat_server::clock::rfc3339(device.created_at),
                        hex::encode(device.public_key)
                    );
                }
                Ok(())
            }
            DeviceCommand::Revoke { device_id } => {
                let device = store
                    .device(device_id)
                    .await?
                    .ok_or_else(|| anyhow!("no device {device_id:?}"))?;
                if device.status == DeviceStatus::Revoked {
                    bail!("device {device_id} is already revoked");
                }
                let event = key_event(
                    &device.device_id,
                    device.public_key,
                    DeviceKeyEvent::REVOKE,
                    unix_now(),
                );
                store.revoke_device(device_id, event).await?;
                let ledger = context::ledger(&config)?;
                ledger.record("device", || {
                    serde_json::json!({"event": "revoke", "device": device_id,
                                       "user": device.user_id, "via": "cli"})
                });
                ledger.flush();
                println!("revoked device {device_id}");
                Ok(())
            }
        }
    })
}
