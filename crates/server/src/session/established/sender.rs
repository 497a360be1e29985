//! Sender fields of relayed control payloads (`CALL_OFFER.from`, TYPING `device` / `device_id` /
//! `sender`, GROUP_CREATE `owner`): a client may name only its own device, bare or as
//! `device@<this domain>`; and it may not speak as the server (`metadata.system = true` marks
//! the CALL_END the server synthesizes). Anything else is refused with "Sender Mismatch" (the
//! session is kept), counted in `commucat_sender_mismatches_total{type}` and recorded in the
//! ledger (scope `sender`).

use commucat_ccp::{Frame, FrameType, ProblemKind};
use commucat_link::ByteStream;
use serde_json::Value;

use super::{End, SessionTask};

/// Whether `claimed` names `device` of `domain`: `device` itself or `device@domain`.
#[must_use]
pub(super) fn names_self(claimed: &str, device: &str, domain: &str) -> bool {
    claimed == device
        || claimed
            .strip_prefix(device)
            .and_then(|rest| rest.strip_prefix('@'))
            .is_some_and(|rest| rest.eq_ignore_ascii_case(domain))
}

impl<S: ByteStream> SessionTask<S> {
    /// `Ok(true)` if `claimed` names this session's device; otherwise refuses the frame (ERROR
    /// "Sender Mismatch", counted and ledgered) and returns `Ok(false)`.
    pub(super) async fn check_sender(
        &mut self,
        frame: &Frame,
        field: &str,
        claimed: &str,
    ) -> Result<bool, End> {
        if names_self(claimed, &self.device_id, &self.m.settings.domain) {
            return Ok(true);
        }
        self.refuse_sender(frame, field, claimed).await?;
        Ok(false)
    }

    /// `Ok(true)` unless `metadata` claims to come from the server (`"system": true`), which
    /// is refused like a foreign sender.
    pub(super) async fn check_not_system(
        &mut self,
        frame: &Frame,
        metadata: &Value,
    ) -> Result<bool, End> {
        if metadata.get("system") != Some(&Value::Bool(true)) {
            return Ok(true);
        }
        self.refuse_sender(frame, "metadata.system", "the server")
            .await?;
        Ok(false)
    }

    /// ERROR "Sender Mismatch" for `frame`, counted and ledgered; the session is kept.
    async fn refuse_sender(
        &mut self,
        frame: &Frame,
        field: &str,
        claimed: &str,
    ) -> Result<(), End> {
        let claimed = shortened(claimed);
        self.m
            .hub
            .metrics
            .sender_mismatches
            .count(frame.frame_type());
        self.m.ledger.record("sender", || {
            serde_json::json!({
                "device_id": self.device_id,
                "claimed": claimed,
                "field": field,
                "frame_type": frame.frame_type().label(),
                "channel": frame.channel_id(),
            })
        });
        let detail = format!(
            "{} `{field}` is {claimed:?}, but this session is device {}",
            frame.frame_type(),
            self.device_id
        );
        self.reject(frame, ProblemKind::SenderMismatch, detail)
            .await
    }
}

/// The frame types whose sender fields are checked (the labels of the mismatch counter).
pub const CHECKED: [FrameType; 5] = [
    FrameType::CallOffer,
    FrameType::CallAnswer,
    FrameType::CallEnd,
    FrameType::Typing,
    FrameType::GroupCreate,
];

/// At most [`SHOWN_CHARS`] characters of a claimed sender, for the ERROR and the ledger.
fn shortened(claimed: &str) -> String {
    match claimed.char_indices().nth(SHOWN_CHARS) {
        Some((end, _)) => format!("{}…", &claimed[..end]),
        None => claimed.to_owned(),
    }
}

/// How much of a claimed sender the ERROR and the ledger repeat.
const SHOWN_CHARS: usize = 128;

#[cfg(test)]
mod tests {
    use super::names_self;

    #[test]
    fn only_the_own_device_bare_or_on_this_domain() {
        assert!(names_self("alice-1", "alice-1", "chat.test"));
        assert!(names_self("alice-1@chat.test", "alice-1", "chat.test"));
        assert!(names_self("alice-1@CHAT.test", "alice-1", "chat.test"));
        assert!(!names_self("alice-1@evil.test", "alice-1", "chat.test"));
        assert!(!names_self("alice-10", "alice-1", "chat.test"));
        assert!(!names_self("alice-1@", "alice-1", "chat.test"));
        assert!(!names_self("bob-1", "alice-1", "chat.test"));
        assert!(!names_self("", "alice-1", "chat.test"));
    }
}
