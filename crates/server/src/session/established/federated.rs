//! Members of other domains (`device@peer`) in a channel: a JOIN may declare them when their
//! domain is a configured peer that is not blocked; frames for them become signed events in
//! the peer's outbox ([`crate::federation::outbound`]) instead of entries of the local offline
//! queue. A full outbox, a blocked peer or a store failure is an ERROR to the sender; the
//! session goes on.

use std::collections::BTreeSet;

use commucat_ccp::{Frame, Problem};
use commucat_link::ByteStream;

use super::{End, SessionTask};
use crate::config::PeerStatus;
use crate::federation::outbound::{self, OutboundError};
use crate::router::relay::Targets;

/// `type` of the ERROR sent when a peer's outbox is full.
const OUTBOX_FULL_TYPE: &str = "urn:commucat:problem:federation-outbox-full";
/// `title` of that ERROR.
pub const OUTBOX_FULL_TITLE: &str = "Federation Outbox Full";
/// `title` of the ERROR sent for a member of a blocked peer.
pub const PEER_BLOCKED_TITLE: &str = "Federation Peer Blocked";

impl<S: ByteStream> SessionTask<S> {
    /// The members of `declared` that are devices of this server (the others are members of
    /// peer domains); `None` after an ERROR if one belongs to a blocked peer.
    pub(super) async fn local_members(
        &mut self,
        frame: &Frame,
        declared: &BTreeSet<String>,
    ) -> Result<Option<BTreeSet<String>>, End> {
        let Some(federation) = self.m.federation.clone() else {
            return Ok(Some(declared.clone()));
        };
        let mut local = BTreeSet::new();
        for member in declared {
            match federation.remote_peer(member) {
                None => {
                    local.insert(member.clone());
                }
                Some(peer) if peer.config.status == PeerStatus::Blocked => {
                    let problem = Problem::custom(
                        "urn:commucat:problem:federation-peer-blocked",
                        PEER_BLOCKED_TITLE,
                        403,
                    )
                    .with_detail(format!(
                        "{member}: this server does not federate with {}",
                        peer.config.domain
                    ))
                    .with_extension("devices", vec![member.clone()]);
                    self.reject_problem(frame, problem).await?;
                    return Ok(None);
                }
                Some(_) => {}
            }
        }
        Ok(Some(local))
    }

    /// Takes the members of peer domains out of `targets`.
    pub(super) fn remote_targets(&self, targets: &mut Targets) -> Vec<String> {
        match &self.m.federation {
            Some(federation) if federation.enabled() => {
                targets.take_absent(|device| federation.remote_peer(device).is_some())
            }
            _ => Vec::new(),
        }
    }

    /// Queues `frame` for each of `remote` in its peer's outbox. Members it could not be
    /// queued for are reported to the sender: one ERROR per reason, naming them.
    pub(super) async fn federate(&mut self, frame: &Frame, remote: &[String]) -> Result<(), End> {
        let Some(federation) = self.m.federation.clone() else {
            return Ok(());
        };
        let mut full: Vec<String> = Vec::new();
        let mut full_peers: Vec<String> = Vec::new();
        let mut refused: Vec<String> = Vec::new();
        for target in remote {
            match outbound::queue(&federation, &*self.m.store, &self.device_id, target, frame).await
            {
                Ok(_) => {}
                Err(OutboundError::Full { domain, depth }) => {
                    if !full_peers.contains(&domain) {
                        let device = self.device_id.clone();
                        let peer = domain.clone();
                        self.m.ledger.record("federation", || {
                            serde_json::json!({
                                "direction": "outbound",
                                "peer": peer,
                                "device_id": device,
                                "outcome": "outbox_full",
                                "depth": depth,
                            })
                        });
                        full_peers.push(domain);
                    }
                    full.push(target.clone());
                }
                Err(OutboundError::NotAllowed { .. }) => refused.push(target.clone()),
                Err(OutboundError::Store(e)) => return self.store_failed(frame, &e).await,
                Err(e @ OutboundError::Sign) => {
                    let problem = Problem::new(commucat_ccp::ProblemKind::ServiceUnavailable)
                        .with_detail(e.to_string());
                    return self.reject_problem(frame, problem).await;
                }
            }
        }
        if !full.is_empty() {
            let problem = Problem::custom(OUTBOX_FULL_TYPE, OUTBOX_FULL_TITLE, 503)
                .with_detail(format!(
                    "the federation outbox of {} is full ({} events); the frame was not queued for {}",
                    full_peers.join(", "),
                    federation.settings().outbox_per_peer,
                    full.join(", ")
                ))
                .with_extension("recipients", full);
            self.reject_problem(frame, problem).await?;
        }
        if !refused.is_empty() {
            let problem = Problem::custom(
                "urn:commucat:problem:federation-peer-blocked",
                PEER_BLOCKED_TITLE,
                403,
            )
            .with_detail(format!(
                "this server does not send to the domains of {}",
                refused.join(", ")
            ))
            .with_extension("recipients", refused);
            self.reject_problem(frame, problem).await?;
        }
        Ok(())
    }
}
