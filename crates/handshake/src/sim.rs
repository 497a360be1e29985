//! An in-memory registry and a client–server pair, for tests and fuzzing without I/O.
//!
//! [`MemStore`] answers every [`Query`] from maps (with injectable failures); [`Pair`] runs a
//! [`ClientHandshake`] against a [`ServerHandshake`] by moving frames between them in memory,
//! with a tamper hook on each frame and a simulated clock.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use commucat_ccp::{Frame, FrameType};
use commucat_keys::Transport;
use rand_core::{CryptoRng, RngCore};

use crate::client::{self, ClientFailure, ClientHandshake, SessionInfo};
use crate::server::{
    self, Answer, Device, Established, NewSession, NoiseKey, ProfileField, ProfileRules, Query,
    ServerHandshake, User,
};
use crate::{HandshakeError, StoreFailure};

/// Profile bounds by byte length, sending profiles unchanged.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of a display name.
    pub display_name: usize,
    /// Bytes of an avatar URL.
    pub avatar_url: usize,
}

impl ProfileRules for Limits {
    fn check(&self, field: ProfileField, value: Option<&str>) -> Result<(), String> {
        let max = match field {
            ProfileField::DisplayName => self.display_name,
            ProfileField::AvatarUrl => self.avatar_url,
        };
        match value {
            Some(v) if v.len() > max => {
                Err(format!("{field:?} is {} bytes; at most {max}", v.len()))
            }
            _ => Ok(()),
        }
    }

    fn for_wire(&self, user: User) -> User {
        user
    }
}

/// The registry double.
#[derive(Debug, Default)]
pub struct MemStore {
    /// Accounts by id.
    pub users: HashMap<String, User>,
    /// Devices by id.
    pub devices: HashMap<String, Device>,
    /// Stored sessions.
    pub sessions: Vec<NewSession>,
    /// Accepted IK ephemerals.
    pub ephemerals: HashSet<Vec<u8>>,
    /// Failures to return, by query label (`"device"`, `"user"`, `"register"`, `"session"`,
    /// `"profile"`, `"count"`), each once.
    pub failures: HashMap<&'static str, StoreFailure>,
    /// Queries seen, by label.
    pub log: Vec<&'static str>,
}

impl MemStore {
    fn fail(&mut self, label: &'static str) -> Result<(), StoreFailure> {
        self.log.push(label);
        self.failures.remove(label).map_or(Ok(()), Err)
    }

    /// Answers `query` (server keys `keys` at `now`).
    pub fn answer(&mut self, query: Query, keys: &Arc<Vec<NoiseKey>>, now: i64) -> Answer {
        match query {
            Query::NoiseKeys => Answer::NoiseKeys {
                keys: Arc::clone(keys),
                now,
            },
            Query::Replay { message_one } => {
                self.log.push("replay");
                let ephemeral = message_one.get(..32).unwrap_or(&message_one).to_vec();
                Answer::Fresh(self.ephemerals.insert(ephemeral))
            }
            Query::Device { device_id } => Answer::Device(
                self.fail("device")
                    .map(|()| self.devices.get(&device_id).cloned()),
            ),
            Query::User { user_id } => Answer::User(
                self.fail("user")
                    .map(|()| self.users.get(&user_id).cloned()),
            ),
            Query::UserByHandle { handle } => Answer::User(
                self.fail("user")
                    .map(|()| self.users.values().find(|u| u.handle == handle).cloned()),
            ),
            Query::ActiveDevices { user_id } => Answer::Count(self.fail("count").map(|()| {
                self.devices
                    .values()
                    .filter(|d| d.active && d.user_id == user_id)
                    .count() as u64
            })),
            Query::Register(registration) => Answer::Registered(self.register(&registration)),
            Query::UpdateProfile {
                user_id,
                display_name,
                avatar_url,
            } => Answer::Done(self.fail("profile").and_then(|()| {
                let user = self
                    .users
                    .get_mut(&user_id)
                    .ok_or_else(|| StoreFailure::Other("unknown user".to_owned()))?;
                if display_name.is_some() {
                    user.display_name = display_name;
                }
                if avatar_url.is_some() {
                    user.avatar_url = avatar_url;
                }
                Ok(())
            })),
            Query::CreateSession(session) => Answer::Done(self.fail("session").map(|()| {
                self.sessions.push(*session);
            })),
        }
    }

    fn register(&mut self, registration: &server::Registration) -> Result<User, StoreFailure> {
        self.fail("register")?;
        if let Some(new) = &registration.new_user {
            if self.users.values().any(|u| u.handle == new.handle) {
                return Err(StoreFailure::Conflict("handle taken".to_owned()));
            }
            self.users.insert(new.user_id.clone(), new.clone());
        }
        let user = self
            .users
            .get(&registration.user_id)
            .cloned()
            .ok_or_else(|| StoreFailure::Other("unknown user".to_owned()))?;
        let active = self
            .devices
            .values()
            .filter(|d| d.active && d.user_id == registration.user_id)
            .count() as u64;
        if let Some(limit) = registration.max_active_devices
            && active >= limit
        {
            return Err(StoreFailure::DeviceLimit { limit });
        }
        self.devices.insert(
            registration.device_id.clone(),
            Device {
                user_id: registration.user_id.clone(),
                public_key: registration.device_public,
                active: true,
            },
        );
        Ok(user)
    }
}

/// Which side a frame travels to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    /// Client → server.
    Server,
    /// Server → client.
    Client,
}

/// How a pair run ended.
#[derive(Debug)]
pub struct Outcome {
    /// The server's result.
    pub server: Result<Established, HandshakeError>,
    /// The client's result (`None`: still waiting when the server finished and nothing was
    /// left to deliver).
    pub client: Option<Result<(SessionInfo, Option<Transport>), ClientFailure>>,
    /// Every frame delivered, in order, with its direction.
    pub frames: Vec<(To, Frame)>,
}

/// A client and a server machine connected in memory.
pub struct Pair<'a, 'b, R1, R2> {
    /// The server.
    pub server: ServerHandshake<'a, R1>,
    /// The client.
    pub client: ClientHandshake<'b, R2>,
    /// The server's keys.
    pub keys: Arc<Vec<NoiseKey>>,
    /// The simulated clock (Unix seconds).
    pub now: i64,
}

impl<R1, R2> std::fmt::Debug for Pair<'_, '_, R1, R2> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair")
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl<R1: RngCore + CryptoRng, R2: RngCore + CryptoRng> Pair<'_, '_, R1, R2> {
    /// Runs both machines until the server finishes. `tamper` sees every frame before it is
    /// delivered and may replace or drop it (`None`: the link goes quiet, and the server's
    /// handshake times out by the simulated clock after `timeout`).
    pub fn run(
        &mut self,
        store: &mut MemStore,
        timeout: std::time::Duration,
        mut tamper: impl FnMut(To, Frame) -> Option<Frame>,
    ) -> Outcome {
        let mut frames = Vec::new();
        let (mut to_server, mut to_client) = (Vec::<Frame>::new(), Vec::<Frame>::new());
        let (mut seq_c, mut seq_s) = (0u32, 0u32);
        let mut client_result = None;
        let mut c_step = self.client.start();
        let mut s_step = self.server.start();
        let deadline = self
            .now
            .saturating_add(i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX));
        loop {
            // Client.
            c_step = match c_step {
                client::Step::Send(out) => {
                    seq_c += 1;
                    match out.to_frame(seq_c) {
                        Ok(frame) => to_server.extend(tamper(To::Server, frame)),
                        Err(e) => {
                            client_result = Some(Err(ClientFailure::Config(e.to_string())));
                        }
                    }
                    self.client.handle(client::Input::Sent)
                }
                client::Step::Recv if !to_client.is_empty() => {
                    let frame = to_client.remove(0);
                    frames.push((To::Client, frame.clone()));
                    self.client.handle(client::Input::Frame {
                        frame,
                        now: self.now,
                    })
                }
                client::Step::Established(info, transport) => {
                    client_result.get_or_insert(Ok((*info, transport)));
                    client::Step::Recv
                }
                client::Step::Failed(failure) => {
                    client_result.get_or_insert(Err(failure));
                    client::Step::Recv
                }
                step @ client::Step::Recv => step,
            };
            // Server.
            s_step = match s_step {
                server::Step::Recv if !to_server.is_empty() => {
                    let frame = to_server.remove(0);
                    frames.push((To::Server, frame.clone()));
                    self.server.handle(server::Input::Frame(frame))
                }
                server::Step::Recv if client_result.is_some() => {
                    self.server.handle(server::Input::Closed)
                }
                server::Step::Recv
                    if !(matches!(c_step, client::Step::Recv) && to_client.is_empty()) =>
                {
                    // The client has something to do first.
                    server::Step::Recv
                }
                server::Step::Recv => {
                    // Nothing to deliver and nobody busy: time passes until the deadline.
                    self.now = deadline;
                    let failure = self.server.expire(timeout);
                    return self.finish(
                        Err(failure),
                        client_result,
                        frames,
                        &mut to_client,
                        &mut seq_s,
                        c_step,
                    );
                }
                server::Step::Send(out) => {
                    seq_s += 1;
                    match out.to_frame(seq_s) {
                        Ok(frame) => to_client.extend(tamper(To::Client, frame)),
                        Err(e) => {
                            let failure =
                                HandshakeError::new(crate::FailReason::Codec, e.to_string());
                            return self.finish(
                                Err(failure),
                                client_result,
                                frames,
                                &mut to_client,
                                &mut seq_s,
                                c_step,
                            );
                        }
                    }
                    self.server.handle(server::Input::Sent)
                }
                server::Step::Query(query) => {
                    let answer = store.answer(query, &self.keys, self.now);
                    self.server.handle(server::Input::Answer(answer))
                }
                server::Step::Established(done) => {
                    return self.finish(
                        Ok(*done),
                        client_result,
                        frames,
                        &mut to_client,
                        &mut seq_s,
                        c_step,
                    );
                }
                server::Step::Failed(failure) => {
                    return self.finish(
                        Err(failure),
                        client_result,
                        frames,
                        &mut to_client,
                        &mut seq_s,
                        c_step,
                    );
                }
            };
        }
    }

    /// Delivers what the server sent last (and its ERROR, when it failed and can reply) to the
    /// client.
    fn finish(
        &mut self,
        server: Result<Established, HandshakeError>,
        mut client_result: Option<Result<(SessionInfo, Option<Transport>), ClientFailure>>,
        mut frames: Vec<(To, Frame)>,
        to_client: &mut Vec<Frame>,
        seq_s: &mut u32,
        mut step: client::Step,
    ) -> Outcome {
        if let Err(failure) = &server
            && failure.can_reply()
        {
            *seq_s += 1;
            if let Ok(frame) = Frame::control(FrameType::Error, 0, *seq_s, &failure.problem()) {
                to_client.push(frame);
            }
        }
        while client_result.is_none() {
            step = match step {
                client::Step::Recv if !to_client.is_empty() => {
                    let frame = to_client.remove(0);
                    frames.push((To::Client, frame.clone()));
                    self.client.handle(client::Input::Frame {
                        frame,
                        now: self.now,
                    })
                }
                client::Step::Established(info, transport) => {
                    client_result = Some(Ok((*info, transport)));
                    break;
                }
                client::Step::Failed(failure) => {
                    client_result = Some(Err(failure));
                    break;
                }
                _ => break,
            };
        }
        Outcome {
            server,
            client: client_result,
            frames,
        }
    }
}
