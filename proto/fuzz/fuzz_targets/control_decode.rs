//! Arbitrary bytes on the control stream, split at an arbitrary point: decoding never panics, never
//! yields a frame over the size cap, and a message that decodes re-encodes to the same message.

#![no_main]

use bytes::BytesMut;
use ggrok_proto::control::{ClientCodec, ClientMessage, ServerCodec, ServerMessage};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, Encoder};

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| *b as usize) % (data.len() + 1);
    let mut server = ServerCodec::default();
    let mut client = ClientCodec::default();
    let mut for_server = BytesMut::new();
    let mut for_client = BytesMut::new();
    for part in [&data[..split], &data[split..]] {
        for_server.extend_from_slice(part);
        for_client.extend_from_slice(part);
        while let Ok(Some(message)) = server.decode(&mut for_server) {
            round_trip_client(message);
        }
        while let Ok(Some(message)) = client.decode(&mut for_client) {
            round_trip_server(message);
        }
    }
});

fn round_trip_client(message: ClientMessage) {
    let mut buf = BytesMut::new();
    ClientCodec::default().encode(message.clone(), &mut buf).expect("encodes");
    assert_eq!(ServerCodec::default().decode(&mut buf).expect("decodes"), Some(message));
}

fn round_trip_server(message: ServerMessage) {
    let mut buf = BytesMut::new();
    ServerCodec::default().encode(message.clone(), &mut buf).expect("encodes");
    assert_eq!(ClientCodec::default().decode(&mut buf).expect("decodes"), Some(message));
}
