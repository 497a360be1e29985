//! The deployed client's view of every byte the server sends: a byte stream that runs it
//! through `commucat-proto` 1.0.41's decoder and checks the keys the terminal client requires.

use std::io;

use bytes::Bytes;
use commucat_link::ByteStream;
use serde_json::Value;

/// Checks one frame the server sent as the deployed client would read it: its codec must accept
/// the bytes, and control payloads must carry the keys the terminal client requires.
fn check_deployed(frame: &commucat_proto::Frame) {
    use commucat_proto::{FramePayload, FrameType as T, call};
    let props = match &frame.payload {
        FramePayload::Control(c) => &c.properties,
        FramePayload::Opaque(_) => return,
    };
    let has_str = |keys: &[&str]| {
        keys.iter()
            .any(|k| props.get(*k).is_some_and(Value::is_string))
    };
    let ty = frame.frame_type;
    match ty {
        T::Typing => assert!(
            has_str(&["device", "device_id", "sender"]),
            "TYPING without sender: {props}"
        ),
        T::Presence => assert!(has_str(&["entity"]), "PRESENCE without entity: {props}"),
        T::Join => {
            assert!(props.is_object(), "JOIN not an object: {props}");
            let members = props.get("members").and_then(Value::as_array);
            assert!(
                members.is_some_and(|m| m.iter().all(Value::is_string)),
                "JOIN without members: {props}"
            );
        }
        T::GroupCreate => assert!(props.is_object(), "GROUP_CREATE not an object: {props}"),
        T::GroupInvite => {
            assert!(
                has_str(&["group_id"]),
                "GROUP_INVITE without group_id: {props}"
            );
            assert!(
                has_str(&["device", "member"]),
                "GROUP_INVITE without device: {props}"
            );
        }
        T::CallOffer => {
            serde_json::from_value::<call::CallOffer>(props.clone()).unwrap();
        }
        T::CallAnswer => {
            serde_json::from_value::<call::CallAnswer>(props.clone()).unwrap();
        }
        T::CallEnd => {
            serde_json::from_value::<call::CallEnd>(props.clone()).unwrap();
        }
        T::CallStats => {
            serde_json::from_value::<call::CallStats>(props.clone()).unwrap();
        }
        T::Error => {
            for key in ["title", "detail"] {
                assert!(
                    props.get(key).is_none_or(Value::is_string),
                    "ERROR {key}: {props}"
                );
            }
        }
        _ => {}
    }
}

/// A byte stream that runs everything the server sends through the deployed decoder, and checks
/// that server sequence numbers strictly increase on the connection.
pub struct Tapped<S> {
    inner: S,
    buf: Vec<u8>,
    last_sequence: u64,
}

impl<S> Tapped<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            last_sequence: 0,
        }
    }

    /// The wrapped stream.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: ByteStream> ByteStream for Tapped<S> {
    async fn read(&mut self) -> io::Result<Option<Bytes>> {
        let chunk = self.inner.read().await?;
        if let Some(bytes) = &chunk {
            self.buf.extend_from_slice(bytes);
            loop {
                match commucat_proto::Frame::decode(&self.buf) {
                    Ok((frame, used)) => {
                        self.buf.drain(..used);
                        assert!(
                            frame.sequence > self.last_sequence,
                            "server sequence {} after {}",
                            frame.sequence,
                            self.last_sequence
                        );
                        self.last_sequence = frame.sequence;
                        check_deployed(&frame);
                    }
                    Err(commucat_proto::CodecError::UnexpectedEof) => break,
                    Err(e) => panic!("the deployed decoder rejects a server frame: {e}"),
                }
            }
        }
        Ok(chunk)
    }

    async fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        self.inner.write(bytes).await
    }
}
