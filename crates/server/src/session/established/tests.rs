//! The established session over an in-memory link: sequence exhaustion.

use std::sync::Arc;
use std::time::Duration;

use commucat_ccp::control::Ack;
use commucat_ccp::{Frame, FrameType, Problem};
use commucat_keys::HandshakePattern;
use commucat_link::{Connection, memory};
use commucat_store::{SessionRecord, SqliteStore, UserRecord, UserToCreate};

use super::{Messaging, MessagingSettings, run};
use crate::registry::{active_device_registration, session_key};
use crate::router::presence::LocalPresence;
use crate::session::handshake::Established;

async fn messaging() -> Arc<Messaging> {
    let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    Arc::new(Messaging::new(
        store,
        Arc::new(LocalPresence::new()),
        MessagingSettings::default(),
    ))
}

fn established(device: &str) -> Established {
    Established {
        session_id: format!("session-{device}"),
        device_id: device.to_owned(),
        user: UserRecord {
            user_id: format!("user-{device}"),
            handle: device.to_owned(),
            display_name: None,
            avatar_url: None,
            created_at: 0,
        },
        protocol_version: 1,
        pattern: HandshakePattern::Xk,
        accepted_capabilities: Vec::new(),
        expires_at: i64::MAX,
        noise_key_version: 1,
        device_known: true,
        had_certificate: false,
        issued_certificate: false,
        pq_hybrid: false,
        adaptive_obf: false,
    }
}

/// Registers the device and stores the session, as a completed handshake does.
async fn stored(messaging: &Messaging, established: &Established) {
    let user = &established.user;
    let registration = active_device_registration(
        UserToCreate::New(user.clone()),
        &user.user_id,
        &established.device_id,
        [9; 32],
        0,
        None,
    );
    messaging.store.register_device(registration).await.unwrap();
    let session = SessionRecord {
        session_id: session_key(&established.session_id),
        device_id: established.device_id.clone(),
        user_id: user.user_id.clone(),
        created_at: 0,
        expires_at: i64::MAX,
    };
    messaging
        .store
        .create_session(session, &[9; 32])
        .await
        .unwrap();
}

#[tokio::test]
async fn the_stream_ends_with_an_error_when_sequence_numbers_run_out() {
    let (client_end, server_end) = memory::pair();
    let mut server_conn = Connection::new(server_end, commucat_ccp::MAX_FRAME_LEN);
    // Two numbers left before u32::MAX, which is kept for the closing ERROR.
    server_conn.codec_mut().skip_sequences_to(u32::MAX - 2);
    let messaging = messaging().await;
    let established = established("dev-seq");
    stored(&messaging, &established).await;
    #[allow(
        clippy::disallowed_methods,
        reason = "a test task, awaited or ended by the test"
    )]
    let server = tokio::spawn(run(server_conn, established, messaging, "memory", "binary"));
    let mut client = Connection::new(client_end, commucat_ccp::MAX_FRAME_LEN);
    let join = Frame::control(FrameType::Join, 1, 3, &serde_json::json!({"members": []})).unwrap();
    client.send(&join).await.unwrap();
    let recv = async |client: &mut Connection<memory::MemoryStream>| {
        tokio::time::timeout(Duration::from_secs(5), client.recv())
            .await
            .unwrap()
            .unwrap()
    };
    // The ACK and the membership notice take the last two ordinary numbers...
    let ack = recv(&mut client).await.unwrap();
    assert_eq!(ack.frame_type(), FrameType::Ack);
    assert_eq!(ack.sequence(), u32::MAX - 2);
    assert_eq!(ack.parse_control::<Ack>().unwrap().ack, 3);
    let notice = recv(&mut client).await.unwrap();
    assert_eq!(notice.frame_type(), FrameType::Join);
    assert_eq!(notice.sequence(), u32::MAX - 1);
    // ...the next frame the server would send ends the stream with `Sequence Exhausted` at
    // u32::MAX, strictly after every earlier number.
    let msg = Frame::new(FrameType::Msg, 1, 4, &b"hi"[..]).unwrap();
    client.send(&msg).await.unwrap();
    let error = recv(&mut client).await.unwrap();
    assert_eq!(error.frame_type(), FrameType::Error);
    assert_eq!(error.sequence(), u32::MAX);
    let problem: Problem = error.parse_control().unwrap();
    assert_eq!(problem.title.as_deref(), Some("Sequence Exhausted"));
    assert_eq!(recv(&mut client).await, None);
    server.await.unwrap();
    // The deployed decoder accepts the closing frame.
    let (decoded, _) = commucat_proto::Frame::decode(&error.to_bytes()).unwrap();
    assert_eq!(decoded.sequence, u64::from(u32::MAX));
}

/// A slow consumer's frames were ACKed to their senders long ago: when they move to the
/// offline queue while the store is busy, the server waits for it instead of dropping them.
#[tokio::test]
async fn requeued_frames_wait_out_a_busy_store() {
    use crate::router::Envelope;
    use crate::session::racing_store::RacingStore;
    use commucat_store::Store;

    let racing = Arc::new(RacingStore::new(Arc::new(
        SqliteStore::open_in_memory().await.unwrap(),
    )));
    let store: Arc<dyn Store> = racing.clone();
    let m = Messaging::new(
        Arc::clone(&store),
        Arc::new(LocalPresence::new()),
        MessagingSettings::default(),
    );
    for device in ["alice-q", "bob-q"] {
        stored(&m, &established(device)).await;
    }
    racing.fail_enqueues(3);
    let leftovers = ["one", "two"]
        .iter()
        .zip(1..)
        .map(|(text, stamp)| Envelope {
            frame: Frame::new(FrameType::Msg, 7, 0, text.as_bytes()).unwrap(),
            stamp,
            sender: Arc::from("alice-q"),
        })
        .collect();
    assert_eq!(m.relay().requeue("bob-q", leftovers).await, 2);
    let queued = store
        .pending_envelopes("bob-q", crate::clock::unix_now(), 10)
        .await
        .unwrap();
    assert_eq!(queued.len(), 2);
    assert_eq!(m.hub.metrics.requeue_lost.get(), 0);
}
