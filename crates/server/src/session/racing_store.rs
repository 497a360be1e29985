//! A store double for race tests: the real SQLite store, plus a hook that runs once right after
//! a session row is stored, so a test can land a concurrent operation exactly between the
//! session insert and whatever the server does next.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use commucat_store::{
    DeviceKeyEvent, DeviceRecord, EnqueueOutcome, FriendRecord, GroupMember, GroupRecord,
    InboxOffset, KeyRotation, NewDeviceRegistration, NewEnvelope, PairingRecord, QueueUsage,
    QueuedEnvelope, RedeemOutcome, Result, RotateOutcome, SessionRecord, Store, UsageScope,
    UserRecord,
};

type Hook = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Delegates every call to `inner`; `create_session` then runs the armed hook, once.
pub(super) struct RacingStore {
    inner: Arc<dyn Store>,
    after_session_insert: Mutex<Option<Hook>>,
    /// Enqueues still to answer `Unavailable` (a busy or unreachable store).
    unavailable_enqueues: std::sync::atomic::AtomicU32,
}

impl std::fmt::Debug for RacingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RacingStore").finish_non_exhaustive()
    }
}

impl RacingStore {
    pub(super) fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            after_session_insert: Mutex::new(None),
            unavailable_enqueues: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// The next `n` enqueues fail with `Unavailable` without reaching the store.
    pub(super) fn fail_enqueues(&self, n: u32) {
        self.unavailable_enqueues
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Runs `hook` right after the next session row is stored, before `create_session` returns.
    pub(super) fn after_session_insert<F, Fut>(&self, hook: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let boxed: Hook = Box::new(move || Box::pin(hook()));
        *self
            .after_session_insert
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(boxed);
    }
}

#[async_trait::async_trait]
impl Store for RacingStore {
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }

    async fn applied_migrations(&self) -> Result<Vec<(i64, String)>> {
        self.inner.applied_migrations().await
    }

    async fn user(&self, user_id: &str) -> Result<Option<UserRecord>> {
        self.inner.user(user_id).await
    }

    async fn user_by_handle(&self, handle: &str) -> Result<Option<UserRecord>> {
        self.inner.user_by_handle(handle).await
    }

    async fn update_profile(
        &self,
        user_id: &str,
        display_name: Option<String>,
        avatar_url: Option<String>,
    ) -> Result<UserRecord> {
        self.inner
            .update_profile(user_id, display_name, avatar_url)
            .await
    }

    async fn device(&self, device_id: &str) -> Result<Option<DeviceRecord>> {
        self.inner.device(device_id).await
    }

    async fn active_devices_among(&self, device_ids: &[String]) -> Result<Vec<String>> {
        self.inner.active_devices_among(device_ids).await
    }

    async fn queue_usage(&self, scope: UsageScope<'_>) -> Result<QueueUsage> {
        self.inner.queue_usage(scope).await
    }

    async fn pending_envelopes_except(
        &self,
        recipient: &str,
        now: i64,
        limit: u32,
        skip: &[i64],
    ) -> Result<Vec<QueuedEnvelope>> {
        self.inner
            .pending_envelopes_except(recipient, now, limit, skip)
            .await
    }

    async fn devices_of_user(&self, user_id: &str) -> Result<Vec<DeviceRecord>> {
        self.inner.devices_of_user(user_id).await
    }

    async fn count_active_devices(&self, user_id: &str) -> Result<u64> {
        self.inner.count_active_devices(user_id).await
    }

    async fn register_device(&self, registration: NewDeviceRegistration) -> Result<UserRecord> {
        self.inner.register_device(registration).await
    }

    async fn revoke_device(&self, device_id: &str, event: DeviceKeyEvent) -> Result<()> {
        self.inner.revoke_device(device_id, event).await
    }

    async fn rotate_device_key(&self, rotation: KeyRotation) -> Result<RotateOutcome> {
        self.inner.rotate_device_key(rotation).await
    }

    async fn key_events(&self, device_id: &str) -> Result<Vec<DeviceKeyEvent>> {
        self.inner.key_events(device_id).await
    }

    async fn create_session(&self, session: SessionRecord, device_key: &[u8; 32]) -> Result<()> {
        self.inner.create_session(session, device_key).await?;
        let hook = self
            .after_session_insert
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(hook) = hook {
            hook().await;
        }
        Ok(())
    }

    async fn session(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        self.inner.session(session_id).await
    }

    async fn extend_session(&self, session_id: &str, expires_at: i64) -> Result<()> {
        self.inner.extend_session(session_id, expires_at).await
    }

    async fn delete_session(&self, session_id: &str) -> Result<bool> {
        self.inner.delete_session(session_id).await
    }

    async fn purge_expired_sessions(&self, now: i64) -> Result<u64> {
        self.inner.purge_expired_sessions(now).await
    }

    async fn create_group(
        &self,
        group: GroupRecord,
        members: Vec<GroupMember>,
        max_owned: u64,
    ) -> Result<()> {
        self.inner.create_group(group, members, max_owned).await
    }

    async fn group(&self, group_id: &str) -> Result<Option<GroupRecord>> {
        self.inner.group(group_id).await
    }

    async fn group_members(&self, group_id: &str) -> Result<Vec<GroupMember>> {
        self.inner.group_members(group_id).await
    }

    async fn upsert_group_member(&self, member: GroupMember) -> Result<GroupMember> {
        self.inner.upsert_group_member(member).await
    }

    async fn enqueue(&self, envelope: NewEnvelope) -> Result<EnqueueOutcome> {
        use std::sync::atomic::Ordering;
        let failing = self
            .unavailable_enqueues
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(commucat_store::StoreError::Unavailable(
                "database is locked".to_owned(),
            ));
        }
        self.inner.enqueue(envelope).await
    }

    async fn pending_envelopes(
        &self,
        recipient: &str,
        now: i64,
        limit: u32,
    ) -> Result<Vec<QueuedEnvelope>> {
        self.inner.pending_envelopes(recipient, now, limit).await
    }

    async fn mark_delivered(&self, recipient: &str, envelope_ids: &[i64], now: i64) -> Result<u64> {
        self.inner
            .mark_delivered(recipient, envelope_ids, now)
            .await
    }

    async fn queued_count(&self, recipient: &str, now: i64) -> Result<u64> {
        self.inner.queued_count(recipient, now).await
    }

    async fn inbox_offset(&self, device_id: &str, channel_id: u32) -> Result<Option<InboxOffset>> {
        self.inner.inbox_offset(device_id, channel_id).await
    }

    async fn purge_expired_envelopes(&self, now: i64) -> Result<u64> {
        self.inner.purge_expired_envelopes(now).await
    }

    async fn purge_expired_idempotency(&self, now: i64) -> Result<u64> {
        self.inner.purge_expired_idempotency(now).await
    }

    async fn create_pairing(&self, pairing: PairingRecord) -> Result<()> {
        self.inner.create_pairing(pairing).await
    }

    async fn pairing(&self, code: &str) -> Result<Option<PairingRecord>> {
        self.inner.pairing(code).await
    }

    async fn redeem_pairing(
        &self,
        code: &str,
        now: i64,
        max_attempts: u32,
        registration: NewDeviceRegistration,
    ) -> Result<RedeemOutcome> {
        self.inner
            .redeem_pairing(code, now, max_attempts, registration)
            .await
    }

    async fn purge_expired_pairings(&self, now: i64) -> Result<u64> {
        self.inner.purge_expired_pairings(now).await
    }

    async fn friends(&self, user_id: &str) -> Result<Vec<FriendRecord>> {
        self.inner.friends(user_id).await
    }

    async fn replace_friends(
        &self,
        user_id: &str,
        friends: Vec<FriendRecord>,
    ) -> Result<Vec<FriendRecord>> {
        self.inner.replace_friends(user_id, friends).await
    }

    async fn list_devices(&self, limit: u32) -> Result<Vec<DeviceRecord>> {
        self.inner.list_devices(limit).await
    }

    async fn list_pairings(&self, limit: u32) -> Result<Vec<PairingRecord>> {
        self.inner.list_pairings(limit).await
    }

    async fn list_groups(&self, limit: u32) -> Result<Vec<GroupRecord>> {
        self.inner.list_groups(limit).await
    }

    async fn queue_depths(&self, now: i64, limit: u32) -> Result<Vec<(String, u64)>> {
        self.inner.queue_depths(now, limit).await
    }

    async fn push_outbox(
        &self,
        event: commucat_store::NewOutboxEvent,
        max_per_peer: u64,
    ) -> Result<commucat_store::OutboxPush> {
        self.inner.push_outbox(event, max_per_peer).await
    }

    async fn outbox_batch(
        &self,
        peer: &str,
        now: i64,
        limit: u32,
    ) -> Result<Vec<commucat_store::OutboxEvent>> {
        self.inner.outbox_batch(peer, now, limit).await
    }

    async fn outbox_done(&self, outbox_id: i64) -> Result<bool> {
        self.inner.outbox_done(outbox_id).await
    }

    async fn outbox_failed(&self, outbox_id: i64, error: &str, at: i64) -> Result<()> {
        self.inner.outbox_failed(outbox_id, error, at).await
    }

    async fn outbox_stats(&self, now: i64) -> Result<Vec<commucat_store::OutboxStats>> {
        self.inner.outbox_stats(now).await
    }

    async fn purge_expired_outbox(&self, now: i64) -> Result<u64> {
        self.inner.purge_expired_outbox(now).await
    }

    async fn claim_key(&self, key: commucat_store::IdempotencyKey, now: i64) -> Result<bool> {
        self.inner.claim_key(key, now).await
    }

    async fn release_key(&self, scope: &str, key: &str) -> Result<()> {
        self.inner.release_key(scope, key).await
    }

    async fn federation_peers(&self) -> Result<Vec<commucat_store::FederationPeer>> {
        self.inner.federation_peers().await
    }

    async fn put_federation_peer(&self, peer: commucat_store::FederationPeer) -> Result<()> {
        self.inner.put_federation_peer(peer).await
    }

    async fn set_federation_peer_status(
        &self,
        domain: &str,
        status: &str,
        at: i64,
    ) -> Result<bool> {
        self.inner
            .set_federation_peer_status(domain, status, at)
            .await
    }
}
