//! `[bounds]`: what one device, session or address can make the server hold.
//!
//! Every bound has a default, a file key (`bounds.<name>`), an environment variable
//! (`COMMUCAT_BOUND_<NAME>`) and a floor below which the server would not work. A refusal is
//! counted per bound in `commucat_bound_refusals_total{bound="<name>"}` ([`Bound`] names the
//! label) and recorded in the ledger.
//!
//! The table below is the single list: the settings struct, the file section, the environment
//! variables, the validation and the [`Bound`] label enum are generated from it.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, MAX_DURATION_SECS, Origins};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Value type of a bound: counts and byte sizes are `u64`, timeouts a [`Duration`].
macro_rules! bound_type {
    (count) => {
        u64
    };
    (bytes) => {
        u64
    };
    (secs) => {
        Duration
    };
}

macro_rules! bound_default {
    (count, $v:expr) => {
        $v
    };
    (bytes, $v:expr) => {
        $v
    };
    (secs, $v:expr) => {
        Duration::from_secs($v)
    };
}

macro_rules! bound_raw {
    (count, $v:expr) => {
        $v
    };
    (bytes, $v:expr) => {
        $v
    };
    (secs, $v:expr) => {
        $v.as_secs()
    };
}

macro_rules! bound_set {
    (count, $slot:expr, $v:expr) => {
        $slot = $v
    };
    (bytes, $slot:expr, $v:expr) => {
        $slot = $v
    };
    (secs, $slot:expr, $v:expr) => {
        $slot = Duration::from_secs($v)
    };
}

macro_rules! bounds {
    ($(
        $(#[doc = $doc:expr])*
        $field:ident / $variant:ident : $kind:ident = $default:expr, env $env:literal, min $min:expr;
    )*) => {
        /// The `[bounds]` section, validated.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct BoundSettings {
            $( $(#[doc = $doc])* pub $field: bound_type!($kind), )*
        }

        impl Default for BoundSettings {
            fn default() -> Self {
                Self { $( $field: bound_default!($kind, $default), )* }
            }
        }

        /// One bound, as named in the refusal counter's `bound` label.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Bound {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl Bound {
            /// Every bound, in table order.
            pub const ALL: &'static [Bound] = &[$(Bound::$variant),*];

            /// The setting's name (`bounds.<name>` without the section), the metric label.
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self { $( Bound::$variant => stringify!($field), )* }
            }

            /// Position in [`Bound::ALL`].
            #[must_use]
            pub const fn index(self) -> usize {
                self as usize
            }
        }

        /// The file section: every key optional, unknown keys rejected.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct BoundsSection {
            $( $field: Option<u64>, )*
        }

        impl BoundsSection {
            pub(super) fn apply(self, bounds: &mut BoundSettings) {
                $( if let Some(value) = self.$field { bound_set!($kind, bounds.$field, value); } )*
            }
        }

        /// `(variable, file key)` of every bound.
        pub(super) const ENV: &[(&str, &str)] = &[
            $( ($env, concat!("bounds.", stringify!($field))), )*
        ];

        /// Applies the environment variable `name` if it is one of [`ENV`]; `None` when it
        /// is not a bound's variable.
        pub(super) fn apply_env(
            bounds: &mut BoundSettings,
            name: &str,
            raw: &str,
        ) -> Option<Result<(), ConfigError>> {
            $(
                if name == $env {
                    return Some(parse(name, raw).map(|value| {
                        bound_set!($kind, bounds.$field, value);
                    }));
                }
            )*
            None
        }

        impl BoundSettings {
            pub(super) fn check(&self, origins: &Origins) -> Result<(), ConfigError> {
                $(
                    check(
                        origins.name(concat!("bounds.", stringify!($field))),
                        bound_raw!($kind, self.$field),
                        $min,
                        bound_max!($kind),
                    )?;
                )*
                Ok(())
            }
        }
    };
}

macro_rules! bound_max {
    (count) => {
        u64::MAX
    };
    (bytes) => {
        u64::MAX
    };
    (secs) => {
        MAX_DURATION_SECS
    };
}

bounds! {
    /// Members of one plain channel (`bounds.channel_members`).
    channel_members / ChannelMembers: count = 1024, env "COMMUCAT_BOUND_CHANNEL_MEMBERS", min 2;
    /// Channels one device is a member of at once (`bounds.channels_per_device`).
    channels_per_device / ChannelsPerDevice: count = 256, env "COMMUCAT_BOUND_CHANNELS_PER_DEVICE", min 1;
    /// Groups one device may own; groups are kept in the store until deleted
    /// (`bounds.groups_per_device`).
    groups_per_device / GroupsPerDevice: count = 1024, env "COMMUCAT_BOUND_GROUPS_PER_DEVICE", min 1;
    /// Member ids one JOIN may declare (`bounds.declared_members_per_join`).
    declared_members_per_join / DeclaredMembersPerJoin: count = 64, env "COMMUCAT_BOUND_DECLARED_MEMBERS_PER_JOIN", min 1;
    /// Calls one session takes part in at once, ringing or active (`bounds.calls_per_session`).
    calls_per_session / CallsPerSession: count = 4, env "COMMUCAT_BOUND_CALLS_PER_SESSION", min 1;
    /// Seconds a call may ring before it is ended as unanswered (`bounds.call_ring_timeout`).
    call_ring_timeout / CallRingTimeout: secs = 60, env "COMMUCAT_BOUND_CALL_RING_TIMEOUT", min 1;
    /// Bytes of frames waiting for one session before it counts as a slow consumer
    /// (`bounds.mailbox_bytes`).
    mailbox_bytes / MailboxBytes: bytes = 8 * MIB, env "COMMUCAT_BOUND_MAILBOX_BYTES", min 64 * KIB;
    /// Frames written live to a client with `delivery-receipts` and not yet covered by a
    /// receipt; past this the client is a slow consumer (`bounds.unconfirmed_frames`).
    unconfirmed_frames / UnconfirmedFrames: count = 1024, env "COMMUCAT_BOUND_UNCONFIRMED_FRAMES", min 16;
    /// Payload bytes of those frames (`bounds.unconfirmed_bytes`).
    unconfirmed_bytes / UnconfirmedBytes: bytes = 8 * MIB, env "COMMUCAT_BOUND_UNCONFIRMED_BYTES", min 64 * KIB;
    /// Bytes a transport (WebSocket, HTTP/1.1 body) buffers towards one client
    /// (`bounds.transport_buffer_bytes`).
    transport_buffer_bytes / TransportBufferBytes: bytes = MIB, env "COMMUCAT_BOUND_TRANSPORT_BUFFER_BYTES", min 64 * KIB;
    /// Frames queued offline for one device (`bounds.offline_frames_per_device`); the lower of
    /// this and `offline.max_per_device` applies.
    offline_frames_per_device / OfflineFramesPerDevice: count = 10_000, env "COMMUCAT_BOUND_OFFLINE_FRAMES_PER_DEVICE", min 1;
    /// Bytes queued offline for one device (`bounds.offline_bytes_per_device`).
    offline_bytes_per_device / OfflineBytesPerDevice: bytes = 64 * MIB, env "COMMUCAT_BOUND_OFFLINE_BYTES_PER_DEVICE", min 64 * KIB;
    /// Frames one sender has queued offline across all recipients
    /// (`bounds.offline_frames_per_sender`).
    offline_frames_per_sender / OfflineFramesPerSender: count = 100_000, env "COMMUCAT_BOUND_OFFLINE_FRAMES_PER_SENDER", min 1;
    /// Bytes one sender has queued offline across all recipients
    /// (`bounds.offline_bytes_per_sender`).
    offline_bytes_per_sender / OfflineBytesPerSender: bytes = 256 * MIB, env "COMMUCAT_BOUND_OFFLINE_BYTES_PER_SENDER", min 64 * KIB;
    /// Bytes queued offline on this server in total (`bounds.offline_bytes_total`).
    offline_bytes_total / OfflineBytesTotal: bytes = 8 * GIB, env "COMMUCAT_BOUND_OFFLINE_BYTES_TOTAL", min MIB;
    /// Connections open at once from one IP address (`bounds.connections_per_ip`).
    connections_per_ip / ConnectionsPerIp: count = 256, env "COMMUCAT_BOUND_CONNECTIONS_PER_IP", min 1;
    /// Seconds a connection may stay open without a request or stream in progress
    /// (`bounds.idle_connection_timeout`).
    idle_connection_timeout / IdleConnectionTimeout: secs = 30, env "COMMUCAT_BOUND_IDLE_CONNECTION_TIMEOUT", min 1;
    /// Seconds a REST request body may take to arrive (`bounds.rest_body_timeout`).
    rest_body_timeout / RestBodyTimeout: secs = 10, env "COMMUCAT_BOUND_REST_BODY_TIMEOUT", min 1;
    /// Bytes of a profile display name (`bounds.display_name_bytes`).
    display_name_bytes / DisplayNameBytes: bytes = 256, env "COMMUCAT_BOUND_DISPLAY_NAME_BYTES", min 16;
    /// Bytes of a profile avatar URL (`bounds.avatar_url_bytes`).
    avatar_url_bytes / AvatarUrlBytes: bytes = 2048, env "COMMUCAT_BOUND_AVATAR_URL_BYTES", min 64;
    /// Accepted IK message-1 ephemerals remembered to refuse replayed HELLOs, about 100 bytes
    /// each (`bounds.ik_replay_entries`).
    ik_replay_entries / IkReplayEntries: count = 65_536, env "COMMUCAT_BOUND_IK_REPLAY_ENTRIES", min 1024;
    /// Seconds an accepted IK message-1 ephemeral is remembered (`bounds.ik_replay_retention`).
    ik_replay_retention / IkReplayRetention: secs = 3600, env "COMMUCAT_BOUND_IK_REPLAY_RETENTION", min 60;
    /// Failed claims after which a pairing code is dead (`bounds.pairing_guesses_per_code`).
    pairing_guesses_per_code / PairingGuessesPerCode: count = 5, env "COMMUCAT_BOUND_PAIRING_GUESSES_PER_CODE", min 1;
    /// Wrong pairing guesses for one account's codes per window
    /// (`bounds.pairing_guesses_per_account`).
    pairing_guesses_per_account / PairingGuessesPerAccount: count = 20, env "COMMUCAT_BOUND_PAIRING_GUESSES_PER_ACCOUNT", min 1;
    /// Wrong pairing guesses from one IP address (IPv6: /64) per window
    /// (`bounds.pairing_guesses_per_ip`).
    pairing_guesses_per_ip / PairingGuessesPerIp: count = 20, env "COMMUCAT_BOUND_PAIRING_GUESSES_PER_IP", min 1;
    /// Seconds of one window of wrong pairing guesses (`bounds.pairing_guess_window`).
    pairing_guess_window / PairingGuessWindow: secs = 3600, env "COMMUCAT_BOUND_PAIRING_GUESS_WINDOW", min 60;
    /// Addresses, and accounts, whose wrong pairing guesses are tracked at once
    /// (`bounds.pairing_guess_table`).
    pairing_guess_table / PairingGuessTable: count = 65_536, env "COMMUCAT_BOUND_PAIRING_GUESS_TABLE", min 1024;
}

fn parse(name: &str, raw: &str) -> Result<u64, ConfigError> {
    raw.trim()
        .parse()
        .map_err(|_| ConfigError::invalid(name, format!("invalid non-negative integer {raw:?}")))
}

fn check(name: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            name,
            format!("must be between {min} and {max}, got {value}"),
        ))
    }
}

/// `usize` view of a count or byte bound (saturating on 32-bit targets).
#[must_use]
pub fn as_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bound_has_a_unique_label_and_variable() {
        let mut names: Vec<_> = Bound::ALL.iter().map(|b| b.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Bound::ALL.len());
        assert_eq!(ENV.len(), Bound::ALL.len());
        for (index, bound) in Bound::ALL.iter().enumerate() {
            assert_eq!(bound.index(), index);
            let (env, key) = ENV[index];
            assert_eq!(key, format!("bounds.{}", bound.name()));
            assert_eq!(
                env,
                format!("COMMUCAT_BOUND_{}", bound.name().to_ascii_uppercase())
            );
        }
    }

    #[test]
    fn defaults_pass_their_own_checks() {
        BoundSettings::default()
            .check(&Origins::default())
            .expect("defaults are valid");
    }

    #[test]
    fn below_the_floor_is_refused_by_name() {
        let mut bounds = BoundSettings::default();
        let applied = apply_env(&mut bounds, "COMMUCAT_BOUND_CHANNEL_MEMBERS", "1");
        assert!(matches!(applied, Some(Ok(()))));
        let error = bounds.check(&Origins::default()).expect_err("1 < 2");
        assert!(
            error.to_string().contains("bounds.channel_members"),
            "{error}"
        );
        assert!(apply_env(&mut bounds, "COMMUCAT_OTHER", "1").is_none());
        assert!(matches!(
            apply_env(&mut bounds, "COMMUCAT_BOUND_CALL_RING_TIMEOUT", "x"),
            Some(Err(_))
        ));
    }
}
