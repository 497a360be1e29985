//! `commucat user add`: creates an account with its first device, whose identity file the
//! person then uses (`commucat chat --identity FILE`, or another client).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Subcommand;
use commucat_ccp::control::UserInfo;
use commucat_client::DeviceIdentity;
use commucat_server::clock::unix_now;
use commucat_server::profile::{ProfileBounds, ProfileField};
use commucat_server::registry::{
    active_device_registration, random_id, valid_device_id, valid_handle,
};
use commucat_store::{StoreError, UserRecord, UserToCreate};

use crate::context::{self, ConfigArgs};

/// What to do with accounts.
#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Create an account and its first device; writes the device's identity file (0600).
    Add {
        /// Account handle: 1 to 64 characters of A-Z a-z 0-9 - _ .
        handle: String,
        /// Display name shown to others.
        #[arg(long)]
        display_name: Option<String>,
        /// Id of the first device (default: `<handle>-1`).
        #[arg(long)]
        device_id: Option<String>,
        /// Where to write the device identity (seed, ids); default `<handle>.identity.json`.
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
    },
}

/// Runs `user …`.
pub(crate) fn run(args: &ConfigArgs, command: &UserCommand) -> Result<()> {
    let UserCommand::Add {
        handle,
        display_name,
        device_id,
        identity,
    } = command;
    if !valid_handle(handle) {
        bail!("handle must be 1 to 64 characters of A-Z a-z 0-9 - _ .");
    }
    let device_id = device_id.clone().unwrap_or_else(|| format!("{handle}-1"));
    if !valid_device_id(&device_id) {
        bail!("device id must be 1 to 128 printable characters without spaces");
    }
    let path = identity
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{handle}.identity.json")));
    if path.exists() {
        bail!("{} exists; choose another --identity", path.display());
    }
    let config = args.load()?;
    ProfileBounds::from_settings(&config.bounds)
        .check(ProfileField::DisplayName, display_name.as_deref())?;
    let now = unix_now();
    let user = UserRecord {
        user_id: random_id(),
        handle: handle.clone(),
        display_name: display_name.clone(),
        avatar_url: None,
        created_at: now,
    };
    let mut device = DeviceIdentity::generate(device_id.clone());
    device.user = Some(UserInfo {
        id: Some(user.user_id.clone()),
        handle: Some(handle.clone()),
        display_name: display_name.clone(),
        ..UserInfo::default()
    });
    let public_key = device.keys.public_key();
    // An operator adding the account is the approval: no device limit.
    let registration = active_device_registration(
        UserToCreate::New(user.clone()),
        &user.user_id,
        &device_id,
        public_key,
        now,
        None,
    );
    context::runtime()?.block_on(async {
        let store = context::open_store(&config).await?;
        match store.register_device(registration).await {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict(what)) => {
                bail!("handle {handle} or device {device_id} is taken ({what})")
            }
            Err(e) => Err(e.into()),
        }
    })?;
    device.save(&path)?;
    let ledger = context::ledger(&config)?;
    ledger.record("device", || {
        serde_json::json!({"event": "register", "device": device_id, "user": user.user_id,
                           "via": "cli"})
    });
    ledger.flush();
    println!("created user {handle} ({})", user.user_id);
    println!("device {device_id}: identity written to {}", path.display());
    Ok(())
}
