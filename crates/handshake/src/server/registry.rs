//! The device registry's part of the handshake: known devices, new devices and accounts.

use commucat_ccp::control::UserInfo;
use rand_core::{CryptoRng, RngCore};

use super::hello;
use super::machine::{Next, Opened, Resolved, ServerHandshake, State};
use super::{Device, Notice, ProfileField, Query, Registration, Step, User};
use crate::{FailReason, HandshakeError, StoreFailure};

/// The user hints of a HELLO: id and handle.
fn hints(opened: &Opened) -> (Option<&str>, Option<&str>) {
    let hint = opened.checked.hello.user.as_ref();
    (
        hint.and_then(UserInfo::resolved_id),
        hint.and_then(|u| u.handle.as_deref()),
    )
}

/// Refuses user hints (`user.id`, `user.handle`) that name another account than `user`.
fn check_hints(user: &User, opened: &Opened, detail: &'static str) -> Result<(), HandshakeError> {
    let (hinted_id, hinted_handle) = hints(opened);
    if hinted_id.is_some_and(|id| id != user.user_id)
        || hinted_handle.is_some_and(|h| h != user.handle)
    {
        return Err(HandshakeError::new(FailReason::UserMismatch, detail));
    }
    Ok(())
}

impl<R: RngCore + CryptoRng> ServerHandshake<'_, R> {
    /// Starts the registry lookup once message 1 is accepted.
    pub(super) fn resolve(&mut self, opened: Box<Opened>) -> Next {
        if let Some(cert) = &opened.checked.certificate {
            hello::check_certificate(&self.config, cert, &opened.checked, opened.now)?;
        }
        let hint = opened.checked.hello.user.as_ref();
        if hint.is_some_and(UserInfo::has_conflicting_ids) {
            return Err(HandshakeError::invalid("user.id and user.user_id disagree"));
        }
        let device_id = opened.checked.hello.device_id.clone();
        Ok((
            State::AwaitDevice(opened),
            Step::Query(Query::Device { device_id }),
        ))
    }

    pub(super) fn on_known_device(&mut self, opened: Box<Opened>, device: &Device) -> Next {
        if !device.active {
            return Err(HandshakeError::new(
                FailReason::Revoked,
                "this device has been revoked; pair it again",
            ));
        }
        if device.public_key != opened.checked.device_public {
            return Err(HandshakeError::new(
                FailReason::KeyMismatch,
                "this device id is registered with a different device key; keys never change silently",
            ));
        }
        let user_id = device.user_id.clone();
        Ok((
            State::AwaitOwner(opened),
            Step::Query(Query::User { user_id }),
        ))
    }

    pub(super) fn on_owner(
        &mut self,
        opened: Box<Opened>,
        user: Result<Option<User>, StoreFailure>,
    ) -> Next {
        let user = user
            .map_err(HandshakeError::from_store)?
            .ok_or_else(|| HandshakeError::new(FailReason::Storage, "device owner missing"))?;
        check_hints(&user, &opened, "this device belongs to another account")?;
        if let Some(cert) = &opened.checked.certificate
            && cert.data.user_id != user.user_id
        {
            return Err(HandshakeError::new(
                FailReason::Certificate,
                "certificate was issued for another account",
            ));
        }
        let (current, issued) = hello::certificates(
            &self.config,
            &mut self.rng,
            &user.user_id,
            &opened.checked,
            opened.now,
        )?;
        let resolved = Resolved {
            user,
            pending: None,
            issued,
            current,
        };
        self.send_auth(opened, resolved)
    }

    pub(super) fn register_unknown(&mut self, opened: Box<Opened>) -> Next {
        // A certificate from our CA is the only proof of belonging to an account.
        if let Some(cert) = &opened.checked.certificate {
            let user_id = cert.data.user_id.clone();
            return Ok((
                State::AwaitCertUser(opened),
                Step::Query(Query::User { user_id }),
            ));
        }
        let (hinted_id, hinted_handle) = hints(&opened);
        if let Some(id) = hinted_id {
            let user_id = id.to_owned();
            return Ok((State::AwaitHintedUser, Step::Query(Query::User { user_id })));
        }
        if let Some(handle) = hinted_handle {
            if !(self.config.identity.valid_handle)(handle) {
                return Err(HandshakeError::invalid(format!(
                    "handle must be 1..={} characters of [A-Za-z0-9-_.]",
                    self.config.identity.max_handle_len
                )));
            }
            let handle = handle.to_owned();
            return Ok((
                State::AwaitHandle(opened, handle.clone()),
                Step::Query(Query::UserByHandle { handle }),
            ));
        }
        self.new_account(opened, None)
    }

    pub(super) fn on_certificate_user(
        &mut self,
        opened: Box<Opened>,
        user: Result<Option<User>, StoreFailure>,
    ) -> Next {
        let user = user.map_err(HandshakeError::from_store)?.ok_or_else(|| {
            HandshakeError::new(
                FailReason::Certificate,
                "certificate names an unknown account",
            )
        })?;
        check_hints(&user, &opened, "user hints disagree with the certificate")?;
        self.approve(opened, user, None)
    }

    /// A new account for an unknown device without a certificate.
    pub(super) fn new_account(&mut self, opened: Box<Opened>, handle: Option<String>) -> Next {
        let hint = opened.checked.hello.user.as_ref();
        let display_name = hint.and_then(|u| u.display_name.clone());
        let avatar_url = hint.and_then(|u| u.avatar_url.clone());
        for (field, value) in [
            (ProfileField::DisplayName, &display_name),
            (ProfileField::AvatarUrl, &avatar_url),
        ] {
            if let Err(detail) = self.config.profile.check(field, value.as_deref()) {
                self.notice(Notice::ProfileRefused {
                    field,
                    device_id: opened.checked.hello.device_id.clone(),
                    detail: detail.clone(),
                });
                return Err(HandshakeError::new(FailReason::Profile, detail));
            }
        }
        let user_id = crate::random_id(&mut self.rng);
        let handle = handle.unwrap_or_else(|| format!("user-{}", user_id.get(..12).unwrap_or("")));
        let user = User {
            user_id,
            handle,
            display_name,
            avatar_url,
            created_at: opened.now,
        };
        self.approve(opened, user.clone(), Some(user))
    }

    /// Registering without a pairing claim is automatic approval: it needs the policy on, and
    /// the account under its device limit (checked again inside the registration transaction).
    fn approve(&mut self, opened: Box<Opened>, user: User, new_user: Option<User>) -> Next {
        if !self.config.auto_approve {
            return Err(HandshakeError::new(
                FailReason::PairingRequired,
                "automatic device approval is off; pair this device",
            ));
        }
        let (current, issued) = hello::certificates(
            &self.config,
            &mut self.rng,
            &user.user_id,
            &opened.checked,
            opened.now,
        )?;
        let registration = Registration {
            new_user,
            user_id: user.user_id.clone(),
            device_id: opened.checked.hello.device_id.clone(),
            device_public: opened.checked.device_public,
            now: opened.now,
            max_active_devices: match self.config.max_auto_devices_per_user {
                0 => None,
                n => Some(u64::from(n)),
            },
        };
        let resolved = Resolved {
            user,
            pending: Some(registration),
            issued,
            current,
        };
        self.send_auth(opened, resolved)
    }
}
