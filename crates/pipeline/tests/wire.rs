#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The stage protocol's frames: round trips, and hostile bytes that must be refused without a
//! panic or an outsized allocation.

use polylink_pipeline::wire::{
    ErrorCode, Input, Request, Response, SampleSpec, Want, WireLimits, decode, encode,
};
use polylink_types::{Hash32, RECEIPTS_MAX, SecretKey, WorkReceipt};
use proptest::prelude::*;

fn limits() -> WireLimits {
    WireLimits { rows_max: 16, dim_max: 8, message_bytes_max: 64 }
}

#[test]
fn every_message_round_trips() {
    let requests = vec![
        Request::Forward {
            session: 7,
            task: Hash32::digest(&[b"task"]),
            pos: 0,
            layers: 0..30,
            input: Input::Tokens(vec![1, 2, 3]),
            want: Want::Hidden,
        },
        Request::Forward {
            session: u64::MAX,
            task: Hash32::ZERO,
            pos: 41,
            layers: 12..30,
            input: Input::Hidden {
                dim: 4,
                values: vec![0.5, -1.0, f32::MIN_POSITIVE, 3.25, 1.0, 2.0, 3.0, 4.0],
            },
            want: Want::Sample(SampleSpec { temperature: 0.7, top_k: 40, top_p: 0.9, seed: 42 }),
        },
        Request::Forward {
            session: 1,
            task: Hash32::ZERO,
            pos: 3,
            layers: 0..30,
            input: Input::Tokens(vec![5]),
            want: Want::Nothing,
        },
        Request::Close { session: 9 },
    ];
    for request in requests {
        assert_eq!(decode::<Request>(&encode(&request), &limits()).unwrap(), request);
    }
    let responses = vec![
        Response::Hidden { dim: 2, values: vec![1.5, -2.5] },
        Response::Token(49151),
        Response::Done,
        Response::Error { code: ErrorCode::Busy, message: "too many sessions".into() },
        Response::Receipts(Vec::new()),
        Response::Receipts(vec![receipt(40)]),
    ];
    for response in responses {
        assert_eq!(decode::<Response>(&encode(&response), &limits()).unwrap(), response);
    }
}

fn receipt(rows: u32) -> polylink_types::SignedReceipt {
    let key = SecretKey::from_label("stage");
    let task = Hash32::digest(&[b"task"]);
    WorkReceipt {
        task,
        worker: key.public_key(),
        layer_start: 0,
        layer_end: 15,
        rows,
        fed: Hash32::digest(&[b"fed"]),
        drawn: Hash32::digest(&[b"drawn"]),
    }
    .sign(&key)
}

#[test]
fn more_receipts_than_a_result_can_carry_are_refused() {
    let fits = Response::Receipts(vec![receipt(1); RECEIPTS_MAX]);
    assert_eq!(decode::<Response>(&encode(&fits), &limits()).unwrap(), fits);
    let over = Response::Receipts(vec![receipt(1); RECEIPTS_MAX + 1]);
    assert!(decode::<Response>(&encode(&over), &limits()).is_err());
}

#[test]
fn frames_outside_the_limits_are_refused() {
    let too_many_rows = Request::Forward {
        session: 1,
        task: Hash32::ZERO,
        pos: 0,
        layers: 0..30,
        input: Input::Tokens(vec![1; 17]),
        want: Want::Hidden,
    };
    assert!(decode::<Request>(&encode(&too_many_rows), &limits()).is_err());
    let too_wide = Response::Hidden { dim: 9, values: vec![0.0; 9] };
    assert!(decode::<Response>(&encode(&too_wide), &limits()).is_err());
    let ragged = Response::Hidden { dim: 4, values: vec![0.0; 6] };
    assert!(decode::<Response>(&encode(&ragged), &limits()).is_err());
    let empty = Request::Forward {
        session: 1,
        task: Hash32::ZERO,
        pos: 0,
        layers: 0..30,
        input: Input::Tokens(vec![]),
        want: Want::Hidden,
    };
    assert!(decode::<Request>(&encode(&empty), &limits()).is_err());
    let bad_sampling = Request::Forward {
        session: 1,
        task: Hash32::ZERO,
        pos: 0,
        layers: 0..30,
        input: Input::Tokens(vec![1]),
        want: Want::Sample(SampleSpec { temperature: f32::NAN, top_k: 0, top_p: 1.0, seed: 0 }),
    };
    assert!(decode::<Request>(&encode(&bad_sampling), &limits()).is_err());
    #[allow(clippy::reversed_empty_ranges)]
    let no_layers = Request::Forward {
        session: 1,
        task: Hash32::ZERO,
        pos: 0,
        layers: 7..7,
        input: Input::Tokens(vec![1]),
        want: Want::Hidden,
    };
    assert!(decode::<Request>(&encode(&no_layers), &limits()).is_err());
}

#[test]
fn trailing_and_truncated_bytes_are_refused() {
    let frame = encode(&Request::Close { session: 3 });
    let mut longer = frame.clone();
    longer.push(0);
    assert!(decode::<Request>(&longer, &limits()).is_err());
    for cut in 0..frame.len() {
        assert!(decode::<Request>(&frame[..cut], &limits()).is_err());
    }
    // A length prefix claiming far more rows than the frame holds must not allocate them.
    let mut lying = vec![1u8, 0, 0, 0, 4];
    lying.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(decode::<Response>(&lying, &limits()).is_err());
}

#[test]
fn echoes_round_trip_up_to_the_frame_limit_and_no_further() {
    let limits = limits();
    let largest = limits.echo_bytes_max();
    assert!(largest > 0 && largest < limits.frame_bytes_max() as usize);
    for len in [0, 1, 255, largest] {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let request = Request::Echo { payload: payload.clone() };
        let frame = encode(&request);
        assert!(frame.len() <= limits.frame_bytes_max() as usize, "{len}-byte echo: {} bytes", frame.len());
        assert_eq!(decode::<Request>(&frame, &limits).unwrap(), request);
        let response = Response::Echo(payload);
        assert_eq!(decode::<Response>(&encode(&response), &limits).unwrap(), response);
    }
    let over = vec![7u8; largest + 1];
    assert!(decode::<Request>(&encode(&Request::Echo { payload: over.clone() }), &limits).is_err());
    assert!(decode::<Response>(&encode(&Response::Echo(over)), &limits).is_err());
    // A length prefix claiming more bytes than the frame holds is refused before allocating.
    let mut lying = encode(&Request::Echo { payload: vec![1, 2, 3] });
    lying[1] = 100;
    assert!(decode::<Request>(&lying, &limits).is_err());
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode::<Request>(&bytes, &limits());
        let _ = decode::<Response>(&bytes, &limits());
    }
}
