//! The `commucat` command.

use std::io::Read;

use anyhow::{Context, Result, bail};
use ccp::{FrameDecoder, PayloadKind};
use clap::{Parser, Subcommand};

/// CommuCat: secure messaging and calling relay server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode CCP-1 frames and print one JSON object per frame.
    ///
    /// Reads the hex string given as argument, or raw bytes from standard input when none is
    /// given. Exits non-zero on malformed input, naming the diagnostic, or when the input ends
    /// inside a frame.
    Decode {
        /// Frames as hex (whitespace ignored).
        hex: Option<String>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Decode { hex } => decode(hex.as_deref()),
    }
}

fn decode(hex_input: Option<&str>) -> Result<()> {
    let bytes = match hex_input {
        Some(text) => {
            let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            hex::decode(compact).context("argument is not hex")?
        }
        None => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading standard input")?;
            buf
        }
    };
    let mut decoder = FrameDecoder::new();
    decoder.extend(&bytes);
    loop {
        match decoder.next_frame() {
            Ok(Some(frame)) => println!("{}", describe(&frame)),
            Ok(None) if decoder.buffered() == 0 => return Ok(()),
            Ok(None) => bail!(
                "input ends inside a frame ({} bytes left over)",
                decoder.buffered()
            ),
            Err(error) => bail!("{}: {error}", error.kind()),
        }
    }
}

fn describe(frame: &ccp::Frame) -> serde_json::Value {
    let payload = match frame.frame_type().payload_kind() {
        PayloadKind::Control => serde_json::from_slice(frame.payload())
            .unwrap_or_else(|_| serde_json::Value::String(hex::encode(frame.payload()))),
        PayloadKind::Opaque => serde_json::Value::String(hex::encode(frame.payload())),
    };
    serde_json::json!({
        "type": frame.frame_type().label(),
        "code": format!("0x{:02x}", frame.frame_type().code()),
        "channel": frame.channel_id(),
        "sequence": frame.sequence(),
        "payload_len": frame.payload().len(),
        "payload": payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccp::FrameType;

    #[test]
    fn describes_control_and_opaque_frames() {
        let ack = ccp::Frame::new(FrameType::Ack, 0, 1, &br#"{"ack":3}"#[..]).unwrap();
        let described = describe(&ack);
        assert_eq!(described["type"], "ack");
        assert_eq!(described["payload"]["ack"], 3);
        let msg = ccp::Frame::new(FrameType::Msg, 5, 3, &b"hi"[..]).unwrap();
        assert_eq!(describe(&msg)["payload"], "6869");
    }

    #[test]
    fn decode_reports_malformed_and_truncated_input() {
        assert!(decode(Some("0d 06 00 01 09 7b2261636b223a337d")).is_ok());
        let err = decode(Some("00")).unwrap_err();
        assert!(err.to_string().starts_with("Truncated Frame"), "{err}");
        let err = decode(Some("0d06")).unwrap_err();
        assert!(err.to_string().contains("inside a frame"), "{err}");
        assert!(decode(Some("zz")).is_err());
    }
}
