//! The wire format: every frame round-trips, partial input asks for more, bad input gets a
//! precise error and never a panic.

use proptest::prelude::*;
use sunfleet_engine::ids::{BatchSeq, Serial};
use sunfleet_engine::time::CivilDate;
use sunfleet_fixtures::stream::stream_system;
use sunfleet_fixtures::{Fleet, FleetConfig};
use sunfleet_ingest::frame::{
    ErrorCode, Frame, FrameError, HEADER_BYTES, MAX_BODY_BYTES, TaskKind, TaskState, VERSION,
    decode, encode,
};

fn sample_frames() -> Vec<Frame> {
    let fleet = Fleet::new(FleetConfig::new(
        2,
        1,
        CivilDate::from_ymd(2026, 6, 1).unwrap(),
        1,
    ));
    let mut batch = None;
    for spec in fleet.systems() {
        stream_system(&fleet, spec, |u| {
            if batch.is_none() && !u.batch.micro.is_empty() {
                batch = Some((*u.batch).clone());
            }
        });
    }
    let mut frames = vec![
        Frame::Hello {
            serial: Serial::new(121_000_000_042).unwrap(),
            firmware: "D8.2.4264".into(),
            software_version: "sunfleet-sim 0.1".into(),
        },
        Frame::Welcome {
            acked: BatchSeq(41),
        },
        Frame::Batch(Box::new(batch.unwrap())),
        Frame::Ack { seq: BatchSeq(42) },
        Frame::Heartbeat { sent_us: -5 },
        Frame::Error {
            code: ErrorCode::RetiredGateway,
            message: "gateway 121000000042 is retired".into(),
        },
    ];
    for (id, kind) in TaskKind::ALL.into_iter().enumerate() {
        frames.push(Frame::Task {
            id: id as u64,
            kind,
            parameters: "{\"mode\":\"net\"}".into(),
        });
    }
    for state in [TaskState::Started, TaskState::Succeeded, TaskState::Failed] {
        frames.push(Frame::TaskResult {
            id: 7,
            state,
            message: "ok".into(),
        });
    }
    frames
}

#[test]
fn every_frame_round_trips_and_partial_input_asks_for_more() {
    let frames = sample_frames();
    let mut stream = Vec::new();
    for frame in &frames {
        let bytes = encode(frame).unwrap();
        assert_eq!(decode(&bytes).unwrap(), Some((frame.clone(), bytes.len())));
        for cut in 0..bytes.len() {
            assert_eq!(
                decode(&bytes[..cut]).unwrap(),
                None,
                "{frame:?} cut at {cut}"
            );
        }
        stream.extend_from_slice(&bytes);
    }
    // Back to back on one stream.
    let mut rest = &stream[..];
    for frame in &frames {
        let (decoded, used) = decode(rest).unwrap().unwrap();
        assert_eq!(&decoded, frame);
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
}

#[test]
fn bad_headers_get_precise_errors() {
    let ack = encode(&Frame::Ack { seq: BatchSeq(1) }).unwrap();
    let mut wrong_version = ack.clone();
    wrong_version[0] = VERSION + 1;
    assert_eq!(
        decode(&wrong_version),
        Err(FrameError::UnsupportedVersion {
            version: VERSION + 1
        })
    );
    let mut unknown = ack.clone();
    unknown[1] = 99;
    assert_eq!(decode(&unknown), Err(FrameError::UnknownKind { kind: 99 }));
    let mut huge = ack.clone();
    huge[2..6].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        decode(&huge),
        Err(FrameError::TooLarge {
            max: MAX_BODY_BYTES,
            ..
        })
    ));
    let mut trailing = ack.clone();
    trailing[2..6].copy_from_slice(&9u32.to_le_bytes());
    trailing.push(0);
    let error = decode(&trailing).unwrap_err();
    assert_eq!(error.code(), ErrorCode::Malformed);
    assert!(error.to_string().contains("trailing"), "{error}");
    let mut bad_task = encode(&Frame::Task {
        id: 1,
        kind: TaskKind::Reboot,
        parameters: String::new(),
    })
    .unwrap();
    bad_task[HEADER_BYTES + 8] = 200;
    assert!(
        decode(&bad_task)
            .unwrap_err()
            .to_string()
            .contains("unknown task kind 200")
    );
    let too_long = Frame::Error {
        code: ErrorCode::Internal,
        message: "x".repeat(5_000),
    };
    assert!(
        encode(&too_long).is_err(),
        "text caps hold on the way out too"
    );
}

proptest! {
    /// Arbitrary bytes: an error, a request for more, or a frame; never a panic, and a
    /// decoded frame never claims more bytes than were given.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(Some((_, used))) = decode(&bytes) {
            prop_assert!(used <= bytes.len());
        }
    }

    /// Valid headers with arbitrary bodies exercise every body decoder.
    #[test]
    fn arbitrary_bodies_never_panic(kind in 1u8..=8, body in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut bytes = vec![VERSION, kind];
        bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&body);
        let _ = decode(&bytes);
    }
}
